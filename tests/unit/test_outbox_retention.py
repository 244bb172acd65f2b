"""Applied outbox entries are deleted once past their window, on a migrated database (the session's embedded
PostgreSQL): old done entries go, recent ones, pending entries and dead letters stay, and relays of several
replicas pruning at once delete each entry once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.config import ConfigError, ServerSettings, Settings, StoreSettings, validate_settings
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.models import OutboxRow
from gateway.dual.outbox import Applied, Relay

OLD_DONE = 250


async def _applied(rows: Sequence[OutboxRow]) -> Applied:
    return Applied(len(rows))


async def _reachable(workspace_id: int) -> bool:
    return True


def _relay(sessionmaker: async_sessionmaker[AsyncSession], keep_days: int = 7) -> Relay:
    return Relay(sessionmaker, _applied, _reachable, workers=1, keep_days=keep_days)


async def _seed(database: str) -> None:
    """Old done entries, and what must stay: a done entry inside the window, old pending and dead ones."""
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            """
            INSERT INTO outbox (workspace_id, order_key, route, payload, state, created_at, done_at)
            SELECT 7, '7/run:old-' || n, 'POST /mlflow/runs/set-tag', '{}', 'done',
                   now() - interval '9 days', now() - interval '8 days'
            FROM generate_series(1, $1) AS n
            """,
            OLD_DONE,
        )
        kept = [
            ("7/run:recent", "done", "9 days", "6 days"),  # applied late: counted from done_at
            ("7/run:waiting", "pending", "30 days", None),
            ("7/run:refused", "dead", "30 days", None),
        ]
        for key, state, created, done in kept:
            await connection.execute(
                "INSERT INTO outbox (workspace_id, order_key, route, payload, state, created_at, done_at) "
                "VALUES (7, $1, 'POST /mlflow/runs/set-tag', '{}', $2, "
                "now() - $3::text::interval, now() - $4::text::interval)",
                key,
                state,
                created,
                done,
            )
    finally:
        await connection.close()


async def _left(database: str) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(database)
    try:
        rows = await connection.fetch("SELECT order_key, state FROM outbox ORDER BY order_key")
    finally:
        await connection.close()
    return [(row["order_key"], row["state"]) for row in rows]


KEPT = [("7/run:recent", "done"), ("7/run:refused", "dead"), ("7/run:waiting", "pending")]


async def test_replicas_pruning_at_once_delete_each_old_done_entry_once_and_keep_the_rest(database: str) -> None:
    await _seed(database)
    engines = [make_engine(database, pool_size=2) for _ in range(4)]  # four replicas, each its own pool
    try:
        relays = [_relay(make_sessionmaker(engine)) for engine in engines]
        pruned = await asyncio.gather(*(relay.prune(batch=20) for relay in relays for _ in range(2)))
        assert sum(pruned) == OLD_DONE
        assert await _left(database) == KEPT
        assert await asyncio.gather(*(relay.prune() for relay in relays)) == [0, 0, 0, 0]
        # A shorter window reaches the recent done entry; pending entries and dead letters are never pruned.
        assert await _relay(make_sessionmaker(engines[0]), keep_days=1).prune() == 1
        assert await _left(database) == KEPT[1:]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_started_relay_prunes_at_once(database: str, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await _seed(database)
    # The relay drains the pending entry as well; the dead letter and the recent done entry stay.
    expected = [("7/run:recent", "done"), ("7/run:refused", "dead"), ("7/run:waiting", "done")]
    relay = _relay(sessionmaker)
    relay.start()
    try:
        for _ in range(300):  # until its prune loop has run and the pending entry is applied
            if await _left(database) == expected:
                break
            await asyncio.sleep(0.1)
    finally:
        await relay.stop()
    assert await _left(database) == expected


async def test_the_prune_reads_done_entries_through_their_index(database: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        await connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in await connection.fetch(
                "EXPLAIN SELECT id FROM outbox WHERE state = 'done' AND done_at < now() - make_interval(0, 0, 0, 7)"
            )
        )
    finally:
        await connection.close()
    assert "outbox_done" in plan, plan


def test_an_outbox_history_below_one_day_is_refused() -> None:
    settings = Settings(
        stores={"s": StoreSettings(url="http://127.0.0.1:9")}, server=ServerSettings(outbox_history_days=0)
    )
    with pytest.raises(ConfigError, match="outbox_history_days"):
        validate_settings(settings)
