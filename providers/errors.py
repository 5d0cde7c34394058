"""One error hierarchy for every provider client.

Every error carries the provider's own ``code`` and ``message`` and says whether the same call may
simply be sent again (``retryable``). The worker decides what to do from the class alone:

    ProviderError
    ├── RetryableError            send the same call again later (5xx, 429, maintenance, connect failed)
    │   └── ConnectionFailedError the request never left this machine: safe to resend even if not idempotent
    ├── UnknownOutcomeError       the request may have been executed (timeout/reset after sending):
    │                             ask the provider what happened before any new call that moves money
    ├── PermanentError            the same call will fail again (validation, wrong currency, disabled account)
    │   └── ValidationError       with ``fields``: {field name: message}
    ├── AuthError                 credentials, IP allow-list or method permissions: an operator must act
    ├── NotFoundError             the object does not exist (or no longer exists) at the provider
    └── InsufficientFundsError    the payer account lacks money: park and alert, retry much later
"""
from __future__ import annotations

from typing import Any, Mapping


class ProviderError(Exception):
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: Any = None,
        http_status: int | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.provider = provider
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.provider or "provider"]
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        return f"{': '.join([' '.join(parts), self.message])}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, http_status={self.http_status!r})"

    def __reduce__(self):  # keeps errors picklable for Celery results and logs
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class RetryableError(ProviderError):
    retryable = True


class ConnectionFailedError(RetryableError):
    """The connection could not be opened: nothing was sent."""


class UnknownOutcomeError(ProviderError):
    """The request was (or may have been) sent but no answer came back."""

    retryable = False


class PermanentError(ProviderError):
    retryable = False


class ValidationError(PermanentError):
    def __init__(self, message: str, *, fields: Mapping[str, str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.fields = dict(fields or {})


class AuthError(ProviderError):
    retryable = False


class NotFoundError(ProviderError):
    retryable = False


class InsufficientFundsError(ProviderError):
    retryable = False


__all__ = [
    "ProviderError",
    "RetryableError",
    "ConnectionFailedError",
    "UnknownOutcomeError",
    "PermanentError",
    "ValidationError",
    "AuthError",
    "NotFoundError",
    "InsufficientFundsError",
]
