"""Turn an Authorization header into a Principal.

Accepted: gateway personal access tokens (`Bearer`, or as the basic-auth password, which is what
`MLFLOW_TRACKING_USERNAME/PASSWORD` send), OIDC access tokens from the configured identity provider,
and the bootstrap account-admin token. There is no anonymous access. A browser session of the web UI
(authn/sessions.py) names its principal, who is looked up here on every request as for a token: a
disabled user's session stops working at once, and so does one made with a token that was revoked.

The principal carries when the presented credential expires (`credential_expires_at`: a token's expiry,
an OIDC token's `exp`), so nothing it mints can outlive it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authn.oidc import OidcIdentity, OidcVerifier
from gateway.authn.sessions import (
    NOT_A_PERSON,
    SIGN_IN_TOKEN_GONE,
    BrowserSession,
    BrowserSessions,
    session_hash,
    well_formed,
)
from gateway.authz.live import LivePolicy
from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.authz.repository import PolicyVersionRepository
from gateway.core.bounded import BoundedCache
from gateway.core.errors import Unauthenticated
from gateway.core.principal import Principal
from gateway.principals.repository import PrincipalRepository, TokenRepository, principal_set
from gateway.principals.tokens import TOKEN_PREFIX, hash_token

log = logging.getLogger(__name__)

BOOTSTRAP_ADMIN = Principal(name="admin", kind="bootstrap", account_admin=True, via="bootstrap")
MIN_ADMIN_TOKEN_LENGTH = 16
TOKEN_CACHE_SIZE = 50_000
DEAD_SESSIONS_SIZE = 10_000
PROVISION_ATTEMPTS = 3
SESSION_ENDED = "Your session has ended; sign in again."


def check_admin_token(admin_token: str) -> None:
    if len(admin_token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ValueError(
            f"FEDGATE_ADMIN_TOKEN must be set to a random string of at least {MIN_ADMIN_TOKEN_LENGTH} characters"
        )


class Authenticator:
    def __init__(
        self,
        admin_token: str,
        policy: LivePolicy,
        sessionmaker: async_sessionmaker[AsyncSession],
        oidc: OidcVerifier | None = None,
        sessions: BrowserSessions | None = None,
    ) -> None:
        check_admin_token(admin_token)
        self._admin_token = admin_token.encode()
        self._policy = policy
        self._sessionmaker = sessionmaker
        self._oidc = oidc
        self.sessions = sessions
        self._key = b""
        # token hash → (principal id, expiry), aged from when kept. Emptied whenever the policy changes (a
        # revocation bumps it).
        self._tokens: BoundedCache[bytes, tuple[int, datetime | None]] = BoundedCache(TOKEN_CACHE_SIZE)
        # Moves with every emptying of the caches: a lookup that began before one (it may have read a row the
        # change since deleted, a revoked token's) must not put what it read into the emptied cache.
        self._generation = 0
        self._oidc_users: dict[str, int] = {}
        # Session cookie ids found to name no live session, least recently seen first. A session id is never
        # issued twice and an ended session never comes back, so they stay dead: a browser that kept a dead
        # cookie (its session idled out, or was ended elsewhere) costs one lookup per replica, not one a request.
        self._dead_sessions: BoundedCache[str, bool] = BoundedCache(DEAD_SESSIONS_SIZE)
        # Told of each person who signed in through the identity provider (its groups are news then), e.g. SQL
        # alerts, which record their owner's.
        self.sign_in_hooks: list[Callable[[Principal], Awaitable[None]]] = []
        policy.on_change(self._forget)

    @property
    def token_key(self) -> bytes:
        return self._key

    async def start(self) -> None:
        async with self._sessionmaker() as session, session.begin():
            self._key = await PolicyVersionRepository(session).token_hash_key()

    def _forget(self, _: PolicySnapshot) -> None:
        self._generation += 1
        self._tokens.clear()
        self._oidc_users = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        username, secret = _credentials(authorization)
        if secret is None:
            raise Unauthenticated()
        if hmac.compare_digest(secret.encode(), self._admin_token):
            return BOOTSTRAP_ADMIN
        if secret.startswith(TOKEN_PREFIX):
            return await self._from_token(secret, username)
        if self._oidc is not None and secret.count(".") == 2:
            return await self._from_oidc(secret)
        raise Unauthenticated()

    def token_hash(self, token: str) -> bytes:
        return hash_token(self._key, token)

    async def _from_token(self, token: str, username: str | None) -> Principal:
        return await self._from_token_hash(self.token_hash(token), username)

    async def _from_token_hash(self, token_hash: bytes, username: str | None) -> Principal:
        cached = self._tokens.peek(token_hash)
        if cached is None:
            generation = self._generation
            async with self._sessionmaker() as session:
                row = await TokenRepository(session).by_hash(token_hash)
            if row is None:
                raise Unauthenticated()
            cached = (row.principal_id, row.expires_at)
            if generation == self._generation:  # else the row may be stale: this request only uses it
                self._tokens.put(token_hash, cached)
        principal_id, expires_at = cached
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise Unauthenticated("The token has expired.")
        snapshot, info = await self._known(principal_id)
        if info is None or not info.active:
            raise Unauthenticated("The principal of this token is disabled or deleted.")
        if username and username.casefold() not in ("token", info.name.casefold()):
            raise Unauthenticated("The user name does not match the token.")
        return Principal(
            name=info.name,
            kind=info.kind,
            account_admin=info.account_admin,
            id=info.id,
            subjects=snapshot.subjects(info.id),
            via="token",
            credential_expires_at=expires_at,
            minted_with=token_hash,
        )

    async def _known(self, principal_id: int) -> tuple[PolicySnapshot, PrincipalInfo | None]:
        """The policy and what it says of a principal a stored row (a token's, a session's) names. A principal
        this replica's policy does not know may have been made on another replica moments ago, whose news has
        not arrived yet: it counts as deleted only once the stored policy does not hold it (`LivePolicy.found`)."""

        def held(snapshot: PolicySnapshot) -> tuple[PolicySnapshot, PrincipalInfo] | None:
            info = snapshot.principal(principal_id)
            return None if info is None else (snapshot, info)

        return await self._policy.found(held) or (self._policy.snapshot, None)

    async def _from_oidc(self, token: str) -> Principal:
        assert self._oidc is not None
        return await self.identity_principal(await self._oidc.verify(token))

    async def identity_principal(self, identity: OidcIdentity) -> Principal:
        """The principal of a person the identity provider vouched for (provisioned on first sight)."""
        snapshot = self._policy.snapshot
        info = snapshot.find("user", identity.username)
        if info is None:
            # Unknown to this replica's policy: new, or made on another replica moments ago. Provisioning
            # brings the policy up to the stored one, and the user's role and groups are read from it.
            principal_id = await self._provision(identity.username)
            snapshot, info = await self._known(principal_id)
        else:
            principal_id = info.id
        if info is not None and not info.active:
            raise Unauthenticated("This user is disabled.")
        subjects, known = snapshot.subjects_naming(principal_id, identity.groups)
        return Principal(
            name=identity.username,
            kind="user",
            account_admin=info.account_admin if info is not None else False,
            id=principal_id,
            subjects=subjects,
            idp_groups=known,
            idp=True,
            via="oidc",
            credential_expires_at=identity.expires_at,
        )

    async def signed_in(self, principal: Principal) -> None:
        """A person signed in through the identity provider: the sign-in hooks are told (a hook that fails is
        logged; the sign-in stands)."""
        for hook in self.sign_in_hooks:
            try:
                await hook(principal)
            except Exception:
                log.exception("a sign-in hook failed for %s", principal.name)

    def dead_session(self, value: str) -> bool:
        """Whether a session cookie's id is known, without a lookup, to name no live session: it is not of the
        shape the gateway issues, or this replica already found it dead."""
        if not well_formed(value):
            return True
        return self._dead_sessions.get(value) is not None

    def _buried(self, value: str) -> None:
        self._dead_sessions.put(value, True)

    async def from_session(self, value: str) -> tuple[Principal, BrowserSession]:
        """The principal of a browser session's cookie id; Unauthenticated once the session has ended."""
        if self.dead_session(value):
            raise Unauthenticated(SESSION_ENDED)
        session = await self.sessions.find(value) if self.sessions is not None else None
        if session is None:
            self._buried(value)
            raise Unauthenticated(SESSION_ENDED)
        if session.token_hash is not None:
            try:
                await self._from_token_hash(session.token_hash, None)
            except Unauthenticated:
                await self.sessions.end(value, reason=SIGN_IN_TOKEN_GONE)  # type: ignore[union-attr]  # found above
                self._buried(value)
                raise Unauthenticated(
                    "The token this session was made with is no longer valid; sign in again."
                ) from None
        snapshot, info = await self._known(session.principal_id)
        if info is None or not info.active:
            raise Unauthenticated("This user is disabled or deleted.")
        if info.kind != "user":  # a session made with a service principal's token before sign-in refused them
            await self.sessions.end(value, reason=NOT_A_PERSON)  # type: ignore[union-attr]  # found above
            self._buried(value)
            raise Unauthenticated("A service principal is not a person and cannot hold a browser session.")
        subjects, known = snapshot.subjects_naming(info.id, session.groups)  # the identity provider's, as for tokens
        principal = Principal(
            name=info.name,
            kind=info.kind,
            account_admin=info.account_admin,
            id=info.id,
            subjects=subjects,
            idp_groups=known,
            idp=session.via == "oidc",
            via="session",
            credential_expires_at=session.expires_at,
            minted_with=session.token_hash,
            session_hash=session_hash(value),
        )
        return principal, session

    async def _provision(self, username: str) -> int:
        known = self._oidc_users.get(username)
        if known is not None:
            return known
        for _ in range(PROVISION_ATTEMPTS):
            generation = self._generation
            async with self._sessionmaker() as session, session.begin():
                row, created = await PrincipalRepository(session).get_or_create_user(username)
                if row is not None and created:
                    # A new principal: every replica (this one before answering) must know it, or nothing it
                    # asks for about itself (its own tokens, grants to it) would find it. Only a row this
                    # transaction made is recorded: one read, not made here, may be deleted by now, and
                    # recording it after its deletion would bring it back into every replica's policy.
                    await PolicyVersionRepository(session).bump([principal_set(row)])
            if row is None:  # only rows older than the name rules can hold a user name as another kind
                raise Unauthenticated("This user name belongs to another principal; ask an account admin.")
            if not row.active:
                raise Unauthenticated("This user is disabled.")
            info = await self._policy.found(partial(_the_user, principal_id=row.id, username=username))
            if info is not None:
                if generation == self._generation:  # else the row may be stale: this request only uses it
                    self._oidc_users[username] = row.id
                return row.id
            # The user read was deleted or renamed meanwhile (its creator recorded it in the policy, which has
            # moved on since): provision again, which makes a new user if the name is free now.
        raise Unauthenticated("This user changed while signing in; try again.")


def _the_user(snapshot: PolicySnapshot, principal_id: int, username: str) -> PrincipalInfo | None:
    info = snapshot.principal(principal_id)
    return info if info is not None and info.kind == "user" and info.name == username else None


def scheme_of(authorization: str | None) -> tuple[str, str]:
    """(scheme, lower-cased; its value) of an Authorization header: the one reading of it that both
    authentication (`_credentials`) and the middleware's check of a browser's Basic credentials use."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    return scheme.lower(), value.strip()


def is_basic(authorization: str | None) -> bool:
    return scheme_of(authorization)[0] == "basic"


def _credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """(user name, secret) from a Bearer or Basic header."""
    if not authorization:
        return None, None
    scheme, value = scheme_of(authorization)
    if scheme == "bearer":
        return None, value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        username, sep, password = decoded.partition(":")
        return (username or None, password or None) if sep else (None, None)
    return None, None
