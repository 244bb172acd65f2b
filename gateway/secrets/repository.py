"""Every SQL statement about secret scopes and the secrets runs read (`secret_scopes`, migrations 0010 and
0013; `run_secret_reads`, migration 0012)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


def _stored(row: SecretScopeRow) -> StoredScope:
    return StoredScope(row.workspace_id, row.name, row.vault, row.location, row.created_by, row.users_permission)


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

    async def set_users_permission(self, workspace_id: int, name: str, permission: str | None) -> None:
        """What every user of the workspace holds on the scope (None: nothing of its own)."""
        await self.session.execute(
            update(SecretScopeRow)
            .where(SecretScopeRow.workspace_id == workspace_id, SecretScopeRow.name == name)
            .values(users_permission=permission)
        )

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
