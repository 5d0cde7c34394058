"""The signed payout/pay-in gateway (docs/providers/gateway.md): signing, client, typed results, error map,
payout rail.

The sandbox (a faithful fake server) lives in :mod:`providers.gateway.sandbox` and is not imported here.
"""
from providers.gateway.callbacks import decode_callback, parse_callback, parse_payin_callback
from providers.gateway.client import DEFAULT_PATHS, GatewayClient, GatewayPaths
from providers.gateway.errors import (
    BadResponseError,
    CallbackError,
    CurrencyMismatchError,
    ForbiddenError,
    IdempotencyConflictError,
    InsufficientBalanceError,
    PayInNotFoundError,
    PayoutNotFoundError,
    check_envelope,
    error_for,
    parse_error_body,
)
from providers.gateway.payout import GatewayRail
from providers.gateway.signing import (
    DEFAULT_HEADERS,
    DEFAULT_WINDOW,
    HeaderNames,
    InvalidApiKeyError,
    InvalidSignatureError,
    InvalidTimestampError,
    MissingApiKeyError,
    MissingTimestampError,
    ReplayCache,
    ReplayError,
    SignatureError,
    TimestampWindowError,
    path_with_query_from_environ,
    sign,
    verify,
)
from providers.gateway.types import Balance, PayIn, Payout

__all__ = [
    "GatewayClient", "GatewayPaths", "DEFAULT_PATHS", "GatewayRail",
    "Payout", "PayIn", "Balance",
    "parse_callback", "parse_payin_callback", "decode_callback",
    # signing
    "sign", "verify", "path_with_query_from_environ", "ReplayCache", "HeaderNames", "DEFAULT_HEADERS",
    "DEFAULT_WINDOW",
    # errors
    "SignatureError", "MissingApiKeyError", "InvalidApiKeyError", "MissingTimestampError", "InvalidTimestampError",
    "TimestampWindowError", "InvalidSignatureError", "ReplayError", "ForbiddenError", "PayoutNotFoundError",
    "PayInNotFoundError", "CurrencyMismatchError", "InsufficientBalanceError", "IdempotencyConflictError",
    "BadResponseError", "CallbackError", "error_for", "check_envelope", "parse_error_body",
]
