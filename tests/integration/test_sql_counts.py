"""Run counts (migrations 0019 and 0032) against the plain query: the maintained aggregates and the statements
that read them.

Differential tests on a real PostgreSQL. Random sequences of the index's own writes (the write-through's
creates, status changes, deletions and restores, metric batches, writes to runs it has not seen; the sync's
upserts, which move runs between experiments and change their start and creator; workspace renumbering and
store moves; TRUNCATE) must leave `ix_run_counts` and `ix_run_rollup` equal to counting `ix_runs`; and
aggregate statements over `runs_latest` (directly or through views that filter it), compiled to read the
counts, must answer exactly what the plain statement answers (values, types, scale), while the statements
the counts cannot answer exactly are left alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.console.dashboard_queries import DASHBOARDS, Filters
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.migrate import upgrade
from gateway.index.moves import IndexMoves
from gateway.index.repository import IndexRepository
from gateway.index.writer import ExperimentChange, IndexWriter, NewRun, RunChange, RunUpdate
from gateway.sql import documented
from gateway.sql.catalog import READER_ROLE, TableName
from gateway.sql.rollup import COUNTS_VIEW, ROLLUP_VIEW
from gateway.sql.statements import parse_query
from gateway.sql.transpile import Identity, compile_query, substitute, system_source
from tests.databases import empty_database

pytestmark = pytest.mark.integration

WORKSPACES = (1001, 1002, 1003)
EXPERIMENTS = ("1", "2", "3")
STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED")
DAY = datetime(2026, 3, 1, tzinfo=UTC)
# Start times in milliseconds, as the store gives them: several on one day (the extremes of a rollup row move
# when one leaves), both sides of midnight UTC, and none.
STARTS = (
    None,
    int(DAY.timestamp() * 1000),
    int((DAY + timedelta(hours=9)).timestamp() * 1000),
    int((DAY + timedelta(hours=23, minutes=59, seconds=59, milliseconds=999)).timestamp() * 1000),
    int((DAY + timedelta(days=1)).timestamp() * 1000),
    int((DAY + timedelta(days=1, hours=5)).timestamp() * 1000),
)
USERS = ("alice", "bob", "")


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[str]:
    """A migrated database of this module's own; each test drives it with asyncio.run, one loop per call."""
    with empty_database(database_url, "run_counts") as url:
        upgrade(url)
        yield url


# -- the maintained counts follow every way the index changes ------------------------------------------------


def moment(start: int | None) -> datetime | None:
    return None if start is None else datetime.fromtimestamp(start / 1000, UTC)


@dataclass(frozen=True)
class Create:
    run: int
    workspace: int
    experiment: str
    status: str
    start: int | None = STARTS[1]
    user: str = "alice"


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
    start: int | None = STARTS[1]
    user: str = "alice"


@dataclass(frozen=True)
class Touch:
    """A metric batch, a run's deletion and restore: they change the run's row but none of its counted columns."""

    run: int
    restore: bool = False


@dataclass(frozen=True)
class Unseen:
    """A write to a run the index has not seen: a row with no creator and no start, for the sync to complete."""

    run: int
    workspace: int
    experiment: str


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
starts = st.sampled_from(STARTS)
users = st.sampled_from(USERS)
operations = st.lists(
    st.one_of(
        st.builds(Create, runs, workspaces, experiments, statuses, starts, users),
        st.builds(Create, runs, workspaces, experiments, statuses, starts, users),
        st.builds(SetStatus, runs, statuses),
        st.builds(SetStatus, runs, statuses),
        st.builds(Synced, runs, workspaces, experiments, statuses, starts, users),
        st.builds(Synced, runs, workspaces, experiments, statuses, starts, users),
        st.builds(Touch, runs, st.booleans()),
        st.builds(Unseen, runs, workspaces, experiments),
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
                new = NewRun(
                    op.workspace, run_id(op.run), op.experiment, op.user, "r", op.status, moment(op.start), None, {}
                )
                await writer.apply(connection, new, op.workspace)
            elif isinstance(op, SetStatus):
                writer.forget()  # a replica that has not seen the run looks its key up
                update = RunChange(run_id(op.run), update=RunUpdate(op.status, None, None))
                await writer.apply(connection, update, WORKSPACES[0], None)
            elif isinstance(op, Synced):
                info = {
                    "run_id": run_id(op.run),
                    "experiment_id": op.experiment,
                    "status": op.status,
                    "start_time": op.start,
                    "user_id": op.user,
                }
                await IndexRepository(connection).upsert_run(op.workspace, {"info": info})
            elif isinstance(op, Touch):
                points = b'[{"key": "loss", "value": 0.5, "timestamp": 1, "step": 1}]'
                await writer.apply(connection, RunChange(run_id(op.run), points=points), WORKSPACES[0], None)
                await writer.apply(connection, RunChange(run_id(op.run), deleted=True), WORKSPACES[0], None)
                if op.restore:
                    await writer.apply(connection, RunChange(run_id(op.run), deleted=False), WORKSPACES[0], None)
            elif isinstance(op, Unseen):
                writer.forget()
                change = RunChange(run_id(op.run), tags={"note": "x"})
                await writer.apply(connection, change, op.workspace, op.experiment)
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


ROLLUP_KEY = "workspace_id, experiment_id, created_by, status, day"


async def rollup(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rollup's rows with runs, the same figures counted from the runs, and rows left at zero with extremes."""
    connection = await asyncpg.connect(url)
    try:
        kept = await connection.fetch(
            f"SELECT {ROLLUP_KEY}, runs, first_start, last_start FROM ix_run_rollup WHERE runs <> 0 "
            "ORDER BY 1, 2, 3, 4, 5"
        )
        counted = await connection.fetch(
            "SELECT workspace_id, experiment_id, created_by, status, (start_time AT TIME ZONE 'UTC')::date, "
            "count(*), min(start_time), max(start_time) FROM ix_runs GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
        )
        # A row at zero must hold no extremes: a run added to it later would otherwise keep stale ones.
        stale = await connection.fetch(
            "SELECT * FROM ix_run_rollup WHERE runs = 0 AND (first_start IS NOT NULL OR last_start IS NOT NULL)"
        )
        return [tuple(r) for r in kept], [tuple(r) for r in counted], [tuple(r) for r in stale]
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
    Create(5, 1001, "1", "FAILED", STARTS[3], "bob"),
    Create(6, 1001, "1", "FAILED", STARTS[2], "bob"),
    Synced(5, 1001, "1", "FAILED", STARTS[4], "bob"),  # the latest start of its day leaves for the next day
    Touch(6, restore=True),
    Unseen(7, 1003, "2"),
    Synced(7, 1003, "2", "FINISHED", STARTS[5], "carol"),  # the sync completes the unseen run
    Create(8, 1003, "2", "FINISHED", None, ""),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
@example(ops=EVERY_KIND)
@example(ops=[*EVERY_KIND, Truncate(), Create(1, 1001, "1", "RUNNING")])
def test_run_counts_equal_counting_the_runs_after_any_sequence_of_index_writes(database: str, ops: list[Any]) -> None:
    asyncio.run(apply(database, ops))
    kept, counted = asyncio.run(counts(database))
    assert kept == counted
    kept, counted, stale = asyncio.run(rollup(database))
    assert kept == counted
    assert stale == []


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
                        # Starts over four days (and none), by three people, so days and people differ too.
                        start = None if number % 13 == 0 else DAY + timedelta(hours=7 * number % 96, seconds=number)
                        end = None if start is None or number % 5 == 0 else start + timedelta(seconds=number % 17)
                        user = ("bob", "carol", "dave")[number % 3]
                        new = NewRun(
                            workspace, uuid.uuid4().hex, experiment, user, f"r{number}", status, start, end, {}
                        )
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


VIEWS = {
    # A dynamic view of some workspaces, and one of the reader's own runs, as the console's dashboards read them.
    "gov.views.two_workspaces": "SELECT * FROM system.mlflow.runs_latest WHERE workspace_id IN ('1001', '1002')",
    "gov.views.mine": "SELECT * FROM system.mlflow.runs_latest WHERE created_by = current_user() OR "
    "is_account_group_member('auditors')",
    "gov.views.recent": "SELECT * FROM gov.views.two_workspaces WHERE start_time >= DATE'2026-03-02'",
    # More than a filter, or a filter on what the counts do not hold: the runs are read.
    "gov.views.named": "SELECT run_id, status, workspace_id FROM system.mlflow.runs_latest",
    "gov.views.tagged": "SELECT * FROM system.mlflow.runs_latest WHERE tags['team'] IS NULL",
    "gov.views.first": "SELECT * FROM system.mlflow.runs_latest LIMIT 5",
}


def sources(query: Any) -> dict[TableName, Any]:
    found: dict[TableName, Any] = {}
    for table in query.tables:
        if table.catalog == "system":
            found[table] = system_source(table)
        else:
            inner = parse_query(VIEWS[table.full])
            found[table] = substitute(inner, sources(inner))
    return found


def compiled(text: str, *, counts: bool, types: dict[str, str] | None = None) -> str:
    query = parse_query(text)
    tree = substitute(query, sources(query))
    return compile_query(tree, Identity("carol", lambda _: False), types or {}, counts=counts).sql


async def answer(url: str, sql: str, arguments: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Rows as the reader role sees them, each value with its type (a numeric's scale shows in its text)."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction(readonly=True):
            # As statements run (gateway/sql/runner.py): the days of the rollup are UTC days.
            await connection.execute(
                f"SET LOCAL ROLE {READER_ROLE}; SET LOCAL search_path = ''; SET LOCAL TimeZone = 'UTC'"
            )
            rows = await connection.fetch(sql, *arguments)
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


# -- the start day and the creator: the rollup (migration 0032) ---------------------------------------------

ROLLED_UP = [
    "SELECT date(start_time) AS day, status, COUNT(*) AS runs FROM system.mlflow.runs_latest "
    "WHERE start_time IS NOT NULL GROUP BY date(start_time), status",
    "SELECT created_by, COUNT(*) AS runs, AVG(CASE WHEN status = 'FINISHED' THEN 1.0 ELSE 0.0 END) AS ratio, "
    "MAX(start_time) AS last_run, MIN(start_time) AS first_run, COUNT(start_time) AS started "
    "FROM system.mlflow.runs_latest WHERE created_by IS NOT NULL GROUP BY created_by",
    "SELECT to_date(r.start_time), count(*), max(date(r.start_time)) FROM system.mlflow.runs_latest r "
    "WHERE r.start_time >= DATE'2026-03-02' AND r.start_time < DATE'2026-03-04' AND r.created_by <> 'bob' "
    "GROUP BY to_date(r.start_time)",
    "SELECT count(*), sum(CASE WHEN start_time IS NULL THEN 1 END) FROM system.mlflow.runs_latest "
    "WHERE DATE'2026-03-03' > start_time OR start_time IS NULL",
    "SELECT workspace_id, count(*) FROM system.mlflow.runs_latest WHERE start_time < current_date() "
    "GROUP BY workspace_id",
    "SELECT status, count(*) FROM gov.views.mine GROUP BY status",
    "SELECT created_by, max(start_time) FROM gov.views.recent GROUP BY created_by",
]
LEFT_ALONE_BY_THE_ROLLUP = [
    # A time of day, or a comparison the day does not decide: the runs are read.
    "SELECT count(*) FROM system.mlflow.runs_latest WHERE start_time > DATE'2026-03-02'",
    "SELECT count(*) FROM system.mlflow.runs_latest WHERE start_time <= DATE'2026-03-02'",
    "SELECT count(*) FROM system.mlflow.runs_latest WHERE start_time >= TIMESTAMP'2026-03-02 10:00:00'",
    "SELECT count(*) FROM system.mlflow.runs_latest WHERE start_time >= date(end_time)",
    "SELECT hour(start_time), count(*) FROM system.mlflow.runs_latest GROUP BY hour(start_time)",
    "SELECT max(end_time), count(*) FROM system.mlflow.runs_latest",
    "SELECT count(DISTINCT start_time) FROM system.mlflow.runs_latest",
    "SELECT status, count(*) FROM gov.views.named GROUP BY status",
    "SELECT status, count(*) FROM gov.views.tagged GROUP BY status",
    "SELECT status, count(*) FROM gov.views.first GROUP BY status",
    "SELECT status, count(*) AS _day FROM system.mlflow.runs_latest GROUP BY status",
]


@pytest.mark.parametrize("text", ROLLED_UP)
def test_an_aggregate_by_day_or_person_reads_the_rollup_and_answers_the_same(filled: str, text: str) -> None:
    fast, plain = compiled(text, counts=True), compiled(text, counts=False)
    assert ROLLUP_VIEW in fast and ROLLUP_VIEW not in plain
    expected = asyncio.run(answer(filled, plain))
    assert expected, "the statement answers rows"
    assert asyncio.run(answer(filled, fast)) == expected


@pytest.mark.parametrize("text", LEFT_ALONE_BY_THE_ROLLUP)
def test_a_statement_the_rollup_cannot_answer_exactly_is_left_alone(text: str) -> None:
    assert compiled(text, counts=True) == compiled(text, counts=False)


def test_the_success_ratio_through_a_view_of_workspaces_reads_the_counts(filled: str) -> None:
    text = documented.SUCCESS_RATIO.replace("system.mlflow.runs_latest", "gov.views.two_workspaces")
    fast, plain = compiled(text, counts=True), compiled(text, counts=False)
    assert COUNTS_VIEW in fast and ROLLUP_VIEW not in fast
    assert asyncio.run(answer(filled, fast)) == asyncio.run(answer(filled, plain))


FILTERS = [
    Filters(),
    Filters(workspace_id="1002", since=date(2026, 3, 2)),
    Filters(runs="gov.views.two_workspaces", since=date(2026, 3, 3)),
    Filters(runs="gov.views.mine", workspace_id="1001"),
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: f"{f.runs}-{f.workspace_id}-{f.since}")
def test_every_dashboard_answers_the_same_from_the_counts_as_from_the_runs(filled: str, filters: Filters) -> None:
    """What the console shows, with its filters and through views: the same rows either way, and runs per day,
    the success ratio and the most active users never read the runs."""
    for item in DASHBOARDS:
        if item.key == "metric-trend":
            continue  # one experiment's metrics: no aggregate over runs
        statement = item.build(filters)
        types = {name: kind for name, (_, kind) in statement.parameters.items()}
        fast, plain = (
            compiled(statement.text, counts=True, types=types),
            compiled(statement.text, counts=False, types=types),
        )
        query = parse_query(statement.text)
        names = compile_query(substitute(query, sources(query)), Identity("carol", lambda _: False), types).parameters
        arguments = tuple(statement.parameters[name][0] for name in names)
        if item.key != "longest-runs":
            assert "runs_latest_" in fast and "system_mlflow.runs_latest)" not in fast, item.key
        expected = asyncio.run(answer(filled, plain, arguments))
        assert expected, item.key
        assert asyncio.run(answer(filled, fast, arguments)) == expected, item.key


async def plan(url: str, sql: str, arguments: tuple[str, ...]) -> str:
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction(readonly=True):
            # Scans and sorts priced out: the plan uses the index if the statement's expression is the indexed one.
            await connection.execute(
                f"SET LOCAL ROLE {READER_ROLE}; SET LOCAL search_path = ''; SET LOCAL TimeZone = 'UTC'; "
                "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
            )
            rows = await connection.fetch(f"EXPLAIN {sql}", *arguments)
        return "\n".join(row[0] for row in rows)
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("filters", "index"),
    [(Filters(), "ix_runs_length"), (Filters(workspace_id="1002"), "ix_runs_workspace_length")],
)
def test_the_longest_runs_are_read_from_the_run_length_index(filled: str, filters: Filters, index: str) -> None:
    """TIMESTAMPDIFF(SECOND, ...) as the transpiler writes it is the expression ix_runs_length holds (migration
    0032), in the order the dashboard asks for: the 20 longest runs are the index's first entries."""
    statement = next(item for item in DASHBOARDS if item.key == "longest-runs").build(filters)
    types = {name: kind for name, (_, kind) in statement.parameters.items()}
    query = parse_query(statement.text)
    built = compile_query(substitute(query, sources(query)), Identity("carol", lambda _: False), types)
    arguments = tuple(statement.parameters[name][0] for name in built.parameters)
    shown = asyncio.run(plan(filled, built.sql, arguments))
    assert f"Index Scan using {index}" in shown and "Sort" not in shown, shown
