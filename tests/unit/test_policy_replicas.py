"""Two replicas on one database: a change made through one is applied by the other without a reload.

Real SQL on a migrated database (the session's embedded PostgreSQL) and the real services that change the
policy (owner grants, the permissions API, Unity Catalog grants, SCIM memberships and principals, principal
deletion, CREATE and DROP VIEW, and the workspace move hook's renumbering, store move and unlinking). After
every change the other replica follows the stored version: it must apply the recorded changes (the
reload counter does not move) and end up with exactly the policy a fresh load gives. A version without
recorded changes, or older than the ones kept, makes it load the policy whole instead; the periodic
whole load notices a policy that applied changes got wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.audit.trail import AuditTrail
from gateway.authz import repository
from gateway.authz.decide import Authorizer
from gateway.authz.levels import ACCOUNT_DOMAIN
from gateway.authz.live import LivePolicy
from gateway.authz.moves import AuthzMoves
from gateway.authz.repository import PolicyVersionRepository
from gateway.authz.schemas import AccessControlRequest, PermissionsChange
from gateway.authz.service import AccessService
from gateway.core.config import Settings
from gateway.core.links import WorkspaceLink
from gateway.core.policy_changes import GrantAdded
from gateway.core.principal import Principal
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.pools import LazyPool
from gateway.principals.service import PrincipalService
from gateway.sql.repository import ViewRepository
from gateway.sql.runner import QueryRunner
from gateway.sql.schemas import ExecuteStatementRequest
from gateway.sql.service import SqlService

ADMIN = Principal(name="admin@example.com", kind="user", account_admin=True, id=None)
LINK = WorkspaceLink("team", 1001, "workspace", "a", "a", None)


async def views(session: AsyncSession) -> list[str]:
    return await ViewRepository(session).names()


async def exists(link: WorkspaceLink, kind: str, name: str) -> bool:
    return True


@dataclass
class Replica:
    engine: AsyncEngine
    policy: LivePolicy
    access: AccessService
    principals: PrincipalService
    sql: SqlService
    runner: QueryRunner


@pytest.fixture
async def replicas(database: str) -> AsyncIterator[list[Replica]]:
    # The workspace of LINK: a grant in a workspace is added only while the workspace is linked so.
    engine = make_engine(database, pool_size=1)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO workspace_links (name, workspace_id, mode, store, managed_by) "
                "VALUES ('team', 1001, 'workspace', 'a', 'api')"
            )
        )
    await engine.dispose()
    made = []
    for _ in range(2):
        engine = make_engine(database, pool_size=2)
        sessionmaker = make_sessionmaker(engine)
        policy = LivePolicy(sessionmaker, views=views)
        audit = AuditTrail(sessionmaker)
        access = AccessService(sessionmaker, policy, Authorizer(policy), audit, exists)
        runner = QueryRunner(LazyPool("sql", database, 2))
        sql = SqlService(Settings(), access, sessionmaker, runner, audit)
        made.append(Replica(engine, policy, access, PrincipalService(sessionmaker, policy, audit), sql, runner))
        await policy.reload()
    yield made
    for replica in made:
        await replica.runner.close()
        await replica.engine.dispose()


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def follows_by_changes(replica: Replica, database: str) -> None:
    """The replica catches up without a reload and holds what a fresh load of the database holds."""
    reloads = counter("fedgate_policy_reloads_total")
    await replica.policy.check(True)
    assert counter("fedgate_policy_reloads_total") == reloads
    await same_as_stored(replica, database)


async def same_as_stored(replica: Replica, database: str) -> None:
    engine = make_engine(database, pool_size=1)
    try:
        fresh = LivePolicy(make_sessionmaker(engine), views=views)
        stored = await fresh.reload()
    finally:
        await engine.dispose()
    assert replica.policy.snapshot.version == stored.version
    assert replica.policy.snapshot.same_policy(stored)


async def test_every_kind_of_change_reaches_the_other_replica_as_changes(
    replicas: list[Replica], database: str
) -> None:
    a, b = replicas
    alice = await a.principals.create(ADMIN, "user", "alice@example.com")
    bob = await a.principals.create(ADMIN, "user", "bob@example.com")
    team = await a.principals.create(ADMIN, "group", "team", members=[alice.id])
    leads = await a.principals.create(ADMIN, "group", "leads", members=[team.id])
    await follows_by_changes(b, database)
    assert b.policy.snapshot.subjects(alice.id) == {alice.id, team.id, leads.id}
    applied = counter("fedgate_policy_changes_applied_total")

    alice_now = Principal(name=alice.name, kind="user", id=alice.id, subjects=b.policy.snapshot.subjects(alice.id))
    await a.access.record_owner(alice_now, LINK, "experiment", "7")  # the creator's CAN_MANAGE
    await follows_by_changes(b, database)
    assert b.policy.snapshot.level(b.policy.snapshot.subjects(alice.id), "w1001", "experiment:w1001/7") == "CAN_MANAGE"

    experiment = await a.access.experiment(LINK, "7")
    await a.access.set_acl(
        ADMIN, experiment, [AccessControlRequest(group_name="leads", permission_level="CAN_READ")], replace=False
    )
    await follows_by_changes(b, database)
    assert b.policy.snapshot.level({bob.id}, "w1001", "experiment:w1001/7") is None
    await a.principals.update(ADMIN, "group", leads.id, fields={}, add_members=[bob.id])  # a membership
    await follows_by_changes(b, database)
    assert b.policy.snapshot.level(b.policy.snapshot.subjects(bob.id), "w1001", "experiment:w1001/7") == "CAN_READ"

    # Replaced: alice's owner grant and the group's go, bob gets CAN_EDIT directly.
    await a.access.set_acl(
        ADMIN,
        experiment,
        [AccessControlRequest(user_name="bob@example.com", permission_level="CAN_EDIT")],
        replace=True,
    )
    await follows_by_changes(b, database)
    assert b.policy.snapshot.level(b.policy.snapshot.subjects(alice.id), "w1001", "experiment:w1001/7") is None

    await a.access.uc_update(
        ADMIN, "catalog:system", [PermissionsChange(principal="team", add=["USE_CATALOG", "SELECT"])]
    )
    await a.access.uc_update(ADMIN, "catalog:system", [PermissionsChange(principal="team", remove=["SELECT"])])
    await a.principals.update(ADMIN, "group", team.id, fields={"active": False})  # a disabled group
    await a.principals.update(ADMIN, "group", leads.id, fields={}, replace_members=[alice.id])
    await a.principals.update(ADMIN, "user", bob.id, fields={"name": "robert@example.com"})
    await follows_by_changes(b, database)  # several versions behind: applied in one go
    snapshot = b.policy.snapshot
    assert snapshot.subjects(alice.id) == {alice.id, leads.id}
    assert snapshot.find("user", "robert@example.com") is not None and snapshot.find("user", bob.name) is None
    # Nine versions, each applied by both replicas (the one that made it too): no reload anywhere.
    assert counter("fedgate_policy_changes_applied_total") - applied == 2 * 9


async def statement(replica: Replica, text: str) -> None:
    answer = await replica.sql.execute(ADMIN, ExecuteStatementRequest(statement=text, wait_timeout="30s"))
    assert answer.status.state == "SUCCEEDED", answer


async def test_views_deletions_and_workspace_moves_reach_the_other_replica_as_changes(
    replicas: list[Replica], database: str
) -> None:
    a, b = replicas
    alice = await a.principals.create(ADMIN, "user", "alice@example.com")
    robot = await a.principals.create(ADMIN, "service_principal", "")
    team = await a.principals.create(ADMIN, "group", "team", members=[alice.id, robot.id])
    await a.principals.create(ADMIN, "group", "leads", members=[team.id])
    experiment = await a.access.experiment(LINK, "7")
    await a.access.set_acl(
        ADMIN,
        experiment,
        [
            AccessControlRequest(user_name="alice@example.com", permission_level="CAN_MANAGE"),
            AccessControlRequest(group_name="team", permission_level="CAN_READ"),
            AccessControlRequest(service_principal_name=robot.name, permission_level="CAN_EDIT"),
        ],
        replace=False,
    )
    await a.access.set_acl(
        ADMIN,
        a.access.workspace(LINK),
        [AccessControlRequest(group_name="team", permission_level="CAN_USE")],
        replace=False,
    )
    await a.access.uc_update(ADMIN, "catalog:system", [PermissionsChange(principal="team", add=["USE_CATALOG"])])
    await follows_by_changes(b, database)

    # Views: two in one schema, one in a catalog of its own; grants on one; each dropped in turn.
    for name in ("gov.mlflow.v1", "gov.mlflow.v2", "lab.x.y"):
        await statement(a, f"CREATE VIEW {name} AS SELECT run_id FROM system.mlflow.runs_latest")
        await follows_by_changes(b, database)
    await statement(a, "CREATE OR REPLACE VIEW gov.mlflow.v1 AS SELECT experiment_id FROM system.mlflow.runs_latest")
    await follows_by_changes(b, database)
    assert {"table:gov.mlflow.v1", "schema:gov.mlflow", "catalog:lab"} <= set(b.policy.snapshot.securables)
    await a.access.uc_update(ADMIN, "table:gov.mlflow.v1", [PermissionsChange(principal="team", add=["SELECT"])])
    await statement(a, "DROP VIEW gov.mlflow.v1")  # its grant goes with it; the schema stays (v2)
    await follows_by_changes(b, database)
    assert "table:gov.mlflow.v1" not in b.policy.snapshot.securables
    assert "schema:gov.mlflow" in b.policy.snapshot.securables
    assert not b.policy.snapshot.grants_on(ACCOUNT_DOMAIN, "table:gov.mlflow.v1")
    await statement(a, "DROP VIEW gov.mlflow.v2")  # the schema and the catalog go too
    await statement(a, "DROP VIEW IF EXISTS gov.mlflow.v2")  # nothing: no version
    await follows_by_changes(b, database)
    assert not any(s.endswith(("gov", "gov.mlflow")) for s in b.policy.snapshot.securables)

    # Principals deleted: a user holding a grant and in a group, a service principal, a group with members
    # and grants that is itself in a group.
    for kind, principal_id in (("user", alice.id), ("service_principal", robot.id), ("group", team.id)):
        await a.principals.delete(ADMIN, kind, principal_id)
        await follows_by_changes(b, database)
        assert b.policy.snapshot.principal(principal_id) is None
    assert not b.policy.snapshot.grants_on("w1001", "experiment:w1001/7")

    # The workspace move hook, as the workspace service calls it (one transaction each, then this replica
    # follows before answering): another id, another store, unlinked.
    carol = await a.principals.create(ADMIN, "user", "carol@example.com")
    for obj, level in (("workspace:w1001", "CAN_USE"), ("experiment:w1001/7", "CAN_EDIT")):
        target = a.access.workspace(LINK) if obj.startswith("workspace") else experiment
        await a.access.set_acl(
            ADMIN, target, [AccessControlRequest(user_name=carol.name, permission_level=level)], replace=False
        )
    moves = AuthzMoves(a.policy)

    async def move(step: Callable[[AsyncSession], Awaitable[object]]) -> None:
        async with a.policy._sessionmaker() as session, session.begin():
            await step(session)
        await a.policy.reload()
        await follows_by_changes(b, database)

    await move(lambda session: moves.renumbered(session, 1001, 2001))
    held = b.policy.snapshot
    assert held.level({carol.id}, "w2001", "experiment:w2001/7") == "CAN_EDIT"
    assert held.level({carol.id}, "w2001", "workspace:w2001") == "CAN_USE" and not held.holds_in({carol.id}, "w1001")
    await move(lambda session: moves.store_moved(session, 2001))  # the old store's experiments are gone
    held = b.policy.snapshot
    assert held.grants_on("w2001", "experiment:w2001/7") == {}
    assert held.level({carol.id}, "w2001", "workspace:w2001") == "CAN_USE"
    await move(lambda session: moves.unlinked(session, 2001))
    assert not b.policy.snapshot.holds_in({carol.id}, "w2001")


async def test_a_version_without_recorded_changes_is_loaded_whole(replicas: list[Replica], database: str) -> None:
    a, b = replicas
    carol = await a.principals.create(ADMIN, "user", "carol@example.com")
    await follows_by_changes(b, database)
    async with a.policy._sessionmaker() as session, session.begin():  # a change made by hand, unrecorded
        await session.execute(text("DELETE FROM principals WHERE id = :id"), {"id": carol.id})
        await PolicyVersionRepository(session).bump()
    reloads = counter("fedgate_policy_reloads_total")
    await b.policy.check(True)
    assert counter("fedgate_policy_reloads_total") == reloads + 1
    await same_as_stored(b, database)
    assert b.policy.snapshot.principal(carol.id) is None


async def test_a_change_of_a_kind_this_release_does_not_know_is_loaded_whole(
    replicas: list[Replica], database: str
) -> None:
    """A newer release may record kinds of change an older replica cannot read (a rolling upgrade)."""
    a, b = replicas
    dave = await a.principals.create(ADMIN, "user", "dave@example.com")
    await follows_by_changes(b, database)
    async with a.policy._sessionmaker() as session, session.begin():
        await session.execute(text("DELETE FROM principals WHERE id = :id"), {"id": dave.id})
        version = await PolicyVersionRepository(session).bump([])
        await session.execute(
            text("UPDATE policy_changes SET changes = CAST(:changes AS jsonb) WHERE version = :version"),
            {"changes": f'[["something-new", {dave.id}]]', "version": version},
        )
    reloads = counter("fedgate_policy_reloads_total")
    await b.policy.check(True)
    assert counter("fedgate_policy_reloads_total") == reloads + 1
    await same_as_stored(b, database)
    assert b.policy.snapshot.principal(dave.id) is None


async def test_a_replica_behind_the_changes_kept_loads_whole(
    replicas: list[Replica], database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    monkeypatch.setattr(repository, "KEEP_CHANGES", 2)
    for name in ("d1@example.com", "d2@example.com", "d3@example.com"):
        await a.principals.create(ADMIN, "user", name)
    reloads = counter("fedgate_policy_reloads_total")
    await b.policy.check(True)
    assert counter("fedgate_policy_reloads_total") == reloads + 1
    await same_as_stored(b, database)


async def test_changes_of_more_rows_than_applied_at_once_are_loaded_whole(
    replicas: list[Replica], database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change too large to apply in one go without holding up requests longer than a whole load would."""
    a, b = replicas
    monkeypatch.setattr(repository, "MAX_RECORDED", 2)
    users = [await a.principals.create(ADMIN, "user", f"m{i}@example.com") for i in range(3)]
    reloads = counter("fedgate_policy_reloads_total")
    await b.policy.check(True)  # three versions of one row each: three rows to apply at once
    assert counter("fedgate_policy_reloads_total") == reloads + 1
    await same_as_stored(b, database)

    experiment = await a.access.experiment(LINK, "9")
    wanted = [AccessControlRequest(user_name=user.name, permission_level="CAN_READ") for user in users]
    await a.access.set_acl(ADMIN, experiment, wanted, replace=False)  # three rows: recorded as none
    async with a.policy._sessionmaker() as session:
        stored = await PolicyVersionRepository(session).changes_since(b.policy.snapshot.version)
    assert stored == []
    reloads = counter("fedgate_policy_reloads_total")
    await b.policy.check(True)
    assert counter("fedgate_policy_reloads_total") == reloads + 1
    await same_as_stored(b, database)
    assert b.policy.snapshot.level({users[2].id}, "w1001", "experiment:w1001/9") == "CAN_READ"


async def test_the_periodic_whole_load_notices_a_policy_that_went_astray(
    replicas: list[Replica], database: str
) -> None:
    a, b = replicas
    erin = await a.principals.create(ADMIN, "user", "erin@example.com")
    await follows_by_changes(b, database)
    policy = b.policy
    # A fault: this replica holds a grant the database does not.
    policy.snapshot = policy.snapshot.apply(
        policy.snapshot.version, [GrantAdded(erin.id, "w1001", "workspace:w1001", "CAN_MANAGE")]
    )
    drift = counter("fedgate_policy_drift_total")
    policy._rebuild_seconds = 0  # the safety net is due
    await policy.check(False)
    assert counter("fedgate_policy_drift_total") == drift + 1
    await same_as_stored(b, database)
    assert not policy.snapshot.holds_in({erin.id}, "w1001")


async def test_a_bump_without_changes_from_another_writer_is_loaded_whole(
    replicas: list[Replica], database: str
) -> None:
    a, b = replicas
    async with a.policy._sessionmaker() as session, session.begin():
        await PolicyVersionRepository(session).bump([])  # recorded: nothing changed (a token revoked)
    await follows_by_changes(b, database)
    async with a.policy._sessionmaker() as session, session.begin():
        await PolicyVersionRepository(session).bump()  # not recorded
    reloads = counter("fedgate_policy_reloads_total")
    await b.policy.check(True)
    assert counter("fedgate_policy_reloads_total") == reloads + 1
