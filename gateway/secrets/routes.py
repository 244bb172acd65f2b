"""`/api/2.0/secrets/...`: secret scopes, their secrets and their ACLs, in the Databricks shapes.

The workspace is named by `X-MLFLOW-WORKSPACE` or by `X-Databricks-Workspace-Id` (its numeric id, as
`databricks-sdk` sends it for a `WorkspaceClient(workspace_id=...)`); a request naming two different
workspaces is refused. Without either, the `default` workspace.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from gateway.authz.ports import Workspaces
from gateway.core.errors import InvalidParameter, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.schemas import Empty
from gateway.secrets.schemas import (
    AclItem,
    AclRef,
    CreateScope,
    GetSecret,
    GetSecrets,
    ListAclsResponse,
    ListScopesResponse,
    ListSecretsResponse,
    PutAcl,
    PutSecret,
    ScopeRef,
    SecretRef,
    SecretValue,
    SecretValues,
)
from gateway.secrets.service import SecretScopes

WORKSPACE_HEADER = "x-mlflow-workspace"
WORKSPACE_ID_HEADER = "x-databricks-workspace-id"
NO_STORE = {"Cache-Control": "no-store"}


def workspace_of(request: Request[Principal, Any, Any], workspaces: Workspaces) -> WorkspaceLink:
    """The workspace a Databricks-shaped call names, by name or by id (both: they must agree)."""
    name = request.headers.get(WORKSPACE_HEADER)
    raw_id = request.headers.get(WORKSPACE_ID_HEADER)
    by_id: WorkspaceLink | None = None
    if raw_id is not None:
        raw_id = raw_id.strip()
        if not raw_id.isdigit() or len(raw_id) > 18:
            raise InvalidParameter("X-Databricks-Workspace-Id is a workspace's numeric id.")
        found = workspaces.links.by_id(int(raw_id))
        if found is None:
            raise ResourceNotFound(f"Workspace with id {raw_id} not found")
        by_id = found
    if name:
        workspaces.links.refuse_withheld(name)
        link = workspaces.link_named(name)
        if by_id is not None and by_id.workspace_id != link.workspace_id:
            raise InvalidParameter(
                f"X-MLFLOW-WORKSPACE names workspace '{link.name}' but X-Databricks-Workspace-Id names "
                f"{raw_id}; send one, or two that agree."
            )
        return link
    if by_id is not None:
        return by_id
    if workspaces.links.default is not None:
        return workspaces.links.default
    raise InvalidParameter("Choose the workspace with the X-MLFLOW-WORKSPACE or X-Databricks-Workspace-Id header.")


class SecretsController(Controller):
    path = "/api/2.0/secrets"
    opt = {
        "access": "create a scope: CAN_USE on the workspace; list secrets: READ on the scope; put and delete: "
        "WRITE; get a value: READ and a RUNNING run of the workspace the caller may edit (CAN_EDIT); "
        "delete the scope and its ACL: MANAGE (workspace and account admins: every scope)"
    }

    @post("/scopes/create", name="secrets scope create", status_code=200)
    async def create_scope(
        self, request: Request[Principal, Any, Any], data: CreateScope, secrets: SecretScopes, workspaces: Workspaces
    ) -> Empty:
        link = workspace_of(request, workspaces)
        await secrets.create_scope(request.user, link, data.scope, data.initial_manage_principal)
        return Empty()

    @post("/scopes/delete", name="secrets scope delete", status_code=200)
    async def delete_scope(
        self, request: Request[Principal, Any, Any], data: ScopeRef, secrets: SecretScopes, workspaces: Workspaces
    ) -> Empty:
        await secrets.delete_scope(request.user, workspace_of(request, workspaces), data.scope)
        return Empty()

    @get("/scopes/list", name="secrets scope list")
    async def list_scopes(
        self, request: Request[Principal, Any, Any], secrets: SecretScopes, workspaces: Workspaces
    ) -> ListScopesResponse:
        return await secrets.list_scopes(request.user, workspace_of(request, workspaces))

    @post("/put", name="secrets put", status_code=200)
    async def put_secret(
        self, request: Request[Principal, Any, Any], data: PutSecret, secrets: SecretScopes, workspaces: Workspaces
    ) -> Empty:
        link = workspace_of(request, workspaces)
        await secrets.put_secret(request.user, link, data.scope, data.key, data.string_value, data.bytes_value)
        return Empty()

    @post("/delete", name="secrets delete", status_code=200)
    async def delete_secret(
        self, request: Request[Principal, Any, Any], data: SecretRef, secrets: SecretScopes, workspaces: Workspaces
    ) -> Empty:
        await secrets.delete_secret(request.user, workspace_of(request, workspaces), data.scope, data.key)
        return Empty()

    @post("/get", name="secrets get", status_code=200)
    async def get_secret(
        self, request: Request[Principal, Any, Any], data: GetSecret, secrets: SecretScopes, workspaces: Workspaces
    ) -> Response[SecretValue]:
        """A value, base64 (as Databricks answers), for a RUNNING run the caller may edit; never cached. Without a
        scope (in `scope` or as `scope/key`), the workspace's default scope."""
        link = workspace_of(request, workspaces)
        value = await secrets.get_secret(request.user, link, data.scope, data.key, data.run_id)
        return Response(value, headers=NO_STORE)

    @post("/get-many", name="secrets get many", status_code=200)
    async def get_secrets(
        self, request: Request[Principal, Any, Any], data: GetSecrets, secrets: SecretScopes, workspaces: Workspaces
    ) -> Response[SecretValues]:
        """Several values in one call (keys of `scope`, or `scope/key`): `{values: {name: base64 | null}}`; never
        cached."""
        link = workspace_of(request, workspaces)
        values = await secrets.get_secrets(request.user, link, data.scope, data.keys, data.run_id)
        return Response(values, headers=NO_STORE)

    @get("/list", name="secrets list")
    async def list_secrets(
        self,
        request: Request[Principal, Any, Any],
        secrets: SecretScopes,
        workspaces: Workspaces,
        scope_name: str = Parameter(query="scope"),
    ) -> ListSecretsResponse:
        return await secrets.list_secrets(request.user, workspace_of(request, workspaces), scope_name)

    @post("/acls/put", name="secrets acl put", status_code=200)
    async def put_acl(
        self, request: Request[Principal, Any, Any], data: PutAcl, secrets: SecretScopes, workspaces: Workspaces
    ) -> Empty:
        link = workspace_of(request, workspaces)
        await secrets.put_acl(request.user, link, data.scope, data.principal, data.permission)
        return Empty()

    @post("/acls/delete", name="secrets acl delete", status_code=200)
    async def delete_acl(
        self, request: Request[Principal, Any, Any], data: AclRef, secrets: SecretScopes, workspaces: Workspaces
    ) -> Empty:
        await secrets.delete_acl(request.user, workspace_of(request, workspaces), data.scope, data.principal)
        return Empty()

    @get("/acls/get", name="secrets acl get")
    async def get_acl(
        self,
        request: Request[Principal, Any, Any],
        principal: str,
        secrets: SecretScopes,
        workspaces: Workspaces,
        scope_name: str = Parameter(query="scope"),
    ) -> AclItem:
        return await secrets.get_acl(request.user, workspace_of(request, workspaces), scope_name, principal)

    @get("/acls/list", name="secrets acl list")
    async def list_acls(
        self,
        request: Request[Principal, Any, Any],
        secrets: SecretScopes,
        workspaces: Workspaces,
        scope_name: str = Parameter(query="scope"),
    ) -> ListAclsResponse:
        return await secrets.list_acls(request.user, workspace_of(request, workspaces), scope_name)
