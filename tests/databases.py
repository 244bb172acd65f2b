"""Fresh, migrated databases on the session's embedded PostgreSQL, for tests that need real SQL but no stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.db.migrate import upgrade
from gateway.db.pools import plain_dsn


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
