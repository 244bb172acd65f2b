"""Every SQL statement about saved queries: the `sql_queries` table (migration 0025).

Who may see a query is decided by the service (gateway/console/queries/service.py) from the policy; this
module only reads and writes rows. `visible` takes the answer in the form the policy gives it: the caller's
own principal id (owners see their queries) and the ids of the queries it holds a grant on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, false, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import SavedQueryRow

__all__ = ["SavedQueryRepository", "SavedQueryRow"]


class SavedQueryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, query_id: str) -> SavedQueryRow | None:
        return await self.session.get(SavedQueryRow, query_id)

    async def add(self, row: SavedQueryRow) -> SavedQueryRow:
        self.session.add(row)
        await self.session.flush()
        await self.session.refresh(row)
        return row

    async def change(self, query_id: str, values: dict[str, Any]) -> SavedQueryRow | None:
        """Set `values` (and `updated_at`) on the query; None when it no longer exists."""
        result = await self.session.execute(
            update(SavedQueryRow)
            .where(SavedQueryRow.id == query_id)
            .values(**values, updated_at=func.now())
            .returning(SavedQueryRow)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none()

    async def remove(self, query_id: str) -> bool:
        result = await self.session.execute(
            delete(SavedQueryRow).where(SavedQueryRow.id == query_id).returning(SavedQueryRow.id)
        )
        return result.scalar_one_or_none() is not None

    async def visible(
        self,
        *,
        everything: bool,
        owner_id: int | None,
        granted: Iterable[str],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> Sequence[SavedQueryRow]:
        """Queries in creation order (then id), after the cursor `after`: all of them, or those the caller
        owns or holds a grant on."""
        statement = select(SavedQueryRow)
        if not everything:
            ids = sorted(set(granted))
            mine = SavedQueryRow.owner_id == owner_id if owner_id is not None else false()
            statement = statement.where(or_(mine, SavedQueryRow.id.in_(ids)) if ids else mine)
        if after is not None:
            statement = statement.where(tuple_(SavedQueryRow.created_at, SavedQueryRow.id) > tuple_(*after))
        statement = statement.order_by(SavedQueryRow.created_at, SavedQueryRow.id).limit(limit)
        result = await self.session.execute(statement)
        return result.scalars().all()
