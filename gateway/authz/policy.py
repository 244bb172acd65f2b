"""The policy: grants and group membership compiled into an index.

A request is decided by the index in a handful of dictionary lookups, whatever the number of grants:
the caller's subjects (itself and every group it is in, transitively) times the object and its ancestors.
The Casbin model in `policies/model.conf` is the specification: the tests load the very same rows into
pycasbin (`tests/support/casbin_bridge.py`), and property tests hold the two to the same answers. A
snapshot is immutable: a change recorded with its version is applied to a copy (`PolicySnapshot.apply`,
which copies only what the change touches), a reload builds a new one, and either is swapped in whole,
so no request ever sees a half-applied policy.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.authz.levels import (
    ACCOUNT_DOMAIN,
    LEVEL_ORDER,
    RANK,
    implies,
    uc_object,
    uc_parents,
    valid_value,
)
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
from gateway.core.principal import Principal
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


def view_securables(view_names: Iterable[str]) -> list[str]:
    """The Unity Catalog objects stored views make exist: each view, its schema and its catalog."""
    found: set[str] = set()
    for name in view_names:
        obj = uc_object("table", name)
        found.add(obj)
        found.update(uc_parents(obj))
    return sorted(found)


def without_view(securables: Iterable[str], name: str) -> frozenset[str]:
    """`securables` once the view `name` is dropped: its schema and catalog go too unless something else in them
    remains, so the result is what `view_securables` makes of the views left (with the system tables)."""
    remaining = set(securables)
    obj = uc_object("table", name)
    remaining.discard(obj)
    for parent in uc_parents(obj):  # the schema first, then the catalog (which may have lost its last schema)
        if not any(parent in uc_parents(other) for other in remaining):
            remaining.discard(parent)
    return frozenset(remaining)


def ancestors(domain: str, obj: str) -> list[str]:
    """The object itself and every object a grant on which also covers it."""
    if domain == ACCOUNT_DOMAIN:
        return [obj, *uc_parents(obj)]
    fallback = f"workspace:{domain}"
    return [obj] if obj == fallback else [obj, fallback]


# Privileges held are kept as bit masks, one bit per privilege name seen (a dozen or so in practice): the
# index then holds dictionaries of ints, which Python's cyclic garbage collector does not track, instead of
# a set per grant, which it would traverse on every full collection (a pause of a second at 100,000 grants).
_BITS: dict[str, int] = {}
_NAMES: dict[int, frozenset[str]] = {0: frozenset()}
_INTERNING = threading.Lock()


def privilege_bit(privilege: str) -> int:
    bit = _BITS.get(privilege)
    if bit is None:
        with _INTERNING:
            bit = _BITS.setdefault(privilege, 1 << len(_BITS))
    return bit


def privilege_names(mask: int) -> frozenset[str]:
    names = _NAMES.get(mask)
    if names is None:
        names = frozenset(name for name, bit in list(_BITS.items()) if mask & bit)
        _NAMES[mask] = names
    return names


class PolicyIndex:
    """Builds a snapshot's index from rows, a batch at a time (a reload feeds it as the rows arrive)."""

    def __init__(self) -> None:
        self.parents: dict[int, set[int]] = {}
        self.on: dict[tuple[str, str], dict[int, int]] = {}
        self.of: dict[tuple[str, int], dict[str, int]] = {}

    def add_memberships(self, rows: Iterable[tuple[int, int]]) -> None:
        parents = self.parents
        for member, group in rows:
            parents.setdefault(member, set()).add(group)

    def add_grants(self, rows: Iterable[Grant]) -> None:
        on, of = self.on, self.of
        for grant in rows:
            if not grant.valid():  # never loaded: the database constraints refuse such rows anyway
                continue
            bit = privilege_bit(grant.privilege)
            holders = on.setdefault((grant.domain, grant.object), {})
            holders[grant.principal_id] = holders.get(grant.principal_id, 0) | bit
            objects = of.setdefault((grant.domain, grant.principal_id), {})
            objects[grant.object] = objects.get(grant.object, 0) | bit

    def snapshot(
        self, version: int, principals: Mapping[int, PrincipalInfo], securables: Iterable[str] = ()
    ) -> PolicySnapshot:
        return PolicySnapshot._assemble(version, dict(principals), securables, self.parents, self.on, self.of)


class PolicySnapshot:
    """One version of the policy, indexed. Never changed once published: `apply` returns a new one."""

    version: int
    principals: dict[int, PrincipalInfo]
    # Unity Catalog securables that exist (the system tables, dynamic views): their containment rows.
    securables: Iterable[str]
    _parents: dict[int, set[int]]  # member -> the groups it is directly in
    _on: dict[tuple[str, str], dict[int, int]]  # (domain, object) -> holder -> privileges (a mask)
    _of: dict[tuple[str, int], dict[str, int]]  # (domain, holder) -> object -> privileges (a mask)
    _by_name: dict[tuple[str, str], int]
    _closure: dict[int, frozenset[int]]  # subjects() of principals asked about, filled as they are asked
    _rows: tuple[Iterable[Grant], Iterable[tuple[int, int]]] | None

    def __init__(
        self,
        version: int,
        principals: Mapping[int, PrincipalInfo],
        memberships: Iterable[tuple[int, int]],  # (member_id, group_id)
        grants: Iterable[Grant],
        securables: Iterable[str] = (),
    ) -> None:
        index = PolicyIndex()
        index.add_memberships(memberships)
        index.add_grants(grants)
        self._fill(version, dict(principals), securables, index.parents, index.on, index.of)
        self._rows = (grants, memberships)

    @classmethod
    def _assemble(
        cls,
        version: int,
        principals: dict[int, PrincipalInfo],
        securables: Iterable[str],
        parents: dict[int, set[int]],
        on: dict[tuple[str, str], dict[int, int]],
        of: dict[tuple[str, int], dict[str, int]],
    ) -> PolicySnapshot:
        snapshot = cls.__new__(cls)
        snapshot._fill(version, principals, securables, parents, on, of)
        return snapshot

    def _fill(
        self,
        version: int,
        principals: dict[int, PrincipalInfo],
        securables: Iterable[str],
        parents: dict[int, set[int]],
        on: dict[tuple[str, str], dict[int, int]],
        of: dict[tuple[str, int], dict[str, int]],
    ) -> None:
        self.version = version
        self.principals = principals
        self.securables = securables
        self._parents, self._on, self._of = parents, on, of
        self._by_name = {(p.kind, p.name): p.id for p in principals.values()}
        self._closure = {}
        self._rows = None

    @classmethod
    def empty(cls) -> PolicySnapshot:
        return cls(0, {}, [], [])

    # -- rows -----------------------------------------------------------------------------------------

    @property
    def grants(self) -> Iterable[Grant]:
        """The grant rows a snapshot was built from; for one built in batches or changed since, those it holds."""
        if self._rows is not None:
            return self._rows[0]
        return [
            Grant(holder, domain, obj, privilege)
            for (domain, obj), holders in self._on.items()
            for holder, mask in holders.items()
            for privilege in privilege_names(mask)
        ]

    @property
    def memberships(self) -> Iterable[tuple[int, int]]:
        if self._rows is not None:
            return self._rows[1]
        return [(member, group) for member, groups in self._parents.items() for group in groups]

    # -- changes --------------------------------------------------------------------------------------

    def apply(self, version: int, changes: Iterable[PolicyChange]) -> PolicySnapshot:
        """This policy with `changes` applied in order, as version `version`; this snapshot stays as it is.

        The result equals a snapshot built from the rows the changes leave (a property test holds the two
        to the same index and answers). Only the tables a change touches are copied, and of those only the
        entries it touches: a change costs a few milliseconds at 100,000 grants, not a rebuild.
        """
        changed = copy.copy(self)
        changed.version = version
        changed._rows = None
        _Changer(changed).apply(changes)
        return changed

    def same_policy(self, other: PolicySnapshot) -> bool:
        """Whether `other` holds the same principals, memberships, grants and securables."""
        return (
            self.principals == other.principals
            and self._parents == other._parents
            and self._on == other._on
            and self._of == other._of
            and set(self.securables) == set(other.securables)
        )

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

    def subjects_naming(self, principal_id: int, group_names: Iterable[str]) -> tuple[frozenset[int], tuple[str, ...]]:
        """`subjects` plus those of the groups an identity provider named, each counted when the gateway has an
        active group of that name (as it is now); with the names counted. A disabled group gives nothing, as it
        gives its gateway members nothing (`subjects` passes over it): its own grants and its groups' alike. Never
        account-admin: that is a property of a principal, set by an account admin."""
        subjects = set(self.subjects(principal_id))
        named: list[str] = []
        for group_name in group_names:
            group = self.find("group", group_name)
            if group is not None and group.active:
                subjects |= self.subjects(group.id)
                named.append(group.name)
        return frozenset(subjects), tuple(dict.fromkeys(named))

    def acting_for(self, info: PrincipalInfo, group_names: Iterable[str], via: str = "") -> Principal:
        """`info` as the principal a record acts for later (an alert's or a webhook's owner, a request's
        requester): its groups as they are now, and those its identity provider named when the record was made,
        counted as `subjects_naming` counts them."""
        subjects, named = self.subjects_naming(info.id, group_names)
        return Principal(
            name=info.name,
            kind=info.kind,
            account_admin=info.account_admin,
            id=info.id,
            subjects=subjects,
            idp_groups=named,
            via=via,
        )

    def direct_groups(self, principal_id: int) -> set[int]:
        return set(self._parents.get(principal_id, ()))

    def _active(self, principal_id: int) -> bool:
        info = self.principals.get(principal_id)
        return info is not None and info.active

    # -- decisions ----------------------------------------------------------------------------------

    def held(self, subjects: Iterable[int], domain: str, obj: str) -> set[str]:
        """Every privilege the subjects hold on `obj`, directly or through an ancestor object."""
        mask = 0
        for candidate in ancestors(domain, obj):
            holders = self._on.get((domain, candidate))
            if not holders:
                continue
            for sub in subjects:
                mask |= holders.get(sub, 0)
        return set(privilege_names(mask))

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
            for obj, mask in self._of.get((domain, sub), {}).items():
                if obj.startswith(prefix) and any(implies(p, wanted) for p in privilege_names(mask)):
                    found.add(obj)
        return found

    def grants_on(self, domain: str, obj: str) -> dict[int, set[str]]:
        return {sub: set(privilege_names(mask)) for sub, mask in self._on.get((domain, obj), {}).items()}

    def holds_in(self, subjects: Iterable[int], domain: str) -> bool:
        """Whether any of the subjects holds any grant in `domain`."""
        return any((domain, sub) in self._of for sub in subjects)

    def domains_of(self, subjects: Iterable[int]) -> set[str]:
        """The domains in which any of the subjects holds a grant: a scan of the index, for rare calls only."""
        wanted = set(subjects)
        return {domain for domain, holder in self._of if holder in wanted}


# Whether a domain or a privilege name is valid, once asked: a few dozen values, asked for every grant changed.
_VALIDITY: dict[tuple[str, str], bool] = {}


def _known_valid(kind: str, value: str) -> bool:
    valid = _VALIDITY.get((kind, value))
    if valid is None:
        valid = valid_value(kind, value)
        if len(_VALIDITY) < 10_000:
            _VALIDITY[(kind, value)] = valid
    return valid


class _Changer:
    """Applies changes to a shallow copy of a snapshot, copying each table and entry before its first write.

    The tables of the copy are still the original's until written: a table is copied once per `apply`, and
    an entry of it (one object's holders, one holder's objects in a domain) once, so nothing the original
    snapshot holds is ever changed. Entries left empty are removed, as a build never makes empty ones.
    """

    def __init__(self, snapshot: PolicySnapshot) -> None:
        self.snapshot = snapshot
        self.tables: set[str] = set()
        self.entries: set[tuple[str, object]] = set()
        self.closures_kept = True

    def table(self, name: str) -> dict[Any, Any]:
        if name not in self.tables:
            # dict.copy() clones the hash table as it is; dict() re-inserts every key (hashing each tuple again)
            # once entries have been removed, two to three times slower at 80,000 entries.
            setattr(self.snapshot, name, getattr(self.snapshot, name).copy())
            self.tables.add(name)
        table: dict[Any, Any] = getattr(self.snapshot, name)
        return table

    def flip(self, name: str, key: object, inner: object, bit: int, add: bool) -> None:
        """Set or clear `bit` in `table[key][inner]`, copying the entry `table[key]` before its first write here.

        A mask left empty goes, and so does an entry left empty, as a build never makes empty ones.
        """
        table = self.table(name)
        entry = table.get(key)
        if entry is None or (name, key) not in self.entries:
            entry = dict(entry) if entry else {}
            table[key] = entry
            self.entries.add((name, key))
        mask = entry.get(inner, 0) | bit if add else entry.get(inner, 0) & ~bit
        if mask:
            entry[inner] = mask
        else:
            entry.pop(inner, None)
            if not entry:
                del table[key]

    @staticmethod
    def put(values: dict[Any, Any], key: object, value: object, add: bool) -> None:
        """Add `value` to, or take it from, the set `values[key]` (a new set: the old one may be shared)."""
        current = values.get(key, set())
        changed = current | {value} if add else current - {value}
        if changed:
            values[key] = changed
        else:
            values.pop(key, None)

    def forget_closures(self, principal_id: int) -> None:
        """Drop every cached group closure that passes through `principal_id`: only those can change."""
        snapshot = self.snapshot
        snapshot._closure = {p: c for p, c in snapshot._closure.items() if principal_id not in c}

    def apply(self, changes: Iterable[PolicyChange]) -> None:
        for change in changes:
            match change:
                case GrantAdded(holder, domain, obj, privilege) | GrantRemoved(holder, domain, obj, privilege):
                    if not (_known_valid("domain", domain) and valid_value("object", obj)):
                        continue
                    if not _known_valid("privilege", privilege):
                        continue
                    add = isinstance(change, GrantAdded)
                    bit = privilege_bit(privilege)
                    self.flip("_on", (domain, obj), holder, bit, add)
                    self.flip("_of", (domain, holder), obj, bit, add)
                case MemberAdded() | MemberRemoved():
                    add = isinstance(change, MemberAdded)
                    self.put(self.table("_parents"), change.member_id, change.group_id, add)
                    self.forget_closures(change.member_id)
                case PrincipalSet():
                    info = PrincipalInfo(
                        change.id, change.kind, change.name, change.display_name, change.active, change.account_admin
                    )
                    principals, by_name = self.table("principals"), self.table("_by_name")
                    old = principals.get(info.id)
                    if old is not None and by_name.get((old.kind, old.name)) == info.id:
                        del by_name[(old.kind, old.name)]
                    principals[info.id] = info
                    by_name[(info.kind, info.name)] = info.id
                    if old is None or old.active != info.active:
                        # A group that appears, or is enabled or disabled, changes what reaches it: the closures
                        # of its members' members as well as those through it. Recomputed as they are asked.
                        self.snapshot._closure = {}
                case PrincipalRemoved():
                    # Its grants and memberships were recorded as removed before it (the deletion's own rows).
                    principals, by_name = self.table("principals"), self.table("_by_name")
                    gone = principals.pop(change.id, None)
                    if gone is not None and by_name.get((gone.kind, gone.name)) == change.id:
                        del by_name[(gone.kind, gone.name)]
                    self.forget_closures(change.id)
                case ViewAdded():
                    snapshot = self.snapshot
                    snapshot.securables = frozenset((*snapshot.securables, *view_securables([change.name])))
                case ViewRemoved():
                    self.snapshot.securables = without_view(self.snapshot.securables, change.name)
