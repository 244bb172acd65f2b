"""Reconciling a dual workspace: compare its runs in both stores and repair what the central copy lacks.

The outbox covers every write the gateway saw through to its commit. The reconciler closes the rest:
a gateway killed between the store's answer and the outbox commit, writes made to the workspace
store around the gateway, and history from before the workspace became dual (backfill). It walks
experiments in id order; its progress and position live in PostgreSQL (`reconcile_state`), so any
replica reports them and a backfill cut short is resumed, after its last finished experiment, by
whichever replica looks next. Repairs go through the same idempotent paths as the relay, so running
it twice changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.ports import Store
from gateway.core.reserved import provenance_tag
from gateway.db.locks import LockClass, autocommit_connection
from gateway.db.passes import Passes, exclusive
from gateway.dual.mirror import MAX_ITEMS, MAX_METRICS, MAX_PARAMS, MAX_TAGS, Mirror, central_model_history
from gateway.stores.client import Refused, StoreClient, Transient, central_store, id_order, own_store

log = logging.getLogger(__name__)

RECENT_WINDOW_MS = 24 * 3600 * 1000  # periodic passes look at runs started within this window
SAVE_SECONDS = 2.0  # progress of a long experiment is saved at least this often
LOCK_CLASS = LockClass.RECONCILE
LOG_MODEL_HISTORY = "mlflow.log-model.history"  # the models `runs/log-model` recorded, each naming its run


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
    resumed: int = 0  # how often this pass was taken up again after its replica went away
    error: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @classmethod
    def from_row(cls, workspace: str, row: Mapping[Any, Any]) -> Progress:
        values = {k: row[k] for k in PROGRESS_COLUMNS}
        finished = row["finished_at"]
        return cls(
            workspace,
            **values,
            started_at=row["started_at"].timestamp(),
            finished_at=finished.timestamp() if finished is not None else None,
        )


PROGRESS_COLUMNS = (
    "scope", "state", "experiments", "runs_checked", "runs_repaired", "points_copied", "files_copied",
    "after_experiment", "resumed", "error",
)  # fmt: skip
_COLUMNS = ", ".join(PROGRESS_COLUMNS)
SAVE_PROGRESS = text(
    f"INSERT INTO reconcile_state (workspace_id, {_COLUMNS}, started_at, finished_at, updated_at) "  # noqa: S608
    f"VALUES (:ws, {', '.join(':' + k for k in PROGRESS_COLUMNS)}, "
    "to_timestamp(:started), to_timestamp(:finished), now()) "
    f"ON CONFLICT (workspace_id) DO UPDATE SET ({_COLUMNS}, started_at, finished_at, updated_at) = "
    f"({', '.join('EXCLUDED.' + k for k in PROGRESS_COLUMNS)}, EXCLUDED.started_at, EXCLUDED.finished_at, now())"
)


class Reconciler:
    def __init__(
        self,
        links: LinkTable,
        stores: Mapping[str, Store],
        mirror: Mirror,
        sessionmaker: async_sessionmaker[AsyncSession],
        interval_seconds: float,
    ) -> None:
        self.links = links
        self.stores = stores
        self.mirror = mirror  # copies objects the central store lacks, through the id map
        self._sessionmaker = sessionmaker
        self._interval = interval_seconds
        self.progress: dict[str, Progress] = {}
        self._started: dict[str, asyncio.Event] = {}  # set once a launched pass is recorded or skipped
        self._passes = Passes("reconciler", interval_seconds, self._due, self._pass_of)

    def start(self) -> None:
        self._passes.start()

    async def stop(self) -> None:
        await self._passes.stop()

    def launch(self, link: WorkspaceLink, *, everything: bool) -> Progress:
        """Start a pass in the background (or report the one already running in this process)."""
        self._passes.launch(link, everything)
        return self.progress[link.name]

    def _pass_of(self, link: WorkspaceLink, everything: bool) -> Coroutine[Any, Any, Progress]:
        self.progress[link.name] = Progress(link.name, "all" if everything else "recent")
        self._started[link.name] = asyncio.Event()
        return self.reconcile(link, everything=everything)

    async def begin(self, link: WorkspaceLink, *, everything: bool) -> Progress:
        """`launch`, answering once the pass is recorded (so any replica's status shows it) or skipped."""
        self.launch(link, everything=everything)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._started[link.name].wait(), timeout=10)
        return self.progress[link.name]

    async def _due(self, now: float) -> list[tuple[WorkspaceLink, bool]]:
        """Dual workspaces whose backfill was cut short (resumed unless a live replica holds it), or due a pass."""
        states = await self.states()
        due = []
        for link in self.links.all():
            if link.mirror is None:
                continue
            state = states.get(link.workspace_id)
            if state is not None and state.scope == "all" and state.state == "running":
                due.append((link, True))
            elif state is None or now - (state.finished_at or state.started_at) >= self._interval:
                due.append((link, False))
        return due

    async def states(self) -> dict[int, Progress]:
        """The last known pass of every workspace, from any replica."""
        async with self._sessionmaker() as session:
            rows = (await session.execute(text("SELECT * FROM reconcile_state"))).mappings().all()
        names = {link.workspace_id: link.name for link in self.links.all()}
        return {int(r["workspace_id"]): Progress.from_row(names.get(int(r["workspace_id"]), ""), r) for r in rows}

    async def _last(self, link: WorkspaceLink) -> Progress | None:
        """The last known pass of one workspace."""
        async with self._sessionmaker() as session:
            query = text("SELECT * FROM reconcile_state WHERE workspace_id = :ws")
            row = (await session.execute(query, {"ws": link.workspace_id})).mappings().first()
        return Progress.from_row(link.name, row) if row is not None else None

    async def reconcile(self, link: WorkspaceLink, *, everything: bool) -> Progress:
        progress = self.progress.setdefault(link.name, Progress(link.name, "all" if everything else "recent"))
        # One replica reconciles a workspace at a time (a session lock, held for the pass); others skip it.
        async with (
            autocommit_connection(self._sessionmaker) as connection,
            exclusive(connection, LOCK_CLASS, link) as mine,
        ):
            if not mine:
                progress.state, progress.finished_at = "skipped: another replica is reconciling", time.time()
                self._mark_started(link)
                return progress
            try:
                previous = await self._last(link)
                if previous is not None and previous.scope == "all" and previous.state in ("running", "failed"):
                    # A backfill cut short or failed: taken up after its last finished experiment, whatever
                    # was asked (so a failed one is retried by the next periodic pass).
                    progress = replace(
                        previous, workspace=link.name, state="running", error="", finished_at=None,
                        resumed=previous.resumed + 1,
                    )  # fmt: skip
                    self.progress[link.name] = progress
                await self._save(link, progress)
                self._mark_started(link)
                await self._pass(link, progress, everything=progress.scope == "all", after=progress.after_experiment)
                progress.state = "finished"
            except (Transient, Refused) as exc:
                progress.state, progress.error = "failed", str(exc)[:500]
            except Exception as exc:  # a malformed answer, the database: shown, and retried by the next pass
                progress.state, progress.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
                log.warning("reconcile of %s failed: %s", link.name, type(exc).__name__)
            finally:
                progress.finished_at = time.time()
                with contextlib.suppress(Exception):
                    await self._save(link, progress)
                self._mark_started(link)
        log.info("reconciled workspace %s", link.name, extra=asdict(progress))
        return progress

    async def _pass(self, link: WorkspaceLink, progress: Progress, *, everything: bool, after: str) -> None:
        since = int(time.time() * 1000) - RECENT_WINDOW_MS
        saved = time.monotonic()
        own = own_store(self.stores, link)
        for experiment in await own.experiments():
            experiment_id = str(experiment["experiment_id"])
            if after and id_order(experiment_id) <= id_order(after):
                continue
            progress.experiments += 1
            filter_string = "" if everything else f"attributes.start_time >= {since}"
            async for run in self._runs(own, experiment_id, filter_string):
                progress.runs_checked += 1
                if await self.repair_run(link, run, progress):
                    progress.runs_repaired += 1
                if time.monotonic() - saved >= SAVE_SECONDS:
                    await self._save(link, progress)
                    saved = time.monotonic()
            progress.after_experiment = experiment_id  # a pass cut short starts again after it
            await self._save(link, progress)
            saved = time.monotonic()

    @staticmethod
    async def _runs(own: StoreClient, experiment_id: str, filter_string: str) -> AsyncIterator[dict[str, Any]]:
        body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": 500, "run_view_type": "ALL"}
        if filter_string:
            body["filter"] = filter_string
        async for page in own.pages("POST", "/api/2.0/mlflow/runs/search", body):
            for run in page.get("runs") or []:
                yield run

    async def repair_run(self, link: WorkspaceLink, run: dict[str, Any], progress: Progress) -> bool:
        """Bring the central copy of one run level with the workspace store; whether anything was missing."""
        info, data = run["info"], run.get("data") or {}
        primary_id = str(info["run_id"])
        own, central = own_store(self.stores, link), central_store(self.stores, link)
        central_id, _ = await self.mirror.central_run(link, primary_id)
        copy = (await central.get("/api/2.0/mlflow/runs/get", {"run_id": central_id}))["run"]
        copy_data = copy.get("data") or {}
        repaired = False
        have_params = {p["key"]: p.get("value") for p in copy_data.get("params") or []}
        params = [p for p in data.get("params") or [] if p["key"] not in have_params]
        have_tags = {t["key"]: t.get("value") for t in copy_data.get("tags") or []}
        tags = [
            t
            for t in (_as_central_tag(t, central_id) for t in data.get("tags") or [])
            if not _same_value(t["key"], have_tags.get(t["key"]), t.get("value"))
        ]
        metrics: list[dict[str, Any]] = []
        for latest in data.get("metrics") or []:
            key = latest["key"]
            mine = await own.metric_history(primary_id, key)
            theirs = await central.metric_history(central_id, key)
            seen = {(m["step"], m["timestamp"], repr(m["value"])) for m in theirs}
            metrics.extend(m for m in mine if (m["step"], m["timestamp"], repr(m["value"])) not in seen)
        if params or tags or metrics:
            repaired = True
            progress.points_copied += len(metrics)
            await self._log_batch(central, central_id, metrics, params, tags)
        copy_info = copy["info"]
        if copy_info.get("lifecycle_stage") != "deleted" and await self._delete_gone_tags(
            link, primary_id, central_id, data, have_tags
        ):
            repaired = True
        if (copy_info.get("status"), copy_info.get("end_time")) != (info.get("status"), info.get("end_time")):
            repaired = True
            update = {"run_id": central_id, "status": info.get("status")}
            if info.get("end_time"):
                update["end_time"] = info["end_time"]
            await central.post("/api/2.0/mlflow/runs/update", update, idempotent=True)
        copied = await self.mirror.copy_missing_artifacts(link, primary_id)
        progress.files_copied += copied
        if copy_info.get("lifecycle_stage") != info.get("lifecycle_stage"):
            repaired = True
            action = "delete" if info.get("lifecycle_stage") == "deleted" else "restore"
            await central.post(f"/api/2.0/mlflow/runs/{action}", {"run_id": central_id}, idempotent=True)
        return repaired or copied > 0

    async def _delete_gone_tags(
        self,
        link: WorkspaceLink,
        primary_id: str,
        central_id: str,
        data: Mapping[str, Any],
        have_tags: Mapping[str, Any],
    ) -> bool:
        """Delete the tags the central copy has and the workspace store's run does not; whether there were any.

        A run's tag deleted in the workspace store whose entry never came (the gateway killed between the store's
        answer and the outbox commit, or the commit failed and the client got 503) stayed in the central copy: the
        repair only added and changed tags. The gateway's own tags (`fedgate.`: provenance, properties) are the
        relay's. The workspace store's run is read again first: the run passed in may have been read a while ago
        (a page of a pass), and a tag set since, which the relay may already have copied, is not deleted."""
        candidates = [k for k in have_tags if not (str(k).startswith("fedgate.") or provenance_tag(k))]
        own_keys = {t.get("key") for t in data.get("tags") or []}
        candidates = [k for k in candidates if k not in own_keys]
        if not candidates:
            return False
        own, central = own_store(self.stores, link), central_store(self.stores, link)
        fresh = (await own.get("/api/2.0/mlflow/runs/get", {"run_id": primary_id}))["run"]
        now = {t.get("key") for t in (fresh.get("data") or {}).get("tags") or []}
        gone = [k for k in candidates if k not in now]
        for key in gone:
            try:
                await central.post(
                    "/api/2.0/mlflow/runs/delete-tag", {"run_id": central_id, "key": key}, idempotent=True
                )
            except Refused as exc:
                if not exc.not_found:
                    raise
        return bool(gone)

    @staticmethod
    async def _log_batch(
        central: StoreClient,
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
            await central.post("/api/2.0/mlflow/runs/log-batch", body, idempotent=True)

    def _mark_started(self, link: WorkspaceLink) -> None:
        if (event := self._started.get(link.name)) is not None:
            event.set()

    async def _save(self, link: WorkspaceLink, progress: Progress) -> None:
        values = {k: getattr(progress, k) for k in PROGRESS_COLUMNS}
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                SAVE_PROGRESS,
                {"ws": link.workspace_id, **values, "started": progress.started_at, "finished": progress.finished_at},
            )


def _as_central_tag(tag: Mapping[str, Any], central_id: str) -> dict[str, Any]:
    """A tag of the workspace store's run as the central copy holds it: the model documents of its
    `mlflow.log-model.history` name the central copy of the run (`central_model_history`). Compared as the store
    holds it, the tag always differed, and the repair wrote the workspace's run ids into the central copy."""
    if tag.get("key") != LOG_MODEL_HISTORY:
        return dict(tag)
    return {**tag, "value": central_model_history(tag.get("value"), central_id)}


def _same_value(key: Any, theirs: Any, mine: Any) -> bool:
    """Whether a central tag's value is the workspace store's; a model history by what it says (it is JSON, and a
    store need not space it as this gateway does)."""
    if theirs == mine or key != LOG_MODEL_HISTORY:
        return bool(theirs == mine)
    try:
        return theirs is not None and bool(json.loads(theirs) == json.loads(mine))
    except (TypeError, ValueError):
        return False
