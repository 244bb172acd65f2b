"""Promotion: a model version of one workspace copied into another workspace's registry, store to store.

`POST /api/2.0/fedgate/registry/promote {name: "<workspace>.<model>", version, target_name?}`, the target
workspace named as for every call (`X-MLFLOW-WORKSPACE` / `X-Databricks-Workspace-Id`). Who may:

- the source: CAN_READ on the source model (without it the model does not exist: 404);
- the target: CAN_EDIT on the target model when it exists (what a new version asks), else CAN_USE on the
  target workspace (what creating a model asks; the promoter then owns the new model, CAN_MANAGE).

The copy lands in stage None. What it may become in the target workspace is that workspace's workflow: a
move to Staging or Production, or of a protected alias, asks an approved request there (docs/registry.md).

How it is made, under an advisory lock on (target workspace, target model), so two promotions of the same
version cannot both copy:

1. the target model's versions are searched for the lineage key of the source version (workspace id, the
   gateway's id of the model, version): found, and holding a logged model the gateway made for that lineage
   (recorded in `registry_promotion_logged_models`), that version is the answer (a retry changes nothing);
   a version that holds the key and any other logged model (or none) is no promotion's copy;
2. a logged model in the target workspace's `fedgate-promotions` experiment receives every file of the
   source version, streamed from the source store (read in chunks, written as they come, never held
   whole); then it is READY. It is an earlier attempt's when the gateway recorded one for this lineage and
   target model and the store still holds it there, as made (in the promotions experiment, named as the
   target model, tagged with the lineage key): a copy that failed midway marks its logged model
   UPLOAD_FAILED (best effort) and the retry copies every file into that one again, so failed attempts never
   pile up; an earlier attempt that became READY is used as it is (its files and status handed to the hooks
   again, as a retry that finds the copy does). A new logged model is recorded before any
   file is copied into it; a logged model the gateway did not record (one made by someone else and tagged
   with the key) is never taken up;
3. only then the registered model (if new) and the version are created, the version with its lineage
   tags in the one call that creates it; a failure before leaves no version, only that logged model;
4. one transaction appends PROMOTED_TO_WORKSPACE to the source version's log and PROMOTED_FROM_WORKSPACE
   to the copy's, each with its audit row.

Every write to the target store is handed to the forwarder's after-write hooks as if it had come through the
gateway (the index, and in a `dual` target the outbox: the central store gets the experiment, the logged
model with every file, the registered model and the version). A retry that finds the copy hands its registered
model, files, status and version to the hooks again, so a crash between the copy and its outbox entries loses
nothing. A registered model a retry finds made (an earlier attempt's, whose entry failed) is not handed again: the
relay makes it in the central store when its version needs it (dual/mirror.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail
from gateway.authz.decide import Authorizer
from gateway.authz.levels import Level, model_object, workspace_object
from gateway.core.errors import (
    GatewayError,
    InvalidParameter,
    PermissionDenied,
    ResourceNotFound,
    StoreUnavailable,
    hidden,
)
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.numbers import is_number
from gateway.core.paths import artifact_workspace, canonical_artifact_path
from gateway.core.ports import Store
from gateway.core.principal import Principal
from gateway.core.reserved import PROMOTIONS_EXPERIMENT
from gateway.core.route_table import (
    ARTIFACT_UPLOAD,
    EXPERIMENTS_CREATE,
    LOGGED_MODELS_CREATE,
    MODEL_VERSIONS_CREATE,
    REGISTERED_MODELS_CREATE,
    RouteSpec,
    declared,
)
from gateway.db.locks import LockClass, autocommit_connection, held
from gateway.db.models import RegistryPromotionLoggedModelRow, RegistryPromotionSettingsRow
from gateway.federation.hooks import AcceptedWrite, AfterWrite
from gateway.federation.schemas import RequestIds
from gateway.registry.repository import NewActivity
from gateway.registry.service import ActivityType, Model, RegistryWorkflow
from gateway.stores.client import Refused, StoreClient, Transient, own_store

KEY_TAG = "fedgate.promoted_from"  # w<workspace id>/<model id>/<version>: what makes a retry find its copy
LINEAGE_TAGS = (
    "fedgate.promoted_from.workspace",
    "fedgate.promoted_from.model",
    "fedgate.promoted_from.version",
    "fedgate.promoted_from.run_id",
)
LOCK_WAIT_SECONDS = 600.0  # a copy of large files takes its time; a second promotion of it waits
LOGGED_MODELS_FINALIZE = declared("PATCH /mlflow/logged-models/{model_id:str}")
READY = "LOGGED_MODEL_READY"
SEARCH_PAGE = 100  # versions (logged models) of one source version per page of the search for an earlier copy


class ModelOwners(Protocol):
    """What promotion needs of the gateway's model ids and owners (`AccessService` in the app)."""

    async def model_id(self, link: WorkspaceLink, name: str, *, adopt: bool) -> str | None: ...

    async def record_owner(self, principal: Principal, link: WorkspaceLink, kind: str, created: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Checked:
    """A promotion's source version and target, as `Promotions.check` found them."""

    source: WorkspaceLink
    name: str  # the source model's name in its workspace
    source_id: str  # the gateway's id of the source model
    version: str
    source_version: dict[str, Any]  # as the source store answers it
    target_name: str
    target_id: str | None  # the target model's id; None: it does not exist yet


@dataclass(frozen=True, slots=True)
class MadeLoggedModel:
    """A logged model a promotion made (`registry_promotion_logged_models`)."""

    model_id: str
    target_name: str
    experiment_id: str


@dataclass(frozen=True, slots=True)
class Promoted:
    version: dict[str, Any]  # the target's model version, as its store answers it
    copied: bool  # False: an earlier promotion had made it (a retry)
    files: int
    bytes: int


class Promotions:
    def __init__(
        self,
        links: LinkTable,
        stores: Mapping[str, Store],
        authorizer: Authorizer,
        models: ModelOwners,
        workflow: RegistryWorkflow,
        sessionmaker: async_sessionmaker[AsyncSession],
        audit: AuditTrail,
        after_write: Sequence[AfterWrite] = (),
    ) -> None:
        self._links = links
        self._after_write = tuple(after_write)  # the forwarder's: index, dual outbox
        self._stores = stores
        self._authorizer = authorizer
        self._models = models
        self._workflow = workflow
        self._sessionmaker = sessionmaker
        self._audit = audit

    async def promote(
        self, principal: Principal, target: WorkspaceLink, qualified: str, version: str, target_name: str | None
    ) -> Promoted:
        """A direct promotion: refused (403) in a workspace that wants promotions approved, unless the caller
        is one who could approve it (registry/promotion_requests.py)."""
        checked = await self.check(principal, target, qualified, version, target_name)
        if await self.need_approval(target) and not self.may_approve(principal, target, checked.target_id):
            raise PermissionDenied(
                f"Promotions into workspace '{target.name}' need an approved request: ask for one with "
                "POST /api/2.0/fedgate/registry/promotion-requests/create."
            )
        return await self.execute(principal, target, checked)

    async def check(
        self, principal: Principal, target: WorkspaceLink, qualified: str, version: str, target_name: str | None
    ) -> Checked:
        """The source version and both sides' rights, as `principal` has them; raises as the module says."""
        source, name = self._source(qualified)
        version = version.strip()
        if not is_number(version):
            raise InvalidParameter(f"Invalid model version '{version[:40]}': a version is a positive integer.")
        version = str(int(version))
        target_name = (target_name or name).strip()
        if not target_name or len(target_name) > 256:
            raise InvalidParameter("target_name is 1 to 256 characters.")
        if source.workspace_id == target.workspace_id:
            raise InvalidParameter("A promotion copies into another workspace; this version is already here.")
        # The source: CAN_READ on its model, else it does not exist.
        missing = f"Registered Model with name={qualified} not found"
        adopt = self._authorizer.allows(
            principal, source.workspace_id, workspace_object(source.workspace_id), Level.CAN_READ
        )
        source_id = await self._models.model_id(source, name, adopt=adopt)
        if source_id is None:
            raise ResourceNotFound(missing)
        self._authorizer.require(
            principal, source.workspace_id, model_object(source.workspace_id, source_id), Level.CAN_READ, missing
        )
        from_store = own_store(self._stores, source)
        found = await _maybe(from_store, "/api/2.0/mlflow/model-versions/get", {"name": name, "version": version})
        if found is None:
            raise ResourceNotFound(f"Model Version (name={qualified}, version={version}) not found")
        # The target: CAN_EDIT on its model, or CAN_USE on the workspace for a new model.
        target_id = await self._target_rights(principal, target, target_name)
        return Checked(source, name, source_id, version, dict(found["model_version"]), target_name, target_id)

    async def target_id(self, target: WorkspaceLink, name: str) -> str | None:
        """The gateway's id of a model of the target workspace; None when the store has no such model."""
        return await self._models.model_id(target, name, adopt=True)

    async def need_approval(self, target: WorkspaceLink) -> bool:
        async with self._sessionmaker() as session:
            row = await session.get(RegistryPromotionSettingsRow, target.workspace_id)
        return row is not None and row.need_approval

    def may_approve(self, principal: Principal, target: WorkspaceLink, target_id: str | None) -> bool:
        """Who decides a promotion: Production's level on an existing target model, else CAN_MANAGE on the
        target workspace (a new model)."""
        if target_id is not None:
            obj = model_object(target.workspace_id, target_id)
            return self._authorizer.allows(principal, target.workspace_id, obj, Level.CAN_MANAGE_PRODUCTION_VERSIONS)
        return self._authorizer.allows(
            principal, target.workspace_id, workspace_object(target.workspace_id), Level.CAN_MANAGE
        )

    async def execute(
        self,
        principal: Principal,
        target: WorkspaceLink,
        checked: Checked,
        *,
        owner: Principal | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
        then: Callable[[AsyncSession, Promoted], Awaitable[None]] | None = None,
    ) -> Promoted:
        """Make the copy (checked by `check`) as `principal`; a new target model is owned by `owner` (default:
        `principal`). `before` runs under the target's lock before anything is looked up or copied, and may raise
        to copy nothing (an approval: its request still open); `then` runs in the transaction that appends the
        promotion's activities (or, on a retry that finds the copy, in one of its own) and may raise to refuse
        the promotion's record."""
        source, name, version = checked.source, checked.name, checked.version
        qualified = f"{source.name}.{name}"
        from_store = own_store(self._stores, source)
        try:
            uri = (
                await from_store.get(
                    "/api/2.0/mlflow/model-versions/get-download-uri", {"name": name, "version": version}
                )
            )["artifact_uri"]
        except Transient as exc:
            raise StoreUnavailable(f"A store did not answer during the promotion; try again ({exc}).") from exc
        root = _store_path(str(uri), source)
        target_name, target_id = checked.target_name, checked.target_id
        key = f"w{source.workspace_id}/{checked.source_id}/{version}"
        async with self.target_lock(target, target_name):
            if before is not None:
                await before()
            to_store = own_store(self._stores, target)
            try:
                made_before = await self._made_logged_models(target, key)
                existing = await self._copy_of(to_store, target_name, key, made_before)
                if existing is not None:
                    await self._recorded_again(principal, target, to_store, existing)
                    done = Promoted(existing, False, 0, 0)
                    if then is not None:
                        async with self._sessionmaker() as session, session.begin():
                            await then(session, done)
                    return done
                files, size, version_made, created_model = await self._copy(
                    principal,
                    source,
                    name,
                    version,
                    checked.source_version,
                    root,
                    target,
                    to_store,
                    target_name,
                    key,
                    made_before,
                )
            except Transient as exc:
                raise StoreUnavailable(f"A store did not answer during the promotion; try again ({exc}).") from exc
            except Refused as exc:
                raise GatewayError(
                    exc.message or str(exc), error_code=exc.error_code or "INVALID_STATE", status=exc.status or 502
                ) from exc
            # Recorded under the lock: a second promotion (or approval) of the same version, waiting for it,
            # then finds the copy and its record both made.
            if created_model:
                await self._models.record_owner(owner or principal, target, "registered_model", target_name)
            target_id = target_id or await self._models.model_id(target, target_name, adopt=True)
            assert target_id is not None
            source_model = Model(source, name, checked.source_id, Level.CAN_READ.value)
            target_model = Model(target, target_name, target_id, Level.CAN_EDIT.value)
            made = str(version_made["version"])
            run_id = str(checked.source_version.get("run_id") or "")
            done = Promoted(version_made, True, files, size)

            async def first(session: AsyncSession) -> None:
                if then is not None:
                    await then(session, done)

            await self._workflow.record(
                principal,
                [
                    (
                        source_model,
                        NewActivity(
                            version,
                            ActivityType.PROMOTED_TO_WORKSPACE,
                            principal.name,
                            system_comment=f"Copied to {target.name}.{target_name} version {made}.",
                        ),
                    ),
                    (
                        target_model,
                        NewActivity(
                            made,
                            ActivityType.PROMOTED_FROM_WORKSPACE,
                            principal.name,
                            system_comment=f"Copied from {qualified} version {version}"
                            + (f" (run {run_id})." if run_id else "."),
                        ),
                    ),
                ],
                first=first,
            )
            return done

    @contextlib.asynccontextmanager
    async def target_lock(
        self, target: WorkspaceLink, target_name: str, wait: float = LOCK_WAIT_SECONDS
    ) -> AsyncIterator[None]:
        """The lock of promotions into one target model, across gateway processes: a promotion (or an approved
        request) holds it from its lookup of an earlier copy to its record; a decision on a request into the
        model takes it too (registry/promotion_requests.py). 409 when not got within `wait` seconds."""
        async with (
            autocommit_connection(self._sessionmaker) as connection,
            held(
                connection, LockClass.REGISTRY_MODEL, f"promote:{target.workspace_id}:{target_name}", wait=wait
            ) as got,
        ):
            if not got:
                raise GatewayError(
                    f"Another promotion into '{target_name}' is under way; try again shortly.",
                    error_code="INVALID_STATE",
                    status=409,
                )
            yield

    def _source(self, qualified: str) -> tuple[WorkspaceLink, str]:
        workspace, dot, name = qualified.partition(".")
        if not dot or not name:
            raise InvalidParameter(
                f"Name the source model as '<workspace>.<name>' (e.g. 'team-a.churn'), not '{qualified[:200]}'."
            )
        link = self._links.get(workspace)
        if link is None:
            raise ResourceNotFound(f"Registered Model with name={qualified} not found")
        return link, name

    async def _target_rights(self, principal: Principal, target: WorkspaceLink, name: str) -> str | None:
        """The target model's id when it exists (CAN_EDIT on it required), else None (CAN_USE on the workspace)."""
        adopt = self._authorizer.allows(
            principal, target.workspace_id, workspace_object(target.workspace_id), Level.CAN_READ
        )
        model_id = await self._models.model_id(target, name, adopt=adopt)
        exists = model_id is not None or (
            not adopt
            and await _maybe(own_store(self._stores, target), "/api/2.0/mlflow/registered-models/get", {"name": name})
            is not None
        )
        if model_id is not None:
            self._authorizer.require(
                principal,
                target.workspace_id,
                model_object(target.workspace_id, model_id),
                Level.CAN_EDIT,
                f"Registered Model with name={name} not found",
            )
            return model_id
        if exists:  # a model of that name the caller cannot see: as refused as any other write to it
            raise hidden(f"Registered Model with name={name} not found")
        self._authorizer.require_workspace(principal, target.workspace_id, target.name, Level.CAN_USE)
        return None

    async def _made_logged_models(self, target: WorkspaceLink, key: str) -> list[MadeLoggedModel]:
        """The logged models promotions of this lineage into `target` made, newest first."""
        row = RegistryPromotionLoggedModelRow
        async with self._sessionmaker() as session:
            found = await session.execute(
                select(row.model_id, row.target_name, row.experiment_id)
                .where(row.workspace_id == target.workspace_id, row.lineage_key == key)
                .order_by(row.created_at.desc())
            )
            return [MadeLoggedModel(model_id, name, experiment) for model_id, name, experiment in found.all()]

    async def _copy_of(
        self, store: StoreClient, name: str, key: str, made: Sequence[MadeLoggedModel]
    ) -> dict[str, Any] | None:
        """The target model's version made from the source version, if any: one tagged with its lineage key that
        holds a logged model a promotion of that lineage made (a tag is anyone's who writes to the store; the
        record of what the gateway made is its own).

        Searched by the lineage key alone (our own text) and matched on the name here: the name is the caller's, and
        MLflow's filter grammar has no escape for a name holding both quotes, which would end the string and make
        the search find the copy in another model of the target workspace (one the caller may not read)."""
        ours = {logged.model_id for logged in made}
        if not ours:
            return None
        search = {"filter": f"tags.`{KEY_TAG}` = '{key}'", "max_results": str(SEARCH_PAGE)}
        try:
            async for version in store.items("GET", "/api/2.0/mlflow/model-versions/search", search, "model_versions"):
                if version.get("name") == name and _logged_model_of(version) in ours:
                    return dict(version)
        except Refused as exc:
            if exc.status != 404:  # 404: nothing to search in
                raise
        return None

    async def _copy(
        self,
        principal: Principal,
        source: WorkspaceLink,
        name: str,
        version: str,
        source_version: Mapping[str, Any],
        root: str,
        target: WorkspaceLink,
        to_store: StoreClient,
        target_name: str,
        key: str,
        made: Sequence[MadeLoggedModel],
    ) -> tuple[int, int, dict[str, Any], bool]:
        experiment_id = await self._experiment(principal, target, to_store)
        lineage = [
            source.name,
            name,
            version,
            str(source_version.get("run_id") or ""),
        ]
        tags = [{"key": k, "value": v} for k, v in zip(LINEAGE_TAGS, lineage, strict=True) if v]
        tags.append({"key": KEY_TAG, "value": key})
        # An earlier attempt's logged model (a copy that failed midway, or one that failed after its files)
        # is taken up again rather than left behind with another beside it.
        logged = await self._earlier_attempt(to_store, experiment_id, target_name, key, made)
        if logged is None:
            request = {"experiment_id": experiment_id, "name": target_name, "tags": tags}
            answer = await to_store.post("/api/2.0/mlflow/logged-models", request)
            logged = answer["model"]["info"]
            # Recorded before a file goes into it: a retry takes up only what is recorded.
            await self._remember(principal, target, str(logged["model_id"]), key, target_name, experiment_id)
            await self._record(principal, target, LOGGED_MODELS_CREATE, request, answer)
        logged_id = str(logged["model_id"])
        destination = _store_path(str(logged["artifact_uri"]), target)
        from_store = own_store(self._stores, source)

        async def uploaded(path: str) -> None:
            await self._record(principal, target, ARTIFACT_UPLOAD, None, None, artifact_path=path)

        if logged.get("status") == READY:  # every file was copied before the attempt failed
            # Its files and status handed to the hooks again, as a retry that finds the version does
            # (`_recorded_again`): the attempt that copied them may have run before the workspace was dual, or
            # ended before its entries were committed. What they record is idempotent.
            files = size = 0
            async for relative, length in _files(to_store, destination):
                await uploaded(f"{destination}/{relative}")
                files, size = files + 1, size + length
            ready = {"model_id": logged_id, "status": READY}
            await self._record(principal, target, LOGGED_MODELS_FINALIZE, ready, None, model_id=logged_id)
        else:
            try:
                files, size = await _stream_tree(from_store, root, to_store, destination, uploaded)
                ready = {"model_id": logged_id, "status": READY}
                await to_store.call("PATCH", f"/api/2.0/mlflow/logged-models/{quote(logged_id)}", ready)
                await self._record(principal, target, LOGGED_MODELS_FINALIZE, ready, None, model_id=logged_id)
            except BaseException:
                with contextlib.suppress(Transient, Refused):
                    await to_store.call(
                        "PATCH",
                        f"/api/2.0/mlflow/logged-models/{quote(logged_id)}",
                        {"model_id": logged_id, "status": "LOGGED_MODEL_UPLOAD_FAILED"},
                    )
                raise
        created_model = False
        try:
            made_model = await to_store.post("/api/2.0/mlflow/registered-models/create", {"name": target_name})
            created_model = True
            await self._record(principal, target, REGISTERED_MODELS_CREATE, {"name": target_name}, made_model)
        except Refused as exc:
            if not exc.already_exists:
                raise
        body = {
            "name": target_name,
            "source": f"models:/{logged_id}",
            "model_id": logged_id,
            "tags": tags,
            "description": str(source_version.get("description") or ""),
        }
        answer = await to_store.post("/api/2.0/mlflow/model-versions/create", body)
        await self._record(principal, target, MODEL_VERSIONS_CREATE, body, answer)
        return files, size, dict(answer["model_version"]), created_model

    async def _earlier_attempt(
        self, store: StoreClient, experiment_id: str, name: str, key: str, made: Sequence[MadeLoggedModel]
    ) -> dict[str, Any] | None:
        """The logged model an earlier promotion of the same version into `name` made (its newest), if the store
        still holds it as it was made: in the promotions experiment, named `name`, tagged with the lineage key.
        Only logged models the gateway recorded count; one tagged with the key by anyone else is no attempt."""
        for recorded in made:
            if recorded.target_name != name or recorded.experiment_id != experiment_id:
                continue
            found = await _maybe(store, f"/api/2.0/mlflow/logged-models/{quote(recorded.model_id)}", {})
            info = dict((found or {}).get("model", {}).get("info") or {})
            tags = {t.get("key"): t.get("value") for t in info.get("tags") or [] if isinstance(t, dict)}
            if (
                str(info.get("model_id")) == recorded.model_id
                and str(info.get("experiment_id")) == experiment_id
                and info.get("name") == name
                and tags.get(KEY_TAG) == key
            ):
                return info
        return None

    async def _remember(
        self, principal: Principal, target: WorkspaceLink, model_id: str, key: str, name: str, experiment_id: str
    ) -> None:
        async with self._sessionmaker() as session, session.begin():
            session.add(
                RegistryPromotionLoggedModelRow(
                    workspace_id=target.workspace_id,
                    model_id=model_id,
                    lineage_key=key,
                    target_name=name,
                    experiment_id=experiment_id,
                    created_by=principal.name,
                )
            )

    async def _record(
        self,
        principal: Principal,
        link: WorkspaceLink,
        spec: RouteSpec,
        request: Mapping[str, Any] | None,
        response: Mapping[str, Any] | None,
        *,
        artifact_path: str | None = None,
        model_id: str | None = None,
    ) -> None:
        """One write the target store accepted, handed to the after-write hooks that want it; a hook that
        cannot record it (the outbox's database down) fails the promotion, which a retry completes."""
        hooks = [hook for hook in self._after_write if hook.wants(spec, link)]
        if not hooks:
            return
        body = msgspec.json.encode(request) if request is not None else b""
        write = AcceptedWrite(
            spec,
            link,
            principal.name,
            body,
            msgspec.json.encode(response) if response is not None else b"",
            msgspec.json.decode(body, type=RequestIds) if body else None,
            {"model_id": model_id} if model_id else {},
            _client_path(artifact_path, link) if artifact_path is not None else None,
        )
        for hook in hooks:
            await hook.record(write)

    async def _recorded_again(
        self, principal: Principal, target: WorkspaceLink, store: StoreClient, version: Mapping[str, Any]
    ) -> None:
        """A copy found by a retry: its registered model, files, READY status and version handed to the hooks
        again (what they record is idempotent), in case the earlier attempt ended between making the copy and
        recording it, or made it before the workspace was dual.

        The logged model is the one the version's `source` names (`_copy_of` took the version for the copy by it):
        MLflow 3.17.2's SQL store answers no `model_id` in a model version. Read from there, the files were never
        queued again, and the version was queued without the `model_id` that MLflow demands beside a
        `models:/m-...` source, so the central store refused it (a dead letter)."""
        if not any(hook.wants(MODEL_VERSIONS_CREATE, target) for hook in self._after_write):
            return
        name = str(version["name"])
        model = (await store.get("/api/2.0/mlflow/registered-models/get", {"name": name}))["registered_model"]
        request: dict[str, Any] = {"name": name, "tags": list(model.get("tags") or [])}
        if model.get("description"):
            request["description"] = model["description"]
        await self._record(principal, target, REGISTERED_MODELS_CREATE, request, {"registered_model": model})
        model_id = _logged_model_of(version)
        found = await store.get(f"/api/2.0/mlflow/logged-models/{quote(model_id)}")
        info = found["model"]["info"]
        root = _store_path(str(info["artifact_uri"]), target)
        async for relative, _ in _files(store, root):
            await self._record(principal, target, ARTIFACT_UPLOAD, None, None, artifact_path=f"{root}/{relative}")
        if info.get("status") == READY:
            ready = {"model_id": model_id, "status": READY}
            await self._record(principal, target, LOGGED_MODELS_FINALIZE, ready, None, model_id=model_id)
        fields = ("name", "source", "run_id", "description")
        body = {k: version[k] for k in fields if version.get(k)}
        body["model_id"] = model_id
        body["tags"] = list(version.get("tags") or [])
        await self._record(principal, target, MODEL_VERSIONS_CREATE, body, {"model_version": version})

    async def _experiment(self, principal: Principal, target: WorkspaceLink, store: StoreClient) -> str:
        found = await _maybe(
            store, "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": PROMOTIONS_EXPERIMENT}
        )
        if found is not None:
            return str(found["experiment"]["experiment_id"])
        try:
            created = await store.post("/api/2.0/mlflow/experiments/create", {"name": PROMOTIONS_EXPERIMENT})
            await self._record(principal, target, EXPERIMENTS_CREATE, {"name": PROMOTIONS_EXPERIMENT}, created)
            return str(created["experiment_id"])
        except Refused as exc:
            if not exc.already_exists:
                raise
        again = await store.get("/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": PROMOTIONS_EXPERIMENT})
        return str(again["experiment"]["experiment_id"])


def _logged_model_of(version: Mapping[str, Any]) -> str:
    """The logged model a version holds, by its `source` (`models:/<id>`, as a promotion makes it); "" for none.

    The store keeps `source` as given and files the version from that logged model's location; MLflow 3.17.2's SQL
    store keeps no `model_id` and answers none, so a store that does answer one must agree."""
    source = str(version.get("source") or "")
    model_id = source[len("models:/") :] if source.startswith("models:/") else ""
    if not model_id or "/" in model_id or str(version.get("model_id") or model_id) != model_id:
        return ""
    return model_id


async def _files(store: StoreClient, root: str) -> AsyncIterator[tuple[str, int]]:
    """(path relative to `root`, size) of every file under `root` of a store's proxied artifacts."""
    folders = [""]
    while folders:
        folder = folders.pop()
        listed = await store.get("/api/2.0/mlflow-artifacts/artifacts", {"path": f"{root}/{folder}".rstrip("/")})
        for item in listed.get("files") or []:
            relative = f"{folder}/{item['path']}".lstrip("/")
            canonical_artifact_path(relative)
            if item.get("is_dir"):
                folders.append(relative)
            else:
                yield relative, int(item.get("file_size") or 0)


async def _stream_tree(
    source: StoreClient,
    root: str,
    target: StoreClient,
    destination: str,
    uploaded: Callable[[str], Awaitable[None]],
) -> tuple[int, int]:
    """Every file under `root` of the source store streamed to `destination` of the target, each told to
    `uploaded` (its path in the target) once written; (files, bytes)."""
    files = size = 0
    async for relative, length in _files(source, root):
        answer = await source.send(
            "GET", "/api/2.0/mlflow-artifacts/artifacts/" + quote(f"{root}/{relative}"), idempotent=True
        )
        if answer.status != 200:
            await source.document(answer)  # raises the store's refusal
        try:
            written = await target.send(
                "PUT",
                "/api/2.0/mlflow-artifacts/artifacts/" + quote(f"{destination}/{relative}"),
                headers=[("content-type", "application/octet-stream")],
                body=answer.iter_chunks(),
            )
        except Transient:
            answer.release()
            raise
        await target.document(written)
        await uploaded(f"{destination}/{relative}")
        files += 1
        size += length
    return files, size


async def _maybe(store: StoreClient, path: str, query: Mapping[str, str]) -> dict[str, Any] | None:
    try:
        return await store.get(path, query)
    except Refused as exc:
        if exc.not_found:
            return None
        raise


def _client_path(path: str, link: WorkspaceLink) -> str:
    """A store's artifact path named in the gateway's workspace, as the hooks expect a client's path."""
    named = artifact_workspace(path)
    if named is None or link.upstream_workspace is None or named != link.upstream_workspace:
        return path
    return f"workspaces/{link.name}" + path[len("workspaces/") + len(named) :]


def _store_path(uri: str, link: WorkspaceLink) -> str:
    if not uri.startswith("mlflow-artifacts:/"):
        raise InvalidParameter(
            f"The files of this version are not in workspace '{link.name}''s proxied artifacts "
            f"({uri.split(':', 1)[0]}:); they cannot be promoted through the gateway."
        )
    return canonical_artifact_path(uri[len("mlflow-artifacts:") :].lstrip("/"))


class PromoteRequest(msgspec.Struct):
    name: str  # <workspace>.<model>: the source
    version: str
    target_name: str | None = None  # the model in the target workspace (default: the source model's name)


class PromoteResponse(msgspec.Struct):
    model_version: dict[str, Any]
    copied: bool
    files: int
    bytes: int
