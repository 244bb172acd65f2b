"""Every SQL statement of the workspaces context: the `workspace_links` table and the links lock.

The rows other packages keep for a workspace are theirs to move (`WorkspaceMoveHook`, gateway/db/moves.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.locks import LockClass
from gateway.db.models import WorkspaceLinkRow

CHANGE_CHANNEL = "fedgate_workspace_links"


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self) -> Sequence[WorkspaceLinkRow]:
        result = await self.session.execute(select(WorkspaceLinkRow).order_by(WorkspaceLinkRow.name))
        return result.scalars().all()

    async def get(self, name: str) -> WorkspaceLinkRow | None:
        return await self.session.get(WorkspaceLinkRow, name)

    async def locked(self, name: str) -> WorkspaceLinkRow | None:
        """The workspace's row, locked FOR UPDATE until the transaction ends: before an unlink or relink changes
        anything of it, so a grant being added in the workspace (`GrantRepository.hold`, which reads the row FOR
        SHARE) is committed first and dropped or moved with the rest, or waits and finds the workspace changed."""
        result = await self.session.execute(
            select(WorkspaceLinkRow)
            .where(WorkspaceLinkRow.name == name)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def get_by_id(self, workspace_id: int) -> WorkspaceLinkRow | None:
        result = await self.session.execute(
            select(WorkspaceLinkRow).where(WorkspaceLinkRow.workspace_id == workspace_id)
        )
        return result.scalar_one_or_none()

    async def next_workspace_id(self) -> int:
        """One more than the highest id any workspace ever had (migration 0039), so an unlinked workspace's id
        is never handed to another: whatever still names it (a row an unlink hook missed, an audit entry, a
        client's cached ids) never names a workspace linked later."""
        result = await self.session.execute(text("SELECT highest FROM workspace_id_high_water"))
        highest = result.scalar_one_or_none()
        current = (await self.session.execute(select(func.max(WorkspaceLinkRow.workspace_id)))).scalar_one_or_none()
        return max(int(highest or 0), int(current or 0), 1000) + 1

    async def insert(self, row: WorkspaceLinkRow) -> None:
        self.session.add(row)
        await self.session.flush()

    async def upsert(self, values: dict[str, object]) -> None:
        statement = insert(WorkspaceLinkRow).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[WorkspaceLinkRow.name],
            set_={**{k: v for k, v in values.items() if k != "name"}, "updated_at": func.now()},
        )
        await self.session.execute(statement)

    async def update(self, name: str, values: dict[str, object]) -> None:
        await self.session.execute(
            update(WorkspaceLinkRow).where(WorkspaceLinkRow.name == name).values(**values, updated_at=func.now())
        )

    async def delete(self, name: str) -> None:
        await self.session.execute(delete(WorkspaceLinkRow).where(WorkspaceLinkRow.name == name))

    async def lock_links(self) -> None:
        """Serialise link changes across replicas until the transaction ends (namespace checks read, then write)."""
        await self.session.execute(text("SELECT pg_advisory_xact_lock(:class, 0)"), {"class": LockClass.LINKS})

    async def version(self) -> str:
        """A fingerprint of the whole table, polled as the backstop of LISTEN/NOTIFY."""
        result = await self.session.execute(
            select(func.count(), func.max(WorkspaceLinkRow.updated_at)).select_from(WorkspaceLinkRow)
        )
        count, latest = result.one()
        return f"{count}:{latest.isoformat() if latest else ''}"

    async def notify_change(self) -> None:
        """Tell every replica to reload; delivered when the transaction commits."""
        await self.session.execute(text(f"NOTIFY {CHANGE_CHANNEL}"))
