"""The registry workflow's rows when a workspace moves, changes id or is unlinked (a `WorkspaceMoveHook`).

Requests, comments and activities name models by the gateway's id of them, which gateway/authz/moves.py
keeps for a new workspace id and drops with the store (another store's model of the same name is another
model) or the workspace. These rows go the same way: renumbered, they follow the workspace; moved to
another store or unlinked, they are removed (the audit log keeps what happened), so nothing is inherited
by the new store's models or a workspace linked later under the same id.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.registry import sources
from gateway.registry.repository import RegistryRepository


class RegistryMoves:
    async def check_store_move(self, session: AsyncSession, workspace: str, workspace_id: int) -> None:
        return None  # nothing of the workflow waits on the old store

    async def check_vault_change(
        self, session: AsyncSession, workspace: str, workspace_id: int, before: str, after: str
    ) -> None:
        return None  # the workflow keeps nothing in a vault

    async def store_moved(self, session: AsyncSession, workspace_id: int) -> str | None:
        await sources.forget_workspace(session, workspace_id)  # the new store's registry is scanned anew
        removed = await RegistryRepository(session).remove_workspace(workspace_id)
        if not removed:
            return None
        return (
            f"{removed} registry activities of the previous store's models were removed, with their requests and "
            "comments (the audit log keeps them)."
        )

    async def renumbered(self, session: AsyncSession, old_id: int, new_id: int) -> None:
        await RegistryRepository(session).renumber(old_id, new_id)
        await sources.renumber(session, old_id, new_id)

    async def unlinked(self, session: AsyncSession, workspace_id: int) -> str | None:
        await sources.forget_workspace(session, workspace_id)
        removed = await RegistryRepository(session).remove_workspace(workspace_id)
        if not removed:
            return None
        return (
            f"{removed} registry activities were removed, with their requests and comments (the audit log keeps them)."
        )
