"""Migration 0055: the database refuses a secret scope, or a workspace's default scope, named `.` or `..`, as the
gateway does. A scope so named before the migration is kept (the gateway lets it be deleted), follows its
workspace when it is renumbered, and can be deleted; a default scope so named is cleared. On a database that held
none, no such scope is taken at all. Downgrading takes them again. The session's embedded PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command

from gateway.db.migrate import alembic_config, upgrade
from tests.databases import migrated_database, sql

SCOPE = "INSERT INTO secret_scopes (workspace_id, name, vault, location) VALUES ($1, $2, 'builtin', $3) RETURNING id"
LINK = (
    "INSERT INTO workspace_links (name, workspace_id, mode, store, description, default_artifact_root, managed_by, "
    "default_secret_scope) VALUES ($1, $2, 'workspace', 'a', '', '', 'api', $3)"
)


async def _scope(url: str, workspace_id: int, name: str) -> int:
    return int((await sql(url, SCOPE, workspace_id, name, f"w{workspace_id}/{name}"))[0]["id"])


async def _defaults(url: str) -> dict[str, str]:
    found = await sql(url, "SELECT name, default_secret_scope FROM workspace_links")
    return {row["name"]: row["default_secret_scope"] for row in found}


async def test_dot_names_are_refused_and_those_made_before_kept_for_their_deletion(database_url: str) -> None:
    async with migrated_database(database_url, "secret_names", "0054") as url:
        before = {name: await _scope(url, 1001, name) for name in ("..", ".", "db")}
        for workspace_id, (name, default) in enumerate(
            (("team-a", ".."), ("team-b", "."), ("team-c", "creds"), ("team-d", "")), start=1001
        ):
            await sql(url, LINK, name, workspace_id, default)
        await asyncio.to_thread(upgrade, url, "head")

        assert {r["name"] for r in await sql(url, "SELECT name FROM secret_scopes")} == {"..", ".", "db"}
        assert await _defaults(url) == {"team-a": "", "team-b": "", "team-c": "creds", "team-d": ""}
        for name in ("..", ".", "w/x", ""):
            with pytest.raises(asyncpg.CheckViolationError):
                await _scope(url, 1001, name)
            with pytest.raises(asyncpg.CheckViolationError):
                await _scope(url, 2002, name)
            if name:  # "" is no default scope
                with pytest.raises(asyncpg.CheckViolationError):
                    await sql(url, "UPDATE workspace_links SET default_secret_scope = $1 WHERE name = 'team-c'", name)
        for name in ("...", ".a", "a..", "x"):
            await _scope(url, 2002, name)
            await sql(url, "UPDATE workspace_links SET default_secret_scope = $1 WHERE name = 'team-c'", name)

        # The scopes made before follow their workspace, and go when deleted; another scope of the name is refused.
        await sql(url, "UPDATE secret_scopes SET workspace_id = 3003 WHERE workspace_id = 1001")
        renumbered = await sql(url, "SELECT id FROM secret_scopes WHERE workspace_id = 3003 ORDER BY id")
        assert [row["id"] for row in renumbered] == sorted(before.values())
        await sql(url, "DELETE FROM secret_scopes WHERE name IN ('.', '..')")
        with pytest.raises(asyncpg.CheckViolationError):
            await _scope(url, 3003, "..")

        await asyncio.to_thread(command.downgrade, alembic_config(url), "0054")
        await _scope(url, 3003, "..")
        await sql(url, "UPDATE workspace_links SET default_secret_scope = '.' WHERE name = 'team-c'")
        with pytest.raises(asyncpg.CheckViolationError):
            await _scope(url, 3003, "w/x")


async def test_a_database_without_such_scopes_takes_none(database_url: str) -> None:
    async with migrated_database(database_url, "secret_names_fresh") as url:
        for name in ("..", "."):
            with pytest.raises(asyncpg.CheckViolationError):
                await _scope(url, 1001, name)
            with pytest.raises(asyncpg.CheckViolationError):
                await sql(url, LINK, "team-a", 1001, name)
        await _scope(url, 1001, "..a")
        await sql(url, LINK, "team-a", 1001, "..a")
