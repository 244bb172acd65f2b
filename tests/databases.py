"""Databases of a test's own on the session's embedded PostgreSQL: fresh migrated ones for tests that need real
SQL but no stack, and empty ones for a module's own gateway processes (which migrate them when they start)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.db.migrate import upgrade
from gateway.db.pools import plain_dsn


@contextmanager
def empty_database(server_url: str, prefix: str) -> Iterator[str]:
    """An empty database of its own on the server at `server_url`, from outside an event loop (a gateway started on
    it, or `upgrade`, migrates it); dropped afterwards, which ends the sessions still open on it."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(execute(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        asyncio.run(execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def execute(url: str, statement: str) -> None:
    """One statement (or several, without arguments) on a connection of its own."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def migrated_database(server_url: str, prefix: str, revision: str = "head") -> AsyncIterator[str]:
    """A database of its own on the server at `server_url`, migrated to `revision`; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        await asyncio.to_thread(upgrade, url, revision)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def sql(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    """The rows of one statement, on a connection of its own (made and closed here)."""
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


def rows(url: str, statement: str, *args: object) -> list[dict[str, object]]:
    """`sql` from outside an event loop, each row as a dict."""
    return [dict(row) for row in asyncio.run(sql(url, statement, *args))]
