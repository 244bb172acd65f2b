"""`/api/2.0/sql/statements`: the Databricks SQL Statement Execution API (execute, get, result chunks, cancel)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post

from gateway.core.principal import Principal
from gateway.core.schemas import Empty
from gateway.sql.schemas import ExecuteStatementRequest, ResultData, StatementResponse
from gateway.sql.service import SqlService


class SqlStatementsController(Controller):
    path = "/api/2.0/sql/statements"
    opt = {"access": "USE CATALOG, USE SCHEMA and SELECT on what a query reads; a statement's results: who ran it"}

    @post("/", name="sql execute", status_code=200)
    async def execute(
        self, request: Request[Principal, Any, Any], data: ExecuteStatementRequest, sql: SqlService
    ) -> StatementResponse:
        return await sql.execute(request.user, data)

    @get("/{statement_id:str}", name="sql get")
    async def get_statement(
        self, request: Request[Principal, Any, Any], statement_id: str, sql: SqlService
    ) -> StatementResponse:
        return await sql.get(request.user, statement_id)

    @get("/{statement_id:str}/result/chunks/{chunk_index:int}", name="sql result chunk")
    async def get_chunk(
        self, request: Request[Principal, Any, Any], statement_id: str, chunk_index: int, sql: SqlService
    ) -> ResultData:
        return await sql.chunk(request.user, statement_id, chunk_index)

    @post("/{statement_id:str}/cancel", name="sql cancel", status_code=200)
    async def cancel(self, request: Request[Principal, Any, Any], statement_id: str, sql: SqlService) -> Empty:
        await sql.cancel(request.user, statement_id)
        return Empty()
