"""Why a principal holds what it holds: every privilege traced to the stored grant that gives it.

Read from the very snapshot decisions use (`PolicySnapshot`), through its public questions only: the
principal's subjects (itself and every group the enforcer follows it into: active groups, nested at most
`MAX_GROUP_DEPTH` levels), the grants on an object and on each object a grant on which covers it
(`ancestors`). Nothing here decides: an explanation lists the grants behind `PolicySnapshot.held`, one
`Source` each, and `tests/unit/test_access_explain.py` holds the two to the same privileges for random
policies. Revoking a source's `grant` takes that privilege away (from everyone who holds it that way).

Where a privilege comes from:

- direct: the grant is the principal's own, on the object itself;
- group: the grant is held by a group the principal is in; `chain` names the groups from the principal
  up to the holder (`(Y, X)`: the principal is in Y, Y is in X, X holds the grant);
- inherited: the grant is on an object that covers this one (a workspace for everything in it; a catalog
  or schema for what it contains), held directly or through groups as above.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.authz.policy import Grant, PolicySnapshot, ancestors


@dataclass(frozen=True, slots=True)
class Source:
    """One grant behind a privilege a principal holds on an object."""

    privilege: str
    grant: Grant  # the stored row: revoking it takes the privilege away
    chain: tuple[int, ...]  # groups from the principal up to the grant's holder; () when held by the principal
    inherited_from: str | None  # the covering object the grant is on, None when it is on the object itself

    @property
    def holder(self) -> int:
        return self.grant.principal_id

    @property
    def origin(self) -> str:
        if self.inherited_from is not None:
            return "inherited"
        return "group" if self.chain else "direct"


class Explainer:
    """The sources of one principal's privileges in one policy snapshot."""

    def __init__(self, snapshot: PolicySnapshot, principal_id: int) -> None:
        self.snapshot = snapshot
        self.principal_id = principal_id
        self.subjects = snapshot.subjects(principal_id)
        self._up = self._shortest_paths()
        self._on: dict[tuple[str, str], dict[int, set[str]]] = {}

    def _shortest_paths(self) -> dict[int, int]:
        """For each group among the subjects, the member it was first reached from (a breadth-first walk).

        The walk stays inside the subjects, so it follows exactly the memberships the enforcer follows
        (an inactive group, or one beyond the depth limit, is not among them) and finds a shortest chain.
        """
        came_from: dict[int, int] = {}
        seen = {self.principal_id}
        queue = deque([self.principal_id])
        while queue:
            current = queue.popleft()
            for group in sorted(self.snapshot.direct_groups(current)):
                if group in self.subjects and group not in seen:
                    seen.add(group)
                    came_from[group] = current
                    queue.append(group)
        return came_from

    def chain(self, holder: int) -> tuple[int, ...]:
        """The groups from the principal up to `holder`, `holder` last; () for the principal itself."""
        if holder == self.principal_id or holder not in self.subjects:
            return ()
        path = [holder]
        while (below := self._up.get(path[-1])) is not None and below != self.principal_id:
            path.append(below)
        return tuple(reversed(path))

    def _grants_on(self, domain: str, obj: str) -> dict[int, set[str]]:
        key = (domain, obj)
        found = self._on.get(key)
        if found is None:
            found = self._on[key] = self.snapshot.grants_on(domain, obj)
        return found

    def sources(self, domain: str, obj: str) -> list[Source]:
        """Every grant that gives the principal a privilege on `obj`, the object's own grants first."""
        found = []
        for candidate in ancestors(domain, obj):
            holders = self._grants_on(domain, candidate)
            for holder in sorted(self.subjects & holders.keys(), key=lambda h: (len(self.chain(h)), h)):
                for privilege in sorted(holders[holder]):
                    found.append(
                        Source(
                            privilege,
                            Grant(holder, domain, candidate, privilege),
                            self.chain(holder),
                            None if candidate == obj else candidate,
                        )
                    )
        return found

    def objects(self, domain: str, privileges: Iterable[str], prefix: str = "") -> set[str]:
        """Objects named `prefix...` in `domain` the principal or one of its groups holds a grant on itself.

        Asked per privilege (`objects_with` answers "this one or more"); the objects that grants on them
        cover (everything in a workspace) are not listed: their covering object is.
        """
        found: set[str] = set()
        for privilege in privileges:
            found |= self.snapshot.objects_with(self.subjects, domain, privilege, prefix)
        return found
