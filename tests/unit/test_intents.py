"""Write intents on a real PostgreSQL: noted before the send, dropped once settled, and recovered within
seconds when their worker dies (its presence lock ends with its session) or their outcome is unknown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.route_table import RUNS_CREATE, RUNS_LOG_BATCH, RouteSpec
from gateway.federation import intents as intents_module
from gateway.federation.hooks import UnsettledWrite
from gateway.federation.intents import IntentLog, Presence, intent_detail
from gateway.federation.schemas import RequestIds

LINK = WorkspaceLink(
    name="team-a", workspace_id=1001, mode="workspace", store="a", configured_store="a", upstream_workspace=None
)


class Recorder:
    essential = False

    def __init__(self, fail: int = 0, *, coalesce: bool = False) -> None:
        self.seen: list[UnsettledWrite] = []
        self.fail = fail
        self.coalesce = coalesce

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec == RUNS_LOG_BATCH

    def coalesces(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return self.coalesce

    async def recover(self, write: UnsettledWrite) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("store down")
        self.seen.append(write)


def _log(url: str, recovery: Recorder, pool: asyncpg.Pool) -> IntentLog:
    links = LinkTable()
    links.replace([LINK])

    async def opened() -> asyncpg.Pool:
        return pool

    return IntentLog(opened, Presence(url), links, [recovery], sweep_seconds=0.1)


async def _count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM write_intents"))


async def test_a_settled_write_leaves_no_note_and_unwanted_writes_are_not_noted(database: str) -> None:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    log = _log(database, Recorder(), pool)
    await log.start()
    try:
        assert log.wants(RUNS_LOG_BATCH, LINK) and not log.wants(RUNS_CREATE, LINK)
        ids = RequestIds(run_id="a" * 32)
        notes = await asyncio.gather(*(log.begin(RUNS_LOG_BATCH, LINK, ids, {}, None) for _ in range(20)))
        assert await _count(pool) == 20  # noted before the send, in one round trip or a few
        for note in notes:
            assert note is not None
            note.settled()
        await log.flush()
        assert await _count(pool) == 0
    finally:
        await log.stop()
        await pool.close()


async def test_a_dead_workers_notes_are_recovered_and_a_live_workers_are_left_alone(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intents_module, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(intents_module, "SECOND_LOOK_SECONDS", 0.0)
    pool = await asyncpg.create_pool(database, min_size=1, max_size=6)
    dying, survivor = Recorder(), Recorder()
    first, second = _log(database, dying, pool), _log(database, survivor, pool)
    await first.start()
    await second.start()
    try:
        run = "b" * 32
        in_flight = await second.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id="c" * 32), {}, None)
        assert in_flight is not None
        await first.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=run), {}, None)
        await asyncio.sleep(0.5)
        assert survivor.seen == [] and dying.seen == []  # both owners live: nothing is swept
        # The first worker dies without a word: its presence session ends, its note is the survivor's to recover.
        assert first.presence._connection is not None
        first.presence._connection.terminate()
        await first._sweeping.stop()
        await first._flushing.stop()
        for _ in range(300):  # a bound, not a timing: sweeps run every 0.1 s, a loaded machine may lag seconds
            if survivor.seen:
                break
            await asyncio.sleep(0.1)
        # (looked at once more right after: SECOND_LOOK_SECONDS is 0 here)
        assert {w.detail["run_id"] for w in survivor.seen} == {run}
        assert survivor.seen[0].spec == RUNS_LOG_BATCH and survivor.seen[0].link == LINK
        # The recovered note is dropped just after its recovery returns: wait for that, within a bound.
        for _ in range(300):
            remaining = [r["run"] for r in await pool.fetch("SELECT detail->>'run_id' AS run FROM write_intents")]
            if run not in remaining:
                break
            await asyncio.sleep(0.1)
        assert remaining == ["c" * 32]  # the dead worker's note is gone, the live worker's untouched
    finally:
        await second.stop()
        await first.presence.stop()
        await pool.close()


async def test_an_unknown_outcome_is_recovered_at_once_retried_while_it_fails_and_looked_at_twice(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intents_module, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(intents_module, "SECOND_LOOK_SECONDS", 1.0)
    monkeypatch.setattr(intents_module, "MAX_BACKOFF_SECONDS", 0.2)
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    recovery = Recorder(fail=2)
    log = _log(database, recovery, pool)
    await log.start()
    try:
        note = await log.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id="d" * 32), {}, None)
        assert note is not None
        note.unknown()  # e.g. the store did not answer
        for _ in range(300):  # a bound, not a timing: a loaded machine may lag seconds
            if len(recovery.seen) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(recovery.seen) == 2  # after two failures, then once more for a late store
        for _ in range(300):  # the second look comes SECOND_LOOK_SECONDS after the note, then the note is dropped
            if await _count(pool) == 0:
                break
            await asyncio.sleep(0.1)
        assert await _count(pool) == 0
    finally:
        await log.stop()
        await pool.close()


async def _rows(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    """(run id, owner) of every note."""
    found = await pool.fetch("SELECT detail->>'run_id' AS run, owner FROM write_intents ORDER BY id")
    return [(str(r["run"]), int(r["owner"])) for r in found]


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(300):  # a bound, not a timing: sweeps run every 0.1 s, a loaded machine may lag seconds
        if await condition():
            return
        await asyncio.sleep(0.1)


async def test_writes_of_a_run_share_one_note_and_a_dead_worker_still_leaves_each_of_them_recovered(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's writes in flight at once, and one after the other, hold one note; when their worker dies, every
    run with a write in flight (or settled and its note still kept) is recovered: no write lost its trace."""
    monkeypatch.setattr(intents_module, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(intents_module, "SHARE_SECONDS", 3600.0)  # kept notes are not dropped during the test
    pool = await asyncpg.create_pool(database, min_size=1, max_size=6)
    dying, survivor = Recorder(coalesce=True), Recorder(coalesce=True)
    first, second = _log(database, dying, pool), _log(database, survivor, pool)
    await first.start()
    await second.start()
    try:
        busy, quiet, other = "1" * 32, "2" * 32, "3" * 32
        notes = await asyncio.gather(
            *(first.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=busy), {}, None) for _ in range(5)),
            first.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=other), {}, None),
        )
        assert all(note is not None for note in notes)
        assert await _rows(pool) == [(busy, first.presence.id), (other, first.presence.id)]
        for note in notes[:3]:  # two writes of `busy` still in flight
            assert note is not None
            note.settled()
        assert notes[5] is not None
        notes[5].settled()  # `other` settled: its note is kept for the run's next write
        later = await first.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=other), {}, None)
        also = await first.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=quiet), {}, None)
        assert later is not None and also is not None
        await first.flush()
        assert sorted(run for run, _ in await _rows(pool)) == sorted([busy, other, quiet])  # joined, not noted
        assert first.presence._connection is not None
        first.presence._connection.terminate()  # the worker dies with all three runs' writes in flight
        await first._sweeping.stop()
        await first._flushing.stop()

        async def recovered() -> bool:
            return len(survivor.seen) >= 3

        await _until(recovered)
        assert sorted(w.detail["run_id"] for w in survivor.seen) == sorted([busy, other, quiet])
        assert dying.seen == []
    finally:
        await second.stop()
        await first.presence.stop()
        await pool.close()


async def test_a_shared_note_of_unknown_outcome_waits_for_its_other_writes_and_an_unused_one_is_dropped(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intents_module, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(intents_module, "SECOND_LOOK_SECONDS", 0.0)
    monkeypatch.setattr(intents_module, "SHARE_SECONDS", 0.0)
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    recovery = Recorder(coalesce=True)
    log = _log(database, recovery, pool)
    await log.start()
    try:
        run = "4" * 32
        one, two = await asyncio.gather(
            *(log.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=run), {}, None) for _ in "ab")
        )
        assert one is not None and two is not None
        one.unknown()  # e.g. the store did not answer this one; the other write is still in flight
        await log.flush()
        await asyncio.sleep(0.5)  # sweeps every 0.1 s: a note handed over now would be recovered meanwhile
        assert recovery.seen == [] and await _rows(pool) == [(run, log.presence.id)]
        three = await log.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=run), {}, None)
        assert three is not None  # a note about to be recovered is not joined: a note of its own
        assert await _rows(pool) == [(run, log.presence.id), (run, log.presence.id)]
        two.settled()  # the last holder: now the note is recovery's

        async def recovered() -> bool:
            return len(recovery.seen) >= 2 and len(await _rows(pool)) == 1  # looked at twice, then dropped

        await _until(recovered)
        assert [w.detail["run_id"] for w in recovery.seen] == [run, run]
        three.settled()  # unused from now on: dropped at the next flush
        await log.flush()
        assert await _count(pool) == 0
        four = await log.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=run), {}, None)
        assert four is not None
        four.settled()
        five = await log.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=run), {}, None)  # joins the kept note
        assert five is not None
        await log.flush()
        assert await _count(pool) == 1  # held again: not dropped while its write is in flight
        five.settled()
        await log.flush()
        assert await _count(pool) == 0
    finally:
        await log.stop()
        await pool.close()


def test_the_note_names_what_the_write_touches() -> None:
    ids = RequestIds(run_uuid="e" * 32, experiment_id="7", name="m")
    assert intent_detail(ids, {"model_id": "m-1"}, None) == {
        "run_uuid": "e" * 32,
        "run_id": "e" * 32,
        "experiment_id": "7",
        "name": "m",
        "model_id": "m-1",
    }
    path = "workspaces/team-a/3/" + "f" * 32 + "/artifacts/model.pkl"
    detail = intent_detail(None, {}, path)
    assert detail["run_id"] == "f" * 32 and detail["artifact_path"] == path


def _sweep_until(url: str, stop: threading.Event, claimed: Recorder) -> None:
    """A worker of another thread (its own event loop, truly concurrent) that sweeps back to back."""

    async def sweeping() -> None:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        log = _log(url, claimed, pool)
        await log.presence.start()
        try:
            while not stop.is_set():
                await log.sweep()
        finally:
            await log.presence.stop()
            await pool.close()

    asyncio.run(sweeping())


async def test_a_sweep_never_claims_the_note_of_a_worker_that_came_to_life_during_it(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers start, take their presence and note a write while two other workers sweep back to back: a
    sweep must count the owner of every note it could claim as live. (With the owners read in a statement
    before the claim's, a worker born between the two looked dead: most runs of this test claimed live notes.)"""
    monkeypatch.setattr(intents_module, "SETTLE_SECONDS", 0.0)  # no settling delay to hide behind
    claimed = Recorder()
    stop = threading.Event()
    sweepers = [threading.Thread(target=_sweep_until, args=(database, stop, claimed)) for _ in range(2)]
    for sweeper in sweepers:
        sweeper.start()
    pool = await asyncpg.create_pool(database, min_size=8, max_size=10)
    try:
        for _ in range(60):
            batch = [_log(database, Recorder(), pool) for _ in range(8)]
            await asyncio.gather(*(worker.presence.start() for worker in batch))
            try:
                notes = await asyncio.gather(
                    *(
                        w.begin(RUNS_LOG_BATCH, LINK, RequestIds(run_id=f"{i:032x}"), {}, None)
                        for i, w in enumerate(batch)
                    )
                )
                assert all(note is not None for note in notes)
                await pool.execute("DELETE FROM write_intents")  # settled, before their workers go
            finally:
                await asyncio.gather(*(worker.presence.stop() for worker in batch))
    finally:
        stop.set()
        for sweeper in sweepers:
            await asyncio.to_thread(sweeper.join)
        await pool.close()
    assert claimed.seen == []  # every note's owner was alive the whole time
