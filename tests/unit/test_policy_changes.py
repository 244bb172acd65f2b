"""Recorded policy changes applied to a snapshot give exactly the policy a fresh build gives (property tests).

A random sequence of versions, each a few grants, revocations, membership changes, principals created,
renamed, disabled, enabled or deleted (with their grants and memberships), dynamic views created or dropped
(with the grants on them), workspaces renumbered, moved to another store or unlinked (their grants moved or
dropped), and empty versions, as a token revocation records, is applied to a snapshot version by version;
after each, the snapshot must hold the same index (and securables) as a snapshot built from scratch from the
rows the changes left, and answer every request the same way. Requests are asked
between versions, so the cached group closures are there to go stale if a change failed to drop them.
The changes are also applied, as the same rows, to a pycasbin enforcer with its incremental API
(add_policy / remove_policy, add_grouping_policy / remove_grouping_policy), which must agree too.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.authz.levels import ACCOUNT_DOMAIN, subject, uc_object
from gateway.authz.live import SYSTEM_SECURABLES
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo, view_securables
from gateway.core import policy_changes
from gateway.core.policy_changes import (
    GrantAdded,
    GrantRemoved,
    MemberAdded,
    MemberRemoved,
    PolicyChange,
    PrincipalRemoved,
    PrincipalSet,
    ViewAdded,
    ViewRemoved,
)
from tests.support.casbin_bridge import build_enforcer, casbin_allows
from tests.unit.test_policy_agreement import DOMAINS, WORKSPACE_OBJECTS, grants, requests

PRINCIPALS = range(1, 11)  # 1-4 users, 5-10 groups; 9 and 10 do not exist at first
INITIAL = range(1, 9)
# Views in a schema of their own, two in one schema, two schemas in one catalog: a drop may leave its schema
# or catalog in place or take it along. gov.mlflow.team_a_runs exists at first (grants() names it).
VIEWS = ["gov.mlflow.team_a_runs", "gov.mlflow.other", "gov.ops.watch", "lab.x.y"]
WORKSPACE_DOMAINS = ("w1001", "w1002")


@dataclass
class Rows:
    """The stored rows, changed as the repositories change them: each change says what it actually did."""

    principals: dict[int, PrincipalInfo]
    memberships: set[tuple[int, int]] = field(default_factory=set)
    grants: set[Grant] = field(default_factory=set)
    views: set[str] = field(default_factory=lambda: {VIEWS[0]})

    def snapshot(self, version: int) -> PolicySnapshot:
        """What a whole load of these rows gives (securables: the system tables and the stored views)."""
        securables = frozenset((*SYSTEM_SECURABLES, *view_securables(self.views)))
        return PolicySnapshot(
            version, dict(self.principals), sorted(self.memberships), sorted(self.grants, key=repr), securables
        )

    def grant(self, grant: Grant, add: bool) -> list[PolicyChange]:
        if add == (grant in self.grants):
            return []  # INSERT ... ON CONFLICT DO NOTHING / DELETE of nothing: RETURNING gives no row
        (self.grants.add if add else self.grants.discard)(grant)
        kind = GrantAdded if add else GrantRemoved
        return [kind(grant.principal_id, grant.domain, grant.object, grant.privilege)]

    def member(self, member: int, group: int, add: bool) -> list[PolicyChange]:
        edge = (member, group)
        if add == (edge in self.memberships) or not (member in self.principals and group in self.principals):
            return []
        (self.memberships.add if add else self.memberships.discard)(edge)
        return [MemberAdded(member, group) if add else MemberRemoved(member, group)]

    def clear(self, domain: str, obj: str) -> list[PolicyChange]:
        gone = sorted((g for g in self.grants if g.domain == domain and g.object == obj), key=repr)
        return [change for g in gone for change in self.grant(g, False)]

    def set_principal(self, info: PrincipalInfo) -> list[PolicyChange]:
        self.principals[info.id] = info
        return [PrincipalSet(info.id, info.kind, info.name, info.display_name, info.active, info.account_admin)]

    def delete_principal(self, principal_id: int) -> list[PolicyChange]:
        """As `PrincipalRepository.delete`: its grants, then its memberships either way, then the principal."""
        if principal_id not in self.principals:
            return []
        held = sorted((g for g in self.grants if g.principal_id == principal_id), key=repr)
        changes = [change for g in held for change in self.grant(g, False)]
        for member, group in sorted(self.memberships):
            if principal_id in (member, group):
                changes += self.member(member, group, False)
        del self.principals[principal_id]
        return [*changes, PrincipalRemoved(principal_id)]

    def view(self, name: str, create: bool) -> list[PolicyChange]:
        """CREATE [OR REPLACE] VIEW records the view even when it was there; DROP VIEW [IF EXISTS] of nothing
        moves no version; a view dropped takes the grants on it along."""
        if create:
            self.views.add(name)
            return [ViewAdded(name)]
        if name not in self.views:
            return []
        self.views.discard(name)
        return [*self.clear(ACCOUNT_DOMAIN, uc_object("table", name)), ViewRemoved(name)]

    def drop_in(self, domain: str, kinds: tuple[str, ...] | None) -> list[PolicyChange]:
        """A workspace unlinked (every grant in it) or moved to another store (grants on `kinds` of objects)."""
        gone = sorted(
            (g for g in self.grants if g.domain == domain and (kinds is None or g.object.startswith(kinds))), key=repr
        )
        return [change for g in gone for change in self.grant(g, False)]

    def renumber(self, old: str, new: str) -> list[PolicyChange]:
        """As `AuthzMoves.renumbered`: the old rows as they were, removed, then each row as it became, added.
        A workspace only moves to an id nothing holds grants in (unlinking drops them all)."""
        moved = sorted((g for g in self.grants if g.domain == old), key=repr)
        if any(g.domain == new for g in self.grants):
            return []
        pattern = re.compile(rf"^([a-z_]+):{old}(/|$)")
        renamed = [Grant(g.principal_id, new, pattern.sub(rf"\1:{new}\2", g.object), g.privilege) for g in moved]
        self.grants -= set(moved)
        self.grants |= set(renamed)
        removed: list[PolicyChange] = [GrantRemoved(g.principal_id, g.domain, g.object, g.privilege) for g in moved]
        return [*removed, *(GrantAdded(g.principal_id, g.domain, g.object, g.privilege) for g in renamed)]


def info(principal_id: int, active: bool = True, name: str | None = None) -> PrincipalInfo:
    kind = "user" if principal_id < 5 else "group"
    return PrincipalInfo(principal_id, kind, name or f"p{principal_id}", active=active)


# One statement's worth of change: (what, arguments). Memberships point from a lower id to a higher one, so
# never a cycle (cycles are refused on write).
edges = st.tuples(st.sampled_from(PRINCIPALS), st.sampled_from(PRINCIPALS)).filter(lambda e: e[0] < e[1])
steps = st.one_of(
    st.tuples(st.just("grant"), grants(), st.booleans()),
    st.tuples(st.just("member"), edges, st.booleans()),
    st.tuples(st.just("clear"), st.sampled_from([(d, o) for d, objs in WORKSPACE_OBJECTS.items() for o in objs])),
    st.tuples(st.just("principal"), st.sampled_from(PRINCIPALS), st.booleans(), st.sampled_from(["", "renamed"])),
    st.tuples(st.just("delete"), st.sampled_from(PRINCIPALS)),
    st.tuples(st.just("view"), st.sampled_from(VIEWS), st.booleans()),
    st.tuples(st.just("unlink"), st.sampled_from(WORKSPACE_DOMAINS)),
    st.tuples(st.just("store moved"), st.sampled_from(WORKSPACE_DOMAINS)),
    st.tuples(st.just("renumber"), st.permutations(WORKSPACE_DOMAINS)),
)
versions = st.lists(st.lists(steps, max_size=5), min_size=1, max_size=12)


def run(rows: Rows, step: tuple[object, ...]) -> list[PolicyChange]:
    match step:
        case ("grant", Grant() as grant, bool(add)):
            return rows.grant(grant, add)
        case ("member", (int(member), int(group)), bool(add)):
            return rows.member(member, group, add)
        case ("clear", (str(domain), str(obj))):
            return rows.clear(domain, obj)
        case ("principal", int(principal_id), bool(active), str(name)):
            return rows.set_principal(info(principal_id, active, f"p{principal_id}{name}"))
        case ("delete", int(principal_id)):
            return rows.delete_principal(principal_id)
        case ("view", str(name), bool(create)):
            return rows.view(name, create)
        case ("unlink", str(domain)):
            return rows.drop_in(domain, None)
        case ("store moved", str(domain)):
            return rows.drop_in(domain, (f"experiment:{domain}/", f"registered_model:{domain}/"))
        case ("renumber", [str(old), str(new)]):
            return rows.renumber(old, new)
    raise AssertionError(step)


def assert_same(changed: PolicySnapshot, built: PolicySnapshot, asked: list[tuple[int, str, str, str]]) -> None:
    assert changed.version == built.version
    assert changed.same_policy(built)
    assert sorted(changed.grants, key=repr) == sorted(built.grants, key=repr)
    assert sorted(changed.memberships) == sorted(built.memberships)
    for principal_id in PRINCIPALS:
        assert changed.subjects(principal_id) == built.subjects(principal_id), principal_id
        for kind in ("user", "group"):
            assert changed.find(kind, f"p{principal_id}") == built.find(kind, f"p{principal_id}")
            assert changed.find(kind, f"p{principal_id}renamed") == built.find(kind, f"p{principal_id}renamed")
        subjects = built.subjects(principal_id)
        for domain in DOMAINS:
            assert changed.holds_in(subjects, domain) == built.holds_in(subjects, domain)
            for wanted in ("CAN_READ", "CAN_MANAGE"):
                assert changed.objects_with(subjects, domain, wanted, "experiment:") == built.objects_with(
                    subjects, domain, wanted, "experiment:"
                )
    for principal_id, domain, obj, wanted in asked:
        expected = built.allows(built.subjects(principal_id), domain, obj, wanted)
        assert changed.allows(changed.subjects(principal_id), domain, obj, wanted) == expected
        assert changed.level(changed.subjects(principal_id), domain, obj) == built.level(
            built.subjects(principal_id), domain, obj
        )


def initial_rows(grant_rows: list[Grant], member_rows: list[tuple[int, int]]) -> Rows:
    rows = Rows({i: info(i) for i in INITIAL})
    for grant in grant_rows:
        rows.grant(grant, True)
    for member, group in member_rows:
        rows.member(member, group, True)
    return rows


@settings(max_examples=300, deadline=None)
@given(
    st.lists(grants(), max_size=20),
    st.lists(edges, max_size=8),
    versions,
    st.lists(requests(), min_size=1, max_size=20),
)
def test_applied_changes_equal_a_fresh_build(
    grant_rows: list[Grant],
    member_rows: list[tuple[int, int]],
    planned: list[list[tuple[object, ...]]],
    asked: list[tuple[int, str, str, str]],
) -> None:
    rows = initial_rows(grant_rows, member_rows)
    snapshot = rows.snapshot(1)
    for version, plan in enumerate(planned, start=2):
        changes = [change for step in plan for change in run(rows, step)]
        # What a replica reads back from the database, not the objects made here.
        changes = policy_changes.decode(policy_changes.encode(changes))
        before = snapshot
        kept = (
            copy.deepcopy(before._on),
            copy.deepcopy(before._of),
            copy.deepcopy(before._parents),
            dict(before.principals),
            dict(before._by_name),
            set(before.securables),
        )
        snapshot = snapshot.apply(version, changes)
        # The old snapshot is never changed.
        assert (
            before._on,
            before._of,
            before._parents,
            before.principals,
            before._by_name,
            set(before.securables),
        ) == kept
        assert_same(snapshot, rows.snapshot(version), asked)


@settings(max_examples=100, deadline=None)
@given(st.lists(grants(), max_size=20), st.lists(edges, max_size=8), versions)
def test_several_versions_applied_at_once_equal_one_by_one(
    grant_rows: list[Grant], member_rows: list[tuple[int, int]], planned: list[list[tuple[object, ...]]]
) -> None:
    """A replica behind by several versions applies their changes in one go."""
    rows = initial_rows(grant_rows, member_rows)
    start = rows.snapshot(1)
    start.subjects(1), start.subjects(5)  # closures cached before the changes
    pending = [change for plan in planned for step in plan for change in run(rows, step)]
    assert_same(start.apply(len(planned) + 1, pending), rows.snapshot(len(planned) + 1), [])


class IncrementalEnforcer:
    """pycasbin kept in step with the same changes through its incremental API."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.enforcer = build_enforcer(rows.snapshot(1))

    def link(self, member: int, group: int, add: bool) -> None:
        if add:
            self.enforcer.add_grouping_policy(subject(member), subject(group))
        else:
            self.enforcer.remove_grouping_policy(subject(member), subject(group))

    def apply(self, changes: list[PolicyChange], active_before: dict[int, bool]) -> None:
        for change in changes:
            match change:
                case GrantAdded(p, d, o, a):
                    self.enforcer.add_policy(subject(p), d, o, a)
                case GrantRemoved(p, d, o, a):
                    self.enforcer.remove_policy(subject(p), d, o, a)
                case MemberAdded(m, g):
                    # An inactive group passes on nothing: its memberships are not Casbin rows.
                    if self.rows.principals[g].active:
                        self.link(m, g, True)
                case MemberRemoved(m, g):
                    self.link(m, g, False)  # nothing to remove if the group was inactive (or is deleted)
                case PrincipalRemoved(principal_id):
                    active_before.pop(principal_id, None)  # its grants and memberships went before it
                case PrincipalSet(principal_id, active=active) if active != active_before.get(principal_id, False):
                    for member, group in self.rows.memberships:
                        if group == principal_id:
                            self.link(member, group, active)
                    active_before[principal_id] = active


@settings(max_examples=60, deadline=None)
@given(
    st.lists(grants(), max_size=15),
    st.lists(edges, max_size=6),
    versions,
    st.lists(requests(), min_size=1, max_size=15),
)
def test_applied_changes_agree_with_casbin_kept_in_step(
    grant_rows: list[Grant],
    member_rows: list[tuple[int, int]],
    planned: list[list[tuple[object, ...]]],
    asked: list[tuple[int, str, str, str]],
) -> None:
    rows = initial_rows(grant_rows, member_rows)
    snapshot = rows.snapshot(1)
    casbin = IncrementalEnforcer(rows)
    active = {i: p.active for i, p in rows.principals.items()}
    for version, plan in enumerate(planned, start=2):
        for step in plan:
            # One statement at a time: the enforcer reads the rows as they stand after each.
            changes = run(rows, step)
            casbin.apply(changes, active)
            snapshot = snapshot.apply(version, changes)
        for principal_id, domain, obj, wanted in asked:
            fast = snapshot.allows(snapshot.subjects(principal_id), domain, obj, wanted)
            assert fast == casbin_allows(casbin.enforcer, principal_id, domain, obj, wanted), (
                principal_id,
                domain,
                obj,
                wanted,
            )


def test_a_grant_with_forbidden_characters_is_never_applied() -> None:
    snapshot = PolicySnapshot(1, {1: info(1)}, [], [])
    changed = snapshot.apply(2, [GrantAdded(1, "w1001", "experiment:w1001/1,CAN_MANAGE", "CAN_READ")])
    assert changed.same_policy(snapshot)
    assert not changed.holds_in({1}, "w1001")


def test_changes_survive_their_encoding() -> None:
    changes: list[PolicyChange] = [
        GrantAdded(1, ACCOUNT_DOMAIN, "catalog:system", "USE_CATALOG"),
        GrantRemoved(2, "w1001", "experiment:w1001/7", "CAN_EDIT"),
        MemberAdded(3, 5),
        MemberRemoved(3, 6),
        PrincipalSet(9, "group", "team", "Team", False, False),
        PrincipalRemoved(9),
        ViewAdded("gov.mlflow.team_a_runs"),
        ViewRemoved("gov.mlflow.team_a_runs"),
    ]
    assert policy_changes.decode(policy_changes.encode(changes)) == changes
    assert policy_changes.encode([]) == "[]"
