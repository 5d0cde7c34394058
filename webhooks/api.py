"""The bid API: ``/api/v1/bids``. Bearer ``EXSYNC_API_TOKEN``; without a token configured: 404.

POST /api/v1/bids   {"exchanger", "direction_id", "calc_amount", "calc_action"?, "api_id"?, "fields"?}
  201 {"bid": …, "created": true}            the bid was created now
  200 {"bid": …, "created": false}           it already existed under this api_id
  400 {"error": "bad_request", "fields": {name: message}, "field"?, "message"?}   not a JSON object, a
                                              value of the wrong type or out of bounds, text with NUL or
                                              a lone surrogate (webhooks.inputs): nothing was sent
  401 unauthorized   404 unknown_exchanger / direction_not_found / api_disabled
  409 api_id_conflict                         the engine knows the api_id but does not show its bid, or
                                              the api_id names a bid created with other fields
  422 {"error": "validation", "fields": {name: message}}   the engine's error_fields, or our own checks
  502 provider_auth / provider_error          the exchanger refused us (key, IP, method): an operator acts
  503 provider_unavailable + Retry-After      maintenance, 5xx, connection failed: retry with the api_id
  503 storage_unavailable + Retry-After       Postgres down (the bid may exist): retry with the api_id
  504 outcome_unknown                         no answer and not found: retry with the api_id
Every answer to a create carries the ``api_id`` (generated when none was sent), so a client can always
retry safely. Amounts are strings, times ISO 8601.

GET /api/v1/bids?exchanger=&status=&limit=&offset=   the mirror, newest first (limit 1–500, offset ≤ 10⁹)
GET /api/v1/bids/<exchanger>/<remote_id>             one bid, with its status history and poll schedule
Query and path values are checked by ``webhooks.inputs`` (ASCII digits within bounds, text without NUL):
a bad one is 400 naming it. The OpenAPI document of all of this is ``GET /api/v1/openapi.json``.
"""
from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.config import ConfigError
from models import queries
from providers.errors import AuthError, ProviderError, RetryableError, ValidationError
from providers.premium.errors import DirectionNotFoundError
from providers.values import BadValue, whole_number
from webhooks.auth import require_api_token
from webhooks.inputs import json_body, path_text, query_number, query_text
from webhooks.openapi import NO_NUL, documented, ref
from worker import bids
from worker.reconcile import InvalidObservation

log = logging.getLogger("exsync.api")

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = 500
MAX_OFFSET = 10**9  # deeper than any mirror; paging beyond is a client bug, answered 400
MAX_BODY = 64 * 1024
CREATE_PARAMETERS = frozenset({"exchanger", "direction_id", "calc_amount", "calc_action", "api_id", "fields"})
DEFAULT_RETRY_AFTER = 30


def jsonable(value: Any) -> Any:
    """Decimal → string (never a float), datetime → ISO 8601, recursively."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _answer(status: int, **body: Any):
    resp = jsonify(jsonable(body))
    resp.status_code = status
    return resp


def _runtime():
    return current_app.extensions["exsync.runtime"]


def _safe(text: str) -> str:
    return current_app.extensions["exsync.redactor"].redact(text)


AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]
_ANSWERS = {400: "Error", 401: "Error", 404: "Error", 503: "Error"}


@bp.post("/bids")
@documented(
    summary="Create a bid on an exchanger (idempotent by api_id)", tags=["bids"], security=AUTH,
    requestBody={"required": True, "content": {"application/json": {"schema": ref("BidCreate")}}},
    responses={**_ANSWERS, 200: "BidCreated", 201: "BidCreated", 409: "Error", 413: "Error", 422: "Error",
               502: "Error", 504: "Error"})
@require_api_token
def create():
    body = json_body(MAX_BODY)
    if not isinstance(body, dict):
        return _answer(400, error="bad_request", field="body", message="the body must be a JSON object")
    unknown = sorted(set(body) - CREATE_PARAMETERS)
    if unknown:  # a misspelt "calc_ammount" must not create a bid with a default
        return _answer(400, error="bad_request", fields={k[:100]: "is not a parameter of this call" for k in unknown})
    exchanger = body.get("exchanger")
    if not isinstance(exchanger, str):
        return _answer(400, error="bad_request", fields={"exchanger": "must be the name of an exchanger"})
    if exchanger not in _runtime().settings.exchangers:
        return _answer(404, error="unknown_exchanger")
    api_id = body.get("api_id")
    if api_id is None:
        api_id = bids.new_api_id()  # generated here so every answer, errors included, can return it
    try:
        row, created = bids.create_bid(
            _runtime(), exchanger,
            direction_id=body.get("direction_id"), calc_amount=body.get("calc_amount"),
            calc_action=body.get("calc_action", 1), api_id=api_id, fields=body.get("fields"))
    except bids.FieldError as exc:
        return _answer(422, error="validation", fields=exc.fields, api_id=api_id)
    except bids.RequestError as exc:
        return _answer(400, error="bad_request", fields=exc.fields)
    except ConfigError:
        return _answer(404, error="unknown_exchanger")
    except DirectionNotFoundError as exc:
        return _answer(404, error="direction_not_found", message=_safe(exc.message), api_id=api_id)
    except ValidationError as exc:
        return _answer(422, error="validation", fields=exc.fields or {"_": _safe(exc.message)},
                       message=_safe(exc.message), api_id=api_id)
    except bids.OutcomeUnknown as exc:
        return _answer(504, error="outcome_unknown", message=_safe(str(exc)), api_id=api_id)
    except (bids.LookupFailed, bids.ApiIdReused) as exc:
        return _answer(409, error="api_id_conflict", message=_safe(str(exc)), api_id=api_id)
    except RetryableError as exc:
        resp = _answer(503, error="provider_unavailable", message=_safe(str(exc)), api_id=api_id)
        resp.headers["Retry-After"] = str(int(exc.retry_after or DEFAULT_RETRY_AFTER))
        return resp
    except AuthError as exc:
        log.error("exchanger %s refused our credentials: %s", exchanger, type(exc).__name__)
        return _answer(502, error="provider_auth", message=_safe(str(exc)), api_id=api_id)
    except (ProviderError, InvalidObservation) as exc:
        return _answer(502, error="provider_error", message=_safe(str(exc)), api_id=api_id)
    except (OperationalError, InterfaceError, PoolTimeoutError):
        # The engine may hold the bid already: the retry with this api_id finds it and stores its fields.
        resp = _answer(503, error="storage_unavailable", api_id=api_id)
        resp.headers["Retry-After"] = str(DEFAULT_RETRY_AFTER)
        return resp
    return _answer(201 if created else 200, bid=row, created=created, api_id=api_id)


@bp.get("/bids")
@documented(
    summary="The mirrored bids, newest first", tags=["bids"], security=AUTH,
    parameters=[{"name": "exchanger", "in": "query", "schema": {"type": "string", "maxLength": 200,
                                                                "pattern": NO_NUL}},
                {"name": "status", "in": "query", "schema": {"type": "string", "maxLength": 64,
                                                             "pattern": NO_NUL}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                            "default": 50}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0,
                                                             "maximum": MAX_OFFSET, "default": 0}}],
    responses={**_ANSWERS, 200: "BidList"})
@require_api_token
def list_():
    limit = query_number("limit", 50, minimum=1, maximum=MAX_LIMIT)
    offset = query_number("offset", 0, maximum=MAX_OFFSET)
    exchanger = query_text("exchanger")
    status = query_text("status", max_length=64)
    with _runtime().db.session() as session:
        rows = queries.list_bids(session, exchanger=exchanger, status=status, limit=limit, offset=offset)
    return _answer(200, bids=rows, limit=limit, offset=offset)


@bp.get("/bids/<exchanger>/<remote_id>")
@documented(
    summary="One bid with its status history and poll schedule", tags=["bids"], security=AUTH,
    parameters=[{"name": "exchanger", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "remote_id", "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}],
    responses={**_ANSWERS, 200: {"description": "the bid", "content": {"application/json": {"schema": {
        "type": "object", "required": ["bid"], "properties": {"bid": ref("BidDetail")}}}}}})
@require_api_token
def detail(exchanger: str, remote_id: str):
    # A path that cannot name a bid (not digits, beyond bigint, NUL in the name) names no bid: 404.
    try:
        path_text(exchanger, "exchanger")
        number = whole_number(remote_id, "remote_id", minimum=1, maximum=queries.MAX_REMOTE_ID)
    except BadValue:
        return _answer(404, error="not_found")
    with _runtime().db.session() as session:
        row = queries.get_bid(session, exchanger, number)
    if row is None:
        return _answer(404, error="not_found")
    return _answer(200, bid=row)
