"""ZaleyCash API v2: client, typed results, error map, payout rail.

The sandbox (a faithful fake server) lives in :mod:`providers.zaleycash.sandbox` and is not imported here.
"""
from providers.zaleycash.client import ZaleyCashClient
from providers.zaleycash.errors import (
    CODES,
    BadResponseError,
    DuplicateOperationError,
    InvalidTokenError,
    OperationNotFoundError,
    OperationsProtectedError,
    OperationStateError,
    PartnerError,
    StatusNotAvailableError,
    TransactionProcessingError,
    UserNotFoundError,
    WrongCurrencyError,
    check_envelope,
    error_for,
)
from providers.zaleycash.payout import LookupUnavailableError, ProbeRefusedError, ZaleyCashRail, transfer_state
from providers.zaleycash.types import (
    Balance,
    Balances,
    Currency,
    Service,
    Token,
    Transfer,
    TransferStatus,
    User,
)

__all__ = [
    "ZaleyCashClient", "ZaleyCashRail", "transfer_state",
    # errors
    "CODES", "InvalidTokenError", "UserNotFoundError", "OperationsProtectedError", "TransactionProcessingError",
    "DuplicateOperationError", "OperationStateError", "PartnerError", "WrongCurrencyError",
    "OperationNotFoundError", "StatusNotAvailableError", "BadResponseError", "LookupUnavailableError",
    "ProbeRefusedError", "error_for", "check_envelope",
    # types
    "Token", "Service", "User", "Balance", "Balances", "Currency", "Transfer", "TransferStatus",
]
