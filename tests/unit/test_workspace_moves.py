"""A workspace moved to another store or id, or unlinked: each package's hook carries or drops its own rows,
in one transaction.

Real SQL on a migrated database (the session's embedded PostgreSQL); the stores are fakes of the `Store`
port that never answer, and record whether a database connection was checked out while they were asked.
Another replica's policy follows each move by the grant rows it recorded, without loading the policy whole,
and ends up with what a whole load gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.authz.live import LivePolicy
from gateway.authz.moves import AuthzMoves
from gateway.core.config import load_settings
from gateway.core.errors import InvalidState
from gateway.core.links import LinkTable
from gateway.core.ports import StoreResponse, StoreUnreachable
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.dual.moves import DualMoves
from gateway.index.moves import IndexMoves
from gateway.secrets.moves import SecretMoves
from gateway.sql.repository import ViewRepository
from gateway.workspaces.schemas import WorkspaceChanges, WorkspaceCreate
from gateway.workspaces.service import WorkspaceService

CONFIG = """
[account]
id = "7001"
[stores.a]
url = "http://127.0.0.1:1"
[stores.b]
url = "http://127.0.0.1:2"
[stores.c]
url = "http://127.0.0.1:3"
[stores.central]
url = "http://127.0.0.1:4"
[central]
store = "central"
"""
MOVED, NEIGHBOUR = 1001, 1002


class UnreachableStore:
    """Answers nothing; notes how many database connections were checked out at each call."""

    workspaces_enabled = False

    def __init__(self, name: str, engine: AsyncEngine) -> None:
        self.name = name
        self.engine = engine
        self.checked_out: list[int] = []

    async def request(self, method: str, path: str, **_: Any) -> StoreResponse:
        self.checked_out.append(self.engine.pool.checkedout())  # type: ignore[attr-defined]
        raise StoreUnreachable(path)

    async def close(self) -> None:
        return None


@pytest.fixture
def stores(engine: AsyncEngine) -> dict[str, UnreachableStore]:
    return {name: UnreachableStore(name, engine) for name in ("a", "b", "c", "central")}


@pytest.fixture
async def service(tmp_path: Path, engine: AsyncEngine, stores: dict[str, UnreachableStore]) -> WorkspaceService:
    path = tmp_path / "fedgate.toml"
    path.write_text(CONFIG)
    sessionmaker = make_sessionmaker(engine)
    policy = LivePolicy(sessionmaker, views=lambda session: ViewRepository(session).names())
    hooks = (DualMoves(), IndexMoves(), AuthzMoves(policy), SecretMoves())
    service = WorkspaceService(load_settings(path, environ={}), stores, LinkTable(), hooks)
    await service.create(sessionmaker, WorkspaceCreate(name="mover", store="a", workspace_id=str(MOVED)))
    await service.create(sessionmaker, WorkspaceCreate(name="neighbour", store="b", workspace_id=str(NEIGHBOUR)))
    return service


@pytest.fixture
async def follower(database: str) -> AsyncIterator[LivePolicy]:
    """Another replica's policy, loaded whole once the rows are seeded (`_seed` writes them by hand)."""
    engine = make_engine(database, pool_size=1)
    yield LivePolicy(make_sessionmaker(engine), views=lambda session: ViewRepository(session).names())
    await engine.dispose()


async def _follows_by_changes(follower: LivePolicy, database: str) -> None:
    reloads = REGISTRY.get_sample_value("fedgate_policy_reloads_total")
    await follower.check(True)
    assert REGISTRY.get_sample_value("fedgate_policy_reloads_total") == reloads
    engine = make_engine(database, pool_size=1)
    try:
        stored = await LivePolicy(make_sessionmaker(engine), views=lambda s: ViewRepository(s).names()).rebuild()
    finally:
        await engine.dispose()
    assert follower.snapshot.version == stored.version
    assert follower.snapshot.same_policy(stored)


async def _seed(url: str, workspace_id: int, run_key: int) -> None:
    """One row of every table a workspace's id keys, in each package."""
    conn = await asyncpg.connect(url)
    try:
        for state in ("pending", "dead", "done"):
            await conn.execute(
                "INSERT INTO outbox (workspace_id, order_key, route, payload, state) VALUES ($1, $2, 'r', '{}', $3)",
                workspace_id,
                f"{workspace_id}/run:{state}",
                state,
            )
        await conn.execute(
            "INSERT INTO id_map (workspace_id, kind, primary_id, central_id) VALUES ($1, 'run', 'p', 'c')", workspace_id
        )
        await conn.execute(
            "INSERT INTO reconcile_state (workspace_id, scope, state, started_at, updated_at) "
            "VALUES ($1, 'all', 'done', now(), now())",
            workspace_id,
        )
        await conn.execute(
            "INSERT INTO ix_experiments (workspace_id, experiment_id, name) VALUES ($1, '1', 'e')", workspace_id
        )
        await conn.execute(
            "INSERT INTO ix_runs (run_key, run_id, workspace_id, experiment_id) VALUES ($1, $2, $3, '1')",
            run_key,
            f"run-{workspace_id}",
            workspace_id,
        )
        await conn.execute(
            "INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values) "
            "VALUES ($1, 'loss', '{0}', ARRAY[now()], '{1.0}')",
            run_key,
        )
        await conn.execute(
            "INSERT INTO ix_metric_latest (run_key, metric_name, latest_value, latest_step, latest_time, min_value, "
            "max_value, has_nan, points) VALUES ($1, 'loss', 1, 0, now(), 1, 1, false, 1)",
            run_key,
        )
        await conn.execute(
            "INSERT INTO ix_dirty_runs (run_id, workspace_id) VALUES ($1, $2)", f"run-{workspace_id}", workspace_id
        )
        await conn.execute("INSERT INTO ix_sync_state (workspace_id, state) VALUES ($1, 'done')", workspace_id)
        principal = await conn.fetchval(
            "INSERT INTO principals (kind, name) VALUES ('user', $1) RETURNING id", f"user{workspace_id}@example.com"
        )
        domain = f"w{workspace_id}"
        for obj, level in (
            (f"workspace:{domain}", "CAN_READ"),
            (f"experiment:{domain}/1", "CAN_MANAGE"),
            (f"registered_model:{domain}/m{workspace_id}", "CAN_MANAGE"),
        ):
            await conn.execute(
                "INSERT INTO grants (principal_id, domain, object, privilege) VALUES ($1, $2, $3, $4)",
                principal,
                domain,
                obj,
                level,
            )
        await conn.execute(
            "INSERT INTO registered_models (id, workspace_id, name) VALUES ($1, $2, 'model')",
            f"m{workspace_id}",
            workspace_id,
        )
        await conn.execute(
            "INSERT INTO secret_scopes (workspace_id, name, vault, location) VALUES ($1, 'db', 'elsewhere', $2)",
            workspace_id,
            f"w{workspace_id}/db",
        )
        await conn.execute(
            "INSERT INTO run_secret_reads (workspace_id, run_id, scope, key) VALUES ($1, $2, 'db', 'password')",
            workspace_id,
            f"run-{workspace_id}",
        )
    finally:
        await conn.close()


TABLES = (
    "outbox",
    "id_map",
    "reconcile_state",
    "ix_experiments",
    "ix_runs",
    "ix_dirty_runs",
    "ix_sync_state",
    "registered_models",
    "secret_scopes",
    "run_secret_reads",
)
# Kept when the workspace moves to another store: secret scopes, and the secrets its runs read (a store
# moved to another server usually holds the same runs under the same ids).
STORE_INDEPENDENT = ("secret_scopes", "run_secret_reads")


async def _rows(url: str) -> dict[str, Any]:
    """Per table, the workspace ids of its rows (metric tables: their run keys); the outbox's states and keys."""
    conn = await asyncpg.connect(url)
    try:
        found: dict[str, Any] = {}
        for table in TABLES:
            found[table] = sorted(r[0] for r in await conn.fetch(f"SELECT workspace_id FROM {table}"))
        for table in ("ix_metrics", "ix_metric_latest"):
            found[table] = sorted(r[0] for r in await conn.fetch(f"SELECT run_key FROM {table}"))
        found["grants"] = sorted(
            (r[0], r[1], r[2]) for r in await conn.fetch("SELECT domain, object, privilege FROM grants")
        )
        found["outbox entries"] = sorted(
            (r[0], r[1], r[2]) for r in await conn.fetch("SELECT workspace_id, order_key, state FROM outbox")
        )
        return found
    finally:
        await conn.close()


def _no_connection_while_asked(stores: dict[str, UnreachableStore]) -> Sequence[int]:
    return [count for store in stores.values() for count in store.checked_out if count]


async def test_a_new_id_carries_every_row_over_and_rekeys_the_outbox(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession], database: str, follower: LivePolicy
) -> None:
    await _seed(database, MOVED, 1)
    await _seed(database, NEIGHBOUR, 2)
    await follower.rebuild()

    workspace, warning = await service.update(sessionmaker, "mover", WorkspaceChanges(workspace_id="2001"))

    assert (workspace.workspace_id, warning) == ("2001", None)
    rows = await _rows(database)
    for table in TABLES:
        assert set(rows[table]) == {2001, NEIGHBOUR}, table
    assert (rows["ix_metrics"], rows["ix_metric_latest"]) == ([1, 2], [1, 2])
    # Grants follow the workspace: domain and object names, nothing left under the old id.
    assert [grant for grant in rows["grants"] if grant[0] != f"w{NEIGHBOUR}"] == [
        ("w2001", "experiment:w2001/1", "CAN_MANAGE"),
        ("w2001", f"registered_model:w2001/m{MOVED}", "CAN_MANAGE"),
        ("w2001", "workspace:w2001", "CAN_READ"),
    ]
    assert [entry for entry in rows["outbox entries"] if entry[0] == 2001] == [
        (2001, "2001/run:dead", "dead"),
        (2001, "2001/run:done", "done"),
        (2001, "2001/run:pending", "pending"),
    ]
    await _follows_by_changes(follower, database)
    assert follower.snapshot.grants_on("w2001", "experiment:w2001/1")


async def test_another_store_waits_for_pending_entries_then_drops_what_the_old_store_gave(
    service: WorkspaceService,
    sessionmaker: async_sessionmaker[AsyncSession],
    database: str,
    stores: dict[str, UnreachableStore],
    follower: LivePolicy,
) -> None:
    await _seed(database, MOVED, 1)
    await _seed(database, NEIGHBOUR, 2)
    await follower.rebuild()
    before = await _rows(database)

    with pytest.raises(InvalidState, match="1 dual-mode entries still pending"):
        await service.update(sessionmaker, "mover", WorkspaceChanges(store="c"))
    assert await _rows(database) == before
    assert stores["c"].checked_out == []  # refused before the store was asked

    conn = await asyncpg.connect(database)
    await conn.execute("UPDATE outbox SET state = 'done' WHERE state = 'pending'")
    await conn.close()
    workspace, warning = await service.update(sessionmaker, "mover", WorkspaceChanges(store="c"))

    assert workspace.store == "c"
    assert warning is not None and warning.endswith(
        "1 dead letters of the previous store were discarded. "
        "2 grants on experiments and registered models of the previous store were removed."
    )
    assert "unreachable" in warning
    rows = await _rows(database)
    for table in TABLES:
        if table in STORE_INDEPENDENT:
            assert rows[table] == [MOVED, NEIGHBOUR], table
        elif table != "outbox":
            assert rows[table] == [NEIGHBOUR], table
    assert (rows["ix_metrics"], rows["ix_metric_latest"]) == ([2], [2])
    # Experiment 1 of the new store is another experiment: grants on the old store's objects go, the
    # workspace's own grant stays.
    assert [grant for grant in rows["grants"] if grant[0] == f"w{MOVED}"] == [
        (f"w{MOVED}", f"workspace:w{MOVED}", "CAN_READ")
    ]
    # Done entries stay (history); the dead letter could only have been retried against the old store.
    assert [entry for entry in rows["outbox entries"] if entry[0] == MOVED] == [
        (MOVED, f"{MOVED}/run:done", "done"),
        (MOVED, f"{MOVED}/run:pending", "done"),
    ]
    assert stores["c"].checked_out and not _no_connection_while_asked(stores)
    await _follows_by_changes(follower, database)
    assert not follower.snapshot.grants_on(f"w{MOVED}", f"experiment:w{MOVED}/1")


async def test_no_connection_is_held_while_a_store_is_asked(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession], stores: dict[str, UnreachableStore]
) -> None:
    await service.create(sessionmaker, WorkspaceCreate(name="third", store="c"))
    await service.update(sessionmaker, "third", WorkspaceChanges(mode="dual"))
    assert stores["c"].checked_out and stores["a"].checked_out  # the fixture's links were asked too
    assert not _no_connection_while_asked(stores)


async def test_unlinking_drops_every_row_so_a_later_workspace_under_the_same_id_inherits_nothing(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession], database: str, follower: LivePolicy
) -> None:
    await _seed(database, MOVED, 1)
    await _seed(database, NEIGHBOUR, 2)
    await follower.rebuild()
    before = await _rows(database)

    with pytest.raises(InvalidState, match="1 dual-mode entries still pending"):
        await service.delete(sessionmaker, "mover")
    assert await _rows(database) == before
    version = await _policy_version(database)

    conn = await asyncpg.connect(database)
    await conn.execute("UPDATE outbox SET state = 'done' WHERE state = 'pending'")
    await conn.close()
    await service.delete(sessionmaker, "mover")

    rows = await _rows(database)
    for table in TABLES:
        assert set(rows[table]) == {NEIGHBOUR}, table
    assert (rows["ix_metrics"], rows["ix_metric_latest"]) == ([2], [2])
    assert {grant[0] for grant in rows["grants"]} == {f"w{NEIGHBOUR}"}
    assert await _policy_version(database) == version + 1  # with the grants removed, which replicas apply
    await _follows_by_changes(follower, database)
    assert not follower.snapshot.holds_in(set(follower.snapshot.principals), f"w{MOVED}")

    # A workspace linked later under the freed id starts with nothing of the old one.
    workspace, _ = await service.create(
        sessionmaker, WorkspaceCreate(name="newcomer", store="c", workspace_id=str(MOVED))
    )
    assert workspace.workspace_id == str(MOVED)
    assert {grant[0] for grant in (await _rows(database))["grants"]} == {f"w{NEIGHBOUR}"}


async def _policy_version(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT version FROM policy_version WHERE id = 1"))
    finally:
        await conn.close()
