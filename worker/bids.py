"""Creating bids on an exchanger through its API, idempotently, and mirroring them at once.

Idempotency rests on ``api_id`` (ours, unique per API login on the engine side, and per exchanger in
our ``bids`` table). A caller that did not get an answer sends the same request with the same api_id:
- the mirror already has a bid with that api_id → it is returned, no engine call;
- the engine says "api id not unique" → the bid is looked up with ``get_exchanges(api_id=…)``;
- the engine call timed out or broke after sending (unknown outcome) → the same lookup; when it
  finds nothing either, ``OutcomeUnknown`` tells the caller to retry with the same api_id.
Nothing else is retried here: a retryable provider error goes back to the caller (with the api_id).

The callback URL handed to the engine carries the webhook token: it is never stored nor logged.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from decimal import Decimal
from typing import Any, Mapping

from sqlalchemy import update

from core import clock
from models import Bid
from models.queries import get_bid, get_bid_by_api_id
from models.states import BidOrigin, ChangeSource
from providers import values
from providers.errors import ProviderError, UnknownOutcomeError
from providers.premium.errors import DuplicateApiIdError
from worker import reconcile

log = logging.getLogger("exsync.bids")

FIELD_NAME_RE = re.compile(r"[a-z0-9_]{1,40}")
# Names our own call sets: a field may not smuggle another direction, amount or callback URL in.
RESERVED_FIELDS = frozenset({"direction_id", "calc_amount", "calc_action", "api_id", "partner_id", "callback_url"})
MAX_FIELD_VALUE = 500
MAX_FIELDS = 100
API_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")  # the engine cuts api_id to 100 characters; fullmatch only
MAX_DIRECTION_ID = 2**63 - 1


class RequestError(ValueError):
    """A request value of the wrong type or out of range. ``fields``: {name: message}."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.fields.items()))


class FieldError(RequestError):
    """A form field (account2, cf…) refused before any engine call, named as the engine names it."""


class OutcomeUnknown(Exception):
    """The engine may or may not have created the bid, and the lookup did not find it (yet)."""

    def __init__(self, api_id: str, cause: ProviderError) -> None:
        super().__init__(
            f"the exchanger did not answer whether bid {api_id!r} was created and it cannot be found yet: "
            f"retry the same request with api_id={api_id!r}")
        self.api_id = api_id
        self.cause = cause


class LookupFailed(Exception):
    """The engine says the api_id is taken, but get_exchanges does not return the bid."""

    def __init__(self, api_id: str) -> None:
        super().__init__(f"api_id {api_id!r} is already used on the exchanger but its bid cannot be read "
                         "(created with another API login?)")
        self.api_id = api_id


class ApiIdReused(Exception):
    """The api_id already names a bid created with other fields: a retry must repeat the same request."""

    def __init__(self, api_id: str) -> None:
        super().__init__(f"api_id {api_id!r} was already used for a bid with other fields; send the same "
                         "request again, or a new api_id for a new bid")
        self.api_id = api_id


def new_api_id() -> str:
    return "exs-" + uuid.uuid4().hex


def check_request(
    *, direction_id: Any, calc_amount: Any, calc_action: Any, api_id: Any, fields: Any,
) -> tuple[int, Decimal, int, str | None, dict[str, str]]:
    """Types and limits of a create request.

    ``RequestError`` for the request's own values (types, amount), ``FieldError`` for the form fields:
    each names every bad value it found.
    """
    errors: dict[str, str] = {}
    if isinstance(direction_id, bool) or not isinstance(direction_id, int) or not 0 < direction_id <= MAX_DIRECTION_ID:
        errors["direction_id"] = "must be a positive integer"
    amount: Decimal | None = None
    try:
        amount = values.amount(calc_amount, "calc_amount")
    except values.BadValue as bad:
        errors["calc_amount"] = bad.message
    if isinstance(calc_action, bool) or not isinstance(calc_action, int) or calc_action not in (1, 2, 3, 4):
        errors["calc_action"] = "must be 1, 2, 3 or 4"
    if api_id is not None:
        try:
            values.text(api_id, "api_id", max_length=100, pattern=API_ID_RE)
        except values.BadValue:
            errors["api_id"] = "must be 1-100 letters, digits, '_', '.', ':' or '-'"
    if fields is None:
        fields = {}
    if not isinstance(fields, Mapping):
        errors["fields"] = "must be an object of field name -> string"
    elif len(fields) > MAX_FIELDS:
        errors["fields"] = f"at most {MAX_FIELDS} fields"
    if errors:
        raise RequestError(errors)

    clean: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or values.first_unclean(name) or not FIELD_NAME_RE.fullmatch(name):
            errors[values.clean_text(str(name))[:40]] = "name must be 1-40 lower-case letters, digits or '_'"
        elif name in RESERVED_FIELDS:
            errors[name] = "is set by exsync, not as a field"
        elif not isinstance(value, str):
            errors[name] = "must be a string"
        elif values.first_unclean(value):
            errors[name] = f"must not contain {values.first_unclean(value)}"
        elif len(value) > MAX_FIELD_VALUE:
            errors[name] = f"must be at most {MAX_FIELD_VALUE} characters"
        else:
            clean[name] = value
    if errors:
        raise FieldError(errors)
    assert amount is not None  # a bad amount was raised above
    return direction_id, amount, calc_action, api_id, clean


def _found_again(runtime, exchanger: str, existing: dict, api_id: str, fields: dict[str, str]) -> dict:
    """A bid already mirrored under ``api_id``: the same request again, or ``ApiIdReused``.

    A bid mirrored by a sweep before the create's own answer was stored (Postgres was down then) has no
    request fields: this retry carries them, so they are stored now — the payout needs its destination.
    """
    stored = existing.get("request_fields") or {}
    if fields and stored and stored != fields:
        raise ApiIdReused(api_id)
    if fields and not stored:
        with runtime.db.session() as session:
            session.execute(
                update(Bid).where(Bid.exchanger == exchanger, Bid.api_id == api_id, Bid.request_fields.is_(None))
                .values(request_fields=fields))
            existing = get_bid(session, exchanger, existing["remote_id"]) or existing
    return existing


def _lookup(runtime, exchanger: str, api_id: str):
    """(provider item or None, observed_at) for the bid the engine holds under ``api_id``."""
    runtime.limiter(exchanger).acquire()
    observed_at = clock.now_utc()
    items = runtime.premium(exchanger).get_exchanges(api_id=api_id)
    return next((i for i in items if i.api_id == api_id), None), observed_at


def _store(runtime, exchanger: str, obj: Any, observed_at, api_id: str, fields: dict[str, str]) -> dict:
    # create_bid's answer has no api_id: the row needs it for the next idempotent lookup.
    snap = dataclasses.replace(reconcile.Snapshot.from_provider(obj, observed_at), api_id=api_id)
    with runtime.db.session() as session:
        reconcile.apply_snapshot(session, runtime.settings, exchanger, snap, ChangeSource.CREATE,
                                 request_fields=fields, created_via=BidOrigin.EXSYNC)
        row = get_bid(session, exchanger, snap.remote_id)
    assert row is not None  # apply_snapshot inserted or locked it in this very transaction
    return row


def create_bid(
    runtime,
    exchanger: str,
    *,
    direction_id: int,
    calc_amount: Decimal | str | int,
    calc_action: int = 1,
    api_id: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> tuple[dict, bool]:
    """Create (or find again) one bid; returns (the mirrored bid with its history, created).

    ``created`` is True only when this call's create_bid answered; a bid found again by its api_id
    (in the mirror, or on the engine after "api id not unique" or an unknown outcome) gives False.
    Raises ``core.config.ConfigError`` for an unknown exchanger, ``RequestError``/``FieldError`` for
    bad input, ``OutcomeUnknown``/``LookupFailed`` as described above, and the provider's own errors
    otherwise (``ValidationError.fields`` holds the engine's error_fields).
    """
    settings = runtime.settings
    settings.exchanger(exchanger)
    direction_id, amount, calc_action, api_id, clean = check_request(
        direction_id=direction_id, calc_amount=calc_amount, calc_action=calc_action, api_id=api_id, fields=fields)
    if api_id is None:
        api_id = new_api_id()
    else:
        with runtime.db.session() as session:
            existing = get_bid_by_api_id(session, exchanger, api_id)
        if existing is not None:
            return _found_again(runtime, exchanger, existing, api_id, clean), False

    client = runtime.premium(exchanger)
    runtime.limiter(exchanger).acquire()
    observed_at = clock.now_utc()
    try:
        bid = client.create_bid(direction_id, amount, calc_action=calc_action, api_id=api_id,
                                callback_url=settings.callback_url(exchanger), **clean)
    except DuplicateApiIdError:
        found, observed_at = _lookup(runtime, exchanger, api_id)
        if found is None:
            raise LookupFailed(api_id) from None
        return _store(runtime, exchanger, found, observed_at, api_id, clean), False
    except UnknownOutcomeError as exc:
        log.warning("create_bid on %s: unknown outcome (%s); looking up api_id %s", exchanger, exc.code, api_id)
        try:
            found, observed_at = _lookup(runtime, exchanger, api_id)
        except ProviderError as lookup_exc:
            raise OutcomeUnknown(api_id, lookup_exc) from exc
        if found is None:
            raise OutcomeUnknown(api_id, exc) from exc
        return _store(runtime, exchanger, found, observed_at, api_id, clean), False
    return _store(runtime, exchanger, bid, observed_at, api_id, clean), True
