"""Promotions that need an approved request: a prod workspace decides what is copied into its registry.

A workspace manager (CAN_MANAGE on the workspace) turns the setting on for the workspace
(`PATCH /api/2.0/fedgate/registry/promotion-settings {"promotions_need_approval": true}`). From then on a
direct promotion into it (`registry/promote`) is refused (403) to anyone who could not approve one, and
people ask instead:

- `POST .../promotion-requests/create {name: "<workspace>.<model>", version, target_name?, comment?}`: the
  requester's rights are those of a promotion (CAN_READ on the source model; CAN_EDIT on the target model,
  or CAN_USE on the workspace for a new one); one open request per source version, target model and requester;
- `POST .../promotion-requests/approve {id, comment?}` and `.../reject`: Production's level
  (CAN_MANAGE_PRODUCTION_VERSIONS) on the target model, or CAN_MANAGE on the workspace for a new model
  (`Promotions.may_approve`). Approval re-checks the requester's rights as they are now (with the groups
  their identity provider named when they asked, recorded with the request), makes the copy as
  the approver (a new model is owned by the requester), and closes the request in the transaction that
  appends the promotion's activities, so two approvals at once make one copy and one decision; a store that
  fails leaves the request open and the failure visible, and approving again completes it;
- `DELETE .../promotion-requests/delete {id}`: the requester (by principal id), or a workspace manager, cancels.
  A cancellation or rejection takes the lock of promotions into the target model, which an approval holds from
  before it looks for or makes the copy until the copy is recorded, and reads the request again under it: a
  request is never closed while its approval copies, nor copied once closed;
- `GET .../promotion-requests/list?state=open|all`: the requests the caller made or may decide.

A request's id is its number within its target workspace (1, 2, 3, ...; migration 0052), given under the
workspace's lock in the transaction that records it: requests into other workspaces change none of it.

Requests, decisions and cancellations land on the source version's activity log (REQUESTED_PROMOTION,
APPROVED_PROMOTION, REJECTED_PROMOTION, CANCELLED_PROMOTION; the target model may not exist before the
approval) with their audit rows and webhooks (PROMOTION_REQUEST_*).
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.authz.decide import Authorizer
from gateway.authz.levels import Level, workspace_object
from gateway.core.errors import (
    AlreadyExists,
    InvalidParameter,
    InvalidState,
    PermissionDenied,
    ResourceNotFound,
    hidden,
)
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.numbers import is_number
from gateway.core.principal import Principal
from gateway.db.locks import LockClass
from gateway.db.models import RegistryPromotionRequestRow, RegistryPromotionSettingsRow
from gateway.registry.promotion import Checked, Promoted, Promotions
from gateway.registry.repository import NewActivity, millis
from gateway.registry.service import ActivityType, Model, RegistryWorkflow, is_principal

OPEN, APPROVED, REJECTED, CANCELLED = "open", "approved", "rejected", "cancelled"
MAX_COMMENT = 20_000
APPROVE, REJECT, CANCEL = "APPROVE_PROMOTION_REQUEST", "REJECT_PROMOTION_REQUEST", "CANCEL_PROMOTION_REQUEST"
# A rejection or cancellation waits this long for a promotion into the same target model (an approval copying
# files, say) to end, then answers 409: it never closes a request whose approval is copying.
DECISION_WAIT_SECONDS = 60.0


class PromotionSettings(msgspec.Struct, omit_defaults=True, kw_only=True):
    promotions_need_approval: bool
    updated_by: str | None = None
    last_updated_timestamp: int | None = None


class PromotionRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    id: str
    name: str  # the source, <workspace>.<model>
    version: str
    target_name: str
    state: str  # OPEN | APPROVED | REJECTED | CANCELLED
    user_id: str  # who asked
    creation_timestamp: int
    comment: str | None = None
    decided_by: str | None = None
    decision_comment: str | None = None
    last_updated_timestamp: int | None = None
    target_version: str | None = None  # the copy, once approved
    available_actions: list[str] = msgspec.field(default_factory=list)


class PromotionRequests:
    def __init__(
        self,
        promotions: Promotions,
        workflow: RegistryWorkflow,
        authorizer: Authorizer,
        links: LinkTable,
        sessionmaker: async_sessionmaker[AsyncSession],
        audit: AuditTrail,
    ) -> None:
        self._promotions = promotions
        self._workflow = workflow
        self._authorizer = authorizer
        self._links = links
        self._sessionmaker = sessionmaker
        self._audit = audit

    # -- the workspace's setting -----------------------------------------------------------------------

    async def settings(self, principal: Principal, link: WorkspaceLink) -> PromotionSettings:
        self._enters(principal, link)
        async with self._sessionmaker() as session:
            row = await session.get(RegistryPromotionSettingsRow, link.workspace_id)
        if row is None:
            return PromotionSettings(promotions_need_approval=False)
        return PromotionSettings(
            promotions_need_approval=row.need_approval,
            updated_by=row.updated_by,
            last_updated_timestamp=millis(row.updated_at),
        )

    async def update_settings(self, principal: Principal, link: WorkspaceLink, need: bool) -> PromotionSettings:
        self._authorizer.require_workspace(principal, link.workspace_id, link.name, Level.CAN_MANAGE)
        async with self._sessionmaker() as session, session.begin():
            before = await session.get(RegistryPromotionSettingsRow, link.workspace_id)
            was = before is not None and before.need_approval
            statement = insert(RegistryPromotionSettingsRow).values(
                workspace_id=link.workspace_id, need_approval=need, updated_by=principal.name
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["workspace_id"],
                    set_={"need_approval": need, "updated_by": principal.name, "updated_at": datetime.now(UTC)},
                )
            )
            details = {"before": was, "after": need}
            target = workspace_object(link.workspace_id)
            await self._audit.write(
                session, entry(principal.name, "registry.promotion_settings.update", target, "ok", details)
            )
        return await self.settings(principal, link)

    # -- requests ----------------------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        link: WorkspaceLink,
        qualified: str,
        version: str,
        target_name: str | None,
        comment: str | None,
    ) -> PromotionRequest:
        comment = _comment(comment)
        checked = await self._promotions.check(principal, link, qualified, version, target_name)
        try:
            async with self._sessionmaker() as session, session.begin():
                # The workspace's next number: one new request of the workspace at a time takes it.
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:lock_class, :workspace_id)"),
                    {"lock_class": int(LockClass.REGISTRY_PROMOTION_REQUEST), "workspace_id": link.workspace_id},
                )
                table = RegistryPromotionRequestRow
                number = await session.scalar(
                    select(func.coalesce(func.max(table.number), 0) + 1).where(table.workspace_id == link.workspace_id)
                )
                row = RegistryPromotionRequestRow(
                    workspace_id=link.workspace_id,
                    number=number,
                    source_workspace_id=checked.source.workspace_id,
                    source_model_id=checked.source_id,
                    source_name=f"{checked.source.name}.{checked.name}",
                    source_version=checked.version,
                    target_name=checked.target_name,
                    requested_by=principal.name,
                    requested_by_id=principal.id,
                    requester_groups=list(principal.idp_groups),
                    comment=comment,
                    state=OPEN,
                )
                session.add(row)
                await session.flush()
                await self._log(session, principal, row, checked, ActivityType.REQUESTED_PROMOTION, comment)
        except IntegrityError as exc:
            raise AlreadyExists(
                f"You already have an open request to promote {checked.source.name}.{checked.name} version "
                f"{checked.version} into '{checked.target_name}'."
            ) from exc
        return await self._view(principal, link, row)

    async def list(self, principal: Principal, link: WorkspaceLink, state: str) -> list[PromotionRequest]:
        self._enters(principal, link)
        if state not in (OPEN, "all"):
            raise InvalidParameter("state is 'open' or 'all'.")
        query = select(RegistryPromotionRequestRow).where(RegistryPromotionRequestRow.workspace_id == link.workspace_id)
        if state == OPEN:
            query = query.where(RegistryPromotionRequestRow.state == OPEN)
        async with self._sessionmaker() as session:
            rows = (await session.scalars(query.order_by(RegistryPromotionRequestRow.id.desc()).limit(1000))).all()
        views = []
        # The target model's id, looked up once per target name of the page (a lookup may ask the target store):
        # asked per row, a page of up to 1,000 requests cost up to 1,000 calls to the store.
        targets: dict[str, str | None] = {}
        for row in rows:
            view = await self._view(principal, link, row, targets)
            mine = is_principal(principal, row.requested_by_id)
            if mine or view.available_actions or self._manages(principal, link):
                views.append(view)
        return views

    async def approve(
        self, principal: Principal, link: WorkspaceLink, request_id: str, comment: str | None
    ) -> tuple[PromotionRequest, Promoted]:
        comment = _comment(comment)
        row = await self._open(principal, link, request_id)  # answers now what is already known (no lock waited)
        requester = self._requester(row)
        # What the requester may do now (a revoked grant since the request refuses the approval).
        checked = await self._promotions.check(requester, link, row.source_name, row.source_version, row.target_name)
        if (checked.source.workspace_id, checked.source_id) != (row.source_workspace_id, row.source_model_id):
            # The name was resolved again: another model has it now (the asked-for one renamed away, or deleted
            # and another made under its name), and copying it would promote what nobody asked to.
            raise InvalidState(
                f"{row.source_name} is another model than when promotion request {row.number} was made (renamed, or "
                "deleted and made again, since): reject this request and ask again."
            )
        if not self._promotions.may_approve(principal, link, checked.target_id):
            raise PermissionDenied(_level_message(checked, "approve"))

        async def still_open() -> None:
            # Under the target model's lock, which a cancellation or rejection of the request takes too: one
            # closed meanwhile is answered 409 before anything is copied, and none can close it from here on
            # until the copy is recorded with its activities (or failed, copying nothing recorded).
            await self._open(principal, link, request_id)

        async def decided(session: AsyncSession, done: Promoted) -> None:
            version = str(done.version.get("version", ""))
            await self._decide(session, row, principal, APPROVED, comment, version)
            await self._log(session, principal, row, checked, ActivityType.APPROVED_PROMOTION, comment)

        done = await self._promotions.execute(
            principal, link, checked, owner=requester, before=still_open, then=decided
        )
        async with self._sessionmaker() as session:
            fresh = await session.get(RegistryPromotionRequestRow, row.id)
        assert fresh is not None
        return await self._view(principal, link, fresh), done

    async def reject(
        self, principal: Principal, link: WorkspaceLink, request_id: str, comment: str | None
    ) -> PromotionRequest:
        comment = _comment(comment)
        row = await self._open(principal, link, request_id)
        target_id = await self._promotions.target_id(link, row.target_name)
        if not self._promotions.may_approve(principal, link, target_id):
            raise PermissionDenied("Rejecting this promotion takes the level that approves it.")
        async with self._promotions.target_lock(link, row.target_name, DECISION_WAIT_SECONDS):
            row = await self._open(principal, link, request_id)  # an approval that held the lock decided it
            return await self._close(principal, link, row, REJECTED, ActivityType.REJECTED_PROMOTION, comment)

    async def cancel(self, principal: Principal, link: WorkspaceLink, request_id: str) -> PromotionRequest:
        row = await self._open(principal, link, request_id)
        if not is_principal(principal, row.requested_by_id) and not self._manages(principal, link):
            raise PermissionDenied("Only the requester or a manager of the workspace cancels a promotion request.")
        async with self._promotions.target_lock(link, row.target_name, DECISION_WAIT_SECONDS):
            row = await self._open(principal, link, request_id)  # an approval that held the lock decided it
            return await self._close(principal, link, row, CANCELLED, ActivityType.CANCELLED_PROMOTION, None)

    # -- helpers -----------------------------------------------------------------------------------------

    async def _open(self, principal: Principal, link: WorkspaceLink, request_id: str) -> RegistryPromotionRequestRow:
        self._enters(principal, link)
        missing = f"Promotion request '{str(request_id)[:40]}' not found"
        if not is_number(str(request_id)):
            raise ResourceNotFound(missing)
        table = RegistryPromotionRequestRow
        async with self._sessionmaker() as session:
            # Its number in this workspace (its row id is never shown: that counts every workspace's requests).
            row = await session.scalar(
                select(table).where(table.workspace_id == link.workspace_id, table.number == int(request_id))
            )
        if row is None or not await self._concerns(principal, link, row):
            raise ResourceNotFound(missing)
        if row.state != OPEN:
            raise InvalidState(f"Promotion request {row.number} is already {row.state}.")
        return row

    async def _close(
        self,
        principal: Principal,
        link: WorkspaceLink,
        row: RegistryPromotionRequestRow,
        state: str,
        activity: ActivityType,
        comment: str | None,
    ) -> PromotionRequest:
        source = self._links.by_id(row.source_workspace_id)
        async with self._sessionmaker() as session, session.begin():
            await self._decide(session, row, principal, state, comment, None)
            if source is not None:
                name = row.source_name.partition(".")[2]
                model = Model(source, name, row.source_model_id, Level.CAN_READ.value)
                await self._workflow.append(
                    session, principal, model, [self._activity(row, principal, activity, comment)]
                )
        async with self._sessionmaker() as session:
            fresh = await session.get(RegistryPromotionRequestRow, row.id)
        assert fresh is not None
        return await self._view(principal, link, fresh)

    async def _decide(
        self,
        session: AsyncSession,
        row: RegistryPromotionRequestRow,
        principal: Principal,
        state: str,
        comment: str | None,
        target_version: str | None,
    ) -> None:
        """Close the request if it is still open; InvalidState (and the caller's transaction rolled back) if not."""
        table = RegistryPromotionRequestRow
        closed = await session.execute(
            update(table)
            .where(table.id == row.id, table.state == OPEN)
            .values(
                state=state,
                decided_by=principal.name,
                decided_at=datetime.now(UTC),
                decision_comment=comment,
                target_version=target_version,
            )
            .returning(table.id)
        )
        if closed.first() is None:
            raise InvalidState(f"Promotion request {row.number} was decided or cancelled meanwhile.")

    async def _log(
        self,
        session: AsyncSession,
        principal: Principal,
        row: RegistryPromotionRequestRow,
        checked: Checked,
        activity: ActivityType,
        comment: str | None,
    ) -> None:
        model = Model(checked.source, checked.name, checked.source_id, Level.CAN_READ.value)
        await self._workflow.append(session, principal, model, [self._activity(row, principal, activity, comment)])

    def _activity(
        self, row: RegistryPromotionRequestRow, principal: Principal, activity: ActivityType, comment: str | None
    ) -> NewActivity:
        target = self._links.by_id(row.workspace_id)
        where = f"{target.name if target is not None else row.workspace_id}.{row.target_name}"
        return NewActivity(
            row.source_version,
            activity,
            principal.name,
            comment=comment,
            # No request number: the source model's readers may not see the target workspace, and its numbers
            # would tell them how many promotions it is asked for.
            system_comment=f"Promotion into {where}.",
            request_id=row.id,
        )

    def _requester(self, row: RegistryPromotionRequestRow) -> Principal:
        """The requester as the policy knows them now, with the groups their identity provider named when
        they asked (recorded with the request, counted as the guard counts them: by a gateway group of that
        name, as it is now)."""
        snapshot = self._authorizer.policy.snapshot
        if row.requested_by_id is None:  # the bootstrap admin
            return Principal(name=row.requested_by, kind="bootstrap", account_admin=True)
        info = snapshot.principal(row.requested_by_id)
        if info is None or not info.active:
            raise InvalidState(f"The requester of promotion request {row.number} is disabled or deleted; reject it.")
        return snapshot.acting_for(info, row.requester_groups or ())

    async def _concerns(self, principal: Principal, link: WorkspaceLink, row: RegistryPromotionRequestRow) -> bool:
        """Whether the request is the caller's business, as `list` shows it: their own, or one they may decide, or
        any for a manager of the workspace. To anyone else a request id names nothing (its state and the models it
        names included)."""
        if is_principal(principal, row.requested_by_id) or self._manages(principal, link):
            return True
        return self._promotions.may_approve(principal, link, await self._promotions.target_id(link, row.target_name))

    def _enters(self, principal: Principal, link: WorkspaceLink) -> None:
        if not self._authorizer.enters(principal, link.workspace_id):
            raise hidden(f"Workspace '{link.name}' not found")

    def _manages(self, principal: Principal, link: WorkspaceLink) -> bool:
        return self._authorizer.allows(
            principal, link.workspace_id, workspace_object(link.workspace_id), Level.CAN_MANAGE
        )

    async def _view(
        self,
        principal: Principal,
        link: WorkspaceLink,
        row: RegistryPromotionRequestRow,
        targets: dict[str, str | None] | None = None,
    ) -> PromotionRequest:
        """The request as `principal` sees it; `targets` (target name → model id) keeps the target models looked up
        by the views of one answer."""
        actions: list[str] = []
        if row.state == OPEN:
            targets = {} if targets is None else targets
            if row.target_name not in targets:
                targets[row.target_name] = await self._promotions.target_id(link, row.target_name)
            target_id = targets[row.target_name]
            if self._promotions.may_approve(principal, link, target_id):
                actions += [APPROVE, REJECT]
            if is_principal(principal, row.requested_by_id) or self._manages(principal, link):
                actions.append(CANCEL)
        return PromotionRequest(
            id=str(row.number),
            name=row.source_name,
            version=row.source_version,
            target_name=row.target_name,
            state=row.state.upper(),
            user_id=row.requested_by,
            creation_timestamp=millis(row.created_at),
            comment=row.comment,
            decided_by=row.decided_by,
            decision_comment=row.decision_comment,
            last_updated_timestamp=millis(row.decided_at or row.created_at),
            target_version=row.target_version,
            available_actions=actions,
        )


def _comment(comment: str | None) -> str | None:
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InvalidParameter(f"A comment is at most {MAX_COMMENT} characters.")
    return comment or None


def _level_message(checked: Checked, what: str) -> str:
    if checked.target_id is None:
        return f"To {what} a promotion into a new model '{checked.target_name}' takes CAN_MANAGE on the workspace."
    return f"To {what} a promotion into '{checked.target_name}' takes CAN_MANAGE_PRODUCTION_VERSIONS on it."
