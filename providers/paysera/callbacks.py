"""Verify Paysera callbacks: form fields ``event`` (a JSON string) and ``sign`` (base64).

``sign`` is an RSA PKCS#1 v1.5 signature with SHA-256 over the raw ``event`` string, made with Paysera's
private key. Verify it with Paysera's public key, configured as a PEM (Paysera publishes it at
``https://wallet.paysera.com/publickey``; never fetch it at run time: a key fetched over the network on
demand is a key an attacker can swap)::

    verifier = CallbackVerifier(settings.paysera_public_key_pem)
    event = verifier.verify_form(request.form)       # raises CallbackSignatureError
    event.type, event.object, event.data             # "done", "transfer", {...}

A callback is a hint, not the truth: re-read the object (``get_transfer``) before changing any state.
Uses the ``cryptography`` package.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import load_pem_x509_certificate

from providers.errors import PermanentError
from providers.paysera.errors import PROVIDER
from providers.paysera.types import Transfer

__all__ = ["CallbackEvent", "CallbackSignatureError", "CallbackVerifier", "verify_callback", "load_public_key",
           "sign_event"]


class CallbackSignatureError(PermanentError):
    """A callback that must not be trusted. ``code``: ``missing_field`` (no event/sign), ``bad_base64``
    (sign is not base64), ``bad_signature`` (wrong key or a changed event), ``bad_event`` (signed but not
    an event object). Answer it with 4xx and do not act on it."""


@dataclass(frozen=True)
class CallbackEvent:
    """``{"type": …, "object": …, "data": {…}}``; ``raw`` is the event string exactly as signed."""

    type: str | None
    object: str | None
    data: dict
    raw: str = field(repr=False)

    @property
    def transfer(self) -> Transfer | None:
        """The data as a :class:`Transfer` when the event is about one."""
        return Transfer.from_raw(self.data) if self.object == "transfer" else None


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM public key or certificate; ValueError for anything else."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key: object  # the two loaders name different unions of key types; only RSA is accepted below
    try:
        if b"BEGIN CERTIFICATE" in data:
            key = load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key or certificate ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the callback key must be an RSA key")
    return key


def _err(code: str, message: str) -> CallbackSignatureError:
    return CallbackSignatureError(message, code=code, provider=PROVIDER)


class CallbackVerifier:
    """Holds one configured public key; thread-safe."""

    def __init__(self, public_key_pem: str | bytes) -> None:
        self._key = load_public_key(public_key_pem)

    def verify(self, event: str | bytes | None, sign: str | bytes | None) -> CallbackEvent:
        """Check ``sign`` over the raw ``event`` string and parse it; raise :class:`CallbackSignatureError`."""
        if event is None or event == "" or event == b"":
            raise _err("missing_field", "callback has no event field")
        if sign is None or sign == "" or sign == b"":
            raise _err("missing_field", "callback has no sign field")
        try:
            raw = event if isinstance(event, bytes) else event.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no signed event can contain one
            raise _err("bad_signature", "callback event is not valid Unicode") from None
        try:
            signature = base64.b64decode(sign, validate=True)
        except (binascii.Error, ValueError):
            raise _err("bad_base64", "callback sign is not valid base64") from None
        try:
            self._key.verify(signature, raw, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise _err("bad_signature", "callback signature does not match the event (wrong key or changed event)") \
                from None
        try:
            obj = json.loads(raw.decode("utf-8"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _err("bad_event", "callback event is not JSON") from None
        if not isinstance(obj, Mapping):
            raise _err("bad_event", "callback event is not an object")
        data = obj.get("data")
        return CallbackEvent(type=None if obj.get("type") is None else str(obj.get("type")),
                             object=None if obj.get("object") is None else str(obj.get("object")),
                             data=dict(data) if isinstance(data, Mapping) else {}, raw=raw.decode("utf-8"))

    def verify_form(self, form: Mapping[str, Any]) -> CallbackEvent:
        """Verify the decoded form of a callback request (``event`` and ``sign`` fields)."""
        return self.verify(form.get("event"), form.get("sign"))


def verify_callback(event: str | bytes | None, sign: str | bytes | None, *,
                    public_key_pem: str | bytes) -> CallbackEvent:
    """One-shot :meth:`CallbackVerifier.verify`."""
    return CallbackVerifier(public_key_pem).verify(event, sign)


def sign_event(private_key: rsa.RSAPrivateKey, event: str) -> str:
    """base64 RSA PKCS#1 v1.5 SHA-256 signature of ``event`` (what Paysera does; used by the sandbox)."""
    return base64.b64encode(private_key.sign(event.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode(
        "ascii")
