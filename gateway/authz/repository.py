"""Every SQL statement about grants, registered-model ids, the policy version and the audit log."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.authz.policy import Grant
from gateway.db.models import GatewaySecretRow, GrantRow, PolicyVersionRow, RegisteredModelRow

POLICY_CHANNEL = "fedgate_policy"


class GrantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> list[Grant]:
        result = await self.session.execute(
            select(GrantRow.principal_id, GrantRow.domain, GrantRow.object, GrantRow.privilege)
        )
        return [Grant(*row) for row in result.all()]

    async def on(self, domain: str, obj: str) -> Sequence[GrantRow]:
        result = await self.session.execute(
            select(GrantRow).where(GrantRow.domain == domain, GrantRow.object == obj).order_by(GrantRow.id)
        )
        return result.scalars().all()

    async def add(self, grant: Grant, created_by: str) -> None:
        await self.session.execute(
            insert(GrantRow)
            .values(
                principal_id=grant.principal_id,
                domain=grant.domain,
                object=grant.object,
                privilege=grant.privilege,
                created_by=created_by,
            )
            .on_conflict_do_nothing(constraint="grants_unique")
        )

    async def remove(self, grant: Grant) -> None:
        await self.session.execute(
            delete(GrantRow).where(
                GrantRow.principal_id == grant.principal_id,
                GrantRow.domain == grant.domain,
                GrantRow.object == grant.object,
                GrantRow.privilege == grant.privilege,
            )
        )

    async def clear(self, domain: str, obj: str, principal_id: int | None = None) -> None:
        statement = delete(GrantRow).where(GrantRow.domain == domain, GrantRow.object == obj)
        if principal_id is not None:
            statement = statement.where(GrantRow.principal_id == principal_id)
        await self.session.execute(statement)


class PolicyVersionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def current(self) -> int:
        result = await self.session.execute(select(PolicyVersionRow.version).where(PolicyVersionRow.id == 1))
        return int(result.scalar_one())

    async def bump(self) -> int:
        """Move the version and tell every replica; both take effect when the transaction commits."""
        result = await self.session.execute(
            update(PolicyVersionRow)
            .where(PolicyVersionRow.id == 1)
            .values(version=PolicyVersionRow.version + 1)
            .returning(PolicyVersionRow.version)
        )
        version = int(result.scalar_one())
        await self.session.execute(text(f"SELECT pg_notify('{POLICY_CHANNEL}', '{version}')"))
        return version

    async def token_hash_key(self) -> bytes:
        await self.session.execute(
            insert(GatewaySecretRow)
            .values(name="token_hash_key", value=secrets.token_bytes(32))
            .on_conflict_do_nothing(index_elements=[GatewaySecretRow.name])
        )
        result = await self.session.execute(
            select(GatewaySecretRow.value).where(GatewaySecretRow.name == "token_hash_key")
        )
        return bytes(result.scalar_one())


class ModelIdRepository:
    """Registered model name ↔ immutable id, per workspace."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def id_of(self, workspace_id: int, name: str) -> str | None:
        result = await self.session.execute(
            select(RegisteredModelRow.id).where(
                RegisteredModelRow.workspace_id == workspace_id, RegisteredModelRow.name == name
            )
        )
        return result.scalar_one_or_none()

    async def name_of(self, workspace_id: int, model_id: str) -> str | None:
        result = await self.session.execute(
            select(RegisteredModelRow.name).where(
                RegisteredModelRow.workspace_id == workspace_id, RegisteredModelRow.id == model_id
            )
        )
        return result.scalar_one_or_none()

    async def names(self, workspace_id: int, model_ids: set[str]) -> list[str]:
        if not model_ids:
            return []
        result = await self.session.execute(
            select(RegisteredModelRow.name).where(
                RegisteredModelRow.workspace_id == workspace_id, RegisteredModelRow.id.in_(model_ids)
            )
        )
        return list(result.scalars().all())

    async def assign(self, workspace_id: int, name: str) -> str:
        """The model's id, minted on first sight."""
        await self.session.execute(
            insert(RegisteredModelRow)
            .values(id=secrets.token_hex(16), workspace_id=workspace_id, name=name)
            .on_conflict_do_nothing(constraint="registered_models_name")
        )
        model_id = await self.id_of(workspace_id, name)
        assert model_id is not None
        return model_id

    async def rename(self, workspace_id: int, old: str, new: str) -> None:
        await self.session.execute(
            update(RegisteredModelRow)
            .where(RegisteredModelRow.workspace_id == workspace_id, RegisteredModelRow.name == old)
            .values(name=new)
        )

    async def forget(self, workspace_id: int, name: str) -> str | None:
        result = await self.session.execute(
            delete(RegisteredModelRow)
            .where(RegisteredModelRow.workspace_id == workspace_id, RegisteredModelRow.name == name)
            .returning(RegisteredModelRow.id)
        )
        return result.scalar_one_or_none()
