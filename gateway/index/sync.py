"""The index sync: brings in what reached a store without passing through the gateway.

Per workspace, one pass walks the store's experiments and their runs (all of them for a backfill,
recently started or still running ones otherwise, plus runs the write-through met mid-life). A run
whose latest metric values differ from the index gets the missing points of those metrics
(compared as multisets, so a pass repeated or resumed after an interruption adds nothing twice).
The position (experiment and page) is saved after every page: an interrupted pass resumes there.
One replica syncs a workspace at a time (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.ports import Store
from gateway.db.locks import LockClass
from gateway.db.passes import Passes, exclusive
from gateway.db.pools import LazyPool
from gateway.index.repository import IndexRepository, point_key
from gateway.index.writer import to_float, to_time
from gateway.stores.client import Refused, StoreClient, Transient, id_order, own_store

log = logging.getLogger(__name__)

LOCK_CLASS = LockClass.INDEX_SYNC
RECENT_WINDOW_MS = 24 * 3600 * 1000
PAGE = 500
ACTIVE_SECONDS = 30  # a run written through more recently than this is left to the write-through
QUEUE_SECONDS = 120  # how long a waited-for pass queues behind another replica's pass of the workspace


class SyncError(Exception):
    pass


class IndexSync:
    def __init__(self, links: LinkTable, stores: Mapping[str, Store], pool: LazyPool, interval_seconds: float) -> None:
        self.links = links
        self.stores = stores
        self._pool = pool  # a pass holds one connection throughout (its advisory lock is the connection's)
        self._interval = interval_seconds
        self._passes = Passes(
            "index sync", interval_seconds, self._due, lambda link, all_: self.sync(link, everything=all_)
        )

    def start(self) -> None:
        self._passes.start()

    async def stop(self) -> None:
        await self._passes.stop()

    def launch(self, link: WorkspaceLink, *, everything: bool) -> bool:
        """Start a pass in the background; False when one is already running in this process."""
        return self._passes.launch(link, everything)

    async def _due(self, now: float) -> list[tuple[WorkspaceLink, bool]]:
        """A newly linked workspace (its whole history), and workspaces whose last pass is older than the interval."""
        finished = await self._last_finished()
        due = []
        for link in self.links.all():
            last = finished.get(link.workspace_id)
            if last is None:
                due.append((link, True))
            elif now - last >= self._interval:
                due.append((link, False))
        return due

    async def _last_finished(self) -> dict[int, float]:
        conn = await self._pool.acquire()
        try:
            rows = await conn.fetch("SELECT workspace_id, finished_at FROM ix_sync_state WHERE finished_at IS NOT NULL")
        finally:
            await self._pool.release(conn)
        return {r["workspace_id"]: r["finished_at"].timestamp() for r in rows}

    async def sync(self, link: WorkspaceLink, *, everything: bool, queue: bool = False) -> dict[str, Any]:
        """One pass over `link`'s store; its final state (also saved in ix_sync_state).

        A pass already running elsewhere makes this one a no-op, unless `queue`: then it waits
        (up to QUEUE_SECONDS) for that pass to end and runs after it, so its answer covers
        everything the store held when it was asked.
        """
        conn = await self._pool.acquire()
        try:
            async with exclusive(conn, LOCK_CLASS, link, wait=QUEUE_SECONDS if queue else 0) as mine:
                if not mine:
                    return {"workspace": link.name, "state": "skipped: another replica is syncing"}
                return await self._sync(link, IndexRepository(conn), everything)
        finally:
            await self._pool.release(conn)  # reset: an unlock that failed ends with the connection's session

    async def _sync(self, link: WorkspaceLink, repo: IndexRepository, everything: bool) -> dict[str, Any]:
        await repo.extend_partitions()
        state = await repo.state(link.workspace_id)
        cursor = json.loads(state["cursor"]) if state.get("state") == "running" and state.get("cursor") else {}
        if cursor and cursor.get("everything"):
            everything = True  # resume the interrupted backfill
        seen = int(state.get("runs_seen") or 0) if cursor else 0
        added = int(state.get("points_added") or 0) if cursor else 0
        if not cursor:
            cursor = {"everything": everything, "since": int(time.time() * 1000) - RECENT_WINDOW_MS}
            await repo.save_state(
                link.workspace_id,
                state="running",
                cursor=json.dumps(cursor),
                runs_seen=0,
                points_added=0,
                last_error="",
                started_at=_now(),
                finished_at=None,
            )
        try:
            seen, added = await self._pass(link, repo, cursor, seen, added)
        except (Transient, Refused, SyncError) as exc:
            await repo.save_state(link.workspace_id, state="failed", last_error=str(exc)[:500])
            log.warning("index sync failed", extra={"ws": link.name, "reason": str(exc)[:300]})
            return {"workspace": link.name, "state": "failed", "error": str(exc)[:500]}
        await repo.save_state(
            link.workspace_id, state="idle", cursor="", runs_seen=seen, points_added=added, finished_at=_now()
        )
        log.info("index synced", extra={"ws": link.name, "runs": seen, "points": added})
        return {"workspace": link.name, "state": "finished", "runs_seen": seen, "points_added": added}

    async def _pass(
        self, link: WorkspaceLink, repo: IndexRepository, cursor: dict[str, Any], seen: int, added: int
    ) -> tuple[int, int]:
        own = own_store(self.stores, link)
        experiments = await own.experiments()
        for experiment in experiments:
            await repo.upsert_experiment(link.workspace_id, experiment)
        filter_string = "" if cursor["everything"] else f"attributes.start_time >= {int(cursor['since'])}"
        after = str(cursor.get("experiment", ""))
        for experiment in experiments:
            experiment_id = str(experiment["experiment_id"])
            if after and id_order(experiment_id) < id_order(after):
                continue
            token = str(cursor.get("page_token", "")) if experiment_id == after else ""
            body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": PAGE, "run_view_type": "ALL"}
            if filter_string:
                body["filter"] = filter_string
            async for page in own.pages("POST", "/api/2.0/mlflow/runs/search", body, page_token=token):
                for run in page.get("runs") or []:
                    added += await self._sync_run(link, own, repo, run)
                    seen += 1
                cursor |= {"experiment": experiment_id, "page_token": str(page.get("next_page_token") or "")}
                await repo.save_state(link.workspace_id, cursor=json.dumps(cursor), runs_seen=seen, points_added=added)
        if not cursor["everything"]:
            # Runs still running at the last pass (they may have finished long after they started), and runs
            # the write-through met mid-life.
            for run_id in {*await repo.running_runs(link.workspace_id), *await repo.dirty_runs(link.workspace_id)}:
                try:
                    found = await own.get("/api/2.0/mlflow/runs/get", {"run_id": run_id})
                except Refused:
                    found = {}  # gone from the store since
                if found.get("run"):
                    added += await self._sync_run(link, own, repo, found["run"])
                    seen += 1
                await repo.clean(run_id)
        else:
            for run_id in await repo.dirty_runs(link.workspace_id):
                await repo.clean(run_id)  # the full pass saw every run
        return seen, added

    @staticmethod
    async def _sync_run(link: WorkspaceLink, own: StoreClient, repo: IndexRepository, run: dict[str, Any]) -> int:
        run_id = str(run["info"]["run_id"])
        if run["info"].get("status") == "RUNNING" and await repo.written_through_recently(run_id, ACTIVE_SECONDS):
            # A run being logged through the gateway: its writes reach the store before the index, so this
            # snapshot may be older than the index, and points compared now could be counted twice. The
            # write-through has it; a later pass checks the run again.
            return 0
        async with repo.conn.transaction():
            run_key = await repo.upsert_run(link.workspace_id, run)
            info = run["info"]
            await repo.record_route(run_id, link.name, str(info["experiment_id"]), str(info.get("user_id") or ""))
            indexed = await repo.latest(run_key)
        added = 0
        for latest in (run.get("data") or {}).get("metrics") or []:
            name = latest["key"]
            stored = (int(latest.get("step") or 0), to_time(latest.get("timestamp") or 0), to_float(latest["value"]))
            have = indexed.get(name)
            if have is not None and point_key(*have) == point_key(*stored):  # type: ignore[arg-type]
                continue  # the latest point is indexed: nothing newer to fetch for this metric
            history = await own.metric_history(run_id, name)
            async with repo.conn.transaction():
                added += await repo.add_missing_points(run_key, name, history)
        return added

    # -- recovery of writes of unknown outcome (write_through.py's IndexRecovery) -------------------------

    async def repair_run(self, link: WorkspaceLink, run_id: str) -> None:
        """Index one run as its store has it now. A run another replica is writing through right now raises
        `SyncError`, to be repaired once the write-through is quiet (comparing now could count points twice)."""
        own = own_store(self.stores, link)
        try:
            found = await own.get("/api/2.0/mlflow/runs/get", {"run_id": run_id})
        except Refused as exc:
            if exc.not_found:
                return
            raise
        await self._repair(link, own, [found["run"]])

    async def repair_new_runs(self, link: WorkspaceLink, experiment_id: str, since_ms: int) -> None:
        """Index the experiment's runs started since `since_ms` (a runs/create of unknown outcome)."""
        own = own_store(self.stores, link)
        body = {
            "experiment_ids": [experiment_id],
            "filter": f"attributes.start_time >= {since_ms}",
            "run_view_type": "ALL",
            "max_results": PAGE,
        }
        runs = [
            run
            async for page in own.pages("POST", "/api/2.0/mlflow/runs/search", body)
            for run in page.get("runs") or []
        ]
        await self._repair(link, own, runs)

    async def repair_experiment(self, link: WorkspaceLink, experiment_id: str | None, name: str | None) -> None:
        own = own_store(self.stores, link)
        path, query = (
            ("/api/2.0/mlflow/experiments/get", {"experiment_id": experiment_id})
            if experiment_id
            else ("/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": name or ""})
        )
        try:
            found = await own.get(path, query)
        except Refused as exc:
            if exc.not_found:
                return
            raise
        conn = await self._pool.acquire()
        try:
            await IndexRepository(conn).upsert_experiment(link.workspace_id, found["experiment"])
        finally:
            await self._pool.release(conn)

    async def _repair(self, link: WorkspaceLink, own: StoreClient, runs: list[dict[str, Any]]) -> None:
        conn = await self._pool.acquire()
        try:
            repo = IndexRepository(conn)
            busy = []
            for run in runs:
                run_id = str(run["info"]["run_id"])
                running = run["info"].get("status") == "RUNNING"
                if running and await repo.written_through_recently(run_id, ACTIVE_SECONDS):
                    busy.append(run_id)
                    continue
                await self._sync_run(link, own, repo, run)
        finally:
            await self._pool.release(conn)
        if busy:
            raise SyncError(f"runs being written through elsewhere, repaired later: {', '.join(busy)}")

    async def status(self) -> list[dict[str, Any]]:
        conn = await self._pool.acquire()
        try:
            rows = await IndexRepository(conn).status()
        finally:
            await self._pool.release(conn)
        names = {link.workspace_id: link.name for link in self.links.all()}
        now = time.time()
        report = []
        for row in rows:
            finished = row["finished_at"]
            report.append(
                {
                    "workspace": names.get(row["workspace_id"], str(row["workspace_id"])),
                    "workspace_id": str(row["workspace_id"]),
                    "state": row["state"],
                    "runs_indexed": row["runs_indexed"],
                    "runs_seen_last_pass": row["runs_seen"],
                    "points_added_last_pass": row["points_added"],
                    "runs_pending": row["runs_pending"],
                    "position": json.loads(row["cursor"]) if row["cursor"] else None,
                    "last_finished": finished.isoformat() if finished else None,
                    "lag_seconds": round(now - finished.timestamp(), 1) if finished else None,
                    "last_error": row["last_error"],
                }
            )
        return report


def _now() -> Any:
    return to_time(int(time.time() * 1000))
