"""The account-wide index's rows when a workspace moves.

Registered by `gateway/app.py` as a `WorkspaceMoveHook` (gateway/db/moves.py); called by the workspace
service in the transaction that changes the link.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.tables import ix_dirty_runs, ix_experiments, ix_metric_latest, ix_metrics, ix_runs, ix_sync_state

# Keyed by the account-wide workspace id. (ix_sync_state gone means never synced: the sync backfills.)
_BY_WORKSPACE = (ix_runs, ix_experiments, ix_dirty_runs, ix_sync_state)


class IndexMoves:
    """A new store: the index rows of the old one go, and the index sync rebuilds them from the new one.
    A new id alone: the rows carry over (metric rows follow their run's key, which does not change)."""

    async def check_store_move(self, session: AsyncSession, workspace: str, workspace_id: int) -> None:
        return None  # what the index drops, the sync rebuilds

    async def check_vault_change(
        self, session: AsyncSession, workspace: str, workspace_id: int, before: str, after: str
    ) -> None:
        return None  # the index keeps no secret values

    async def store_moved(self, session: AsyncSession, workspace_id: int) -> str | None:
        runs = select(ix_runs.c.run_key).where(ix_runs.c.workspace_id == workspace_id)
        await session.execute(delete(ix_metrics).where(ix_metrics.c.run_key.in_(runs)))
        await session.execute(delete(ix_metric_latest).where(ix_metric_latest.c.run_key.in_(runs)))
        for table in _BY_WORKSPACE:
            await session.execute(delete(table).where(table.c.workspace_id == workspace_id))
        return None

    async def renumbered(self, session: AsyncSession, old_id: int, new_id: int) -> None:
        for table in _BY_WORKSPACE:
            await session.execute(update(table).where(table.c.workspace_id == old_id).values(workspace_id=new_id))

    async def unlinked(self, session: AsyncSession, workspace_id: int) -> str | None:
        return await self.store_moved(session, workspace_id)
