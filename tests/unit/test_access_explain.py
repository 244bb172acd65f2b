"""Explanations of a principal's privileges: direct, through a group, through nested groups, inherited.

The explanation reads the enforcer's own snapshot; the property test holds what it explains to exactly
what the snapshot decides with (`held`), for random policies with nested groups and disabled principals.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.authz.explain import Explainer
from gateway.authz.levels import ACCOUNT_DOMAIN, LEVEL_ORDER, Privilege
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from gateway.principals.groups import MAX_GROUP_DEPTH

ANN, BOB, ANALYSTS, ML, EVERYONE = 1, 2, 10, 11, 12
EXPERIMENT = "experiment:w1001/5"
WORKSPACE = "workspace:w1001"


def policy(
    grants: list[Grant], memberships: list[tuple[int, int]], inactive: frozenset[int] = frozenset()
) -> PolicySnapshot:
    principals = {
        ANN: PrincipalInfo(ANN, "user", "ann@x.com"),
        BOB: PrincipalInfo(BOB, "user", "bob@x.com"),
        ANALYSTS: PrincipalInfo(ANALYSTS, "group", "analysts", active=ANALYSTS not in inactive),
        ML: PrincipalInfo(ML, "group", "ml", active=ML not in inactive),
        EVERYONE: PrincipalInfo(EVERYONE, "group", "everyone", active=EVERYONE not in inactive),
    }
    return PolicySnapshot(1, principals, memberships, grants)


def test_a_direct_grant_is_the_principals_own_on_the_object() -> None:
    snapshot = policy([Grant(ANN, "w1001", EXPERIMENT, "CAN_EDIT")], [])
    [source] = Explainer(snapshot, ANN).sources("w1001", EXPERIMENT)
    assert (source.origin, source.privilege, source.holder, source.chain) == ("direct", "CAN_EDIT", ANN, ())
    assert source.grant == Grant(ANN, "w1001", EXPERIMENT, "CAN_EDIT")
    assert Explainer(snapshot, BOB).sources("w1001", EXPERIMENT) == []


def test_a_groups_grant_names_the_group() -> None:
    snapshot = policy([Grant(ANALYSTS, "w1001", EXPERIMENT, "CAN_READ")], [(ANN, ANALYSTS)])
    [source] = Explainer(snapshot, ANN).sources("w1001", EXPERIMENT)
    assert (source.origin, source.holder, source.chain) == ("group", ANALYSTS, (ANALYSTS,))
    assert source.grant.principal_id == ANALYSTS  # revoking it is revoking the group's grant


def test_a_nested_groups_grant_names_every_group_on_the_way() -> None:
    # ann is in analysts, analysts is in ml, ml holds the grant.
    snapshot = policy([Grant(ML, "w1001", EXPERIMENT, "CAN_READ")], [(ANN, ANALYSTS), (ANALYSTS, ML)])
    [source] = Explainer(snapshot, ANN).sources("w1001", EXPERIMENT)
    assert (source.origin, source.holder, source.chain) == ("group", ML, (ANALYSTS, ML))


def test_the_shortest_chain_is_named_when_there_are_several() -> None:
    memberships = [(ANN, ANALYSTS), (ANALYSTS, ML), (ML, EVERYONE), (ANN, EVERYONE)]
    snapshot = policy([Grant(EVERYONE, "w1001", EXPERIMENT, "CAN_READ")], memberships)
    [source] = Explainer(snapshot, ANN).sources("w1001", EXPERIMENT)
    assert source.chain == (EVERYONE,)


def test_a_workspace_grant_is_inherited_by_everything_in_the_workspace() -> None:
    snapshot = policy(
        [Grant(ANN, "w1001", EXPERIMENT, "CAN_READ"), Grant(ANALYSTS, "w1001", WORKSPACE, "CAN_EDIT")],
        [(ANN, ANALYSTS)],
    )
    own, inherited = Explainer(snapshot, ANN).sources("w1001", EXPERIMENT)
    assert (own.origin, own.privilege, own.inherited_from) == ("direct", "CAN_READ", None)
    assert (inherited.origin, inherited.privilege, inherited.inherited_from) == ("inherited", "CAN_EDIT", WORKSPACE)
    assert inherited.chain == (ANALYSTS,) and inherited.grant == Grant(ANALYSTS, "w1001", WORKSPACE, "CAN_EDIT")
    # On the workspace itself the same grant is no longer inherited: it is the group's, on that object.
    [on_workspace] = Explainer(snapshot, ANN).sources("w1001", WORKSPACE)
    assert on_workspace.origin == "group"


def test_unity_catalog_grants_are_inherited_from_catalog_and_schema() -> None:
    table = "table:system.mlflow.runs_latest"
    snapshot = policy(
        [
            Grant(ANALYSTS, ACCOUNT_DOMAIN, "catalog:system", "USE_CATALOG"),
            Grant(ANN, ACCOUNT_DOMAIN, "schema:system.mlflow", "USE_SCHEMA"),
            Grant(ANN, ACCOUNT_DOMAIN, table, "SELECT"),
        ],
        [(ANN, ANALYSTS)],
    )
    sources = Explainer(snapshot, ANN).sources(ACCOUNT_DOMAIN, table)
    assert [(s.privilege, s.origin, s.inherited_from, s.chain) for s in sources] == [
        ("SELECT", "direct", None, ()),
        ("USE_SCHEMA", "inherited", "schema:system.mlflow", ()),
        ("USE_CATALOG", "inherited", "catalog:system", (ANALYSTS,)),
    ]


def test_a_disabled_group_gives_nothing_and_is_not_named() -> None:
    snapshot = policy(
        [Grant(ML, "w1001", EXPERIMENT, "CAN_READ")], [(ANN, ANALYSTS), (ANALYSTS, ML)], inactive=frozenset({ANALYSTS})
    )
    assert Explainer(snapshot, ANN).sources("w1001", EXPERIMENT) == []
    assert snapshot.held(snapshot.subjects(ANN), "w1001", EXPERIMENT) == set()


def test_grants_in_another_workspace_never_explain_this_one() -> None:
    snapshot = policy([Grant(ANN, "w1002", "workspace:w1002", "CAN_MANAGE")], [])
    assert Explainer(snapshot, ANN).sources("w1001", EXPERIMENT) == []


def test_the_objects_a_principal_holds_grants_on_include_its_groups() -> None:
    snapshot = policy(
        [
            Grant(ANN, "w1001", EXPERIMENT, "CAN_READ"),
            Grant(ML, "w1001", "registered_model:w1001/m1", "CAN_MANAGE"),
            Grant(ML, "w1001", "secret_scope:w1001/keys", "READ"),
            Grant(BOB, "w1001", "experiment:w1001/6", "CAN_READ"),
        ],
        [(ANN, ANALYSTS), (ANALYSTS, ML)],
    )
    explainer = Explainer(snapshot, ANN)
    assert explainer.objects("w1001", ["CAN_USE"]) == {EXPERIMENT, "registered_model:w1001/m1"}
    assert explainer.objects("w1001", ["READ", "WRITE", "MANAGE"], "secret_scope:") == {"secret_scope:w1001/keys"}


def test_a_chain_as_deep_as_the_enforcer_follows_is_explained() -> None:
    groups = list(range(100, 100 + MAX_GROUP_DEPTH))
    principals = {ANN: PrincipalInfo(ANN, "user", "ann@x.com")} | {
        g: PrincipalInfo(g, "group", f"g{g}") for g in groups
    }
    memberships = [(ANN, groups[0]), *itertools.pairwise(groups)]
    snapshot = PolicySnapshot(1, principals, memberships, [Grant(groups[-1], "w1001", EXPERIMENT, "CAN_READ")])
    [source] = Explainer(snapshot, ANN).sources("w1001", EXPERIMENT)
    assert source.chain == tuple(groups)


# -- the explanation and the enforcer agree -------------------------------------------------------------------

PRINCIPALS = range(1, 9)
OBJECTS = {
    "w1001": ["workspace:w1001", "experiment:w1001/1", "registered_model:w1001/m1", "secret_scope:w1001/s"],
    "w1002": ["workspace:w1002", "experiment:w1002/1"],
    ACCOUNT_DOMAIN: ["catalog:system", "schema:system.mlflow", "table:system.mlflow.runs_latest"],
}
PRIVILEGES = [level.value for level in LEVEL_ORDER] + [p.value for p in Privilege] + ["READ", "WRITE"]


@st.composite
def grants(draw: st.DrawFn) -> Grant:
    domain = draw(st.sampled_from(sorted(OBJECTS)))
    return Grant(
        draw(st.sampled_from(PRINCIPALS)),
        domain,
        draw(st.sampled_from(OBJECTS[domain])),
        draw(st.sampled_from(PRIVILEGES)),
    )


memberships = st.lists(
    st.tuples(st.sampled_from(PRINCIPALS), st.sampled_from(PRINCIPALS)).filter(lambda m: m[0] < m[1]), max_size=14
)


@settings(max_examples=300, deadline=None)
@given(st.lists(grants(), max_size=40), memberships, st.sets(st.sampled_from(PRINCIPALS), max_size=3))
def test_the_explanation_lists_exactly_what_the_enforcer_holds(
    grant_rows: list[Grant], member_rows: list[tuple[int, int]], inactive: set[int]
) -> None:
    principals = {
        i: PrincipalInfo(i, "user" if i < 4 else "group", f"p{i}", active=i not in inactive) for i in PRINCIPALS
    }
    snapshot = PolicySnapshot(1, principals, member_rows, grant_rows)
    stored = set(grant_rows)
    for principal in PRINCIPALS:
        explainer = Explainer(snapshot, principal)
        subjects = snapshot.subjects(principal)
        for domain, objects in OBJECTS.items():
            for obj in objects:
                sources = explainer.sources(domain, obj)
                assert {s.privilege for s in sources} == snapshot.held(subjects, domain, obj)
                for source in sources:
                    assert source.grant in stored  # a real row: revoking it changes something
                    # The chain is a path of memberships from the principal to the holder.
                    steps = (principal, *source.chain)
                    assert all(up in snapshot.direct_groups(down) for down, up in itertools.pairwise(steps))
                    assert (source.chain[-1] if source.chain else principal) == source.holder
