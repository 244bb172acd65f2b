"""The schema `gateway/db/` declares (ORM models and Core tables) is the schema the migrations create."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from gateway.db.models import Base
from gateway.db.tables import CORE_TABLES
from tests.databases import migrated_database

# Type families: a declaration may say Text where the column is varchar (both bind as strings).
_FAMILIES = {
    "character varying": "string",
    "text": "string",
    "varchar": "string",
    "bigint": "bigint",
    "integer": "integer",
    "timestamp with time zone": "timestamptz",
    "jsonb": "jsonb",
    "double precision": "double",
    "float": "double",
    "boolean": "boolean",
    "bytea": "bytes",
    "date": "date",
}


def _family(type_name: str) -> str:
    name = type_name.lower().strip()
    if name.endswith("[]"):
        return _family(name[:-2]) + "[]"
    return _FAMILIES[name.split("(")[0]]


def _declared(table: sa.TableClause) -> dict[str, str]:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return {column.name: _family(column.type.compile(dialect=dialect)) for column in table.columns}


@pytest.fixture(scope="module")
async def migrated(database_url: str) -> AsyncIterator[dict[str, dict[str, str]]]:
    """Every table of the migrated database (plain or partitioned): its columns and their type families."""
    async with migrated_database(database_url, "schema_unit") as url:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                "SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, NULL) AS type "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"
            )
        finally:
            await connection.close()
    tables: dict[str, dict[str, str]] = {}
    for row in rows:
        tables.setdefault(row["table_name"], {})[row["column_name"]] = _family(row["type"])
    yield tables


@pytest.mark.parametrize("table", [*Base.metadata.sorted_tables, *CORE_TABLES], ids=lambda table: table.name)
def test_declaration_matches_the_migrated_table(table: sa.TableClause, migrated: dict[str, dict[str, str]]) -> None:
    assert table.name in migrated, f"{table.name} is declared but no migration creates it"
    assert _declared(table) == migrated[table.name]


def test_the_family_map_refuses_an_unknown_type() -> None:
    with pytest.raises(KeyError):
        _family("money")
