"""Recursive run metrics from the account index: Azure ML's `run.get_metrics(recursive=True)` of the Run API.

`GET /api/2.0/fedgate/runs/metrics-recursive?run_id=...` answers `{run_id: {name: value or list}}` for the run and
every descendant (children by their `mlflow.parentRunId` tag, their children, ...) that the caller may read,
each run's metrics read back as Azure ML answers them (gateway/client/encoding.py: the same decoding as the
client's own `get_metrics()`; non-finite numbers spelled "NaN", "Infinity", "-Infinity").

One SQL statement: a recursive walk of the run's descendants in its workspace (the partial index
`ix_runs_parent`, migration 0014), then every point of every metric of the visible runs, in step order. A point
the index was sent more than once (same step, timestamp and value: a retried call, a batch naming it twice) is
one value, the first written, as in MLflow's store and `run_metrics_history` (migrations 0049 and 0053: ±Infinity
and ±max double of one step and time are one point, as the store keys ±Infinity as ±max double). The
run must be readable as reading it through the forwarded routes requires (CAN_READ on its experiment, or on
its workspace); one that is not answers like a missing run. Descendants the caller may not read are left out
(their own readable descendants are not). Deleted descendants are left out, as MLflow's searches leave them.

What one read costs the worker is bounded: at most MAX_POINTS values (the statement's first row says how many
the tree holds, from `ix_metric_latest`, before any point is read: 400 beyond); the rows come from a cursor,
ROWS_PER_FETCH (run, metric) rows at a time, each run decoded and written as JSON as soon as its rows are in,
so the worker holds the points of one run and the JSON of the others, and the event loop runs between two
fetches and two runs; and a read of more than LARGE_READ_POINTS values and table cells takes one of the worker's
LARGE_READS slots, 429 REQUEST_LIMIT_EXCEEDED with Retry-After when none is free (MLflow's client retries it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz.decide import Authorizer, Everything
from gateway.client.encoding import (
    METRIC_TAG,
    PARENT_TAG,
    TABLE,
    Cells,
    TooManyCells,
    decode,
    json_safe,
    parse_kind,
)
from gateway.core.errors import GatewayError, InvalidParameter, ResourceNotFound, hidden
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.principal import Principal

MAX_RUNS = 10_000  # the run and its descendants one answer covers
# Metric values one answer carries. At the 5,000,000 this was, one read held 690 MB and 1.6 s of the event loop
# (benchmarks/run_metrics.py), which a user could log and ask for several times at once; a run's rows are decoded
# together, so one run of 1,000,000 values in one metric is still 92 MB. A sweep of 100 runs of 10 metrics over
# 1,000 epochs is 1,000,000.
MAX_POINTS = 1_000_000
LARGE_READ_POINTS = 100_000  # a read of more values and table cells takes one of the worker's LARGE_READS slots
LARGE_READS = 2  # large reads one worker serves at once; beyond, 429 with Retry-After
RETRY_AFTER_SECONDS = 1
ROWS_PER_FETCH = 32  # (run, metric) rows one fetch of the cursor brings

_LOCATE = sa.text("SELECT workspace_id, experiment_id FROM ix_runs WHERE run_id = :run_id")

# A point's value as MLflow's SQL stores key it: ±Infinity as ±max double (NaN apart, as their is_nan keeps it).
_AS_STORED = (
    "CASE x.value WHEN 'Infinity'::float8 THEN '1.7976931348623157e308'::float8 "
    "WHEN '-Infinity'::float8 THEN '-1.7976931348623157e308'::float8 ELSE x.value END"
)
# :visible_all (every experiment of the workspace) or experiment_id = ANY(:experiments).
_TREE = sa.text(
    f"""
    WITH RECURSIVE tree(run_key, run_id, workspace_id, experiment_id) AS (
        SELECT run_key, run_id, workspace_id, experiment_id FROM ix_runs WHERE run_id = :run_id
      UNION
        SELECT c.run_key, c.run_id, c.workspace_id, c.experiment_id
        FROM tree t JOIN ix_runs c
          ON c.workspace_id = t.workspace_id
         AND c.tags ? '{PARENT_TAG}'
         AND c.tags ->> '{PARENT_TAG}' = t.run_id
        WHERE c.delete_time IS NULL
    ),
    limited AS (SELECT * FROM tree LIMIT :max_runs + 1),
    visible AS (
        SELECT l.run_key, l.run_id FROM limited l
        WHERE :visible_all OR l.experiment_id = ANY(:experiments)
    ),
    sizes AS (
        SELECT (SELECT count(*) FROM limited) AS runs,
               (SELECT coalesce(sum(m.points), 0) FROM visible v JOIN ix_metric_latest m ON m.run_key = v.run_key)
                 AS points
    )
    SELECT v.run_id, s.runs, s.points,
           (SELECT coalesce(jsonb_object_agg(key, value), '{{}}'::jsonb) FROM jsonb_each_text(r.tags)
            WHERE starts_with(key, '{METRIC_TAG}')) AS kinds,
           p.metric_name, p.steps, p.metric_values
    FROM sizes s
    CROSS JOIN visible v
    JOIN ix_runs r ON r.run_key = v.run_key
    LEFT JOIN LATERAL (
        SELECT d.metric_name,
               array_agg(d.step ORDER BY d.step, d.at, d.chunk_id, d.ord) AS steps,
               array_agg(d.value ORDER BY d.step, d.at, d.chunk_id, d.ord) AS metric_values
        FROM (
            SELECT DISTINCT ON (m.metric_name, x.step, x.at, {_AS_STORED})
                   m.metric_name, x.step, x.at, x.value, m.chunk_id, x.ord
            FROM ix_metrics m,
                 unnest(m.metric_steps, m.metric_times, m.metric_values) WITH ORDINALITY AS x(step, at, value, ord)
            WHERE m.run_key = v.run_key
            ORDER BY m.metric_name, x.step, x.at, {_AS_STORED}, m.chunk_id, x.ord
        ) d
        GROUP BY d.metric_name
    ) p ON s.runs <= :max_runs AND s.points <= :max_points
    """  # noqa: S608 (the two tag names and the value key are constants of ours)
).bindparams(
    sa.bindparam("experiments", type_=ARRAY(sa.Text)),
    sa.bindparam("visible_all", type_=sa.Boolean),
)


class RunMetrics:
    """The answers of `metrics-recursive`, read from the index with the caller's read authorization."""

    def __init__(
        self,
        links: LinkTable,
        authorizer: Authorizer,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        large_reads: int = LARGE_READS,
    ) -> None:
        self.links = links
        self.authorizer = authorizer
        self.sessionmaker = sessionmaker
        self.large_reads = large_reads
        self._large_in_flight = 0

    async def recursive(self, principal: Principal, run_id: str, workspace: WorkspaceLink | None) -> dict[str, Any]:
        """`{run_id: metrics}`, each run's metrics already JSON (`msgspec.Raw`), as the answer is written."""
        # One message for a run the caller may not read and one the index does not hold: a different answer told
        # whether a run id exists anywhere in the account, in workspaces the caller cannot enter too.
        missing = (
            f"Run with id={run_id} not found in the account index (a run the index has not seen yet is there once "
            "the index sync has passed over its workspace)"
        )
        async with self.sessionmaker() as session, session.begin():
            await session.execute(sa.text("SET TRANSACTION READ ONLY"))
            found = (await session.execute(_LOCATE, {"run_id": run_id})).first()
            link = self.links.by_id(found[0]) if found is not None else None
            if found is None or link is None or (workspace is not None and workspace.workspace_id != link.workspace_id):
                raise ResourceNotFound(missing)
            readable = self.authorizer.readable_experiments(principal, link.workspace_id)
            experiments = None if isinstance(readable, Everything) else sorted(readable)
            if experiments is not None and str(found[1]) not in experiments:
                raise hidden(missing)
            result = await session.stream(
                _TREE,
                {
                    "run_id": run_id,
                    "max_runs": MAX_RUNS,
                    "max_points": MAX_POINTS,
                    "visible_all": experiments is None,
                    "experiments": experiments or [],
                },
            )
            large, points = False, 0
            try:
                runs = _Runs(run_id)
                # partitions(n): yield_per is an ORM option, and a text() result ignores it (every row in one fetch)
                async for rows in result.partitions(ROWS_PER_FETCH):
                    for row in rows:
                        if runs.first:
                            _check_size(run_id, row)
                            points = int(row.points)
                        closed = runs.add(row)
                        # Its values, and the table cells of the runs begun so far (a table's rows are what a tag
                        # says, not points: 5,000,000 empty cells cost as much as as many values). Past the cells
                        # one read makes, the run's decoding refuses the read (400), as it names the table.
                        if not large and runs.cells <= runs.budget.limit:
                            large = self._take_slot(run_id, points + runs.cells)
                        if closed:
                            await asyncio.sleep(0)  # the loop runs between two runs (and two fetches)
                return runs.done()
            finally:
                await result.close()
                if large:
                    self._large_in_flight -= 1

    def _take_slot(self, run_id: str, weight: int) -> bool:
        """Whether the read is a large one (`weight`: values and table cells), which then holds one of the worker's
        slots (429 when none is free)."""
        if weight <= LARGE_READ_POINTS:
            return False
        if self._large_in_flight >= self.large_reads:
            raise GatewayError(
                f"Run {run_id} and its descendants make at least {weight:,} metric values and table cells, and this "
                f"server is reading {self._large_in_flight} trees of more than {LARGE_READ_POINTS:,} at the moment; "
                f"try again in {RETRY_AFTER_SECONDS} s.",
                error_code="REQUEST_LIMIT_EXCEEDED",
                status=429,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self._large_in_flight += 1
        return True


def _check_size(run_id: str, row: Any) -> None:
    if row.runs > MAX_RUNS or row.points > MAX_POINTS:
        raise InvalidParameter(
            f"Run {run_id} and its descendants are more than one answer carries (at most {MAX_RUNS:,} runs and "
            f"{MAX_POINTS:,} metric values; this tree has {min(row.runs, MAX_RUNS + 1):,}+ runs or "
            f"{row.points:,} values): ask for a run further down, or read runs one at a time."
        )


class _Points(Sequence[tuple[int, float]]):
    """A metric's (step, value) pairs over the two arrays the statement answers, without a tuple per point."""

    __slots__ = ("steps", "values")

    def __init__(self, steps: list[int], values: list[float]) -> None:
        if len(steps) != len(values):
            raise ValueError("a metric's steps and values differ in number")
        self.steps = steps
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.steps, self.values, strict=True)

    @overload
    def __getitem__(self, index: int) -> tuple[int, float]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[int, float]]: ...
    def __getitem__(self, index: int | slice) -> tuple[int, float] | Sequence[tuple[int, float]]:
        if isinstance(index, slice):
            return list(zip(self.steps[index], self.values[index], strict=True))
        return self.steps[index], self.values[index]


def _table_cells(kinds: Mapping[str, str]) -> int:
    """The cells of a run's tables, from its `fedgate.metric.*` tags (unreadable ones have none, as in `decode`)."""
    total = 0
    for text in kinds.values():
        kind = parse_kind(text)
        if kind is not None and kind["type"] == TABLE:
            total += int(kind.get("rows") or 0) * len(kind.get("columns") or {})
    return total


class _Runs:
    """The statement's rows, one run's after another (a run's rows come together: they are one lateral read), as
    `{run_id: JSON of its metrics}`: a run is decoded and written once its rows are in, and its points let go."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.first = True
        self.answer: dict[str, msgspec.Raw] = {}
        self.budget = Cells()  # the table cells of every run of the answer
        self.cells = 0  # the table cells of the runs begun, as their tags say
        self.current: str | None = None
        self.kinds: Mapping[str, str] = {}
        self.histories: dict[str, _Points] = {}

    def add(self, row: Any) -> bool:
        """Takes the row; whether it closed the run before it (decoded and written)."""
        self.first = False
        closed = False
        if row.run_id != self.current:
            closed = self._close()
            if row.run_id in self.answer:
                raise RuntimeError(f"the rows of run {row.run_id} did not come together")
            self.current, self.kinds, self.histories = row.run_id, row.kinds or {}, {}
            self.cells += _table_cells(self.kinds)
        if row.metric_name is not None:
            self.histories[row.metric_name] = _Points(row.steps, row.metric_values)
        return closed

    def done(self) -> dict[str, Any]:
        self._close()
        return dict(self.answer)

    def _close(self) -> bool:
        if self.current is None:
            return False
        try:
            decoded = json_safe(decode(self.current, self.kinds, self.histories, self.budget))
        except TooManyCells as exc:
            raise InvalidParameter(
                f"Run {self.run_id} and its descendants are more than one answer carries: {exc} Ask for a run "
                "further down, or read runs one at a time."
            ) from None
        self.answer[self.current] = msgspec.Raw(msgspec.json.encode(decoded))
        self.current, self.kinds, self.histories = None, {}, {}
        return True


def answer(run_id: str, rows: Sequence[Any]) -> dict[str, Any]:
    """The rows of the tree query as `{run_id: {name: value or list}}` (JSON-safe)."""
    if rows:
        _check_size(run_id, rows[0])
    runs = _Runs(run_id)
    for row in rows:
        runs.add(row)
    return {rid: msgspec.json.decode(raw) for rid, raw in runs.done().items()}
