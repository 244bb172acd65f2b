"""The model registry workflow: stage transition requests, their approval, comments and the activity log.

Who may do what (registered-model levels of the policy, `authz/levels.py`), as in Databricks:

- without CAN_READ on the model, the model does not exist for the caller (404, as a missing one);
- CAN_READ requests transitions, comments, and reads requests and the activity log;
- approving, rejecting, or moving a version directly asks `transition_level` of the version's current
  stage and the target stage: CAN_MANAGE_STAGING_VERSIONS among None, Staging and Archived,
  CAN_MANAGE_PRODUCTION_VERSIONS for anything into or out of Production;
- a request is cancelled by its requester or a CAN_MANAGE holder; a comment is edited or deleted by its
  author or a CAN_MANAGE holder. Requester and author are recorded by principal id (migration 0040) and
  compared by it: a principal later given a deleted one's name is not them; a renamed one still is.

Every decision on a model's stages (approve, reject, cancel, a direct transition, MLflow's own
transition-stage) is taken under the model's advisory lock (`LockClass.REGISTRY_MODEL`, a session-level
lock on a connection of its own: no transaction stays open while the store is called), so two gateway
processes never apply one request twice. An approval applies the transition on the store first, through
the request pipeline as the approver; only when the store accepted it does one transaction close the
request (a conditional UPDATE of its state) and append the activities (the approval, and a
SYSTEM_TRANSITION for each version archive_existing_versions archived) with their audit rows. A store
that refuses or does not answer leaves the request open and the approver sees the store's error; trying
again is safe, a transition to the stage a version is in changes nothing.

Activities are keyed by the gateway's immutable id of the model (`registered_models.id`), so a rename
keeps the log; a model deleted and created again under its name is a new model with a new log. An activity's id
(also the log's page token, an open request's id and a webhook payload's `activity_id`) is its number within the
model's log, 1, 2, 3, ...: activity in other models, and other workspaces, changes none of it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.authz.decide import Authorizer
from gateway.authz.levels import Level, files_level, model_object, transition_level, workspace_object
from gateway.core.errors import AlreadyExists, InvalidParameter, InvalidState, PermissionDenied, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.numbers import BIGINT_DIGITS, is_number
from gateway.core.principal import Principal
from gateway.db.locks import LockClass, autocommit_connection, held
from gateway.federation.call import ForwardResult
from gateway.registry.repository import (
    NewActivity,
    RegistryRepository,
    StoredActivity,
    StoredComment,
    StoredRequest,
)
from gateway.registry.schemas import (
    Activity,
    CommentObject,
    ModelDatabricks,
    ModelVersionDatabricks,
    TransitionRequest,
)
from gateway.registry.store import RegistryStore, transitioned

MAX_COMMENT_CHARS = 65535  # Databricks: a comment is 1 to 65535 characters
LOCK_WAIT_SECONDS = 60.0
ACTIVE_STAGES = ("Staging", "Production")  # the stages archive_existing_versions may empty
STAGES = {stage.lower(): stage for stage in ("None", "Staging", "Production", "Archived")}


class ActivityType(StrEnum):
    APPLIED_TRANSITION = "APPLIED_TRANSITION"
    REQUESTED_TRANSITION = "REQUESTED_TRANSITION"
    CANCELLED_REQUEST = "CANCELLED_REQUEST"
    APPROVED_REQUEST = "APPROVED_REQUEST"
    REJECTED_REQUEST = "REJECTED_REQUEST"
    NEW_COMMENT = "NEW_COMMENT"
    SYSTEM_TRANSITION = "SYSTEM_TRANSITION"
    # The gateway's own: moves of aliases (registry/aliases.py); databricks-sdk reads them as an unknown type.
    REQUESTED_ALIAS = "REQUESTED_ALIAS"
    APPROVED_ALIAS_REQUEST = "APPROVED_ALIAS_REQUEST"
    REJECTED_ALIAS_REQUEST = "REJECTED_ALIAS_REQUEST"
    CANCELLED_ALIAS_REQUEST = "CANCELLED_ALIAS_REQUEST"
    SET_ALIAS = "SET_ALIAS"
    DELETED_ALIAS = "DELETED_ALIAS"
    # The gateway's own: a version copied into another workspace's registry, and the copy (registry/promotion.py).
    PROMOTED_TO_WORKSPACE = "PROMOTED_TO_WORKSPACE"
    PROMOTED_FROM_WORKSPACE = "PROMOTED_FROM_WORKSPACE"
    # The gateway's own: requests to promote a version into a workspace that wants them approved, on the
    # source version's log (registry/promotion_requests.py).
    REQUESTED_PROMOTION = "REQUESTED_PROMOTION"
    APPROVED_PROMOTION = "APPROVED_PROMOTION"
    REJECTED_PROMOTION = "REJECTED_PROMOTION"
    CANCELLED_PROMOTION = "CANCELLED_PROMOTION"


class Action(StrEnum):
    """What a caller may do with a request or comment (`available_actions`)."""

    APPROVE = "APPROVE_TRANSITION_REQUEST"
    REJECT = "REJECT_TRANSITION_REQUEST"
    CANCEL = "CANCEL_TRANSITION_REQUEST"
    EDIT_COMMENT = "EDIT_COMMENT"
    DELETE_COMMENT = "DELETE_COMMENT"


class Notify(Protocol):
    """Told of activities in the transaction that appends them (the registry webhooks' queue)."""

    async def __call__(
        self,
        session: AsyncSession,
        link: WorkspaceLink,
        model_id: str,
        model_name: str,
        activities: Sequence[StoredActivity],
    ) -> int: ...


class ModelIds(Protocol):
    """The gateway's immutable ids of registered models (`AccessService` in the app)."""

    async def model_id(self, link: WorkspaceLink, name: str, *, adopt: bool) -> str | None: ...

    async def model_names(self, link: WorkspaceLink, model_ids: set[str]) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Model:
    """A registered model as one caller sees it: the gateway's id of it, and the caller's level on it."""

    link: WorkspaceLink
    name: str
    id: str
    level: str

    @property
    def obj(self) -> str:
        return model_object(self.link.workspace_id, self.id)


@dataclass(frozen=True, slots=True)
class Applied:
    """A transition the store accepted: the version as it now is, where it came from, what was archived."""

    version: ModelVersionDatabricks
    from_stage: str
    archived: list[str]


def canonical_stage(stage: str) -> str:
    """`stage` as MLflow and Databricks spell it (None, Staging, Production, Archived), whatever its case."""
    found = STAGES.get(stage.strip().lower())
    if found is None:
        raise InvalidParameter(f"Invalid stage '{stage[:40]}'; use one of None, Staging, Production, Archived.")
    return found


def _check_version(version: str) -> str:
    version = version.strip()
    if not is_number(version):
        raise InvalidParameter(f"Invalid model version '{version[:40]}': a version is a positive integer.")
    return str(int(version))


def mlflow_version(version: str) -> str | None:
    """The version number MLflow's store reads in `version`, as plain digits; None when it reads none.

    MLflow 3.17.2 reads a version with Python's `int` (`_validate_model_version`), which takes a sign, blanks around,
    `_` between digits and the digits of every script: `+1`, ` 1`, `0_1` and a fullwidth one are all version 1.
    Calls served as they came (MLflow's transition-stage and set-alias) are decided and logged by this reading, so a
    spelling is the version the store acts on, never "no version"."""
    try:
        number = int(version)
    except (TypeError, ValueError):  # not a number, or more digits than `int` reads
        return None
    return str(number) if 0 <= number < 10**BIGINT_DIGITS else None


def _check_comment(comment: str | None, *, required: bool = False) -> str | None:
    """A comment of 1 to 65535 characters; an optional one may be left out (or empty)."""
    if not comment:
        if required:
            raise InvalidParameter("A comment is 1 to 65535 characters.")
        return None
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidParameter("A comment is 1 to 65535 characters.")
    return comment


def _missing_model(name: str) -> str:
    return f"Registered Model with name={name} not found"


def _missing_version(name: str, version: str) -> str:
    return f"Model Version (name={name}, version={version}) not found"


class RegistryWorkflow:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        authorizer: Authorizer,
        models: ModelIds,
        store: RegistryStore,
        audit: AuditTrail,
        lock_wait_seconds: float = LOCK_WAIT_SECONDS,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._authorizer = authorizer
        self._models = models
        self._store = store
        self._audit = audit
        self._lock_wait = lock_wait_seconds
        self.notify: Notify | None = None  # the webhooks' queue, when the composition root sets one

    # -- the model, the version, the caller's rights ----------------------------------------------------

    async def model(self, principal: Principal, link: WorkspaceLink, name: str) -> Model:
        """The model, when the caller may read it; 404 as if missing otherwise."""
        if not name:
            raise InvalidParameter("Name the registered model (name).")
        # Only a reader of the whole workspace makes the gateway ask the store about a model it has no id
        # for yet: anyone else can read only models with ids (grants are on ids), so asking would only
        # tell them whether a name exists.
        workspace = workspace_object(link.workspace_id)
        adopt = self._authorizer.allows(principal, link.workspace_id, workspace, Level.CAN_READ)
        model_id = await self._models.model_id(link, name, adopt=adopt)
        if model_id is None:
            raise ResourceNotFound(_missing_model(name))
        obj = model_object(link.workspace_id, model_id)
        self._authorizer.require(principal, link.workspace_id, obj, Level.CAN_READ, _missing_model(name))
        level = self._authorizer.level(principal, link.workspace_id, obj)
        return Model(link, name, model_id, level or Level.CAN_READ.value)

    async def _version(self, model: Model, version: str) -> ModelVersionDatabricks:
        found = await self._store.version(model.link, model.name, version)
        if found is None:
            raise ResourceNotFound(_missing_version(model.name, version))
        return found

    def _allows(self, principal: Principal, model: Model, wanted: str) -> bool:
        return self._authorizer.allows(principal, model.link.workspace_id, model.obj, wanted)

    def _require(self, principal: Principal, model: Model, wanted: str, doing: str) -> None:
        if not self._allows(principal, model, wanted):
            raise PermissionDenied(
                f"{principal.name} lacks {wanted} on registered model '{model.name}' to {doing} (holds {model.level})."
            )

    def request_actions(
        self, principal: Principal, model: Model, current_stage: str, request: StoredRequest
    ) -> list[str]:
        actions: list[str] = []
        if self._allows(principal, model, transition_level(current_stage, request.to_stage)):
            actions += [Action.APPROVE, Action.REJECT]
        if is_principal(principal, request.requested_by_id) or self._allows(principal, model, Level.CAN_MANAGE):
            actions.append(Action.CANCEL)
        return actions

    def comment_actions(self, principal: Principal, model: Model, author_id: int | None) -> list[str]:
        if is_principal(principal, author_id) or self._allows(principal, model, Level.CAN_MANAGE):
            return [Action.EDIT_COMMENT, Action.DELETE_COMMENT]
        return []

    @contextlib.asynccontextmanager
    async def _decision(self, model: Model) -> AsyncIterator[None]:
        """The model's stage decisions, one at a time across every gateway process."""
        async with (
            autocommit_connection(self._sessionmaker) as connection,
            held(connection, LockClass.REGISTRY_MODEL, model.id, wait=self._lock_wait) as got,
        ):
            if not got:
                raise InvalidState(f"Another stage change of model '{model.name}' is under way; try again shortly.")
            yield

    # -- requests -------------------------------------------------------------------------------------

    async def create_request(
        self, principal: Principal, link: WorkspaceLink, name: str, version: str, stage: str, comment: str | None
    ) -> TransitionRequest:
        model = await self.model(principal, link, name)
        version, stage, comment = _check_version(version), canonical_stage(stage), _check_comment(comment)
        current = (await self._version(model, version)).current_stage or "None"
        if current.lower() == stage.lower():
            raise InvalidParameter(f"Version {version} of '{name}' is already in stage {stage}.")
        async with self._sessionmaker() as session, session.begin():
            repository = RegistryRepository(session)
            request = await repository.add_request(
                link.workspace_id, model.id, version, stage, principal.name, principal.id, comment
            )
            if request is None:
                raise AlreadyExists(
                    f"{principal.name} already has an open request to move version {version} of '{name}' to {stage}."
                )
            activity = NewActivity(
                version,
                ActivityType.REQUESTED_TRANSITION,
                principal.name,
                from_stage=current,
                to_stage=stage,
                comment=comment,
                request_id=request.id,
            )
            await self._append(session, principal, model, [activity])
        return TransitionRequest(
            to_stage=stage,
            user_id=principal.name,
            creation_timestamp=request.created_ms,
            comment=comment,
            available_actions=self.request_actions(principal, model, current, request),
        )

    async def list_requests(self, principal: Principal, link: WorkspaceLink, name: str, version: str) -> list[Activity]:
        """The version's open requests, newest first, each with what the caller may do with it."""
        model = await self.model(principal, link, name)
        version = _check_version(version)
        current = (await self._version(model, version)).current_stage or "None"
        async with self._sessionmaker() as session:
            requests = await RegistryRepository(session).open_requests(model.id, version)
        return [
            _request_activity(request, current, self.request_actions(principal, model, current, request))
            for request in requests
        ]

    async def approve(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str,
        stage: str,
        archive_existing_versions: bool,
        comment: str | None,
        request_id: str = "",
    ) -> Activity:
        model = await self.model(principal, link, name)
        version, stage, comment = _check_version(version), canonical_stage(stage), _check_comment(comment)
        _check_archive(stage, archive_existing_versions)
        async with self._decision(model):
            current = (await self._version(model, version)).current_stage or "None"
            self._require(principal, model, transition_level(current, stage), f"approve a move to {stage}")
            requests = await self._open(model, version, stage)
            applied = await self._apply(
                principal, model, version, current, stage, archive_existing_versions, request_id
            )
            activities = [
                NewActivity(
                    version,
                    ActivityType.APPROVED_REQUEST,
                    principal.name,
                    from_stage=applied.from_stage,
                    to_stage=stage,
                    comment=comment,
                    request_id=requests[0].id,
                ),
                *_archived(principal, version, stage, applied.archived),
            ]
            stored = await self._decide(principal, model, requests, "approved", activities)
        return _activity(stored[0])

    async def reject(
        self, principal: Principal, link: WorkspaceLink, name: str, version: str, stage: str, comment: str | None
    ) -> Activity:
        model = await self.model(principal, link, name)
        version, stage, comment = _check_version(version), canonical_stage(stage), _check_comment(comment)
        async with self._decision(model):
            current = (await self._version(model, version)).current_stage or "None"
            self._require(principal, model, transition_level(current, stage), f"reject a move to {stage}")
            requests = await self._open(model, version, stage)
            activity = NewActivity(
                version,
                ActivityType.REJECTED_REQUEST,
                principal.name,
                from_stage=current,
                to_stage=stage,
                comment=comment,
                request_id=requests[0].id,
            )
            stored = await self._decide(principal, model, requests, "rejected", [activity])
        return _activity(stored[0])

    async def cancel(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str,
        stage: str,
        creator: str,
        comment: str | None,
    ) -> Activity:
        """Cancel `creator`'s open request (Databricks' delete): the requester's own, or anyone's with CAN_MANAGE."""
        model = await self.model(principal, link, name)
        version, stage, comment = _check_version(version), canonical_stage(stage), _check_comment(comment)
        creator = creator.strip()
        if creator.casefold() == principal.name.casefold():
            creator = principal.name
        async with self._decision(model):
            requests = await self._open(model, version, stage, creator)
            mine = [r for r in requests if is_principal(principal, r.requested_by_id)]
            if creator == principal.name and mine:  # one's own, not one an earlier holder of the name left open
                requests = mine
            if not all(is_principal(principal, r.requested_by_id) for r in requests):
                self._require(principal, model, Level.CAN_MANAGE, f"cancel a request of {creator}")
            activity = NewActivity(
                version,
                ActivityType.CANCELLED_REQUEST,
                principal.name,
                to_stage=stage,
                comment=comment,
                request_id=requests[0].id,
            )
            stored = await self._decide(principal, model, requests, "cancelled", [activity])
        return _activity(stored[0])

    async def _open(
        self, model: Model, version: str, stage: str, requested_by: str | None = None
    ) -> list[StoredRequest]:
        """The open requests to decide, or the 4xx that says why there are none."""
        async with self._sessionmaker() as session:
            repository = RegistryRepository(session)
            requests = [
                r
                for r in await repository.open_requests(model.id, version, stage)
                if requested_by is None or r.requested_by == requested_by
            ]
            last = None if requests else await repository.last_request(model.id, version, stage, requested_by)
        if requests:
            return requests
        whose = f" by {requested_by}" if requested_by else ""
        if last is not None:
            raise InvalidState(
                f"The request{whose} to move version {version} of '{model.name}' to {stage} was already "
                f"{last.state} by {last.decided_by}."
            )
        raise ResourceNotFound(f"No open request{whose} to move version {version} of '{model.name}' to {stage}.")

    async def _decide(
        self,
        principal: Principal,
        model: Model,
        requests: Sequence[StoredRequest],
        state: str,
        activities: Sequence[NewActivity],
    ) -> list[StoredActivity]:
        """One transaction: the requests close (only if still open) and the activities are appended."""
        async with self._sessionmaker() as session, session.begin():
            repository = RegistryRepository(session)
            wanted = sorted(r.id for r in requests)
            closed = await repository.decide(wanted, state, principal.name)
            if closed != wanted:  # decided elsewhere meanwhile: nothing of this decision is kept
                raise InvalidState(f"The request to move a version of '{model.name}' was decided meanwhile.")
            return await self._append(session, principal, model, activities)

    # -- transitions ----------------------------------------------------------------------------------

    async def transition(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str,
        stage: str,
        archive_existing_versions: bool,
        comment: str | None,
        request_id: str = "",
    ) -> ModelVersionDatabricks:
        """A direct transition (Databricks' `databricks/model-versions/transition-stage`), for those allowed."""
        model = await self.model(principal, link, name)
        version, stage, comment = _check_version(version), canonical_stage(stage), _check_comment(comment)
        _check_archive(stage, archive_existing_versions)
        async with self._decision(model):
            current = (await self._version(model, version)).current_stage or "None"
            self._require(principal, model, transition_level(current, stage), f"move a version to {stage}")
            applied = await self._apply(
                principal, model, version, current, stage, archive_existing_versions, request_id
            )
            await self._applied(principal, model, version, stage, comment, applied)
        return await self.version_databricks(principal, model, applied.version)

    async def mlflow_transition(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str,
        stage: str,
        archive_existing_versions: bool,
        request_id: str = "",
    ) -> ForwardResult:
        """MLflow's own transition-stage: the same rules and log as a direct transition, MLflow's answer.

        What the store refuses (an unknown stage, a missing version) is answered as the store answered it.
        """
        model = await self.model(principal, link, name)
        number = mlflow_version(version)
        if number is not None:
            version = number  # what the store reads, sent as plain digits: decided, applied and logged as one
        async with self._decision(model):
            found = await self._store.version(link, name, version) if number is not None else None
            current = (found.current_stage or "None") if found is not None else ""
            self._require(principal, model, transition_level(current, stage), f"move a version to {stage}")
            archived: list[str] = []
            target = STAGES.get(stage.strip().lower())
            if found is not None and archive_existing_versions and target in ACTIVE_STAGES:
                archived = [v for v in await self._store.versions_in(link, name, target) if v != found.version]
            result = await self._store.transition(
                principal, link, name, version, stage, archive_existing_versions, request_id
            )
            if result.status == 200 and found is not None and target is not None:
                applied = Applied(transitioned(result), current, archived)
                await self._applied(principal, model, found.version, target, None, applied)
        return result

    async def version_content(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str,
        doing: str,
        send: Callable[[], Awaitable[ForwardResult]],
    ) -> ForwardResult:
        """A change of what a version serves that is no stage or alias move (a prompt's template, held in the
        version's tags): under the model's lock, what changing the version asks (`authz/levels.py` `files_level`: its
        stage and aliases, as for its files), then `send`. A version nothing serves (no stage but None or Archived,
        no alias) asks nothing more than the call's own level, which the guard checks on `send`."""
        model = await self.model(principal, link, name)
        number = mlflow_version(version)
        async with self._decision(model):
            found = await self._store.version(link, name, number) if number is not None else None
            if found is not None:  # else the store answers the call as it answers it
                stored = await self._store.model(link, name)
                aliases = [a.alias for a in stored.aliases if a.version == found.version] if stored else []
                async with self._sessionmaker() as session:
                    protected = await RegistryRepository(session).protected_aliases(model.id)
                level = files_level(found.current_stage or "None", aliases, protected)
                if level is not None:
                    stage = STAGES.get((found.current_stage or "").strip().lower())
                    why = [f"is in {stage}"] if stage in ACTIVE_STAGES else []
                    why += [f"holds the alias '{alias}'" for alias in aliases]
                    serving = " and ".join(why)
                    self._require(principal, model, level.value, f"{doing} of version {found.version}, which {serving}")
            return await send()

    async def _apply(
        self,
        principal: Principal,
        model: Model,
        version: str,
        current: str,
        stage: str,
        archive_existing_versions: bool,
        request_id: str,
    ) -> Applied:
        """Apply the transition on the store (under the model's lock); StoreRefused when it refuses."""
        archived: list[str] = []
        if archive_existing_versions:
            archived = [v for v in await self._store.versions_in(model.link, model.name, stage) if v != version]
        result = await self._store.transition(
            principal, model.link, model.name, version, stage, archive_existing_versions, request_id
        )
        return Applied(transitioned(result), current, archived)

    async def _applied(
        self, principal: Principal, model: Model, version: str, stage: str, comment: str | None, applied: Applied
    ) -> None:
        activities = [
            NewActivity(
                version,
                ActivityType.APPLIED_TRANSITION,
                principal.name,
                from_stage=applied.from_stage,
                to_stage=stage,
                comment=comment,
            ),
            *_archived(principal, version, stage, applied.archived),
        ]
        async with self._sessionmaker() as session, session.begin():
            await self._append(session, principal, model, activities)

    async def version_databricks(
        self, principal: Principal, model: Model, version: ModelVersionDatabricks
    ) -> ModelVersionDatabricks:
        """The version with the caller's level and the version's open requests (Databricks' shape)."""
        async with self._sessionmaker() as session:
            requests = await RegistryRepository(session).open_requests(model.id, version.version)
        current = version.current_stage or "None"
        version.permission_level = model.level
        version.open_requests = [
            _request_activity(request, current, self.request_actions(principal, model, current, request))
            for request in requests
        ]
        return version

    # -- comments -------------------------------------------------------------------------------------

    async def create_comment(
        self, principal: Principal, link: WorkspaceLink, name: str, version: str, comment: str
    ) -> CommentObject:
        model = await self.model(principal, link, name)
        version, text = _check_version(version), _check_comment(comment, required=True)
        assert text is not None
        await self._version(model, version)
        comment_id = secrets.token_hex(16)
        async with self._sessionmaker() as session, session.begin():
            repository = RegistryRepository(session)
            stored = await repository.add_comment(
                comment_id, link.workspace_id, model.id, version, principal.name, principal.id, text
            )
            activity = NewActivity(version, ActivityType.NEW_COMMENT, principal.name, comment_id=comment_id)
            await self._append(session, principal, model, [activity])
        return CommentObject(
            id=stored.id,
            user_id=stored.user_id,
            comment=stored.comment,
            creation_timestamp=stored.created_ms,
            last_updated_timestamp=stored.updated_ms,
            available_actions=self.comment_actions(principal, model, stored.user_principal_id),
        )

    async def update_comment(
        self, principal: Principal, link: WorkspaceLink, comment_id: str, comment: str
    ) -> CommentObject:
        text = _check_comment(comment, required=True)
        assert text is not None
        async with self._sessionmaker() as session, session.begin():
            repository = RegistryRepository(session)
            model, found = await self._comment(session, principal, link, comment_id)
            if not is_principal(principal, found.user_principal_id):
                self._require(principal, model, Level.CAN_MANAGE, "edit another user's comment")
            stored = await repository.edit_comment(comment_id, text)
            if stored is None:
                raise ResourceNotFound(f"Comment {comment_id} not found")
            await self._audit.write(
                session,
                entry(
                    principal.name,
                    "registry.comment.update",
                    model.obj,
                    "ok",
                    _details(model, stored.version, comment_id),
                ),
            )
        return CommentObject(
            id=stored.id,
            user_id=stored.user_id,
            comment=stored.comment,
            creation_timestamp=stored.created_ms,
            last_updated_timestamp=stored.updated_ms,
            available_actions=self.comment_actions(principal, model, stored.user_principal_id),
        )

    async def delete_comment(self, principal: Principal, link: WorkspaceLink, comment_id: str) -> None:
        async with self._sessionmaker() as session, session.begin():
            model, stored = await self._comment(session, principal, link, comment_id)
            if not is_principal(principal, stored.user_principal_id):
                self._require(principal, model, Level.CAN_MANAGE, "delete another user's comment")
            if not await RegistryRepository(session).delete_comment(comment_id):
                raise ResourceNotFound(f"Comment {comment_id} not found")
            await self._audit.write(
                session,
                entry(
                    principal.name,
                    "registry.comment.delete",
                    model.obj,
                    "ok",
                    _details(model, stored.version, comment_id),
                ),
            )

    async def _comment(
        self, session: AsyncSession, principal: Principal, link: WorkspaceLink, comment_id: str
    ) -> tuple[Model, StoredComment]:
        """The comment and its model (as the caller sees it); 404 for a comment the caller may not read."""
        missing = f"Comment {comment_id[:64]} not found"
        stored = await RegistryRepository(session).comment(link.workspace_id, comment_id) if comment_id else None
        if stored is None:
            raise ResourceNotFound(missing)
        obj = model_object(link.workspace_id, stored.model_id)
        self._authorizer.require(principal, link.workspace_id, obj, Level.CAN_READ, missing)
        level = self._authorizer.level(principal, link.workspace_id, obj) or Level.CAN_READ.value
        names = await self._models.model_names(link, {stored.model_id})
        return Model(link, names[0] if names else "", stored.model_id, level), stored

    # -- the activity log -----------------------------------------------------------------------------

    async def activities(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str | None,
        *,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> tuple[list[Activity], str | None]:
        """A model's (or one version's) activities, newest first; the token of the next page, if any."""
        model = await self.model(principal, link, name)
        version = _check_version(version) if version else None
        if page_token is not None and not is_number(page_token):
            raise InvalidParameter("Invalid page_token.")
        async with self._sessionmaker() as session:
            found = await RegistryRepository(session).log(
                model.id, version, before=int(page_token) if page_token else None, limit=max_results + 1
            )
        page = found[:max_results]
        return [_activity(a) for a in page], str(page[-1].id) if len(found) > max_results else None

    async def record(
        self,
        principal: Principal,
        entries: Sequence[tuple[Model, NewActivity]],
        *,
        first: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> None:
        """Activities of several models (both sides of a promotion), with their audit rows, in one transaction;
        `first` runs in it before them (and may raise to write none)."""
        async with self._sessionmaker() as session, session.begin():
            # Every model's log lock first, in one order (`first` may append to one of them too): two promotions
            # each way between two models never hold one lock each and wait for the other.
            await RegistryRepository(session).lock_logs(model.id for model, _ in entries)
            if first is not None:
                await first(session)
            for model, activity in entries:
                await self._append(session, principal, model, [activity])

    async def append(
        self, session: AsyncSession, principal: Principal, model: Model, activities: Sequence[NewActivity]
    ) -> list[StoredActivity]:
        """Append activities and their audit rows (and queue their webhooks) in the caller's transaction."""
        return await self._append(session, principal, model, activities)

    async def _append(
        self, session: AsyncSession, principal: Principal, model: Model, activities: Sequence[NewActivity]
    ) -> list[StoredActivity]:
        """Append activities and their audit rows, in the caller's transaction."""
        repository = RegistryRepository(session)
        stored = []
        for activity in activities:
            row = await repository.append(model.link.workspace_id, model.id, activity)
            stored.append(row)
            details = _details(model, activity.version, activity.comment_id)
            details.update(activity=row.id, type=activity.activity_type)
            if activity.from_stage:
                details["from_stage"] = activity.from_stage
            if activity.to_stage:
                details["to_stage"] = activity.to_stage
            if activity.request_id is not None:
                details["request"] = activity.request_id
            if activity.alias is not None:
                details["alias"] = activity.alias
            action = f"registry.{activity.activity_type.lower()}"
            await self._audit.write(session, entry(principal.name, action, model.obj, "ok", details))
        if self.notify is not None:
            await self.notify(session, model.link, model.id, model.name, stored)
        return stored

    # -- the model in Databricks' shape ---------------------------------------------------------------

    async def model_databricks(self, principal: Principal, link: WorkspaceLink, name: str) -> ModelDatabricks:
        model = await self.model(principal, link, name)
        found = await self._store.model(link, name)
        if found is None:
            raise ResourceNotFound(_missing_model(name))
        return ModelDatabricks(
            id=model.id,
            name=found.name,
            permission_level=model.level,
            creation_timestamp=found.creation_timestamp,
            last_updated_timestamp=found.last_updated_timestamp,
            user_id=found.user_id,
            description=found.description,
            latest_versions=found.latest_versions,
            tags=found.tags,
        )


def is_principal(principal: Principal, recorded_id: int | None) -> bool:
    """Whether `principal` is the one a request or comment recorded (by principal id: a name can be given to
    someone else after its holder is deleted). The bootstrap admin has no id, and needs none: it manages all."""
    return principal.id is not None and recorded_id == principal.id


def _check_archive(stage: str, archive_existing_versions: bool) -> None:
    if archive_existing_versions and stage not in ACTIVE_STAGES:
        raise InvalidParameter(f"archive_existing_versions applies to moves to Staging or Production, not to {stage}.")


def _archived(principal: Principal, version: str, stage: str, archived: Sequence[str]) -> list[NewActivity]:
    """The SYSTEM_TRANSITION of each version archive_existing_versions moved out of `stage`."""
    return [
        NewActivity(
            other,
            ActivityType.SYSTEM_TRANSITION,
            principal.name,
            from_stage=stage,
            to_stage="Archived",
            system_comment=f"Archived because version {version} moved to {stage} with archive_existing_versions.",
        )
        for other in archived
    ]


def _details(model: Model, version: str, comment_id: str | None = None) -> dict[str, object]:
    details: dict[str, object] = {"model_id": model.id, "version": version}
    if model.name:
        details["name"] = model.name
    if comment_id:
        details["comment"] = comment_id
    return details


def _activity(stored: StoredActivity) -> Activity:
    return Activity(
        id=str(stored.id),
        activity_type=stored.activity_type,
        user_id=stored.user_id,
        creation_timestamp=stored.created_ms,
        last_updated_timestamp=stored.updated_ms,
        from_stage=stored.from_stage,
        to_stage=stored.to_stage,
        comment=stored.comment,
        system_comment="This comment was deleted." if stored.comment_deleted else stored.system_comment,
        version=stored.version,
        alias=stored.alias,
    )


def _request_activity(request: StoredRequest, current_stage: str, actions: list[str]) -> Activity:
    """An open request as Databricks lists it: its REQUESTED_TRANSITION activity, with what the caller may do."""
    return Activity(
        id=str(request.activity_id) if request.activity_id is not None else "",  # never the request's row id
        activity_type=ActivityType.REQUESTED_TRANSITION,
        user_id=request.requested_by,
        creation_timestamp=request.created_ms,
        last_updated_timestamp=request.created_ms,
        from_stage=current_stage,
        to_stage=request.to_stage,
        comment=request.comment,
        version=request.version,
        available_actions=actions,
    )
