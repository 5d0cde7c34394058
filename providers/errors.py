"""One error hierarchy for every provider client.

Every error carries the provider's own ``code`` and ``message`` and says whether the same call may
simply be sent again (``retryable``). The worker decides what to do from the class alone:

    ProviderError
    ├── RetryableError            send the same call again later (5xx, 429, maintenance, connect failed)
    │   ├── ConnectionFailedError the request never left this machine: safe to resend even if not idempotent
    │   └── BadResponseError      an answer that is not the provider's (a proxy page, a truncated body)
    ├── UnknownOutcomeError       the request may have been executed (timeout/reset after sending, a 5xx or
    │                             an unreadable answer to a call that moves money): ask the provider what
    │                             happened before any new call that moves money
    ├── PermanentError            the same call will fail again (validation, wrong currency, disabled account)
    │   └── ValidationError       ``fields``: {field name: message}
    ├── AuthError                 credentials, IP allow-list or method permissions: an operator must act
    ├── NotFoundError             the object does not exist (or no longer exists) at the provider
    └── InsufficientFundsError    the payer account lacks money: park and alert, retry much later

Which answer becomes which class is decided in one place, ``providers.http`` (its ``SEMANTICS`` table and
``error_for``); each provider adds only its own code table (``providers/<name>/errors.py``).
"""
from __future__ import annotations

from typing import Any, Mapping


class ProviderError(Exception):
    """The fields every provider error has (all plain attributes, set here):

    ``message``      the provider's own text when it gave one, else ours (never a secret, never a body)
    ``code``         the provider's own code exactly as sent (``58``, ``"invalid_state"``), else ours
                     (``"http_502"``, ``"read_timeout"``, ``"bad_response"``)
    ``reason``       a stable symbolic name of the case (``"api_id_not_unique"``, ``"server_error"``)
    ``call``         our name of the API call (``"bid_info"``, ``"transfer_internal"``, ``"create_payout"``)
    ``provider``     ``"premium"``, ``"zaleycash"``, ``"gateway"``, ``"paysera"``
    ``http_status``  the answer's HTTP status (None when no answer came)
    ``retry_after``  seconds the provider asked us to wait (``Retry-After``), else None
    ``fields``       {field: message} the provider named (empty when none)
    ``raw_body``     the answer's body: decoded JSON, or its text (at most ``MAX_BODY_TEXT`` characters)
                     when it was not JSON; None when there was no answer. Never shown by ``str``/``repr``.
    """

    retryable: bool = False
    reason: str | None = None  # a subclass may fix its own (the gateway's signature errors do)

    def __init__(
        self,
        message: str,
        *,
        code: Any = None,
        http_status: int | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
        call: str | None = None,
        reason: str | None = None,
        raw_body: Any = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.provider = provider
        self.retry_after = retry_after
        self.call = call
        if reason is not None:
            self.reason = reason
        self.raw_body = raw_body
        self.fields: dict[str, str] = dict(fields or {})

    def __str__(self) -> str:
        parts = [self.provider or "provider"]
        if self.call:
            parts.append(self.call)
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        return f"{' '.join(parts)}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, http_status={self.http_status!r})"

    def __reduce__(self):  # keeps errors picklable for Celery results and logs
        return (_rebuild, (type(self), self.message, self.__dict__))


MAX_BODY_TEXT = 4000  # characters of a non-JSON body kept in ``ProviderError.raw_body``


def _rebuild(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class RetryableError(ProviderError):
    retryable = True


class ConnectionFailedError(RetryableError):
    """The connection could not be opened: nothing was sent."""


class BadResponseError(RetryableError):
    """An answer that is not the provider's (an HTML page from a proxy, a truncated body, JSON of another
    shape) to a call that is safe to repeat. The same answer to a call that moves money is an
    ``UnknownOutcomeError`` instead (see ``providers.http.SEMANTICS``)."""


class UnknownOutcomeError(ProviderError):
    """The request was (or may have been) executed but no usable answer came back."""

    retryable = False


class PermanentError(ProviderError):
    retryable = False


class ValidationError(PermanentError):
    """``fields``: {field name: message} (may be empty when the provider named none)."""


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
    "BadResponseError",
    "UnknownOutcomeError",
    "PermanentError",
    "ValidationError",
    "AuthError",
    "NotFoundError",
    "InsufficientFundsError",
    "MAX_BODY_TEXT",
]
