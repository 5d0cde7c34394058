"""Each benchmark's ``main()`` at a tiny size, in-process: it finishes and prints its figure lines.

No timing assertions (tiny sizes on a shared CI machine say nothing about speed); the payout benchmarks'
correctness figures are asserted: duplicates == 0 and lost == 0. bench.ingest is left out (it spawns
gunicorn and is slow); bench.payout_latency does start `exsync web` and `exsync worker`, since what it
checks is that real processes pay through the event path alone. Benchmarks use the test Postgres server
(EXSYNC_BENCH_DATABASE_URL) and write their JSON into a temporary folder, so the full-size results in
bench/results/ are not overwritten.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


@pytest.fixture
def bench_env(pg_admin_url, tmp_path, monkeypatch):
    monkeypatch.setenv("EXSYNC_BENCH_DATABASE_URL", pg_admin_url)
    monkeypatch.setenv("EXSYNC_BENCH_RESULTS", str(tmp_path))
    yield tmp_path
    from core import runtime as runtime_mod

    runtime_mod.install(None)


def _saved(folder, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_bench_sweep_smoke(bench_env, capsys):
    from bench import sweep

    assert sweep.main(["--bids", "2000"]) in (0, 1)  # 1 = a speed target missed: not judged here
    out = capsys.readouterr().out
    assert "== bench sweep ==" in out and "empty mirror: total" in out and "bids/s" in out
    assert _saved(bench_env, "sweep")["rows"]["bids"] == "2000"


def test_bench_poll_smoke(bench_env, capsys):
    from bench import poll

    assert poll.main(["--bids", "200", "--ladder", "5", "--seconds", "8"]) in (0, 1)
    out = capsys.readouterr().out
    assert "== bench poll ==" in out
    assert _saved(bench_env, "poll")["rows"]


def test_bench_poll_workers_smoke(bench_env, redis_url, monkeypatch, capsys):
    """--workers: real worker processes and a beat, beside bare clients, for each count."""
    from bench import poll

    monkeypatch.setenv("EXSYNC_BENCH_REDIS_URL", redis_url)
    monkeypatch.setenv("EXSYNC_LOG_LEVEL", "DEBUG")  # every task's result in the workers' logs
    assert poll.main(["--workers", "1,2", "--bids", "300", "--seconds", "3"]) in (0, 1)
    out = capsys.readouterr().out
    assert "== bench poll-workers ==" in out
    rows = _saved(bench_env, "poll-workers")["rows"]
    for n in (1, 2):
        assert float(rows[f"{n} worker(s): polls/s"].split()[0].replace(",", "")) > 0  # the workers polled
        assert float(rows[f"{n} bare client(s): bid_info/s"].replace(",", "")) > 0
        assert f"{n} worker(s): ratio" in rows
    assert rows["scaling: polls/s against the first count"].startswith("1: 1.00x, 2: ")
    # Both worker processes of the second count polled: the rounds fan out to every worker.
    for i in (0, 1):
        log = (Path(rows["logs"]) / f"worker-2-{i}.log").read_text(errors="replace")
        claimed = [int(n) for n in re.findall(r"poll_batch\[[^]]+\] succeeded in [^:]+: \{'claimed': (\d+)", log)]
        assert sum(claimed) > 0, (i, log[-2000:])


@pytest.mark.parametrize("bad", ["0", "1,x", "", "17"])
def test_bench_poll_refuses_a_bad_worker_count(bench_env, bad, capsys):
    from bench import poll

    with pytest.raises(SystemExit) as exit_:
        poll.main(["--workers", bad])
    assert exit_.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_bench_payouts_smoke(bench_env, capsys):
    from bench import payouts

    assert payouts.main(["--payouts", "200", "--providers", "zc,gw,ps"]) == 0
    out = capsys.readouterr().out
    for line in ("== bench payouts ==", "settled", "payouts/s", "baseline bare rail.send()", "duplicates",
                 "lost", "by final state", "sends per payout"):
        assert line in out, line
    saved = _saved(bench_env, "payouts")
    assert saved["rows"]["duplicates"] == "0" and saved["rows"]["lost"] == "0"
    assert all(saved["checks"].values()), saved["checks"]


def test_bench_footprint_smoke(bench_env, capsys):
    """The whole `exsync run` stack is found and measured, embedded Postgres and Redis included (they
    daemonize away from the supervisor), and the load really creates bids and pays some out."""
    from bench import footprint

    assert footprint.main(["--idle", "2", "--load", "6", "--rate", "4"]) in (0, 1)  # 1: over the target
    out = capsys.readouterr().out
    assert "== bench footprint ==" in out
    rows = _saved(bench_env, "footprint")["rows"]
    for role in ("supervisor", "web", "worker", "postgres", "redis"):
        assert f"{role} " in rows["idle by process (MiB)"], (role, rows)
    assert float(rows["idle total PSS (MiB)"]) > 0
    assert "created 0," not in rows["load"], rows["load"]


def test_bench_payout_latency_smoke(bench_env, redis_url, monkeypatch, capsys):
    """Real web and worker processes, no beat: every payout reached the provider through the event path
    alone (the payouts tick never ran), each once, and every bid was completed."""
    from bench import payout_latency

    monkeypatch.setenv("EXSYNC_BENCH_REDIS_URL", redis_url)
    assert payout_latency.main(["--payouts", "40", "--rate", "10", "--concurrency", "8", "--no-beat"]) in (0, 1)
    out = capsys.readouterr().out
    for line in ("== bench payout_latency ==", "callback -> provider ledger", "callback -> success_bid",
                 "baseline: direct calls -> ledger", "callback rate", "count paid / completed", "duplicates",
                 "lost"):
        assert line in out, line
    saved = _saved(bench_env, "payout_latency")
    assert saved["rows"]["duplicates"] == "0" and saved["rows"]["lost"] == "0", saved["rows"]
    assert saved["rows"]["count paid / completed"] == "40 / 40"


def test_bench_console_smoke(bench_env, capsys):
    from bench import console

    assert console.main(["--bids", "3000", "--baseline", "300", "--repeat", "1"]) in (0, 1)  # plans not judged here
    out = capsys.readouterr().out
    assert "== bench console ==" in out and "/console/bids?status=verify" in out
    assert _saved(bench_env, "console")["rows"]["bids"] == "3000"


@pytest.mark.parametrize("args", [["--rate", "0"], ["--payouts", "0"], ["--workers", "0"], ["--concurrency", "0"],
                                  ["--latency", "-1"], ["--rate", "fast"]])
def test_bench_payout_latency_refuses_bad_arguments_before_starting_anything(args, capsys):
    from bench import payout_latency

    with pytest.raises(SystemExit) as exc:
        payout_latency.main(args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
