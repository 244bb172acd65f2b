"""The store jobs the gateway recorded (`store_jobs`, federation/jobs.py) when a workspace moves.

Registered by `gateway/app.py` as a `WorkspaceMoveHook` (gateway/db/moves.py); called by the workspace service in
the transaction that changes the link. Run routes are keyed by workspace name, which a relink does not change,
so they need nothing here.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import StoreJobRow


class JobMoves:
    """A recorded job is one of the workspace's store: a new store, or an unlink, drops the records (a job of
    another store, or of a workspace later linked under the same id, never passes as one the gateway started
    with their checks); a new id alone carries them over, so the workspace's jobs stay readable."""

    async def check_store_move(self, session: AsyncSession, workspace: str, workspace_id: int) -> None:
        return None  # a job record is no reason to keep a workspace where it is

    async def check_vault_change(
        self, session: AsyncSession, workspace: str, workspace_id: int, before: str, after: str
    ) -> None:
        return None  # job records keep no secret values

    async def store_moved(self, session: AsyncSession, workspace_id: int) -> str | None:
        await session.execute(delete(StoreJobRow).where(StoreJobRow.workspace_id == workspace_id))
        return None

    async def renumbered(self, session: AsyncSession, old_id: int, new_id: int) -> None:
        await session.execute(update(StoreJobRow).where(StoreJobRow.workspace_id == old_id).values(workspace_id=new_id))

    async def unlinked(self, session: AsyncSession, workspace_id: int) -> str | None:
        return await self.store_moved(session, workspace_id)
