"""Structured logging: a JSON formatter and a filter that keeps API keys out of every line."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
from datetime import UTC, datetime

_KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")
# Shapes of provider keys, for keys that reach a log line without being in the environment
# (a catalog entry's key, a key echoed back in a provider's error).
_KEY_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,})")
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Secrets read into the settings: the process environment no longer holds them once the server
# runs (dreamytin.environment), but they must stay out of the logs.
_secrets: set[str] = set()
# The servers' own loggers, which log outside the handlers of LOGGING (uvicorn configures its
# own before Django starts): uvicorn's access log writes the request's query string as sent.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "daphne.access", "daphne.server")


def secrets_register(*values: str | None) -> None:
    _secrets.update(value for value in values if value and len(value) >= 8)


def redact(text: str) -> str:
    for value in {os.environ.get(name, "") for name in _KEY_VARIABLES} | _secrets:
        if len(value) >= 8:
            text = text.replace(value, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class RedactArgsFilter(logging.Filter):
    """For loggers whose formatter reads `record.args` itself (uvicorn's access formatter
    unpacks a 5-tuple): each string argument is redacted in place, and the tuple keeps its shape."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


class OneLineFilter(logging.Filter):
    """A record worth one line, never a traceback: a refused Host header is a stranger's probe,
    not a fault of the server, and its 35-line traceback per request would let anyone flood
    the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def logging_configure(config: dict[str, object]) -> None:
    """LOGGING_CONFIG: Django's dictConfig, then redaction on the servers' own loggers (a
    filter on the logger, so the handlers and formats the server set stay as they are)."""
    logging.config.dictConfig(config)
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactArgsFilter) for existing in server_logger.filters):
            server_logger.addFilter(RedactArgsFilter())


class TextFormatter(logging.Formatter):
    """The plain format, redacted as a whole: a traceback's exception messages (a provider's
    error that echoes the key) are formatted here, after the filter saw the record."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; `extra={...}` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))
