"""What a payout provider tells the rest of exsync about itself: one :class:`Descriptor` per provider.

Each payout provider package holds a ``descriptor.py`` with one ``DESCRIPTOR``, and
``providers/registry.py`` lists it. The rest of exsync only loops over the registry:

- the config loader (core) reads ``[providers.<name>]`` tables of ``type = "<descriptor.type>"`` by its
  ``options`` schema and raises the errors itself, naming the key;
- the worker builds the rail with ``rail(config, store)`` and reads a stored callback with
  ``callbacks.hint(payload)``;
- the web app serves ``POST /webhooks/<type>/<name>`` with ``callbacks`` (verify, answer, document);
- ``exsync sandbox <type>`` serves ``sandbox(**knobs)``.

Plain data and functions only: ``providers`` imports nothing of exsync, so nothing here may either.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Protocol, Union

from providers.payouts import PayoutRail, PayoutRequest

# How the config loader reads an option's value (core/payout_config.py holds the readers):
#   text    a non-empty string
#   whole   a whole number within [minimum, maximum]
#   number  a number greater than minimum (default 0)
#   url     an http(s) URL with a host (any path)
#   choice  one of ``choices``
#   table   a table of name = whole number (each at least ``minimum``, default 1)
#   secret  the NAME of an environment variable; its value is read from the environment into ``secrets``
#   file    a path; the file's text is read into ``options``
OPTION_TYPES = frozenset({"text", "whole", "number", "url", "choice", "table", "secret", "file"})


@dataclass(frozen=True)
class Option:
    """One key of ``[providers.<name>]`` besides ``type``, ``base_url`` and ``timeout`` (common to all)."""

    name: str
    type: str = "text"
    required: bool = False
    default: Any = None  # used when the key is absent (read like a value from the file); None: left out
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    # The key it fills in ``options`` (or ``secrets``); default: ``name``, minus ``_env`` for a secret.
    # Two options filling one key are alternatives: giving both is an error.
    into: str | None = None
    # A further rule on the typed value: returns it (normalised) or raises ValueError(problem).
    check: Callable[[Any], Any] | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: unknown type {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"option {self.name!r}: a choice needs choices")

    @property
    def target(self) -> str:
        if self.into:
            return self.into
        return self.name.removesuffix("_env") if self.type == "secret" else self.name


@dataclass(frozen=True)
class ProviderConfig:
    """One configured ``[providers.<name>]``: what its descriptor's schema made of the table."""

    name: str
    type: str
    base_url: str
    timeout: float = 15.0
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


class PayoutStore(Protocol):
    """exsync's stored payouts, as a rail may need them (the worker implements it over Postgres)."""

    def request(self, key: str) -> PayoutRequest | None:
        """The stored payout with idempotency key ``key`` as a request (None: unknown or incomplete)."""

    def save_ref(self, key: str, ref: str) -> None:
        """Keep the provider's own id of payout ``key``."""

    def load_ref(self, key: str) -> str | None:
        """The provider's id kept for payout ``key``, if any."""


# -- callbacks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackRequest:
    """What the receiver hands a verifier: the raw parts, read before anything is parsed."""

    method: str
    target: str  # path and query exactly as received (what a signature covers)
    headers: Any  # the request's headers: a mapping whose .get() ignores case (werkzeug's Headers)
    body: bytes
    now: float  # time.time() at receipt
    # The fields named by ``Callbacks.form_fields``, each present once, non-empty, clean text (the receiver
    # answered 400 for anything else); empty when the descriptor names none.
    form: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: JSON when ``text`` is None."""

    status: int
    json: Any = None
    text: str | None = None


@dataclass(frozen=True)
class Verified:
    """A callback that is from the provider. ``payload``: the hint kept in the inbox (checked plain JSON);
    ``problem``: why a verified callback cannot be used (it is kept dead with its raw bytes for a person)."""

    payload: Mapping[str, Any] | None
    problem: str | None = None


# A verifier answers a refusal (an Answer: nothing is stored) or Verified.
Verdict = Union[Answer, Verified]
Verifier = Callable[[CallbackRequest], Verdict]


@dataclass(frozen=True)
class PayoutHint:
    """What a stored callback says about a payout. A hint: it makes the payout due for a check, and the
    provider's ``find()`` alone decides its state.

    ``provider_ref`` is looked up first (the provider's id, ``payouts.provider_ref``), then ``key`` (our
    idempotency key). ``label`` names it in the event's note ("external_id 'k'", "transfer 17")."""

    key: str | None = None
    provider_ref: str | None = None
    status: str | None = None
    label: str = ""


class HintRefused(ValueError):
    """A stored payload that names no payout: the event is dead (nothing to retry)."""


@dataclass(frozen=True)
class Callbacks:
    """How a provider calls us back: ``POST /webhooks/<type>/<name>``."""

    # The verifier of one configured provider; ``None``: a name nobody configured (or one missing what
    # verification needs) — verify against a key nobody has, so the answer is a wrong key's and names
    # cannot be probed. Built once per configuration and kept (it may cache a parsed key or replays).
    verifier: Callable[[ProviderConfig | None], Verifier]
    # The worker's reading of a stored payload; raises HintRefused.
    hint: Callable[[Mapping[str, Any]], PayoutHint]
    # The 2xx for a stored event: (event id, None) when received, (event id, reason) when kept dead.
    accepted: Callable[[int, str | None], Answer]
    # Form (or JSON object) fields the receiver extracts before verifying (400 when one is wrong).
    form_fields: tuple[str, ...] = ()
    # The OpenAPI operation: summary, description, parameters, requestBody, and the responses this
    # provider decides (its 2xx and its refusals). The receiver adds 400, 413, 429 and 503.
    openapi: Mapping[str, Any] = field(default_factory=dict)


# -- the descriptor -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """Everything exsync needs to configure, run, fake and hear from one payout provider."""

    type: str  # ``type = "…"`` in [providers.<name>], the URL segment of its callbacks, the inbox provider
    title: str  # for people: "ZaleyCash"
    options: tuple[Option, ...]
    # options + secrets (+ our stored payouts) → the PayoutRail (providers/payouts.py)
    rail: Callable[[ProviderConfig, PayoutStore], PayoutRail]
    # create_app(**knobs): the sandbox's WSGI app; takes at least latency, error_rate,
    # fail_after_commit_rate and seed (``exsync sandbox``), and has ``app.engine``.
    sandbox: Callable[..., Any]
    # (app, url) → what to print on start: lines, or a mapping of name → value
    describe_sandbox: Callable[[Any, str], Union[str, Mapping[str, Any]]]
    callbacks: Callbacks | None = None  # None: the provider never calls us back
    # The currencies a configured provider can pay (None: any); a route rule naming another is an error.
    currencies: Callable[[Mapping[str, Any]], Collection[str] | None] | None = None

    def __post_init__(self) -> None:
        names = [o.name for o in self.options]
        if len(set(names)) != len(names) or {"type", "base_url", "timeout"} & set(names):
            raise ValueError(f"provider {self.type!r}: option names must be unique and not type/base_url/timeout")
