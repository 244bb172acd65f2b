"""Migration 0042 on a database holding open registry requests: one open request per requester is counted by
principal id. Two open requests of one principal under two names (a rename between them) leave the older open and
the newer cancelled; requests of two principals under one name (one deleted, the name given again) both stay open,
and so do the bootstrap admin's and unattributed ones, still counted by name. The session's embedded PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command

from gateway.db.migrate import alembic_config, upgrade
from tests.databases import migrated_database, sql

STAGE = (
    "INSERT INTO registry_requests (workspace_id, model_id, version, to_stage, requested_by, requested_by_id, state) "
    "VALUES (1001, 'm', '1', 'Staging', $1, $2, 'open') RETURNING id"
)
ALIAS = (
    "INSERT INTO registry_requests (workspace_id, model_id, version, alias, requested_by, requested_by_id, state) "
    "VALUES (1001, 'm', '1', 'champion', $1, $2, 'open') RETURNING id"
)
PROMOTION = (
    "INSERT INTO registry_promotion_requests (workspace_id, source_workspace_id, source_model_id, source_name, "
    "source_version, target_name, requested_by, requested_by_id, state) "
    "VALUES (1002, 1001, 'm', 'team-a.m', '1', 'copy', $1, $2, 'open') RETURNING id"
)


async def _made(url: str, statement: str, name: str, principal_id: int | None) -> int:
    return int((await sql(url, statement, name, principal_id))[0]["id"])


async def _open(url: str, table: str) -> set[int]:
    return {int(r["id"]) for r in await sql(url, f"SELECT id FROM {table} WHERE state = 'open'")}


async def test_open_requests_are_one_per_principal_after_the_migration(database_url: str) -> None:
    async with migrated_database(database_url, "open_requests", "0041") as url:
        made: dict[str, dict[str, int]] = {}
        for kind, statement in (("stage", STAGE), ("alias", ALIAS), ("promotion", PROMOTION)):
            made[kind] = {
                "ann": await _made(url, statement, "ann@example.com", 7),
                "ann renamed": await _made(url, statement, "ann.lee@example.com", 7),  # the same principal
                "bootstrap": await _made(url, statement, "admin", None),
                "nobody's": await _made(url, statement, "gone@example.com", None),
            }
        await asyncio.to_thread(upgrade, url, "head")

        kept = ("ann", "bootstrap", "nobody's")
        expected = {made[kind][who] for kind in ("stage", "alias") for who in kept}
        assert await _open(url, "registry_requests") == expected
        assert await _open(url, "registry_promotion_requests") == {made["promotion"][who] for who in kept}
        cancelled = await sql(url, "SELECT id, decided_at FROM registry_requests WHERE state = 'cancelled'")
        assert {row["id"] for row in cancelled} == {made["stage"]["ann renamed"], made["alias"]["ann renamed"]}
        assert all(row["decided_at"] is not None for row in cancelled)

        for statement in (STAGE, ALIAS, PROMOTION):
            await _made(url, statement, "bob@example.com", 8)
            await _made(url, statement, "bob@example.com", 9)  # another principal given the name: refused before
            await _made(url, statement, "carol@example.com", None)
            for name, principal_id in (
                ("ann.lee@example.com", 7),  # ann, under either name
                ("ann@example.com", 7),
                ("bob@example.com", 9),
                ("admin", None),  # no id: still one per name
            ):
                with pytest.raises(asyncpg.UniqueViolationError):
                    await _made(url, statement, name, principal_id)

        # And back: one per name again, the newer of bob's two cancelled.
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0041")
        assert len(await _open(url, "registry_requests")) == len(expected) + 2 * 2
        assert len(await _open(url, "registry_promotion_requests")) == len(kept) + 2
