"""The OpenAPI 3.1 document of every HTTP surface, generated from the routes that serve it.

Each view declares its own operation next to its code with ``@documented(...)`` (summary, parameters,
request body, responses by status). ``document(app)`` walks the app's URL map, so a route cannot exist
without being described (``tests/system/test_openapi.py`` refuses an undocumented one) and a path or method
cannot drift from the router. The answers are kept true by a schemathesis run against the live app and
by the fuzz tests, which validate every answer against this document.

Served at ``GET /api/v1/openapi.json`` (no credentials: it holds none).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from flask import Blueprint, Flask, current_app, jsonify

bp = Blueprint("openapi", __name__)

VERSION = "1"
_PARAM = re.compile(r"<(?:[a-z_]+:)?([a-z_]+)>")


def documented(**operation: Any) -> Callable:
    """Attach an OpenAPI operation (``summary``, ``parameters``, ``requestBody``, ``responses``, …) to a
    view. ``responses`` maps a status to a schema name, a schema, or a full response object."""

    def mark(view: Callable) -> Callable:
        view.openapi = operation  # type: ignore[attr-defined]  # a function attribute: the view carries it
        return view

    return mark


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


TIME = {"type": "string", "format": "date-time"}
DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "description": "a decimal, never a float"}
TEXT = {"type": "string"}
# Text exsync accepts has no NUL (webhooks.inputs refuses it with a 400; lone surrogates too, which a
# JSON Schema pattern cannot name portably). The NUL is written as the character itself: schemathesis
# ignores a "\u0000" escape inside a character class.
NO_NUL = "^[^\x00]*$"

# The sections of the stuck report (models.queries.stuck_report), in the order /stuck shows most of them.
STUCK_SECTIONS = ("payouts_needs_review", "payouts_parked", "inbox_dead", "inbox_failed", "inbox_unprocessed",
                  "polls_gave_up", "polls_overdue", "bids_stale", "sweeps_lagging", "balances_low",
                  "workers_gone", "beat_gone")

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "a stable code: bad_request, forbidden, not_found, …"},
            "field": TEXT, "message": TEXT,
            "fields": {"type": "object", "additionalProperties": TEXT, "description": "name → what is wrong"},
            "api_id": TEXT, "limit": {"type": "integer"},
        },
    },
    "Accepted": {
        "type": "object", "required": ["ok", "event"],
        "properties": {"ok": {"const": True}, "event": {"type": "integer", "description": "inbox event id"},
                       "state": {"enum": ["dead"], "description": "present when the event was kept dead"},
                       "message": {"type": "string", "description": "why it was kept dead"}},
    },
    "History": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "from_status": nullable(TEXT), "to_status": TEXT,
                       "source": {"type": "string", "description": "create, callback, poll, sweep or operator"},
                       "observed_at": TIME, "remote_changed_at": nullable(TIME),
                       "inbox_event_id": nullable({"type": "integer"}), "note": nullable(TEXT), "recorded_at": TIME},
    },
    "Poll": {
        "type": "object",
        "properties": {"state": {"type": "string"}, "next_poll_at": nullable(TIME), "step": {"type": "integer"},
                       "ladder_status": nullable(TEXT), "polls": {"type": "integer"},
                       "last_polled_at": nullable(TIME), "last_error": nullable(TEXT), "gave_up_at": nullable(TIME)},
    },
    "Bid": {
        "type": "object", "required": ["id", "exchanger", "remote_id", "status", "observed_at"],
        "properties": {
            "id": {"type": "integer"}, "exchanger": TEXT, "remote_id": {"type": "integer"},
            "api_id": nullable(TEXT), "hash": nullable(TEXT), "status": TEXT, "status_title": nullable(TEXT),
            "psys_give": nullable(TEXT), "psys_get": nullable(TEXT),
            "currency_code_give": nullable(TEXT), "currency_code_get": nullable(TEXT),
            "course_give": nullable(DECIMAL), "course_get": nullable(DECIMAL),
            "amount_give": nullable(DECIMAL), "amount_get": nullable(DECIMAL),
            "exchange_success": nullable({"type": "boolean"}), "user_hash": nullable(TEXT),
            "user_ip": nullable(TEXT),
            "request_fields": nullable({"type": "object", "additionalProperties": TEXT}),
            "created_via": TEXT, "remote_changed_at": nullable(TIME), "observed_at": TIME,
            "archived_at": nullable(TIME), "first_seen_at": TIME, "updated_at": TIME,
        },
    },
    "BidDetail": {
        "allOf": [ref("Bid"), {"type": "object", "required": ["history"], "properties": {
            "history": {"type": "array", "items": ref("History")}, "poll": nullable(ref("Poll"))}}],
    },
    "BidCreate": {
        "type": "object", "required": ["exchanger", "direction_id", "calc_amount"],
        "additionalProperties": False,
        "properties": {
            "exchanger": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL},
            "direction_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
            "calc_amount": {"anyOf": [{"type": "string", "pattern": r"^\s*\+?[0-9]{1,20}(\.[0-9]{1,18})?\s*$"},
                                      {"type": "number", "exclusiveMinimum": 0}],
                            "description": "greater than 0; at most 20 digits before the point and 18 after"},
            "calc_action": {"enum": [1, 2, 3, 4], "default": 1},
            "api_id": {"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{1,100}$",
                       "description": "your idempotency key; generated when absent"},
            "fields": {"type": "object", "maxProperties": 100,
                       "propertyNames": {"pattern": "^[a-z0-9_]{1,40}$"},
                       "additionalProperties": {"type": "string", "maxLength": 500, "pattern": NO_NUL},
                       "description": "form fields of the direction (account2, cf6, …)"},
        },
    },
    "BidCreated": {
        "type": "object", "required": ["bid", "created", "api_id"],
        "properties": {"bid": ref("BidDetail"), "created": {"type": "boolean"}, "api_id": TEXT},
    },
    "BidList": {
        "type": "object", "required": ["bids", "limit", "offset"],
        "properties": {"bids": {"type": "array", "items": ref("Bid")}, "limit": {"type": "integer"},
                       "offset": {"type": "integer"}},
    },
    "Health": {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
    "Ready": {
        "type": "object", "required": ["ok", "checks", "failed"],
        "properties": {"ok": {"type": "boolean"},
                       "checks": {"type": "object", "additionalProperties": TEXT,
                                  "description": "check → \"ok\" or what failed"},
                       "failed": {"type": "array", "items": TEXT,
                                  "description": "checks that make the answer a 503 (postgres, redis)"},
                       "degraded": {"type": "array", "items": TEXT,
                                    "description": "checks that failed without making it a 503 (workers)"}},
    },
    "StuckReport": {
        "type": "object",
        "required": ["total", "generated_at", "oldest_needs_review_seconds", *STUCK_SECTIONS],
        "description": "Everything that needs a person (models.queries.stuck_report): each section counts "
                       "its rows and lists the first 20, oldest first",
        "properties": {"total": {"type": "integer"}, "generated_at": TIME,
                       "oldest_needs_review_seconds": {"type": "number", "minimum": 0},
                       **{name: ref("StuckSection") for name in STUCK_SECTIONS}},
    },
    "StuckSection": {
        "type": "object", "required": ["count", "rows"],
        "properties": {"count": {"type": "integer", "minimum": 0},
                       "rows": {"type": "array", "items": {"type": "object"}}},
    },
}

_STANDARD_ANSWERS = {
    "401": "wrong or missing credentials", "403": "refused", "404": "not found", "405": "method not allowed",
    "409": "conflict", "413": "body too large", "422": "refused by the rules", "429": "too many failures",
    "502": "the provider refused us", "503": "storage or provider unavailable: retry after Retry-After",
    "504": "the provider did not answer",
}


def _response(status: str, spec: Any) -> dict:
    if isinstance(spec, dict) and ("content" in spec or "description" in spec):
        return spec
    schema = ref(spec) if isinstance(spec, str) else spec
    return {"description": _STANDARD_ANSWERS.get(status, "answer"),
            "content": {"application/json": {"schema": schema}}}


def _operation(rule_args: list[str], spec: dict) -> dict:
    op = {k: v for k, v in spec.items() if k != "responses"}
    declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
    params = list(op.get("parameters", []))
    for name in rule_args:
        if name not in declared:
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if params:
        op["parameters"] = params
    responses = {str(status): _response(str(status), answer) for status, answer in spec["responses"].items()}
    # Any route: an unknown method is 405 and a body over the app's limit is 413 (JSON errors).
    responses.setdefault("405", _response("405", "Error"))
    op["responses"] = responses
    return op


def undocumented(app: Flask) -> list[str]:
    """Routes (method and rule) with no ``@documented`` operation."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        if getattr(view, "openapi", None) is None:
            out.append(f"{sorted((rule.methods or set()) - {'HEAD', 'OPTIONS'})} {rule.rule}")
    return out


def document(app: Flask) -> dict:
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        spec = getattr(view, "openapi", None)
        if spec is None:
            continue
        path = _PARAM.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(sorted(rule.arguments), spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "exsync", "version": VERSION,
                 "description": "Callback receivers, the bid API, health and the operator's pages of exsync."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "EXSYNC_API_TOKEN"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "any user name, EXSYNC_API_TOKEN as the password (for browsers)"},
            },
        },
    }


@bp.get("/api/v1/openapi.json")
@documented(summary="This document", tags=["meta"],
            responses={200: {"description": "the OpenAPI 3.1 document",
                             "content": {"application/json": {"schema": {"type": "object"}}}}})
def openapi_json():
    doc = current_app.extensions.get("exsync.openapi")
    if doc is None:
        doc = current_app.extensions.setdefault("exsync.openapi", document(current_app))
    return jsonify(doc)
