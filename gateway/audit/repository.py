"""The audit table: appended to in batches, read in id order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import AuditRow


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(AuditRow), rows)

    async def query(
        self,
        *,
        after_id: int = 0,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> Sequence[AuditRow]:
        statement = select(AuditRow).where(AuditRow.id > after_id).order_by(AuditRow.id).limit(limit)
        if since is not None:
            statement = statement.where(AuditRow.at >= since)
        if actor:
            statement = statement.where(AuditRow.actor == actor)
        if action:
            statement = statement.where(AuditRow.action == action)
        if outcome:
            statement = statement.where(AuditRow.outcome == outcome)
        result = await self.session.execute(statement)
        return result.scalars().all()
