"""Ingest benchmark: the Premium callback endpoint under gunicorn, loaded over loopback.

Targets (issue 9, item 7; were 0.50 and 50 ms in issue 2): at least 75% of the requests/s of a bare Flask
route served the same way (same gunicorn worker class, processes and threads) in the same run; every
accepted event committed in the inbox with Postgres at its default durability (synchronous_commit on);
p99 under 25 ms.

The load comes from separate processes (closed loop, keep-alive connections, fixed duration), the same for
both servers, which take turns so that the machine's other work weighs on both alike.

    python -m bench.ingest [--seconds 15] [--rounds 5] [--connections 16] [--workers 2] [--threads 8]
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
from models.urls import normalize_url

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
    ap.add_argument("--rounds", type=int, default=5, help="turns each server takes (seconds split evenly)")
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
        bare_port, web_port = free_port(), free_port()
        bare = start(gunicorn + ["-b", f"127.0.0.1:{bare_port}", "bench.bare_app:app"], env)
        web = start([str(bindir / "exsync"), "web", "--bind", f"127.0.0.1:{web_port}", "--workers", str(args.workers),
                     "--threads", str(args.threads)], env)
        # Both servers run side by side and take turns (bare, exsync, exsync, bare, …): whatever else the
        # machine does drifts over both alike, and the ratio is of the same moments.
        b_ok = b_bad = e_ok = e_bad = 0
        b_lat: list[float] = []
        e_lat: list[float] = []
        try:
            wait_http(bare_port, "/")
            wait_http(web_port, "/healthz")
            load(bare_port, 2, args.connections)  # warm-up
            load(web_port, 2, args.connections)
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE inbox_events"))
            turn = args.seconds / args.rounds
            for r in range(args.rounds):
                for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                    ok, bad, lat = load((bare_port, web_port)[which], turn, args.connections)
                    if which == 0:
                        b_ok, b_bad = b_ok + ok, b_bad + bad
                        b_lat += lat
                    else:
                        e_ok, e_bad = e_ok + ok, e_bad + bad
                        e_lat += lat
        finally:
            stop(bare)
            stop(web)
        b_lat.sort()
        e_lat.sort()
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM inbox_events")).scalar()
        engine.dispose()

    b_rps, e_rps = b_ok / args.seconds, e_ok / args.seconds
    rows = [
        ("gunicorn", f"{args.workers} gthread workers x {args.threads} threads, {args.connections} client connections"),
        ("load", f"{args.seconds:g} s per server in {args.rounds} alternating turns"),
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
        ("ratio >= 0.75", e_rps / b_rps >= 0.75),
        ("p99 < 25 ms", pct(e_lat, .99) < 0.025),
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
