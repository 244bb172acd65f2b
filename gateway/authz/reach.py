"""Which principals a caller is told of when it names one: the rule every call that takes a principal's name follows.

A call that names a principal (an entry of the permissions API or of a saved query's permissions, a secret
scope's ACL, a Unity Catalog grant by REST or SQL, the principal of SHOW GRANTS or of a grants list) answers a
name nobody holds with 404 `No ... named '...'`. Had it gone ahead for every other name, whoever may manage
something could tell which users, groups and service principals the whole account has, another workspace's
too: every user of a workspace creates experiments, registered models and secret scopes and manages them,
every signed-in principal creates and shares saved queries, and a Unity Catalog securable's manager need not be
an admin. So a caller who is not told everything (`Reach.precise`) meets every principal beyond its reach
exactly as a name nobody holds. Within its reach are

- itself and the groups it is in;
- the principals of the workspaces in question (`Reach.domains`): those holding something there (CAN_USE on
  the workspace, a grant on one of its experiments, models or secret scopes), directly or through a group, and
  groups with such a member at any depth;
- the principals the object's permissions already name (`Reach.named`): its manager reads them there anyway.

Told everything: account admins everywhere, and a workspace's admins (CAN_MANAGE on it) on that workspace's
objects (`for_workspace`). Objects of the account (saved queries, Unity Catalog securables) have no workspace:
their place is the account's domain, where Unity Catalog grants and shares of saved queries are held, and a
caller names the principals of every place it holds something in itself, its workspaces and the account's
domain (`for_account`).

The access console shows a workspace admin the principals of the workspaces it administers by the same rule
(`for_workspaces`): there it reads their permissions rather than naming them, so it is not told everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.core.principal import Principal
from gateway.principals import names


@dataclass(frozen=True, slots=True)
class Reach:
    """The principals one caller may name in one place (module docstring)."""

    precise: bool  # told of every name (an admin of the place)
    own: frozenset[int] = frozenset()  # the caller and the groups it is in
    domains: frozenset[str] = frozenset()  # the workspaces whose principals it names
    named: frozenset[int] = frozenset()  # principals the object's permissions name already

    def sees(self, snapshot: PolicySnapshot, info: PrincipalInfo) -> bool:
        return self.judge(snapshot)(info)

    def judge(self, snapshot: PolicySnapshot) -> Callable[[PrincipalInfo], bool]:
        """`sees` for many principals of one snapshot (a listing): the groups' members are read once."""
        members: dict[int, list[int]] | None = None

        def sees(info: PrincipalInfo) -> bool:
            nonlocal members
            if self.precise or info.id in self.own or info.id in self.named:
                return True
            if not self.domains:
                return False
            if info.kind == "group":
                members = _members(snapshot) if members is None else members
                people = _people(snapshot, members, info.id)
            else:
                people = snapshot.subjects(info.id)
            return any(snapshot.holds_in(people, domain) for domain in self.domains)

        return sees

    def find(self, snapshot: PolicySnapshot, kind: str, name: str) -> PrincipalInfo | None:
        """The principal of `kind` named `name` (as a request writes it), or None: also when it is out of reach."""
        info = snapshot.find(kind, names.canonical(kind, name))
        return info if info is not None and self.sees(snapshot, info) else None


EVERYONE = Reach(precise=True)


def for_workspace(caller: Principal, domain: str, *, admin: bool) -> Reach:
    """On an object of one workspace (`domain`): `admin` says whether the caller administers the workspace
    (an account admin, or CAN_MANAGE on it)."""
    return Reach(precise=admin or caller.account_admin, own=caller.subjects, domains=frozenset({domain}))


def for_workspaces(caller: Principal, domains: Iterable[str]) -> Reach:
    """Over several workspaces at once (`domains`, those a workspace admin administers, in the access console):
    itself, its groups and the principals of those workspaces; everyone for an account admin."""
    if caller.account_admin:
        return EVERYONE
    return Reach(precise=False, own=caller.subjects, domains=frozenset(domains))


def for_account(snapshot: PolicySnapshot, caller: Principal, named: Iterable[int] = ()) -> Reach:
    """On an object of the account: account admins name anyone; others the principals of every domain they hold
    something in (their workspaces; the account's, with a Unity Catalog grant or a shared saved query) and those
    the object's permissions name (`named`)."""
    if caller.account_admin:
        return EVERYONE
    domains = frozenset(snapshot.domains_of(caller.subjects))
    return Reach(precise=False, own=caller.subjects, domains=domains, named=frozenset(named))


def _members(snapshot: PolicySnapshot) -> dict[int, list[int]]:
    """Each group's direct members."""
    members: dict[int, list[int]] = {}
    for member, group in snapshot.memberships:
        members.setdefault(group, []).append(member)
    return members


def _people(snapshot: PolicySnapshot, members: dict[int, list[int]], principal_id: int) -> frozenset[int]:
    """Whose grants make a principal one of a workspace's: its own and its groups', and for a group, those of
    every member at any depth (and of the groups they are in)."""
    people: set[int] = set()
    seen, queue = {principal_id}, [principal_id]
    while queue:
        current = queue.pop()
        people |= snapshot.subjects(current)
        for member in members.get(current, ()):
            if member not in seen:
                seen.add(member)
                queue.append(member)
    return frozenset(people)
