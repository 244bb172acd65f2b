"""The registry workflow's tables on a migrated database: the activity log is append-only, one open request
per user, version and stage, decisions close only open requests, and rows follow their workspace (a new id)
or go with it (another store, unlinked)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.core.config import load_settings
from gateway.core.links import LinkTable
from gateway.db.engine import make_sessionmaker
from gateway.registry.moves import RegistryMoves
from gateway.registry.repository import NewActivity, RegistryRepository
from gateway.workspaces.schemas import WorkspaceChanges, WorkspaceCreate
from gateway.workspaces.service import WorkspaceService
from tests.unit.test_workspace_moves import CONFIG, UnreachableStore

MOVED, NEIGHBOUR = 1001, 1002
MODEL, OTHER = "a" * 32, "b" * 32


async def seed(sessionmaker: async_sessionmaker[AsyncSession], workspace_id: int, model_id: str) -> int:
    """A request, its activity and a comment of the workspace's model; the request's id."""
    async with sessionmaker() as session, session.begin():
        repository = RegistryRepository(session)
        request = await repository.add_request(
            workspace_id, model_id, "1", "Staging", "ann@example.com", None, "please"
        )
        assert request is not None
        await repository.append(
            workspace_id,
            model_id,
            NewActivity("1", "REQUESTED_TRANSITION", "ann@example.com", "None", "Staging", request_id=request.id),
        )
        await repository.add_comment(model_id[:31] + "c", workspace_id, model_id, "1", "ann@example.com", None, "hi")
        await repository.append(
            workspace_id, model_id, NewActivity("1", "NEW_COMMENT", "ann@example.com", comment_id=model_id[:31] + "c")
        )
        return request.id


async def rows(url: str) -> dict[str, list[int]]:
    connection = await asyncpg.connect(url)
    try:
        return {
            table: sorted(r[0] for r in await connection.fetch(f"SELECT workspace_id FROM {table}"))
            for table in ("registry_requests", "registry_comments", "registry_activities")
        }
    finally:
        await connection.close()


async def test_the_activity_log_refuses_every_change_but_its_workspaces_own(
    sessionmaker: async_sessionmaker[AsyncSession], database: str
) -> None:
    await seed(sessionmaker, MOVED, MODEL)
    connection = await asyncpg.connect(database)
    try:
        for statement in (
            "UPDATE registry_activities SET user_id = 'mallory@example.com'",
            "UPDATE registry_activities SET to_stage = 'Production', workspace_id = 9",
            "DELETE FROM registry_activities",
            "TRUNCATE registry_activities",
        ):
            with pytest.raises(asyncpg.RaiseError, match="registry_activities is append-only"):
                await connection.execute(statement)
        # A caller cannot borrow the workspace's permission outside the statement that drops the workspace...
        async with connection.transaction():
            await connection.execute("SELECT set_config('fedgate.registry_drop', '', true)")
            with pytest.raises(asyncpg.RaiseError):
                await connection.execute("DELETE FROM registry_activities")
        # ...and moving the rows to a new workspace id is the one update allowed.
        assert await connection.execute("UPDATE registry_activities SET workspace_id = 2001") == "UPDATE 2"
    finally:
        await connection.close()


async def test_one_open_request_per_user_version_and_stage_and_decisions_close_only_open_ones(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = await seed(sessionmaker, MOVED, MODEL)
    async with sessionmaker() as session, session.begin():
        repository = RegistryRepository(session)
        assert await repository.add_request(MOVED, MODEL, "1", "Staging", "ann@example.com", None, None) is None
        other = await repository.add_request(MOVED, MODEL, "1", "Staging", "bob@example.com", None, None)
        production = await repository.add_request(MOVED, MODEL, "1", "Production", "ann@example.com", None, None)
        assert other is not None and production is not None
        assert [r.requested_by for r in await repository.open_requests(MODEL, "1", "Staging")] == [
            "bob@example.com",
            "ann@example.com",
        ]
        assert await repository.decide([first, other.id], "approved", "sam@example.com") == sorted([first, other.id])
        assert await repository.decide([first, other.id], "rejected", "sam@example.com") == []  # decided already
        last = await repository.last_request(MODEL, "1", "Staging", "ann@example.com")
        assert last is not None and (last.state, last.decided_by) == ("approved", "sam@example.com")
        # Once decided, the user may ask again.
        assert await repository.add_request(MOVED, MODEL, "1", "Staging", "ann@example.com", None, None) is not None


async def test_a_deleted_comment_leaves_its_place_in_the_log_without_its_text(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await seed(sessionmaker, MOVED, MODEL)
    async with sessionmaker() as session, session.begin():
        repository = RegistryRepository(session)
        assert await repository.edit_comment(MODEL[:31] + "c", "hello")
        [comment, requested] = await repository.log(MODEL, "1")
        assert (comment.activity_type, comment.comment, comment.comment_deleted) == ("NEW_COMMENT", "hello", False)
        assert (requested.activity_type, requested.from_stage, requested.to_stage) == (
            "REQUESTED_TRANSITION",
            "None",
            "Staging",
        )
        assert await repository.delete_comment(MODEL[:31] + "c")
        [comment, _] = await repository.log(MODEL, "1")
        assert (comment.comment, comment.comment_deleted) == (None, True)


@pytest.fixture
async def service(tmp_path: Path, engine: AsyncEngine) -> WorkspaceService:
    path = tmp_path / "fedgate.toml"
    path.write_text(CONFIG)
    stores = {name: UnreachableStore(name, engine) for name in ("a", "b", "c", "central")}
    service = WorkspaceService(load_settings(path, environ={}), stores, LinkTable(), (RegistryMoves(),))
    sessionmaker = make_sessionmaker(engine)
    await service.create(sessionmaker, WorkspaceCreate(name="mover", store="a", workspace_id=str(MOVED)))
    await service.create(sessionmaker, WorkspaceCreate(name="neighbour", store="b", workspace_id=str(NEIGHBOUR)))
    return service


async def test_rows_follow_a_new_workspace_id_and_go_with_another_store_or_an_unlink(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession], database: str
) -> None:
    await seed(sessionmaker, MOVED, MODEL)
    await seed(sessionmaker, NEIGHBOUR, OTHER)

    await service.update(sessionmaker, "mover", WorkspaceChanges(workspace_id="2001"))
    assert await rows(database) == {
        "registry_requests": [NEIGHBOUR, 2001],
        "registry_comments": [NEIGHBOUR, 2001],
        "registry_activities": [NEIGHBOUR, NEIGHBOUR, 2001, 2001],
    }

    _, warning = await service.update(sessionmaker, "mover", WorkspaceChanges(store="c"))
    assert warning is not None and "2 registry activities of the previous store's models were removed" in warning
    assert await rows(database) == {
        "registry_requests": [NEIGHBOUR],
        "registry_comments": [NEIGHBOUR],
        "registry_activities": [NEIGHBOUR, NEIGHBOUR],
    }

    await seed(sessionmaker, 2001, MODEL)
    await service.delete(sessionmaker, "mover")
    assert await rows(database) == {
        "registry_requests": [NEIGHBOUR],
        "registry_comments": [NEIGHBOUR],
        "registry_activities": [NEIGHBOUR, NEIGHBOUR],
    }


async def test_requests_are_added_however_often_a_connection_has_prepared_the_statement(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """PostgreSQL plans a prepared statement generically after five runs: the conflict target must still match."""
    async with sessionmaker() as session, session.begin():
        repository = RegistryRepository(session)
        for n in range(12):
            assert (
                await repository.add_request(MOVED, MODEL, "1", "Staging", f"u{n}@example.com", None, None) is not None
            )
            assert await repository.add_request(MOVED, MODEL, "1", "Staging", f"u{n}@example.com", None, None) is None
