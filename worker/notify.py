"""Tell a person when something needs them: one notification per thing, through apprise, and a daily digest.

A beat job (``worker.tasks.notify``, every ``NOTIFY_SECONDS`` of worker/beat.py) runs :func:`run` under a lock:

1. records beat's heartbeat (``heartbeats``: /stuck and /metrics show a beat that is gone);
2. reads each payout provider's balance whose rail can tell (``balances()``), at most every
   ``[notifications] balance_check_interval`` seconds, into ``provider_balances`` (``/metrics`` reads it
   there: a provider is never called at scrape time);
3. builds :func:`report` — ``models.queries.stuck_report``, the one source of "what needs a person" that
   ``/stuck`` and the console read too — and turns the sections a person must act on into items:
   needs_review and parked payouts, dead inbox events, lagging sweeps, low balances, workers and beat gone;
4. keeps one ``notifications`` row per item, keyed by what it is about (``payout:17:needs_review``): a new
   key is sent once; a row whose thing no longer needs a person is resolved, and opened again (one new
   message) only if it comes back after ``REOPEN_AFTER`` — a flapping sweep does not page every minute;
5. delivers unsent rows to every apprise URL of ``EXSYNC_NOTIFY_URLS`` (``[notifications] urls_env``).
   Each row records the targets (a hash of the URL, never the URL) that have it: a failing target is
   retried with back-off, and the others never get it twice. A crash between a send and its commit can
   repeat that one message (at least once, like every job here).
6. once a day after ``digest_hour`` (UTC), a digest: the report's counts and the console's link.

The URLs hold tokens: they are secrets (redacted from every log line with their parts, see
core/config.py ``url_secrets``), apprise's own logger is silenced (``apprise_module``: it names the URLs it
sends to), and a failure is logged by target number and scheme only.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import text

from core.config import Settings, apprise_module
from core.logs import redactor
from core.runtime import Runtime
from models.queries import BEAT, stuck_report
from worker.liveness import Thresholds
from worker.locks import try_lock
from worker.payouts.rails import plain, rail_for

log = logging.getLogger("exsync.notify")

STALE_BIDS_AFTER = timedelta(hours=1)  # a live bid nobody observed for this long is on /stuck
REOPEN_AFTER = timedelta(minutes=10)  # a thing resolved for less than this comes back without a new message
RETRY_FIRST, RETRY_MAX = 60, 3600  # seconds: back-off of a failed delivery
SEND_PER_RUN = 20  # messages per run at most: a storm becomes a queue, then the digest


def report(runtime: Runtime, now: datetime) -> dict[str, Any]:
    """Everything that needs a person (models.queries.stuck_report with every check asked for)."""
    s = runtime.settings
    with runtime.db.session() as session:
        return stuck_report(session, now, stale_after=STALE_BIDS_AFTER, sweep_interval=s.sweep_interval,
                            exchangers=s.exchangers, balance_low=s.notify.balance_low,
                            worker_stale_after=Thresholds.for_settings(s).stale_after,
                            beat_gone_after=s.notify.beat_gone_after)


# -- what needs a person, as messages ------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    key: str  # what it is about: the deduplication key
    kind: str
    subject: str
    body: str
    link: str


def console(settings: Settings, path: str = "") -> str:
    """A console page's URL under the configured public base URL."""
    return f"{settings.public_url.rstrip('/')}/console/{path}"


def _money(row: dict) -> str:
    return "no amount" if row["amount"] is None else f"{plain(row['amount'])} {row['currency'] or ''}".strip()


def _payout(settings: Settings, row: dict, state: str, what: str) -> Item:
    about = (f"payout {row['id']} (bid {row['exchanger']}/{row['remote_id']}, {row['provider'] or 'no provider'}, "
             f"{_money(row)})")
    return Item(f"payout:{row['id']}:{state}", f"payout_{state}", f"exsync: payout {row['id']} {what}",
                f"{about[0].upper()}{about[1:]} {what}: {row['reason']}", console(settings, f"payouts/{row['id']}"))


# One function per report section a person must act on: rows → items.
def _items(settings: Settings, section: str, row: dict) -> Item:
    if section == "payouts_needs_review":
        return _payout(settings, row, "needs_review", "needs review")
    if section == "payouts_parked":
        return _payout(settings, row, "parked", "is parked")
    if section == "inbox_dead":
        return Item(f"inbox:{row['id']}:dead", "inbox_dead", f"exsync: inbox event {row['id']} is dead",
                    f"Inbox event {row['id']} ({row['provider']} {row['endpoint']}) is dead after {row['attempts']} "
                    f"attempts: {row['last_error'] or '-'}", console(settings, f"inbox/{row['id']}"))
    if section == "sweeps_lagging":
        return Item(f"sweep:{row['exchanger']}:lagging", "sweep_lagging",
                    f"exsync: sweeps of {row['exchanger']} are lagging",
                    f"No sweep of {row['exchanger']} finished since {row['last_finished_at'] or 'ever'}"
                    + (f"; last error: {row['last_error']}" if row["last_error"] else ""), console(settings))
    if section == "balances_low":
        cur = row["currency"]
        return Item(f"balance:{row['provider']}:{cur}:low", "balance_low",
                    f"exsync: {row['provider']} balance is low ({plain(row['amount'])} {cur})",
                    f"The {row['provider']} balance is {plain(row['amount'])} {cur}, under its floor of "
                    f"{plain(row['floor'])} {cur}: payouts will park until it is topped up.", console(settings))
    if section == "workers_gone":
        if row["hostname"] is None:
            return Item("workers:none", "workers_gone", "exsync: no worker is consuming",
                        "No exsync worker has proved within the threshold that it consumes: callbacks, polls "
                        "and payouts are not processed.", console(settings))
        age = "ever" if row["canary_age"] is None else f"{row['canary_age']:.0f}s"
        return Item(f"worker:{row['hostname']}:gone", "workers_gone", f"exsync: worker {row['hostname']} is gone",
                    f"Worker {row['hostname']} has not consumed for {age}.", console(settings))
    if section == "beat_gone":
        return Item("beat:gone", "beat_gone", "exsync: beat is gone",
                    f"Beat's last heartbeat: {row['last_heartbeat'] or 'never'}. Polls, sweeps, payouts and "
                    f"notifications are not scheduled.", console(settings))
    raise ValueError(f"not a notified section: {section}")


NOTIFIED = ("payouts_needs_review", "payouts_parked", "inbox_dead", "sweeps_lagging", "balances_low",
            "workers_gone", "beat_gone")
KIND_OF = {"payouts_needs_review": "payout_needs_review", "payouts_parked": "payout_parked",
           "inbox_dead": "inbox_dead", "sweeps_lagging": "sweep_lagging", "balances_low": "balance_low",
           "workers_gone": "workers_gone", "beat_gone": "beat_gone"}


def needs_person(settings: Settings, rep: dict) -> tuple[list[Item], set[str]]:
    """The items of a report, and the kinds whose every row the report listed (only those may be resolved:
    a section longer than the report's top rows leaves the rest unknown)."""
    items, complete = [], set()
    for section in NOTIFIED:
        sec = rep[section]
        items += [_items(settings, section, row) for row in sec["rows"]]
        if sec["count"] <= len(sec["rows"]):
            complete.add(KIND_OF[section])
    return items, complete


DIGEST_ITEMS = 10  # things listed by name in the digest, with their links


def digest(settings: Settings, rep: dict, now: datetime, items: Sequence[Item] = ()) -> Item:
    lines = [f"{rep[k]['count']} {title}" for k, title in [
        ("payouts_needs_review", "payouts need review"), ("payouts_parked", "payouts parked"),
        ("inbox_dead", "inbox events dead"), ("inbox_failed", "inbox events failing"),
        ("polls_gave_up", "polls gave up"), ("sweeps_lagging", "sweeps lagging"),
        ("balances_low", "balances low"), ("workers_gone", "workers gone"), ("beat_gone", "beat gone")]]
    if items:
        lines += ["", "Waiting now:"] + [f"- {it.subject.removeprefix('exsync: ')}: {it.link}"
                                         for it in items[:DIGEST_ITEMS]]
        lines += [f"… and {len(items) - DIGEST_ITEMS} more"] if len(items) > DIGEST_ITEMS else []
    head = f"{rep['total']} things need a person" if rep["total"] else "nothing needs a person"
    return Item(f"digest:{now.date().isoformat()}", "digest", f"exsync daily digest {now.date().isoformat()}: {head}",
                "\n".join(lines), console(settings))


# -- the rows ----------------------------------------------------------------------------------------


def sync(session, items: Sequence[Item], complete: Iterable[str], now: datetime) -> None:
    """Open a row per new item, open again one that came back, resolve those of ``complete`` kinds no
    longer present. A sent row's text is left as sent."""
    for it in items:
        session.execute(text("""
            INSERT INTO notifications (key, kind, subject, body, link, opened_at)
            VALUES (:key, :kind, :subject, :body, :link, :now)
            ON CONFLICT (key) DO UPDATE SET
              opened_at = CASE WHEN n.resolved_at < :reopen THEN :now ELSE n.opened_at END,
              sent_at = CASE WHEN n.resolved_at < :reopen THEN NULL ELSE n.sent_at END,
              sent_to = CASE WHEN n.resolved_at < :reopen THEN '{}' ELSE n.sent_to END,
              attempts = CASE WHEN n.resolved_at < :reopen THEN 0 ELSE n.attempts END,
              next_attempt_at = CASE WHEN n.resolved_at < :reopen THEN NULL ELSE n.next_attempt_at END,
              subject = CASE WHEN n.sent_at IS NULL OR n.resolved_at < :reopen THEN :subject ELSE n.subject END,
              body = CASE WHEN n.sent_at IS NULL OR n.resolved_at < :reopen THEN :body ELSE n.body END,
              link = :link, resolved_at = NULL
            """.replace("INSERT INTO notifications ", "INSERT INTO notifications AS n ")),
            {"key": it.key, "kind": it.kind, "subject": it.subject, "body": it.body, "link": it.link, "now": now,
             "reopen": now - REOPEN_AFTER})
    session.execute(text("""
        UPDATE notifications SET resolved_at = :now
        WHERE resolved_at IS NULL AND kind = ANY(:kinds) AND NOT (key = ANY(:keys))"""),
        {"now": now, "kinds": sorted(complete), "keys": [it.key for it in items]})


def open_digest(session, item: Item, now: datetime) -> None:
    session.execute(text("""INSERT INTO notifications (key, kind, subject, body, link, opened_at)
                            VALUES (:key, :kind, :subject, :body, :link, :now) ON CONFLICT (key) DO NOTHING"""),
                    {"key": item.key, "kind": item.kind, "subject": item.subject, "body": item.body,
                     "link": item.link, "now": now})


# -- delivery ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    number: int  # 1-based, as in the variable
    url: str  # a secret: never logged, never stored

    @property
    def id(self) -> str:
        """What a row stores to say this target has it: a hash, not the URL."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"target {self.number} ({self.url.partition('://')[0]}://)"

    def send(self, subject: str, body: str) -> bool:
        a = apprise_module().Apprise()  # its logger silenced: it names the URL
        a.add(self.url)
        try:
            return bool(a.notify(title=subject, body=body))
        except Exception as exc:  # apprise catches its own; a plugin bug must not stop the others
            log.warning("notify: %s raised %s", self.label, type(exc).__name__)
            return False


def targets(settings: Settings) -> list[Target]:
    return [Target(i + 1, url) for i, url in enumerate(settings.notify.urls)]


def deliver(runtime: Runtime, now: datetime, to: Sequence[Target]) -> dict[str, int]:
    """Send due rows to the targets that lack them; a row is sent when every target has it."""
    out = {"sent": 0, "failed": 0}
    with runtime.db.session() as session:
        rows = session.execute(text("""
            SELECT key, subject, body, link, sent_to, attempts FROM notifications
            WHERE sent_at IS NULL AND resolved_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
            ORDER BY opened_at, key LIMIT :n"""), {"now": now, "n": SEND_PER_RUN}).mappings().all()
    for row in rows:
        have = list(row["sent_to"])
        failed = []
        body = f"{row['body']}\n\n{row['link']}" if row["link"] else row["body"]
        for t in to:
            if t.id in have:
                continue
            if t.send(row["subject"], body):
                have.append(t.id)
            else:
                failed.append(t.label)
        with runtime.db.session() as session:  # one commit per row: what was sent stays recorded
            if failed:
                delay = min(RETRY_MAX, RETRY_FIRST * 2 ** row["attempts"])
                log.warning("notify: %s not delivered to %s; retry in %ss", row["key"], ", ".join(failed), delay)
                session.execute(text("""
                    UPDATE notifications SET sent_to = :have, attempts = attempts + 1, next_attempt_at = :next,
                           last_error = :error WHERE key = :key"""),
                    {"have": have, "next": now + timedelta(seconds=delay), "key": row["key"],
                     "error": "not delivered to " + ", ".join(failed)})
                out["failed"] += 1
            else:
                session.execute(text("""UPDATE notifications SET sent_to = :have, sent_at = :now, last_error = NULL
                                        WHERE key = :key"""), {"have": have, "now": now, "key": row["key"]})
                log.info("notify: sent %s", row["key"])
                out["sent"] += 1
    return out


# -- balances and the heartbeat -------------------------------------------------------------------------


def refresh_balances(runtime: Runtime, now: datetime) -> dict[str, str]:
    """Read the balance of each provider whose rail has ``balances()`` and whose last read is older than
    the interval. A failure is logged and the old figures kept (their age grows on /metrics)."""
    from providers.errors import ProviderError

    out: dict[str, str] = {}
    interval = timedelta(seconds=runtime.settings.notify.balance_check_interval)
    for name in sorted(runtime.settings.payouts.providers):
        with runtime.db.session() as session:
            last = session.execute(text("SELECT max(checked_at) FROM provider_balances WHERE provider = :p"),
                                   {"p": name}).scalar()
        if last is not None and now - last < interval:
            continue
        try:
            read = getattr(rail_for(runtime, name), "balances", None)
            if read is None:
                continue
            balances = read()
        except Exception as exc:  # one provider's failure must not keep the others (or the round) from running
            detail = str(exc) if isinstance(exc, ProviderError) else type(exc).__name__
            log.warning("notify: balance of %s not read: %s", name, detail)
            out[name] = "error"
            continue
        with runtime.db.session() as session:
            for currency, amount in balances.items():
                session.execute(text("""
                    INSERT INTO provider_balances (provider, currency, amount, checked_at)
                    VALUES (:p, :c, :a, :now) ON CONFLICT (provider, currency)
                    DO UPDATE SET amount = excluded.amount, checked_at = excluded.checked_at"""),
                    {"p": name, "c": currency, "a": amount, "now": now})
        out[name] = "ok"
    return out


def beat_heartbeat(runtime: Runtime, now: datetime) -> None:
    with runtime.db.session() as session:
        session.execute(text("""INSERT INTO heartbeats (name, at) VALUES (:n, :now)
                                ON CONFLICT (name) DO UPDATE SET at = excluded.at"""), {"n": BEAT, "now": now})


# -- the job -----------------------------------------------------------------------------------------

WATCH = "beat-watch"  # heartbeat row: when a worker last ran the job because beat was late


def beat_late(runtime: Runtime, now: datetime) -> bool:
    """True (at most once per NOTIFY_SECONDS across workers) when beat's heartbeat is older than
    ``beat_gone_after``: then a worker's canary runs this job itself, so that "beat is gone" is told by
    someone. Never true before beat's first heartbeat (a stack without beat yet is starting)."""
    from worker.beat import NOTIFY_SECONDS

    if not runtime.settings.notify.urls:
        return False
    gone = now - timedelta(seconds=runtime.settings.notify.beat_gone_after)
    with runtime.db.session() as session:
        claimed = session.execute(text("""
            INSERT INTO heartbeats (name, at)
            SELECT :watch, :now WHERE EXISTS (SELECT 1 FROM heartbeats WHERE name = :beat AND at < :gone)
            ON CONFLICT (name) DO UPDATE SET at = excluded.at WHERE heartbeats.at < :again
            RETURNING name"""), {"watch": WATCH, "beat": BEAT, "now": now, "gone": gone,
                                 "again": now - timedelta(seconds=NOTIFY_SECONDS)}).first()
    return claimed is not None


def run(runtime: Runtime, now: datetime, *, from_beat: bool = True) -> dict[str, Any]:
    """One round: heartbeat, balances, the report's items, the digest, delivery."""
    if from_beat:
        beat_heartbeat(runtime, now)
    with try_lock(runtime.db.engine, "notify") as got:
        if not got:
            return {"skipped": True}
        out: dict[str, Any] = {"balances": refresh_balances(runtime, now)}
        to = targets(runtime.settings)
        if not to:  # nobody to tell: /stuck and /metrics still show everything
            return out
        rep = report(runtime, now)
        items, complete = needs_person(runtime.settings, rep)
        # A reason may quote a provider's answer: no configured secret is stored in a row or sent anywhere.
        red = redactor(runtime.settings)
        items = [dataclasses.replace(it, subject=red.redact(it.subject), body=red.redact(it.body)) for it in items]
        with runtime.db.session() as session:
            sync(session, items, complete, now)
            hour = runtime.settings.notify.digest_hour
            if hour is not None and now.hour >= hour:
                open_digest(session, digest(runtime.settings, rep, now, items), now)
        out.update(deliver(runtime, now, to))
        return out
