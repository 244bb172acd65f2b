"""SQL of the index sync: runs and experiments as a store reports them, missing metric points, progress."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from gateway.federation.repository import record_run_route
from gateway.index.writer import APPEND_POINTS, RUN_NAME_TAG, to_float, to_time

log = logging.getLogger(__name__)
PointKey = tuple[int, datetime, float | str]


def point_key(step: int, at: datetime, value: float) -> PointKey:
    """Points compare by step, time and value; NaN is equal to NaN here (unlike in arithmetic)."""
    return (step, at, "NaN" if value != value else value)


class IndexRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def extend_partitions(self) -> None:
        """Range partitions of the metric tables ahead of the run keys to come (migration 0020). Keys no range
        covers yet go to the DEFAULT partition, so a pass that fails here costs nothing but tidiness."""
        try:
            created = await self.conn.fetchval("SELECT ix_extend_partitions()")
        except asyncpg.PostgresError as exc:
            log.warning("index partitions not extended", extra={"reason": str(exc)[:300]})
            return
        if created:
            log.info("index partitions extended", extra={"partitions": created})

    async def upsert_experiment(self, workspace_id: int, experiment: dict[str, Any]) -> None:
        deleted = experiment.get("lifecycle_stage") == "deleted"
        updated = to_time(experiment.get("last_update_time") or experiment.get("creation_time"))
        await self.conn.execute(
            "INSERT INTO ix_experiments "
            "(workspace_id, experiment_id, name, create_time, update_time, delete_time, tags) "
            "VALUES ($1, $2, $3, COALESCE($4, now()), COALESCE($5, now()), $6, $7::jsonb) "
            "ON CONFLICT (workspace_id, experiment_id) DO UPDATE SET name = EXCLUDED.name, "
            "create_time = EXCLUDED.create_time, tags = EXCLUDED.tags, "
            "delete_time = CASE WHEN $8 THEN COALESCE(ix_experiments.delete_time, EXCLUDED.delete_time) END, "
            "update_time = GREATEST(ix_experiments.update_time, EXCLUDED.update_time)",
            workspace_id,
            str(experiment["experiment_id"]),
            experiment.get("name") or "",
            to_time(experiment.get("creation_time")),
            updated,
            updated if deleted else None,
            _map(experiment.get("tags")),
            deleted,
        )

    async def upsert_run(self, workspace_id: int, run: dict[str, Any]) -> int:
        """The run's attributes, params, tags and inputs as the store has them now; its run key."""
        info, data = run["info"], run.get("data") or {}
        tags = {t["key"]: t.get("value", "") for t in data.get("tags") or []}
        deleted = info.get("lifecycle_stage") == "deleted"
        datasets = [
            {
                "name": (item.get("dataset") or {}).get("name", ""),
                "digest": (item.get("dataset") or {}).get("digest", ""),
                "context": next(
                    (t.get("value", "") for t in item.get("tags") or [] if t.get("key") == "mlflow.data.context"), ""
                ),
            }
            for item in (run.get("inputs") or {}).get("dataset_inputs") or []
        ]
        run_key: int = await self.conn.fetchval(
            "INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, start_time, "
            "end_time, params, tags, datasets, delete_time) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11::jsonb, CASE WHEN $12 THEN now() END) "
            "ON CONFLICT (run_id) DO UPDATE SET experiment_id = EXCLUDED.experiment_id, "
            "created_by = CASE WHEN ix_runs.created_by = '' THEN EXCLUDED.created_by ELSE ix_runs.created_by END, "
            "run_name = EXCLUDED.run_name, status = EXCLUDED.status, start_time = EXCLUDED.start_time, "
            "end_time = EXCLUDED.end_time, params = EXCLUDED.params, tags = EXCLUDED.tags, "
            "datasets = EXCLUDED.datasets, "
            "delete_time = CASE WHEN $12 THEN COALESCE(ix_runs.delete_time, now()) END, "
            "update_time = CASE WHEN (ix_runs.status, ix_runs.end_time, ix_runs.params, ix_runs.tags, ix_runs.run_name)"
            " IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.end_time, EXCLUDED.params, EXCLUDED.tags, EXCLUDED.run_name)"
            " THEN now() ELSE ix_runs.update_time END "
            "RETURNING run_key",
            str(info["run_id"]),
            workspace_id,
            str(info["experiment_id"]),
            info.get("user_id") or tags.get("mlflow.user", ""),
            info.get("run_name") or tags.get(RUN_NAME_TAG, ""),
            info.get("status") or "RUNNING",
            to_time(info.get("start_time")),
            to_time(info.get("end_time")),
            _map(data.get("params")),
            json.dumps(tags),
            json.dumps(datasets),
            deleted,
        )
        return run_key

    async def record_route(self, run_id: str, workspace: str, experiment_id: str, created_by: str) -> None:
        """The run's workspace, for calls that name only the run (lost if the write-through was)."""
        await record_run_route(self.conn, run_id, workspace, experiment_id, created_by)

    async def written_through_recently(self, run_id: str, seconds: float) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT update_time > now() - make_interval(secs => $2) FROM ix_runs WHERE run_id = $1 "
                "AND NOT EXISTS (SELECT 1 FROM ix_dirty_runs d WHERE d.run_id = $1)",
                run_id,
                float(seconds),
            )
        )

    async def latest(self, run_key: int) -> dict[str, tuple[int, datetime, float]]:
        rows = await self.conn.fetch(
            "SELECT metric_name, latest_step, latest_time, latest_value, points FROM ix_metric_latest "
            "WHERE run_key = $1",
            run_key,
        )
        return {r["metric_name"]: (r["latest_step"], r["latest_time"], r["latest_value"]) for r in rows}

    async def add_missing_points(self, run_key: int, name: str, history: list[dict[str, Any]]) -> int:
        """Insert the points of `history` the index lacks (as a multiset: repeats count); how many."""
        have = Counter(
            point_key(r["step"], r["at"], r["value"])
            for r in await self.conn.fetch(
                "SELECT p.step, p.at, p.value FROM ix_metrics m, "
                "unnest(m.metric_steps, m.metric_times, m.metric_values) AS p(step, at, value) "
                "WHERE m.run_key = $1 AND m.metric_name = $2",
                run_key,
                name,
            )
        )
        steps: list[int] = []
        times: list[int] = []
        values: list[float] = []
        for point in history:
            step, ms, value = int(point.get("step") or 0), int(point.get("timestamp") or 0), to_float(point["value"])
            at = to_time(ms)
            assert at is not None
            key = point_key(step, at, value)
            if have[key] > 0:
                have[key] -= 1
            else:
                steps.append(step)
                times.append(ms)
                values.append(value)
        if values:
            await self.conn.execute(APPEND_POINTS, run_key, name, steps, times, values)
            await self.recompute_aggregate(run_key, name)
        return len(values)

    async def recompute_aggregate(self, run_key: int, name: str) -> None:
        await self.conn.execute(
            """
            WITH pts AS (
                SELECT p.step, p.at, p.value FROM ix_metrics m,
                       unnest(m.metric_steps, m.metric_times, m.metric_values) AS p(step, at, value)
                WHERE m.run_key = $1 AND m.metric_name = $2
            )
            INSERT INTO ix_metric_latest AS t
                (run_key, metric_name, latest_value, latest_step, latest_time, min_value, max_value, has_nan, points)
            SELECT $1, $2, l.value, l.step, l.at,
                   COALESCE(a.low, 'Infinity'), COALESCE(a.high, '-Infinity'), a.has_nan, a.points
            FROM (SELECT min(value) FILTER (WHERE value <> 'NaN') AS low,
                         max(value) FILTER (WHERE value <> 'NaN') AS high,
                         bool_or(value = 'NaN') AS has_nan, count(*) AS points
                  FROM pts) AS a,
                 LATERAL (SELECT value, step, at FROM pts ORDER BY step DESC, at DESC, value DESC LIMIT 1) AS l
            ON CONFLICT (run_key, metric_name) DO UPDATE SET
                latest_value = EXCLUDED.latest_value, latest_step = EXCLUDED.latest_step,
                latest_time = EXCLUDED.latest_time, min_value = EXCLUDED.min_value,
                max_value = EXCLUDED.max_value, has_nan = EXCLUDED.has_nan, points = EXCLUDED.points
            """,
            run_key,
            name,
        )

    # -- progress ---------------------------------------------------------------------------------------

    async def state(self, workspace_id: int) -> dict[str, Any]:
        row = await self.conn.fetchrow("SELECT * FROM ix_sync_state WHERE workspace_id = $1", workspace_id)
        return dict(row) if row is not None else {}

    async def save_state(self, workspace_id: int, **values: Any) -> None:
        columns = sorted(values)
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
        placeholders = ", ".join(f"${i + 2}" for i in range(len(columns)))
        await self.conn.execute(
            f"INSERT INTO ix_sync_state (workspace_id, {', '.join(columns)}, updated_at) "  # noqa: S608 (column names are ours)
            f"VALUES ($1, {placeholders}, now()) "
            f"ON CONFLICT (workspace_id) DO UPDATE SET {assignments}, updated_at = now()",
            workspace_id,
            *(values[c] for c in columns),
        )

    async def dirty_runs(self, workspace_id: int) -> list[str]:
        rows = await self.conn.fetch("SELECT run_id FROM ix_dirty_runs WHERE workspace_id = $1", workspace_id)
        return [r["run_id"] for r in rows]

    async def clean(self, run_id: str) -> None:
        await self.conn.execute("DELETE FROM ix_dirty_runs WHERE run_id = $1", run_id)

    async def running_runs(self, workspace_id: int) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT run_id FROM ix_runs WHERE workspace_id = $1 AND status = 'RUNNING' AND delete_time IS NULL",
            workspace_id,
        )
        return [r["run_id"] for r in rows]

    async def status(self) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            """
            SELECT s.workspace_id, s.state, s.runs_seen, s.points_added, s.last_error, s.started_at, s.finished_at,
                   s.updated_at, s.cursor,
                   (SELECT count(*) FROM ix_runs r WHERE r.workspace_id = s.workspace_id) AS runs_indexed,
                   (SELECT count(*) FROM ix_dirty_runs d WHERE d.workspace_id = s.workspace_id) AS runs_pending
            FROM ix_sync_state s ORDER BY s.workspace_id
            """
        )
        return [dict(r) for r in rows]


def _map(items: Any) -> str:
    return msgspec.json.encode({i["key"]: i.get("value", "") for i in items or []}).decode()
