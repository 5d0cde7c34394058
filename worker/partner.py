"""Partner money: mirror get_partner_info / get_partner_exchanges / get_partner_payouts into Postgres, and
request a partner payout (add_partner_payout). See docs/partner.md.

Reading the lists. The partner methods take ``start_time``/``end_time`` (inclusive, whole seconds) and a
``limit`` but no documented ``offset``, so a window is read by bisection: a page that comes back full
(``PAGE`` items) may hide more, so the window is split in two and each half read again (items are
de-duplicated by id). ``PAGE`` is the engine's usual default (100), so a site that caps lower than the
500 of get_exchanges still reads completely.

* exchanges are filtered on the bid's last change: the window is ``[cursor - overlap, now]``;
* payouts are filtered on the time they were requested, and their status changes later (pending → paid
  / cancelled), so the window starts at the older of ``cursor - overlap`` and the oldest payout still
  pending in Postgres.

Everything is upserted with ``INSERT … ON CONFLICT DO UPDATE … WHERE <something changed>`` in batches,
so a second sync of the same data writes nothing, and a payout whose status changed is updated.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

from sqlalchemy import case, func, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.runtime import Runtime
from models.partner import PartnerAccount
from models.partner import PartnerExchange as PartnerExchangeRow
from models.partner import PartnerPayout as PartnerPayoutRow
from models.states import PartnerPayoutOrigin
from providers.errors import UnknownOutcomeError
from providers.premium.errors import PartnerProgramError
from providers.premium.types import PAYOUT_STATUSES, PartnerExchange, PartnerInfo, PartnerPayout
from worker.locks import try_lock

log = logging.getLogger("exsync.partner")

EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # first sync: everything
PAGE = 100  # items per partner-list call; a full page makes the window split
BATCH = 500  # rows per INSERT … ON CONFLICT statement
MAX_CALLS = 2000  # per list per sync: a runaway bisection stops here (the cursor then stays put)
MAX_ACCOUNT = 200
PENDING = 0


class PartnerRequestError(ValueError):
    """exsync refused a payout request before calling the engine (bad method id, empty account, …)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class PartnerSyncResult:
    exchanger: str
    skipped: bool = False
    reason: str | None = None  # "locked" | the engine's text ("no active partner program", "no partner id")
    balance: Decimal | None = None
    exchanges_seen: int = 0
    exchanges_inserted: int = 0
    exchanges_changed: int = 0
    payouts_seen: int = 0
    payouts_inserted: int = 0
    payouts_changed: int = 0
    calls: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.__dict__.items()}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def mask_account(account: str | None) -> str:
    """For logs: the first and last 4 characters of a payout account."""
    if not account:
        return "-"
    return account if len(account) <= 8 else f"{account[:4]}…{account[-4:]}"


def _ts(dt: datetime) -> int:
    return int(dt.timestamp())


def _currencies(info: PartnerInfo) -> list[dict]:
    # Decimals as strings: JSON numbers would go through float.
    return [{"id": c.id, "title": c.title,
             "commission": None if c.commission is None else str(c.commission),
             "amount": None if c.amount is None else str(c.amount)} for c in info.items]


def _walk(fetch: Callable[[int, int, int], list], start: int, end: int, res: PartnerSyncResult,
          what: str) -> tuple[list, bool]:
    """Every item of ``[start, end]`` by bisection. Returns (items by id, complete?)."""
    found: dict[int, Any] = {}
    stack = [(start, end)]
    calls = 0
    complete = True
    while stack:
        if calls >= MAX_CALLS:
            res.warnings.append(f"{what}: stopped after {calls} calls; window left for the next sync")
            return list(found.values()), False
        s, e = stack.pop()
        items = fetch(s, e, PAGE)
        calls += 1
        for it in items:
            if it.id is not None:
                found[it.id] = it
        if len(items) >= PAGE:
            if s >= e:
                res.warnings.append(f"{what}: more than {PAGE} items in second {s}; some may be missing")
                complete = False
                continue
            mid = (s + e) // 2
            stack.append((mid + 1, e))
            stack.append((s, mid))
    res.calls += calls
    return list(found.values()), complete


def _chunks(rows: list[dict], n: int = BATCH) -> Iterable[list[dict]]:
    for i in range(0, len(rows), n):
        yield rows[i:i + n]


def _upsert(session, model, rows: list[dict], compare: list[str], keep: Iterable[str] = ()) -> tuple[int, int]:
    """INSERT … ON CONFLICT (exchanger, remote_id) DO UPDATE only when one of ``compare`` differs.

    Returns (inserted, changed): ``xmax = 0`` tells an inserted row from an updated one; rows the WHERE
    left alone are not returned at all.
    """
    inserted = changed = 0
    table = model.__table__
    for chunk in _chunks(rows):
        stmt = pg_insert(model).values(chunk)
        ex = stmt.excluded
        updates = {c: ex[c] for c in chunk[0] if c not in ("exchanger", "remote_id", *keep)}
        updates["synced_at"] = func.now()
        if model is PartnerPayoutRow:
            updates["status_changed_at"] = case((table.c.status.is_distinct_from(ex.status), func.now()),
                                                else_=table.c.status_changed_at)
        cond = or_(*[table.c[c].is_distinct_from(ex[c]) for c in compare])
        upsert = stmt.on_conflict_do_update(index_elements=["exchanger", "remote_id"], set_=updates, where=cond)
        for (was_insert,) in session.execute(upsert.returning(literal_column("(xmax = 0)").label("inserted"))):
            if was_insert:
                inserted += 1
            else:
                changed += 1
    return inserted, changed


def _exchange_row(exchanger: str, x: PartnerExchange) -> dict:
    return {"exchanger": exchanger, "remote_id": x.id, "time": x.time, "status": x.status,
            "psys_give": x.psys_give, "psys_get": x.psys_get, "currency_code_give": x.currency_code_give,
            "currency_code_get": x.currency_code_get, "amount_give": x.amount_give, "amount_get": x.amount_get,
            "partner_reward": x.partner_reward, "accrued": x.accrued, "exchange_success": x.exchange_success,
            "raw": x.raw}


def _payout_row(exchanger: str, p: PartnerPayout, via: str = PartnerPayoutOrigin.SYNC) -> dict:
    return {"exchanger": exchanger, "remote_id": p.id, "time": p.time, "method_id": p.method_id,
            "account": p.account, "pay_amount": p.pay_amount, "pay_currency_code": p.pay_currency_code,
            "original_amount": p.original_amount, "original_currency_code": p.original_currency_code,
            "status": p.status, "status_name": p.status_name, "requested_via": via, "raw": p.raw}


_EXCHANGE_COMPARE = ["time", "status", "amount_give", "amount_get", "partner_reward", "accrued", "exchange_success"]
_PAYOUT_COMPARE = ["status", "pay_amount", "original_amount", "method_id", "account", "time"]


def _ensure_account(session, exchanger: str) -> PartnerAccount:
    session.execute(pg_insert(PartnerAccount).values(exchanger=exchanger)
                    .on_conflict_do_nothing(index_elements=[PartnerAccount.exchanger]))
    return session.execute(select(PartnerAccount).where(PartnerAccount.exchanger == exchanger)
                           .with_for_update()).scalar_one()


def _record_error(runtime: Runtime, exchanger: str, message: str) -> None:
    with runtime.db.session() as session:
        row = _ensure_account(session, exchanger)
        row.last_error = message[:2000]
        row.last_error_at = now_utc()
        row.updated_at = now_utc()


def _store_info(session, exchanger: str, info: PartnerInfo) -> PartnerAccount:
    row = _ensure_account(session, exchanger)
    row.partner_id = info.partner_id
    row.balance = info.balance
    row.min_payout = info.min_payout
    row.currencies = _currencies(info)
    row.updated_at = now_utc()
    return row


def sync_partner(runtime: Runtime, exchanger: str) -> PartnerSyncResult:
    """Mirror the partner info, exchanges and payouts of one exchanger. One sync per exchanger at a time.

    "no active partner program" / "no partner id" is not a crash: it is stored as ``last_error`` on
    ``partner_accounts`` and the result is ``skipped`` with that reason. Any other failure is stored the
    same way and raised (the cursors stay put, so the next sync reads the same windows again).
    """
    settings = runtime.settings
    settings.exchanger(exchanger)  # ConfigError for an unknown one
    res = PartnerSyncResult(exchanger)
    with try_lock(runtime.db.engine, f"partner:{exchanger}") as got:
        if not got:
            res.skipped, res.reason = True, "locked"
            return res
        client = runtime.premium(exchanger)
        limiter = runtime.limiter(exchanger)
        now = now_utc()
        overlap = timedelta(seconds=settings.sweep_overlap)
        try:
            limiter.acquire()
            info = client.get_partner_info()
            res.calls += 1
            with runtime.db.session() as session:
                acc = _store_info(session, exchanger, info)
                ex_from = (acc.exchanges_cursor - overlap) if acc.exchanges_cursor else EPOCH
                po_from = (acc.payouts_cursor - overlap) if acc.payouts_cursor else EPOCH
                oldest_pending = session.execute(
                    select(func.min(PartnerPayoutRow.time)).where(
                        PartnerPayoutRow.exchanger == exchanger, PartnerPayoutRow.status == PENDING)).scalar()
                if oldest_pending is not None:
                    po_from = min(po_from, oldest_pending)
            res.balance = info.balance

            def fetch_exchanges(s: int, e: int, limit: int) -> list[PartnerExchange]:
                limiter.acquire()
                return client.get_partner_exchanges(start_time=s, end_time=e, limit=limit)

            def fetch_payouts(s: int, e: int, limit: int) -> list[PartnerPayout]:
                limiter.acquire()
                return client.get_partner_payouts(start_time=s, end_time=e, limit=limit)

            # The end is inclusive in whole seconds: +1 keeps what happened in the current second.
            end = _ts(now) + 1
            exchanges, ex_complete = _walk(fetch_exchanges, _ts(ex_from), end, res, "exchanges")
            payouts, po_complete = _walk(fetch_payouts, _ts(po_from), end, res, "payouts")
            res.exchanges_seen, res.payouts_seen = len(exchanges), len(payouts)
            with runtime.db.session() as session:
                rows = [_exchange_row(exchanger, x) for x in sorted(exchanges, key=lambda x: x.id)]
                if rows:
                    res.exchanges_inserted, res.exchanges_changed = _upsert(
                        session, PartnerExchangeRow, rows, _EXCHANGE_COMPARE)
                rows = [_payout_row(exchanger, p) for p in sorted(payouts, key=lambda p: p.id)]
                if rows:
                    # requested_via stays what it was: a payout exsync requested remains 'exsync'.
                    res.payouts_inserted, res.payouts_changed = _upsert(
                        session, PartnerPayoutRow, rows, _PAYOUT_COMPARE, keep=("requested_via",))
                acc = _ensure_account(session, exchanger)
                if ex_complete:
                    acc.exchanges_cursor = now
                if po_complete:
                    acc.payouts_cursor = now
                acc.synced_at = now_utc()
                acc.last_error = None
                acc.last_error_at = None
        except PartnerProgramError as exc:
            _record_error(runtime, exchanger, exc.message)
            res.skipped, res.reason = True, exc.message
            log.warning("partner sync %s: skipped: %s", exchanger, exc.message)
            return res
        except Exception as exc:
            _record_error(runtime, exchanger, f"{type(exc).__name__}: {exc}")
            raise
    for w in res.warnings:
        log.warning("partner sync %s: %s", exchanger, w)
    log.info("partner sync %s: balance %s; exchanges %s seen, %s new, %s changed; payouts %s seen, %s new, "
             "%s changed", exchanger, res.balance, res.exchanges_seen, res.exchanges_inserted,
             res.exchanges_changed, res.payouts_seen, res.payouts_inserted, res.payouts_changed)
    return res


def validate_request(method_id: Any, account: Any, currencies: list[dict] | None) -> tuple[int, str]:
    """The checks exsync makes before add_partner_payout. Raises :class:`PartnerRequestError`."""
    try:
        mid = int(method_id)
    except (TypeError, ValueError):
        raise PartnerRequestError(f"method id must be a number, got {method_id!r}", field="method_id") from None
    if mid <= 0:
        raise PartnerRequestError(f"method id must be positive, got {mid}", field="method_id")
    acct = (account or "").strip() if isinstance(account, str) or account is None else str(account).strip()
    if not acct:
        raise PartnerRequestError("account is empty", field="account")
    if len(acct) > MAX_ACCOUNT:
        raise PartnerRequestError(f"account is longer than {MAX_ACCOUNT} characters", field="account")
    known = [c for c in (currencies or []) if c.get("id") is not None]
    if known and mid not in {int(c["id"]) for c in known}:
        choices = ", ".join(f"{c['id']} ({c.get('title') or '?'})" for c in known)
        raise PartnerRequestError(f"method id {mid} is not a payout currency of this partner account; "
                                  f"choose one of: {choices}", field="method_id")
    return mid, acct


def request_payout(runtime: Runtime, exchanger: str, method_id: int, account: str) -> int:
    """Ask the engine for a partner payout; store it (``requested_via='exsync'``) before returning its id.

    Reads ``get_partner_info`` first: a missing partner program fails here (PartnerProgramError) and the
    method id is checked against the partner's payout currencies. add_partner_payout is not idempotent:
    a lost answer raises ``UnknownOutcomeError`` — run ``exsync partner sync`` and look at the payouts
    before asking again. Two requests for one exchanger at once are refused (advisory lock).
    """
    runtime.settings.exchanger(exchanger)
    validate_request(method_id, account, None)  # the local checks before any call
    client = runtime.premium(exchanger)
    limiter = runtime.limiter(exchanger)
    with try_lock(runtime.db.engine, f"partner-payout:{exchanger}") as got:
        if not got:
            raise PartnerRequestError(f"another partner payout request for {exchanger} is in progress")
        limiter.acquire()
        try:
            info = client.get_partner_info()
        except PartnerProgramError as exc:
            _record_error(runtime, exchanger, exc.message)
            raise
        with runtime.db.session() as session:
            _store_info(session, exchanger, info)
        mid, acct = validate_request(method_id, account, _currencies(info))
        limiter.acquire()
        try:
            payout_id = client.add_partner_payout(mid, acct)
        except UnknownOutcomeError:
            log.error("partner payout %s: outcome unknown (method %s, account %s); sync before retrying",
                      exchanger, mid, mask_account(acct))
            raise
        if payout_id is None:
            raise UnknownOutcomeError("add_partner_payout answered without a payout_id", provider="premium")
        row = {"exchanger": exchanger, "remote_id": int(payout_id), "time": now_utc(), "method_id": mid,
               "account": acct, "status": PENDING, "status_name": PAYOUT_STATUSES[PENDING],
               "requested_via": PartnerPayoutOrigin.EXSYNC, "raw": None}
        with runtime.db.session() as session:
            stmt = pg_insert(PartnerPayoutRow).values(row)
            # A sync may have stored it first (as 'sync'): it is ours, say so.
            stmt = stmt.on_conflict_do_update(index_elements=["exchanger", "remote_id"],
                                              set_={"requested_via": PartnerPayoutOrigin.EXSYNC,
                                                    "synced_at": func.now()})
            session.execute(stmt)
        log.info("partner payout %s: requested #%s (method %s, account %s)", exchanger, payout_id, mid,
                 mask_account(acct))
    # Best effort: fill in amounts and the engine's time (the row is already stored either way).
    try:
        limiter.acquire()
        found = client.get_partner_payouts(id=int(payout_id))
        if found:
            with runtime.db.session() as session:
                _upsert(session, PartnerPayoutRow, [_payout_row(exchanger, found[0], PartnerPayoutOrigin.EXSYNC)],
                        _PAYOUT_COMPARE, keep=("requested_via",))
    except Exception as exc:  # the payout exists; the next sync fills the details
        log.warning("partner payout %s #%s: read-back failed: %s", exchanger, payout_id, exc)
    return int(payout_id)


def account_summary(runtime: Runtime, exchanger: str, *, recent: int = 10) -> dict | None:
    """What ``exsync partner show`` prints: the account row and the newest payouts."""
    with runtime.db.session() as session:
        acc = session.get(PartnerAccount, exchanger)
        if acc is None:
            return None
        payouts = session.execute(
            select(PartnerPayoutRow).where(PartnerPayoutRow.exchanger == exchanger)
            .order_by(PartnerPayoutRow.time.desc().nulls_last(), PartnerPayoutRow.remote_id.desc()).limit(recent)
        ).scalars().all()
        counts = session.execute(text(
            "SELECT count(*), coalesce(sum(partner_reward) FILTER (WHERE accrued), 0) "
            "FROM partner_exchanges WHERE exchanger = :ex"), {"ex": exchanger}).one()
        return {
            "exchanger": acc.exchanger, "partner_id": acc.partner_id, "balance": acc.balance,
            "min_payout": acc.min_payout, "currencies": acc.currencies or [], "synced_at": acc.synced_at,
            "last_error": acc.last_error, "last_error_at": acc.last_error_at,
            "exchanges": counts[0], "accrued_reward": counts[1],
            "payouts": [{"remote_id": p.remote_id, "time": p.time, "method_id": p.method_id,
                         "account": mask_account(p.account), "pay_amount": p.pay_amount,
                         "pay_currency_code": p.pay_currency_code, "status": p.status,
                         "status_name": p.status_name, "requested_via": p.requested_via} for p in payouts],
        }
