"""Every SQL statement of the workspaces context."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.locks import LockClass
from gateway.db.models import WorkspaceLinkRow

CHANGE_CHANNEL = "fedgate_workspace_links"
# Tables keyed by the account-wide workspace id that hold what the gateway derived from the store.
# (ix_sync_state gone means never synced: the index sync backfills the workspace.)
WORKSPACE_TABLES = (
    "id_map",
    "reconcile_state",
    "outbox",
    "ix_runs",
    "ix_experiments",
    "ix_dirty_runs",
    "ix_sync_state",
)


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self) -> Sequence[WorkspaceLinkRow]:
        result = await self.session.execute(select(WorkspaceLinkRow).order_by(WorkspaceLinkRow.name))
        return result.scalars().all()

    async def get(self, name: str) -> WorkspaceLinkRow | None:
        return await self.session.get(WorkspaceLinkRow, name)

    async def get_by_id(self, workspace_id: int) -> WorkspaceLinkRow | None:
        result = await self.session.execute(
            select(WorkspaceLinkRow).where(WorkspaceLinkRow.workspace_id == workspace_id)
        )
        return result.scalar_one_or_none()

    async def next_workspace_id(self) -> int:
        result = await self.session.execute(select(func.max(WorkspaceLinkRow.workspace_id)))
        current = result.scalar_one_or_none()
        return max(int(current or 0) + 1, 1001)

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

    async def pending_outbox(self, workspace_id: int) -> int:
        result = await self.session.execute(
            text("SELECT count(*) FROM outbox WHERE workspace_id = :id AND state = 'pending'"), {"id": workspace_id}
        )
        return int(result.scalar_one())

    async def rehome(self, old_id: int, new_id: int, *, store_changed: bool) -> int:
        """What the gateway derived from a workspace's store, after its store or its id changed.

        A new store numbers its experiments and versions anew: the dual-mode id map, reconcile state
        (backfill position) and dead letters of the old one are dropped (the number of dead letters is
        returned), and so are its account-wide index rows, which the index sync then rebuilds from the
        new store. A new id alone carries everything over to it.
        """
        ids = {"old": old_id, "new": new_id}
        if not store_changed:
            for table in WORKSPACE_TABLES:
                moving = f"UPDATE {table} SET workspace_id = :new WHERE workspace_id = :old"  # noqa: S608
                await self.session.execute(text(moving), ids)
            # Order keys carry the id too: pending entries stay in line with the ones written from now on.
            rekey = (
                "UPDATE outbox SET order_key = regexp_replace(order_key, '^[0-9]+/', :prefix) WHERE workspace_id = :new"
            )
            await self.session.execute(text(rekey), {"prefix": f"{new_id}/", "new": new_id})
            return 0
        dead = await self.session.execute(text("DELETE FROM outbox WHERE workspace_id = :old AND state = 'dead'"), ids)
        runs = "SELECT run_key FROM ix_runs WHERE workspace_id = :old"
        for statement in (
            f"DELETE FROM ix_metrics WHERE run_key IN ({runs})",  # noqa: S608
            f"DELETE FROM ix_metric_latest WHERE run_key IN ({runs})",  # noqa: S608
            *(f"DELETE FROM {table} WHERE workspace_id = :old" for table in WORKSPACE_TABLES if table != "outbox"),  # noqa: S608
        ):
            await self.session.execute(text(statement), ids)
        return int(dead.rowcount or 0)  # type: ignore[attr-defined]

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
