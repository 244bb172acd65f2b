"""Run the Alembic migrations programmatically (`fedgate db upgrade`, and at start-up), and tell whether a
database's schema is the one this code needs (start-up and the readiness probe)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from gateway.db.engine import async_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
CURRENT_REVISION = "SELECT version_num FROM alembic_version"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to run from several replicas at once (advisory lock)."""
    command.upgrade(alembic_config(url), revision)


@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head this code migrates to, and every revision it knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    assert head is not None, "the migrations have one head"
    return head, frozenset(r.revision for r in script.walk_revisions())


def head_revision() -> str:
    return _revisions()[0]


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this code's migrations.

    `current`: at this code's head. `older`: a revision this code knows, before its head, or no schema at all
    (`fedgate db upgrade` brings it up). `newer`: a revision this code does not know, written by a newer
    release during a rolling update; migrations only add what older code ignores, so it is served.
    """

    state: str  # current | older | newer
    revision: str  # the database's ("" when it has none)
    head: str  # this code's

    @property
    def servable(self) -> bool:
        return self.state != "older"

    def report(self) -> dict[str, str]:
        return {"state": self.state, "revision": self.revision or "none", "expected": self.head}


def schema_state(revision: str | None) -> SchemaState:
    head, known = _revisions()
    found = revision or ""
    if found == head:
        return SchemaState("current", found, head)
    if not found or found in known:
        return SchemaState("older", found, head)
    return SchemaState("newer", found, head)


async def database_revision(connection: Any) -> str | None:
    """The schema's revision on an asyncpg connection; None when the database has no schema yet."""
    try:
        revision = await connection.fetchval(CURRENT_REVISION)
    except Exception as exc:
        if _sqlstate(exc) == "42P01":  # undefined_table: never migrated
            return None
        raise
    return str(revision) if revision is not None else None


def _sqlstate(exc: BaseException | None) -> str | None:
    """PostgreSQL's error code, raised by asyncpg directly or wrapped by SQLAlchemy."""
    while exc is not None:
        if (code := getattr(exc, "sqlstate", None)) is not None:
            return str(code)
        exc = getattr(exc, "orig", None) or exc.__cause__
    return None


class DatabaseUnreachable(Exception):
    pass


class UnreadableDatabaseUrl(DatabaseUnreachable):
    """`database.url` cannot be read as a URL. The message names none of it: the parser's own error quotes the part
    it choked on, and a password holding `/`, `#` or `?` (common in generated ones) is cut there, so that part was
    the password, printed to the start-up log."""

    def __init__(self) -> None:
        super().__init__(
            "it is not a URL the gateway can read (a user name or password holding one of / ? # @ : [ ] % or a space "
            "must be percent-encoded); the parser's error is not shown, it may quote the password"
        )


def wait_for_database(url: str, timeout_seconds: float) -> str | None:
    """Connect to the database, retrying for up to `timeout_seconds` (each failure logged); its schema revision.

    Raises DatabaseUnreachable, naming the last failure, when it never answers in time.
    """
    return asyncio.run(_wait_for_database(url, timeout_seconds))


async def _wait_for_database(url: str, timeout_seconds: float) -> str | None:
    import asyncpg

    dsn = async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)
    started = time.monotonic()
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            connection = await asyncpg.connect(dsn, timeout=min(10.0, max(1.0, timeout_seconds)))
        except ValueError:  # the DSN's parsing (urllib's and asyncpg's): its message may quote the password
            raise UnreadableDatabaseUrl() from None
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            waited = time.monotonic() - started
            reason = f"{type(exc).__name__}: {exc}"[:300]
            if waited + delay > timeout_seconds:
                raise DatabaseUnreachable(
                    f"the database did not answer within {timeout_seconds:.0f} s ({attempt} attempts; last: {reason})"
                ) from exc
            log.warning(
                "waiting for the database",
                extra={"attempt": attempt, "waited_seconds": round(waited, 1), "reason": reason},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        try:
            revision = await database_revision(connection)
        finally:
            await connection.close()
        if attempt > 1:
            log.info("database reachable", extra={"attempts": attempt})
        return revision
