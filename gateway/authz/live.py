"""The policy this process decides with: loaded whole from PostgreSQL, swapped atomically on change."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz.levels import SYSTEM_TABLES
from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.authz.repository import GrantRepository, PolicyVersionRepository
from gateway.observability.metrics import POLICY_RELOADS, POLICY_VERSION
from gateway.principals.repository import PrincipalRepository
from gateway.sql.catalog import view_securables
from gateway.sql.repository import ViewRepository

log = logging.getLogger(__name__)

SYSTEM_SECURABLES = (
    "catalog:system",
    "schema:system.mlflow",
    *(f"table:system.mlflow.{table}" for table in SYSTEM_TABLES),
)


class LivePolicy:
    """Holds the current snapshot. Reloads build a new snapshot; readers never see a partial one."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self.snapshot = PolicySnapshot.empty()
        self._listeners: list[Callable[[PolicySnapshot], None]] = []

    def on_change(self, listener: Callable[[PolicySnapshot], None]) -> None:
        self._listeners.append(listener)

    async def stored_version(self) -> int:
        async with self._sessionmaker() as session:
            return await PolicyVersionRepository(session).current()

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
            views = await ViewRepository(session).names()
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
