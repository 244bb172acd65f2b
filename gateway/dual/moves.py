"""Dual tracking's rows when a workspace moves: outbox, id map and reconcile progress.

Registered by `gateway/app.py` as a `WorkspaceMoveHook` (gateway/db/moves.py); called by the workspace
service in the transaction that changes the link.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.core.errors import InvalidState
from gateway.db.models import IdMapRow
from gateway.db.tables import reconcile_state
from gateway.dual.outbox import OutboxRepository


class DualMoves:
    """A new store numbers its experiments and runs anew: the id map and the reconcile position (which
    experiment the backfill reached) of the old one are dropped, and so are its dead letters, which
    could only be retried against the old store. Pending entries are read from the current store, so a
    workspace with pending entries does not move (a relay marks what it applied before it lets its key
    go, so entries being applied count as pending). A new id alone carries everything over, once the
    relays at work on the workspace's keys are done (`OutboxRepository.renumber`)."""

    async def check_store_move(self, session: AsyncSession, workspace: str, workspace_id: int) -> None:
        if pending := await OutboxRepository(session).pending(workspace_id):
            raise InvalidState(
                f"Workspace '{workspace}' has {pending} dual-mode entries still pending for the central store; "
                "they are read from its current store. Let them drain (fedgate links status) before moving it."
            )

    async def check_vault_change(
        self, session: AsyncSession, workspace: str, workspace_id: int, before: str, after: str
    ) -> None:
        return None  # the outbox keeps no secret values

    async def store_moved(self, session: AsyncSession, workspace_id: int) -> str | None:
        dead = await OutboxRepository(session).drop_dead(workspace_id)
        await session.execute(delete(IdMapRow).where(IdMapRow.workspace_id == workspace_id))
        await session.execute(delete(reconcile_state).where(reconcile_state.c.workspace_id == workspace_id))
        return f"{dead} dead letters of the previous store were discarded." if dead else None

    async def renumbered(self, session: AsyncSession, old_id: int, new_id: int) -> None:
        # The outbox first: it waits for relays at work on the workspace's keys, and they may write id
        # map rows while they apply, so none may be locked by this transaction yet.
        await OutboxRepository(session).renumber(old_id, new_id)
        await session.execute(update(IdMapRow).where(IdMapRow.workspace_id == old_id).values(workspace_id=new_id))
        await session.execute(
            update(reconcile_state).where(reconcile_state.c.workspace_id == old_id).values(workspace_id=new_id)
        )

    async def unlinked(self, session: AsyncSession, workspace_id: int) -> str | None:
        # Pending entries refuse the unlink (check_store_move); done entries go with the rest.
        note = await self.store_moved(session, workspace_id)
        await OutboxRepository(session).drop_all(workspace_id)
        return note
