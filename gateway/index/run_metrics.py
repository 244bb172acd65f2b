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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz.decide import Authorizer, Everything
from gateway.client.encoding import METRIC_TAG, PARENT_TAG, Cells, TooManyCells, decode, json_safe
from gateway.core.errors import InvalidParameter, ResourceNotFound, hidden
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.principal import Principal

MAX_RUNS = 10_000  # the run and its descendants one answer covers
MAX_POINTS = 5_000_000  # metric values one answer carries

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
        self, links: LinkTable, authorizer: Authorizer, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.links = links
        self.authorizer = authorizer
        self.sessionmaker = sessionmaker

    async def recursive(self, principal: Principal, run_id: str, workspace: WorkspaceLink | None) -> dict[str, Any]:
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
            rows = (
                await session.execute(
                    _TREE,
                    {
                        "run_id": run_id,
                        "max_runs": MAX_RUNS,
                        "max_points": MAX_POINTS,
                        "visible_all": experiments is None,
                        "experiments": experiments or [],
                    },
                )
            ).all()
        return answer(run_id, rows)


def answer(run_id: str, rows: Sequence[Any]) -> dict[str, Any]:
    """The rows of the tree query as `{run_id: {name: value or list}}` (JSON-safe)."""
    if rows and (rows[0].runs > MAX_RUNS or rows[0].points > MAX_POINTS):
        raise InvalidParameter(
            f"Run {run_id} and its descendants are more than one answer carries (at most {MAX_RUNS:,} runs and "
            f"{MAX_POINTS:,} metric values; this tree has {min(rows[0].runs, MAX_RUNS + 1):,}+ runs or "
            f"{rows[0].points:,} values): ask for a run further down, or read runs one at a time."
        )
    kinds: dict[str, Mapping[str, str]] = {}
    histories: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in rows:
        kinds[row.run_id] = row.kinds or {}
        points = histories.setdefault(row.run_id, {})
        if row.metric_name is not None:
            points[row.metric_name] = list(zip(row.steps, row.metric_values, strict=True))
    budget = Cells()  # the table cells of every run of the answer
    try:
        return {rid: json_safe(decode(rid, kinds[rid], histories[rid], budget)) for rid in histories}
    except TooManyCells as exc:
        raise InvalidParameter(
            f"Run {run_id} and its descendants are more than one answer carries: {exc} Ask for a run further down, "
            "or read runs one at a time."
        ) from None
