"""Paysera as exsync sees it: config schema, rail, sandbox, callbacks.

    [providers.ps]
    type = "paysera"
    base_url = "https://wallet.paysera.com"
    mac_id = "…"
    mac_key_env = "EXSYNC_PS_MAC_KEY"
    payer_account = "EVP…"                        # optional
    beneficiary_type = "paysera"                  # or "bank"
    callback_public_key_file = "/etc/exsync/paysera.pem"  # or callback_public_key_pem = "-----BEGIN…";
                                                  # verifies callbacks at POST /webhooks/paysera/ps

Callbacks (``POST /webhooks/paysera/<name>``): a form (or JSON object) with ``event`` (a JSON string)
and ``sign`` (base64 RSA PKCS#1 v1.5 SHA-256 over the raw ``event``), verified with the configured public
key (never fetched at run time). Paysera retries a delivery without a 2xx. Answers:

  200 text ``OK``                 stored; a signed event that cannot be used (not an object, text Postgres
                                  refuses) is kept dead for a person and also answered ``OK``
  401 {"error": "bad_signature" | "bad_base64"}   not from Paysera (wrong key, changed event). A name that
                                  is not configured, or has no callback key, is verified against a key
                                  nobody has: the same 401, so names cannot be probed.
"""
from __future__ import annotations

import functools
import logging
import re
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

log = logging.getLogger("exsync.providers.paysera")


def _public_key(pem: str) -> str:
    from providers.paysera.callbacks import load_public_key

    load_public_key(pem)  # ValueError names what is wrong
    return pem


def rail(cfg: ProviderConfig, store: PayoutStore) -> PayoutRail:
    from providers.paysera import PayseraClient
    from providers.paysera.payout import PayseraRail

    client = PayseraClient(cfg.base_url, cfg.options["mac_id"], cfg.secrets["mac_key"], timeout=cfg.timeout)
    # The transfer id is kept with our payout: find() and sign-after-restart use it.
    return PayseraRail(client, name=cfg.name, payer_account=cfg.options.get("payer_account"),
                       beneficiary_type=cfg.options.get("beneficiary_type", "paysera"),
                       store_id=store.save_ref, load_id=store.load_ref, wallet_id=cfg.options.get("wallet_id"))


def sandbox(**knobs: Any) -> Any:
    from providers.paysera.sandbox import create_app

    return create_app(**knobs)


def describe_sandbox(app: Any, url: str) -> Mapping[str, Any]:
    from providers.paysera.sandbox import describe

    return describe(app)


# -- callbacks ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _nobody() -> Any:
    """A verifier whose private key was thrown away: nothing verifies against it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from providers.paysera.callbacks import CallbackVerifier

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return CallbackVerifier(key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))


def payload_of(event: Any) -> dict[str, Any]:
    """The hint kept in the inbox: which transfer, which status, and its purpose (it carries our key)."""
    data = event.data or {}
    purpose = data.get("purpose")
    if not isinstance(purpose, dict):
        purpose = {}
    return {"type": event.type, "object": event.object,
            "transfer_id": None if data.get("id") is None else str(data.get("id"))[:100],
            "status": None if data.get("status") is None else str(data.get("status"))[:64],
            "details": str(purpose.get("details") or "")[:1000] or None}


def verifier(cfg: ProviderConfig | None) -> Verifier:
    from providers.paysera.callbacks import CallbackSignatureError, CallbackVerifier

    pem = cfg.options.get("callback_public_key_pem") if cfg is not None else None
    if cfg is not None and not pem:
        log.warning("paysera callbacks for %r are refused: no callback_public_key_pem is configured", cfg.name)
    check = CallbackVerifier(pem) if pem else _nobody()

    def verify(req: CallbackRequest) -> Verdict:
        try:
            return Verified(payload_of(check.verify(req.form["event"], req.form["sign"])))
        except CallbackSignatureError as exc:
            if exc.code != "bad_event":
                return Answer(401, {"error": str(exc.code or "bad_signature")})
            if not pem:  # cannot happen (nobody holds that key), and must never store
                return Answer(401, {"error": "bad_signature"})
            return Verified(None, problem=f"event: {exc}")  # signed by Paysera but not an event object

    return verify


def _key_re() -> re.Pattern:
    from providers.paysera.payout import KEY_PREFIX

    return re.compile(r"(?:^|\s)" + re.escape(KEY_PREFIX) + r"(\S{1,64})(?:\s|$)")


def hint(payload: Mapping[str, Any]) -> PayoutHint:
    """The transfer id (``payouts.provider_ref``); failing that, our key carried in the purpose details
    (``#exsync:<key>``, providers.paysera.payout.key_token), e.g. for a re-created draft."""
    transfer_id = payload.get("transfer_id")
    transfer_id = str(transfer_id) if transfer_id else None
    m = _key_re().search(str(payload.get("details") or ""))
    key = m.group(1) if m is not None else None
    if transfer_id is None and key is None:
        raise HintRefused("payload names no transfer and carries no key")
    label = f"key {key!r} (transfer {transfer_id})" if key is not None else f"transfer {transfer_id}"
    return PayoutHint(key=key, provider_ref=transfer_id, status=payload.get("status"), label=label)


def accepted(event_id: int, dead: str | None) -> Answer:
    # No body is documented for Paysera's transfer callbacks; "OK" is what its other callbacks expect.
    return Answer(200, text="OK")


# The NUL written as the character itself: schemathesis ignores a "\u0000" escape inside a character class.
_TEXT = {"type": "string", "minLength": 1, "pattern": "^[^\x00]*$"}
_FORM = {"type": "object", "required": ["event", "sign"],
         "properties": {"event": {**_TEXT, "description": "the event as a JSON string, as signed"},
                        "sign": {**_TEXT, "description": "base64 RSA PKCS#1 v1.5 SHA-256 of event"}}}
OPENAPI = {
    "summary": "Paysera's transfer callbacks",
    "description": "Verified with the configured Paysera public key; the event is a hint: the worker asks Paysera.",
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _FORM},
                                                  "multipart/form-data": {"schema": _FORM},
                                                  "application/json": {"schema": _FORM}}},
    "responses": {
        200: {"description": "stored (or kept dead for a person)",
              "content": {"text/plain": {"schema": {"const": "OK"}}}},
        401: {"description": "not from Paysera (wrong key or changed event)",
              "content": {"application/json": {"schema": {
                  "type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string", "description": "bad_signature, bad_base64"}}}}}},
    },
}

DESCRIPTOR = Descriptor(
    type="paysera",
    title="Paysera",
    options=(
        Option("mac_id", "text", required=True),
        Option("mac_key_env", "secret", required=True, help="the env var holding the MAC key"),
        Option("payer_account", "text"),
        Option("wallet_id", "text", help="the wallet whose balance /metrics shows (optional)"),
        Option("beneficiary_type", "choice", choices=("paysera", "bank"), default="paysera"),
        Option("callback_public_key_pem", "text", check=_public_key,
               help="verifies callbacks (PEM key or certificate)"),
        Option("callback_public_key_file", "file", into="callback_public_key_pem", check=_public_key,
               help="the same, read from a file"),
    ),
    rail=rail,
    sandbox=sandbox,
    describe_sandbox=describe_sandbox,
    callbacks=Callbacks(verifier=verifier, hint=hint, accepted=accepted, form_fields=("event", "sign"),
                        openapi=OPENAPI),
)
