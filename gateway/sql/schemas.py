"""Request and response bodies of the SQL Statement Execution API, in the Databricks shapes."""

from __future__ import annotations

from typing import Any

import msgspec


class _Body(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class StatementParameter(_Body, kw_only=True):
    name: str
    value: str | None = None
    type: str = "STRING"


class ExecuteStatementRequest(_Body, kw_only=True):
    statement: str
    warehouse_id: str = ""  # accepted for compatibility; there is one engine
    catalog: str | None = None
    schema: str | None = None
    parameters: list[StatementParameter] = msgspec.field(default_factory=list)
    wait_timeout: str = "10s"
    on_wait_timeout: str = "CONTINUE"
    format: str = "JSON_ARRAY"
    disposition: str = "INLINE"
    row_limit: int | None = None
    byte_limit: int | None = None  # accepted; results are capped by rows
    query_tags: list[Any] | None = None  # accepted and ignored


class ServiceError(_Body, kw_only=True):
    error_code: str
    message: str


class StatementStatus(_Body, kw_only=True):
    state: str  # PENDING | RUNNING | SUCCEEDED | FAILED | CANCELED | CLOSED
    error: ServiceError | None = None
    sql_state: str | None = None


class ColumnInfo(_Body, kw_only=True):
    name: str
    position: int
    type_name: str
    type_text: str


class ResultSchema(_Body, kw_only=True):
    column_count: int
    columns: list[ColumnInfo] = msgspec.field(default_factory=list)


class ChunkInfo(_Body, kw_only=True):
    chunk_index: int
    row_offset: int
    row_count: int


class ResultManifest(_Body, kw_only=True):
    format: str  # always JSON_ARRAY; written out, as Databricks does
    schema: ResultSchema
    total_chunk_count: int
    chunks: list[ChunkInfo] = msgspec.field(default_factory=list)
    total_row_count: int
    truncated: bool


class ResultData(_Body, kw_only=True):
    chunk_index: int
    row_offset: int
    row_count: int
    data_array: list[list[str | None]] | None = None
    next_chunk_index: int | None = None
    next_chunk_internal_link: str | None = None


class StatementResponse(_Body, kw_only=True):
    statement_id: str
    status: StatementStatus
    manifest: ResultManifest | None = None
    result: ResultData | None = None
