"""The compiled index and the Casbin model decide every request the same way (property tests)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.authz.levels import ACCOUNT_DOMAIN, LEVEL_ORDER, Privilege
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from tests.support.casbin_bridge import build_enforcer, casbin_allows

PRINCIPALS = range(1, 9)
DOMAINS = ("w1001", "w1002", ACCOUNT_DOMAIN)
WORKSPACE_OBJECTS = {
    domain: [f"workspace:{domain}", f"experiment:{domain}/1", f"experiment:{domain}/2", f"registered_model:{domain}/m1"]
    for domain in ("w1001", "w1002")
}
UC_OBJECTS = [
    "catalog:system",
    "schema:system.mlflow",
    "table:system.mlflow.runs_latest",
    "table:system.mlflow.experiments_latest",
    "catalog:gov",
    "schema:gov.mlflow",
    "table:gov.mlflow.team_a_runs",
]
LEVELS = [level.value for level in LEVEL_ORDER]
UC = [privilege.value for privilege in Privilege]


@st.composite
def grants(draw: st.DrawFn) -> Grant:
    domain = draw(st.sampled_from(DOMAINS))
    if domain == ACCOUNT_DOMAIN:
        return Grant(
            draw(st.sampled_from(PRINCIPALS)), domain, draw(st.sampled_from(UC_OBJECTS)), draw(st.sampled_from(UC))
        )
    obj = draw(st.sampled_from(WORKSPACE_OBJECTS[domain]))
    return Grant(draw(st.sampled_from(PRINCIPALS)), domain, obj, draw(st.sampled_from(LEVELS)))


# Memberships only point from a lower id to a higher one: nested, but never a cycle (cycles are refused on write).
memberships = st.lists(
    st.tuples(st.sampled_from(PRINCIPALS), st.sampled_from(PRINCIPALS)).filter(lambda m: m[0] < m[1]), max_size=12
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, str, str, str]:
    domain = draw(st.sampled_from(DOMAINS))
    if domain == ACCOUNT_DOMAIN:
        return draw(st.sampled_from(PRINCIPALS)), domain, draw(st.sampled_from(UC_OBJECTS)), draw(st.sampled_from(UC))
    # Objects of the other workspace too: a grant must never leak across domains.
    obj = draw(st.sampled_from([o for objs in WORKSPACE_OBJECTS.values() for o in objs]))
    return draw(st.sampled_from(PRINCIPALS)), domain, obj, draw(st.sampled_from(LEVELS))


def snapshot(grant_rows: list[Grant], member_rows: list[tuple[int, int]]) -> PolicySnapshot:
    principals = {i: PrincipalInfo(i, "user" if i < 5 else "group", f"p{i}") for i in PRINCIPALS}
    return PolicySnapshot(1, principals, member_rows, grant_rows, securables=UC_OBJECTS)


@settings(max_examples=300, deadline=None)
@given(st.lists(grants(), max_size=40), memberships, st.lists(requests(), min_size=1, max_size=30))
def test_index_and_casbin_agree(
    grant_rows: list[Grant], member_rows: list[tuple[int, int]], asked: list[tuple[int, str, str, str]]
) -> None:
    policy = snapshot(grant_rows, member_rows)
    enforcer = build_enforcer(policy)
    for principal, domain, obj, wanted in asked:
        fast = policy.allows(policy.subjects(principal), domain, obj, wanted)
        assert fast == casbin_allows(enforcer, principal, domain, obj, wanted), (principal, domain, obj, wanted)


def test_nested_groups_deeper_than_casbins_default_still_resolve() -> None:
    chain = [(i, i + 1) for i in range(1, 20)]  # 19 levels of nesting
    principals = {i: PrincipalInfo(i, "group", f"g{i}") for i in range(1, 21)}
    policy = PolicySnapshot(1, principals, chain, [Grant(20, "w1001", "experiment:w1001/1", "CAN_READ")])
    assert policy.allows(policy.subjects(1), "w1001", "experiment:w1001/1", "CAN_READ")
    assert casbin_allows(build_enforcer(policy), 1, "w1001", "experiment:w1001/1", "CAN_READ")


def test_uc_privileges_do_not_imply_each_other() -> None:
    policy = snapshot([Grant(1, ACCOUNT_DOMAIN, "catalog:system", "MANAGE")], [])
    assert not policy.allows({1}, ACCOUNT_DOMAIN, "table:system.mlflow.runs_latest", "SELECT")
    policy = snapshot([Grant(1, ACCOUNT_DOMAIN, "schema:system.mlflow", "SELECT")], [])
    assert policy.allows({1}, ACCOUNT_DOMAIN, "table:system.mlflow.runs_latest", "SELECT")
    assert not policy.allows({1}, ACCOUNT_DOMAIN, "table:system.mlflow.runs_latest", "USE_SCHEMA")


def test_rows_with_forbidden_characters_are_never_loaded() -> None:
    bad = Grant(1, "w1001", "experiment:w1001/1,CAN_MANAGE", "CAN_READ")
    policy = snapshot([bad, Grant(2, "w1001", "experiment:w1001/1", "CAN_READ")], [])
    enforcer = build_enforcer(policy)  # would raise "invalid policy size" if the comma reached Casbin
    assert casbin_allows(enforcer, 2, "w1001", "experiment:w1001/1", "CAN_READ")
    assert not policy.allows({1}, "w1001", "experiment:w1001/1", "CAN_READ")
