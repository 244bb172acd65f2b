"""What principals needs of the access policy its changes feed (`gateway.authz.live.LivePolicy` in the app).

Principals sit below authorization: they name who exists, the policy decides what each may do. A change
to principals (a membership, a disabled user, a revoked token) must reach that policy on every replica,
so the services here ask the policy for exactly two things: move its version inside the change's own
transaction, and reload once the change is committed. They also read who exists from its snapshot, and from
the stored policy when the snapshot does not name someone (`found`: made through another replica moments ago).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.core.policy_changes import PolicyChange

T = TypeVar("T")


class Known(Protocol):
    """A principal as the policy knows it."""

    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...  # user | service_principal | group

    @property
    def name(self) -> str: ...

    @property
    def active(self) -> bool: ...


class Directory(Protocol):
    """Who exists, as of one policy version."""

    def principal(self, principal_id: int) -> Known | None: ...

    def find(self, kind: str, name: str) -> Known | None: ...


class Policy(Protocol):
    @property
    def snapshot(self) -> Directory:
        """The principals of the policy in use; never a half-loaded one."""
        ...

    async def bump(self, session: AsyncSession, changes: Sequence[PolicyChange] | None = None) -> int:
        """Move the stored policy version in `session`'s transaction; replicas follow when it commits.

        `changes` are the rows the transaction changed (what its statements returned), in order: replicas
        apply them. None makes every replica load the policy whole.
        """
        ...

    async def reload(self) -> object:
        """Follow the stored policy now (after a committed change, before answering)."""
        ...

    async def found(self, read: Callable[[Directory], T]) -> T:
        """What `read` gives on the principals in use or, when it gives nothing there (None, or raises
        ResourceNotFound), on the stored policy's, after one reload: one made through another replica moments ago
        is missing only from the policy in use."""
        ...
