"""Provider clients, usable as a library: nothing here imports the rest of exsync."""
from providers.errors import (
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)

__all__ = [
    "ProviderError",
    "RetryableError",
    "ConnectionFailedError",
    "BadResponseError",
    "UnknownOutcomeError",
    "PermanentError",
    "ValidationError",
    "AuthError",
    "NotFoundError",
    "InsufficientFundsError",
]
