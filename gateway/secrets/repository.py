"""Every SQL statement about secret scopes and the secrets runs read (`secret_scopes`, migrations 0010 and
0013; `run_secret_reads`, migration 0012)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import RunSecretReadRow, SecretScopeRow
from gateway.db.tables import vault_values

# NOTIFY'd with a run's id when the run read a secret it had not read before (gateway/secrets/taint.py).
SECRET_READS_CHANNEL = "fedgate_secret_reads"


@dataclass(frozen=True, slots=True)
class StoredScope:
    workspace_id: int
    name: str
    vault: str
    location: str
    created_by: str
    users_permission: str | None = None  # what every user of the workspace holds on it (`users` in its ACL)
    id: int = 0  # the row's: a scope deleted and created again under the name is another scope


def _stored(row: SecretScopeRow) -> StoredScope:
    return StoredScope(
        row.workspace_id, row.name, row.vault, row.location, row.created_by, row.users_permission, int(row.id)
    )


class ScopeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, scope: StoredScope) -> bool:
        """Whether the scope was created (False: its name or its vault location is taken)."""
        result = await self.session.execute(
            insert(SecretScopeRow)
            .values(
                workspace_id=scope.workspace_id,
                name=scope.name,
                vault=scope.vault,
                location=scope.location,
                created_by=scope.created_by,
                users_permission=scope.users_permission,
            )
            .on_conflict_do_nothing()  # the name, or the location (still held by a renumbered workspace's scope)
            .returning(SecretScopeRow.id)
        )
        return result.scalar_one_or_none() is not None

    async def get(self, workspace_id: int, name: str) -> StoredScope | None:
        row = await self.session.scalar(
            select(SecretScopeRow).where(SecretScopeRow.workspace_id == workspace_id, SecretScopeRow.name == name)
        )
        return _stored(row) if row is not None else None

    async def all(self, workspace_id: int) -> list[StoredScope]:
        result = await self.session.scalars(
            select(SecretScopeRow).where(SecretScopeRow.workspace_id == workspace_id).order_by(SecretScopeRow.name)
        )
        return [_stored(row) for row in result]

    async def count(self, workspace_id: int) -> int:
        result = await self.session.scalar(
            select(func.count()).select_from(SecretScopeRow).where(SecretScopeRow.workspace_id == workspace_id)
        )
        return int(result or 0)

    async def held(self, scope: StoredScope) -> bool:
        """Whether `scope` (the very row a check read) still exists, kept so until this transaction ends.

        The row is locked FOR KEY SHARE: a deletion of the scope (`remove`, which comes before the deletion of its
        grants) waits for this transaction, so a grant it adds is deleted with the scope, never left behind to be
        inherited by a scope created later under the name. False once the scope was deleted, or deleted and created
        again (another row): what the caller checked was another scope.
        """
        found = await self.session.scalar(
            select(SecretScopeRow.id)
            .where(
                SecretScopeRow.workspace_id == scope.workspace_id,
                SecretScopeRow.name == scope.name,
                SecretScopeRow.id == scope.id,
            )
            .with_for_update(key_share=True)
        )
        return found is not None

    async def set_users_permission(self, scope: StoredScope, permission: str | None) -> bool:
        """What every user of the workspace holds on the scope (None: nothing of its own); False when the scope
        checked (that very row) is gone."""
        result = await self.session.execute(
            update(SecretScopeRow)
            .where(
                SecretScopeRow.workspace_id == scope.workspace_id,
                SecretScopeRow.name == scope.name,
                SecretScopeRow.id == scope.id,
            )
            .values(users_permission=permission)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, workspace_id: int, name: str) -> bool:
        result = await self.session.execute(
            delete(SecretScopeRow).where(SecretScopeRow.workspace_id == workspace_id, SecretScopeRow.name == name)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def renumber(self, old_id: int, new_id: int) -> None:
        """The scopes follow their workspace; their values stay where they are (`location` does not change)."""
        await self.session.execute(
            update(SecretScopeRow).where(SecretScopeRow.workspace_id == old_id).values(workspace_id=new_id)
        )

    async def remove_workspace(self, workspace_id: int, builtin_vault: str) -> int:
        """Every scope of the workspace, and the built-in vault's values of those scopes (same database)."""
        result = await self.session.execute(
            delete(SecretScopeRow)
            .where(SecretScopeRow.workspace_id == workspace_id)
            .returning(SecretScopeRow.vault, SecretScopeRow.location)
        )
        rows = result.all()
        builtin = [location for vault, location in rows if vault == builtin_vault]
        if builtin:
            await self.session.execute(delete(vault_values).where(vault_values.c.location.in_(builtin)))
        return len(rows)


@dataclass(frozen=True, slots=True)
class SecretRead:
    """A secret a run read, and where its scope keeps the value now (the scope's row; never the value)."""

    workspace_id: int
    run_id: str
    scope: str
    key: str
    vault: str
    location: str
    users_permission: str | None = None  # what every user of the workspace holds on the scope


class ReadRepository:
    """Which runs read which secrets (scope and key; never a value, never a hash of one)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, workspace_id: int, run_id: str, scope: str, keys: Iterable[str]) -> int:
        """Note the keys a run read; NOTIFY the other replicas when one is new to it (at commit). How many were."""
        rows = [{"workspace_id": workspace_id, "run_id": run_id, "scope": scope, "key": key} for key in keys]
        if not rows:
            return 0
        result = await self.session.execute(
            insert(RunSecretReadRow)
            .values(rows)
            .on_conflict_do_nothing(constraint="run_secret_reads_unique")
            .returning(RunSecretReadRow.id)
        )
        added = len(result.all())
        if added:
            await self.session.execute(select(func.pg_notify(SECRET_READS_CHANNEL, run_id)))
        return added

    async def run_ids(self) -> list[str]:
        """Every run that read a secret."""
        return list(await self.session.scalars(select(RunSecretReadRow.run_id).distinct()))

    async def has_run(self, run_id: str) -> bool:
        return bool(await self.session.scalar(select(exists().where(RunSecretReadRow.run_id == run_id))))

    async def of_runs(self, run_ids: Iterable[str]) -> list[SecretRead]:
        """The secrets these runs read whose scope still exists, with the scope's vault and location."""
        result = await self.session.execute(
            select(
                RunSecretReadRow.workspace_id,
                RunSecretReadRow.run_id,
                RunSecretReadRow.scope,
                RunSecretReadRow.key,
                SecretScopeRow.vault,
                SecretScopeRow.location,
                SecretScopeRow.users_permission,
            )
            .join(
                SecretScopeRow,
                (SecretScopeRow.workspace_id == RunSecretReadRow.workspace_id)
                & (SecretScopeRow.name == RunSecretReadRow.scope),
            )
            .where(RunSecretReadRow.run_id.in_(list(run_ids)))
            .order_by(RunSecretReadRow.id)
        )
        return [SecretRead(*row) for row in result.all()]

    async def renumber(self, old_id: int, new_id: int) -> None:
        await self.session.execute(
            update(RunSecretReadRow).where(RunSecretReadRow.workspace_id == old_id).values(workspace_id=new_id)
        )

    async def remove_workspace(self, workspace_id: int) -> int:
        result = await self.session.execute(
            delete(RunSecretReadRow).where(RunSecretReadRow.workspace_id == workspace_id)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


# A run's read, decided and noted in one autocommitted statement (service.py, `SecretScopes._read`): the scopes
# asked for ($2, in order) with whether the caller may read each ($3: its own grants say so; $4: it is a user
# of the workspace, for the scope's `users` entry), the run's state version ($6 subjects, runstate.py) and,
# only when every scope is readable and the version is the one the run was checked at ($7; $8: checked by
# this request, so a change in flight does not matter), the audit rows ($9 actor, $10 action, $11 targets,
# $12 details) and the keys the run read ($13 scopes, $14 keys, NOTIFYing $16, SECRET_READS_CHANNEL, when one is new).
_CHECKED_READ = """
WITH wanted AS (
    SELECT w.name, w.own, w.ord FROM unnest($2::text[], $3::bool[]) WITH ORDINALITY AS w(name, own, ord)
), found AS (
    SELECT wanted.name, wanted.ord, s.vault, s.location, s.users_permission,
           s.id IS NOT NULL
           AND (wanted.own OR ($4 AND coalesce(s.users_permission IN ('READ', 'WRITE', 'MANAGE'), false))) AS readable
    FROM wanted LEFT JOIN secret_scopes s ON s.workspace_id = $1 AND s.name = wanted.name
), state AS (
    SELECT coalesce(sum(c.version), 0)::bigint AS version,
           coalesce(bool_and(c.in_flight = 0 OR c.changed_at < now() - make_interval(secs => $15)), true) AS steady
    FROM run_state_changes c WHERE c.subject = ANY($6::text[])
), decision AS (
    -- Never NULL: bool_and skips NULLs, and a NULL would let the inserts below through.
    SELECT coalesce((SELECT bool_and(coalesce(readable, false)) FROM found), false)
           AND $7::bigint IS NOT NULL AND state.version = $7::bigint
           AND ($8 OR state.steady) AS ok
    FROM state
), audited AS (
    INSERT INTO audit_log (actor, action, target, outcome, details, request_id)
    SELECT $9, $10, t.target, 'ok', t.details::jsonb, '' FROM unnest($11::text[], $12::text[]) AS t(target, details)
    WHERE (SELECT ok FROM decision)
    RETURNING 1
), noted AS (
    INSERT INTO run_secret_reads (workspace_id, run_id, scope, key)
    SELECT $1, $5, r.scope, r.key FROM unnest($13::text[], $14::text[]) AS r(scope, key)
    WHERE (SELECT ok FROM decision)
    ON CONFLICT ON CONSTRAINT run_secret_reads_unique DO NOTHING
    RETURNING 1
)
SELECT found.name, found.vault, found.location, found.users_permission, found.readable,
       (SELECT ok FROM decision) AS ok, (SELECT version FROM state) AS version, (SELECT steady FROM state) AS steady,
       (SELECT count(*) FROM audited) AS audited,
       (SELECT count(*) FROM (SELECT pg_notify($16, $5) FROM noted LIMIT 1) AS n) AS notified
FROM found ORDER BY found.ord
"""


@dataclass(frozen=True, slots=True)
class ReadDecision:
    """What the read's statement found: each scope asked for (None: no such scope) and whether it is readable,
    the run's state version, and whether the read was allowed (and so audited and noted)."""

    scopes: list[tuple[str, StoredScope | None, bool]]
    ok: bool
    version: int
    steady: bool  # no change of the run's state in flight


async def checked_read(
    connection: asyncpg.Connection | asyncpg.Pool,
    *,
    workspace_id: int,
    scopes: list[str],
    own: list[bool],
    workspace_user: bool,
    run_id: str,
    subjects: list[str],
    expected_version: int | None,
    checked_now: bool,
    actor: str,
    action: str,
    audit_targets: list[str],
    audit_details: list[str],
    read_scopes: list[str],
    read_keys: list[str],
    in_flight_seconds: float,
) -> ReadDecision:
    rows = await connection.fetch(
        _CHECKED_READ,
        workspace_id,
        scopes,
        own,
        workspace_user,
        run_id,
        subjects,
        expected_version,
        checked_now,
        actor,
        action,
        audit_targets,
        audit_details,
        read_scopes,
        read_keys,
        in_flight_seconds,
        SECRET_READS_CHANNEL,
    )
    found = [
        (
            row["name"],
            StoredScope(workspace_id, row["name"], row["vault"], row["location"], "", row["users_permission"])
            if row["vault"] is not None
            else None,
            bool(row["readable"]),
        )
        for row in rows
    ]
    first = rows[0]
    return ReadDecision(found, bool(first["ok"]), int(first["version"]), bool(first["steady"]))
