"""Write-through of the account-wide index: every tracking write the gateway forwards updates it.

The index is what the system tables and account-wide search read. A write is indexed after the
store accepted it, by the after-write hook of write_through.py, on a connection of its own (best
effort, asynchronous commit). Metric points are appended as chunks; the per-(run, metric)
aggregates are maintained incrementally with one upsert per batch.

Two steps: `plan` reads the write (the route, what the client sent and the store answered) and says
which index rows change and how, without a database; `IndexWriter.apply` carries that out in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from gateway.core.bounded import BoundedCache
from gateway.core.route_table import (
    EXPERIMENTS_CREATE,
    EXPERIMENTS_DELETE,
    EXPERIMENTS_DELETE_TAG,
    EXPERIMENTS_RESTORE,
    EXPERIMENTS_SET_TAG,
    EXPERIMENTS_UPDATE,
    RUNS_CREATE,
    RUNS_DELETE,
    RUNS_DELETE_TAG,
    RUNS_LOG_BATCH,
    RUNS_LOG_INPUTS,
    RUNS_LOG_METRIC,
    RUNS_LOG_PARAMETER,
    RUNS_RESTORE,
    RUNS_SET_TAG,
    RUNS_UPDATE,
    Resource,
    Trait,
    having,
)

# -- what the client sent (only the fields the index keeps; the store has validated the rest) --------


class _KeyValue(msgspec.Struct):
    key: str
    value: str = ""


class _Dataset(msgspec.Struct):
    name: str = ""
    digest: str = ""
    source_type: str = ""


class _DatasetInput(msgspec.Struct):
    dataset: _Dataset = msgspec.field(default_factory=_Dataset)
    tags: list[_KeyValue] = []


class RunWrite(msgspec.Struct):
    run_id: str = ""
    run_uuid: str = ""
    key: str = ""
    value: float | str | None = None
    # Left as raw JSON: PostgreSQL parses the points (C, one pass) instead of Python building objects.
    metrics: msgspec.Raw = msgspec.Raw(b"[]")
    params: list[_KeyValue] = []
    tags: list[_KeyValue] = []
    datasets: list[_DatasetInput] = []
    status: str | None = None
    end_time: int | str | None = None
    run_name: str | None = None

    @property
    def id(self) -> str:
        return self.run_id or self.run_uuid


class ExperimentWrite(msgspec.Struct):
    experiment_id: str = ""
    name: str = ""
    new_name: str = ""
    key: str = ""
    value: str = ""
    tags: list[_KeyValue] = []


class _CreatedExperiment(msgspec.Struct):
    experiment_id: str


class _RunInfo(msgspec.Struct):
    run_id: str
    experiment_id: str
    run_name: str = ""
    status: str = "RUNNING"
    start_time: int | str | None = None
    end_time: int | str | None = None


class _RunData(msgspec.Struct):
    tags: list[_KeyValue] = []
    params: list[_KeyValue] = []


class _Run(msgspec.Struct):
    info: _RunInfo
    data: _RunData = msgspec.field(default_factory=_RunData)


class _CreatedRun(msgspec.Struct):
    run: _Run


# Route names of the indexed writes (the INDEXED trait of the route table), by what they change.
INDEXED_ROUTES = frozenset(spec.name for spec in having(Trait.INDEXED))
RUN_ROUTES = frozenset(
    spec.name for spec in having(Trait.INDEXED) if spec.resource is Resource.RUN and spec != RUNS_CREATE
)
EXPERIMENT_ROUTES = frozenset(spec.name for spec in having(Trait.INDEXED) if spec.resource is Resource.EXPERIMENT)
RUN_NAME_TAG = "mlflow.runName"
DATASET_CONTEXT_TAG = "mlflow.data.context"

# -- what a write changes in the index (no database) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewExperiment:
    """experiments/create: an `ix_experiments` row (a recreated id is renamed, retagged and undeleted)."""

    workspace_id: int
    experiment_id: str
    name: str
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ExperimentChange:
    """One change to the `ix_experiments` row (workspace_id, experiment_id)."""

    workspace_id: int
    experiment_id: str
    new_name: str | None = None
    deleted: bool | None = None  # True: deleted with its runs; False: restored with every run of it
    set_tag: tuple[str, str] | None = None
    drop_tag: str | None = None


@dataclass(frozen=True, slots=True)
class NewRun:
    """runs/create: an `ix_runs` row, as the store answered it, created by the calling principal."""

    workspace_id: int
    run_id: str
    experiment_id: str
    created_by: str
    run_name: str
    status: str
    start_time: datetime | None
    end_time: datetime | None
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """runs/update: what is given replaces the run's status, end time, and name (with its mlflow.runName tag)."""

    status: str | None
    end_time: datetime | None
    run_name: str | None


@dataclass(frozen=True, slots=True)
class RunChange:
    """Changes to the `ix_runs` row of `run_id` (and its metric rows), applied in the order of the fields.

    `points` is the JSON array of metric points as the client sent them (PostgreSQL parses it into
    `ix_metrics` chunks and `ix_metric_latest` aggregates); params and tags are merged into the run's
    maps (an `mlflow.runName` tag also renames the run).
    """

    run_id: str
    points: bytes | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    drop_tag: str | None = None
    update: RunUpdate | None = None
    deleted: bool | None = None
    datasets: Sequence[Mapping[str, str]] = ()


IndexChange = NewExperiment | ExperimentChange | NewRun | RunChange


def plan(route: str, workspace_id: int, request: bytes, response: bytes, principal: str) -> IndexChange | None:
    """What an accepted write of `route` changes in the index; None for a route the index does not follow."""
    if route == RUNS_CREATE.name:
        run = msgspec.json.decode(response, type=_CreatedRun).run
        tags = {t.key: t.value for t in run.data.tags}
        return NewRun(
            workspace_id=workspace_id,
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            created_by=principal,
            run_name=run.info.run_name or tags.get(RUN_NAME_TAG, ""),
            status=run.info.status,
            start_time=to_time(run.info.start_time),
            end_time=to_time(run.info.end_time),
            tags=tags,
        )
    if route in RUN_ROUTES:
        return _run_change(route, msgspec.json.decode(request or b"{}", type=RunWrite), request)
    if route in EXPERIMENT_ROUTES:
        write = msgspec.json.decode(request or b"{}", type=ExperimentWrite)
        if route == EXPERIMENTS_CREATE.name:
            created = msgspec.json.decode(response, type=_CreatedExperiment)
            return NewExperiment(workspace_id, created.experiment_id, write.name, {t.key: t.value for t in write.tags})
        change = ExperimentChange(workspace_id, write.experiment_id)
        if route == EXPERIMENTS_UPDATE.name:
            return replace(change, new_name=write.new_name)
        if route in (EXPERIMENTS_DELETE.name, EXPERIMENTS_RESTORE.name):
            return replace(change, deleted=route == EXPERIMENTS_DELETE.name)
        if route == EXPERIMENTS_SET_TAG.name:
            return replace(change, set_tag=(write.key, write.value))
        if route == EXPERIMENTS_DELETE_TAG.name:
            return replace(change, drop_tag=write.key)
    return None


class _DecodedRunWrite(RunWrite):
    """A run write as the guard decoded its body: the same fields, checked alike, the points as they were decoded."""

    metrics: Any = None


def plan_decoded_batch(document: Mapping[str, Any]) -> tuple[RunChange, list[Any] | None]:
    """`plan` of a log-batch from the document the guard decoded (no second decode of the body): the change without
    its points, and the points as decoded (None: none). `plan` of the body gives the points as text, for what
    `read_metrics` leaves. Raises msgspec.ValidationError where `plan` of the body raises."""
    write = msgspec.convert(document, _DecodedRunWrite)
    points = write.metrics if type(write.metrics) is list and write.metrics else None
    change = RunChange(
        write.id, params={p.key: p.value for p in write.params}, tags={t.key: t.value for t in write.tags}
    )
    return change, points


def _run_change(route: str, write: RunWrite, request: bytes) -> RunChange:
    change = RunChange(write.id)
    if route == RUNS_LOG_METRIC.name:
        # The body is itself one point: {"run_id", "key", "value", "timestamp", "step"}.
        return replace(change, points=b"[" + request + b"]")
    if route == RUNS_LOG_BATCH.name:
        points = bytes(write.metrics)
        return replace(
            change,
            points=points if points.strip() not in (b"[]", b"null") else None,
            params={p.key: p.value for p in write.params},
            tags={t.key: t.value for t in write.tags},
        )
    if route == RUNS_LOG_PARAMETER.name:
        return replace(change, params={write.key: str(write.value or "")})
    if route == RUNS_SET_TAG.name:
        return replace(change, tags={write.key: str(write.value or "")})
    if route == RUNS_DELETE_TAG.name:
        return replace(change, drop_tag=write.key)
    if route == RUNS_UPDATE.name:
        return replace(change, update=RunUpdate(write.status, to_time(write.end_time), write.run_name))
    if route in (RUNS_DELETE.name, RUNS_RESTORE.name):
        return replace(change, deleted=route == RUNS_DELETE.name)
    if route == RUNS_LOG_INPUTS.name:
        datasets = [
            {
                "name": item.dataset.name,
                "digest": item.dataset.digest,
                "context": next((t.value for t in item.tags if t.key == DATASET_CONTEXT_TAG), ""),
            }
            for item in write.datasets
        ]
        return replace(change, datasets=datasets)
    return change


def to_float(value: float | str | None) -> float:
    """MLflow's JSON carries NaN and infinities as strings ("NaN", "Infinity", "-Infinity")."""
    if isinstance(value, float | int):
        return float(value)
    return float(value) if value is not None else math.nan


def to_time(ms: int | str | None) -> datetime | None:
    if ms is None or ms == "":
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


# How a batch's aggregate of one run and metric merges into the one stored: the statement below and the point
# writer (gateway/index/points.py) end with it.
# How MLflow's SQL stores rank two values at one step and timestamp: as they keep them, NaN as 0 and ±Infinity as
# ±max double (points.py `_rank` is the same).
RANK_NEW = (
    "CASE WHEN EXCLUDED.latest_value = 'NaN' THEN 0 ELSE LEAST(GREATEST(EXCLUDED.latest_value, {low}), {high}) END"
)
RANK_OLD = "CASE WHEN t.latest_value = 'NaN' THEN 0 ELSE LEAST(GREATEST(t.latest_value, {low}), {high}) END"
_BOUNDS = {"low": "-1.7976931348623157e308", "high": "1.7976931348623157e308"}
RANK_VALUE = "CASE WHEN value = 'NaN' THEN 0 ELSE LEAST(GREATEST(value, {low}), {high}) END".format(**_BOUNDS)
_NEWER = (
    f"(EXCLUDED.latest_step, EXCLUDED.latest_time, {RANK_NEW.format(**_BOUNDS)})"
    f" > (t.latest_step, t.latest_time, {RANK_OLD.format(**_BOUNDS)})"
)
MERGE_METRIC_AGGREGATES = f"""
ON CONFLICT (run_key, metric_name) DO UPDATE SET
    -- MLflow's "latest": greatest step, then timestamp, then value as its store keeps it (NaN as 0); on a full tie
    -- the first logged stays.
    (latest_value, latest_step, latest_time) = (
        CASE WHEN {_NEWER} THEN EXCLUDED.latest_value ELSE t.latest_value END,
        CASE WHEN {_NEWER} THEN EXCLUDED.latest_step ELSE t.latest_step END,
        CASE WHEN {_NEWER} THEN EXCLUDED.latest_time ELSE t.latest_time END
    ),
    min_value = LEAST(t.min_value, EXCLUDED.min_value),
    max_value = GREATEST(t.max_value, EXCLUDED.max_value),
    has_nan = t.has_nan OR EXCLUDED.has_nan,
    points = t.points + EXCLUDED.points
"""

# One round trip per batch: the points are appended as chunks (one row per metric and up to
# 300 points, in the order sent) and each metric's aggregate is merged, all in PostgreSQL.
# Aggregates are upserted in name order, so two batches of one run take their row locks in the same
# order. Min and max are over non-NaN values (neutral +/-Infinity when a batch has none); the views
# show NaN once `has_nan`.
# Chunks hold at most 300 points: three arrays of 300 eight-byte values keep a row inside one page.
LOG_METRICS = f"""
WITH p AS (
    SELECT e->>'key' AS name, COALESCE((e->>'step')::int8, 0) AS step,
           'epoch'::timestamptz + COALESCE((e->>'timestamp')::int8, 0) * interval '1 millisecond' AS at,
           (e->>'value')::float8 AS value, ord
    FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS u(e, ord)
), appended AS (
    INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values)
    SELECT $1, name, array_agg(step ORDER BY ord), array_agg(at ORDER BY ord), array_agg(value ORDER BY ord)
    FROM (SELECT *, (row_number() OVER (PARTITION BY name ORDER BY ord) - 1) / 300 AS part FROM p) AS numbered
    GROUP BY name, part
), touched AS (
    UPDATE ix_runs SET update_time = now() WHERE run_key = $1
), latest AS (
    SELECT DISTINCT ON (name) name, step, at, value FROM p
    ORDER BY name, step DESC, at DESC, {RANK_VALUE} DESC, ord
), figures AS (
    SELECT name,
           COALESCE(min(value) FILTER (WHERE value <> 'NaN'), 'Infinity') AS low,
           COALESCE(max(value) FILTER (WHERE value <> 'NaN'), '-Infinity') AS high,
           bool_or(value = 'NaN') AS has_nan, count(*) AS points
    FROM p GROUP BY name
)
INSERT INTO ix_metric_latest AS t
    (run_key, metric_name, latest_value, latest_step, latest_time, min_value, max_value, has_nan, points)
SELECT $1, f.name, l.value, l.step, l.at, f.low, f.high, f.has_nan, f.points
FROM figures f JOIN latest l USING (name) ORDER BY f.name
{MERGE_METRIC_AGGREGATES}"""  # noqa: S608 (two constants)

# The sync's way in: one metric's points, appended as chunks in the order given.
APPEND_POINTS = """
INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values)
SELECT $1, $2, array_agg(step ORDER BY ord),
       array_agg('epoch'::timestamptz + ms * interval '1 millisecond' ORDER BY ord), array_agg(value ORDER BY ord)
FROM unnest($3::int8[], $4::int8[], $5::float8[]) WITH ORDINALITY AS u(step, ms, value, ord)
GROUP BY (ord - 1) / 300
"""


class IndexWriter:
    """Applies one accepted write to the index, on a connection inside the caller's transaction."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._run_keys: BoundedCache[str, int] = BoundedCache(cache_size)  # aged from when kept

    def forget(self) -> None:
        self._run_keys.clear()

    def known_run_key(self, run_id: str) -> int | None:
        """The index key of `run_id` if this writer holds it."""
        return self._run_keys.peek(run_id)

    def unseen_run(self, change: IndexChange) -> str | None:
        """The run a change names whose index key this writer does not hold: the caller finds its
        experiment (`apply`'s `experiment_id`) before it takes a connection, in case the index has no row
        for the run either."""
        if isinstance(change, RunChange) and change.run_id and change.run_id not in self._run_keys:
            return change.run_id
        return None

    async def apply(
        self, conn: asyncpg.Connection, change: IndexChange, workspace_id: int, experiment_id: str | None = None
    ) -> None:
        """One planned change (`plan`) of the workspace's; `experiment_id`: the `unseen_run`'s, if found."""
        if isinstance(change, NewRun):
            await self._create_run(conn, change)
        elif isinstance(change, RunChange):
            run_key = await self.run_key(conn, change.run_id, workspace_id, experiment_id)
            if run_key is not None:
                await self._change_run(conn, run_key, change)
        elif isinstance(change, NewExperiment):
            await conn.execute(
                "INSERT INTO ix_experiments (workspace_id, experiment_id, name, tags) VALUES ($1, $2, $3, $4::jsonb) "
                "ON CONFLICT (workspace_id, experiment_id) DO UPDATE SET name = EXCLUDED.name, "
                "tags = EXCLUDED.tags, update_time = now(), delete_time = NULL",
                change.workspace_id,
                change.experiment_id,
                change.name,
                msgspec.json.encode(change.tags).decode(),
            )
        elif isinstance(change, ExperimentChange):
            await self._change_experiment(conn, change)

    # -- experiments ------------------------------------------------------------------------------------

    @staticmethod
    async def _change_experiment(conn: asyncpg.Connection, change: ExperimentChange) -> None:
        key = (change.workspace_id, change.experiment_id)
        if change.new_name is not None:
            await conn.execute(
                "UPDATE ix_experiments SET name = $3, update_time = now() "
                "WHERE workspace_id = $1 AND experiment_id = $2",
                *key,
                change.new_name,
            )
        if change.deleted is True:
            # MLflow marks every run of the experiment deleted with it (a deleted run's time is set again) and,
            # restoring it, marks every run active: also one deleted before the experiment was.
            await conn.execute(
                "WITH e AS (UPDATE ix_experiments SET delete_time = now(), update_time = now() "
                "  WHERE workspace_id = $1 AND experiment_id = $2 RETURNING delete_time) "
                "UPDATE ix_runs SET delete_time = (SELECT delete_time FROM e), update_time = now() "
                "WHERE workspace_id = $1 AND experiment_id = $2",
                *key,
            )
        elif change.deleted is False:
            await conn.execute(
                "WITH r AS (UPDATE ix_runs SET delete_time = NULL, update_time = now() "
                "  WHERE workspace_id = $1 AND experiment_id = $2 AND delete_time IS NOT NULL) "
                "UPDATE ix_experiments SET delete_time = NULL, update_time = now() "
                "WHERE workspace_id = $1 AND experiment_id = $2",
                *key,
            )
        if change.set_tag is not None:
            await conn.execute(
                "UPDATE ix_experiments SET tags = tags || jsonb_build_object($3::text, $4::text), update_time = now() "
                "WHERE workspace_id = $1 AND experiment_id = $2",
                *key,
                *change.set_tag,
            )
        if change.drop_tag is not None:
            await conn.execute(
                "UPDATE ix_experiments SET tags = tags - $3::text, update_time = now() "
                "WHERE workspace_id = $1 AND experiment_id = $2",
                *key,
                change.drop_tag,
            )

    # -- runs -------------------------------------------------------------------------------------------

    async def _create_run(self, conn: asyncpg.Connection, run: NewRun) -> None:
        run_key = await conn.fetchval(
            "INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, start_time, "
            "end_time, tags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) "
            "ON CONFLICT (run_id) DO UPDATE SET run_name = EXCLUDED.run_name, created_by = EXCLUDED.created_by "
            "RETURNING run_key",
            run.run_id,
            run.workspace_id,
            run.experiment_id,
            run.created_by,
            run.run_name,
            run.status,
            run.start_time,
            run.end_time,
            msgspec.json.encode(run.tags).decode(),
        )
        self._run_keys.put(run.run_id, run_key)

    async def run_key(
        self,
        conn: asyncpg.Connection,
        run_id: str,
        workspace_id: int,
        experiment_id: str | None,
    ) -> int | None:
        """The index key of `run_id` (None: not indexed, and no `experiment_id` to index it under)."""
        if not run_id:
            return None
        if (cached := self._run_keys.peek(run_id)) is not None:
            return cached
        run_key: int | None = await conn.fetchval("SELECT run_key FROM ix_runs WHERE run_id = $1", run_id)
        if run_key is None:
            # A run created before the index knew its workspace, or outside the gateway: index what this
            # write says now and let the sync job fill in the rest.
            if experiment_id is None:
                return None
            run_key = await conn.fetchval(
                "INSERT INTO ix_runs (run_id, workspace_id, experiment_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (run_id) DO UPDATE SET update_time = ix_runs.update_time RETURNING run_key",
                run_id,
                workspace_id,
                experiment_id,
            )
            await conn.execute(
                "INSERT INTO ix_dirty_runs (run_id, workspace_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                run_id,
                workspace_id,
            )
        self._run_keys.put(run_id, run_key)
        return run_key

    async def _change_run(self, conn: asyncpg.Connection, run_key: int, change: RunChange) -> None:
        if change.points is not None:
            await self.log_metrics(conn, run_key, change.points)
        if change.params or change.tags:
            await conn.execute(
                "UPDATE ix_runs SET params = params || $2::jsonb, tags = tags || $3::jsonb, "
                "run_name = COALESCE($4, run_name), update_time = now() WHERE run_key = $1",
                run_key,
                msgspec.json.encode(change.params).decode(),
                msgspec.json.encode(change.tags).decode(),
                change.tags.get(RUN_NAME_TAG),
            )
        if change.drop_tag is not None:
            await conn.execute(
                "UPDATE ix_runs SET tags = tags - $2::text, update_time = now() WHERE run_key = $1",
                run_key,
                change.drop_tag,
            )
        if (update := change.update) is not None:
            await conn.execute(
                "UPDATE ix_runs SET status = COALESCE($2, status), end_time = COALESCE($3, end_time), "
                "run_name = COALESCE(NULLIF($4, ''), run_name), "
                "tags = CASE WHEN COALESCE($4, '') = '' THEN tags "
                "ELSE tags || jsonb_build_object($5::text, $4::text) END, "
                "update_time = now() WHERE run_key = $1",
                run_key,
                update.status,
                update.end_time,
                update.run_name,
                RUN_NAME_TAG,
            )
        if change.deleted is True:
            await conn.execute(
                "UPDATE ix_runs SET delete_time = now(), update_time = now() WHERE run_key = $1", run_key
            )
        elif change.deleted is False:
            await conn.execute("UPDATE ix_runs SET delete_time = NULL, update_time = now() WHERE run_key = $1", run_key)
        if change.datasets:
            await conn.execute(
                "UPDATE ix_runs SET datasets = datasets || $2::jsonb, update_time = now() WHERE run_key = $1",
                run_key,
                msgspec.json.encode(change.datasets).decode(),
            )

    async def log_metrics(self, conn: asyncpg.Connection, run_key: int, points: bytes) -> None:
        """`points`: a JSON array of MLflow metrics as the client sent them."""
        await conn.execute(LOG_METRICS, run_key, points.decode())
