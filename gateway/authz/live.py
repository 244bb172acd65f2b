"""The policy this process decides with: kept in step with PostgreSQL change by change, swapped atomically.

A change to the policy is committed with the rows it added and removed (`PolicyVersionRepository.bump`);
every replica applies those to the snapshot it holds (`PolicySnapshot.apply`: milliseconds, whatever the
number of grants). The policy is loaded whole at start-up, when a version in between has no recorded
changes (or is older than those kept), when the changes to apply hold more than `MAX_RECORDED` rows, and
every `server.policy_rebuild_seconds` as a safety net; a whole load reads the grants from a cursor in
batches and indexes each batch on the event loop between requests, so requests are never held up behind
it for more than one batch.

What exists as a Unity Catalog securable is the system tables plus the dynamic views that `CREATE VIEW`
stored; a whole load reads the views through `ViewNames`, given by the composition root (the SQL feature
owns them), in the same transaction as the grants, so a view and the grants on it always load together.
A view created or dropped is recorded as a change like a grant (`ViewAdded`, `ViewRemoved`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz import repository
from gateway.authz.levels import SYSTEM_TABLES
from gateway.authz.policy import PolicyIndex, PolicySnapshot, PrincipalInfo, view_securables
from gateway.authz.repository import GrantRepository, PolicyVersionRepository
from gateway.core.errors import ResourceNotFound
from gateway.core.policy_changes import PolicyChange
from gateway.observability.metrics import POLICY_CHANGES_APPLIED, POLICY_DRIFT, POLICY_RELOADS, POLICY_VERSION
from gateway.principals.repository import PrincipalRepository

log = logging.getLogger(__name__)

SYSTEM_SECURABLES = (
    "catalog:system",
    "schema:system.mlflow",
    *(f"table:system.mlflow.{table}" for table in SYSTEM_TABLES),
)

# The full names (`catalog.schema.view`) of the stored dynamic views, read in the given session.
ViewNames = Callable[[AsyncSession], Awaitable[Iterable[str]]]

T = TypeVar("T")

# Grants indexed per step of a whole load; the event loop serves requests between steps (about 10 ms each).
LOAD_BATCH = 2000


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class LivePolicy:
    """Holds the current snapshot. Changes and reloads make a new snapshot; readers never see a partial one."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, views: ViewNames, rebuild_seconds: float = 600.0
    ) -> None:
        self._sessionmaker = sessionmaker
        self._views = views
        self._rebuild_seconds = rebuild_seconds
        self.snapshot = PolicySnapshot.empty()
        self.loaded = False  # a snapshot of the stored policy is in use (readiness)
        self._loaded_at = 0.0  # when the policy was last loaded whole (time.monotonic)
        self._listeners: list[Callable[[PolicySnapshot], None]] = []

    def on_change(self, listener: Callable[[PolicySnapshot], None]) -> None:
        self._listeners.append(listener)

    async def stored_version(self) -> int:
        async with self._sessionmaker() as session:
            return await PolicyVersionRepository(session).current()

    async def bump(self, session: AsyncSession, changes: Sequence[PolicyChange] | None = None) -> int:
        """Move the stored version in `session`'s transaction: every replica follows once it commits.

        `changes` (what the transaction's statements returned) let replicas apply the change; without them
        they load the policy whole. The caller brings this replica up to date itself after the commit
        (`reload`), before it answers.
        """
        return await PolicyVersionRepository(session).bump(changes)

    async def reload(self) -> PolicySnapshot:
        """Bring this replica to the stored policy: the recorded changes since the version in use, applied
        in order, or the whole policy loaded when any version since has none (or none was loaded yet)."""
        if not self.loaded:
            return await self.rebuild()
        base = self.snapshot
        async with self._sessionmaker() as session, session.begin():
            # The version and the recorded changes as of one moment: REPEATABLE READ.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            versions = PolicyVersionRepository(session)
            version = await versions.current()
            if version <= base.version:
                return self.snapshot
            recorded = await versions.changes_since(base.version)
        if [number for number, _ in recorded] != list(range(base.version + 1, version + 1)):
            return await self.rebuild()  # a version without recorded changes, or older than those kept
        current = self.snapshot  # may have moved on meanwhile (another reload of this process)
        if current.version >= version:
            return current
        pending = [change for number, changes in recorded if current.version < number <= version for change in changes]
        if len(pending) > repository.MAX_RECORDED:
            return await self.rebuild()  # several large changes: a whole load, in batches, holds requests less
        cpu = time.process_time()
        snapshot = current.apply(version, pending)
        self._install(snapshot)
        POLICY_CHANGES_APPLIED.inc(version - current.version)
        log.debug(
            "policy changes applied",
            extra={"version": version, "changes": len(pending), "cpu_ms": round((time.process_time() - cpu) * 1000, 2)},
        )
        return snapshot

    async def found(self, read: Callable[[PolicySnapshot], T]) -> T:
        """What `read` gives on the snapshot in use or, when it gives nothing there (None, or raises
        ResourceNotFound), what it gives on the stored policy, after one `reload`.

        Something made or changed through another replica moments ago (a principal, a membership, a grant) is
        in the stored policy before its news (NOTIFY) reaches this one: whatever the caller names, or is, counts
        as missing only once this replica's policy is the stored one. One query when it is already; the policy
        only ever moves forward. What `read` says on the stored policy stands, its ResourceNotFound too.
        """
        with contextlib.suppress(ResourceNotFound):
            value = read(self.snapshot)
            if value is not None:
                return value
        return read(await self.reload())

    async def rebuild(self) -> PolicySnapshot:
        """Load the whole stored policy and swap it in (unless a newer one is in use by then)."""
        started = time.perf_counter()
        self._loaded_at = time.monotonic()
        index = PolicyIndex()
        grants = 0
        # One snapshot of the database: REPEATABLE READ keeps rows and version consistent with each other.
        async with self._sessionmaker() as session, session.begin():
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            version = await PolicyVersionRepository(session).current()
            principals = PrincipalRepository(session)
            rows = await principals.all()
            index.add_memberships(await principals.memberships())
            # Indexing a large policy is CPU work: done a batch at a time, the event loop answering between.
            # The index's new objects would set off several full collections of the cyclic garbage collector
            # meanwhile (each a pause of every request); it waits until the index is built.
            with _collector_paused():
                async for batch in GrantRepository(session).batches(LOAD_BATCH):
                    index.add_grants(batch)
                    grants += len(batch)
                    await asyncio.sleep(0)
            views = await self._views(session)
        principals_by_id = {
            row.id: PrincipalInfo(row.id, row.kind, row.name, row.display_name, row.active, row.account_admin)
            for row in rows
        }
        # Dynamic views (CREATE VIEW) are securables too, with their schemas and catalogs.
        securables = frozenset((*SYSTEM_SECURABLES, *view_securables(views)))
        snapshot = index.snapshot(version, principals_by_id, securables)
        current = self.snapshot
        if snapshot.version < current.version:
            return current  # a concurrent reload already installed something newer
        if self.loaded and snapshot.version == current.version and not snapshot.same_policy(current):
            # The changes applied since the last whole load did not add up to the stored policy: a fault.
            POLICY_DRIFT.inc()
            log.warning("policy changes applied differed from the stored policy", extra={"version": version})
        self._install(snapshot)
        POLICY_RELOADS.inc()
        log.info(
            "policy loaded",
            extra={"version": version, "grants": grants, "ms": round((time.perf_counter() - started) * 1000)},
        )
        return snapshot

    def _install(self, snapshot: PolicySnapshot) -> None:
        self.snapshot = snapshot
        self.loaded = True
        POLICY_VERSION.set(snapshot.version)
        for listener in self._listeners:
            listener(snapshot)

    async def check(self, notified: bool) -> None:
        """The reload loop's check: follow the stored version when it differs from the one in use.

        A notification only wakes the check early; the replica that made a change has already
        applied it, so its own notification costs one query. Every `rebuild_seconds` the policy is
        loaded whole instead, as a safety net (and a check of the changes applied meanwhile).
        """
        if time.monotonic() - self._loaded_at >= self._rebuild_seconds:
            await self.rebuild()
        elif await self.stored_version() != self.snapshot.version:
            await self.reload()
