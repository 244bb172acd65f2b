"""Two replicas on one database: a change made through one is applied by the other without a reload.

Real SQL on a migrated database (the session's embedded PostgreSQL) and the real services that change the
policy (owner grants, the permissions API, Unity Catalog grants, SCIM memberships and principals). After
every change the other replica follows the stored version: it must apply the recorded changes (the
reload counter does not move) and end up with exactly the policy a fresh load gives. A version without
recorded changes, or older than the ones kept, makes it load the policy whole instead; the periodic
whole load notices a policy that applied changes got wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.audit.trail import AuditTrail
from gateway.authz import repository
from gateway.authz.decide import Authorizer
from gateway.authz.live import LivePolicy
from gateway.authz.repository import PolicyVersionRepository
from gateway.authz.schemas import AccessControlRequest, PermissionsChange
from gateway.authz.service import AccessService
from gateway.core.links import WorkspaceLink
from gateway.core.policy_changes import GrantAdded
from gateway.core.principal import Principal
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.principals.service import PrincipalService
from tests.databases import migrated_database

ADMIN = Principal(name="admin@example.com", kind="user", account_admin=True, id=None)
LINK = WorkspaceLink("team", 1001, "workspace", "a", "a", None)


async def no_views(session: AsyncSession) -> list[str]:
    return []


async def exists(link: WorkspaceLink, kind: str, name: str) -> bool:
    return True


@dataclass
class Replica:
    engine: AsyncEngine
    policy: LivePolicy
    access: AccessService
    principals: PrincipalService


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_url, "policy_replicas") as url:
        yield url


@pytest.fixture
async def replicas(database: str) -> AsyncIterator[list[Replica]]:
    made = []
    for _ in range(2):
        engine = make_engine(database, pool_size=2)
        sessionmaker = make_sessionmaker(engine)
        policy = LivePolicy(sessionmaker, views=no_views)
        audit = AuditTrail(sessionmaker)
        access = AccessService(sessionmaker, policy, Authorizer(policy), audit, exists)
        made.append(Replica(engine, policy, access, PrincipalService(sessionmaker, policy, audit)))
        await policy.reload()
    yield made
    for replica in made:
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
        fresh = LivePolicy(make_sessionmaker(engine), views=no_views)
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


async def test_a_version_without_recorded_changes_is_loaded_whole(replicas: list[Replica], database: str) -> None:
    a, b = replicas
    carol = await a.principals.create(ADMIN, "user", "carol@example.com")
    await follows_by_changes(b, database)
    await a.principals.delete(ADMIN, "user", carol.id)  # its rows go by cascade: recorded as no change
    reloads = counter("fedgate_policy_reloads_total")
    await b.policy.check(True)
    assert counter("fedgate_policy_reloads_total") == reloads + 1
    await same_as_stored(b, database)
    assert b.policy.snapshot.principal(carol.id) is None


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
