"""The policy: grants and group membership compiled into an index.

A request is decided by the index in a handful of dictionary lookups, whatever the number of grants:
the caller's subjects (itself and every group it is in, transitively) times the object and its ancestors.
The Casbin model in `policies/model.conf` is the specification: the tests load the very same rows into
pycasbin (`tests/support/casbin_bridge.py`), and property tests hold the two to the same answers. A
snapshot is immutable; reloads build a new one and swap the reference, so no request ever sees a
half-loaded policy.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.authz.levels import (
    ACCOUNT_DOMAIN,
    LEVEL_ORDER,
    RANK,
    implies,
    uc_parents,
    valid_value,
)
from gateway.principals.groups import MAX_GROUP_DEPTH


@dataclass(frozen=True, slots=True)
class PrincipalInfo:
    id: int
    kind: str  # user | service_principal | group
    name: str
    display_name: str = ""
    active: bool = True
    account_admin: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    principal_id: int
    domain: str
    object: str
    privilege: str

    def valid(self) -> bool:
        return (
            valid_value("domain", self.domain)
            and valid_value("object", self.object)
            and valid_value("privilege", self.privilege)
        )


def ancestors(domain: str, obj: str) -> list[str]:
    """The object itself and every object a grant on which also covers it."""
    if domain == ACCOUNT_DOMAIN:
        return [obj, *uc_parents(obj)]
    fallback = f"workspace:{domain}"
    return [obj] if obj == fallback else [obj, fallback]


@dataclass
class PolicySnapshot:
    version: int
    principals: Mapping[int, PrincipalInfo]
    memberships: Iterable[tuple[int, int]]  # (member_id, group_id)
    grants: Iterable[Grant]
    # Unity Catalog securables that exist (the system tables, dynamic views): their containment rows.
    securables: Iterable[str] = ()
    _parents: dict[int, set[int]] = field(init=False)
    _on: dict[tuple[str, str], dict[int, set[str]]] = field(init=False)
    _of: dict[tuple[str, int], dict[str, set[str]]] = field(init=False)
    _domains: dict[int, set[str]] = field(init=False)
    _closure: dict[int, frozenset[int]] = field(init=False, default_factory=dict)
    _by_name: dict[tuple[str, str], int] = field(init=False)

    def __post_init__(self) -> None:
        self._parents = defaultdict(set)
        for member, group in self.memberships:
            self._parents[member].add(group)
        self._on = defaultdict(lambda: defaultdict(set))
        self._of = defaultdict(lambda: defaultdict(set))
        self._domains = defaultdict(set)
        for grant in self.grants:
            if not grant.valid():  # never loaded: the database constraints refuse such rows anyway
                continue
            self._on[(grant.domain, grant.object)][grant.principal_id].add(grant.privilege)
            self._of[(grant.domain, grant.principal_id)][grant.object].add(grant.privilege)
            self._domains[grant.principal_id].add(grant.domain)
        self._by_name = {(p.kind, p.name): p.id for p in self.principals.values()}

    @classmethod
    def empty(cls) -> PolicySnapshot:
        return cls(0, {}, [], [])

    # -- principals ---------------------------------------------------------------------------------

    def principal(self, principal_id: int) -> PrincipalInfo | None:
        return self.principals.get(principal_id)

    def find(self, kind: str, name: str) -> PrincipalInfo | None:
        principal_id = self._by_name.get((kind, name))
        return self.principals.get(principal_id) if principal_id is not None else None

    def subjects(self, principal_id: int) -> frozenset[int]:
        """The principal and every group it belongs to, directly or through other groups."""
        cached = self._closure.get(principal_id)
        if cached is not None:
            return cached
        seen = {principal_id}
        queue = deque([(principal_id, 0)])
        while queue:
            current, depth = queue.popleft()
            if depth >= MAX_GROUP_DEPTH:
                continue
            for group in self._parents.get(current, ()):
                if group not in seen and self._active(group):
                    seen.add(group)
                    queue.append((group, depth + 1))
        result = frozenset(seen)
        self._closure[principal_id] = result
        return result

    def direct_groups(self, principal_id: int) -> set[int]:
        return set(self._parents.get(principal_id, ()))

    def _active(self, principal_id: int) -> bool:
        info = self.principals.get(principal_id)
        return info is not None and info.active

    # -- decisions ----------------------------------------------------------------------------------

    def held(self, subjects: Iterable[int], domain: str, obj: str) -> set[str]:
        """Every privilege the subjects hold on `obj`, directly or through an ancestor object."""
        found: set[str] = set()
        for candidate in ancestors(domain, obj):
            holders = self._on.get((domain, candidate))
            if not holders:
                continue
            for sub in subjects:
                privileges = holders.get(sub)
                if privileges:
                    found |= privileges
        return found

    def allows(self, subjects: Iterable[int], domain: str, obj: str, wanted: str) -> bool:
        return any(implies(held, wanted) for held in self.held(subjects, domain, obj))

    def level(self, subjects: Iterable[int], domain: str, obj: str) -> str | None:
        """The highest MLflow permission level held on `obj`, or None."""
        ranked = [RANK[p] for p in self.held(subjects, domain, obj) if p in RANK]
        return LEVEL_ORDER[max(ranked)].value if ranked else None

    def objects_with(self, subjects: Iterable[int], domain: str, wanted: str, prefix: str) -> set[str]:
        """Objects named `prefix...` in `domain` on which the subjects directly hold `wanted` or more."""
        found: set[str] = set()
        for sub in subjects:
            for obj, privileges in self._of.get((domain, sub), {}).items():
                if obj.startswith(prefix) and any(implies(p, wanted) for p in privileges):
                    found.add(obj)
        return found

    def grants_on(self, domain: str, obj: str) -> dict[int, set[str]]:
        return {sub: set(privileges) for sub, privileges in self._on.get((domain, obj), {}).items()}

    def holds_in(self, subjects: Iterable[int], domain: str) -> bool:
        """Whether any of the subjects holds any grant in `domain`."""
        return any(domain in self._domains.get(sub, ()) for sub in subjects)
