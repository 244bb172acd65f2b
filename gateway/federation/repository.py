"""Every SQL statement of the federation context."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import RunRouteRow


class RunRouteRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lookup(self, run_id: str) -> tuple[str, str] | None:
        """(workspace, experiment id) of a run the gateway has seen created."""
        result = await self.session.execute(
            select(RunRouteRow.workspace, RunRouteRow.experiment_id).where(RunRouteRow.run_id == run_id)
        )
        row = result.one_or_none()
        return (row[0], row[1]) if row is not None else None
