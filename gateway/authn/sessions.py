"""Browser sessions of the web UI: an opaque id in a cookie, everything else in PostgreSQL.

A session is made only by a sign-in (a personal access token on the sign-in page, or the identity
provider's answer) and always with a new random id (256 bits): an id a browser brought along is never
kept, so nobody can plant one and wait for its owner to sign in (session fixation). The database holds
the SHA-256 of the id, so a copy of the table signs nobody in. Every replica reads the same rows: a
session ends everywhere the moment its row is gone (sign-out), when it has been unused for the idle
lifetime, or at its absolute end (the configured lifetime, or sooner the expiry of the token it was made
with). The cookie carrying the id is HttpOnly and SameSite=Lax, and Secure with the `__Host-` prefix
behind https (gateway/authn/browser.py).

A personal access token created in a session (`/api/2.0/token/create`, or an admin's on-behalf-of token)
records it (`tokens.session_hash`) and is revoked, with every token minted with it, whenever the session is
ended: signed out, ended by its owner or an account admin, or replaced by the browser's next sign-in. Every
replica drops its token cache then, as for any revocation, and each revoked token gets its own `token.revoke`
audit row in the same transaction, saying why (never the token nor its hash). Otherwise a stolen cookie would
buy a token that outlives the session the person or an admin ended. A session that idles out or reaches its end is only
forgotten: the token's expiry, no later than the session's, already bounds it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail
from gateway.authn.repository import SessionRepository
from gateway.authz.live import LivePolicy
from gateway.principals.service import revoke_session_tokens

SIGN_IN_SECONDS = 600  # an OIDC sign-in must come back from the provider within this
MAX_COOKIE_CHARS = 128
MAX_USER_AGENT_CHARS = 512
MAX_HANDLE_CHARS = 32
# Session ids one request ends at most (every value of the cookie it brings): a browser holds one, and every
# cookie planted beside it one more. Chromium keeps at most 180 cookies per host, so this is all of them.
MAX_PRESENTED = 200
# Why a session's tokens were revoked, in their `token.revoke` audit rows.
SIGNED_OUT = "signed out"
REPLACED = "replaced by a new sign-in"
SIGN_IN_TOKEN_GONE = "the token the session was made with is no longer valid"
NOT_A_PERSON = "a service principal cannot hold a browser session"


def ended_by(who: str) -> str:
    return f"session ended by {who}"


# What `secrets.token_urlsafe(32)` gives, the only shape of id a session was ever made with.
_ISSUED = re.compile(r"[A-Za-z0-9_-]{43}")


def well_formed(value: str) -> bool:
    """Whether `value` could be a session id the gateway issued; no other is worth a lookup."""
    return _ISSUED.fullmatch(value) is not None


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def session_hash(value: str) -> bytes:
    """What the database keeps of a session's id (`browser_sessions.id_hash`, `tokens.session_hash`)."""
    return _hash(value)


@dataclass(frozen=True, slots=True)
class BrowserSession:
    principal_id: int
    via: str  # "token" or "oidc": how the person signed in
    expires_at: datetime
    token_hash: bytes | None = None  # the personal access token it was made with, which must stay valid
    groups: tuple[str, ...] = ()  # the identity provider's groups at sign-in


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as its owner and account admins see it: never its id, nor the id's hash."""

    handle: str  # its public name, which authenticates nothing
    principal_id: int
    principal_name: str
    via: str
    created_at: datetime
    last_used_at: datetime  # to within a minute (authn/repository.py, TOUCH_INTERVAL)
    expires_at: datetime
    user_agent: str | None
    ip_address: str | None
    current: bool  # the session the asking browser holds


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    state: str
    nonce: str
    code_verifier: str
    next_path: str


class BrowserSessions:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        idle_seconds: int,
        max_seconds: int,
        policy: LivePolicy | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.idle = timedelta(seconds=idle_seconds)
        self.lifetime = timedelta(seconds=max_seconds)
        self.policy = policy  # moved when ending sessions revokes tokens: every replica drops its token cache
        self.audit = audit  # a `token.revoke` row per revoked token, written with the revocation

    async def _revoke_tokens(self, session: AsyncSession, ended: Sequence[object], actor: str, reason: str) -> bool:
        """In the transaction that ended these sessions (their id hashes), revoke the tokens created in them and
        audit each as `token.revoke` by `actor` for `reason`; whether there were any (then the policy has moved,
        and this replica reloads it once that commits)."""
        hashes = [bytes(held) for held in ended if isinstance(held, bytes | memoryview)]
        revoked = await revoke_session_tokens(session, self.audit, hashes, actor, reason)
        if revoked and self.policy is not None:
            await self.policy.bump(session, [])  # no grant changed: every replica empties its token cache
        return bool(revoked)

    async def _after_revoking(self, revoked: bool) -> None:
        if revoked and self.policy is not None:
            await self.policy.reload()  # this replica, before the answer: the revocation holds at once

    async def begin(
        self,
        principal_id: int,
        via: str,
        *,
        ends_by: datetime | None = None,
        token_hash: bytes | None = None,
        groups: Sequence[str] = (),
        replacing: Sequence[str] = (),
        actor: str = "gateway",
        user_agent: str | None = None,
        ip_address: str | None = None,
    ) -> tuple[str, datetime]:
        """A new session (id, end): always a fresh id; `replacing`, every id the browser brought, is ended.
        `actor` is who signs in (the audit rows of the replaced sessions' tokens name them). `user_agent` and
        `ip_address` say which browser signed in, for its owner's list of sessions."""
        value = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + self.lifetime
        if ends_by is not None:
            expires_at = min(expires_at, ends_by)
        async with self.sessionmaker() as session, session.begin():
            repository = SessionRepository(session)
            await repository.purge(self.idle)
            replaced = await repository.remove_many([_hash(held) for held in _presented(replacing)])
            revoked = await self._revoke_tokens(session, [row["id_hash"] for row in replaced], actor, REPLACED)
            await repository.add(
                _hash(value),
                principal_id,
                via,
                expires_at,
                token_hash=token_hash,
                groups=sorted(set(groups)),
                handle=secrets.token_hex(16),
                user_agent=user_agent[:MAX_USER_AGENT_CHARS] if user_agent else None,
                ip_address=ip_address[:64] if ip_address else None,
            )
        await self._after_revoking(revoked)
        return value, expires_at

    async def listed(self, principal_id: int | None, current: str | None = None) -> list[SessionInfo]:
        """The live sessions of a principal (None: everyone's); `current`, the asking browser's cookie id."""
        held = _hash(current) if current and len(current) <= MAX_COOKIE_CHARS else None
        async with self.sessionmaker() as session:
            rows = await SessionRepository(session).listed(principal_id, self.idle)
        return [
            SessionInfo(
                handle=str(row["handle"]),
                principal_id=int(row["principal_id"]),
                principal_name=str(row["principal_name"]),
                via=str(row["via"]),
                created_at=row["created_at"],
                last_used_at=row["last_seen_at"],
                expires_at=row["expires_at"],
                user_agent=row["user_agent"],
                ip_address=row["ip_address"],
                current=held is not None and bytes(row["id_hash"]) == held,
            )
            for row in rows
        ]

    async def end_handle(
        self, handle: str, principal_id: int | None, *, actor: str = "gateway"
    ) -> BrowserSession | None:
        """End the session named `handle`, if it is `principal_id`'s (None: anyone's), as `actor`; what it was."""
        if not handle or len(handle) > MAX_HANDLE_CHARS:
            return None
        async with self.sessionmaker() as session, session.begin():
            row = await SessionRepository(session).remove_handle(handle, principal_id)
            ended = [row["id_hash"]] if row is not None else []
            revoked = await self._revoke_tokens(session, ended, actor, ended_by(actor))
        await self._after_revoking(revoked)
        return _session(row) if row is not None else None

    async def end_all(self, principal_id: int, keeping: str | None = None, *, actor: str = "gateway") -> int:
        """End every session of a principal but the one of the cookie id `keeping`, as `actor`; how many ended."""
        kept = _hash(keeping) if keeping and len(keeping) <= MAX_COOKIE_CHARS else None
        async with self.sessionmaker() as session, session.begin():
            ended = await SessionRepository(session).remove_all(principal_id, kept)
            revoked = await self._revoke_tokens(session, ended, actor, ended_by(actor))
        await self._after_revoking(revoked)
        return len(ended)

    async def user_id(self, name: str) -> int | None:
        async with self.sessionmaker() as session:
            return await SessionRepository(session).user_id(name)

    async def find(self, value: str) -> BrowserSession | None:
        """The live session of a cookie's id, or None (unknown, signed out, idle too long, expired)."""
        if not well_formed(value):
            return None
        async with self.sessionmaker() as session, session.begin():
            row = await SessionRepository(session).live(_hash(value), self.idle)
        return _session(row) if row is not None else None

    async def end(self, value: str, *, reason: str, actor: str = "gateway") -> BrowserSession | None:
        """End the session of this id: it is gone for every replica; what it was, if it existed. Its tokens'
        audit rows name `actor` and `reason`."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        async with self.sessionmaker() as session, session.begin():
            row = await SessionRepository(session).remove(_hash(value))
            ended = [row["id_hash"]] if row is not None else []
            revoked = await self._revoke_tokens(session, ended, actor, reason)
        await self._after_revoking(revoked)
        return _session(row) if row is not None else None

    async def end_presented(self, values: Sequence[str], *, actor: str = "anonymous") -> list[BrowserSession]:
        """Sign-out of a browser: every session id it presented is ended (one is its own; another may have been
        planted beside it, and ending a session whose id one holds gives nothing the id did not); what they were."""
        hashes = [_hash(value) for value in _presented(values)]
        if not hashes:
            return []
        async with self.sessionmaker() as session, session.begin():
            rows = await SessionRepository(session).remove_many(hashes)
            revoked = await self._revoke_tokens(session, [row["id_hash"] for row in rows], actor, SIGNED_OUT)
        await self._after_revoking(revoked)
        return [_session(row) for row in rows]

    async def begin_sign_in(self, attempt: SignInAttempt) -> str:
        """Remember an OIDC sign-in under way; the id for the browser's sign-in cookie."""
        value = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + timedelta(seconds=SIGN_IN_SECONDS)
        async with self.sessionmaker() as session, session.begin():
            await SessionRepository(session).add_attempt(
                _hash(value), attempt.state, attempt.nonce, attempt.code_verifier, attempt.next_path, expires_at
            )
        return value

    async def take_sign_in(self, value: str) -> SignInAttempt | None:
        """The sign-in under way for this cookie's id, used up; None if unknown or too old."""
        if not well_formed(value):
            return None
        async with self.sessionmaker() as session, session.begin():
            row = await SessionRepository(session).take_attempt(_hash(value))
        if row is None:
            return None
        return SignInAttempt(row["state"], row["nonce"], row["code_verifier"], row["next_path"])


def _presented(values: Sequence[str]) -> list[str]:
    """The distinct ids worth a lookup among a cookie's values: of the shape the gateway issues, MAX_PRESENTED
    at most (the last ones: a browser sends the cookies of the longest path first, its own `Path=/` one last)."""
    return list(dict.fromkeys(v for v in values if well_formed(v)))[-MAX_PRESENTED:]


def _session(row: dict[str, object]) -> BrowserSession:
    groups = row.get("groups")
    token_hash = row.get("token_hash")
    expires_at = row["expires_at"]
    assert isinstance(expires_at, datetime)
    return BrowserSession(
        principal_id=int(str(row["principal_id"])),
        via=str(row["via"]),
        expires_at=expires_at,
        token_hash=bytes(token_hash) if isinstance(token_hash, bytes | memoryview) else None,
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
    )
