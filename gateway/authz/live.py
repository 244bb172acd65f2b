"""The policy this process decides with: loaded whole from PostgreSQL, swapped atomically on change.

What exists as a Unity Catalog securable is the system tables plus the dynamic views that `CREATE VIEW`
stored; the views are read through `ViewNames`, given by the composition root (the SQL feature owns
them), in the same transaction as the grants, so a view and the grants on it always load together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz.levels import SYSTEM_TABLES, uc_object, uc_parents
from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.authz.repository import GrantRepository, PolicyVersionRepository
from gateway.observability.metrics import POLICY_RELOADS, POLICY_VERSION
from gateway.principals.repository import PrincipalRepository

log = logging.getLogger(__name__)

SYSTEM_SECURABLES = (
    "catalog:system",
    "schema:system.mlflow",
    *(f"table:system.mlflow.{table}" for table in SYSTEM_TABLES),
)

# The full names (`catalog.schema.view`) of the stored dynamic views, read in the given session.
ViewNames = Callable[[AsyncSession], Awaitable[Iterable[str]]]


def view_securables(view_names: Iterable[str]) -> list[str]:
    """The Unity Catalog objects stored views make exist: each view, its schema and its catalog."""
    found: set[str] = set()
    for name in view_names:
        obj = uc_object("table", name)
        found.add(obj)
        found.update(uc_parents(obj))
    return sorted(found)


class LivePolicy:
    """Holds the current snapshot. Reloads build a new snapshot; readers never see a partial one."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, views: ViewNames) -> None:
        self._sessionmaker = sessionmaker
        self._views = views
        self.snapshot = PolicySnapshot.empty()
        self.loaded = False  # a snapshot of the stored policy is in use (readiness)
        self._listeners: list[Callable[[PolicySnapshot], None]] = []

    def on_change(self, listener: Callable[[PolicySnapshot], None]) -> None:
        self._listeners.append(listener)

    async def stored_version(self) -> int:
        async with self._sessionmaker() as session:
            return await PolicyVersionRepository(session).current()

    async def bump(self, session: AsyncSession) -> int:
        """Move the stored version in `session`'s transaction: every replica reloads once it commits.

        The caller reloads this replica itself after the commit (`reload`), before it answers.
        """
        return await PolicyVersionRepository(session).bump()

    async def reload(self) -> PolicySnapshot:
        started = time.perf_counter()
        # One snapshot of the database: REPEATABLE READ keeps rows and version consistent with each other.
        async with self._sessionmaker() as session, session.begin():
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            version = await PolicyVersionRepository(session).current()
            principals = PrincipalRepository(session)
            rows = await principals.all()
            memberships = await principals.memberships()
            grants = await GrantRepository(session).all()
            views = await self._views(session)
        principals_by_id = {
            row.id: PrincipalInfo(row.id, row.kind, row.name, row.display_name, row.active, row.account_admin)
            for row in rows
        }
        # Indexing a large policy is CPU work: done beside the event loop, which keeps answering meanwhile.
        # Dynamic views (CREATE VIEW) are securables too, with their schemas and catalogs.
        securables = frozenset((*SYSTEM_SECURABLES, *view_securables(views)))
        snapshot = await asyncio.to_thread(
            PolicySnapshot, version, principals_by_id, memberships, grants, securables=securables
        )
        if snapshot.version < self.snapshot.version:
            return self.snapshot  # a concurrent reload already installed something newer
        self.snapshot = snapshot
        self.loaded = True
        POLICY_VERSION.set(version)
        POLICY_RELOADS.inc()
        for listener in self._listeners:
            listener(snapshot)
        log.info(
            "policy loaded",
            extra={"version": version, "grants": len(grants), "ms": round((time.perf_counter() - started) * 1000)},
        )
        return snapshot

    async def check(self, notified: bool) -> None:
        """The reload loop's check: reload when the stored version differs from the one in use.

        A notification only wakes the check early; the replica that made a change has already
        reloaded, so its own notification costs one query, not a second reload.
        """
        if await self.stored_version() != self.snapshot.version:
            await self.reload()
