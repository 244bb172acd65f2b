"""Every SQL statement of the federation context."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import RunRouteRow


class RunRouteRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, run_id: str, workspace: str, experiment_id: str, created_by: str) -> None:
        await self.session.execute(
            insert(RunRouteRow)
            .values(run_id=run_id, workspace=workspace, experiment_id=experiment_id, created_by=created_by)
            .on_conflict_do_nothing(index_elements=[RunRouteRow.run_id])
        )

    async def workspace_of(self, run_id: str) -> str | None:
        result = await self.session.execute(select(RunRouteRow.workspace).where(RunRouteRow.run_id == run_id))
        return result.scalar_one_or_none()
