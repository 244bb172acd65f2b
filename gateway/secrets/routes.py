"""`/api/2.0/secrets/...`: secret scopes, their secrets and their ACLs, in the Databricks shapes.

The workspace (chosen per call by `decided`) is named by `X-MLFLOW-WORKSPACE` or by `X-Databricks-Workspace-Id` (its
numeric id, as `databricks-sdk` sends it for a `WorkspaceClient(workspace_id=...)`), by the rule every route
shares (gateway/core/workspace_headers.py). Without either, the `default` workspace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from gateway.authz.workspace_choice import workspace_for
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
T = TypeVar("T")


async def decided(
    request: Request[Principal, Any, Any],
    secrets: SecretScopes,
    call: Callable[[Principal, WorkspaceLink], Awaitable[T]],
) -> T:
    """`call(caller, workspace)`, the workspace chosen for the caller; refused (403, or 404 as for a missing
    workspace or scope) only by the stored policy: a scope permission, a group joined or a role given through
    another replica moments ago counts at once, the caller and the workspace decided again as that policy has
    them (`Authorizer.deciding`). Every call refuses before it changes anything."""
    if secrets.workspaces is None:
        raise StoreUnavailable("The gateway is starting; try again.")
    workspaces = secrets.workspaces

    async def decide(caller: Principal) -> T:
        return await call(caller, workspace_for(request, caller, workspaces, secrets.authorizer))

    return await secrets.authorizer.deciding(request.user, decide)


class SecretsController(Controller):
    path = "/api/2.0/secrets"
    opt = {
        "access": "create a scope: CAN_USE on the workspace (CAN_MANAGE when its vault is read-only); list "
        "secrets: READ on the scope; put and delete: WRITE; get a value: READ and a RUNNING run of the workspace "
        "the caller may edit (CAN_EDIT); delete the scope and its ACL: MANAGE (workspace and account admins: "
        "every scope)"
    }

    @post("/scopes/create", name="secrets scope create", status_code=200)
    async def create_scope(
        self, request: Request[Principal, Any, Any], data: CreateScope, secrets: SecretScopes
    ) -> Empty:
        await decided(
            request,
            secrets,
            lambda caller, link: secrets.create_scope(caller, link, data.scope, data.initial_manage_principal),
        )
        return Empty()

    @post("/scopes/delete", name="secrets scope delete", status_code=200)
    async def delete_scope(self, request: Request[Principal, Any, Any], data: ScopeRef, secrets: SecretScopes) -> Empty:
        await decided(request, secrets, lambda caller, link: secrets.delete_scope(caller, link, data.scope))
        return Empty()

    @get("/scopes/list", name="secrets scope list")
    async def list_scopes(self, request: Request[Principal, Any, Any], secrets: SecretScopes) -> ListScopesResponse:
        return await decided(request, secrets, lambda caller, link: secrets.list_scopes(caller, link))

    @post("/put", name="secrets put", status_code=200)
    async def put_secret(self, request: Request[Principal, Any, Any], data: PutSecret, secrets: SecretScopes) -> Empty:
        await decided(
            request,
            secrets,
            lambda caller, link: secrets.put_secret(
                caller, link, data.scope, data.key, data.string_value, data.bytes_value
            ),
        )
        return Empty()

    @post("/delete", name="secrets delete", status_code=200)
    async def delete_secret(
        self, request: Request[Principal, Any, Any], data: SecretRef, secrets: SecretScopes
    ) -> Empty:
        await decided(request, secrets, lambda caller, link: secrets.delete_secret(caller, link, data.scope, data.key))
        return Empty()

    @post("/get", name="secrets get", status_code=200)
    async def get_secret(
        self, request: Request[Principal, Any, Any], data: GetSecret, secrets: SecretScopes
    ) -> Response[SecretValue]:
        """A value, base64 (as Databricks answers), for a RUNNING run the caller may edit; never cached. Without a
        scope (in `scope` or as `scope/key`), the workspace's default scope."""
        value = await decided(
            request, secrets, lambda caller, link: secrets.get_secret(caller, link, data.scope, data.key, data.run_id)
        )
        return Response(value, headers=NO_STORE)

    @post("/get-many", name="secrets get many", status_code=200)
    async def get_secrets(
        self, request: Request[Principal, Any, Any], data: GetSecrets, secrets: SecretScopes
    ) -> Response[SecretValues]:
        """Several values in one call (keys of `scope`, or `scope/key`): `{values: {name: base64 | null}}`; never
        cached."""
        values = await decided(
            request, secrets, lambda caller, link: secrets.get_secrets(caller, link, data.scope, data.keys, data.run_id)
        )
        return Response(values, headers=NO_STORE)

    @get("/list", name="secrets list")
    async def list_secrets(
        self,
        request: Request[Principal, Any, Any],
        secrets: SecretScopes,
        scope_name: str = Parameter(query="scope"),
    ) -> ListSecretsResponse:
        return await decided(request, secrets, lambda caller, link: secrets.list_secrets(caller, link, scope_name))

    @post("/acls/put", name="secrets acl put", status_code=200)
    async def put_acl(self, request: Request[Principal, Any, Any], data: PutAcl, secrets: SecretScopes) -> Empty:
        await decided(
            request,
            secrets,
            lambda caller, link: secrets.put_acl(caller, link, data.scope, data.principal, data.permission),
        )
        return Empty()

    @post("/acls/delete", name="secrets acl delete", status_code=200)
    async def delete_acl(self, request: Request[Principal, Any, Any], data: AclRef, secrets: SecretScopes) -> Empty:
        await decided(
            request, secrets, lambda caller, link: secrets.delete_acl(caller, link, data.scope, data.principal)
        )
        return Empty()

    @get("/acls/get", name="secrets acl get")
    async def get_acl(
        self,
        request: Request[Principal, Any, Any],
        principal: str,
        secrets: SecretScopes,
        scope_name: str = Parameter(query="scope"),
    ) -> AclItem:
        return await decided(
            request, secrets, lambda caller, link: secrets.get_acl(caller, link, scope_name, principal)
        )

    @get("/acls/list", name="secrets acl list")
    async def list_acls(
        self,
        request: Request[Principal, Any, Any],
        secrets: SecretScopes,
        scope_name: str = Parameter(query="scope"),
    ) -> ListAclsResponse:
        return await decided(request, secrets, lambda caller, link: secrets.list_acls(caller, link, scope_name))
