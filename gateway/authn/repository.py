"""Every SQL statement about browser sessions and OIDC sign-ins under way (tables of migration 0017)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.retention import one_batch
from gateway.db.tables import browser_sessions, sign_in_attempts
from gateway.principals.names import canonical

# The principals' names a session list shows (the ORM's table, seen through these columns only).
principals = sa.table(
    "principals", sa.column("id", sa.BigInteger), sa.column("kind", sa.String), sa.column("name", sa.String)
)

# last_seen_at is written at most this often per session: the idle lifetime is kept to within this.
TOUCH_INTERVAL = timedelta(seconds=60)

# Each sign-in start deletes at most this many expired attempts: far more than the one row it adds, so expired
# rows never pile up between sessions begun, and a start never pays for a long backlog at once.
EXPIRED_ATTEMPTS_PER_START = 100


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        id_hash: bytes,
        principal_id: int,
        via: str,
        expires_at: datetime,
        *,
        token_hash: bytes | None,
        groups: list[str],
        handle: str,
        user_agent: str | None = None,
        ip_address: str | None = None,
    ) -> None:
        await self.session.execute(
            sa.insert(browser_sessions).values(
                id_hash=id_hash,
                principal_id=principal_id,
                via=via,
                token_hash=token_hash,
                groups=groups,
                expires_at=expires_at,
                handle=handle,
                user_agent=user_agent,
                ip_address=ip_address,
            )
        )

    async def listed(self, principal_id: int | None, idle: timedelta) -> list[dict[str, Any]]:
        """The live sessions of a principal (None: of everyone), newest first, with the principal's name."""
        now = sa.func.now()
        query = (
            sa.select(
                browser_sessions.c.id_hash,
                browser_sessions.c.handle,
                browser_sessions.c.principal_id,
                principals.c.name.label("principal_name"),
                browser_sessions.c.via,
                browser_sessions.c.created_at,
                browser_sessions.c.last_seen_at,
                browser_sessions.c.expires_at,
                browser_sessions.c.user_agent,
                browser_sessions.c.ip_address,
            )
            .join(principals, principals.c.id == browser_sessions.c.principal_id)
            .where(browser_sessions.c.expires_at > now, browser_sessions.c.last_seen_at > now - idle)
            .order_by(browser_sessions.c.created_at.desc(), browser_sessions.c.handle)
        )
        if principal_id is not None:
            query = query.where(browser_sessions.c.principal_id == principal_id)
        return [dict(row) for row in (await self.session.execute(query)).mappings()]

    async def remove_handle(self, handle: str, principal_id: int | None) -> dict[str, Any] | None:
        """Delete the session named `handle` (only if it is `principal_id`'s, unless None); what it was."""
        statement = sa.delete(browser_sessions).where(browser_sessions.c.handle == handle)
        if principal_id is not None:
            statement = statement.where(browser_sessions.c.principal_id == principal_id)
        found = (await self.session.execute(statement.returning(*browser_sessions.c))).mappings().first()
        return dict(found) if found is not None else None

    async def remove_all(self, principal_id: int, keeping: bytes | None) -> list[bytes]:
        """Delete every session of a principal but the one whose id hashes to `keeping`; the id hashes of those."""
        statement = sa.delete(browser_sessions).where(browser_sessions.c.principal_id == principal_id)
        if keeping is not None:
            statement = statement.where(browser_sessions.c.id_hash != keeping)
        result = await self.session.execute(statement.returning(browser_sessions.c.id_hash))
        return [bytes(held) for held in result.scalars().all()]

    async def user_id(self, name: str) -> int | None:
        """The id of the user named `name` (user names are kept lower-cased, `gateway.principals.names`)."""
        found = await self.session.execute(
            sa.select(principals.c.id).where(principals.c.kind == "user", principals.c.name == canonical("user", name))
        )
        return found.scalar_one_or_none()

    async def live(self, id_hash: bytes, idle: timedelta) -> dict[str, Any] | None:
        """The session, if it has neither expired nor been idle longer than `idle`; its last use is noted."""
        now = sa.func.now()
        found = (
            (
                await self.session.execute(
                    sa.select(browser_sessions).where(
                        browser_sessions.c.id_hash == id_hash,
                        browser_sessions.c.expires_at > now,
                        browser_sessions.c.last_seen_at > now - idle,
                    )
                )
            )
            .mappings()
            .first()
        )
        if found is None:
            return None
        await self.session.execute(
            sa.update(browser_sessions)
            .where(browser_sessions.c.id_hash == id_hash, browser_sessions.c.last_seen_at < now - TOUCH_INTERVAL)
            .values(last_seen_at=now)
        )
        return dict(found)

    async def remove(self, id_hash: bytes) -> dict[str, Any] | None:
        """Delete the session; what it was (None if there was none)."""
        found = (
            (
                await self.session.execute(
                    sa.delete(browser_sessions)
                    .where(browser_sessions.c.id_hash == id_hash)
                    .returning(*browser_sessions.c)
                )
            )
            .mappings()
            .first()
        )
        return dict(found) if found is not None else None

    async def remove_many(self, id_hashes: list[bytes]) -> list[dict[str, Any]]:
        """Delete these sessions in one statement; what those that existed were."""
        if not id_hashes:
            return []
        found = await self.session.execute(
            sa.delete(browser_sessions).where(browser_sessions.c.id_hash.in_(id_hashes)).returning(*browser_sessions.c)
        )
        return [dict(row) for row in found.mappings().all()]

    async def purge(self, idle: timedelta) -> None:
        """Forget ended sessions and sign-ins (their rows would never authenticate again anyway)."""
        now = sa.func.now()
        await self.session.execute(
            sa.delete(browser_sessions).where(
                sa.or_(browser_sessions.c.expires_at <= now, browser_sessions.c.last_seen_at <= now - idle)
            )
        )
        await self.session.execute(sa.delete(sign_in_attempts).where(sign_in_attempts.c.expires_at <= now))

    async def add_attempt(
        self, id_hash: bytes, state: str, nonce: str, code_verifier: str, next_path: str, expires_at: datetime
    ) -> None:
        """Store a sign-in under way, first deleting some expired ones (through their index `sign_in_attempts_expiry`;
        rows a concurrent start holds are skipped, not waited on)."""
        await self.session.execute(self.expired_attempts())
        await self.session.execute(
            sa.insert(sign_in_attempts).values(
                id_hash=id_hash,
                state=state,
                nonce=nonce,
                code_verifier=code_verifier,
                next_path=next_path,
                expires_at=expires_at,
            )
        )

    @staticmethod
    def expired_attempts() -> sa.Delete:
        """The DELETE of at most EXPIRED_ATTEMPTS_PER_START expired sign-in attempts."""
        return one_batch(
            sign_in_attempts,
            sign_in_attempts.c.expires_at <= sa.func.now(),
            batch=EXPIRED_ATTEMPTS_PER_START,
            key=sign_in_attempts.c.id_hash,
        )

    async def take_attempt(self, id_hash: bytes) -> dict[str, Any] | None:
        """The sign-in attempt, removed (an attempt is used once), if it has not expired."""
        found = (
            (
                await self.session.execute(
                    sa.delete(sign_in_attempts)
                    .where(sign_in_attempts.c.id_hash == id_hash)
                    .returning(*sign_in_attempts.c)
                )
            )
            .mappings()
            .first()
        )
        if found is None or found["expires_at"] <= datetime.now(found["expires_at"].tzinfo):
            return None
        return dict(found)
