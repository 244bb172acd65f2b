"""Every SQL statement of the federation context."""

from __future__ import annotations

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import RunRouteRow

INSERT_RUN_ROUTE = (
    "INSERT INTO run_routes (run_id, workspace, experiment_id, created_by) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (run_id) DO NOTHING"
)


async def record_run_route(
    conn: asyncpg.Connection, run_id: str, workspace: str, experiment_id: str, created_by: str
) -> None:
    """Which workspace a run lives in (the first record wins), on a connection in the caller's transaction."""
    await conn.execute(INSERT_RUN_ROUTE, run_id, workspace, experiment_id, created_by)


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
