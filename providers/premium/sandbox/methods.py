"""The user API v1 methods of the fake exchanger (facts: docs/providers/premium-exchanger.md)."""
from __future__ import annotations

import re
import time
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any, Iterable

from providers.premium.sandbox.catalogue import (
    _CANCEL_FROM,
    _OPEN_ACTIONS,
    _PAY_FROM,
    STATUSES,
    _Currency,
    _date,
    _dec,
    _Direction,
    _int,
    _s,
    _title,
)
from providers.premium.sandbox.engine import SandboxEngine, _Bid, _User


class _Ctx:
    """One API call: the method, its form, the caller's language, user and IP, the site root."""
    __slots__ = ("method", "form", "lang", "user", "ip", "root")
    method: str
    form: Any
    lang: str
    user: _User
    ip: str
    root: str


class _Api:
    """The user API v1 methods. Each returns ``(error_code, error_text, data, error_fields)``."""

    def __init__(self, engine: SandboxEngine) -> None:
        self.e = engine

    # ---- helpers -----------------------------------------------------------------------------

    def _calc(self, d: _Direction, amount: Decimal, action: int) -> dict:
        """The calculator: the four calc_action modes, rounded like an exchanger (pay up, receive down)."""
        cg, ct = d.course_give, d.course_get
        pg, pt = d.com_give_pct / 100, d.com_get_pct / 100
        qg = Decimal(1).scaleb(-self.e.currencies[d.give].decimals)
        qt = Decimal(1).scaleb(-self.e.currencies[d.get].decimals)
        if action == 2:
            get = amount
            give = get * cg / ct
        elif action == 3:
            give = amount / (1 + pg)
            get = give * ct / cg
        elif action == 4:
            get = amount / (1 - pt) if pt < 1 else amount
            give = get * cg / ct
        else:
            give = amount
            get = give * ct / cg
        return {"sum_give": give.quantize(qg, ROUND_UP), "sum_give_com": (give * (1 + pg)).quantize(qg, ROUND_UP),
                "sum_get": get.quantize(qt, ROUND_DOWN), "sum_get_com": (get * (1 - pt)).quantize(qt, ROUND_DOWN)}

    def _clamped_calc(self, d: _Direction, amount: Decimal, action: int) -> tuple[dict, bool]:
        r = self._calc(d, amount, action)
        changed = False
        if d.min_give is not None and r["sum_give"] < d.min_give:
            r, changed = self._calc(d, d.min_give, 1), True
        elif d.max_give is not None and r["sum_give"] > d.max_give:
            r, changed = self._calc(d, d.max_give, 1), True
        cap = min(x for x in (d.max_get, self.e.currencies[d.get].reserve) if x is not None)
        if d.min_get is not None and r["sum_get"] < d.min_get:
            r, changed = self._calc(d, d.min_get, 2), True
        elif r["sum_get"] > cap:
            r, changed = self._calc(d, cap, 2), True
        return r, changed

    def _dir(self, form) -> _Direction | None:
        d = self.e.directions.get(_int(form.get("direction_id"), -1))
        return d if d is not None and d.enabled else None

    @staticmethod
    def _com_text(pct: Decimal) -> str:
        return f"{_s(pct)}%" if pct else ""

    def _currency_item(self, c: _Currency, ctx: _Ctx) -> dict:
        item = {"id": str(c.id), "title": c.title, "logo": f"{ctx.root}/wp-content/uploads/{c.logo}"}
        if self.e.flavour == "alwaysmoney":
            item.update(xml_value=c.xml_value, fiat=str(c.fiat), is_need_memo=str(c.is_need_memo))
        return item

    def _limits(self, d: _Direction) -> dict:
        return {"min_give": _s(d.min_give), "max_give": _s(d.max_give), "min_get": _s(d.min_get),
                "max_get": _s(d.max_get)}

    def _find_bid(self, ctx: _Ctx) -> _Bid | None:
        """By id or hash; only the caller's own bids, and not when the direction is switched off."""
        e = self.e
        bid_id, h = ctx.form.get("id", "").strip(), ctx.form.get("hash", "").strip()
        b = None
        if bid_id:
            b = e._bids.get(_int(bid_id, -1))
            if b is not None and h and b.hash != h:
                b = None
        elif h:
            i = e._by_hash.get(h)
            b = e._bids.get(i) if i is not None else None
        if b is None or b.login != ctx.user.login or not e.directions[b.direction_id].enabled:
            return None
        return b

    def _bid_public(self, b: _Bid, ctx: _Ctx) -> dict:
        e = self.e
        d = e.directions[b.direction_id]
        cg, ct = e.currencies[d.give], e.currencies[d.get]
        actions: dict[str, Any] = {"type": d.action_type, "cancel": d.cancel, "pay": d.pay,
                                   "pay_amount": _s(b.amount_give)}
        if d.address:
            actions["address"] = d.address
            actions["dest_tag"] = ""
            actions["instruction"] = f"Send {_s(b.amount_give)} {cg.code} to {d.address}"
        else:
            actions["instruction"] = (f"Send {_s(b.amount_give)} {cg.code} and press the "
                                      f"\u00abI paid\u00bb button")
        if b.status not in _OPEN_ACTIONS:
            actions["type"] = "finished"
        out = {
            "url": f"{ctx.root}/hst_{b.hash}/", "id": str(b.id), "hash": b.hash, "status": b.status,
            "status_title": _title(b.status, ctx.lang), "psys_give": cg.psys, "psys_get": ct.psys,
            "currency_code_give": cg.code, "currency_code_get": ct.code,
            "amount_give": _s(b.amount_give), "amount_get": _s(b.amount_get), "api_actions": actions,
        }
        if e.flavour == "alwaysmoney":
            out["hash_from"] = b.hash_from
            out["hash_to"] = b.hash_to
            out["statuses"] = {s: _title(s, ctx.lang) for s in STATUSES}
        return out

    def _exchange_item(self, b: _Bid, history: bool, partner: bool = False) -> dict:
        e = self.e
        d = e.directions[b.direction_id]
        cg, ct = e.currencies[d.give], e.currencies[d.get]
        item: dict[str, Any] = {"id": str(b.id)}
        if not partner:
            item["api_id"] = b.api_id or ""
        item.update({
            "time": str(int(b.edit_at)), "date": _date(b.edit_at), "psys_give": cg.psys, "psys_get": ct.psys,
            "currency_code_give": cg.code, "currency_code_get": ct.code, "course_give": _s(b.course_give),
            "course_get": _s(b.course_get), "amount_give": _s(b.amount_give), "amount_get": _s(b.amount_get),
            # The code: 1 only when the bid is done (the manual says the reverse).
            "exchange_success": "1" if b.status == "success" else "0",
        })
        if partner:
            item["accrued"] = "1" if b.status == "success" else "0"
            item["partner_reward"] = _s((b.amount_get * Decimal("0.003")).quantize(Decimal("0.01"), ROUND_DOWN))
        item.update({"user_hash": b.user_hash, "user_ip": b.user_ip, "status": b.status, "hash": b.hash})
        if partner:
            item.pop("hash")
        if history:
            item["statuses"] = [{"time": str(int(t)), "date": _date(t), "status": s} for t, s in b.history]
        return item

    @staticmethod
    def _limit(form, default: int = 100, cap: int = 500) -> int:
        n = _int(form.get("limit"), default)
        return default if n is None or n <= 0 else min(n, cap)

    @staticmethod
    def _time_range(form) -> tuple[int | None, int | None]:
        return _int(form.get("start_time") or None), _int(form.get("end_time") or None)

    # ---- methods -----------------------------------------------------------------------------

    def test(self, ctx: _Ctx):
        u = ctx.user
        return 0, "", {"ip": ctx.ip, "user_id": str(u.user_id), "locale": ctx.lang,
                       "partner_id": str(u.partner_id)}, None

    def get_direction_currencies(self, ctx: _Ctx):
        f = ctx.form
        fg, ft = _int(f.get("currency_id_give") or None), _int(f.get("currency_id_get") or None)
        give: dict[int, _Currency] = {}
        get: dict[int, _Currency] = {}
        for d in self.e.directions.values():
            if not d.enabled:
                continue
            if ft is None or d.get == ft:
                give.setdefault(d.give, self.e.currencies[d.give])
            if fg is None or d.give == fg:
                get.setdefault(d.get, self.e.currencies[d.get])
        if not give and not get:
            return 0, "", [], None
        return 0, "", {"give": [self._currency_item(c, ctx) for _, c in sorted(give.items())],
                       "get": [self._currency_item(c, ctx) for _, c in sorted(get.items())]}, None

    def get_directions(self, ctx: _Ctx):
        f = ctx.form
        fg, ft = _int(f.get("currency_id_give") or None), _int(f.get("currency_id_get") or None)
        items = []
        for d in self.e.directions.values():
            if not d.enabled or (fg is not None and d.give != fg) or (ft is not None and d.get != ft):
                continue
            cg, ct = self.e.currencies[d.give], self.e.currencies[d.get]
            items.append({"direction_id": str(d.id), "currency_give_id": str(cg.id),
                          "currency_give_title": cg.title,
                          "currency_give_logo": f"{ctx.root}/wp-content/uploads/{cg.logo}",
                          "currency_get_id": str(ct.id), "currency_get_title": ct.title,
                          "currency_get_logo": f"{ctx.root}/wp-content/uploads/{ct.logo}"})
        return 0, "", items, None

    def get_direction(self, ctx: _Ctx):
        d = self._dir(ctx.form)
        if d is None:
            return "1", "direction not found", [], None
        cg, ct = self.e.currencies[d.give], self.e.currencies[d.get]
        calc, _ = self._clamped_calc(d, d.min_give or Decimal(1), 1)
        data = {"id": str(d.id), "url": f"{ctx.root}/exchange_{cg.xml_value.lower()}_to_{ct.xml_value.lower()}/",
                "currency_code_give": cg.code, "currency_code_get": ct.code, "reserve": _s(ct.reserve),
                "course_give": _s(d.course_give), "course_get": _s(d.course_get),
                **{k: _s(v) for k, v in calc.items()},
                "com_give": self._com_text(d.com_give_pct), "com_get": self._com_text(d.com_get_pct),
                **self._limits(d),
                "info": {"timeline_text": f"Exchange {cg.title} to {ct.title}: usually 5-30 minutes.",
                         "frozen_text": "The bid is on hold: contact support.",
                         "before_button_text": "By pressing the button you accept the rules."},
                "give_fields": d.give_fields, "get_fields": d.get_fields, "dir_fields": d.dir_fields}
        return "0", "", data, None

    def get_calc(self, ctx: _Ctx):
        f = ctx.form
        d = self._dir(f)
        if d is None:
            return "1", "direction not found", [], None
        amount = _dec(f.get("calc_amount")) or Decimal(0)
        action = _int(f.get("calc_action"), 1)
        calc, changed = self._clamped_calc(d, amount, action if action in (1, 2, 3, 4) else 1)
        cg, ct = self.e.currencies[d.give], self.e.currencies[d.get]
        data = {"currency_code_give": cg.code, "currency_code_get": ct.code, "reserve": _s(ct.reserve),
                "course_give": _s(d.course_give), "course_get": _s(d.course_get),
                **{k: _s(v) for k, v in calc.items()},
                "com_give": self._com_text(d.com_give_pct), "com_get": self._com_text(d.com_get_pct),
                **self._limits(d), "changed": "1" if changed else "0"}
        return "0", "", data, None

    def create_bid(self, ctx: _Ctx):
        e, f = self.e, ctx.form
        d = self._dir(f)
        if d is None:
            return "1", "direction not found", [], None
        api_id = (f.get("api_id") or "").strip()[:100] or None  # the engine cuts it to 100 chars
        if api_id and (ctx.user.login, api_id) in e._api_ids:
            return "3", "api id not unique", [], None
        errors: dict[str, str] = {}
        amount = _dec(f.get("calc_amount"))
        action = _int(f.get("calc_action"), 1)
        calc = None
        if amount is None or amount <= 0:
            errors["sum1"] = "amount is less than minimum"
        else:
            calc = self._calc(d, amount, action if action in (1, 2, 3, 4) else 1)
            if d.min_give is not None and calc["sum_give"] < d.min_give:
                errors["sum1"] = "amount is less than minimum"
            elif d.max_give is not None and calc["sum_give"] > d.max_give:
                errors["sum1"] = "amount is more than maximum"
            if d.min_get is not None and calc["sum_get"] < d.min_get:
                errors["sum2"] = "amount is less than minimum"
            elif d.max_get is not None and calc["sum_get"] > d.max_get:
                errors["sum2"] = "amount is more than maximum"
            elif calc["sum_get"] > e.currencies[d.get].reserve:
                errors["sum2"] = "not enough reserve"
        # Required form fields (account2 is required in every direction).
        for group in (d.give_fields, d.get_fields, d.dir_fields):
            for fd in (group.values() if isinstance(group, dict) else group):
                if fd["req"] == "1" and not (f.get(fd["name"]) or "").strip():
                    errors[fd["name"]] = "field is required"
        if not (f.get("account2") or "").strip():
            errors["account2"] = "field is required"
        if errors:
            return "3", "fields error", [], errors
        assert calc is not None  # no errors: the amount was valid
        keep = {k: v for k, v in f.items()
                if k in ("account1", "account2", "cfgive8") or re.fullmatch(r"cf[1-9][0-9]?", k)}
        if e.flavour == "alwaysmoney" and f.get("cfgive3"):
            keep["cfgive3"] = f["cfgive3"]  # refund address: only that site has the field
        callback_url = (f.get("callback_url") or "").strip() or None
        b = e._new_bid(direction_id=d.id, amount_give=calc["sum_give_com"], amount_get=calc["sum_get_com"],
                       status="new", login=ctx.user.login, api_id=api_id, callback_url=callback_url,
                       fields=keep, created_at=time.time(), user_ip=ctx.ip,
                       partner_id=_int(f.get("partner_id"), 0) or 0)
        return "0", "", self._bid_public(b, ctx), None

    def bid_info(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None:
            return "1", "no bid exists", [], None
        return "0", "", self._bid_public(b, ctx), None

    def cancel_bid(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None:
            return "1", "no bid exists", [], None
        if self.e.directions[b.direction_id].cancel == "disabled":
            return "2", "action disabled", [], None
        if b.status == "cancel":
            return "0", "", "cancel", None
        if b.status not in _CANCEL_FROM:  # the engine answers "no bid exists" here too
            return "1", "no bid exists", [], None
        self.e._change(b, "cancel")
        return "0", "", "cancel", None

    def pay_bid(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None:
            return "1", "no bid exists", [], None
        if self.e.directions[b.direction_id].pay == "disabled":
            return "2", "action disabled", [], None
        if b.status not in _PAY_FROM:
            return "1", "no bid exists", [], None
        self.e._change(b, "payed")
        return "0", "", "payed", None

    def success_bid(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None or b.status == "success":
            return "1", "no bid exists", [], None
        self.e._change(b, "success")
        return "0", "", "success", None

    def get_exchanges(self, ctx: _Ctx):
        e, f = self.e, ctx.form
        start, end = self._time_range(f)
        ip = (f.get("ip") or "").strip() or None
        api_id = (f.get("api_id") or "").strip()[:100] or None
        history = (f.get("status_history") or "").strip() == "1"
        limit, offset = self._limit(f), max(0, _int(f.get("offset"), 0) or 0)
        login = ctx.user.login
        raw_ids = (f.get("id") or "").strip()
        if raw_ids:
            wanted = {_int(x) for x in raw_ids.split(",")} - {None}
            cands: Iterable[int] = sorted((i for i in wanted if i in e._bids and e._bids[i].login == login),
                                          reverse=True)
        elif api_id:
            i = e._api_ids.get((login, api_id))
            cands = [i] if i is not None else []
        else:
            ids = e._by_login.get(login, [])
            if start is None and end is None and ip is None:
                # No row filter: the page is a slice of the id index, no scan at all.
                hi = len(ids) - offset
                cands = reversed(ids[max(0, hi - limit):hi]) if hi > 0 else []
                offset = 0
            else:
                cands = reversed(ids)
        page, skipped = [], 0
        bids = e._bids
        for i in cands:
            b = bids[i]
            if api_id is not None and b.api_id != api_id:
                continue
            if start is not None or end is not None:
                t = int(b.edit_at)
                if (start is not None and t < start) or (end is not None and t > end):
                    continue
            if ip is not None and b.user_ip != ip:
                continue
            if skipped < offset:
                skipped += 1
                continue
            page.append(b)
            if len(page) >= limit:
                break
        if not page:
            return "0", "", [], None
        return "0", "", {"items": [self._exchange_item(b, history) for b in page]}, None

    # ---- partner methods ---------------------------------------------------------------------

    def _partner(self, ctx: _Ctx) -> tuple[Any, ...] | None:
        if not self.e.knobs.partner_program:
            return "1", "no active partner program", [], None
        if not ctx.user.partner_id:
            return "1", "no partner id", [], None
        return None

    def get_partner_info(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        pid = ctx.user.partner_id
        bal = self.e.partner_balance.get(pid, Decimal(0))
        items = [{"id": str(mid), "title": title, "commission": f"{_s(com)}%",
                  "amount": _s((bal * rate).quantize(Decimal("0.01"), ROUND_DOWN))}
                 for mid, (title, _code, rate, com) in self.e.payout_methods.items()]
        return "0", "", {"partner_id": str(pid), "balance": _s(bal), "min_payout": _s(self.e.partner_min_payout),
                         "items": items}, None

    def get_partner_links(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        f = ctx.form
        start, end = self._time_range(f)
        ip = (f.get("ip") or "").strip() or None
        items = []
        for ln in reversed(self.e.links):
            if ln["partner_id"] != ctx.user.partner_id or (ip and ln["ip"] != ip):
                continue
            if (start is not None and ln["time"] < start) or (end is not None and ln["time"] > end):
                continue
            items.append({"time": str(int(ln["time"])), "date": _date(ln["time"]), "browser": ln["browser"],
                          "ip": ln["ip"], "referrer": ln["referrer"], "user_hash": ln["user_hash"],
                          "query_string": ln["query_string"]})
            if len(items) >= self._limit(f):
                break
        return ("0", "", {"items": items}, None) if items else ("0", "", [], None)

    def get_partner_exchanges(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        f = ctx.form
        start, end = self._time_range(f)
        ip = (f.get("ip") or "").strip() or None
        raw_ids = (f.get("id") or "").strip()
        wanted = ({_int(x) for x in raw_ids.split(",")} - {None}) if raw_ids else None
        history = (f.get("status_history") or "").strip() == "1"
        limit, offset = self._limit(f), max(0, _int(f.get("offset"), 0) or 0)
        page, skipped = [], 0
        for b in reversed(self.e._bids.values()):
            if b.partner_id != ctx.user.partner_id or (wanted is not None and b.id not in wanted):
                continue
            if (ip and b.user_ip != ip) or (start is not None and int(b.edit_at) < start) or (
                    end is not None and int(b.edit_at) > end):
                continue
            if skipped < offset:
                skipped += 1
                continue
            page.append(self._exchange_item(b, history, partner=True))
            if len(page) >= limit:
                break
        return ("0", "", {"items": page}, None) if page else ("0", "", [], None)

    def get_partner_payouts(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        f = ctx.form
        start, end = self._time_range(f)
        want = _int(f.get("id") or None)
        items = []
        for p in reversed(self.e.payouts):
            if p["partner_id"] != ctx.user.partner_id or (want is not None and p["id"] != want):
                continue
            if (start is not None and p["time"] < start) or (end is not None and p["time"] > end):
                continue
            items.append({"id": str(p["id"]), "time": str(int(p["time"])), "date": _date(p["time"]),
                          "method_id": str(p["method_id"]), "account": p["account"],
                          "pay_amount": _s(p["pay_amount"]), "pay_currency_code": p["pay_currency_code"],
                          "original_amount": _s(p["original_amount"]),
                          "original_currency_code": p["original_currency_code"], "status": str(p["status"])})
            if len(items) >= self._limit(f):
                break
        return ("0", "", {"items": items}, None) if items else ("0", "", [], None)

    def add_partner_payout(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        e, f = self.e, ctx.form
        method = e.payout_methods.get(_int(f.get("method_id"), -1))
        if method is None:
            return "1", "payout method not found", [], None
        account = (f.get("account") or "").strip()
        if not account:
            return "1", "account is empty", [], None
        pid = ctx.user.partner_id
        bal = e.partner_balance.get(pid, Decimal(0))
        if bal < e.partner_min_payout:
            return "1", "balance is less than minimum payout", [], None
        _title_, code, rate, com = method
        pay = (bal * rate * (1 - com / 100)).quantize(Decimal("0.01"), ROUND_DOWN)
        payout = {"id": next(e._payout_ids), "partner_id": pid, "time": time.time(), "method_id": int(f["method_id"]),
                  "account": account[:250], "pay_amount": pay, "pay_currency_code": code, "original_amount": bal,
                  "original_currency_code": "USD", "status": 0}
        e.payouts.append(payout)
        e.partner_balance[pid] = Decimal(0)
        return "0", "", {"payout_id": str(payout["id"])}, None
