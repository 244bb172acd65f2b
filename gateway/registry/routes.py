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

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter

from gateway.authz.workspace_choice import chosen_workspace
from gateway.core.errors import InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.schemas import Empty
from gateway.federation.call import ForwardCall, ForwardResult
from gateway.federation.canonical import canonical_body
from gateway.federation.service import Forwarder
from gateway.observability.access import REQUEST_ID_KEY
from gateway.registry.schemas import (
    ActivitiesResponse,
    ActivityResponse,
    ApproveTransitionRequest,
    CommentResponse,
    CreateComment,
    CreateTransitionRequest,
    CreateTransitionRequestResponse,
    GetModelResponse,
    ListTransitionRequestsResponse,
    RejectTransitionRequest,
    TransitionStage,
    TransitionStageResponse,
    UpdateComment,
)
from gateway.registry.service import RegistryWorkflow

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
