"""Ingest benchmark: the Premium callback endpoint under gunicorn, loaded over loopback.

Targets (issue 2): at least 50% of the requests/s of a bare Flask route served the same way (same
gunicorn worker class, processes and threads) in the same run; every accepted event committed in the inbox
with Postgres at its default durability (synchronous_commit on); p99 under 50 ms.

The load comes from separate processes (closed loop, keep-alive connections, fixed duration), the same for
both servers.

    python -m bench.ingest [--seconds 15] [--connections 16] [--workers 2] [--threads 8]
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.common import database, redis, report, settings_for
from models.db import normalize_url

TOKEN = "benchtoken-0123456789abcdef"
BODY = "bid_id={}&status=payed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not come up")


def _load(port: int, seconds: float, worker: int, out: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    path = f"/webhooks/premium/main/{TOKEN}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    lat, ok, bad, i = [], 0, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=BODY.format(worker * 10_000_000 + i), headers=headers)
            r = conn.getresponse()
            r.read()
            lat.append(time.perf_counter() - t0)
            ok += 200 <= r.status < 300
            bad += not 200 <= r.status < 300
        except OSError:
            bad += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out.put((ok, bad, lat))


def load(port: int, seconds: float, connections: int) -> tuple[int, int, list[float]]:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_load, args=(port, seconds, w, q)) for w in range(connections)]
    [p.start() for p in procs]
    results = [q.get() for _ in procs]
    [p.join() for p in procs]
    ok = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    return ok, bad, lat


def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def start(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args(argv)
    bindir = Path(sys.executable).parent

    with database() as url, redis() as redis_url:
        settings = settings_for("http://127.0.0.1:9", url, redis_url)
        env = dict(os.environ)
        env.update({
            "EXSYNC_CONFIG": _config_path(settings),
            "EXSYNC_DATABASE_URL": url, "EXSYNC_REDIS_URL": redis_url,
            "EXSYNC_EXCHANGER_MAIN_API_KEY": settings.exchangers["main"].api_key,
            "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN": TOKEN, "EXSYNC_LOG_LEVEL": "WARNING",
        })
        engine = create_engine(normalize_url(url))
        with engine.connect() as conn:
            durability = conn.execute(text("SHOW synchronous_commit")).scalar()

        gunicorn = [str(bindir / "gunicorn"), "-w", str(args.workers), "-k", "gthread", "--threads", str(args.threads),
                    "--keep-alive", "5", "--log-level", "warning"]
        port = free_port()
        bare = start(gunicorn + ["-b", f"127.0.0.1:{port}", "bench.bare_app:app"], env)
        try:
            wait_http(port, "/")
            load(port, 2, args.connections)  # warm-up
            b_ok, b_bad, b_lat = load(port, args.seconds, args.connections)
        finally:
            stop(bare)

        port = free_port()
        web = start([str(bindir / "exsync"), "web", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
                     "--threads", str(args.threads)], env)
        try:
            wait_http(port, "/healthz")
            load(port, 2, args.connections)  # warm-up
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE inbox_events"))
            e_ok, e_bad, e_lat = load(port, args.seconds, args.connections)
        finally:
            stop(web)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM inbox_events")).scalar()
        engine.dispose()

    b_rps, e_rps = b_ok / args.seconds, e_ok / args.seconds
    rows = [
        ("gunicorn", f"{args.workers} gthread workers x {args.threads} threads, {args.connections} client connections"),
        ("postgres synchronous_commit", durability),
        ("bare flask route",
         f"{b_rps:,.0f} req/s, p50 {pct(b_lat, .5) * 1000:.1f} ms, p99 {pct(b_lat, .99) * 1000:.1f} ms"),
        ("exsync callback endpoint",
         f"{e_rps:,.0f} req/s, p50 {pct(e_lat, .5) * 1000:.1f} ms, p99 {pct(e_lat, .99) * 1000:.1f} ms"),
        ("ratio exsync / bare", f"{e_rps / b_rps:.2f}"),
        ("accepted (2xx) / refused", f"{e_ok} / {e_bad}"),
        ("inbox rows committed", stored),
    ]
    checks = [
        ("ratio >= 0.50", e_rps / b_rps >= 0.5),
        ("p99 < 50 ms", pct(e_lat, .99) < 0.050),
        ("every accepted event is in the inbox", stored == e_ok),
        ("default durability (synchronous_commit=on)", durability == "on"),
    ]
    return report("ingest", rows, checks)


def _config_path(settings) -> str:
    from providers.premium.sandbox import DEFAULT_LOGIN

    path = Path(tempfile.mkdtemp(prefix="exsync-bench-ingest-")) / "exsync.toml"
    path.write_text(f'[exchangers.main]\nbase_url = "http://127.0.0.1:9"\napi_login = "{DEFAULT_LOGIN}"\n')
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
