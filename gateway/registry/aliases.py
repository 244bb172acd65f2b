"""Protected aliases: moving a model's `champion` can ask the same approval as a move into Production.

MLflow 3 favours aliases over stages, so a team that serves `models:/churn@champion` needs the same control
over the alias as over Production. Per model, whoever manages it (`PROTECTED_ALIASES_LEVEL`, CAN_MANAGE) names
the protected aliases (`registry_model_settings`, migration 0018). The level setting, moving or deleting an
alias asks is one function of the policy, `authz/levels.py` `alias_level`: CAN_MANAGE_PRODUCTION_VERSIONS for
a protected alias, CAN_EDIT (MLflow's own rule) for any other.

Every path that moves an alias takes that level and lands in the activity log:

- MLflow's `POST` and `DELETE /registered-models/alias` (the stock client's `set_registered_model_alias` and
  `delete_registered_model_alias`), served here (`FeatureRoute`s, registry/routes.py): a caller below the
  level is refused (403, naming the alias request to make instead); an accepted call is logged as SET_ALIAS
  or DELETED_ALIAS;
- an approved alias request (APPROVED_ALIAS_REQUEST), which points the alias at the version through the
  request pipeline as the approver.

Anyone with CAN_READ requests a move (REQUESTED_ALIAS); the level decides approvals and rejections; the
requester or CAN_MANAGE cancels. Decisions take the model's advisory lock, as stage decisions do, and are
applied like them: the store first, then one transaction closes the requests and appends the activities.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.authz.levels import PROTECTED_ALIASES_LEVEL, Level, alias_level
from gateway.core.errors import AlreadyExists, InvalidParameter, InvalidState, PermissionDenied, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.federation.call import ForwardCall, ForwardResult
from gateway.federation.canonical import canonical_body
from gateway.registry.repository import NewActivity, RegistryRepository, StoredRequest
from gateway.registry.schemas import Activity, AliasRequest, RegistrySettings
from gateway.registry.service import (
    Action,
    ActivityType,
    Model,
    RegistryWorkflow,
    _activity,
    _check_comment,
    _check_version,
    is_principal,
    mlflow_version,
)
from gateway.registry.store import STAGE_ALIASES, Forward, RegistryStore, StoreRefused

MAX_PROTECTED = 100
# MLflow's alias names: letters, digits, `_` and `-`, at most 255 characters (not `latest`, not `v<digits>`).
ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")
RESERVED_ALIAS_RE = re.compile(r"^(latest|v\d+)\Z", re.IGNORECASE)


def check_alias(alias: str) -> str:
    alias = alias.strip()
    if not ALIAS_RE.match(alias) or RESERVED_ALIAS_RE.match(alias):
        raise InvalidParameter(
            f"Invalid alias '{alias[:40]}': an alias is 1 to 255 letters, digits, '_' or '-', and neither "
            "'latest' nor 'v' followed by digits."
        )
    return alias


class _AliasCall(msgspec.Struct):
    name: str
    alias: str
    version: str = ""


class AliasApprovals:
    def __init__(
        self,
        workflow: RegistryWorkflow,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: RegistryStore,
        audit: AuditTrail,
    ) -> None:
        self._workflow = workflow
        self._sessionmaker = sessionmaker
        self._store = store
        self._audit = audit

    # -- the setting ----------------------------------------------------------------------------------

    async def settings(self, principal: Principal, link: WorkspaceLink, name: str) -> RegistrySettings:
        model = await self._workflow.model(principal, link, name)
        async with self._sessionmaker() as session:
            aliases, by, at = await RegistryRepository(session).settings(model.id)
        return RegistrySettings(name=model.name, protected_aliases=aliases, updated_by=by, last_updated_timestamp=at)

    async def update_settings(
        self, principal: Principal, link: WorkspaceLink, name: str, protected_aliases: Sequence[str]
    ) -> RegistrySettings:
        """Replace the model's protected aliases (CAN_MANAGE on the model); audited with old and new."""
        model = await self._workflow.model(principal, link, name)
        self._require(principal, model, PROTECTED_ALIASES_LEVEL, "change which aliases are protected")
        if len(protected_aliases) > MAX_PROTECTED:
            raise InvalidParameter(f"A model protects at most {MAX_PROTECTED} aliases.")
        wanted: dict[str, str] = {}
        for alias in protected_aliases:
            checked = check_alias(alias)
            wanted.setdefault(checked.casefold(), checked)
        aliases = sorted(wanted.values(), key=str.casefold)
        async with self._sessionmaker() as session, session.begin():
            repository = RegistryRepository(session)
            before = await repository.protected_aliases(model.id)
            aliases, by, at = await repository.set_protected_aliases(
                link.workspace_id, model.id, aliases, principal.name
            )
            details = {"model_id": model.id, "name": model.name, "before": before, "after": aliases}
            await self._audit.write(
                session, entry(principal.name, "registry.settings.update", model.obj, "ok", details)
            )
        return RegistrySettings(name=model.name, protected_aliases=aliases, updated_by=by, last_updated_timestamp=at)

    def _stage_alias(self, model: Model, alias: str) -> None:
        """On a store without stages `staging` and `production` are the stages themselves: they move with them."""
        if self._store.stageless(model.link) and alias.casefold() in STAGE_ALIASES.values():
            raise PermissionDenied(
                f"Alias '{alias}' of '{model.name}' records a stage on this store, which has none: it moves with "
                "the stage (request a transition with POST /api/2.0/mlflow/transition-requests/create)."
            )

    async def level(self, model: Model, alias: str) -> Level:
        async with self._sessionmaker() as session:
            protected = await RegistryRepository(session).protected_aliases(model.id)
        return alias_level(alias, protected)

    # -- requests -------------------------------------------------------------------------------------

    async def create_request(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        alias: str,
        version: str,
        comment: str | None,
    ) -> AliasRequest:
        model = await self._workflow.model(principal, link, name)
        alias, version, comment = check_alias(alias), _check_version(version), _check_comment(comment)
        self._stage_alias(model, alias)
        await self._version(model, version)
        if await self._store.alias_version(link, model.name, alias) == version:
            raise InvalidParameter(f"Alias '{alias}' of '{model.name}' already points at version {version}.")
        async with self._sessionmaker() as session, session.begin():
            request = await RegistryRepository(session).add_alias_request(
                link.workspace_id, model.id, version, alias, principal.name, principal.id, comment
            )
            if request is None:
                raise AlreadyExists(
                    f"{principal.name} already has an open request to point alias '{alias}' of '{model.name}' "
                    f"at version {version}."
                )
            activity = NewActivity(
                version,
                ActivityType.REQUESTED_ALIAS,
                principal.name,
                comment=comment,
                request_id=request.id,
                alias=alias,
            )
            await self._workflow._append(session, principal, model, [activity])
        level = await self.level(model, alias)
        return AliasRequest(
            alias=alias,
            version=version,
            user_id=principal.name,
            creation_timestamp=request.created_ms,
            comment=comment,
            available_actions=self.actions(principal, model, level, request),
        )

    async def list_requests(
        self, principal: Principal, link: WorkspaceLink, name: str, alias: str | None
    ) -> list[Activity]:
        """The model's open alias requests (of one alias, if given), newest first, with what the caller may do."""
        model = await self._workflow.model(principal, link, name)
        alias = check_alias(alias) if alias else None
        async with self._sessionmaker() as session:
            repository = RegistryRepository(session)
            requests = await repository.open_alias_requests(model.id, alias=alias)
            protected = await repository.protected_aliases(model.id)
        return [
            _request_activity(r, self.actions(principal, model, alias_level(r.alias or "", protected), r))
            for r in requests
        ]

    def actions(self, principal: Principal, model: Model, level: Level, request: StoredRequest) -> list[str]:
        actions: list[str] = []
        if self._workflow._allows(principal, model, level):
            actions += [Action.APPROVE, Action.REJECT]
        if is_principal(principal, request.requested_by_id) or self._workflow._allows(
            principal, model, Level.CAN_MANAGE
        ):
            actions.append(Action.CANCEL)
        return actions

    async def approve(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        alias: str,
        version: str,
        comment: str | None,
        request_id: str = "",
    ) -> Activity:
        """Point the alias at the version (as the approver, through the pipeline), then close the requests."""
        model = await self._workflow.model(principal, link, name)
        alias, version, comment = check_alias(alias), _check_version(version), _check_comment(comment)
        self._stage_alias(model, alias)
        async with self._workflow._decision(model):
            self._require(principal, model, await self.level(model, alias), f"approve a move of alias '{alias}'")
            requests = await self._open(model, alias, version)
            before = await self._store.alias_version(link, model.name, alias)
            result = await self._store.set_alias(principal, link, model.name, alias, version, request_id)
            if result.status != 200:
                raise StoreRefused(result.status, result.body)
            activity = NewActivity(
                version,
                ActivityType.APPROVED_ALIAS_REQUEST,
                principal.name,
                comment=comment,
                system_comment=_moved(before, version),
                request_id=requests[0].id,
                alias=alias,
            )
            stored = await self._workflow._decide(principal, model, requests, "approved", [activity])
        return _activity(stored[0])

    async def reject(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        alias: str,
        version: str,
        comment: str | None,
    ) -> Activity:
        model = await self._workflow.model(principal, link, name)
        alias, version, comment = check_alias(alias), _check_version(version), _check_comment(comment)
        async with self._workflow._decision(model):
            self._require(principal, model, await self.level(model, alias), f"reject a move of alias '{alias}'")
            requests = await self._open(model, alias, version)
            activity = NewActivity(
                version,
                ActivityType.REJECTED_ALIAS_REQUEST,
                principal.name,
                comment=comment,
                request_id=requests[0].id,
                alias=alias,
            )
            stored = await self._workflow._decide(principal, model, requests, "rejected", [activity])
        return _activity(stored[0])

    async def cancel(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        alias: str,
        version: str,
        creator: str,
        comment: str | None,
    ) -> Activity:
        """Cancel `creator`'s open alias request: the requester's own, or anyone's with CAN_MANAGE."""
        model = await self._workflow.model(principal, link, name)
        alias, version, comment = check_alias(alias), _check_version(version), _check_comment(comment)
        creator = creator.strip()
        if creator.casefold() == principal.name.casefold():
            creator = principal.name
        async with self._workflow._decision(model):
            requests = await self._open(model, alias, version, creator)
            mine = [r for r in requests if is_principal(principal, r.requested_by_id)]
            if creator == principal.name and mine:  # one's own, not one an earlier holder of the name left open
                requests = mine
            if not all(is_principal(principal, r.requested_by_id) for r in requests):
                self._require(principal, model, Level.CAN_MANAGE, f"cancel a request of {creator}")
            activity = NewActivity(
                version,
                ActivityType.CANCELLED_ALIAS_REQUEST,
                principal.name,
                comment=comment,
                request_id=requests[0].id,
                alias=alias,
            )
            stored = await self._workflow._decide(principal, model, requests, "cancelled", [activity])
        return _activity(stored[0])

    async def _open(
        self, model: Model, alias: str, version: str, requested_by: str | None = None
    ) -> list[StoredRequest]:
        """The open alias requests to decide, or the 4xx that says why there are none."""
        async with self._sessionmaker() as session:
            repository = RegistryRepository(session)
            requests = [
                r
                for r in await repository.open_alias_requests(model.id, alias=alias, version=version)
                if requested_by is None or r.requested_by == requested_by
            ]
            last = None if requests else await repository.last_alias_request(model.id, version, alias, requested_by)
        if requests:
            return requests
        whose = f" by {requested_by}" if requested_by else ""
        if last is not None:
            raise InvalidState(
                f"The request{whose} to point alias '{alias}' of '{model.name}' at version {version} was already "
                f"{last.state} by {last.decided_by}."
            )
        raise ResourceNotFound(
            f"No open request{whose} to point alias '{alias}' of '{model.name}' at version {version}."
        )

    # -- MLflow's own alias routes ------------------------------------------------------------------

    async def mlflow_set(self, link: WorkspaceLink, call: ForwardCall, forward: Forward) -> ForwardResult:
        """MLflow's set-alias: the alias's level, then the call as sent; an accepted one is logged."""
        wanted, principal = _alias_call(call), call.principal
        model = await self._workflow.model(principal, link, wanted.name)
        async with self._workflow._decision(model):
            await self._require_move(principal, model, wanted.alias)
            before = await self._store.alias_version(link, model.name, wanted.alias)
            result = await forward(call)
            version = mlflow_version(wanted.version)
            if result.status == 200 and version is not None:
                activity = NewActivity(
                    version,
                    ActivityType.SET_ALIAS,
                    principal.name,
                    system_comment=_moved(before, version),
                    alias=wanted.alias,
                )
                await self._log(principal, model, activity)
        return result

    async def mlflow_delete(self, link: WorkspaceLink, call: ForwardCall, forward: Forward) -> ForwardResult:
        """MLflow's delete-alias: the alias's level, then the call as sent; an accepted one is logged."""
        wanted, principal = _alias_call(call), call.principal
        model = await self._workflow.model(principal, link, wanted.name)
        async with self._workflow._decision(model):
            await self._require_move(principal, model, wanted.alias)
            before = await self._store.alias_version(link, model.name, wanted.alias)
            result = await forward(call)
            if result.status == 200 and before is not None:
                activity = NewActivity(
                    before,
                    ActivityType.DELETED_ALIAS,
                    principal.name,
                    system_comment=f"Alias '{wanted.alias}' no longer points at version {before}.",
                    alias=wanted.alias,
                )
                await self._log(principal, model, activity)
        return result

    async def _require_move(self, principal: Principal, model: Model, alias: str) -> None:
        self._stage_alias(model, alias)
        level = await self.level(model, alias)
        if not self._workflow._allows(principal, model, level):
            raise PermissionDenied(
                f"Alias '{alias}' of registered model '{model.name}' is protected: moving it needs {level.value} "
                f"(you hold {model.level}). Ask for the move with POST /api/2.0/mlflow/alias-requests/create."
                if level is Level.CAN_MANAGE_PRODUCTION_VERSIONS
                else f"{principal.name} lacks {level.value} on registered model '{model.name}' to move alias "
                f"'{alias}' (holds {model.level})."
            )

    async def _log(self, principal: Principal, model: Model, activity: NewActivity) -> None:
        async with self._sessionmaker() as session, session.begin():
            await self._workflow._append(session, principal, model, [activity])

    def _require(self, principal: Principal, model: Model, wanted: Level, doing: str) -> None:
        self._workflow._require(principal, model, wanted, doing)

    async def _version(self, model: Model, version: str) -> None:
        await self._workflow._version(model, version)


def _moved(before: str | None, version: str) -> str:
    if before is None:
        return f"Now points at version {version}."
    if before == version:
        return f"Points at version {version} still."
    return f"Moved from version {before} to version {version}."


def _alias_call(call: ForwardCall) -> _AliasCall:
    """The model, alias (and version) of MLflow's alias call: its JSON body, else its query."""
    document: dict[str, object] = {}
    if isinstance(call.body, bytes) and call.body.strip():
        decoded = canonical_body(call.body).document
        if isinstance(decoded, dict):
            document = dict(decoded)
    if not document and call.query:
        document = dict(parse_qsl(call.query))
    try:
        wanted = msgspec.convert(document, _AliasCall, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"Invalid request body: {exc}") from None
    if not wanted.name:
        raise InvalidParameter("Missing value for required parameter 'name'.")
    return wanted


def _request_activity(request: StoredRequest, actions: list[str]) -> Activity:
    """An open alias request as its REQUESTED_ALIAS activity, with what the caller may do."""
    return Activity(
        id=str(request.activity_id) if request.activity_id is not None else "",  # never the request's row id
        activity_type=ActivityType.REQUESTED_ALIAS,
        user_id=request.requested_by,
        creation_timestamp=request.created_ms,
        last_updated_timestamp=request.created_ms,
        comment=request.comment,
        version=request.version,
        alias=request.alias,
        available_actions=actions,
    )
