"""How a relay takes up an outbox key, on a migrated database (the session's embedded PostgreSQL).

The central store is an in-test `apply` that can be held inside its call: while it is, no transaction
is open for the relay (only the key's advisory lock is held, on an idle connection), another relay
(another replica: an engine of its own) passes that key by and takes the next, and what was applied
or refused is marked in one short transaction before the key is let go. A renumbered workspace waits
for the relays at work on its keys.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from gateway.core.errors import InvalidState
from gateway.db.engine import async_url
from gateway.db.locks import LockClass
from gateway.db.models import OutboxRow
from gateway.dual import outbox
from gateway.dual.moves import DualMoves
from gateway.dual.outbox import Applied, Relay
from gateway.stores.client import Refused, Transient
from tests.support.waiting import settled

APP = "fedgate-relay-test"


def _engine(url: str, replica: str) -> AsyncEngine:
    settings = {"application_name": f"{APP}-{replica}"}
    return create_async_engine(async_url(url), pool_size=4, max_overflow=0, connect_args={"server_settings": settings})


@pytest.fixture
async def replicas(database: str) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], ...]]:
    engines = [_engine(database, "one"), _engine(database, "two")]
    yield tuple(async_sessionmaker(engine, expire_on_commit=False) for engine in engines)
    for engine in engines:
        await engine.dispose()


@pytest.fixture
async def observer(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    yield connection
    await connection.close()


async def _queue(sessionmaker: async_sessionmaker[AsyncSession], *keys: str, workspace_id: int = 7) -> None:
    async with sessionmaker() as session, session.begin():
        for key in keys:
            await session.execute(
                insert(OutboxRow).values(
                    workspace_id=workspace_id, order_key=key, route="POST /mlflow/runs/set-tag", payload={}
                )
            )


async def _entries(sessionmaker: async_sessionmaker[AsyncSession]) -> list[tuple[int, str, str, int]]:
    async with sessionmaker() as session:
        rows = (await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars().all()
        return [(row.id, row.order_key, row.state, row.attempts) for row in rows]


class CentralStore:
    """What the relay calls: notes each group it is given; `hold` keeps the call open until released."""

    def __init__(self, outcome: Applied | None = None) -> None:
        self.groups: list[list[tuple[int, str]]] = []
        self.inside = asyncio.Event()
        self.release = asyncio.Event()
        self.hold = False
        self.outcome = outcome

    async def apply(self, rows: Sequence[OutboxRow]) -> Applied:
        self.groups.append([(row.id, row.order_key) for row in rows])
        if self.hold:
            self.inside.set()
            await self.release.wait()
        return self.outcome or Applied(len(rows))


async def _reachable(workspace_id: int) -> bool:
    return False


def relay(sessionmaker: async_sessionmaker[AsyncSession], store: CentralStore, **options: Any) -> Relay:
    return Relay(sessionmaker, store.apply, _reachable, workers=1, **options)


async def _activity(observer: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await observer.fetch(
        "SELECT application_name, state FROM pg_stat_activity WHERE application_name LIKE $1", f"{APP}-%"
    )
    return sorted((row["application_name"], str(row["state"])) for row in rows)


async def _outbox_locks(observer: asyncpg.Connection) -> int:
    return int(
        await observer.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND granted",
            int(LockClass.OUTBOX_KEY),
        )
    )


async def test_while_a_key_is_applied_no_transaction_is_open_and_another_replica_takes_another_key(
    replicas: tuple[async_sessionmaker[AsyncSession], ...], observer: asyncpg.Connection
) -> None:
    one, two = replicas
    await _queue(one, "7/run:a", "7/run:a", "7/run:b", "7/run:a")
    first, second = CentralStore(), CentralStore()
    first.hold = True
    working = asyncio.create_task(relay(one, first).run_once())
    try:
        await asyncio.wait_for(first.inside.wait(), 10)
        assert first.groups == [[(1, "7/run:a"), (2, "7/run:a"), (4, "7/run:a")]]  # the oldest due head's key, in order
        # (a) Inside the store call only the key's lock is held, on an idle connection: no transaction.
        activity = await _activity(observer)
        assert activity and all(state == "idle" for _, state in activity), activity
        assert await _outbox_locks(observer) == 1
        # (b) Another replica passes the held key by and takes the next; then finds nothing it may take.
        assert await relay(two, second).run_once() == 1
        assert second.groups == [[(3, "7/run:b")]]
        assert await relay(two, second).run_once() == 0
        assert second.groups == [[(3, "7/run:b")]]
        assert [state for _, _, state, _ in await _entries(one)] == ["pending", "pending", "done", "pending"]
        first.release.set()
        assert await asyncio.wait_for(working, 10) == 3
    finally:
        first.release.set()
        await asyncio.gather(working, return_exceptions=True)
    assert [state for _, _, state, _ in await _entries(one)] == ["done"] * 4
    assert await _outbox_locks(observer) == 0  # let go with the round
    assert all(state == "idle" for _, state in await _activity(observer))


async def test_a_failure_is_marked_and_the_key_waits_out_its_back_off(
    replicas: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    one, _ = replicas
    await _queue(one, "7/run:a", "7/run:a", "7/run:a", "7/run:b")
    store = CentralStore(Applied(1, Refused("bad request", status=400)))
    worker = relay(one, store)
    assert await worker.run_once() == 1
    assert [(state, attempts) for _, _, state, attempts in await _entries(one)] == [
        ("done", 0),
        ("pending", 1),  # the entry the refusal stopped at, backed off
        ("pending", 0),  # queued behind it, waiting
        ("pending", 0),
    ]
    store.outcome = Applied(0, Transient("central store down"))
    assert await worker.run_once() == 0  # key a waits out its back-off: key b is taken
    assert store.groups[-1] == [(4, "7/run:b")]
    assert worker._outages == {7}  # noted for the probe, as before
    assert await worker.run_once() == 0 and len(store.groups) == 2  # nothing is due


async def test_a_cancelled_relay_lets_its_key_go_and_its_entries_stay_pending(
    replicas: tuple[async_sessionmaker[AsyncSession], ...], observer: asyncpg.Connection
) -> None:
    one, two = replicas
    await _queue(one, "7/run:a", "7/run:a")
    stuck = CentralStore()
    stuck.hold = True
    working = asyncio.create_task(relay(one, stuck).run_once())
    await asyncio.wait_for(stuck.inside.wait(), 10)
    working.cancel()
    with pytest.raises(asyncio.CancelledError):
        await working
    assert [state for _, _, state, _ in await _entries(one)] == ["pending", "pending"]
    other = CentralStore()
    assert await relay(two, other).run_once() == 2
    assert other.groups == [[(1, "7/run:a"), (2, "7/run:a")]]
    assert await _outbox_locks(observer) == 0


async def test_a_renumber_waits_for_the_relay_at_work_on_the_workspaces_keys(
    replicas: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    one, two = replicas
    await _queue(one, "7/run:a", "7/run:a")
    store = CentralStore()
    store.hold = True
    working = asyncio.create_task(relay(one, store).run_once())
    await asyncio.wait_for(store.inside.wait(), 10)

    async def renumber() -> None:
        async with two() as session, session.begin():
            await DualMoves().renumbered(session, 7, 8)

    moving = asyncio.create_task(renumber())
    try:
        await asyncio.sleep(0.3)
        assert not moving.done()  # waits for the key's relay, as it waited for its row locks before
        store.release.set()
        assert await asyncio.wait_for(working, 10) == 2
        await asyncio.wait_for(moving, 10)
    finally:
        store.release.set()
        await asyncio.gather(working, moving, return_exceptions=True)
    # Applied once, under the old key; carried over as done.
    assert await _entries(one) == [(1, "8/run:a", "done", 0), (2, "8/run:a", "done", 0)]
    assert await relay(two, CentralStore()).run_once() == 0


async def test_a_renumber_that_waits_too_long_for_a_relay_is_refused_and_changes_nothing(
    replicas: tuple[async_sessionmaker[AsyncSession], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "RENUMBER_WAIT_SECONDS", 0.2)
    one, two = replicas
    await _queue(one, "7/run:a")
    store = CentralStore()
    store.hold = True
    working = asyncio.create_task(relay(one, store).run_once())
    try:
        await asyncio.wait_for(store.inside.wait(), 10)
        with pytest.raises(InvalidState, match="being applied to the central store"):
            async with two() as session, session.begin():
                await DualMoves().renumbered(session, 7, 8)
        store.release.set()
        assert await asyncio.wait_for(working, 10) == 1
    finally:
        store.release.set()
        await asyncio.gather(working, return_exceptions=True)
    assert await _entries(one) == [(1, "7/run:a", "done", 0)]


def _head_queries(sessionmaker: async_sessionmaker[AsyncSession]) -> Counter[str]:
    """How many outbox head queries each relay worker (its task's name) has sent through the sessionmaker's engine."""
    sent: Counter[str] = Counter()
    engine = sessionmaker.kw["bind"]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*args: Any) -> None:
        statement = args[2]
        if "FROM outbox" in statement and "ORDER BY" in statement and (task := asyncio.current_task()) is not None:
            sent[task.get_name()] += 1

    return sent


async def test_idle_workers_wait_for_a_wake_while_the_scout_alone_looks_again(
    replicas: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    one, two = replicas
    sent = _head_queries(one)
    store = CentralStore()
    workers = Relay(one, store.apply, _reachable, workers=4, idle_seconds=0.02)
    workers.start()
    try:
        await settled(lambda: sent["outbox relay 0"] >= 25, "the scout's rounds")
        # Every worker looked once when it started; since then only the scout has.
        assert {name: count for name, count in sent.items() if name != "outbox relay 0"} == {
            f"outbox relay {i}": 1 for i in (1, 2, 3)
        }
        # Entries another replica queued and left are found by the scout.
        await _queue(two, "7/run:a")
        await settled(lambda: store.groups == [[(1, "7/run:a")]], "the entry applied by the scout")
    finally:
        await workers.stop()


async def test_an_entry_this_process_queued_is_taken_up_on_the_wake_not_at_the_scouts_next_round(
    replicas: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    one, _ = replicas
    sent = _head_queries(one)
    store = CentralStore()
    workers = Relay(one, store.apply, _reachable, workers=2, idle_seconds=3600)
    workers.start()
    try:
        await settled(lambda: sent["outbox relay 0"] == 1 and sent["outbox relay 1"] == 1, "each worker's first round")
        await _queue(one, "7/run:a", "7/run:b")
        workers.wake()  # as the outbox capture does once its entry is committed
        await settled(lambda: sorted(map(tuple, store.groups)) == [((1, "7/run:a"),), ((2, "7/run:b"),)], "both keys")
    finally:
        await workers.stop()
