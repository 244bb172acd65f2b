"""Changes as another replica makes them, less the NOTIFY: committed, with the policy version moved, but no
replica has heard of them yet (until its next poll, `server.policy_poll_seconds`). A replica that must answer
correctly right after a change made elsewhere is tested with these; one that follows by NOTIFY is not."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from gateway.principals.tokens import hash_token


def made_elsewhere(database_url: str, kind: str, name: str, token: str | None = None, *, admin: bool = True) -> int:
    """An account admin (with admin=False a plain principal), and a token of theirs when given; its id."""

    async def make() -> int:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction():
                principal_id = await connection.fetchval(
                    "INSERT INTO principals (kind, name, display_name, active, account_admin) "
                    "VALUES ($1, $2, '', true, $3) RETURNING id",
                    kind,
                    name,
                    admin,
                )
                if token is not None:
                    key = await connection.fetchval("SELECT value FROM gateway_secrets WHERE name = 'token_hash_key'")
                    await connection.execute(
                        "INSERT INTO tokens (token_id, principal_id, token_hash, comment) VALUES ($1, $2, $3, '')",
                        uuid.uuid4().hex,
                        principal_id,
                        hash_token(bytes(key), token),
                    )
                await connection.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1")
            return int(principal_id)
        finally:
            await connection.close()

    return asyncio.run(make())


def granted_elsewhere(
    database_url: str,
    principal_id: int,
    domain: str,
    obj: str,
    privilege: str,
    *,
    leaves: tuple[int, int] | None = None,
) -> None:
    """A grant, as the permissions API of another replica adds one; with `leaves` (member id, group id), that
    membership ends in the same change."""

    async def grant() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO grants (principal_id, domain, object, privilege, created_by) "
                    "VALUES ($1, $2, $3, $4, 'elsewhere')",
                    principal_id,
                    domain,
                    obj,
                    privilege,
                )
                if leaves is not None:
                    member_id, group_id = leaves
                    await connection.execute(
                        "DELETE FROM group_members WHERE member_id = $1 AND group_id = $2", member_id, group_id
                    )
                await connection.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1")
        finally:
            await connection.close()

    asyncio.run(grant())


def changed_elsewhere(database_url: str, statement: str, *args: object) -> None:
    """Any other change of principals, as another replica makes it (a membership, a role): `statement` and the
    policy version moved, in one transaction."""

    async def change() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction():
                await connection.execute(statement, *args)
                await connection.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1")
        finally:
            await connection.close()

    asyncio.run(change())
