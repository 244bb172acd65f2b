"""`/api/2.0/sql/statements`: the Databricks SQL Statement Execution API (execute, get, result chunks, cancel).

Statements read the system tables, which hold every workspace's rows (as in Databricks), so no workspace narrows
them. A workspace the request names (`X-MLFLOW-WORKSPACE`, or `X-Databricks-Workspace-Id` as `databricks-sdk`
sends it for a `WorkspaceClient(workspace_id=...)`) is still checked by the rule every route shares
(gateway/core/workspace_headers.py): a malformed, repeated or disagreeing header is refused (400), and a
workspace that does not exist or that the caller may not see answers 404.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import Provide

from gateway.authz.decide import Authorizer
from gateway.authz.workspace_choice import requested_workspace
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.schemas import Empty
from gateway.sql.schemas import ExecuteStatementRequest, ResultData, StatementResponse
from gateway.sql.service import SqlService


class SqlStatementsController(Controller):
    path = "/api/2.0/sql/statements"
    opt = {"access": "USE CATALOG, USE SCHEMA and SELECT on what a query reads; a statement's results: who ran it"}
    # Every handler takes `workspace` so that the headers are checked before anything runs.
    dependencies = {"workspace": Provide(requested_workspace)}

    @post("/", name="sql execute", status_code=200)
    async def execute(
        self,
        request: Request[Principal, Any, Any],
        data: ExecuteStatementRequest,
        sql: SqlService,
        authorizer: Authorizer,
        workspace: WorkspaceLink | None,
    ) -> StatementResponse:
        """Refused (a grant a query or a view's owner lacks, MANAGE for GRANT, REVOKE, CREATE and DROP VIEW, a
        principal or view SHOW GRANTS names) only by the stored policy (`Authorizer.deciding`): a grant, a group
        joined or a role given through another replica moments ago counts at once. A statement is refused before
        it is stored or run, a command before it changes anything."""
        return await authorizer.deciding(request.user, lambda caller: sql.execute(caller, data))

    @get("/{statement_id:str}", name="sql get")
    async def get_statement(
        self, request: Request[Principal, Any, Any], statement_id: str, sql: SqlService, workspace: WorkspaceLink | None
    ) -> StatementResponse:
        return await sql.get(request.user, statement_id)

    @get("/{statement_id:str}/result/chunks/{chunk_index:int}", name="sql result chunk")
    async def get_chunk(
        self,
        request: Request[Principal, Any, Any],
        statement_id: str,
        chunk_index: int,
        sql: SqlService,
        workspace: WorkspaceLink | None,
    ) -> ResultData:
        return await sql.chunk(request.user, statement_id, chunk_index)

    @post("/{statement_id:str}/cancel", name="sql cancel", status_code=200)
    async def cancel(
        self, request: Request[Principal, Any, Any], statement_id: str, sql: SqlService, workspace: WorkspaceLink | None
    ) -> Empty:
        await sql.cancel(request.user, statement_id)
        return Empty()
