"""Browser sessions of the web UI: an opaque id in a cookie, everything else in PostgreSQL.

A session is made only by a sign-in (a personal access token on the sign-in page, or the identity
provider's answer) and always with a new random id (256 bits): an id a browser brought along is never
kept, so nobody can plant one and wait for its owner to sign in (session fixation). The database holds
the SHA-256 of the id, so a copy of the table signs nobody in. Every replica reads the same rows: a
session ends everywhere the moment its row is gone (sign-out), when it has been unused for the idle
lifetime, or at its absolute end (the configured lifetime, or sooner the expiry of the token it was made
with). The cookie carrying the id is HttpOnly and SameSite=Lax, and Secure with the `__Host-` prefix
behind https (gateway/authn/browser.py).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authn.repository import SessionRepository

SIGN_IN_SECONDS = 600  # an OIDC sign-in must come back from the provider within this
MAX_COOKIE_CHARS = 128


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True, slots=True)
class BrowserSession:
    principal_id: int
    via: str  # "token" or "oidc": how the person signed in
    expires_at: datetime
    token_hash: bytes | None = None  # the personal access token it was made with, which must stay valid
    groups: tuple[str, ...] = ()  # the identity provider's groups at sign-in


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    state: str
    nonce: str
    code_verifier: str
    next_path: str


class BrowserSessions:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, idle_seconds: int, max_seconds: int) -> None:
        self.sessionmaker = sessionmaker
        self.idle = timedelta(seconds=idle_seconds)
        self.lifetime = timedelta(seconds=max_seconds)

    async def begin(
        self,
        principal_id: int,
        via: str,
        *,
        ends_by: datetime | None = None,
        token_hash: bytes | None = None,
        groups: Sequence[str] = (),
        replacing: str | None = None,
    ) -> tuple[str, datetime]:
        """A new session (id, end): always a fresh id; `replacing`, the id the browser brought, is ended."""
        value = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + self.lifetime
        if ends_by is not None:
            expires_at = min(expires_at, ends_by)
        async with self.sessionmaker() as session, session.begin():
            repository = SessionRepository(session)
            await repository.purge(self.idle)
            if replacing and len(replacing) <= MAX_COOKIE_CHARS:
                await repository.remove(_hash(replacing))
            await repository.add(
                _hash(value),
                principal_id,
                via,
                expires_at,
                token_hash=token_hash,
                groups=sorted(set(groups)),
            )
        return value, expires_at

    async def find(self, value: str) -> BrowserSession | None:
        """The live session of a cookie's id, or None (unknown, signed out, idle too long, expired)."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        async with self.sessionmaker() as session, session.begin():
            row = await SessionRepository(session).live(_hash(value), self.idle)
        return _session(row) if row is not None else None

    async def end(self, value: str) -> BrowserSession | None:
        """Sign-out: the session is gone for every replica; what it was, if it existed."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        async with self.sessionmaker() as session, session.begin():
            row = await SessionRepository(session).remove(_hash(value))
        return _session(row) if row is not None else None

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
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        async with self.sessionmaker() as session, session.begin():
            row = await SessionRepository(session).take_attempt(_hash(value))
        if row is None:
            return None
        return SignInAttempt(row["state"], row["nonce"], row["code_verifier"], row["next_path"])


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
