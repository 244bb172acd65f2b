"""Secret scopes, and the secrets runs read, when a workspace changes id or is unlinked (a `WorkspaceMoveHook`,
gateway/db/moves.py).

Scopes do not depend on the store: a store move keeps them. Renumbered, they follow the workspace (their
values stay at the location they were created with; their ACL grants move with gateway/authz/moves.py).
Unlinked, they are removed with the built-in vault's values of them, so nothing is inherited by a
workspace linked later under the same id; values in an external vault are left to its operator (a scope
created later at the same location empties it first, service.py, so a workspace linked under the id never reads
them).

Another vault for a workspace that has scopes is refused (409): each scope keeps the vault it was created
in, so the workspace's secrets would be split over two vaults, and the old ones would stay where an
operator moving to the new vault no longer looks. Delete the scopes first (or keep the vault).

The runs' reads (the leak guard's `run_secret_reads`) follow the same way: kept when the store moves (a
store moved to another server is usually the same runs under the same ids), renumbered with the
workspace, removed with it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.core.config import BUILTIN_VAULT
from gateway.core.errors import InvalidState
from gateway.secrets.repository import ReadRepository, ScopeRepository


class SecretMoves:
    async def check_store_move(self, session: AsyncSession, workspace: str, workspace_id: int) -> None:
        return None

    async def check_vault_change(
        self, session: AsyncSession, workspace: str, workspace_id: int, before: str, after: str
    ) -> None:
        scopes = await ScopeRepository(session).count(workspace_id)
        if scopes:
            raise InvalidState(
                f"Workspace '{workspace}' has {scopes} secret scope(s) whose values live in vault '{before}'; "
                f"with vault '{after}' they would stay behind there. Delete its scopes first "
                "(POST /api/2.0/secrets/scopes/delete), or keep its vault."
            )

    async def store_moved(self, session: AsyncSession, workspace_id: int) -> str | None:
        return None

    async def renumbered(self, session: AsyncSession, old_id: int, new_id: int) -> None:
        await ScopeRepository(session).renumber(old_id, new_id)
        await ReadRepository(session).renumber(old_id, new_id)

    async def unlinked(self, session: AsyncSession, workspace_id: int) -> str | None:
        await ReadRepository(session).remove_workspace(workspace_id)
        removed = await ScopeRepository(session).remove_workspace(workspace_id, BUILTIN_VAULT)
        return f"{removed} secret scopes of the workspace were removed." if removed else None
