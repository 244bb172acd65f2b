"""Migration 0008 on a database holding names the new rules refuse: reported and quarantined, never a crash."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from gateway.db.migrate import alembic_config, upgrade

pytestmark = pytest.mark.integration


def fresh_database(database_url: str) -> str:
    name = f"identity_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


def run(url: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return list(await connection.fetch(statement, *args))
        finally:
            await connection.close()

    return asyncio.run(go())


def test_existing_names_that_break_the_rules_are_quarantined_and_reported(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = fresh_database(database_url)
    script = ScriptDirectory.from_config(alembic_config(url))
    before = script.get_revision("0008").down_revision
    assert isinstance(before, str)
    upgrade(url, before)
    rows = {
        "plain": ("user", "plain"),  # a name an IdP let someone choose
        "marker": ("user", "bootstrap,admin"),  # the bootstrap admin's view-owner marker
        "mailish": ("group", "team@corp.example"),
        "kept": ("group", "shared"),
        "taken": ("service_principal", "shared"),  # two kinds, one name: the younger one yields
        "user": ("user", "ok@example.com"),
        "sp": ("service_principal", "3f1c2b9e-7d4a-4c1e-9b2f-0123456789ab"),
    }
    ids = {
        key: run(url, "INSERT INTO principals (kind, name) VALUES ($1, $2) RETURNING id", kind, name)[0]["id"]
        for key, (kind, name) in rows.items()
    }
    version = run(url, "SELECT version FROM policy_version")[0]["version"]

    with caplog.at_level("WARNING"):
        upgrade(url, "head")

    state = {r["id"]: (r["name"], r["active"]) for r in run(url, "SELECT id, name, active FROM principals")}
    for key in ("plain", "marker", "mailish"):
        assert state[ids[key]] == (rows[key][1], False)
    assert state[ids["taken"]] == (f"shared~{ids['taken']}", False)
    for key in ("kept", "user", "sp"):
        assert state[ids[key]] == (rows[key][1], True)
    reported = run(url, "SELECT target, details FROM audit_log WHERE action = 'principal.quarantine'")
    assert {r["target"] for r in reported} == {
        f"{rows[key][0]}:{ids[key]}" for key in ("plain", "marker", "mailish", "taken")
    }
    assert "bootstrap,admin" in caplog.text and "disabled" in caplog.text
    assert run(url, "SELECT version FROM policy_version")[0]["version"] > version
    # New rows follow the rules at once; old ones may change only by taking a valid name.
    constraint = run(url, "SELECT convalidated FROM pg_constraint WHERE conname = 'principals_name_charset'")
    assert constraint and constraint[0]["convalidated"] is False
    with pytest.raises(asyncpg.CheckViolationError):
        run(url, "INSERT INTO principals (kind, name) VALUES ('user', 'another-plain')")
    with pytest.raises(asyncpg.CheckViolationError):
        run(url, "UPDATE principals SET active = true WHERE id = $1", ids["plain"])
    run(url, "UPDATE principals SET name = 'plain@example.com', active = true WHERE id = $1", ids["plain"])
    with pytest.raises(asyncpg.UniqueViolationError):
        run(url, "INSERT INTO principals (kind, name) VALUES ('service_principal', 'shared')")


def test_a_clean_database_gets_a_validated_constraint(database_url: str) -> None:
    url = fresh_database(database_url)
    upgrade(url, "head")
    constraint = run(url, "SELECT convalidated FROM pg_constraint WHERE conname = 'principals_name_charset'")
    assert constraint and constraint[0]["convalidated"] is True
