"""Grants and registered-model ids when a workspace moves, changes id or is unlinked.

Every grant inside a workspace is keyed by the workspace's account-wide id (its Casbin domain `w<id>`
and, for experiments and registered models, the object name). Left behind, they would be inherited
by whatever next holds that id or those object ids: a workspace linked later under a reused id, or the
experiment another store numbers as 5. So this hook, registered by `gateway/app.py` like the other
`WorkspaceMoveHook`s (gateway/db/moves.py), keeps them with what they were given on:

- another id, same store: grants and model ids follow the workspace to its new id;
- another store: the objects of the old store are gone from the gateway's view, so grants on its
  experiments and registered models (and the models' ids) are removed; grants on the workspace stay;
- unlinked: every grant in the workspace and its model ids are removed.

Each change moves the policy version in the same transaction with the grant rows it removed and added
(each statement's RETURNING), which every replica applies to the policy it holds once it commits.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from gateway.authz.levels import workspace_domain
from gateway.authz.live import LivePolicy
from gateway.core.policy_changes import GrantAdded, GrantRemoved, PolicyChange
from gateway.db.models import GrantRow, RegisteredModelRow

_OBJECT_KINDS = ("experiment", "registered_model")


class AuthzMoves:
    def __init__(self, policy: LivePolicy) -> None:
        self._policy = policy

    async def check_store_move(self, session: AsyncSession, workspace: str, workspace_id: int) -> None:
        return None  # nothing of authorization waits on the old store

    async def check_vault_change(
        self, session: AsyncSession, workspace: str, workspace_id: int, before: str, after: str
    ) -> None:
        return None  # scope ACLs name the scope, not its vault

    async def store_moved(self, session: AsyncSession, workspace_id: int) -> str | None:
        domain = workspace_domain(workspace_id)
        prefixes = [f"{kind}:{domain}/" for kind in _OBJECT_KINDS]
        removed = await self._delete(
            session, GrantRow.domain == domain, or_(*(GrantRow.object.startswith(p, autoescape=True) for p in prefixes))
        )
        await session.execute(delete(RegisteredModelRow).where(RegisteredModelRow.workspace_id == workspace_id))
        if not removed:
            return None
        return f"{removed} grants on experiments and registered models of the previous store were removed."

    async def renumbered(self, session: AsyncSession, old_id: int, new_id: int) -> None:
        old, new = workspace_domain(old_id), workspace_domain(new_id)
        # `workspace:w1` and `experiment:w1/5` name the domain after the kind's colon: only that part moves.
        renamed = func.regexp_replace(GrantRow.object, f"^([a-z_]+):{old}(/|$)", rf"\1:{new}\2")
        # Joined to itself, the statement returns each row as it was (`before`) next to what it became.
        before = aliased(GrantRow)
        result = await session.execute(
            update(GrantRow)
            .where(GrantRow.id == before.id, before.domain == old)
            .values(domain=new, object=renamed)
            .returning(
                before.principal_id, before.domain, before.object, before.privilege, GrantRow.domain, GrantRow.object
            )
        )
        moved = result.all()
        await session.execute(
            update(RegisteredModelRow).where(RegisteredModelRow.workspace_id == old_id).values(workspace_id=new_id)
        )
        if moved:
            changes: list[PolicyChange] = [GrantRemoved(p, d, o, a) for p, d, o, a, _, _ in moved]
            changes += [GrantAdded(p, d, o, a) for p, _, _, a, d, o in moved]
            await self._policy.bump(session, changes)

    async def unlinked(self, session: AsyncSession, workspace_id: int) -> str | None:
        removed = await self._delete(session, GrantRow.domain == workspace_domain(workspace_id))
        await session.execute(delete(RegisteredModelRow).where(RegisteredModelRow.workspace_id == workspace_id))
        return f"{removed} grants in the workspace were removed." if removed else None

    async def _delete(self, session: AsyncSession, *where: ColumnElement[bool]) -> int:
        result = await session.execute(
            delete(GrantRow)
            .where(*where)
            .returning(GrantRow.principal_id, GrantRow.domain, GrantRow.object, GrantRow.privilege)
        )
        removed: list[PolicyChange] = [GrantRemoved(*row) for row in result.all()]
        if removed:
            await self._policy.bump(session, removed)
        return len(removed)
