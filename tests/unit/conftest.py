"""Fixtures for the unit tests that need real SQL: a fresh migrated database per test, an engine and a
sessionmaker on it. A module overrides `pool_size` when its tests hold more connections at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.db.engine import make_engine, make_sessionmaker
from tests.databases import migrated_database


@pytest.fixture
async def database(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database of the test's own on the session's embedded PostgreSQL, migrated to head, named after the module."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    async with migrated_database(database_url, module) as url:
        yield url


@pytest.fixture
def pool_size() -> int:
    """The `engine` fixture's pool size."""
    return 2


@pytest.fixture
async def engine(database: str, pool_size: int) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database, pool_size=pool_size)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)
