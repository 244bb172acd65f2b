"""`/api/2.0/sql/queries` (Databricks' SQL queries API) and `/api/2.0/permissions/queries/{id}` over REST.

Queries are account-wide, like the system tables they read, so no workspace narrows them; a workspace the
request names is still checked by the rule every route shares (as `/api/2.0/sql/statements` checks it).
`POST /api/2.0/sql/queries/{id}/run` is the gateway's own: it runs the saved text through the Statement
Execution API as the caller and answers as that API does.

A caller refused (403, or 404 as for a query it may not view, a statement's missing grant, an account admin's
change of owner) is refused only by the stored policy (`Authorizer.deciding`): a level, a grant, a group joined or
a role given through another replica moments ago counts at once. Every call refuses before it changes anything.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import Provide

from gateway.authz.decide import Authorizer
from gateway.authz.schemas import ObjectPermissions, PermissionLevels, SetPermissions
from gateway.authz.workspace_choice import requested_workspace
from gateway.console.queries.schemas import (
    CreateQueryRequest,
    QueryList,
    RunQueryRequest,
    SavedQuery,
    UpdateQueryRequest,
)
from gateway.console.queries.service import SavedQueries
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.schemas import Empty
from gateway.sql.schemas import StatementResponse


class QueriesController(Controller):
    path = "/api/2.0/sql/queries"
    opt = {"access": "view: CAN_VIEW on the query (owners and account admins: all); run: CAN_RUN; change: CAN_MANAGE"}
    # Every handler takes `workspace` so that the headers are checked before anything runs.
    dependencies = {"workspace": Provide(requested_workspace)}

    @post("/", name="sql queries create", status_code=200)
    async def create(
        self,
        request: Request[Principal, Any, Any],
        data: CreateQueryRequest,
        queries: SavedQueries,
        workspace: WorkspaceLink | None,
    ) -> SavedQuery:
        return await queries.create(request.user, data)

    @get("/", name="sql queries list")
    async def list_queries(
        self,
        request: Request[Principal, Any, Any],
        queries: SavedQueries,
        workspace: WorkspaceLink | None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> QueryList:
        return await queries.list_visible(request.user, page_size, page_token)

    @get("/{query_id:str}", name="sql queries get")
    async def get_query(
        self,
        request: Request[Principal, Any, Any],
        query_id: str,
        queries: SavedQueries,
        authorizer: Authorizer,
        workspace: WorkspaceLink | None,
    ) -> SavedQuery:
        return await authorizer.deciding(request.user, lambda caller: queries.get(caller, query_id))

    @patch("/{query_id:str}", name="sql queries update")
    async def update(
        self,
        request: Request[Principal, Any, Any],
        query_id: str,
        data: UpdateQueryRequest,
        queries: SavedQueries,
        authorizer: Authorizer,
        workspace: WorkspaceLink | None,
    ) -> SavedQuery:
        return await authorizer.deciding(request.user, lambda caller: queries.update(caller, query_id, data))

    @delete("/{query_id:str}", name="sql queries delete", status_code=200)
    async def delete_query(
        self,
        request: Request[Principal, Any, Any],
        query_id: str,
        queries: SavedQueries,
        authorizer: Authorizer,
        workspace: WorkspaceLink | None,
    ) -> Empty:
        await authorizer.deciding(request.user, lambda caller: queries.delete(caller, query_id))
        return Empty()

    @post("/{query_id:str}/run", name="sql queries run", status_code=200)
    async def run(
        self,
        request: Request[Principal, Any, Any],
        query_id: str,
        data: RunQueryRequest,
        queries: SavedQueries,
        authorizer: Authorizer,
        workspace: WorkspaceLink | None,
    ) -> StatementResponse:
        return await authorizer.deciding(request.user, lambda caller: queries.run(caller, query_id, data))


class QueryPermissionsController(Controller):
    """GET/PUT/PATCH `/api/2.0/permissions/queries/{id}` (+ permissionLevels), the permissions API's shape."""

    path = "/api/2.0/permissions/queries"
    opt = {"access": "read: CAN_VIEW on the query; change: CAN_MANAGE"}

    @get("/{query_id:str}", name="query permissions get")
    async def get_acl(
        self, request: Request[Principal, Any, Any], query_id: str, queries: SavedQueries, authorizer: Authorizer
    ) -> ObjectPermissions:
        return await authorizer.deciding(request.user, lambda caller: queries.permissions(caller, query_id))

    @get("/{query_id:str}/permissionLevels", name="query permission levels")
    async def get_levels(
        self, request: Request[Principal, Any, Any], query_id: str, queries: SavedQueries, authorizer: Authorizer
    ) -> PermissionLevels:
        return await authorizer.deciding(request.user, lambda caller: queries.levels(caller, query_id))

    @put("/{query_id:str}", name="query permissions set")
    async def set_acl(
        self,
        request: Request[Principal, Any, Any],
        query_id: str,
        data: SetPermissions,
        queries: SavedQueries,
        authorizer: Authorizer,
    ) -> ObjectPermissions:
        return await authorizer.deciding(
            request.user,
            lambda caller: queries.set_permissions(caller, query_id, data.access_control_list, replace=True),
        )

    @patch("/{query_id:str}", name="query permissions update")
    async def update_acl(
        self,
        request: Request[Principal, Any, Any],
        query_id: str,
        data: SetPermissions,
        queries: SavedQueries,
        authorizer: Authorizer,
    ) -> ObjectPermissions:
        return await authorizer.deciding(
            request.user,
            lambda caller: queries.set_permissions(caller, query_id, data.access_control_list, replace=False),
        )
