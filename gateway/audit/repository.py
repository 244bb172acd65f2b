"""The audit table: appended to in batches, read in id order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import AuditRow


@dataclass(frozen=True)
class Places:
    """What audit rows are about: a target named exactly, a target starting with a prefix, or a value
    under a key of the details (a refused request names its workspace there). A row about any one counts."""

    targets: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    details: frozenset[tuple[str, str]] = frozenset()


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

    async def search(
        self,
        *,
        before_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        target_prefix: str | None = None,
        outcome: str | None = None,
        within: Places | None = None,
        limit: int = 50,
    ) -> Sequence[AuditRow]:
        """Rows newest first, below `before_id`, that pass every filter given.

        `action` ending in '.' matches as a prefix (`grants.`), otherwise exactly. `within` keeps only the
        rows about the places it names (nothing when it names none).
        """
        statement = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if before_id is not None:
            statement = statement.where(AuditRow.id < before_id)
        if since is not None:
            statement = statement.where(AuditRow.at >= since)
        if until is not None:
            statement = statement.where(AuditRow.at < until)
        if actor:
            statement = statement.where(AuditRow.actor == actor)
        if action:
            condition = AuditRow.action.startswith(action, autoescape=True) if action.endswith(".") else None
            statement = statement.where(condition if condition is not None else AuditRow.action == action)
        if target_prefix:
            statement = statement.where(AuditRow.target.startswith(target_prefix, autoescape=True))
        if outcome:
            statement = statement.where(AuditRow.outcome == outcome)
        if within is not None:
            places: list[ColumnElement[bool]] = [false()]
            if within.targets:
                places.append(AuditRow.target.in_(sorted(within.targets)))
            places.extend(AuditRow.target.startswith(prefix, autoescape=True) for prefix in sorted(within.prefixes))
            places.extend(AuditRow.details[key].astext == value for key, value in sorted(within.details))
            statement = statement.where(or_(*places))
        result = await self.session.execute(statement)
        return result.scalars().all()
