"""Recursive run metrics from the account index (gateway/index/run_metrics.py), on a migrated PostgreSQL.

A tree of runs in the index (children by `mlflow.parentRunId`, a deleted child, a child in an experiment the
caller may not read, a parent tag that loops back, a run of another workspace naming the same parent) answers
with the run and the descendants the caller may read, each decoded as the client decodes its own metrics.
The walk uses the parent index, and one statement reads the whole tree.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from gateway.authz.decide import EVERYTHING, Everything
from gateway.core.errors import GatewayError, InvalidParameter, ResourceNotFound
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.principal import Principal
from gateway.db.engine import async_url
from gateway.index import run_metrics
from gateway.index.run_metrics import RunMetrics
from tests.databases import migrated_database

TEAM_A = WorkspaceLink("team-a", 1001, "workspace", "a", "a", None)
TEAM_B = WorkspaceLink("team-b", 1002, "workspace", "b", "b", None)
ALICE = Principal("alice@example.com", "user")
ROOT, CHILD, GRANDCHILD, HIDDEN, UNDER_HIDDEN, DELETED, LEAF, FOREIGN, CYCLE_A, CYCLE_B = (
    f"{c}" * 32 for c in "rcghudlfab"
)


class Readable:
    """The authorizer's visibility answer: every experiment, or these."""

    def __init__(self, readable: Everything | set[str]) -> None:
        self.readable = readable

    def readable_experiments(self, principal: Principal, workspace_id: int) -> Everything | set[str]:
        return self.readable if workspace_id == TEAM_A.workspace_id else set()


@pytest.fixture
async def index(database_url: str) -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    async with migrated_database(database_url, "run_metrics") as url:
        engine = create_async_engine(async_url(url), pool_size=2, max_overflow=0)
        connection = await asyncpg.connect(url)
        try:
            await fill(connection)
        finally:
            await connection.close()
        yield url, async_sessionmaker(engine, expire_on_commit=False)
        await engine.dispose()


async def run(
    connection: asyncpg.Connection,
    run_id: str,
    parent: str | None,
    *,
    experiment: str = "1",
    workspace: int = 1001,
    deleted: bool = False,
    tags: dict[str, str] | None = None,
) -> int:
    all_tags = {**(tags or {}), **({"mlflow.parentRunId": parent} if parent else {})}
    return int(
        await connection.fetchval(
            "INSERT INTO ix_runs (run_id, workspace_id, experiment_id, tags, delete_time) "
            "VALUES ($1, $2, $3, $4::jsonb, CASE WHEN $5 THEN now() END) RETURNING run_key",
            run_id,
            workspace,
            experiment,
            json.dumps(all_tags),
            deleted,
        )
    )


async def points(connection: asyncpg.Connection, run_key: int, name: str, *chunks: list[tuple[int, float]]) -> None:
    """Chunks of (step, value) as the write-through adds them, and the latest row with the point count."""
    total = 0
    for chunk in chunks:
        await connection.execute(
            "INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values) "
            "VALUES ($1, $2, $3, array_fill(now(), ARRAY[cardinality($3::bigint[])]), $4)",
            run_key,
            name,
            [s for s, _ in chunk],
            [v for _, v in chunk],
        )
        total += len(chunk)
    last = max((p for chunk in chunks for p in chunk), key=lambda p: p[0])
    await connection.execute(
        "INSERT INTO ix_metric_latest (run_key, metric_name, latest_value, latest_step, latest_time, min_value, "
        "max_value, points) VALUES ($1, $2, $3, $4, now(), 0, 0, $5)",
        run_key,
        name,
        last[1],
        last[0],
        total,
    )


async def fill(connection: asyncpg.Connection) -> None:
    table = {
        "type": "table",
        "rows": 2,
        "columns": {"fruit": "text", "size": "number"},
        "text": {"fruit": ["lime", "fig"]},
    }
    root = await run(connection, ROOT, None, tags={"fedgate.metric.citrus": json.dumps(table), "team": "a"})
    await points(connection, root, "loss", [(2, 0.3), (0, 0.9)], [(1, 0.5)])  # out of order, in two chunks
    await points(connection, root, "citrus.size", [(0, 3.0), (1, 5.0)])
    await points(connection, root, "accuracy", [(0, float("nan"))])
    child = await run(connection, CHILD, ROOT)
    await points(connection, child, "loss", [(0, 0.2)])
    grandchild = await run(
        connection, GRANDCHILD, CHILD, tags={"fedgate.metric.stage": '{"type":"scalar","text":["done"]}'}
    )
    await points(connection, grandchild, "curve", [(0, 1.0), (1, float("inf"))])
    hidden = await run(connection, HIDDEN, ROOT, experiment="2")
    await points(connection, hidden, "secret_metric", [(0, 42.0)])
    await run(connection, UNDER_HIDDEN, HIDDEN)
    await run(connection, DELETED, ROOT, deleted=True)
    await run(connection, LEAF, GRANDCHILD)
    await run(connection, FOREIGN, ROOT, workspace=1002)  # another workspace's run naming the same parent id
    # Two runs naming each other as parent: a walk from one of them still ends.
    await run(connection, CYCLE_A, CYCLE_B)
    await run(connection, CYCLE_B, CYCLE_A)


def service(
    sessionmaker: async_sessionmaker[AsyncSession], readable: Everything | set[str], **settings: int
) -> RunMetrics:
    table = LinkTable()
    table.replace([TEAM_A, TEAM_B])
    return RunMetrics(table, Readable(readable), sessionmaker, **settings)  # type: ignore[arg-type]


async def read(metrics: RunMetrics, run_id: str, workspace: WorkspaceLink | None = None) -> Any:
    """The answer as the endpoint writes it (JSON) and a client reads it."""
    return msgspec.json.decode(msgspec.json.encode(await metrics.recursive(ALICE, run_id, workspace)))


async def test_the_run_and_every_readable_descendant_with_their_metrics(
    index: tuple[str, async_sessionmaker[AsyncSession]],
) -> None:
    _, sessionmaker = index
    everything = await read(service(sessionmaker, EVERYTHING), ROOT)
    assert everything == {
        ROOT: {
            "loss": [0.9, 0.5, 0.3],
            "citrus": {"fruit": ["lime", "fig"], "size": [3.0, 5.0]},
            "accuracy": "NaN",
        },
        CHILD: {"loss": 0.2},
        GRANDCHILD: {"curve": [1.0, "Infinity"], "stage": "done"},
        HIDDEN: {"secret_metric": 42.0},
        UNDER_HIDDEN: {},
        LEAF: {},
    }
    # Experiment 2 is not readable: its run is left out, its readable child is not.
    narrowed = await read(service(sessionmaker, {"1"}), ROOT, TEAM_A)
    assert set(narrowed) == {ROOT, CHILD, GRANDCHILD, UNDER_HIDDEN, LEAF}
    # A subtree is asked for by its own root.
    assert await read(service(sessionmaker, EVERYTHING), CHILD) == {
        CHILD: {"loss": 0.2},
        GRANDCHILD: {"curve": [1.0, "Infinity"], "stage": "done"},
        LEAF: {},
    }
    assert await read(service(sessionmaker, EVERYTHING), CYCLE_A) == {CYCLE_A: {}, CYCLE_B: {}}


async def test_a_run_the_caller_may_not_read_or_of_another_workspace_is_not_found(
    index: tuple[str, async_sessionmaker[AsyncSession]],
) -> None:
    _, sessionmaker = index
    with pytest.raises(ResourceNotFound, match=f"Run with id={HIDDEN} not found") as refused:
        await service(sessionmaker, {"1"}).recursive(ALICE, HIDDEN, None)
    assert refused.value.denied
    with pytest.raises(ResourceNotFound, match="not found in the account index") as elsewhere:
        await service(sessionmaker, EVERYTHING).recursive(ALICE, ROOT, TEAM_B)
    with pytest.raises(ResourceNotFound, match="not found in the account index") as missing:
        await service(sessionmaker, EVERYTHING).recursive(ALICE, "0" * 32, None)
    # One message for all three: the answer does not tell a hidden run from a run id nobody has.
    said = {e.value.message.replace(run_id, "<run>") for e, run_id in
            ((refused, HIDDEN), (elsewhere, ROOT), (missing, "0" * 32))}  # fmt: skip
    assert len(said) == 1


async def test_a_tree_larger_than_one_answer_is_refused(
    index: tuple[str, async_sessionmaker[AsyncSession]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sessionmaker = index
    monkeypatch.setattr(run_metrics, "MAX_RUNS", 3)
    with pytest.raises(InvalidParameter, match="more than one answer carries"):
        await service(sessionmaker, EVERYTHING).recursive(ALICE, ROOT, None)
    monkeypatch.setattr(run_metrics, "MAX_RUNS", 100)
    monkeypatch.setattr(run_metrics, "MAX_POINTS", 5)
    with pytest.raises(InvalidParameter, match="more than one answer carries"):
        await service(sessionmaker, EVERYTHING).recursive(ALICE, ROOT, None)


async def big_tree(url: str, root: str, children: int, values: int) -> None:
    """A root and its children under it, `values` metric values each, in chunks of 50,000 (the index's are at most
    100,000)."""
    history = [(step, step / 2) for step in range(values)]
    chunks = [history[start : start + 50_000] for start in range(0, values, 50_000)]
    connection = await asyncpg.connect(url)
    try:
        for i in range(children + 1):
            key = await run(connection, root if i == 0 else f"{root[:-4]}{i:04d}", root if i else None)
            await points(connection, key, "loss", *chunks)
    finally:
        await connection.close()


async def test_a_tree_past_the_values_one_read_carries_is_refused_before_its_points_are_read(
    index: tuple[str, async_sessionmaker[AsyncSession]],
) -> None:
    """One read carries at most 1,000,000 values (it was 5,000,000: 690 MB and 1.6 s of the worker's event loop
    for one read, which any user could log and ask for several times at once)."""
    url, sessionmaker = index
    big = "b" * 28 + "0000"
    await big_tree(url, big, 1, run_metrics.MAX_POINTS // 2 + 1)
    with pytest.raises(InvalidParameter, match="at most 10,000 runs and 1,000,000 metric values") as refused:
        await service(sessionmaker, EVERYTHING).recursive(ALICE, big, None)
    assert "this tree has 2+ runs or 1,000,002 values" in refused.value.message


async def test_large_reads_past_the_workers_slots_are_429_with_retry_after(
    index: tuple[str, async_sessionmaker[AsyncSession]],
) -> None:
    """A read of more than 100,000 values holds one of the worker's slots while it runs: past them, 429
    REQUEST_LIMIT_EXCEEDED with Retry-After (MLflow's client retries it); smaller reads are not counted."""
    url, sessionmaker = index
    large = "e" * 28 + "0000"
    await big_tree(url, large, 1, run_metrics.LARGE_READ_POINTS // 2 + 1)
    expected = {step / 2 for step in range(run_metrics.LARGE_READ_POINTS // 2 + 1)}
    none_free = service(sessionmaker, EVERYTHING, large_reads=0)
    with pytest.raises(GatewayError) as busy:
        await none_free.recursive(ALICE, large, None)
    assert (busy.value.status, busy.value.error_code) == (429, "REQUEST_LIMIT_EXCEEDED")
    assert busy.value.headers == {"Retry-After": "1"}
    assert "at least 100,002 metric values and table cells" in busy.value.message
    assert set(await read(none_free, CHILD)) == {CHILD, GRANDCHILD, LEAF}  # a small tree takes no slot
    # A table's rows are what its tag says, not points: its empty cells count as values do.
    connection = await asyncpg.connect(url)
    try:
        wide = {"type": "table", "rows": run_metrics.LARGE_READ_POINTS + 1, "columns": {"x": "number"}}
        await run(connection, "t" * 32, None, tags={"fedgate.metric.wide": json.dumps(wide)})
    finally:
        await connection.close()
    with pytest.raises(GatewayError, match="at least 100,001 metric values and table cells") as cells:
        await none_free.recursive(ALICE, "t" * 32, None)
    assert cells.value.status == 429
    one = service(sessionmaker, EVERYTHING, large_reads=1)
    for _ in range(2):  # the slot is given back when the read is done
        answered = await read(one, large)
        assert len(answered) == 2 and all(set(metrics["loss"]) == expected for metrics in answered.values())


async def test_the_walk_finds_children_through_the_parent_index(
    index: tuple[str, async_sessionmaker[AsyncSession]],
) -> None:
    url, _ = index
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SET enable_seqscan = off")  # a handful of rows: make the planner show its choice
        plan = "\n".join(
            r[0]
            for r in await connection.fetch(
                "EXPLAIN SELECT run_id FROM ix_runs c WHERE c.workspace_id = 1001 "
                "AND c.tags ? 'mlflow.parentRunId' AND c.tags ->> 'mlflow.parentRunId' = $1",
                ROOT,
            )
        )
    finally:
        await connection.close()
    assert "ix_runs_parent" in plan, plan


def test_the_answer_of_rows_carries_json_safe_values() -> None:
    class Row:
        def __init__(self, **values: Any) -> None:
            self.__dict__.update(values)

    rows = [Row(run_id=ROOT, runs=1, points=1, kinds={}, metric_name="m", steps=[0], metric_values=[float("-inf")])]
    assert run_metrics.answer(ROOT, rows) == {ROOT: {"m": "-Infinity"}}
