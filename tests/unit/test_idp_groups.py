"""A group an identity provider names counts as a gateway membership would: a disabled group gives nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.authz.policy import PolicySnapshot, PrincipalInfo

USER = 1
GROUPS = range(2, 9)
memberships = st.lists(
    st.tuples(st.sampled_from([USER, *GROUPS]), st.sampled_from(GROUPS)).filter(lambda m: m[0] < m[1]), max_size=12
)


def snapshot(member_rows: list[tuple[int, int]], inactive: set[int]) -> PolicySnapshot:
    principals = {USER: PrincipalInfo(USER, "user", "ann@x.com")} | {
        group: PrincipalInfo(group, "group", f"g{group}", active=group not in inactive) for group in GROUPS
    }
    return PolicySnapshot(1, principals, member_rows, [])


@settings(max_examples=300, deadline=None)
@given(memberships, st.sets(st.sampled_from(GROUPS), max_size=3), st.sets(st.sampled_from(GROUPS), max_size=4))
def test_a_named_group_counts_exactly_as_a_membership_in_it(
    member_rows: list[tuple[int, int]], inactive: set[int], named: set[int]
) -> None:
    """Naming groups gives the user what being their member in the gateway gives (a disabled one: nothing), and
    names only the groups that counted."""
    subjects, counted = snapshot(member_rows, inactive).subjects_naming(USER, [f"g{group}" for group in named])
    joined = snapshot([*member_rows, *((USER, group) for group in named)], inactive)
    assert subjects == joined.subjects(USER)
    assert set(counted) == {f"g{group}" for group in named if group not in inactive}


def test_a_disabled_group_named_by_the_provider_gives_neither_its_grants_nor_its_parents() -> None:
    subjects, counted = snapshot([(2, 3)], {2}).subjects_naming(USER, ["g2"])
    assert (subjects, counted) == (frozenset({USER}), ())
