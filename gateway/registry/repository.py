"""Every SQL statement of the registry workflow: requests, comments and the activity log (migration 0016), protected
aliases and alias requests (migration 0018).

A model's activities are numbered 1, 2, 3, ... within the model (migration 0051): the number is what the API shows
as an activity's id and pages by. The account-wide row id is never shown: its gaps would tell a reader of one
model how much happens in the registries of workspaces they may not see."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.locks import LockClass
from gateway.db.models import (
    RegistryActivityRow,
    RegistryCommentRow,
    RegistryModelSettingsRow,
    RegistryPromotionLoggedModelRow,
    RegistryPromotionRequestRow,
    RegistryPromotionSettingsRow,
    RegistryRequestRow,
)

OPEN = "open"


def millis(moment: datetime) -> int:
    """A timestamp as the Databricks API gives it: milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class StoredRequest:
    id: int
    model_id: str
    version: str
    to_stage: str  # "" for an alias request
    requested_by: str
    comment: str | None
    state: str  # open | approved | rejected | cancelled
    created_ms: int
    decided_by: str | None
    activity_id: int | None = None  # its request activity's number in the model's log (listings of open requests)
    alias: str | None = None  # an alias request: the alias to point at the version
    requested_by_id: int | None = None  # principals.id of the requester (None: the bootstrap admin, or unknown)


@dataclass(frozen=True, slots=True)
class NewActivity:
    """An activity to append; `user_id` is who did it (for a system transition: who caused it)."""

    version: str
    activity_type: str
    user_id: str
    from_stage: str | None = None
    to_stage: str | None = None
    comment: str | None = None
    system_comment: str | None = None
    request_id: int | None = None
    comment_id: str | None = None
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class StoredActivity:
    id: int  # its number within the model's log (`number`), never the row's account-wide id
    version: str
    activity_type: str
    user_id: str
    from_stage: str | None
    to_stage: str | None
    comment: str | None
    system_comment: str | None
    created_ms: int
    updated_ms: int
    comment_id: str | None = None
    comment_deleted: bool = False  # NEW_COMMENT whose comment was deleted since
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class StoredComment:
    id: str
    workspace_id: int
    model_id: str
    version: str
    user_id: str
    comment: str
    created_ms: int
    updated_ms: int
    user_principal_id: int | None = None  # principals.id of the author (None: the bootstrap admin, or unknown)


def _request(row: RegistryRequestRow, activity_id: int | None = None) -> StoredRequest:
    return StoredRequest(
        row.id,
        row.model_id,
        row.version,
        row.to_stage or "",
        row.requested_by,
        row.comment,
        row.state,
        millis(row.created_at),
        row.decided_by,
        activity_id,
        row.alias,
        row.requested_by_id,
    )


def _comment(row: RegistryCommentRow) -> StoredComment:
    return StoredComment(
        row.id,
        row.workspace_id,
        row.model_id,
        row.version,
        row.user_id,
        row.comment,
        millis(row.created_at),
        millis(row.updated_at),
        row.user_principal_id,
    )


class RegistryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- requests -----------------------------------------------------------------------------------

    async def add_request(
        self,
        workspace_id: int,
        model_id: str,
        version: str,
        to_stage: str,
        requested_by: str,
        requested_by_id: int | None,
        comment: str | None,
    ) -> StoredRequest | None:
        """The new open request; None when the requester (the principal, by id) already has one open for this
        version and stage."""
        result = await self.session.execute(
            insert(RegistryRequestRow)
            .values(
                workspace_id=workspace_id,
                model_id=model_id,
                version=version,
                to_stage=to_stage,
                requested_by=requested_by,
                requested_by_id=requested_by_id,
                comment=comment,
                state=OPEN,
            )
            # One open request per requester (migration 0042): keyed by the requester's principal id, or by its
            # name when it has none (the bootstrap admin); either partial unique index's conflict is "already open".
            .on_conflict_do_nothing()
            .returning(RegistryRequestRow)
        )
        row = result.scalar_one_or_none()
        return _request(row) if row is not None else None

    async def open_requests(self, model_id: str, version: str, to_stage: str | None = None) -> list[StoredRequest]:
        """The version's open requests (to one stage, if given), newest first, each with its request activity."""
        conditions: list[ColumnElement[bool]] = [
            RegistryRequestRow.version == version,
            RegistryRequestRow.alias.is_(None),
        ]
        if to_stage is not None:
            conditions.append(RegistryRequestRow.to_stage == to_stage)
        return await self._open(model_id, "REQUESTED_TRANSITION", conditions)

    async def last_request(
        self, model_id: str, version: str, to_stage: str, requested_by: str | None = None
    ) -> StoredRequest | None:
        """The latest request of the version to the stage (by this user, if given), whatever its state."""
        return await self._last(model_id, version, RegistryRequestRow.to_stage == to_stage, requested_by)

    async def decide(self, request_ids: Sequence[int], state: str, decided_by: str) -> list[int]:
        """Close the requests that are still open (a conditional UPDATE); the ids it closed."""
        if not request_ids:
            return []
        result = await self.session.execute(
            update(RegistryRequestRow)
            .where(RegistryRequestRow.id.in_(list(request_ids)), RegistryRequestRow.state == OPEN)
            .values(state=state, decided_by=decided_by, decided_at=func.now())
            .returning(RegistryRequestRow.id)
        )
        return sorted(result.scalars().all())

    # -- activities ---------------------------------------------------------------------------------

    async def lock_logs(self, model_ids: Iterable[str]) -> None:
        """Take the models' activity-log locks for the transaction, in one order (a transaction appending to two
        models, as a promotion does, never waits on another that holds them the other way round)."""
        for model_id in sorted(set(model_ids)):
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(:lock_class, hashtext(:model_id))"),
                {"lock_class": int(LockClass.REGISTRY_ACTIVITY), "model_id": model_id},
            )

    async def append(self, workspace_id: int, model_id: str, activity: NewActivity) -> StoredActivity:
        """Append the activity with the model's next number. The model's lock, held to the end of the transaction,
        makes appends to one model one at a time: the number after the highest committed is free, and numbers
        become visible in the order they were given (a page never misses one that a later page would need)."""
        await self.lock_logs([model_id])  # taken again in one transaction is a no-op
        log = RegistryActivityRow
        following = select(func.coalesce(func.max(log.number), 0) + 1).where(log.model_id == model_id).scalar_subquery()
        result = await self.session.execute(
            insert(RegistryActivityRow)
            .values(
                workspace_id=workspace_id,
                model_id=model_id,
                version=activity.version,
                activity_type=activity.activity_type,
                from_stage=activity.from_stage,
                to_stage=activity.to_stage,
                user_id=activity.user_id,
                comment=activity.comment,
                system_comment=activity.system_comment,
                request_id=activity.request_id,
                comment_id=activity.comment_id,
                alias=activity.alias,
                number=following,
            )
            .returning(RegistryActivityRow.number, RegistryActivityRow.created_at)
        )
        number, created_at = result.one()
        created = millis(created_at)
        return StoredActivity(
            number,
            activity.version,
            activity.activity_type,
            activity.user_id,
            activity.from_stage,
            activity.to_stage,
            activity.comment,
            activity.system_comment,
            created,
            created,
            activity.comment_id,
            alias=activity.alias,
        )

    async def log(
        self, model_id: str, version: str | None, *, before: int | None = None, limit: int = 100
    ) -> list[StoredActivity]:
        """Newest first: a model's activities (one version's, if given) numbered below `before`, NEW_COMMENT with
        its comment's current text and update time (or marked deleted)."""
        statement = (
            select(RegistryActivityRow, RegistryCommentRow.comment, RegistryCommentRow.updated_at)
            .outerjoin(RegistryCommentRow, RegistryCommentRow.id == RegistryActivityRow.comment_id)
            .where(RegistryActivityRow.model_id == model_id)
            .order_by(RegistryActivityRow.number.desc())
            .limit(limit)
        )
        if version is not None:
            statement = statement.where(RegistryActivityRow.version == version)
        if before is not None:
            statement = statement.where(RegistryActivityRow.number < before)
        result = await self.session.execute(statement)
        activities = []
        for row, text_now, updated_at in result.all():
            created = millis(row.created_at)
            is_comment = row.comment_id is not None
            activities.append(
                StoredActivity(
                    row.number,
                    row.version,
                    row.activity_type,
                    row.user_id,
                    row.from_stage,
                    row.to_stage,
                    text_now if is_comment else row.comment,
                    row.system_comment,
                    created,
                    millis(updated_at) if updated_at is not None else created,
                    row.comment_id,
                    comment_deleted=is_comment and text_now is None,
                    alias=row.alias,
                )
            )
        return activities

    # -- protected aliases and alias requests --------------------------------------------------------

    async def protected_aliases(self, model_id: str) -> list[str]:
        """The aliases of the model whose moves need Production's level (none until a manager sets some)."""
        found = await self.session.scalar(
            select(RegistryModelSettingsRow.protected_aliases).where(RegistryModelSettingsRow.model_id == model_id)
        )
        return list(found or [])

    async def set_protected_aliases(
        self, workspace_id: int, model_id: str, aliases: Sequence[str], updated_by: str
    ) -> tuple[list[str], str, int]:
        """Replace the model's protected aliases; (the aliases, who set them, when in milliseconds)."""
        result = await self.session.execute(
            insert(RegistryModelSettingsRow)
            .values(
                workspace_id=workspace_id, model_id=model_id, protected_aliases=list(aliases), updated_by=updated_by
            )
            .on_conflict_do_update(
                index_elements=["model_id"],
                set_={"protected_aliases": list(aliases), "updated_by": updated_by, "updated_at": func.now()},
            )
            .returning(RegistryModelSettingsRow.updated_at)
        )
        return list(aliases), updated_by, millis(result.scalar_one())

    async def settings(self, model_id: str) -> tuple[list[str], str | None, int | None]:
        """(protected aliases, who set them, when in milliseconds); ([], None, None) when never set."""
        row = await self.session.scalar(
            select(RegistryModelSettingsRow).where(RegistryModelSettingsRow.model_id == model_id)
        )
        if row is None:
            return [], None, None
        return list(row.protected_aliases), row.updated_by, millis(row.updated_at)

    async def add_alias_request(
        self,
        workspace_id: int,
        model_id: str,
        version: str,
        alias: str,
        requested_by: str,
        requested_by_id: int | None,
        comment: str | None,
    ) -> StoredRequest | None:
        """The new open request to point `alias` at the version; None when the user already has that one open."""
        result = await self.session.execute(
            insert(RegistryRequestRow)
            .values(
                workspace_id=workspace_id,
                model_id=model_id,
                version=version,
                alias=alias,
                requested_by=requested_by,
                requested_by_id=requested_by_id,
                comment=comment,
                state=OPEN,
            )
            .on_conflict_do_nothing()  # as in `add_request`
            .returning(RegistryRequestRow)
        )
        row = result.scalar_one_or_none()
        return _request(row) if row is not None else None

    async def open_alias_requests(
        self, model_id: str, *, alias: str | None = None, version: str | None = None
    ) -> list[StoredRequest]:
        """The model's open alias requests (of one alias, one version, if given), newest first, each with its
        REQUESTED_ALIAS activity."""
        conditions: list[ColumnElement[bool]] = [RegistryRequestRow.alias.is_not(None)]
        if alias is not None:
            conditions.append(RegistryRequestRow.alias == alias)
        if version is not None:
            conditions.append(RegistryRequestRow.version == version)
        return await self._open(model_id, "REQUESTED_ALIAS", conditions)

    async def last_alias_request(
        self, model_id: str, version: str, alias: str, requested_by: str | None = None
    ) -> StoredRequest | None:
        """The latest request to point `alias` at the version (by this user, if given), whatever its state."""
        return await self._last(model_id, version, RegistryRequestRow.alias == alias, requested_by)

    async def _open(
        self, model_id: str, activity_type: str, conditions: list[ColumnElement[bool]]
    ) -> list[StoredRequest]:
        """The model's open requests that meet `conditions`, newest first, each with its `activity_type` row's
        number."""
        result = await self.session.execute(
            select(RegistryRequestRow, RegistryActivityRow.number)
            .outerjoin(
                RegistryActivityRow,
                (RegistryActivityRow.model_id == RegistryRequestRow.model_id)
                & (RegistryActivityRow.request_id == RegistryRequestRow.id)
                & (RegistryActivityRow.activity_type == activity_type),
            )
            .where(RegistryRequestRow.model_id == model_id, RegistryRequestRow.state == OPEN, *conditions)
            .order_by(RegistryRequestRow.id.desc())
        )
        return [_request(row, activity_id) for row, activity_id in result.all()]

    async def _last(
        self, model_id: str, version: str, target: ColumnElement[bool], requested_by: str | None
    ) -> StoredRequest | None:
        """The version's latest request to `target` (a stage or an alias), by this user if given."""
        statement = (
            select(RegistryRequestRow)
            .where(RegistryRequestRow.model_id == model_id, RegistryRequestRow.version == version, target)
            .order_by(RegistryRequestRow.id.desc())
            .limit(1)
        )
        if requested_by is not None:
            statement = statement.where(RegistryRequestRow.requested_by == requested_by)
        row = await self.session.scalar(statement)
        return _request(row) if row is not None else None

    # -- comments -----------------------------------------------------------------------------------

    async def add_comment(
        self,
        comment_id: str,
        workspace_id: int,
        model_id: str,
        version: str,
        user_id: str,
        user_principal_id: int | None,
        comment: str,
    ) -> StoredComment:
        row = RegistryCommentRow(
            id=comment_id,
            workspace_id=workspace_id,
            model_id=model_id,
            version=version,
            user_id=user_id,
            user_principal_id=user_principal_id,
            comment=comment,
        )
        self.session.add(row)
        await self.session.flush()
        await self.session.refresh(row)
        return _comment(row)

    async def comment(self, workspace_id: int, comment_id: str) -> StoredComment | None:
        row = await self.session.scalar(
            select(RegistryCommentRow).where(
                RegistryCommentRow.workspace_id == workspace_id, RegistryCommentRow.id == comment_id
            )
        )
        return _comment(row) if row is not None else None

    async def edit_comment(self, comment_id: str, comment: str) -> StoredComment | None:
        result = await self.session.execute(
            update(RegistryCommentRow)
            .where(RegistryCommentRow.id == comment_id)
            .values(comment=comment, updated_at=func.now())
            .returning(RegistryCommentRow)
        )
        row = result.scalar_one_or_none()
        return _comment(row) if row is not None else None

    async def delete_comment(self, comment_id: str) -> bool:
        result = await self.session.execute(delete(RegistryCommentRow).where(RegistryCommentRow.id == comment_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- the workspace's moves ----------------------------------------------------------------------

    async def renumber(self, old_id: int, new_id: int) -> None:
        """Requests, comments and activities follow their workspace (the trigger lets exactly this through)."""
        for row in (
            RegistryRequestRow,
            RegistryCommentRow,
            RegistryActivityRow,
            RegistryModelSettingsRow,
            RegistryPromotionRequestRow,
            RegistryPromotionSettingsRow,
            RegistryPromotionLoggedModelRow,
        ):
            await self.session.execute(update(row).where(row.workspace_id == old_id).values(workspace_id=new_id))
        promotions = RegistryPromotionRequestRow
        await self.session.execute(
            update(promotions).where(promotions.source_workspace_id == old_id).values(source_workspace_id=new_id)
        )

    async def remove_workspace(self, workspace_id: int) -> int:
        """Every row of the workspace (the audit log keeps what happened); how many activities went."""
        # The activity log's trigger lets rows go only when this transaction says the workspace goes.
        await self.session.execute(text("SELECT set_config('fedgate.registry_drop', 'workspace', true)"))
        result = await self.session.execute(
            delete(RegistryActivityRow).where(RegistryActivityRow.workspace_id == workspace_id)
        )
        await self.session.execute(text("SELECT set_config('fedgate.registry_drop', '', true)"))
        await self.session.execute(delete(RegistryCommentRow).where(RegistryCommentRow.workspace_id == workspace_id))
        await self.session.execute(delete(RegistryRequestRow).where(RegistryRequestRow.workspace_id == workspace_id))
        await self.session.execute(
            delete(RegistryModelSettingsRow).where(RegistryModelSettingsRow.workspace_id == workspace_id)
        )
        promotions = RegistryPromotionRequestRow
        await self.session.execute(
            delete(promotions).where(
                (promotions.workspace_id == workspace_id) | (promotions.source_workspace_id == workspace_id)
            )
        )
        await self.session.execute(
            delete(RegistryPromotionSettingsRow).where(RegistryPromotionSettingsRow.workspace_id == workspace_id)
        )
        made = RegistryPromotionLoggedModelRow  # the previous store's logged models are none of the new one's
        await self.session.execute(delete(made).where(made.workspace_id == workspace_id))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
