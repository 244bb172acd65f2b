"""Every SQL statement about grants, registered-model ids, the policy version and the audit log."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Sequence

import msgspec
from sqlalchemy import Text, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.authz.levels import ACCOUNT_DOMAIN, workspace_domain
from gateway.authz.policy import Grant
from gateway.core import policy_changes
from gateway.core.errors import InvalidState, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.policy_changes import GrantAdded, GrantRemoved, PolicyChange
from gateway.db.models import (
    GatewaySecretRow,
    GrantRow,
    PolicyChangeRow,
    PolicyVersionRow,
    RegisteredModelRow,
    WorkspaceLinkRow,
)

log = logging.getLogger(__name__)

POLICY_CHANNEL = "fedgate_policy"
# How many versions' recorded changes are kept: a replica further behind than this loads the policy whole.
KEEP_CHANGES = 1000
# The most rows a change records, and a replica applies at once. Applying costs about 5 us per row on the
# event loop in one go (a workspace of 2,000 grants renumbered: 4,000 rows, about 20 ms); a whole load
# indexes 2,000 grants per step between requests. So a larger change (a workspace of more than 5,000 grants
# renumbered, more than 10,000 unlinked) is recorded as none, and every replica loads the policy whole.
MAX_RECORDED = 10_000

_GRANT_COLUMNS = (GrantRow.principal_id, GrantRow.domain, GrantRow.object, GrantRow.privilege)
FOREIGN_KEY_VIOLATION = "23503"


def _sqlstate(exc: BaseException | None) -> str | None:
    """PostgreSQL's error code, raised by asyncpg directly or wrapped by SQLAlchemy."""
    while exc is not None:
        if (code := getattr(exc, "sqlstate", None)) is not None:
            return str(code)
        exc = getattr(exc, "orig", None) or exc.__cause__
    return None


class GrantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._held: set[str] = set()  # the workspace domains `hold` checked in this transaction

    async def hold(self, link: WorkspaceLink) -> None:
        """The workspace `link` describes is linked as it was when the call was decided, and stays so until this
        transaction ends: its row is read FOR SHARE.

        A grant in a workspace is keyed by the workspace's id (its domain `w<id>`, and for experiments and models the
        store's ids). An unlink or relink (gateway/workspaces/service.py) locks the row FOR UPDATE before its hooks
        delete what the workspace held (gateway/authz/moves.py), so it waits for a grant being added here and takes
        it along, and a grant added after it finds the workspace gone or moved: 404, or 409 to try again. Before, a
        grant committed just after an unlink stayed, and a workspace linked later under the id (ids are the
        admins' to choose) inherited it; one committed just after a store move stayed on an experiment id the new
        store gives to another experiment.
        """
        domain = workspace_domain(link.workspace_id)
        if domain in self._held:
            return
        row = await self.session.scalar(
            select(WorkspaceLinkRow)
            .where(WorkspaceLinkRow.workspace_id == link.workspace_id)
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
        if row is None:
            raise ResourceNotFound(f"Workspace '{link.name}' not found")
        upstream = row.upstream_workspace or row.name
        if (row.name, row.mode, row.store) != (link.name, link.mode, link.configured_store) or (
            link.upstream_workspace is not None and link.upstream_workspace != upstream
        ):
            raise InvalidState(f"Workspace '{link.name}' was relinked while the call was made; try again.")
        self._held.add(domain)

    async def all(self) -> list[Grant]:
        result = await self.session.execute(select(*_GRANT_COLUMNS))
        return [Grant(*row) for row in result.all()]

    async def batches(self, size: int) -> AsyncIterator[list[Grant]]:
        """Every grant, `size` rows at a time from a server-side cursor (the session's transaction)."""
        result = await self.session.stream(select(*_GRANT_COLUMNS).execution_options(yield_per=size))
        async for partition in result.partitions():
            yield [Grant(*row) for row in partition]

    async def on(self, domain: str, obj: str) -> Sequence[GrantRow]:
        result = await self.session.execute(
            select(GrantRow).where(GrantRow.domain == domain, GrantRow.object == obj).order_by(GrantRow.id)
        )
        return result.scalars().all()

    # Each change answers what it did to the rows (nothing when the grant was already there, or not there):
    # the policy's recorded changes (`PolicyVersionRepository.bump`) are exactly these.

    async def add(self, grant: Grant, created_by: str) -> list[PolicyChange]:
        """Add the grant (nothing when it is there). A grant in a workspace needs `hold` of it first, in this
        transaction: its workspace must not be unlinked or moved before the grant is committed."""
        if grant.domain != ACCOUNT_DOMAIN and grant.domain not in self._held:
            raise RuntimeError(f"a grant in {grant.domain} is added without holding its workspace")
        try:
            result = await self.session.execute(
                insert(GrantRow)
                .values(
                    principal_id=grant.principal_id,
                    domain=grant.domain,
                    object=grant.object,
                    privilege=grant.privilege,
                    created_by=created_by,
                )
                .on_conflict_do_nothing(constraint="grants_unique")
                .returning(*_GRANT_COLUMNS)
            )
        except IntegrityError as exc:
            if _sqlstate(exc) != FOREIGN_KEY_VIOLATION:
                raise
            # The principal was deleted (committed) after the call found it: a name nobody holds now, not a 500.
            raise ResourceNotFound(f"Principal {grant.principal_id} no longer exists (deleted meanwhile).") from None
        return [GrantAdded(*row) for row in result.all()]

    async def remove(self, grant: Grant) -> list[PolicyChange]:
        result = await self.session.execute(
            delete(GrantRow)
            .where(
                GrantRow.principal_id == grant.principal_id,
                GrantRow.domain == grant.domain,
                GrantRow.object == grant.object,
                GrantRow.privilege == grant.privilege,
            )
            .returning(*_GRANT_COLUMNS)
        )
        return [GrantRemoved(*row) for row in result.all()]

    async def self_granted(self, principal_id: int, name: str) -> set[tuple[str, str, str]]:
        """(domain, object, privilege) of the principal's grants it recorded itself: an owner's, at creation."""
        result = await self.session.execute(
            select(GrantRow.domain, GrantRow.object, GrantRow.privilege).where(
                GrantRow.principal_id == principal_id, GrantRow.created_by == name
            )
        )
        return {(domain, obj, privilege) for domain, obj, privilege in result.all()}

    async def view_owner(self, name: str) -> int | None:
        """The id of the principal who owns the dynamic view `name` (None: no such view, or the bootstrap admin's)."""
        row = await self.session.execute(text("SELECT owner_id FROM sql_views WHERE name = :name"), {"name": name})
        found = row.scalar_one_or_none()
        return int(found) if found is not None else None

    async def clear(self, domain: str, obj: str, principal_id: int | None = None) -> list[PolicyChange]:
        statement = delete(GrantRow).where(GrantRow.domain == domain, GrantRow.object == obj)
        if principal_id is not None:
            statement = statement.where(GrantRow.principal_id == principal_id)
        result = await self.session.execute(statement.returning(*_GRANT_COLUMNS))
        return [GrantRemoved(*row) for row in result.all()]


class PolicyVersionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def current(self) -> int:
        result = await self.session.execute(select(PolicyVersionRow.version).where(PolicyVersionRow.id == 1))
        return int(result.scalar_one())

    async def bump(self, changes: Sequence[PolicyChange] | None = None) -> int:
        """Move the version and tell every replica; both take effect when the transaction commits.

        `changes` are the rows this transaction added and removed, in the order it did (what the grant and
        membership statements returned): replicas apply them to the policy they hold. Without them (or with
        more than `MAX_RECORDED`), every replica loads the policy whole. Call this after the transaction's
        last change to the policy: the version row stays locked until commit, so versions are committed in
        order and a change to the same row by another transaction gets the later version.
        """
        result = await self.session.execute(
            update(PolicyVersionRow)
            .where(PolicyVersionRow.id == 1)
            .values(version=PolicyVersionRow.version + 1)
            .returning(PolicyVersionRow.version)
        )
        version = int(result.scalar_one())
        if changes is not None and len(changes) <= MAX_RECORDED:
            await self.session.execute(
                text("INSERT INTO policy_changes (version, changes) VALUES (:version, CAST(:changes AS jsonb))"),
                {"version": version, "changes": policy_changes.encode(changes)},
            )
            await self.session.execute(delete(PolicyChangeRow).where(PolicyChangeRow.version <= version - KEEP_CHANGES))
        await self.session.execute(text(f"SELECT pg_notify('{POLICY_CHANNEL}', '{version}')"))
        return version

    async def changes_since(self, version: int) -> list[tuple[int, list[PolicyChange]]]:
        """The recorded changes of every version after `version` that has them, oldest first."""
        result = await self.session.execute(
            select(PolicyChangeRow.version, PolicyChangeRow.changes.cast(Text))
            .where(PolicyChangeRow.version > version)
            .order_by(PolicyChangeRow.version)
        )
        recorded = []
        for number, raw in result.all():
            try:
                recorded.append((int(number), policy_changes.decode(raw)))
            except msgspec.ValidationError:
                # A kind of change a newer release records (during a rolling upgrade): left out, so that the
                # replica sees the gap and loads the policy whole instead of applying what it cannot read.
                log.warning("policy change of an unknown kind; loading the policy whole", extra={"version": number})
        return recorded

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

    async def names_by_id(self, workspace_id: int, model_ids: set[str]) -> dict[str, str]:
        if not model_ids:
            return {}
        result = await self.session.execute(
            select(RegisteredModelRow.id, RegisteredModelRow.name).where(
                RegisteredModelRow.workspace_id == workspace_id, RegisteredModelRow.id.in_(model_ids)
            )
        )
        return {str(model_id): str(name) for model_id, name in result.all()}

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
