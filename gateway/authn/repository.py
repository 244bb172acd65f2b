"""Every SQL statement about browser sessions and OIDC sign-ins under way (tables of migration 0017)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.tables import browser_sessions, sign_in_attempts

# last_seen_at is written at most this often per session: the idle lifetime is kept to within this.
TOUCH_INTERVAL = timedelta(seconds=60)


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
    ) -> None:
        await self.session.execute(
            sa.insert(browser_sessions).values(
                id_hash=id_hash,
                principal_id=principal_id,
                via=via,
                token_hash=token_hash,
                groups=groups,
                expires_at=expires_at,
            )
        )

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
