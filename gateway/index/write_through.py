"""After-write hook of the account-wide index: every indexed write the store accepted updates the index.

Best effort, on the pool "derived" with asynchronous commit (federation/bookkeeping.py): a failure is
counted and logged, never fails the call, and the index sync repairs what was lost. Metric points go through
the point writer (points.py), which writes the points of concurrent calls together; a body it cannot take
as it is, or a batch PostgreSQL refused, is written by the writer's statement instead, call by call.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import asyncpg
import msgspec

from gateway.core.links import WorkspaceLink
from gateway.core.route_table import RUNS_CREATE, RUNS_LOG_BATCH, Resource, RouteSpec
from gateway.federation.bookkeeping import DERIVED_SETTINGS, Bookkeeping, started_run_of
from gateway.federation.hooks import AcceptedWrite, UnsettledWrite
from gateway.federation.locate import Locator
from gateway.index.points import PointsRefused, PointWriter, read_client_points, read_metrics, read_points
from gateway.index.sync import IndexSync
from gateway.index.writer import IndexChange, IndexWriter, RunChange, plan, plan_decoded_batch
from gateway.observability.metrics import INDEX_FAILURES

CREATE_SLACK_MS = 5 * 60 * 1000  # runs/create of unknown outcome: runs started this long before it are checked

log = logging.getLogger(__name__)


class IndexWriteThrough:
    """Routes with the INDEXED trait; the answer is read for those whose answer names what they created."""

    def __init__(self, writer: IndexWriter, bookkeeping: Bookkeeping, locator: Locator) -> None:
        self.writer = writer
        self._bookkeeping = bookkeeping
        self._locator = locator
        self.points = PointWriter(lambda: bookkeeping.pool("derived", DERIVED_SETTINGS))

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.indexed

    def needs_answer(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.creates

    async def record(self, write: AcceptedWrite) -> None:
        link = write.link
        decoded: list[Any] | None = None  # a log-batch's points as the guard decoded them
        change: IndexChange | None
        try:
            if write.spec == RUNS_LOG_BATCH and write.document is not None:
                change, decoded = plan_decoded_batch(write.document)
            else:
                change = plan(write.spec.name, link.workspace_id, write.request, write.response, write.principal)
        except msgspec.MsgspecError as exc:
            # A body the store accepted in a shape the index does not read (a run status sent as a number,
            # say): the write stands, and the index sync records it from the store.
            INDEX_FAILURES.inc()
            log.warning(
                "an accepted write was not indexed; the index sync catches up",
                extra={"route": write.spec.name, "reason": f"{type(exc).__name__}: {exc}"},
            )
            return
        if change is None:
            return
        experiment_id = None
        if (run_id := self.writer.unseen_run(change)) is not None:
            # Asked before a connection is taken: the answer may come from the store (the guard's lookup
            # of this run is cached, so it rarely does). Not found, or the store not answering: the
            # change is left to the index sync.
            try:
                experiment_id = await self._locator.experiment_of(link, "run", run_id)
            except Exception as exc:
                log.info("run of an indexed write not located", extra={"ws": link.name, "reason": str(exc)})

        if isinstance(change, RunChange) and (change.points is not None or decoded is not None):
            rest = await self._log_points(write, change, experiment_id, decoded)
            if rest is None:
                return
            change = rest

        async def apply(conn: asyncpg.Connection) -> None:
            await self.writer.apply(conn, change, link.workspace_id, experiment_id)

        # Cached run keys may belong to a lost insert: forgotten on failure.
        await self._bookkeeping.derive(write.spec.name, apply, on_failure=self.writer.forget)

    async def _log_points(
        self, write: AcceptedWrite, change: RunChange, experiment_id: str | None, decoded: list[Any] | None
    ) -> RunChange | None:
        """The change's points (`decoded`, or its `points` as text) through the point writer; what is left of the
        change to apply (None: nothing, or nothing more after a failure, as when the statement fails)."""
        route, workspace_id = write.spec.name, write.link.workspace_id
        run_key = self.writer.known_run_key(change.run_id)
        if run_key is None:
            found: list[int | None] = []

            async def locate(conn: asyncpg.Connection) -> None:
                found.append(await self.writer.run_key(conn, change.run_id, workspace_id, experiment_id))

            if not await self._bookkeeping.derive(route, locate, on_failure=self.writer.forget) or found[0] is None:
                return None
            run_key = found[0]
        rows = None
        if write.points is not None:  # the points the partial-read check converted from the same document
            rows = read_client_points(run_key, write.points)
        elif decoded is not None:
            rows = read_metrics(run_key, decoded)
        if rows is None:
            change = _with_points_as_text(write, change)
            assert change.points is not None
            rows = read_points(run_key, change.points)
        if rows is None:
            return change  # the statement reads this body
        try:
            await self.points.write(rows)
        except PointsRefused as exc:
            log.info("a batch of metric points was refused; written call by call", extra={"reason": str(exc)})
            return _with_points_as_text(write, change)
        except Exception as exc:
            INDEX_FAILURES.inc()
            self.writer.forget()
            log.warning(
                "index rows of an accepted write were not written; the index sync catches up",
                extra={"route": route, "reason": f"{type(exc).__name__}: {exc}"},
            )
            return None
        rest = replace(change, points=None)
        return rest if rest != RunChange(change.run_id) else None


def _with_points_as_text(write: AcceptedWrite, change: RunChange) -> RunChange:
    """The change with its points as the body's text (for `read_points` and the statement), planned from the body
    when it was planned from the guard's document."""
    if change.points is not None:
        return change
    planned = plan(write.spec.name, write.link.workspace_id, write.request, write.response, write.principal)
    assert isinstance(planned, RunChange)
    return planned


class IndexRecovery:
    """A `Recovery` (federation/hooks.py) for indexed writes of unknown outcome: the run or experiment they
    touched is indexed from its store within seconds, not at the next index sync pass."""

    essential = False  # the index is derived: a write that could not be noted is still sent

    def __init__(self, sync: IndexSync) -> None:
        self._sync = sync

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.indexed

    def coalesces(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        # A run or experiment is indexed whole from its store; a new run is looked for by when it was noted.
        return spec != RUNS_CREATE

    async def recover(self, write: UnsettledWrite) -> None:
        link = write.link
        if write.spec == RUNS_CREATE:
            if (experiment_id := write.get("experiment_id")) is not None:
                await self._sync.repair_new_runs(link, experiment_id, int(write.noted_at * 1000) - CREATE_SLACK_MS)
        elif (run_id := write.get("run_id")) is not None:
            await self._sync.repair_run(link, run_id)
        elif write.spec.resource is Resource.EXPERIMENT:
            await self._sync.repair_experiment(link, write.get("experiment_id"), write.get("name"))


class StartedRunIndex:
    """After-write hook of the runs the store creates outside runs/create (the prompt lab, evaluation, issue
    detection, prompt optimisation: STARTS_RUN routes): the run named in the answer is indexed from its store at
    once. Best effort: a failure is counted and logged, and the index sync's pass over recently started runs
    brings it in, with what the job writes into the run later."""

    def __init__(self, sync: IndexSync) -> None:
        self._sync = sync

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.starts_run

    def needs_answer(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return True

    async def record(self, write: AcceptedWrite) -> None:
        found = started_run_of(write)
        if found is None:
            return
        try:
            await self._sync.repair_run(write.link, found[0])
        except Exception as exc:
            INDEX_FAILURES.inc()
            log.warning(
                "a run the store created was not indexed; the index sync catches up",
                extra={"route": write.spec.name, "reason": f"{type(exc).__name__}: {exc}"},
            )
