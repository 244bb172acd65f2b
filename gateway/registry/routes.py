"""The registry workflow over REST, in Databricks' shapes, and MLflow's own transition-stage route.

`/api/2.0/mlflow/transition-requests/...`, `/comments/...`, `/databricks/registered-models/get`,
`/databricks/model-versions/transition-stage` (Databricks' workspace model registry, so the stock
`databricks-sdk` `w.model_registry` works unchanged) and `/activities/list` (the gateway's: Databricks
has no public list of activities; its Activity shape is kept). The workspace is named by
`X-MLFLOW-WORKSPACE` or `X-Databricks-Workspace-Id` by the rule every route shares
(gateway/core/workspace_headers.py; the `link` dependency), else the `default` workspace.

MLflow's `POST /api/2.0/mlflow/model-versions/transition-stage` is a declared forwarded route that the
workflow serves itself (`MlflowTransitionStage`, given to `forwarding_handlers`): the same rules, lock
and activity log as a direct transition, the store's own answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter

from gateway.authz.workspace_choice import chosen_workspace
from gateway.core.errors import InvalidParameter, PermissionDenied
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.reserved import SOURCE_READ_ONLY_TAG, folded
from gateway.core.schemas import Empty
from gateway.federation.call import ForwardCall, ForwardResult
from gateway.federation.canonical import canonical_body
from gateway.federation.service import Forwarder
from gateway.observability.access import REQUEST_ID_KEY
from gateway.registry.aliases import AliasApprovals
from gateway.registry.promotion import KEY_TAG, PromoteRequest, PromoteResponse, Promotions
from gateway.registry.promotion_requests import PromotionRequest, PromotionRequests, PromotionSettings
from gateway.registry.schemas import (
    ActivitiesResponse,
    ActivityResponse,
    ApproveTransitionRequest,
    CommentResponse,
    CreateAliasRequest,
    CreateAliasRequestResponse,
    CreateComment,
    CreateTransitionRequest,
    CreateTransitionRequestResponse,
    DecideAliasRequest,
    GetModelResponse,
    ListTransitionRequestsResponse,
    RegistrySettingsResponse,
    RejectTransitionRequest,
    TransitionStage,
    TransitionStageResponse,
    UpdateComment,
    UpdateRegistrySettings,
)
from gateway.registry.service import RegistryWorkflow
from gateway.registry.store import STAGE_TAG
from gateway.registry.webhooks import (
    CreateWebhook,
    ListWebhooksResponse,
    RegistryWebhooks,
    TestWebhook,
    TestWebhookResponse,
    UpdateWebhook,
    WebhookResponse,
)

ACCESS_REQUESTS = (
    "CAN_READ on the model: create and list; approve and reject: CAN_MANAGE_STAGING_VERSIONS among None, Staging "
    "and Archived, CAN_MANAGE_PRODUCTION_VERSIONS into or out of Production; delete (cancel): the requester or "
    "CAN_MANAGE"
)


def _link() -> dict[str, Provide]:
    """The `link` dependency: the workspace the call names (X-MLFLOW-WORKSPACE or X-Databricks-Workspace-Id),
    else the default one."""
    return {"link": Provide(chosen_workspace, sync_to_thread=False)}


def _request_id(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get(REQUEST_ID_KEY, ""))  # type: ignore[call-overload,unused-ignore]


class TransitionRequestsController(Controller):
    path = "/api/2.0/mlflow/transition-requests"
    opt = {"access": ACCESS_REQUESTS}
    dependencies = _link()

    @post("/create", name="registry request create", status_code=200)
    async def create(
        self,
        request: Request[Principal, Any, Any],
        data: CreateTransitionRequest,
        registry: RegistryWorkflow,
        link: WorkspaceLink,
    ) -> CreateTransitionRequestResponse:
        created = await registry.create_request(request.user, link, data.name, data.version, data.stage, data.comment)
        return CreateTransitionRequestResponse(request=created)

    @get("/list", name="registry request list")
    async def list_requests(
        self,
        request: Request[Principal, Any, Any],
        registry: RegistryWorkflow,
        link: WorkspaceLink,
        name: str,
        version: str,
    ) -> ListTransitionRequestsResponse:
        return ListTransitionRequestsResponse(requests=await registry.list_requests(request.user, link, name, version))

    @post("/approve", name="registry request approve", status_code=200)
    async def approve(
        self,
        request: Request[Principal, Any, Any],
        data: ApproveTransitionRequest,
        registry: RegistryWorkflow,
        link: WorkspaceLink,
    ) -> ActivityResponse:
        activity = await registry.approve(
            request.user,
            link,
            data.name,
            data.version,
            data.stage,
            data.archive_existing_versions,
            data.comment,
            _request_id(request),
        )
        return ActivityResponse(activity=activity)

    @post("/reject", name="registry request reject", status_code=200)
    async def reject(
        self,
        request: Request[Principal, Any, Any],
        data: RejectTransitionRequest,
        registry: RegistryWorkflow,
        link: WorkspaceLink,
    ) -> ActivityResponse:
        activity = await registry.reject(request.user, link, data.name, data.version, data.stage, data.comment)
        return ActivityResponse(activity=activity)

    @delete("/delete", name="registry request delete", status_code=200)
    async def cancel(
        self,
        request: Request[Principal, Any, Any],
        registry: RegistryWorkflow,
        link: WorkspaceLink,
        name: str,
        version: str,
        stage: str,
        creator: str,
        comment: str | None = None,
    ) -> ActivityResponse:
        activity = await registry.cancel(request.user, link, name, version, stage, creator, comment)
        return ActivityResponse(activity=activity)


class CommentsController(Controller):
    path = "/api/2.0/mlflow/comments"
    opt = {"access": "create: CAN_READ on the model; update and delete: the comment's author or CAN_MANAGE"}
    dependencies = _link()

    @post("/create", name="registry comment create", status_code=200)
    async def create(
        self,
        request: Request[Principal, Any, Any],
        data: CreateComment,
        registry: RegistryWorkflow,
        link: WorkspaceLink,
    ) -> CommentResponse:
        comment = await registry.create_comment(request.user, link, data.name, data.version, data.comment)
        return CommentResponse(comment=comment)

    @patch("/update", name="registry comment update")
    async def update(
        self,
        request: Request[Principal, Any, Any],
        data: UpdateComment,
        registry: RegistryWorkflow,
        link: WorkspaceLink,
    ) -> CommentResponse:
        return CommentResponse(comment=await registry.update_comment(request.user, link, data.id, data.comment))

    @delete("/delete", name="registry comment delete", status_code=200)
    async def remove(
        self,
        request: Request[Principal, Any, Any],
        registry: RegistryWorkflow,
        link: WorkspaceLink,
        comment_id: str = Parameter(query="id"),
    ) -> Empty:
        await registry.delete_comment(request.user, link, comment_id)
        return Empty()


class DatabricksRegistryController(Controller):
    path = "/api/2.0/mlflow/databricks"
    opt = {
        "access": "registered-models/get: CAN_READ on the model; model-versions/transition-stage: "
        "CAN_MANAGE_STAGING_VERSIONS among None, Staging and Archived, CAN_MANAGE_PRODUCTION_VERSIONS into or "
        "out of Production"
    }
    dependencies = _link()

    @get("/registered-models/get", name="registry model get")
    async def get_model(
        self,
        request: Request[Principal, Any, Any],
        registry: RegistryWorkflow,
        link: WorkspaceLink,
        name: str = Parameter(query="name", min_length=1),
    ) -> GetModelResponse:
        return GetModelResponse(registered_model_databricks=await registry.model_databricks(request.user, link, name))

    @post("/model-versions/transition-stage", name="registry transition stage", status_code=200)
    async def transition_stage(
        self,
        request: Request[Principal, Any, Any],
        data: TransitionStage,
        registry: RegistryWorkflow,
        link: WorkspaceLink,
    ) -> TransitionStageResponse:
        version = await registry.transition(
            request.user,
            link,
            data.name,
            data.version,
            data.stage,
            data.archive_existing_versions,
            data.comment,
            _request_id(request),
        )
        return TransitionStageResponse(model_version_databricks=version)


class ActivitiesController(Controller):
    path = "/api/2.0/mlflow/activities"
    opt = {"access": "CAN_READ on the model"}
    dependencies = _link()

    @get("/list", name="registry activities")
    async def list_activities(
        self,
        request: Request[Principal, Any, Any],
        registry: RegistryWorkflow,
        link: WorkspaceLink,
        name: str,
        version: str | None = None,
        page_token: str | None = None,
        max_results: int = Parameter(query="max_results", default=100, ge=1, le=1000),
    ) -> ActivitiesResponse:
        """A model's activity log (or one version's), newest first."""
        activities, token = await registry.activities(
            request.user, link, name, version, max_results=max_results, page_token=page_token
        )
        return ActivitiesResponse(activities=activities, next_page_token=token)


class AliasRequestsController(Controller):
    """Requests to point an alias at a version (the gateway's own calls, in the shape of transition requests)."""

    path = "/api/2.0/mlflow/alias-requests"
    opt = {
        "access": "CAN_READ on the model: create and list; approve and reject: the alias's level (authz/levels.py "
        "alias_level: CAN_MANAGE_PRODUCTION_VERSIONS for a protected alias, else CAN_EDIT); delete (cancel): the "
        "requester or CAN_MANAGE"
    }
    dependencies = _link()

    @post("/create", name="registry alias request create", status_code=200)
    async def create(
        self,
        request: Request[Principal, Any, Any],
        data: CreateAliasRequest,
        aliases: AliasApprovals,
        link: WorkspaceLink,
    ) -> CreateAliasRequestResponse:
        created = await aliases.create_request(request.user, link, data.name, data.alias, data.version, data.comment)
        return CreateAliasRequestResponse(request=created)

    @get("/list", name="registry alias request list")
    async def list_requests(
        self,
        request: Request[Principal, Any, Any],
        aliases: AliasApprovals,
        link: WorkspaceLink,
        name: str,
        alias: str | None = None,
    ) -> ListTransitionRequestsResponse:
        return ListTransitionRequestsResponse(requests=await aliases.list_requests(request.user, link, name, alias))

    @post("/approve", name="registry alias request approve", status_code=200)
    async def approve(
        self,
        request: Request[Principal, Any, Any],
        data: DecideAliasRequest,
        aliases: AliasApprovals,
        link: WorkspaceLink,
    ) -> ActivityResponse:
        activity = await aliases.approve(
            request.user, link, data.name, data.alias, data.version, data.comment, _request_id(request)
        )
        return ActivityResponse(activity=activity)

    @post("/reject", name="registry alias request reject", status_code=200)
    async def reject(
        self,
        request: Request[Principal, Any, Any],
        data: DecideAliasRequest,
        aliases: AliasApprovals,
        link: WorkspaceLink,
    ) -> ActivityResponse:
        activity = await aliases.reject(request.user, link, data.name, data.alias, data.version, data.comment)
        return ActivityResponse(activity=activity)

    @delete("/delete", name="registry alias request delete", status_code=200)
    async def cancel(
        self,
        request: Request[Principal, Any, Any],
        aliases: AliasApprovals,
        link: WorkspaceLink,
        name: str,
        alias: str,
        version: str,
        creator: str,
        comment: str | None = None,
    ) -> ActivityResponse:
        activity = await aliases.cancel(request.user, link, name, alias, version, creator, comment)
        return ActivityResponse(activity=activity)


class RegistrySettingsController(Controller):
    """A model's workflow settings: which of its aliases are protected."""

    path = "/api/2.0/mlflow/registry-settings"
    opt = {"access": "get: CAN_READ on the model; update: CAN_MANAGE on the model"}
    dependencies = _link()

    @get("/get", name="registry settings get")
    async def get_settings(
        self,
        request: Request[Principal, Any, Any],
        aliases: AliasApprovals,
        link: WorkspaceLink,
        name: str = Parameter(query="name", min_length=1),
    ) -> RegistrySettingsResponse:
        return RegistrySettingsResponse(settings=await aliases.settings(request.user, link, name))

    @patch("/update", name="registry settings update")
    async def update_settings(
        self,
        request: Request[Principal, Any, Any],
        data: UpdateRegistrySettings,
        aliases: AliasApprovals,
        link: WorkspaceLink,
    ) -> RegistrySettingsResponse:
        settings = await aliases.update_settings(request.user, link, data.name, data.protected_aliases)
        return RegistrySettingsResponse(settings=settings)


class MlflowAlias:
    """MLflow's `POST` or `DELETE /registered-models/alias`, served by the alias approvals (a `FeatureRoute`): the
    alias's level (a protected alias asks CAN_MANAGE_PRODUCTION_VERSIONS), then the call as it came, logged."""

    def __init__(self, aliases: AliasApprovals, forwarder: Forwarder, *, deleting: bool) -> None:
        self._aliases = aliases
        self._forwarder = forwarder
        self._deleting = deleting

    async def serve(self, call: ForwardCall) -> ForwardResult:
        ids = canonical_body(call.body).ids if isinstance(call.body, bytes) and call.body.strip() else None
        link = await self._forwarder.resolve(call, ids, None)
        if self._deleting:
            return await self._aliases.mlflow_delete(link, call, self._forwarder.forward)
        return await self._aliases.mlflow_set(link, call, self._forwarder.forward)


def reserved_version_tag(key: object) -> bool:
    """Whether `key` is a version tag the workflow alone writes: `fedgate.stage` (a version's stage on a store without
    stages, registry/store.py), `fedgate.promoted_from` with its lineage tags (which copy a promotion made from
    which version: a promotion answers the version holding the key as the copy it made, registry/promotion.py) and
    `fedgate.source_read_only` (its registrant could not write its files, which it therefore never protects: the
    guard writes it at creation, federation/guard/models.py).

    Compared as a store might compare keys (case, accents, blanks around: MySQL's collations), so no spelling of
    them can be written either."""
    if not isinstance(key, str):
        return False
    spelt = folded(key)
    return spelt in (STAGE_TAG, KEY_TAG, SOURCE_READ_ONLY_TAG) or spelt.startswith(KEY_TAG + ".")


# A prompt version's content, in its tags (MLflow 3.17.2 `mlflow.prompt.constants`), as `folded` spells them.
PROMPT_CONTENT_TAGS = frozenset(
    {
        "mlflow.prompt.is_prompt",
        "mlflow.prompt.text",
        "_mlflow_prompt_type",
        "_mlflow_prompt_response_format",
        "_mlflow_prompt_model_config",
    }
)


def prompt_content_tag(key: object) -> bool:
    """Whether `key` is a version tag that holds a prompt's content: MLflow 3.17.2 keeps a prompt version's template,
    type, response format and model config in its tags (`mlflow.entities.model_registry.prompt_version`
    `_is_reserved_tag`), so they are what `prompts:/<name>@<alias>` serves. Compared as `reserved_version_tag`
    compares them."""
    return isinstance(key, str) and folded(key) in PROMPT_CONTENT_TAGS


class ReservedVersionTag:
    """MLflow's set-tag and delete-tag of model versions, and model-versions/create (`FeatureRoute`s): the workflow's
    own version tags (`reserved_version_tag`) are written by the workflow alone. Setting or deleting one answers 403;
    a version made with them (the stock client's copy_model_version copies its source's tags) is made without them,
    as a new version starts in stage None and is no promotion's copy. A prompt's content (`prompt_content_tag`) on a
    version in Staging or Production or holding an alias changes only with what moving the version asks
    (`RegistryWorkflow.version_content`). Everything else is forwarded as it came."""

    def __init__(
        self, forwarder: Forwarder, registry: RegistryWorkflow | None = None, *, creating: bool = False
    ) -> None:
        self._forwarder = forwarder
        self._registry = registry
        self._creating = creating

    async def serve(self, call: ForwardCall) -> ForwardResult:
        if self._creating:
            return await self._forwarder.forward(_without_reserved_tags(call))
        document: dict[str, Any] = {}
        ids = None
        if isinstance(call.body, bytes) and call.body.strip():
            canonical = canonical_body(call.body)
            document, ids = canonical.document, canonical.ids
        query = dict(parse_qsl(call.query)) if call.query else {}
        key, name, version = (document.get(field, query.get(field)) for field in ("key", "name", "version"))
        if reserved_version_tag(key):
            raise PermissionDenied(
                f"The tag {str(key)[:64]} is written by the registry workflow alone ({STAGE_TAG}: a version's stage, "
                f"request a transition with POST /api/2.0/mlflow/transition-requests/create; {KEY_TAG}: which "
                f"version a promotion copied; {SOURCE_READ_ONLY_TAG}: whether its registrant could write its files)."
            )
        if self._registry is None or not prompt_content_tag(key) or not isinstance(name, str) or not name:
            return await self._forwarder.forward(call)
        link = await self._forwarder.resolve(call, ids, None)
        return await self._registry.version_content(
            call.principal,
            link,
            name,
            str(version) if isinstance(version, (str, int)) else "",
            f"change the prompt template ({str(key)[:64]})",
            lambda: self._forwarder.forward(call),
        )


def _without_reserved_tags(call: ForwardCall) -> ForwardCall:
    """The call with the workflow's own tags left out of the new version's `tags`."""
    if not isinstance(call.body, bytes) or not call.body.strip():
        return call
    try:
        document = canonical_body(call.body).document
    except InvalidParameter:  # the forwarder refuses it, in the store's words where MLflow refuses it too
        return call
    tags = document.get("tags")
    if not isinstance(tags, list):
        return call
    kept = [tag for tag in tags if not (isinstance(tag, dict) and reserved_version_tag(tag.get("key")))]
    if len(kept) == len(tags):
        return call
    return dataclasses.replace(call, body=msgspec.json.encode({**document, "tags": kept}))


class _MlflowTransition(msgspec.Struct):
    name: str
    version: str
    stage: str
    archive_existing_versions: bool = False


class MlflowTransitionStage:
    """MLflow's `POST /model-versions/transition-stage`, served by the workflow (a `FeatureRoute` of
    federation/hooks.py): the workspace resolved as the forwarder resolves it, the same rules and log as a
    direct transition, the store's answer passed back as it came."""

    def __init__(self, registry: RegistryWorkflow, forwarder: Forwarder) -> None:
        self._registry = registry
        self._forwarder = forwarder

    async def serve(self, call: ForwardCall) -> ForwardResult:
        if not isinstance(call.body, bytes) or not call.body.strip():
            raise InvalidParameter("Missing value for required parameter 'name'.")
        canonical = canonical_body(call.body)
        try:
            wanted = msgspec.convert(canonical.document, _MlflowTransition, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidParameter(f"Invalid request body: {exc}") from None
        link = await self._forwarder.resolve(call, canonical.ids, None)
        return await self._registry.mlflow_transition(
            call.principal,
            link,
            wanted.name,
            wanted.version,
            wanted.stage,
            wanted.archive_existing_versions,
            call.request_id,
        )


class PromotionsController(Controller):
    """A model version copied into the named workspace's registry (registry/promotion.py)."""

    path = "/api/2.0/fedgate/registry"
    opt = {
        "access": "CAN_READ on the source model; CAN_EDIT on the target model, or CAN_USE on the target workspace "
        "for a new model"
    }
    dependencies = _link()

    @post("/promote", name="registry promote", status_code=200)
    async def promote(
        self,
        request: Request[Principal, Any, Any],
        data: PromoteRequest,
        promotions: Promotions,
        link: WorkspaceLink,
    ) -> PromoteResponse:
        done = await promotions.promote(request.user, link, data.name, data.version, data.target_name)
        return PromoteResponse(model_version=done.version, copied=done.copied, files=done.files, bytes=done.bytes)


class PromotionSettingsUpdate(msgspec.Struct):
    promotions_need_approval: bool


class PromotionRequestCreate(msgspec.Struct):
    name: str  # <workspace>.<model>: the source
    version: str
    target_name: str | None = None
    comment: str | None = None


class PromotionDecision(msgspec.Struct):
    id: str
    comment: str | None = None


class PromotionRequestResponse(msgspec.Struct, omit_defaults=True):
    promotion_request: PromotionRequest
    model_version: dict[str, Any] | None = None  # approve: the copy


class PromotionRequestsResponse(msgspec.Struct):
    requests: list[PromotionRequest]


class PromotionRequestsController(Controller):
    """Promotions into a workspace that wants them approved (registry/promotion_requests.py)."""

    path = "/api/2.0/fedgate/registry"
    opt = {
        "access": "settings: CAN_USE to read, CAN_MANAGE on the workspace to change; create: a promotion's rights; "
        "approve/reject: CAN_MANAGE_PRODUCTION_VERSIONS on the target model (CAN_MANAGE on the workspace for a new "
        "one); delete: the requester or CAN_MANAGE on the workspace"
    }
    dependencies = _link()

    @get("/promotion-settings", name="registry promotion settings")
    async def settings(
        self, request: Request[Principal, Any, Any], promotion_requests: PromotionRequests, link: WorkspaceLink
    ) -> PromotionSettings:
        return await promotion_requests.settings(request.user, link)

    @patch("/promotion-settings", name="registry promotion settings update")
    async def update_settings(
        self,
        request: Request[Principal, Any, Any],
        data: PromotionSettingsUpdate,
        promotion_requests: PromotionRequests,
        link: WorkspaceLink,
    ) -> PromotionSettings:
        return await promotion_requests.update_settings(request.user, link, data.promotions_need_approval)

    @post("/promotion-requests/create", name="registry promotion request create", status_code=200)
    async def create(
        self,
        request: Request[Principal, Any, Any],
        data: PromotionRequestCreate,
        promotion_requests: PromotionRequests,
        link: WorkspaceLink,
    ) -> PromotionRequestResponse:
        made = await promotion_requests.create(
            request.user, link, data.name, data.version, data.target_name, data.comment
        )
        return PromotionRequestResponse(promotion_request=made)

    @get("/promotion-requests/list", name="registry promotion request list")
    async def list_requests(
        self,
        request: Request[Principal, Any, Any],
        promotion_requests: PromotionRequests,
        link: WorkspaceLink,
        wanted: str = Parameter(query="state", default="open"),
    ) -> PromotionRequestsResponse:
        return PromotionRequestsResponse(requests=await promotion_requests.list(request.user, link, wanted))

    @post("/promotion-requests/approve", name="registry promotion request approve", status_code=200)
    async def approve(
        self,
        request: Request[Principal, Any, Any],
        data: PromotionDecision,
        promotion_requests: PromotionRequests,
        link: WorkspaceLink,
    ) -> PromotionRequestResponse:
        decided, done = await promotion_requests.approve(request.user, link, data.id, data.comment)
        return PromotionRequestResponse(promotion_request=decided, model_version=done.version)

    @post("/promotion-requests/reject", name="registry promotion request reject", status_code=200)
    async def reject(
        self,
        request: Request[Principal, Any, Any],
        data: PromotionDecision,
        promotion_requests: PromotionRequests,
        link: WorkspaceLink,
    ) -> PromotionRequestResponse:
        decided = await promotion_requests.reject(request.user, link, data.id, data.comment)
        return PromotionRequestResponse(promotion_request=decided)

    @delete("/promotion-requests/delete", name="registry promotion request delete", status_code=200)
    async def cancel(
        self, request: Request[Principal, Any, Any], promotion_requests: PromotionRequests, link: WorkspaceLink, id: str
    ) -> PromotionRequestResponse:
        decided = await promotion_requests.cancel(request.user, link, id)
        return PromotionRequestResponse(promotion_request=decided)


class RegistryWebhooksController(Controller):
    """Databricks' registry webhooks, for the workflow's events (registry/webhooks.py)."""

    path = "/api/2.0/mlflow/registry-webhooks"
    opt = {
        "access": "a model's webhooks: CAN_MANAGE on the model; registry-wide ones (no model_name): CAN_MANAGE on "
        "the workspace; URLs on the operator's allow-list ([outbound] allowed_destinations)"
    }
    dependencies = _link()

    @post("/create", name="registry webhook create", status_code=200)
    async def create(
        self,
        request: Request[Principal, Any, Any],
        data: CreateWebhook,
        webhooks: RegistryWebhooks,
        link: WorkspaceLink,
    ) -> WebhookResponse:
        return WebhookResponse(webhook=await webhooks.create(request.user, link, data))

    @patch("/update", name="registry webhook update")
    async def update(
        self,
        request: Request[Principal, Any, Any],
        data: UpdateWebhook,
        webhooks: RegistryWebhooks,
        link: WorkspaceLink,
    ) -> WebhookResponse:
        return WebhookResponse(webhook=await webhooks.update(request.user, link, data))

    @delete("/delete", name="registry webhook delete", status_code=200)
    async def remove(
        self,
        request: Request[Principal, Any, Any],
        webhooks: RegistryWebhooks,
        link: WorkspaceLink,
        webhook_id: str = Parameter(query="id"),
    ) -> Empty:
        await webhooks.delete(request.user, link, webhook_id)
        return Empty()

    @get("/list", name="registry webhook list")
    async def list_webhooks(
        self,
        request: Request[Principal, Any, Any],
        webhooks: RegistryWebhooks,
        link: WorkspaceLink,
        model_name: str | None = None,
        events: list[str] | None = None,
        page_token: str | None = None,
        max_results: int = Parameter(query="max_results", default=100, ge=1, le=1000),
    ) -> ListWebhooksResponse:
        found, token = await webhooks.list(request.user, link, model_name, events or [], max_results, page_token)
        return ListWebhooksResponse(webhooks=found, next_page_token=token)

    @post("/test", name="registry webhook test", status_code=200)
    async def test(
        self,
        request: Request[Principal, Any, Any],
        data: TestWebhook,
        webhooks: RegistryWebhooks,
        link: WorkspaceLink,
    ) -> TestWebhookResponse:
        return await webhooks.test(request.user, link, data)
