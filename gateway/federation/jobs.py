"""The gateway's records of the store jobs it started (table `store_jobs`, migration 0027).

A job is recorded from the store's answer to the call that started it, with the checks that start passed
(federation/guard/jobs.py); a job is read, cancelled or listed through the gateway only as recorded here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.links import WorkspaceLink
from gateway.db.models import StoreJobRow
from gateway.federation.guard.ports import JobRecord, Need


class JobBook:
    """`JobRecords` over the gateway's database."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def record(self, link: WorkspaceLink, jobs: list[JobRecord], run_id: str | None) -> None:
        if not jobs:
            return
        rows = [
            {
                "workspace_id": link.workspace_id,
                "job_id": job.job_id,
                "job_name": job.job_name,
                "needs": [[need.kind, need.object_id, need.level] for need in job.needs],
                "run_id": run_id,
                "created_by": job.created_by,
            }
            for job in jobs
        ]
        async with self._sessionmaker() as session, session.begin():
            await session.execute(insert(StoreJobRow).values(rows).on_conflict_do_nothing())

    async def find(self, link: WorkspaceLink, job_ids: list[str]) -> dict[str, JobRecord]:
        if not job_ids:
            return {}
        async with self._sessionmaker() as session:
            result = await session.execute(
                select(StoreJobRow).where(
                    StoreJobRow.workspace_id == link.workspace_id, StoreJobRow.job_id.in_(set(job_ids))
                )
            )
            return {row.job_id: _record(row) for row in result.scalars()}


def _record(row: StoreJobRow) -> JobRecord:
    needs: list[Any] = row.needs or []
    return JobRecord(
        row.job_id,
        row.job_name,
        tuple(Need(str(kind), str(object_id), str(level)) for kind, object_id, level in needs),
        row.created_by,
    )
