"""Metric points through the point writer (gateway/index/points.py) against the statement it replaces, on PostgreSQL.

Differential tests on a real database. Random log-batch and log-metric calls (NaN and infinities as MLflow
sends them, ties in step and timestamp, duplicate points, out-of-order steps, steps and timestamps absent,
chunks past 300 points, and bodies the statement refuses or reads its own way: literals numeric refuses,
zeros written with exponents, -0, strings, numbers out of float8's range, keys that are numbers or hold NUL)
are written for one set of runs by the write-through hook as it is, concurrently, so that calls for the same
run land in one batch, and for another set of runs one after the other by the writer's statement
(`LOG_METRICS`, what every call went through before). Each run's chunks (as multisets: only the ids
differ) and aggregate rows must come out exactly equal, text for text, and the aggregates must equal what
a plain query over the chunks computes. A trigger refuses chunks of the metric "refused", so that some
batches are refused and their calls written one by one.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from typing import Any, overload

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.core.errors import InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.route_table import RUNS_LOG_BATCH, RUNS_LOG_METRIC
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.migrate import upgrade
from gateway.federation.bookkeeping import DERIVED_SETTINGS, Bookkeeping
from gateway.federation.canonical import canonical_body
from gateway.federation.hooks import AcceptedWrite
from gateway.federation.locate import Locator, RunDirectory
from gateway.federation.mlflow_requests import ClientPoint, partial_read
from gateway.index.points import (
    MAX_BATCH_POINTS,
    PointWriter,
    literal_floats,
    literal_texts,
    read_client_points,
    read_metrics,
    read_points,
)
from gateway.index.write_through import IndexWriteThrough
from gateway.index.writer import IndexWriter, NewRun, RunChange, plan, plan_decoded_batch
from tests.databases import empty_database, execute

LINK = WorkspaceLink("team-a", 1001, "workspace", "a", "a", None)
RUNS = 3

REFUSE = """
CREATE FUNCTION test_refuse_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.metric_name = 'refused' THEN RAISE EXCEPTION 'chunk refused'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_chunk BEFORE INSERT ON ix_metrics FOR EACH ROW EXECUTE FUNCTION test_refuse_chunk();
"""


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[str]:
    """A migrated database of this module's own; each example drives it with asyncio.run, one loop per call."""
    with empty_database(database_url, "index_points") as url:
        upgrade(url)
        asyncio.run(execute(url, REFUSE))
        yield url


# -- calls, as JSON text (some literals only text can carry) ---------------------------------------------------

keys = st.sampled_from(['"loss"', '"acc"', '"é"', '"日本"', '"a b"', '"refused"', '"z"', '""'])
odd_keys = keys | st.sampled_from(["5", '"nul\\u0000"', "null"])
finite = st.floats(allow_nan=False, allow_infinity=False).map(repr)
values = st.one_of(
    finite,
    finite,
    st.sampled_from(["0.5", "1", "0", "0.0", "-1.5", "2", "-0.0", "1e-05", "1.5E+300"]),  # ties, zeros, exponents
    st.sampled_from(['"NaN"', '"Infinity"', '"-Infinity"']),
    st.integers(-(10**20), 10**20).map(str),
)
odd_values = st.sampled_from(
    [
        "-0",
        "0e5",
        "0.0e-2000",
        "1e-400",
        "2e-324",
        "4.9e-324",
        "1e400",
        "1.7976931348623157e308",
        "9007199254740993",
        "0." + "1" * 120,
        "1" + "0" * 40,
        "1E+2",
        '"0.5"',
        '"nan"',
        '"inf"',
        '"-0.0"',
        "null",
        "true",
        "[1]",
    ]
)
steps = st.one_of(st.integers(0, 3), st.integers(0, 3), st.integers(-(2**63), 2**63 - 1)).map(str)
odd_steps = st.sampled_from([str(2**63), str(-(2**63) - 1), '"2"', "1.0", "true", "null"])
timestamps = st.one_of(
    st.sampled_from([0, 1, 1_700_000_000_000, 1_700_000_000_001, -5]),
    st.integers(-8_000_000_000_000, 8_000_000_000_000),
).map(str)
odd_timestamps = st.sampled_from(["8000000000001", str(-(10**13)), str(10**16), '"7"', "1.5", "null"])


@dataclass(frozen=True)
class Call:
    run: int
    route: str
    metrics: str  # the points as JSON text
    params: dict[str, str]
    odd: bool


@st.composite
def points(draw: st.DrawFn, odd: bool) -> str:
    """One point; `odd`: with what MLflow's clients do not send, which the statement reads its own way or refuses."""
    fields = [f'"key":{draw(odd_keys if odd else keys)}']
    if not odd or draw(st.integers(0, 20)):
        fields.append(f'"value":{draw(values | odd_values if odd else values)}')
    if draw(st.integers(0, 9)):
        fields.append(f'"timestamp":{draw(timestamps | odd_timestamps if odd else timestamps)}')
    if draw(st.integers(0, 9)):
        fields.append(f'"step":{draw(steps | odd_steps if odd else steps)}')
    if draw(st.integers(0, 9)) == 0:
        fields.append('"run_id":"ignored"')
    order = draw(st.permutations(fields))
    return "{" + ",".join(order) + "}"


@st.composite
def calls(draw: st.DrawFn) -> Call:
    """One call's metrics as text; three in four with only what MLflow's clients send."""
    odd = draw(st.integers(0, 3)) == 0
    run = draw(st.integers(0, RUNS - 1))
    if draw(st.integers(0, 5)) == 0:
        return Call(run, RUNS_LOG_METRIC.name, draw(points(odd)), {}, odd)
    body = draw(st.lists(points(odd), min_size=1, max_size=12))
    bulk = draw(st.sampled_from([0, 0, 0, 299, 300, 301, 650]))
    body += [f'{{"key":"bulk","value":{i * 0.5},"timestamp":{i % 3},"step":{i % 7}}}' for i in range(bulk)]
    body = draw(st.permutations(body))
    # A param keeps its first value in MLflow: concurrent calls never set one to two values.
    params = {key: f"{key}-value" for key in draw(st.sets(st.sampled_from(["lr", "layers"])))}
    return Call(run, RUNS_LOG_BATCH.name, "[" + ",".join(body) + "]", params, odd)


@overload
def request(call: Call, run_id: str) -> bytes: ...
@overload
def request(call: Call, run_id: str, canonical: bool) -> bytes | None: ...
def request(call: Call, run_id: str, canonical: bool = False) -> bytes | None:
    """The call's body as the client sent it, or with `canonical` as the gateway forwards it (None: refused)."""
    if call.route == RUNS_LOG_METRIC.name:  # the body is the point, with the run's id
        body = ('{"run_id":"' + run_id + '",' + call.metrics[1:]).encode()
    else:
        params = [{"key": k, "value": v} for k, v in call.params.items()]
        extra = ',"params":' + json.dumps(params) if params else ""
        body = ('{"run_id":"' + run_id + '","metrics":' + call.metrics + extra + "}").encode()
    if not canonical:
        return body
    try:
        return canonical_body(body).encoded
    except InvalidParameter:
        return None


# -- the two ways, and what they leave ----------------------------------------------------------------------


async def no_store(link: WorkspaceLink, method: str, path: str) -> tuple[int, bytes]:
    raise ConnectionError("no store in this test: every run is in the run directory")


async def write_both(
    url: str, sequence: list[Call], max_points: int = MAX_BATCH_POINTS, canonical: bool = False, shared: bool = False
) -> PointWriter:
    """`sequence` written by the statement for one set of runs and through the hook for another, compared; the
    hook's point writer, for what it wrote. `canonical`: both get each body as the gateway forwards it (its
    canonical encoding; a body the gateway refuses is not sent), the hook with the document the guard read, and
    with `shared` the points the partial-read check converted from it too."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)

    async def open_pool(name: str, settings: Mapping[str, str] | None = None, /) -> asyncpg.Pool:
        return await asyncpg.create_pool(url, min_size=1, max_size=4, server_settings=dict(settings or {}))

    engine = make_engine(url, pool_size=1)
    bookkeeping = Bookkeeping(open_pool)
    directory = RunDirectory(make_sessionmaker(engine))
    statement_writer, hook_writer = IndexWriter(), IndexWriter()
    hook = IndexWriteThrough(hook_writer, bookkeeping, Locator(no_store, directory))
    # Batches of at most this many points (a call's points are never split).
    hook.points = PointWriter(lambda: bookkeeping.pool("derived", DERIVED_SETTINGS), max_points=max_points)
    try:
        pair = [(uuid.uuid4().hex, uuid.uuid4().hex) for _ in range(RUNS)]
        async with pool.acquire() as conn:
            for statement_run, hook_run in pair:
                for writer, run_id in ((statement_writer, statement_run), (hook_writer, hook_run)):
                    new = NewRun(LINK.workspace_id, run_id, "1", "a", "", "RUNNING", None, None, {})
                    await writer.apply(conn, new, LINK.workspace_id)
                directory.remember(hook_run, LINK.name, "1")
            # What every call went through before: the statement, call after call, as the hook applied it.
            for call in sequence:
                body = request(call, pair[call.run][0], canonical)
                if body is None:
                    continue
                try:
                    change = plan(call.route, LINK.workspace_id, body, b"{}", "a")
                except msgspec.MsgspecError:
                    continue  # the hook indexes no body it cannot read
                assert change is not None
                try:
                    await statement_writer.apply(conn, change, LINK.workspace_id, "1")
                except (asyncpg.PostgresError, UnicodeDecodeError):
                    statement_writer.forget()
        # Through the hook, all at once.
        writes = [accepted(call, pair[call.run][1], canonical, shared) for call in sequence]
        await asyncio.gather(*(hook.record(write) for write in writes if write is not None))
        async with pool.acquire() as conn:
            for statement_run, hook_run in pair:
                before = await index_rows(conn, statement_run)
                after = await index_rows(conn, hook_run)
                assert after == before
                assert after["latest"] == await plain_aggregates(conn, hook_run)
    finally:
        await bookkeeping.close()
        await pool.close()
        await engine.dispose()
    return hook.points


def accepted(call: Call, run_id: str, canonical: bool = False, shared: bool = False) -> AcceptedWrite | None:
    body = request(call, run_id, canonical)
    if body is None:
        return None
    document = canonical_body(body).document if canonical else None
    points = None
    if shared and document is not None and call.route == RUNS_LOG_BATCH.name:
        points = partial_read(RUNS_LOG_BATCH, body, "", document)[1]  # as the forwarder hands them on
    return AcceptedWrite(
        spec=RUNS_LOG_METRIC if call.route == RUNS_LOG_METRIC.name else RUNS_LOG_BATCH,
        link=LINK,
        principal="a",
        request=body,
        response=b"{}",
        ids=None,
        path_params={},
        artifact_path=None,
        document=document,
        points=points,
    )


async def index_rows(conn: asyncpg.Connection, run_id: str) -> dict[str, Any]:
    """A run's chunks (sorted: only their ids and insert times tell them apart) and aggregates, as text."""
    run_key = await conn.fetchval("SELECT run_key FROM ix_runs WHERE run_id = $1", run_id)
    chunks = await conn.fetch(
        "SELECT metric_name, metric_steps::text, metric_times::text, metric_values::text "
        "FROM ix_metrics WHERE run_key = $1",
        run_key,
    )
    params = await conn.fetchval("SELECT params::text FROM ix_runs WHERE run_key = $1", run_key)
    return {
        "chunks": sorted(tuple(row) for row in chunks),
        "latest": await latest_rows(conn, run_key),
        "params": params,
    }


async def latest_rows(conn: asyncpg.Connection, run_key: int) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT metric_name, latest_value::text, latest_step, latest_time::text, min_value::text, max_value::text, "
        "has_nan, points FROM ix_metric_latest WHERE run_key = $1 ORDER BY metric_name",
        run_key,
    )
    return [tuple(row) for row in rows]


PLAIN = """
WITH p AS (
    SELECT m.metric_name AS name, u.step, u.at, u.value, m.chunk_id, u.ord
    FROM ix_metrics m,
         unnest(m.metric_steps, m.metric_times, m.metric_values) WITH ORDINALITY AS u(step, at, value, ord)
    WHERE m.run_key = $1
), latest AS (
    -- MLflow's: the greatest step, then timestamp, then value as its store keeps it (NaN as 0, infinities as the
    -- greatest doubles); of equals, the first written.
    SELECT DISTINCT ON (name) name, step, at, value FROM p
    ORDER BY name, step DESC, at DESC,
             CASE WHEN value = 'NaN' THEN 0 ELSE LEAST(GREATEST(value, -1.7976931348623157e308), 1.7976931348623157e308)
             END DESC, chunk_id, ord
)
SELECT p.name, l.value::text, l.step, l.at::text,
       COALESCE(min(p.value) FILTER (WHERE p.value <> 'NaN'), 'Infinity')::text,
       COALESCE(max(p.value) FILTER (WHERE p.value <> 'NaN'), '-Infinity')::text,
       bool_or(p.value = 'NaN'), count(*)
FROM p JOIN latest l USING (name)
GROUP BY p.name, l.value, l.step, l.at ORDER BY p.name
"""


async def plain_aggregates(conn: asyncpg.Connection, run_id: str) -> list[tuple[Any, ...]]:
    """What the aggregate rows must say, computed from every point the run's chunks hold."""
    run_key = await conn.fetchval("SELECT run_key FROM ix_runs WHERE run_id = $1", run_id)
    return [tuple(row) for row in await conn.fetch(PLAIN, run_key)]


def log_batch(run: int, *points: str) -> Call:
    return Call(run, RUNS_LOG_BATCH.name, "[" + ",".join(points) + "]", {}, odd=False)


@given(sequence=st.lists(calls(), min_size=1, max_size=8), max_points=st.sampled_from([1, 20, MAX_BATCH_POINTS]))
@example(  # ties everywhere: the same step and timestamp, the latest decided by the value, NaN as 0
    sequence=[
        log_batch(
            0, '{"key":"a","value":1,"timestamp":5,"step":2}', '{"key":"a","value":"NaN","timestamp":5,"step":2}'
        ),
        log_batch(0, '{"key":"a","value":"Infinity","timestamp":5,"step":2}', '{"key":"a","value":3,"timestamp":5}'),
        log_batch(0, '{"key":"a","value":"-Infinity","timestamp":9,"step":1}', '{"key":"a","value":-0.0,"step":1}'),
        Call(0, RUNS_LOG_METRIC.name, '{"key":"b","value":0.0,"timestamp":5,"step":2}', {}, odd=False),
    ],
    max_points=MAX_BATCH_POINTS,
)
@example(  # a refused batch: the call with the refused metric fails alone, the others are written one by one
    sequence=[
        Call(1, RUNS_LOG_BATCH.name, '[{"key":"a","value":1,"timestamp":5,"step":2}]', {"lr": "1"}, odd=False),
        Call(1, RUNS_LOG_BATCH.name, '[{"key":"refused","value":1}]', {"layers": "2"}, odd=False),
        Call(2, RUNS_LOG_METRIC.name, '{"key":"a","value":-0.0,"timestamp":1,"step":0}', {}, odd=False),
    ],
    max_points=MAX_BATCH_POINTS,
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_points_written_through_the_point_writer_equal_the_statements(
    database: str, sequence: list[Call], max_points: int
) -> None:
    for call in sequence:
        points = call.metrics.encode() if call.route == RUNS_LOG_BATCH.name else b"[" + call.metrics.encode() + b"]"
        if not call.odd and not tiny_beside_zero(points):
            assert read_points(1, points) is not None  # what MLflow's clients send is read here
    asyncio.run(write_both(database, sequence, max_points))


@given(sequence=st.lists(calls(), min_size=1, max_size=8), shared=st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_points_read_from_the_guards_document_equal_the_statements(
    database: str, sequence: list[Call], shared: bool
) -> None:
    """Bodies as the gateway forwards them, the hook reading the points from the document the guard decoded, or
    (`shared`) from the points the partial-read check converted from it."""
    asyncio.run(write_both(database, sequence, canonical=True, shared=shared))


@given(call=calls(), run_key=st.integers(1, 2**40))
@example(
    call=log_batch(
        0, '{"key":"a","value":0,"timestamp":1,"step":1}', '{"key":"b","value":1e-100,"timestamp":1,"step":1}'
    ),
    run_key=1,
)
@example(call=log_batch(0, '{"key":"a","value":1' + "0" * 98 + ',"timestamp":1,"step":1}'), run_key=1)
@example(call=log_batch(0, '{"key":"' + "1" * 99 + '","value":1,"timestamp":1,"step":1}'), run_key=1)
@example(call=log_batch(0, '{"key":"e-123","value":0,"timestamp":1,"step":1}'), run_key=1)
@example(call=log_batch(0, '{"key":"a","value":true,"timestamp":1,"step":1}'), run_key=1)
@example(call=log_batch(0, '{"key":"a","value":1,"timestamp":1,"step":true}'), run_key=1)
@example(call=log_batch(0, '{"key":"a","value":9007199254740993,"timestamp":1,"step":1}'), run_key=1)
@settings(max_examples=300, deadline=None)
def test_points_read_from_the_document_equal_the_points_read_from_the_body(call: Call, run_key: int) -> None:
    """`read_metrics` (the canonical document's points) gives exactly what `read_points` gives for the body's
    points, or leaves the body to it: never other rows, never rows where read_points leaves it to the statement."""
    body = request(call, "r" * 32, canonical=True)
    if body is None or call.route != RUNS_LOG_BATCH.name:
        return
    change = plan(call.route, LINK.workspace_id, body, b"{}", "a")
    assert isinstance(change, RunChange) and change.points is not None
    document = canonical_body(body).document
    got = read_metrics(run_key, document.get("metrics"))
    assert got is None or got == read_points(run_key, change.points)
    points = partial_read(RUNS_LOG_BATCH, body, "", document)[1]
    if points is not None:  # the check's points give what the document gives
        assert read_client_points(run_key, points) == got


@given(
    call=calls(),
    extra=st.sampled_from(
        [
            "",
            ',"tags":[{"key":"t","value":"v"}]',
            ',"status":5',
            ',"tags":[{"key":1}]',
            ',"run_uuid":"u"',
            ',"value":true',
        ]
    ),
)
@example(call=log_batch(0), extra="")
@example(call=Call(0, RUNS_LOG_BATCH.name, "null", {"lr": "1"}, odd=False), extra="")
@settings(max_examples=200, deadline=None)
def test_a_log_batch_planned_from_the_document_is_planned_as_from_the_body(call: Call, extra: str) -> None:
    """`plan_decoded_batch` of the guard's document: the change `plan` makes of the body, less its points as text,
    and the points as decoded exactly when `plan` finds points; a body `plan` cannot read is refused alike."""
    body = request(dc_replace(call, metrics=call.metrics + extra) if extra else call, "r" * 32, canonical=True)
    if body is None or call.route != RUNS_LOG_BATCH.name:
        return
    try:
        from_body = plan(call.route, LINK.workspace_id, body, b"{}", "a")
    except msgspec.ValidationError:
        with pytest.raises(msgspec.ValidationError):
            plan_decoded_batch(canonical_body(body).document)
        return
    change, decoded = plan_decoded_batch(canonical_body(body).document)
    assert isinstance(from_body, RunChange)
    assert change == dc_replace(from_body, points=None)
    assert (decoded is not None) == (from_body.points is not None)


@given(
    body=st.lists(
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(["loss", "acc", "é", "val_loss"]),
                "value": st.floats(-1e97, 1e97).filter(lambda v: v == 0 or abs(v) > 1e-98) | st.integers(-5, 5),
                "timestamp": st.integers(0, 2_000_000_000_000),
                "step": st.integers(0, 3),
            }
        ),
        min_size=1,
        max_size=40,
    ),
    repeat=st.integers(1, 3),
)
def test_what_mlflow_clients_send_is_read_from_the_document(body: list[dict[str, Any]], repeat: int) -> None:
    """The points of the stock client's bodies come from the guard's document, not decoded again: in any order
    and as the same metrics step after step."""
    metrics = canonical_body(msgspec.json.encode({"run_id": "r", "metrics": body * repeat})).document["metrics"]
    assert read_metrics(1, metrics) == read_points(1, msgspec.json.encode(body * repeat))
    assert read_client_points(1, msgspec.convert(metrics, list[ClientPoint])) == read_metrics(1, metrics)


@given(
    names=st.lists(st.sampled_from(["loss", "acc", "é", "val_loss", "a b"]), min_size=1, max_size=4),
    values=st.lists(
        st.floats(-1e97, 1e97).filter(lambda v: v == 0 or abs(v) > 1e-98) | st.integers(-5, 5) | st.just(-0.0),
        min_size=1,
        max_size=700,
    ),
    step=st.integers(-(2**63), 2**63 - 1),
    timestamp=st.integers(-8_000_000_000_000, 8_000_000_000_000),
    order=st.sampled_from(["repeated", "shuffled", "grouped"]),
)
def test_a_call_of_one_step_and_one_timestamp_is_read_as_any_other(
    names: list[str], values: list[float], step: int, timestamp: int, order: str
) -> None:
    """A call whose points all share a step and a timestamp (how the stock client logs a dict of metrics per step)
    is read by a path of its own: the same rows as from the body, chunks past 300 points, zeros and -0 included."""
    body = [
        {"key": names[at % len(names)], "value": value, "timestamp": timestamp, "step": step}
        for at, value in enumerate(values)
    ]
    if order == "shuffled":
        body = body[1:] + body[:1]
    elif order == "grouped":
        body.sort(key=lambda point: point["key"])
    metrics = canonical_body(msgspec.json.encode({"run_id": "r", "metrics": body})).document["metrics"]
    rows = read_metrics(7, metrics)
    assert rows is not None
    assert rows == read_points(7, msgspec.json.encode(body))
    assert read_client_points(7, msgspec.convert(metrics, list[ClientPoint])) == rows


@given(
    timestamps=st.lists(
        st.sampled_from([-(2**63), -8_000_000_000_001, -8_000_000_000_000, 0, 8_000_000_000_000, 8_000_000_000_001])
        | st.integers(-(2**63), 2**63 - 1),
        min_size=1,
        max_size=3,
    ),
    step=st.integers(0, 1),
)
def test_the_checks_points_leave_to_read_points_what_the_document_leaves(timestamps: list[int], step: int) -> None:
    """The partial-read check's points hold any int8 timestamp; the index's range (MAX_MS) is checked on them as
    `read_metrics` checks it on the document, on calls of one timestamp and of several."""
    body = [{"key": "m", "value": 1.5, "timestamp": at, "step": step} for at in timestamps]
    metrics = canonical_body(msgspec.json.encode({"run_id": "r", "metrics": body})).document["metrics"]
    assert read_client_points(3, msgspec.convert(metrics, list[ClientPoint])) == read_metrics(3, metrics)


@given(
    names=st.lists(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")), max_size=8),
    numbers=st.lists(st.floats() | st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308]), max_size=8),
)
@example(
    names=["", "NULL", "null", '"', "\\", '\\"', "'", "''", "{a,b}", " a ", "$$", "E'x'", "a\nb", "\\'; SELECT 1; --"],
    numbers=[math.nan, math.inf, -math.inf, -0.0, 0.1, 1e-310],
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_batchs_literals_read_back_as_the_values_they_spell(
    database: str, names: list[str], numbers: list[float]
) -> None:
    """The upsert's arguments go to PostgreSQL as literals in the batch's message: any metric name (whatever it
    quotes or escapes) reads back as itself, any float8 as itself, bit for bit."""

    async def read_back() -> tuple[list[str], list[bytes]]:
        conn = await asyncpg.connect(database)
        try:
            texts = await conn.fetchval(f"SELECT {literal_texts(names)}::text[]")
            floats = await conn.fetchval(f"SELECT {literal_floats(numbers)}::float8[]")
        finally:
            await conn.close()
        return texts, [struct.pack(">d", v) for v in floats]

    texts, floats = asyncio.run(read_back())
    assert texts == names
    # NaN has more than one spelling in bits: PostgreSQL keeps one.
    assert floats == [struct.pack(">d", math.nan if v != v else v) for v in numbers]


def tiny_beside_zero(points: bytes) -> bool:
    """A body with a zero and a number below 1e-99: left to the statement (it might be too small for float8)."""
    numbers = [p["value"] for p in json.loads(points) if isinstance(p.get("value"), int | float)]
    return 0 in numbers and any(0 < abs(n) < 1e-99 for n in numbers)


def test_a_batch_touches_a_run_not_touched_within_a_second(database: str) -> None:
    """`ix_runs.update_time` says when the write-through last changed the run: a batch sets it unless it was set in
    the last second (a run logged batch after batch is touched about once a second, not on every batch)."""

    async def scenario() -> tuple[bool, bool]:
        pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                run_key = await conn.fetchval(
                    "INSERT INTO ix_runs (run_id, workspace_id, experiment_id, update_time) "
                    "VALUES ($1, $2, '1', now() - interval '1 hour') RETURNING run_key",
                    uuid.uuid4().hex,
                    LINK.workspace_id,
                )

            async def the_pool() -> asyncpg.Pool:
                return pool

            writer = PointWriter(the_pool)
            points = [{"key": "loss", "value": 0.5, "timestamp": 1, "step": 1}]
            rows = read_metrics(run_key, points)
            assert rows is not None
            await writer.write(rows)
            async with pool.acquire() as conn:
                touched = await conn.fetchval(
                    "SELECT update_time > now() - interval '1 minute' FROM ix_runs WHERE run_key = $1", run_key
                )
                # Set within the last second, as far as the next batch can tell: left alone.
                later = await conn.fetchval(
                    "UPDATE ix_runs SET update_time = now() + interval '1 hour' WHERE run_key = $1 "
                    "RETURNING update_time",
                    run_key,
                )
            await writer.write(rows)
            async with pool.acquire() as conn:
                kept = await conn.fetchval("SELECT update_time FROM ix_runs WHERE run_key = $1", run_key) == later
            return touched, kept
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == (True, True)


def test_concurrent_calls_are_written_in_one_batch_as_the_statements_write_them(database: str) -> None:
    """Eight calls at once, three of them for one run and metric with ties and NaN: one COPY, one upsert."""
    sequence = [
        log_batch(0, '{"key":"loss","value":0.5,"timestamp":1,"step":3}', '{"key":"acc","value":"NaN","step":3}'),
        log_batch(0, '{"key":"loss","value":"NaN","timestamp":1,"step":3}', '{"key":"loss","value":9,"step":1}'),
        log_batch(0, '{"key":"loss","value":0.5,"timestamp":1,"step":3}', '{"key":"acc","value":1,"step":4}'),
        log_batch(1, *(f'{{"key":"m{i % 3}","value":{i / 7},"timestamp":{i},"step":{i % 5}}}' for i in range(700))),
        log_batch(1, '{"key":"m1","value":"-Infinity","timestamp":3,"step":4}'),
        log_batch(2, '{"key":"x","value":"Infinity"}', '{"key":"x","value":"-Infinity"}'),
        log_batch(2, '{"key":"x","value":-0.0,"step":-1}'),
        Call(2, RUNS_LOG_METRIC.name, '{"key":"y","value":1e-300,"timestamp":2,"step":2}', {}, odd=False),
    ]
    writer = asyncio.run(write_both(database, sequence))
    assert (writer.calls, writer.batches) == (8, 1)


@given(
    body=st.lists(
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(["loss", "acc", "é"]),
                "value": st.floats(-1e300, 1e300).filter(lambda v: v == 0 or abs(v) > 1e-99)
                | st.sampled_from(["NaN", "Infinity", "-Infinity"]),
                "timestamp": st.integers(0, 3),
                "step": st.integers(0, 3),
            }
        ),
        min_size=1,
        max_size=30,
    )
)
def test_what_mlflow_clients_send_is_read_here_not_left_to_the_statement(body: list[dict[str, Any]]) -> None:
    """The point writer takes the bodies the stock client makes (floats, down to 1e-99 beside a zero, and NaN and
    infinities as strings), compact or indented."""
    assert read_points(1, msgspec.json.encode(body)) is not None
    assert read_points(1, json.dumps(body, indent=2).encode()) is not None
