"""Workspace ids are never handed out twice, on a migrated database (the session's embedded PostgreSQL): the
highest id ever linked is kept whichever way a link is written, and the store jobs recorded for a workspace
follow its id and go with its store or its link."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.models import StoreJobRow, WorkspaceLinkRow
from gateway.federation.moves import JobMoves
from gateway.workspaces.repository import WorkspaceRepository


def _row(name: str, workspace_id: int) -> WorkspaceLinkRow:
    return WorkspaceLinkRow(name=name, workspace_id=workspace_id, mode="central", managed_by="api")


async def _next(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return await WorkspaceRepository(session).next_workspace_id()


async def test_an_unlinked_workspaces_id_is_never_handed_out_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert await _next(sessionmaker) == 1001
    async with sessionmaker() as session, session.begin():
        await WorkspaceRepository(session).insert(_row("first", 1001))
    async with sessionmaker() as session, session.begin():
        await WorkspaceRepository(session).insert(
            _row("second", await WorkspaceRepository(session).next_workspace_id())
        )
    async with sessionmaker() as session, session.begin():
        await WorkspaceRepository(session).delete("second")
    assert await _next(sessionmaker) == 1003  # 1002 was second's
    # An id chosen by an admin (or the config file), and a renumbering, raise the mark as well.
    async with sessionmaker() as session, session.begin():
        await WorkspaceRepository(session).upsert(
            {"name": "declared", "workspace_id": 5000, "mode": "central", "managed_by": "config"}
        )
        await WorkspaceRepository(session).update("first", {"workspace_id": 7000})
    async with sessionmaker() as session, session.begin():
        await WorkspaceRepository(session).delete("first")
        await WorkspaceRepository(session).delete("declared")
    assert await _next(sessionmaker) == 7001
    # A link whose transaction rolls back leaves the mark where it was.
    async with sessionmaker() as session:
        await WorkspaceRepository(session).insert(_row("rolled-back", 9000))
        await session.rollback()
    assert await _next(sessionmaker) == 7001
    async with sessionmaker() as session:
        assert (await session.execute(text("SELECT count(*) FROM workspace_id_high_water"))).scalar_one() == 1


async def _jobs(session: AsyncSession) -> list[tuple[int, str]]:
    rows = await session.execute(select(StoreJobRow.workspace_id, StoreJobRow.job_id).order_by(StoreJobRow.job_id))
    return [(int(workspace_id), str(job_id)) for workspace_id, job_id in rows.all()]


async def test_recorded_store_jobs_follow_a_new_id_and_go_with_the_store_or_the_link(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        for workspace_id, job_id in ((1001, "a1"), (1001, "a2"), (1002, "b1"), (1003, "c1")):
            session.add(
                StoreJobRow(workspace_id=workspace_id, job_id=job_id, job_name="j", needs=[], created_by="someone")
            )
    moves = JobMoves()
    async with sessionmaker() as session, session.begin():
        await moves.renumbered(session, 1001, 2001)
        assert await _jobs(session) == [(2001, "a1"), (2001, "a2"), (1002, "b1"), (1003, "c1")]
        assert await moves.unlinked(session, 2001) is None
        assert await moves.store_moved(session, 1002) is None
        assert await _jobs(session) == [(1003, "c1")]
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(StoreJobRow))).scalar_one() == 1
