"""The authenticated caller, as every other context sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    kind: str  # "user", "service_principal" or "bootstrap"
    account_admin: bool = False
    id: int | None = None  # None only for the bootstrap admin, which has no row
    # Its own id and every group it is in, transitively (and groups named by its identity provider).
    subjects: frozenset[int] = field(default_factory=frozenset)
    # The gateway groups its identity provider named in this credential (an OIDC token's groups claim, a
    # browser sign-in's), by name: counted in `subjects`, and recorded where a decision is made later.
    idp_groups: tuple[str, ...] = ()
    # The identity provider vouched for this credential (an OIDC token, a browser session it signed in), so
    # `idp_groups` is its word on the groups, even when empty; a personal access token says nothing of them.
    idp: bool = False
    via: str = ""  # how it authenticated: "token", "oidc" or "bootstrap"
    # When the credential this request presented stops being valid (a token's expiry, an OIDC token's
    # `exp`); None for credentials that do not expire. Nothing minted with it may outlive it.
    credential_expires_at: datetime | None = None
    # The keyed hash of the personal access token this credential is, or that its browser session was made
    # with: tokens minted with it are recorded as its children and end when it is revoked.
    minted_with: bytes | None = None
    # The SHA-256 of the browser session's id this request came with: tokens minted in it end when it is ended.
    session_hash: bytes | None = None
