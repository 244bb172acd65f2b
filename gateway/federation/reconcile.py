"""Reconciling a dual workspace: compare its runs in both stores and repair what the central copy lacks.

The outbox covers every write the gateway saw through to its commit. The reconciler closes the rest:
a gateway killed between the store's answer and the outbox commit, writes made to the workspace
store around the gateway, and history from before the workspace became dual (backfill). It walks
experiments in id order and records its position, so an interrupted pass resumes where it stopped.
Repairs go through the same idempotent paths as the relay, so running it twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.federation.mirror import MAX_ITEMS, MAX_METRICS, MAX_PARAMS, MAX_TAGS, Mirror
from gateway.federation.outbox import Refused, Transient
from gateway.watch import cancel_all
from gateway.workspaces.links import LinkTable, WorkspaceLink

log = logging.getLogger(__name__)

RECENT_WINDOW_MS = 24 * 3600 * 1000  # periodic passes look at runs started within this window


@dataclass
class Progress:
    workspace: str
    scope: str  # "recent" or "all"
    state: str = "running"  # running | finished | failed
    experiments: int = 0
    runs_checked: int = 0
    runs_repaired: int = 0
    points_copied: int = 0
    files_copied: int = 0
    after_experiment: str = ""
    error: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None


class Reconciler:
    def __init__(
        self, links: LinkTable, mirror: Mirror, sessionmaker: async_sessionmaker[AsyncSession], interval_seconds: float
    ) -> None:
        self.links = links
        self.mirror = mirror
        self._sessionmaker = sessionmaker
        self._interval = interval_seconds
        self.progress: dict[str, Progress] = {}
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[Progress]] = {}

    def start(self) -> None:
        if self._interval > 0:
            self._task = asyncio.create_task(self._periodic(), name="reconciler")

    async def stop(self) -> None:
        await cancel_all([self._task, *self._running.values()])

    def launch(self, link: WorkspaceLink, *, everything: bool) -> Progress:
        """Start a pass in the background (or report the one already running)."""
        running = self._running.get(link.name)
        if running is not None and not running.done():
            return self.progress[link.name]
        self.progress[link.name] = Progress(link.name, "all" if everything else "recent")
        self._running[link.name] = asyncio.create_task(self.reconcile(link, everything=everything))
        return self.progress[link.name]

    async def _periodic(self) -> None:
        await asyncio.sleep(min(self._interval, 10))  # on start-up, soon; then every interval
        while True:
            for link in self.links.all():
                if link.mirror is not None:
                    self.launch(link, everything=False)
            await asyncio.sleep(self._interval)

    async def reconcile(self, link: WorkspaceLink, *, everything: bool) -> Progress:
        progress = self.progress.setdefault(link.name, Progress(link.name, "all" if everything else "recent"))
        lock = {"key": link.workspace_id}
        # One replica reconciles a workspace at a time (a session lock, held for the pass); others skip it.
        async with self._sessionmaker() as lock_session:
            if not await lock_session.scalar(text("SELECT pg_try_advisory_lock(7001, :key)"), lock):
                progress.state, progress.finished_at = "skipped: another replica is reconciling", time.time()
                return progress
            try:
                resume = await self._cursor(link) if everything else ""
                progress.after_experiment = resume
                await self._pass(link, progress, everything=everything, after=resume)
                progress.state = "finished"
                if everything:
                    await self._save_cursor(link, "")
            except (Transient, Refused) as exc:
                progress.state, progress.error = "failed", str(exc)[:500]
            finally:
                progress.finished_at = time.time()
                await lock_session.execute(text("SELECT pg_advisory_unlock(7001, :key)"), lock)
                await lock_session.commit()
        log.info("reconciled workspace %s", link.name, extra=asdict(progress))
        return progress

    async def _pass(self, link: WorkspaceLink, progress: Progress, *, everything: bool, after: str) -> None:
        since = int(time.time() * 1000) - RECENT_WINDOW_MS
        for experiment in await self.mirror.primary_experiments(link):
            experiment_id = str(experiment["experiment_id"])
            if after and int(experiment_id) <= int(after):
                continue
            progress.experiments += 1
            filter_string = "" if everything else f"attributes.start_time >= {since}"
            async for run in self._runs(link, experiment_id, filter_string):
                progress.runs_checked += 1
                if await self.repair_run(link, run, progress):
                    progress.runs_repaired += 1
            progress.after_experiment = experiment_id
            if everything:  # resumable: a pass cut short starts again after the last finished experiment
                await self._save_cursor(link, experiment_id)

    async def _runs(self, link: WorkspaceLink, experiment_id: str, filter_string: str) -> Any:
        token = ""
        while True:
            body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": 500, "run_view_type": "ALL"}
            if filter_string:
                body["filter"] = filter_string
            if token:
                body["page_token"] = token
            page = await self.mirror.primary_post(link, "/api/2.0/mlflow/runs/search", body)
            for run in page.get("runs") or []:
                yield run
            token = page.get("next_page_token") or ""
            if not token:
                return

    async def repair_run(self, link: WorkspaceLink, run: dict[str, Any], progress: Progress) -> bool:
        """Bring the central copy of one run level with the workspace store; whether anything was missing."""
        info, data = run["info"], run.get("data") or {}
        primary_id = str(info["run_id"])
        central_id, _ = await self.mirror.central_run(link, primary_id)
        copy = (await self.mirror.central_post(link, "/api/2.0/mlflow/runs/get", {"run_id": central_id}, get=True))[
            "run"
        ]
        copy_data = copy.get("data") or {}
        repaired = False
        have_params = {p["key"]: p.get("value") for p in copy_data.get("params") or []}
        params = [p for p in data.get("params") or [] if p["key"] not in have_params]
        have_tags = {t["key"]: t.get("value") for t in copy_data.get("tags") or []}
        tags = [t for t in data.get("tags") or [] if have_tags.get(t["key"]) != t.get("value")]
        metrics: list[dict[str, Any]] = []
        for latest in data.get("metrics") or []:
            key = latest["key"]
            mine = await self.mirror.history(link, primary_id, key, central=False)
            theirs = await self.mirror.history(link, central_id, key, central=True)
            seen = {(m["step"], m["timestamp"], repr(m["value"])) for m in theirs}
            metrics.extend(m for m in mine if (m["step"], m["timestamp"], repr(m["value"])) not in seen)
        if params or tags or metrics:
            repaired = True
            progress.points_copied += len(metrics)
            await self._log_batch(link, central_id, metrics, params, tags)
        copy_info = copy["info"]
        if (copy_info.get("status"), copy_info.get("end_time")) != (info.get("status"), info.get("end_time")):
            repaired = True
            update = {"run_id": central_id, "status": info.get("status")}
            if info.get("end_time"):
                update["end_time"] = info["end_time"]
            await self.mirror.central_post(link, "/api/2.0/mlflow/runs/update", update)
        copied = await self.mirror.copy_missing_artifacts(link, primary_id)
        progress.files_copied += copied
        if copy_info.get("lifecycle_stage") != info.get("lifecycle_stage"):
            repaired = True
            action = "delete" if info.get("lifecycle_stage") == "deleted" else "restore"
            await self.mirror.central_post(link, f"/api/2.0/mlflow/runs/{action}", {"run_id": central_id})
        return repaired or copied > 0

    async def _log_batch(
        self,
        link: WorkspaceLink,
        run_id: str,
        metrics: list[dict[str, Any]],
        params: list[dict[str, Any]],
        tags: list[dict[str, Any]],
    ) -> None:
        while metrics or params or tags:
            chunk_params, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
            chunk_tags, tags = tags[:MAX_TAGS], tags[MAX_TAGS:]
            room = min(MAX_METRICS, MAX_ITEMS - len(chunk_params) - len(chunk_tags))
            chunk_metrics, metrics = metrics[:room], metrics[room:]
            body = {"run_id": run_id, "metrics": chunk_metrics, "params": chunk_params, "tags": chunk_tags}
            await self.mirror.central_post(link, "/api/2.0/mlflow/runs/log-batch", body)

    async def _cursor(self, link: WorkspaceLink) -> str:
        async with self._sessionmaker() as session:
            value = await session.scalar(
                text("SELECT cursor FROM sync_cursors WHERE workspace_id = :ws AND name = 'backfill'"),
                {"ws": link.workspace_id},
            )
        return str(value or "")

    async def _save_cursor(self, link: WorkspaceLink, cursor: str) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO sync_cursors (workspace_id, name, cursor, updated_at) "
                    "VALUES (:ws, 'backfill', :c, now()) "
                    "ON CONFLICT (workspace_id, name) DO UPDATE SET cursor = :c, updated_at = now()"
                ),
                {"ws": link.workspace_id, "c": cursor},
            )
