"""`/api/2.0/secrets/...`: secret scopes, their secrets and their ACLs, in the Databricks shapes.

The workspace (the `link` dependency) is named by `X-MLFLOW-WORKSPACE` or by `X-Databricks-Workspace-Id` (its
numeric id, as `databricks-sdk` sends it for a `WorkspaceClient(workspace_id=...)`), by the rule every route
shares (gateway/core/workspace_headers.py). Without either, the `default` workspace.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter

from gateway.authz.workspace_choice import chosen_workspace
from gateway.core.errors import StoreUnavailable
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

NO_STORE = {"Cache-Control": "no-store"}


def secrets_workspace(request: Request[Principal, Any, Any], secrets: SecretScopes) -> WorkspaceLink:
    """The workspace of the call, by `chosen_workspace`'s rule, with what the secrets service holds.

    One dependency resolved after the other: Litestar resolves the dependencies of one level (here they were
    `secrets`, `workspaces` and `authorizer`) in a task group of their own, about 0.07 ms of CPU per call on
    a run's read of its secrets, for three lookups of objects that never change.
    """
    if secrets.workspaces is None:
        raise StoreUnavailable("The gateway is starting; try again.")
    return chosen_workspace(request, secrets.workspaces, secrets.authorizer)


class SecretsController(Controller):
    path = "/api/2.0/secrets"
    opt = {
        "access": "create a scope: CAN_USE on the workspace (CAN_MANAGE when its vault is read-only); list "
        "secrets: READ on the scope; put and delete: WRITE; get a value: READ and a RUNNING run of the workspace "
        "the caller may edit (CAN_EDIT); delete the scope and its ACL: MANAGE (workspace and account admins: "
        "every scope)"
    }
    dependencies = {"link": Provide(secrets_workspace, sync_to_thread=False)}

    @post("/scopes/create", name="secrets scope create", status_code=200)
    async def create_scope(
        self, request: Request[Principal, Any, Any], data: CreateScope, secrets: SecretScopes, link: WorkspaceLink
    ) -> Empty:
        await secrets.create_scope(request.user, link, data.scope, data.initial_manage_principal)
        return Empty()

    @post("/scopes/delete", name="secrets scope delete", status_code=200)
    async def delete_scope(
        self, request: Request[Principal, Any, Any], data: ScopeRef, secrets: SecretScopes, link: WorkspaceLink
    ) -> Empty:
        await secrets.delete_scope(request.user, link, data.scope)
        return Empty()

    @get("/scopes/list", name="secrets scope list")
    async def list_scopes(
        self, request: Request[Principal, Any, Any], secrets: SecretScopes, link: WorkspaceLink
    ) -> ListScopesResponse:
        return await secrets.list_scopes(request.user, link)

    @post("/put", name="secrets put", status_code=200)
    async def put_secret(
        self, request: Request[Principal, Any, Any], data: PutSecret, secrets: SecretScopes, link: WorkspaceLink
    ) -> Empty:
        await secrets.put_secret(request.user, link, data.scope, data.key, data.string_value, data.bytes_value)
        return Empty()

    @post("/delete", name="secrets delete", status_code=200)
    async def delete_secret(
        self, request: Request[Principal, Any, Any], data: SecretRef, secrets: SecretScopes, link: WorkspaceLink
    ) -> Empty:
        await secrets.delete_secret(request.user, link, data.scope, data.key)
        return Empty()

    @post("/get", name="secrets get", status_code=200)
    async def get_secret(
        self, request: Request[Principal, Any, Any], data: GetSecret, secrets: SecretScopes, link: WorkspaceLink
    ) -> Response[SecretValue]:
        """A value, base64 (as Databricks answers), for a RUNNING run the caller may edit; never cached. Without a
        scope (in `scope` or as `scope/key`), the workspace's default scope."""
        value = await secrets.get_secret(request.user, link, data.scope, data.key, data.run_id)
        return Response(value, headers=NO_STORE)

    @post("/get-many", name="secrets get many", status_code=200)
    async def get_secrets(
        self, request: Request[Principal, Any, Any], data: GetSecrets, secrets: SecretScopes, link: WorkspaceLink
    ) -> Response[SecretValues]:
        """Several values in one call (keys of `scope`, or `scope/key`): `{values: {name: base64 | null}}`; never
        cached."""
        values = await secrets.get_secrets(request.user, link, data.scope, data.keys, data.run_id)
        return Response(values, headers=NO_STORE)

    @get("/list", name="secrets list")
    async def list_secrets(
        self,
        request: Request[Principal, Any, Any],
        secrets: SecretScopes,
        link: WorkspaceLink,
        scope_name: str = Parameter(query="scope"),
    ) -> ListSecretsResponse:
        return await secrets.list_secrets(request.user, link, scope_name)

    @post("/acls/put", name="secrets acl put", status_code=200)
    async def put_acl(
        self, request: Request[Principal, Any, Any], data: PutAcl, secrets: SecretScopes, link: WorkspaceLink
    ) -> Empty:
        await secrets.put_acl(request.user, link, data.scope, data.principal, data.permission)
        return Empty()

    @post("/acls/delete", name="secrets acl delete", status_code=200)
    async def delete_acl(
        self, request: Request[Principal, Any, Any], data: AclRef, secrets: SecretScopes, link: WorkspaceLink
    ) -> Empty:
        await secrets.delete_acl(request.user, link, data.scope, data.principal)
        return Empty()

    @get("/acls/get", name="secrets acl get")
    async def get_acl(
        self,
        request: Request[Principal, Any, Any],
        principal: str,
        secrets: SecretScopes,
        link: WorkspaceLink,
        scope_name: str = Parameter(query="scope"),
    ) -> AclItem:
        return await secrets.get_acl(request.user, link, scope_name, principal)

    @get("/acls/list", name="secrets acl list")
    async def list_acls(
        self,
        request: Request[Principal, Any, Any],
        secrets: SecretScopes,
        link: WorkspaceLink,
        scope_name: str = Parameter(query="scope"),
    ) -> ListAclsResponse:
        return await secrets.list_acls(request.user, link, scope_name)
