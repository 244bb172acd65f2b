"""OIDC sign-ins under way (`sign_in_attempts`) that expired are deleted by later starts, on a migrated database
(the session's embedded PostgreSQL): each start deletes a bounded number of expired rows, live ones stay and can
still be taken, and the delete reads expired rows through their index."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authn.repository import EXPIRED_ATTEMPTS_PER_START, SessionRepository
from gateway.authn.sessions import BrowserSessions, SignInAttempt
from gateway.db.engine import make_engine, make_sessionmaker

EXPIRED = 250
LIVE = 3


def _sessions(sessionmaker: async_sessionmaker[AsyncSession]) -> BrowserSessions:
    return BrowserSessions(sessionmaker, idle_seconds=3600, max_seconds=86400)


def _attempt(n: int) -> SignInAttempt:
    return SignInAttempt(f"state-{n}", f"nonce-{n}", f"verifier-{n}", f"/next/{n}")


async def _seed(database: str) -> None:
    """Expired attempts, and live ones stored by an earlier start that must stay."""
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            """
            INSERT INTO sign_in_attempts (id_hash, state, nonce, code_verifier, next_path, expires_at)
            SELECT sha256(('old-' || n)::bytea), 'old', 'old', 'old', '/', now() - interval '1 second' * n
            FROM generate_series(1, $1) AS n
            """,
            EXPIRED,
        )
        await connection.execute(
            """
            INSERT INTO sign_in_attempts (id_hash, state, nonce, code_verifier, next_path, expires_at)
            SELECT sha256(('live-' || n)::bytea), 'live', 'live', 'live', '/', now() + interval '5 minutes'
            FROM generate_series(1, $1) AS n
            """,
            LIVE,
        )
    finally:
        await connection.close()


async def _counts(database: str) -> tuple[int, int]:
    """(expired, live) rows left."""
    connection = await asyncpg.connect(database)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE expires_at <= now()) AS expired, "
            "count(*) FILTER (WHERE expires_at > now()) AS live FROM sign_in_attempts"
        )
    finally:
        await connection.close()
    assert row is not None
    return int(row["expired"]), int(row["live"])


async def test_each_start_deletes_a_bounded_batch_of_expired_attempts_and_keeps_live_ones(
    database: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _seed(database)
    sessions = _sessions(sessionmaker)
    first = await sessions.begin_sign_in(_attempt(1))
    assert await _counts(database) == (EXPIRED - EXPIRED_ATTEMPTS_PER_START, LIVE + 1)
    cookies = [first] + [await sessions.begin_sign_in(_attempt(n)) for n in range(2, 5)]
    assert await _counts(database) == (0, LIVE + 4)
    # The attempts stored along the way are whole and still taken once each.
    for n, cookie in enumerate(cookies, start=1):
        assert await sessions.take_sign_in(cookie) == _attempt(n)
        assert await sessions.take_sign_in(cookie) is None
    assert await _counts(database) == (0, LIVE)


async def test_starts_at_once_split_the_expired_attempts_between_them(database: str) -> None:
    await _seed(database)
    engines = [make_engine(database, pool_size=1) for _ in range(3)]  # three replicas, each its own pool
    try:
        replicas = [_sessions(make_sessionmaker(each)) for each in engines]
        await asyncio.gather(*(replica.begin_sign_in(_attempt(n)) for n, replica in enumerate(replicas)))
    finally:
        for each in engines:
            await each.dispose()
    # Rows one start held were skipped by the others, not waited on nor counted twice: three bounded batches
    # together reach all 250.
    assert 3 * EXPIRED_ATTEMPTS_PER_START >= EXPIRED
    assert await _counts(database) == (0, LIVE + 3)


async def test_the_purge_reads_expired_attempts_through_their_index(database: str) -> None:
    purge = SessionRepository.expired_attempts().compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    connection = await asyncpg.connect(database)
    try:
        await connection.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN {purge}"))
    finally:
        await connection.close()
    assert "sign_in_attempts_expiry" in plan, plan
