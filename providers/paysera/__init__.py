"""Paysera Wallet API and Transfer API: MAC authentication, client, typed results, error map, payout rail,
callback verification.

The sandbox (a faithful fake server) lives in :mod:`providers.paysera.sandbox` and is not imported here.
Callback verification needs the ``cryptography`` package.
"""
from providers.paysera.callbacks import (
    CallbackEvent,
    CallbackSignatureError,
    CallbackVerifier,
    load_public_key,
    verify_callback,
)
from providers.paysera.client import PayseraClient
from providers.paysera.errors import (
    INSUFFICIENT_FUNDS_CODES,
    BadResponseError,
    InvalidStateError,
    check_envelope,
    error_for,
    is_clock_rejection,
)
from providers.paysera.mac import MacError, MacHeader, parse_header, sign, verify
from providers.paysera.payout import PayseraRail, result_for
from providers.paysera.types import (
    TRANSFER_STATUSES,
    Configuration,
    CurrencyBalance,
    FailureStatus,
    Money,
    Transfer,
    TransferPage,
    WalletBalance,
)

__all__ = [
    "PayseraClient", "PayseraRail", "result_for",
    # errors
    "InvalidStateError", "BadResponseError", "INSUFFICIENT_FUNDS_CODES", "error_for", "check_envelope",
    "is_clock_rejection",
    # MAC
    "sign", "verify", "parse_header", "MacHeader", "MacError",
    # callbacks
    "CallbackVerifier", "CallbackEvent", "CallbackSignatureError", "verify_callback", "load_public_key",
    # types
    "Money", "FailureStatus", "Transfer", "TransferPage", "CurrencyBalance", "WalletBalance", "Configuration",
    "TRANSFER_STATUSES",
]
