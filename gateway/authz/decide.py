"""Decisions about one principal and one object, and what a principal may see (the visibility service).

Account admins may do everything. Workspace admins hold CAN_MANAGE on the workspace, which covers
everything in it. Everyone else holds exactly what was granted to them or to a group they are in.
An object the caller may not read answers as if it did not exist; one it may read but not change
answers PERMISSION_DENIED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from gateway.authz.levels import (
    RANK,
    Level,
    experiment_object,
    model_object,
    workspace_domain,
    workspace_object,
)
from gateway.authz.live import LivePolicy
from gateway.authz.policy import PolicySnapshot
from gateway.core.errors import PermissionDenied, ResourceNotFound, hidden
from gateway.core.principal import Principal

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Everything:
    """The caller may read every object of the kind asked about."""


EVERYTHING = Everything()


class UnknownHere(ResourceNotFound):
    """A name the call gives (a principal a grants list or SHOW GRANTS is narrowed to) that the snapshot in use
    does not hold: not a refusal (answered and audited as a missing object), but something made through another
    replica moments ago may be in the stored policy, so `Authorizer.deciding` decides it again as a refusal."""


class Authorizer:
    def __init__(self, policy: LivePolicy) -> None:
        self.policy = policy

    async def caught_up(self, principal: Principal) -> Principal | None:
        """Before a refusal stands: bring this replica's policy to the stored one (one query when it is there
        already), as a change made through another replica may not have reached it yet. When that gave it a
        newer policy, the principal as that policy knows it (its groups, the identity provider's groups it
        named, its account admin role), to decide again with; else None (nothing new to decide by), also for a
        principal the newer policy no longer holds active. Never a mix: groups from the policy the principal was
        authenticated with and grants from the newer one could allow what neither allows. Only ever forward,
        with every change up to the stored version (revocations too)."""
        if not self.policy.loaded:  # not serving yet: nothing was decided with a stored policy to catch up on
            return None
        # The refusal was decided on the snapshot in use: only a newer one has something to decide again by.
        before = self.policy.snapshot
        return await self.policy.found(lambda snapshot: None if snapshot is before else as_known(principal, snapshot))

    async def deciding(self, principal: Principal, decide: Callable[[Principal], Awaitable[T]]) -> T:
        """`decide(principal)`; when access control refuses it (403, or 404 as for a missing object), decided again
        with the principal as the stored policy knows it, if this replica was behind (`caught_up`): a grant, a
        group joined or an account admin role given through another replica moments ago counts at once. A
        missing object (a 404 that is no refusal) is not decided again, unless what is missing is a name the
        policy holds (`UnknownHere`).

        `decide` must change nothing before it refuses (it may run twice), and read the policy only through the
        principal it is given and `self.policy.snapshot`: decided again, those are the same stored policy."""
        try:
            return await decide(principal)
        except (PermissionDenied, ResourceNotFound) as refusal:
            if isinstance(refusal, ResourceNotFound) and not (refusal.denied or isinstance(refusal, UnknownHere)):
                raise
            newer = await self.caught_up(principal)
            if newer is None:
                raise
            return await decide(newer)

    def level(self, principal: Principal, workspace_id: int, obj: str) -> str | None:
        if principal.account_admin:
            return Level.CAN_MANAGE.value
        return self.policy.snapshot.level(principal.subjects, workspace_domain(workspace_id), obj)

    def allows(self, principal: Principal, workspace_id: int, obj: str, wanted: str) -> bool:
        held = self.level(principal, workspace_id, obj)
        return held is not None and RANK[held] >= RANK[wanted]

    def require(self, principal: Principal, workspace_id: int, obj: str, wanted: str, missing: str) -> None:
        """Raise unless the principal holds `wanted` on `obj`; `missing` is the store's not-found message."""
        held = self.level(principal, workspace_id, obj)
        if held is None or RANK[held] < RANK[Level.CAN_READ]:
            raise hidden(missing)
        if RANK[held] < RANK[wanted]:
            raise PermissionDenied(f"{principal.name} lacks {wanted} on {_describe(obj)} (holds {held}).")

    # -- workspaces -----------------------------------------------------------------------------------

    def enters(self, principal: Principal, workspace_id: int) -> bool:
        """Any grant in a workspace (on it or on anything in it) lets a principal see the workspace."""
        if principal.account_admin:
            return True
        return self.policy.snapshot.holds_in(principal.subjects, workspace_domain(workspace_id))

    def require_workspace(self, principal: Principal, workspace_id: int, name: str, wanted: str) -> None:
        if not self.enters(principal, workspace_id):
            raise hidden(f"Workspace '{name}' not found")
        if not self.allows(principal, workspace_id, workspace_object(workspace_id), wanted):
            raise PermissionDenied(f"{principal.name} lacks {wanted} on workspace '{name}'.")

    # -- visibility -----------------------------------------------------------------------------------

    def readable_experiments(self, principal: Principal, workspace_id: int) -> Everything | set[str]:
        return self._readable(principal, workspace_id, experiment_object(workspace_id, ""))

    def readable_models(self, principal: Principal, workspace_id: int) -> Everything | set[str]:
        return self._readable(principal, workspace_id, model_object(workspace_id, ""))

    def _readable(self, principal: Principal, workspace_id: int, prefix: str) -> Everything | set[str]:
        if self.allows(principal, workspace_id, workspace_object(workspace_id), Level.CAN_READ):
            return EVERYTHING
        objects = self.policy.snapshot.objects_with(
            principal.subjects, workspace_domain(workspace_id), Level.CAN_READ, prefix
        )
        return {obj[len(prefix) :] for obj in objects}


def as_known(principal: Principal, snapshot: PolicySnapshot) -> Principal | None:
    """The principal as `snapshot` knows it (its groups, the identity provider's groups it named, its account
    admin role); None when the snapshot holds no such active principal."""
    if principal.id is None:  # the bootstrap admin: no row, no groups
        return principal
    info = snapshot.principal(principal.id)
    if info is None or not info.active:
        return None
    if principal.idp:
        subjects, named = snapshot.subjects_naming(principal.id, principal.idp_groups)
    else:
        subjects, named = snapshot.subjects(principal.id), principal.idp_groups
    return replace(principal, subjects=subjects, idp_groups=named, account_admin=info.account_admin)


def _describe(obj: str) -> str:
    kind, _, rest = obj.partition(":")
    return f"{kind.replace('_', ' ')} {rest.split('/', 1)[-1]}"
