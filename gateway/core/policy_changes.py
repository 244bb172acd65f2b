"""What one committed access change did to the policy's rows, so that every replica can apply it as is.

A change that moves the policy version may record, in the same transaction, the rows it actually added
and removed (each statement's RETURNING, never what it meant to do): grants, memberships, and the
principals it created, changed or deleted, and the dynamic views it created or dropped. Replicas apply the
recorded changes of each version in order to the policy they hold instead of loading it whole
(`gateway.authz.live.LivePolicy`). A version moved without a record (a bump by hand, or a record of a kind
this release does not know) makes every replica load the policy whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class GrantAdded(msgspec.Struct, frozen=True, array_like=True, tag="grant+"):
    principal_id: int
    domain: str
    object: str
    privilege: str


class GrantRemoved(msgspec.Struct, frozen=True, array_like=True, tag="grant-"):
    principal_id: int
    domain: str
    object: str
    privilege: str


class MemberAdded(msgspec.Struct, frozen=True, array_like=True, tag="member+"):
    member_id: int
    group_id: int


class MemberRemoved(msgspec.Struct, frozen=True, array_like=True, tag="member-"):
    member_id: int
    group_id: int


class PrincipalSet(msgspec.Struct, frozen=True, array_like=True, tag="principal"):
    """A principal created or changed: its attributes as the transaction left them."""

    id: int
    kind: str
    name: str
    display_name: str
    active: bool
    account_admin: bool


class PrincipalRemoved(msgspec.Struct, frozen=True, array_like=True, tag="principal-"):
    """A principal deleted. Its grants and memberships are recorded as removed before it, in the same version."""

    id: int


class ViewAdded(msgspec.Struct, frozen=True, array_like=True, tag="view+"):
    """A dynamic view stored (CREATE [OR REPLACE] VIEW): its full name, which makes it a securable."""

    name: str


class ViewRemoved(msgspec.Struct, frozen=True, array_like=True, tag="view-"):
    """A dynamic view dropped: its full name. The grants on it are recorded as removed in the same version."""

    name: str


PolicyChange = (
    GrantAdded | GrantRemoved | MemberAdded | MemberRemoved | PrincipalSet | PrincipalRemoved | ViewAdded | ViewRemoved
)

_decoder = msgspec.json.Decoder(list[PolicyChange])


def encode(changes: Sequence[PolicyChange]) -> str:
    return msgspec.json.encode(list(changes)).decode()


def decode(raw: str | bytes) -> list[PolicyChange]:
    return _decoder.decode(raw)
