"""What the registry workflow asks of a workspace's store: reads of its own, and the one write, a stage transition.

Reads (a version and its stage, the versions in a stage, a model) are the gateway's own calls
(`federation/direct.py`), made after the workflow's decision. The transition goes through the request
pipeline (`Forwarder.forward`) as the caller who decided it, so it is guarded, sent to wherever the
workspace's registry lives and mirrored like any other registry write (a dual workspace's outbox).

MLflow 3 still serves `POST /api/2.0/mlflow/model-versions/transition-stage`; stages are deprecated in
favour of aliases but present, and the workflow applies approved transitions with it (docs/registry.md).

A store without stages (`[stores.<name>] registry_stages = false`) gets the tag-plus-alias fallback: a
version's stage is its tag `fedgate.stage` (absent: None), and the version in Staging or Production holds the
alias `staging` or `production`. A transition then sets the tag (and archive_existing_versions the tag of the
others), points the stage's alias at the version, and removes a stage alias the version leaves; each step is a
call through the pipeline as the caller, idempotent, so a transition cut short is completed by trying again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from urllib.parse import urlencode

import msgspec

from gateway.core.errors import GatewayError, error_bytes, mlflow_error
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import (
    MODEL_VERSIONS_SET_TAG,
    MODEL_VERSIONS_TRANSITION_STAGE,
    REGISTERED_MODELS_DELETE_ALIAS,
    REGISTERED_MODELS_SET_ALIAS,
    RouteSpec,
)
from gateway.core.workspace_headers import WorkspaceHeaders
from gateway.federation.call import ForwardCall, ForwardResult
from gateway.registry.schemas import ModelTag, ModelVersion, ModelVersionDatabricks, ModelVersionTag

# The gateway's own read of a workspace's store: (link, path, query) -> (status, body).
Fetch = Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]]
# A call through the request pipeline (the forwarder), as its principal.
Forward = Callable[[ForwardCall], Awaitable[ForwardResult]]

SEARCH_PAGE = 1000
# The tag-plus-alias fallback of stores without stages.
STAGE_TAG = "fedgate.stage"
STAGE_ALIASES = {"Staging": "staging", "Production": "production"}
_STAGES = {stage.lower(): stage for stage in ("None", "Staging", "Production", "Archived")}


class StoreRefused(GatewayError):
    """The store answered a registry call with an error: its status, error code and message, passed on."""

    def __init__(self, status: int, body: bytes) -> None:
        try:
            error = msgspec.json.decode(body, type=_Error)
            code, message = error.error_code or "INTERNAL_ERROR", error.message or "The store refused the call."
        except msgspec.DecodeError:
            code, message = "INTERNAL_ERROR", f"The store answered {status}."
        super().__init__(message, error_code=code, status=status if 400 <= status < 600 else 502)


class _Error(msgspec.Struct):
    error_code: str = ""
    message: str = ""


class _VersionAnswer(msgspec.Struct):
    model_version: ModelVersionDatabricks


class VersionsPage(msgspec.Struct):
    """A page of model versions as the store answers a search (or get-latest-versions, which has no token)."""

    model_versions: list[ModelVersion] = msgspec.field(default_factory=list)
    next_page_token: str | None = None


class ModelAlias(msgspec.Struct):
    alias: str
    version: str


class StoreModel(msgspec.Struct, kw_only=True):
    name: str
    aliases: list[ModelAlias] = msgspec.field(default_factory=list)
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    user_id: str | None = None
    description: str | None = None
    latest_versions: list[ModelVersion] = msgspec.field(default_factory=list)
    tags: list[ModelTag] = msgspec.field(default_factory=list)


class _ModelAnswer(msgspec.Struct):
    registered_model: StoreModel


class RegistryStore:
    def __init__(
        self, fetch: Fetch, forward: Forward, stageless: Callable[[WorkspaceLink], bool] | None = None
    ) -> None:
        self._fetch = fetch
        self._forward = forward
        self._stageless = stageless or (lambda link: False)

    def stageless(self, link: WorkspaceLink) -> bool:
        """Whether the workspace's registry has no stages (the tag-plus-alias fallback records them)."""
        return self._stageless(link)

    async def version(self, link: WorkspaceLink, name: str, version: str) -> ModelVersionDatabricks | None:
        """The version as the store has it; None when it has no such version (deleted ones included)."""
        status, body = await self._fetch(
            link, "/api/2.0/mlflow/model-versions/get", urlencode({"name": name, "version": version})
        )
        if status == 404:
            return None
        if status != 200:
            raise StoreRefused(status, body)
        found = msgspec.json.decode(body, type=_VersionAnswer).model_version
        if self.stageless(link):
            found.current_stage = tagged_stage(found)
        return found

    async def model(self, link: WorkspaceLink, name: str) -> StoreModel | None:
        status, body = await self._fetch(link, "/api/2.0/mlflow/registered-models/get", urlencode({"name": name}))
        if status == 404:
            return None
        if status != 200:
            raise StoreRefused(status, body)
        return msgspec.json.decode(body, type=_ModelAnswer).registered_model

    async def versions_in(self, link: WorkspaceLink, name: str, stage: str) -> list[str]:
        """Every version of the model in `stage` (what archive_existing_versions moves to Archived)."""
        found: list[str] = []
        stageless = self.stageless(link)
        async for version in self._versions(link, name, stage, by_tag=stageless):
            current = tagged_stage(version) if stageless else version.current_stage
            if (current or "").lower() == stage.lower():
                found.append(version.version)
        return sorted(found, key=int)

    async def _versions(
        self, link: WorkspaceLink, name: str, stage: str, *, by_tag: bool = False
    ) -> AsyncIterator[ModelVersion]:
        quoted = _quote(name)
        if quoted is None and by_tag:
            raise StoreRefused(
                400,
                error_bytes(
                    mlflow_error(
                        "INVALID_PARAMETER_VALUE",
                        "A model whose name holds both quote characters cannot be searched on a store without stages.",
                    )
                ),
            )
        if quoted is None:  # not writable in the filter grammar: the latest version in the stage only
            status, body = await self._fetch(
                link,
                "/api/2.0/mlflow/registered-models/get-latest-versions",
                urlencode({"name": name, "stages": stage}),
            )
            if status != 200:
                raise StoreRefused(status, body)
            for version in msgspec.json.decode(body, type=VersionsPage).model_versions:
                yield version
            return
        token: str | None = None
        while True:
            query = {"filter": f"name = {quoted}", "max_results": str(SEARCH_PAGE)}
            if token:
                query["page_token"] = token
            status, body = await self._fetch(link, "/api/2.0/mlflow/model-versions/search", urlencode(query))
            if status != 200:
                raise StoreRefused(status, body)
            page = msgspec.json.decode(body, type=VersionsPage)
            for version in page.model_versions:
                yield version
            token = page.next_page_token
            if not token:
                return

    async def alias_version(self, link: WorkspaceLink, name: str, alias: str) -> str | None:
        """The version the model's alias points at; None when the model has no such alias.

        Read from the model's `aliases` (MLflow answers a missing alias with 400, like a malformed call)."""
        found = await self.model(link, name)
        for held in found.aliases if found is not None else []:
            if held.alias == alias:
                return held.version
        return None

    async def set_alias(
        self, principal: Principal, link: WorkspaceLink, name: str, alias: str, version: str, request_id: str
    ) -> ForwardResult:
        """MLflow's set-alias through the pipeline, as `principal`; the answer as the store gave it."""
        body = {"name": name, "alias": alias, "version": version}
        return await self._send(REGISTERED_MODELS_SET_ALIAS, principal, link, body, request_id)

    async def transition(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str,
        stage: str,
        archive_existing_versions: bool,
        request_id: str,
    ) -> ForwardResult:
        """MLflow's transition-stage through the pipeline, as `principal`; the answer as the store gave it."""
        if self.stageless(link):
            return await self._tag_transition(
                principal, link, name, version, stage, archive_existing_versions, request_id
            )
        body = {
            "name": name,
            "version": version,
            "stage": stage,
            "archive_existing_versions": archive_existing_versions,
        }
        return await self._send(MODEL_VERSIONS_TRANSITION_STAGE, principal, link, body, request_id)

    async def _tag_transition(
        self,
        principal: Principal,
        link: WorkspaceLink,
        name: str,
        version: str,
        stage: str,
        archive_existing_versions: bool,
        request_id: str,
    ) -> ForwardResult:
        """A transition on a store without stages: tags and aliases, each call answered like MLflow's would be."""
        target = _STAGES.get(stage.strip().lower())
        if target is None:
            return _answer(link, 400, mlflow_error("INVALID_PARAMETER_VALUE", f"Invalid stage {stage!r}."))
        found = await self.version(link, name, version)
        if found is None:
            message = f"Model Version (name={name}, version={version}) not found"
            return _answer(link, 404, mlflow_error("RESOURCE_DOES_NOT_EXIST", message))
        others: list[str] = []
        if archive_existing_versions and target in STAGE_ALIASES:
            others = [v for v in await self.versions_in(link, name, target) if v != found.version]
        model = await self.model(link, name)
        held = {a.alias: a.version for a in model.aliases} if model is not None else {}
        steps: list[tuple[RouteSpec, dict[str, object]]] = [
            (MODEL_VERSIONS_SET_TAG, {"name": name, "version": found.version, "key": STAGE_TAG, "value": target}),
        ]
        for other in others:
            steps.append(
                (MODEL_VERSIONS_SET_TAG, {"name": name, "version": other, "key": STAGE_TAG, "value": "Archived"})
            )
        if target in STAGE_ALIASES:
            steps.append(
                (REGISTERED_MODELS_SET_ALIAS, {"name": name, "alias": STAGE_ALIASES[target], "version": found.version})
            )
        for stage_name, alias in STAGE_ALIASES.items():
            if stage_name != target and held.get(alias) == found.version:
                steps.append((REGISTERED_MODELS_DELETE_ALIAS, {"name": name, "alias": alias}))
        for spec, body in steps:
            result = await self._send(spec, principal, link, body, request_id)
            if result.status != 200:
                return result
        found.current_stage = target
        found.tags = [t for t in found.tags or [] if t.key != STAGE_TAG] + [
            ModelVersionTag(key=STAGE_TAG, value=target)
        ]
        return _answer(link, 200, {"model_version": msgspec.to_builtins(found)})

    async def _send(
        self, spec: RouteSpec, principal: Principal, link: WorkspaceLink, body: Mapping[str, object], request_id: str
    ) -> ForwardResult:
        call = ForwardCall(
            spec=spec,
            principal=principal,
            workspace=WorkspaceHeaders(name=link.name),
            path_params={},
            query="",
            headers=[("content-type", "application/json")],
            body=msgspec.json.encode(body),
            request_id=request_id,
        )
        result = await self._forward(call)
        if result.stream is not None:  # a small JSON answer is read whole; be safe if it was not
            result.body = b"".join([chunk async for chunk in result.stream])
            result.stream = None
        return result


def tagged_stage(version: ModelVersion) -> str:
    """A version's stage on a store without stages: its `fedgate.stage` tag, else None."""
    for tag in version.tags or []:
        if tag.key == STAGE_TAG and tag.value:
            return _STAGES.get(tag.value.lower(), "None")
    return "None"


def _answer(link: WorkspaceLink, status: int, document: Mapping[str, object]) -> ForwardResult:
    return ForwardResult(status, {"content-type": "application/json"}, link.name, error_bytes(document))


def transitioned(result: ForwardResult) -> ModelVersionDatabricks:
    """The version in a transition's answer; StoreRefused when the store refused the transition."""
    if result.status != 200:
        raise StoreRefused(result.status, result.body)
    return msgspec.json.decode(result.body, type=_VersionAnswer).model_version


def _quote(name: str) -> str | None:
    """A name as a string literal of MLflow's filter grammar; None when it cannot be written as one."""
    if "'" not in name:
        return f"'{name}'"
    if '"' not in name:
        return f'"{name}"'
    return None
