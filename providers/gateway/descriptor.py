"""The signed gateway as exsync sees it: config schema, rail, sandbox, callbacks.

    [providers.gw]
    type = "gateway"
    base_url = "https://gateway.example"
    api_key_env = "EXSYNC_GW_API_KEY"
    secret_env = "EXSYNC_GW_SECRET"
    shop_code = "main"                             # optional
    callback_url = "https://exsync.example/webhooks/gateway/gw"   # optional: sent with each payout

Callbacks (``POST /webhooks/gateway/<name>``): the gateway signs a callback like a request
(``X-Signature`` = HMAC-SHA256 over timestamp + ``POST`` + the raw path and query + the raw body,
``X-Timestamp`` within ±300 s) and retries until it gets a 2xx. Answers:

  202 {"ok": true, "event": id}   stored
  202 {"ok": true, "event": id, "state": "dead", "message": …}   signed but unusable (not a payout object,
                                  no external_id, a time out of range, text Postgres refuses): kept dead
                                  for a person. Acknowledged: a 4xx would bring it back forever.
  401 the gateway's own error body (SignatureError.body()): bad/missing key, signature, timestamp, replay;
      an unknown name is verified against a key nobody has and answered the same way.

Replays (the same signature again inside the window) are refused by a ReplayCache kept with the
verifier, per process: with several web processes a replay could reach another process once inside the
window; that is harmless, since the stored event is only a hint (the worker re-reads the payout from the
gateway) — a shared Redis ReplayStore would close it.
"""
from __future__ import annotations

import re
import secrets
from typing import Any, Mapping

from providers.descriptor import (
    Answer,
    CallbackRequest,
    Callbacks,
    Descriptor,
    HintRefused,
    Option,
    PayoutHint,
    PayoutStore,
    ProviderConfig,
    Verdict,
    Verified,
    Verifier,
)
from providers.payouts import PayoutRail
from providers.values import BadValue, text, timestamp

STATUS_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def rail(cfg: ProviderConfig, store: PayoutStore) -> PayoutRail:
    from providers.gateway import GatewayClient, GatewayRail

    client = GatewayClient(cfg.base_url, cfg.secrets["api_key"], cfg.secrets["secret"], timeout=cfg.timeout,
                           shop_code=cfg.options.get("shop_code"))
    return GatewayRail(client, name=cfg.name, callback_url=cfg.options.get("callback_url"))


def sandbox(**knobs: Any) -> Any:
    from providers.gateway.sandbox import create_app

    return create_app(**knobs)


def describe_sandbox(app: Any, url: str) -> Mapping[str, Any]:
    from providers.gateway.sandbox import describe

    return describe(app)


# -- callbacks ---------------------------------------------------------------------------------------------


def payload_of(raw: Mapping[str, Any], external_id: Any, status: Any) -> dict[str, Any]:
    """The hint kept in the inbox, every field checked (``BadValue`` names the first bad one)."""
    if not external_id:
        raise BadValue("external_id", "is required")
    updated_at = raw.get("updated_at")
    failure = raw.get("failure_reason")
    return {
        "external_id": text(external_id, "external_id", max_length=255),
        "status": None if status is None else text(status, "status", max_length=64, pattern=STATUS_RE,
                                                   describe="must be a word of at most 64 characters"),
        "updated_at": None if updated_at in (None, "") else timestamp(updated_at, "updated_at").isoformat(),
        "failure_reason": None if failure in (None, "") else text(str(failure), "failure_reason", max_length=1000),
    }


def verifier(cfg: ProviderConfig | None) -> Verifier:
    from providers.gateway.callbacks import parse_callback
    from providers.gateway.errors import CallbackError
    from providers.gateway.signing import DEFAULT_WINDOW, ReplayCache, SignatureError

    if cfg is not None:
        secret, api_key = cfg.secrets["secret"], cfg.secrets["api_key"]
    else:  # the same checks against a key nobody has: the same 401 as a wrong key
        secret = api_key = secrets.token_hex(32)
    replays = ReplayCache()

    def verify(req: CallbackRequest) -> Verdict:
        try:
            payout = parse_callback(req.headers, req.method, req.target, req.body, secret=secret, api_key=api_key,
                                    now=req.now, window=DEFAULT_WINDOW, replay_cache=replays)
            return Verified(payload_of(payout.raw, payout.external_id, payout.status))
        except SignatureError as exc:
            return Answer(401, exc.body())
        except (CallbackError, BadValue) as exc:
            return Verified(None, problem=str(exc))

    return verify


def hint(payload: Mapping[str, Any]) -> PayoutHint:
    key = payload.get("external_id")
    if not isinstance(key, str) or not key:
        raise HintRefused("payload has no external_id")
    return PayoutHint(key=key, status=payload.get("status"), label=f"external_id {key!r}")


def accepted(event_id: int, dead: str | None) -> Answer:
    if dead is not None:
        return Answer(202, {"ok": True, "event": event_id, "state": "dead", "message": dead})
    return Answer(202, {"ok": True, "event": event_id})


_TEXT = {"type": "string"}
OPENAPI = {
    "summary": "The signed gateway's payout callbacks",
    "description": "HMAC-SHA256 over timestamp + POST + path and query + raw body; timestamp within ±300 s; "
                   "a signature is accepted once. The payout object is a hint: the worker asks the gateway.",
    "parameters": [{"name": "X-API-Key", "in": "header", "required": True, "schema": _TEXT},
                   {"name": "X-Timestamp", "in": "header", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
                   {"name": "X-Signature", "in": "header", "required": True, "schema": _TEXT}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["external_id"],
        "properties": {"external_id": _TEXT, "status": _TEXT, "updated_at": _TEXT, "failure_reason": _TEXT}}}}},
    "responses": {
        202: {"description": "stored (or kept dead for a person: state and message say why)",
              "content": {"application/json": {"schema": {
                  "type": "object", "required": ["ok", "event"],
                  "properties": {"ok": {"const": True}, "event": {"type": "integer", "description": "inbox event id"},
                                 "state": {"enum": ["dead"], "description": "present when the event was kept dead"},
                                 "message": {"type": "string", "description": "why it was kept dead"}}}}}},
        401: {"description": "not from the gateway, or a replay: the gateway's own error body",
              "content": {"application/json": {"schema": {
                  "type": "object", "required": ["message", "code"],
                  "properties": {"message": _TEXT, "code": _TEXT,
                                 "error": {"type": "object", "properties": {"code": _TEXT, "message": _TEXT}}}}}}},
    },
}

DESCRIPTOR = Descriptor(
    type="gateway",
    title="the signed gateway",
    options=(
        Option("api_key_env", "secret", required=True, help="the env var holding the API key"),
        Option("secret_env", "secret", required=True, help="the env var holding the signing secret"),
        Option("shop_code", "text"),
        Option("callback_url", "url", help="sent with each payout: where callbacks go"),
    ),
    rail=rail,
    sandbox=sandbox,
    describe_sandbox=describe_sandbox,
    callbacks=Callbacks(verifier=verifier, hint=hint, accepted=accepted, openapi=OPENAPI),
)
