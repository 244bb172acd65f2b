"""Run counts (migration 0019) against the plain query: the maintained aggregate and the statements that read it.

Differential tests on a real PostgreSQL. Random sequences of the index's own writes (the write-through's
creates, status changes, deletions, metric batches; the sync's upserts; workspace renumbering and store
moves; TRUNCATE) must leave `ix_run_counts` equal to counting `ix_runs`; and aggregate statements over
`runs_latest`, compiled to read the counts, must answer exactly what the plain statement answers (values,
types, scale), while the statements the counts cannot answer exactly are left alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.migrate import upgrade
from gateway.index.moves import IndexMoves
from gateway.index.repository import IndexRepository
from gateway.index.writer import ExperimentChange, IndexWriter, NewRun, RunChange, RunUpdate
from gateway.sql import documented
from gateway.sql.catalog import READER_ROLE
from gateway.sql.rollup import COUNTS_VIEW
from gateway.sql.statements import parse_query
from gateway.sql.transpile import Identity, compile_query, substitute, system_source

pytestmark = pytest.mark.integration

WORKSPACES = (1001, 1002, 1003)
EXPERIMENTS = ("1", "2", "3")
STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED")


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[str]:
    """A migrated database of this module's own; each test drives it with asyncio.run, one loop per call."""
    name = f"run_counts_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    asyncio.run(server(database_url, f'CREATE DATABASE "{name}"'))
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(server(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def server(url: str, command: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(command)
    finally:
        await connection.close()


# -- the maintained counts follow every way the index changes ------------------------------------------------


@dataclass(frozen=True)
class Create:
    run: int
    workspace: int
    experiment: str
    status: str


@dataclass(frozen=True)
class SetStatus:
    run: int
    status: str


@dataclass(frozen=True)
class Synced:
    """The sync's upsert: a run as the store has it (possibly moved to another experiment)."""

    run: int
    workspace: int
    experiment: str
    status: str


@dataclass(frozen=True)
class Touch:
    """A metric batch and a run deletion: they change the run's row but none of its counted columns."""

    run: int


@dataclass(frozen=True)
class DeleteExperiment:
    workspace: int
    experiment: str


@dataclass(frozen=True)
class Renumber:
    old: int
    new: int


@dataclass(frozen=True)
class StoreMoved:
    workspace: int


@dataclass(frozen=True)
class Truncate:
    pass


workspaces = st.sampled_from((1001, 1002, 1003))
experiments = st.sampled_from(EXPERIMENTS)
statuses = st.sampled_from(STATUSES)
runs = st.integers(0, 11)
operations = st.lists(
    st.one_of(
        st.builds(Create, runs, workspaces, experiments, statuses),
        st.builds(Create, runs, workspaces, experiments, statuses),
        st.builds(SetStatus, runs, statuses),
        st.builds(SetStatus, runs, statuses),
        st.builds(Synced, runs, workspaces, experiments, statuses),
        st.builds(Touch, runs),
        st.builds(DeleteExperiment, workspaces, experiments),
        st.builds(Renumber, workspaces, workspaces),
        st.builds(StoreMoved, workspaces),
        st.just(Truncate()),
    ),
    max_size=25,
)


def run_id(number: int) -> str:
    return f"{number:032x}"


async def apply(url: str, ops: list[Any]) -> None:
    writer = IndexWriter()
    engine = make_engine(url, pool_size=1)
    sessions = make_sessionmaker(engine)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE ix_runs, ix_metrics, ix_metric_latest, ix_experiments")
        for op in ops:
            if isinstance(op, Create):
                new = NewRun(op.workspace, run_id(op.run), op.experiment, "alice", "r", op.status, None, None, {})
                await writer.apply(connection, new, op.workspace)
            elif isinstance(op, SetStatus):
                writer.forget()  # a replica that has not seen the run looks its key up
                update = RunChange(run_id(op.run), update=RunUpdate(op.status, None, None))
                await writer.apply(connection, update, WORKSPACES[0], None)
            elif isinstance(op, Synced):
                info = {"run_id": run_id(op.run), "experiment_id": op.experiment, "status": op.status}
                await IndexRepository(connection).upsert_run(op.workspace, {"info": info})
            elif isinstance(op, Touch):
                points = b'[{"key": "loss", "value": 0.5, "timestamp": 1, "step": 1}]'
                await writer.apply(connection, RunChange(run_id(op.run), points=points), WORKSPACES[0], None)
                await writer.apply(connection, RunChange(run_id(op.run), deleted=True), WORKSPACES[0], None)
            elif isinstance(op, DeleteExperiment):
                await writer.apply(
                    connection, ExperimentChange(op.workspace, op.experiment, deleted=True), op.workspace
                )
            elif isinstance(op, Renumber):
                if op.old != op.new:
                    async with sessions() as session, session.begin():
                        # The new id must be free, as the workspace service makes sure.
                        await IndexMoves().store_moved(session, op.new)
                        await IndexMoves().renumbered(session, op.old, op.new)
                    writer.forget()
            elif isinstance(op, StoreMoved):
                async with sessions() as session, session.begin():
                    await IndexMoves().store_moved(session, op.workspace)
                writer.forget()
            else:
                await connection.execute("TRUNCATE ix_runs")
                writer.forget()
    finally:
        await connection.close()
        await engine.dispose()


async def counts(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        kept = await connection.fetch(
            "SELECT workspace_id, experiment_id, status, runs FROM ix_run_counts WHERE runs <> 0 ORDER BY 1, 2, 3"
        )
        counted = await connection.fetch(
            "SELECT workspace_id, experiment_id, status, count(*) FROM ix_runs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        return [tuple(r) for r in kept], [tuple(r) for r in counted]
    finally:
        await connection.close()


EVERY_KIND = [
    Create(1, 1001, "1", "RUNNING"),
    Create(2, 1001, "2", "RUNNING"),
    Create(3, 1002, "1", "FAILED"),
    SetStatus(1, "FINISHED"),
    Synced(2, 1001, "3", "RUNNING"),  # another experiment, the same status
    Synced(2, 1001, "3", "KILLED"),
    Touch(3),
    DeleteExperiment(1001, "1"),
    Renumber(1001, 1003),
    StoreMoved(1002),
    Create(4, 1002, "2", "RUNNING"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
@example(ops=EVERY_KIND)
@example(ops=[*EVERY_KIND, Truncate(), Create(1, 1001, "1", "RUNNING")])
def test_run_counts_equal_counting_the_runs_after_any_sequence_of_index_writes(database: str, ops: list[Any]) -> None:
    asyncio.run(apply(database, ops))
    kept, counted = asyncio.run(counts(database))
    assert kept == counted


# -- statements read the counts only where the answer is the same ---------------------------------------------


async def fill(url: str) -> None:
    """Runs in every combination, in uneven numbers, so each group's figures differ."""
    writer = IndexWriter()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE ix_runs, ix_metrics, ix_metric_latest, ix_experiments")
        number = 0
        for w, workspace in enumerate(WORKSPACES):
            for e, experiment in enumerate(EXPERIMENTS):
                for s, status in enumerate(STATUSES):
                    for _ in range((w * 7 + e * 3 + s * 5) % 11):
                        new = NewRun(workspace, uuid.uuid4().hex, experiment, "bob", "r", status, None, None, {})
                        await writer.apply(connection, new, workspace)
                        number += 1
        # Changes after the creation move counts from one status to another.
        for run in await connection.fetch("SELECT run_id FROM ix_runs WHERE status = 'RUNNING' LIMIT 9"):
            await writer.apply(connection, RunChange(run[0], update=RunUpdate("FINISHED", None, None)), 1001)
    finally:
        await connection.close()


REWRITTEN = [
    documented.SUCCESS_RATIO,
    documented.SUCCESS_RATIO.replace("LIMIT 20", ""),  # every experiment, not only the top 20 of tied counts
    "SELECT status, count(*), count(status), avg(CASE WHEN status = 'FINISHED' THEN 1 ELSE 0 END) AS r "
    "FROM system.mlflow.runs_latest GROUP BY status",
    "SELECT workspace_id, sum(CASE WHEN status = 'FAILED' THEN 0.5 WHEN status = 'KILLED' THEN -1.25 END) AS s, "
    "avg(CASE status WHEN 'KILLED' THEN 3.0 WHEN 'FAILED' THEN 1 END) AS a, sum(1) AS n, "
    "count(DISTINCT experiment_id) AS e, min(status) AS lo, max(experiment_id) AS hi "
    "FROM system.mlflow.runs_latest r WHERE r.workspace_id <> '1003' GROUP BY r.workspace_id",
    "SELECT experiment_id, count(*) AS n FROM system.mlflow.runs_latest GROUP BY experiment_id "
    "HAVING count(*) > 20 ORDER BY n DESC, experiment_id",
    "SELECT count(*), avg(CASE WHEN status = 'RUNNING' THEN 1.0 END) FROM system.mlflow.runs_latest "
    "WHERE status IN ('RUNNING', 'SCHEDULED')",
    "SELECT count(*), sum(CASE WHEN status = 'FAILED' THEN 1 END), avg(CASE WHEN status = 'X' THEN 1.0 END) "
    "FROM system.mlflow.runs_latest WHERE status = 'NONE'",  # no rows: 0, NULL, NULL
    "WITH c AS (SELECT workspace_id, experiment_id, count(*) AS n FROM system.mlflow.runs_latest "
    "GROUP BY workspace_id, experiment_id) SELECT workspace_id, max(n), sum(n) FROM c GROUP BY workspace_id",
    "SELECT status, round(avg(CASE WHEN workspace_id = '1001' THEN 1.0 ELSE 0.0 END), 2) AS share "
    "FROM system.mlflow.runs_latest GROUP BY ROLLUP (status)",
]
# Not rewritten: a column outside the counted ones, a double of a fraction, a FILTER, no aggregation, a join,
# an aggregate that depends on every row.
LEFT_ALONE = [
    "SELECT count(*) FROM system.mlflow.runs_latest WHERE delete_time IS NULL",
    "SELECT avg(CASE WHEN status = 'FINISHED' THEN 1 ELSE 0.5 END) FROM system.mlflow.runs_latest",
    "SELECT count(*) FILTER (WHERE status = 'FAILED') FROM system.mlflow.runs_latest",
    "SELECT DISTINCT status FROM system.mlflow.runs_latest",
    "SELECT r.status, count(*) FROM system.mlflow.runs_latest r "
    "JOIN system.mlflow.experiments_latest e ON r.experiment_id = e.experiment_id GROUP BY r.status",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY length(status)) FROM system.mlflow.runs_latest",
    "SELECT status, count(*) AS run_name FROM system.mlflow.runs_latest GROUP BY status ORDER BY run_name",
]


def compiled(text: str, *, counts: bool) -> str:
    query = parse_query(text)
    tree = substitute(query, {table: system_source(table) for table in query.tables})
    return compile_query(tree, Identity("u@example.com", lambda _: False), {}, counts=counts).sql


async def answer(url: str, sql: str) -> list[tuple[str, ...]]:
    """Rows as the reader role sees them, each value with its type (a numeric's scale shows in its text)."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction(readonly=True):
            await connection.execute(f"SET LOCAL ROLE {READER_ROLE}; SET LOCAL search_path = ''")
            rows = await connection.fetch(sql)
        return sorted(tuple(f"{type(v).__name__}:{v!r}" for v in row) for row in rows)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def filled(database: str) -> str:
    asyncio.run(fill(database))
    return database


@pytest.mark.parametrize("text", REWRITTEN)
def test_an_aggregate_over_counted_columns_reads_the_counts_and_answers_the_same(filled: str, text: str) -> None:
    fast, plain = compiled(text, counts=True), compiled(text, counts=False)
    assert COUNTS_VIEW in fast and COUNTS_VIEW not in plain
    expected = asyncio.run(answer(filled, plain))
    assert expected, "the statement answers rows"
    assert asyncio.run(answer(filled, fast)) == expected


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_a_statement_the_counts_cannot_answer_exactly_is_left_alone(text: str) -> None:
    assert compiled(text, counts=True) == compiled(text, counts=False)
