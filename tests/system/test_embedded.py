"""The embedded services used by `exsync run`, the demo and the tests leave no process behind."""
import psutil

from core.redis_url import client
from devtools.embedded import EmbeddedPostgres, EmbeddedRedis


def test_embedded_redis_stops_even_while_clients_are_connected(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    conn = client(server.url)
    assert conn.ping()  # a connected client, as Celery and the web app would be
    pid = server._client.pid
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_embedded_postgres_stops(tmp_path):
    import psycopg2

    server = EmbeddedPostgres(tmp_path / "pg", database="probe")
    with psycopg2.connect(server.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    pid = server._server.get_pid()
    server.stop()
    assert pid and (not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
