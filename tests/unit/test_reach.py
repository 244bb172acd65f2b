"""Whom a manager who is no admin may name (gateway/authz/reach.py), on a policy built by hand."""

from __future__ import annotations

from gateway.authz.levels import ACCOUNT_DOMAIN, workspace_domain
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from gateway.authz.reach import EVERYONE, for_account, for_workspace, for_workspaces
from gateway.authz.service import resolve_principal
from gateway.core.principal import Principal

A, B = workspace_domain(1001), workspace_domain(1002)
PRINCIPALS = {
    1: PrincipalInfo(1, "user", "me@example.com"),
    2: PrincipalInfo(2, "user", "mate@example.com"),  # CAN_USE on A
    3: PrincipalInfo(3, "user", "far@example.com"),  # CAN_USE on B
    4: PrincipalInfo(4, "group", "outer"),  # holds nothing; inner is in it, mate is in inner
    5: PrincipalInfo(5, "group", "inner"),
    6: PrincipalInfo(6, "group", "far-group"),  # holds nothing; far is in it
    7: PrincipalInfo(7, "service_principal", "robot"),  # SELECT somewhere in the account
    8: PrincipalInfo(8, "group", "mine"),  # holds nothing; the caller is in it
}
SNAPSHOT = PolicySnapshot(
    1,
    PRINCIPALS,
    [(5, 4), (2, 5), (3, 6), (1, 8)],
    [
        Grant(1, A, "workspace:1001", "CAN_USE"),
        Grant(2, A, "workspace:1001", "CAN_USE"),
        Grant(3, B, "workspace:1002", "CAN_USE"),
        Grant(7, ACCOUNT_DOMAIN, "schema:system.mlflow", "SELECT"),
    ],
)
ME = Principal("me@example.com", "user", id=1, subjects=frozenset({1, 8}))


def named(reach: object, names: list[str]) -> set[str]:
    return {name for name in names if resolve_principal(SNAPSHOT, name, reach) is not None}  # type: ignore[arg-type]


EVERY_NAME = [info.name for info in PRINCIPALS.values()] + ["nobody@example.com", "nobody"]


def test_a_workspaces_manager_names_its_principals_and_groups_with_a_member_there() -> None:
    reach = for_workspace(ME, A, admin=False)
    assert named(reach, EVERY_NAME) == {"me@example.com", "mate@example.com", "outer", "inner", "mine"}
    # The same principal seen from workspace B's side: only its own people there, and itself and its groups.
    assert named(for_workspace(ME, B, admin=False), EVERY_NAME) == {
        "me@example.com",
        "mine",
        "far@example.com",
        "far-group",
    }


def test_admins_name_every_principal() -> None:
    everyone = {info.name for info in PRINCIPALS.values()}
    assert named(for_workspace(ME, A, admin=True), EVERY_NAME) == everyone
    assert named(EVERYONE, EVERY_NAME) == everyone
    admin = Principal("boss@example.com", "user", account_admin=True, id=99)
    assert named(for_account(SNAPSHOT, admin), EVERY_NAME) == everyone


def test_on_the_accounts_objects_a_manager_names_the_principals_of_its_places() -> None:
    # Only workspace A: the account's domain is not one of its places while it holds nothing there.
    assert named(for_account(SNAPSHOT, ME), EVERY_NAME) == {
        "me@example.com",
        "mate@example.com",
        "outer",
        "inner",
        "mine",
    }
    # Holding a grant in the account's domain makes its holders nameable; `named` adds principals outright.
    curator = PolicySnapshot(
        2, PRINCIPALS, SNAPSHOT.memberships, [*SNAPSHOT.grants, Grant(1, ACCOUNT_DOMAIN, "catalog:gov", "MANAGE")]
    )
    reach = for_account(curator, ME, named=[3])
    found = {name for name in EVERY_NAME if resolve_principal(curator, name, reach) is not None}
    assert found == {"me@example.com", "mate@example.com", "outer", "inner", "mine", "robot", "far@example.com"}


def test_over_several_workspaces_one_sees_the_principals_of_each_and_a_listing_judges_as_a_name_does() -> None:
    # The access console's workspace admin: the principals of the workspaces it administers, a group through a
    # member at any depth included, and a listing (`judge`) tells the same as one name at a time (`sees`).
    both, only_b = for_workspaces(ME, [A, B]), for_workspaces(ME, [B])
    assert named(both, EVERY_NAME) == {"me@example.com", "mine", "mate@example.com", "outer", "inner"} | {
        "far@example.com",
        "far-group",
    }
    assert named(only_b, EVERY_NAME) == {"me@example.com", "mine", "far@example.com", "far-group"}
    for reach in (both, only_b, for_workspaces(ME, [])):
        judge = reach.judge(SNAPSHOT)
        assert [judge(info) for info in PRINCIPALS.values()] == [reach.sees(SNAPSHOT, i) for i in PRINCIPALS.values()]
    boss = Principal("boss@example.com", "user", account_admin=True, id=99)
    assert named(for_workspaces(boss, []), EVERY_NAME) == {info.name for info in PRINCIPALS.values()}
