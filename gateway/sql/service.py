"""Statements from request to result: checks, view expansion, execution, and a lifecycle any replica can answer.

A query is checked (USE CATALOG, USE SCHEMA and SELECT on every table or view it names), rewritten so each
table reference yields only what the caller may see, and run in the background on a connection that
records its backend pid in `sql_statements`. The request waits up to `wait_timeout` for it; after that the
client polls, on any replica, because the state lives in PostgreSQL. Cancelling marks the row and signals
the backend by pid until it no longer runs the statement; a runner checks the row before its query starts.
GRANT, REVOKE, SHOW GRANTS, CREATE VIEW and DROP VIEW run at once, through the access service, exactly as the
REST permissions API would.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlglot import exp

from gateway.audit.trail import AuditTrail, entry
from gateway.authz.levels import ACCOUNT_DOMAIN, Privilege
from gateway.authz.repository import GrantRepository, PolicyVersionRepository
from gateway.authz.schemas import PermissionsChange
from gateway.authz.service import AccessService
from gateway.core.bounded import BoundedCache
from gateway.core.config import Settings
from gateway.core.errors import (
    AlreadyExists,
    GatewayError,
    InvalidParameter,
    PermissionDenied,
    ResourceNotFound,
    hidden,
)
from gateway.core.policy_changes import ViewAdded, ViewRemoved
from gateway.core.principal import Principal
from gateway.db.retention import PRUNE_EVERY_SECONDS
from gateway.observability.metrics import SQL_CAPPED
from gateway.principals import names
from gateway.sql.catalog import SYSTEM_CATALOG, TableName, system_table
from gateway.sql.repository import (
    StatementRepository,
    StoredStatement,
    StoredView,
    ViewRepository,
    prune_statements,
)
from gateway.sql.results import PgColumn, chunks, column_info, rows
from gateway.sql.runner import QueryRunner, ResultTooLarge, ValueOutOfRange
from gateway.sql.schemas import (
    ExecuteStatementRequest,
    ResultData,
    ResultManifest,
    ResultSchema,
    ServiceError,
    StatementParameter,
    StatementResponse,
    StatementStatus,
)
from gateway.sql.statements import (
    CACHED_STATEMENT_CHARS,
    ChangeGrants,
    CreateView,
    Defaults,
    DropView,
    Query,
    ShowGrants,
    Statement,
    classify,
    parse_query,
)
from gateway.sql.transpile import (
    PARAMETER_TYPES,
    CompiledQuery,
    Identity,
    check_depth,
    compile_query,
    substitute,
    system_source,
)

log = logging.getLogger(__name__)

WAIT_RE = re.compile(r"^(\d{1,2})s\Z", re.ASCII)
DECIMAL_RE = re.compile(r"^DECIMAL\((\d{1,2}),\s*(\d{1,2})\)\Z", re.ASCII)
PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED"
CLOSED = "CLOSED"  # succeeded, and its result closed to keep the principal's results within their budget
# A principal names can never contain a comma: this owner can only be the bootstrap admin.
BOOTSTRAP_OWNER = "bootstrap,admin"
RETENTION_SECONDS = 24 * 3600  # statements and their results are kept this long
ABANDONED_AFTER_SECONDS = 60.0  # past the statement timeout: the process running it must be gone
UNAVAILABLE_STATES = ("08", "53", "57", "58")  # connection, resources, operator intervention, system
TEMP_FILE_LIMIT_STATE = "53400"  # configuration_limit_exceeded: only temp_file_limit raises it
# program_limit_exceeded (a value past the gateway's bound or PostgreSQL's 1 GB), statement_too_complex (a stack
# too deep), too_many_columns: limits a statement reaches by what it asks for, not by a mistake in its SQL. And
# out_of_memory: an allocation the backend could not get (a server with strict overcommit answers so where others
# kill the process), which is the size of what the statement asked for, not the database being down.
PROGRAM_LIMIT_STATES = ("54000", "54001", "54011", "53200")
INTERNAL_ERROR_STATE = "XX000"  # among others 'invalid memory alloc request size': a value past PostgreSQL's 1 GB
SHOW_GRANTS_COLUMNS = ("principal", "action_type", "object_type", "object_key", "inherited_from")
COMPILED_CACHE_SIZE = 512
CANCEL_RETRY_SECONDS = 0.01  # between two signals to a backend that still runs a cancelled statement
CANCEL_PATIENCE_SECONDS = 5.0  # a cancel answers after this at the latest
CAP_RETRY_SECONDS = 5  # Retry-After of a statement refused by the per-principal cap


class TooManyStatements(GatewayError):
    """The principal already has `server.sql_max_statements_per_principal` statements pending or running.

    Databricks' word for a quota; 429 with Retry-After, which the SDK and MLflow's client retry after.
    """

    error_code = "RESOURCE_EXHAUSTED"
    status = 429

    def __init__(self, cap: int) -> None:
        super().__init__(
            f"Too many SQL statements pending or running for this principal (at most {cap} at once); wait for one "
            f"to finish or cancel one, then retry in {CAP_RETRY_SECONDS} s.",
            headers={"Retry-After": str(CAP_RETRY_SECONDS)},
        )


@dataclass(frozen=True)
class Reader:
    """Whose rights a table is read with: the caller's, or a view owner's for the tables inside the view."""

    name: str
    subjects: frozenset[int]
    account_admin: bool
    view: TableName | None = None  # set when reading on behalf of this view's owner

    def lacks(self, privilege: str, what: str) -> PermissionDenied:
        wanted = privilege.replace("_", " ")
        if self.view is None:
            return PermissionDenied(f"{self.name} lacks {wanted} on {what}.")
        return PermissionDenied(f"View {self.view} cannot be read: its owner {self.name} lacks {wanted} on {what}.")


@dataclass(frozen=True)
class Outcome:
    """A finished statement as stored: state, then manifest and rows, or an error."""

    state: str
    manifest: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class SqlService:
    def __init__(
        self,
        settings: Settings,
        access: AccessService,
        sessionmaker: async_sessionmaker[AsyncSession],
        runner: QueryRunner,
        audit: AuditTrail,
    ) -> None:
        self._account_id = settings.account.id
        self._timeout = settings.server.sql_statement_timeout_seconds
        self._row_cap = settings.server.sql_row_cap
        self._cap = settings.server.sql_max_statements_per_principal
        self._results_bytes = settings.server.sql_results_mb_per_principal * 1024 * 1024
        self._access = access
        self._sessionmaker = sessionmaker
        self._runner = runner
        self._audit = audit
        self._tasks: set[asyncio.Task[None]] = set()
        self._pruned_at: float | None = None  # when this process last started a prune; None: not yet
        self._pruning: asyncio.Task[None] | None = None
        self._compiled: BoundedCache[tuple[str, str | None, str | None, tuple[tuple[str, str], ...]], CompiledQuery]
        self._compiled = BoundedCache(COMPILED_CACHE_SIZE)

    # -- the API -----------------------------------------------------------------------------------------

    async def execute(
        self,
        principal: Principal,
        request: ExecuteStatementRequest,
        *,
        capped: bool = True,
        counted: Principal | None = None,
    ) -> StatementResponse:
        """Run a statement as `principal`. A query is refused (TooManyStatements) while the principal it counts
        against (`counted`, else `principal`: an alert run by hand runs as its owner and counts against whoever
        pressed run) has `server.sql_max_statements_per_principal` pending or running, unless `capped` is False:
        only for the alert scheduler, whose evaluations `alerts.concurrency` bounds; they still count towards
        the owner's cap."""
        wait = _wait_seconds(request.wait_timeout)
        if request.on_wait_timeout not in ("CONTINUE", "CANCEL"):
            raise InvalidParameter("on_wait_timeout is CONTINUE or CANCEL.")
        if request.format != "JSON_ARRAY":
            raise InvalidParameter(f"format {request.format} is not supported; use JSON_ARRAY.")
        if request.disposition != "INLINE":
            raise InvalidParameter(f"disposition {request.disposition} is not supported; use INLINE.")
        if request.row_limit is not None and request.row_limit < 0:
            raise InvalidParameter("row_limit may not be negative.")
        statement = classify(request.statement, Defaults(request.catalog, request.schema))
        if isinstance(statement, Query):
            return await self._query(principal, request, statement, wait, capped=capped, counted=counted)
        if request.parameters:
            raise InvalidParameter("Parameters are only allowed in a SELECT.")
        outcome = await self._command(principal, statement)
        statement_id = str(uuid.uuid4())
        pool = await self._runner.pool()
        await StatementRepository(pool).insert(
            statement_id,
            _principal_key(principal),
            request.statement,
            outcome.state,
            manifest=outcome.manifest,
            result=outcome.result,
        )
        return await self._response(statement_id, principal)

    async def get(self, principal: Principal, statement_id: str) -> StatementResponse:
        return await self._response(statement_id, principal)

    async def chunk(self, principal: Principal, statement_id: str, chunk_index: int) -> ResultData:
        stored = await self._stored(statement_id, principal)
        if stored.state == CLOSED:
            raise InvalidParameter(
                f"Statement {statement_id} has no result to read any more: it was closed to keep your stored results "
                "within server.sql_results_mb_per_principal. Run it again."
            )
        if stored.state != SUCCEEDED or stored.manifest is None:
            raise InvalidParameter(f"Statement {statement_id} has no result to read (its state is {stored.state}).")
        manifest = msgspec.convert(stored.manifest, ResultManifest)
        if not 0 <= chunk_index < manifest.total_chunk_count:
            raise InvalidParameter(
                f"Chunk {chunk_index} does not exist; the result has {manifest.total_chunk_count} chunk(s)."
            )
        return _result_chunk(statement_id, manifest, stored.result, chunk_index)

    async def cancel(self, principal: Principal, statement_id: str) -> None:
        """Cancel a pending or running statement, on whichever replica runs it; a finished one is left as is."""
        await self._stored(statement_id, principal)
        await self._cancel(statement_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._runner.close()

    # -- queries -----------------------------------------------------------------------------------------

    async def _query(
        self,
        principal: Principal,
        request: ExecuteStatementRequest,
        query: Query,
        wait: float,
        *,
        capped: bool,
        counted: Principal | None,
    ) -> StatementResponse:
        types, values = _parameters(request.parameters, query.parameters)
        caller = Reader(principal.name, principal.subjects, principal.account_admin)
        sources = await self._sources(query, caller, depth=0, path=())
        compiled = self._compile(request, query, sources, principal, types)
        arguments = [values[name] for name in compiled.parameters]
        max_rows = self._row_cap if request.row_limit is None else min(self._row_cap, request.row_limit)
        statement_id = str(uuid.uuid4())
        pool = await self._runner.pool()
        repository = StatementRepository(pool)
        if capped and self._cap > 0:
            live_seconds = self._timeout + ABANDONED_AFTER_SECONDS
            key, counted_key = _principal_key(principal), _principal_key(counted or principal)
            live = await repository.insert_pending_within(
                statement_id, key, request.statement, self._cap, live_seconds, counted_key
            )
            if live is not None:
                SQL_CAPPED.inc()
                raise TooManyStatements(self._cap)
        else:
            await repository.insert(statement_id, _principal_key(principal), request.statement, PENDING)
        self._prune_now_and_then()
        task = asyncio.create_task(self._run(statement_id, compiled, arguments, max_rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if wait > 0:
            done, _ = await asyncio.wait({task}, timeout=wait)
            if not done and request.on_wait_timeout == "CANCEL":
                await self._cancel(statement_id)
                await asyncio.wait({task}, timeout=5)
        return await self._response(statement_id, principal)

    async def _sources(
        self, query: Query, reader: Reader, *, depth: int, path: tuple[TableName, ...]
    ) -> dict[TableName, exp.Query]:
        """What each table of `query` becomes, checked for `reader`; views expand with their owner's rights."""
        wanted = [table for table in query.tables if not system_table(table)]
        async with self._sessionmaker() as session:
            views = await ViewRepository(session).get([table.full for table in wanted])
        sources: dict[TableName, exp.Query] = {}
        for table in query.tables:
            if system_table(table):
                self._check_read(reader, table)
                sources[table] = system_source(table)
                continue
            if table.catalog != SYSTEM_CATALOG:
                # USE CATALOG and USE SCHEMA before whether the view exists, as Unity Catalog: to someone who may
                # not use the schema, a view there and a name nobody made answer alike (403 on the catalog or
                # schema). The system catalog holds the documented tables alone: any other name there is unknown.
                self._check_read(reader, table, through=Privilege.USE_SCHEMA)
            view = views.get(table.full)
            if view is None or table.catalog == SYSTEM_CATALOG:
                raise InvalidParameter(
                    f"Table or view '{table}' does not exist; the system.mlflow tables and views made with "
                    "CREATE VIEW can be read."
                )
            self._check_read(reader, table)
            if table in path:
                raise InvalidParameter(f"View {table} refers to itself.")
            check_depth(depth + 1, table)
            owner = self._owner(view, table)
            inner = parse_query(view.definition, allow_parameters=False)
            inner_sources = await self._sources(inner, owner, depth=depth + 1, path=(*path, table))
            sources[table] = substitute(inner, inner_sources)
        return sources

    def _compile(
        self,
        request: ExecuteStatementRequest,
        query: Query,
        sources: dict[TableName, exp.Query],
        principal: Principal,
        types: dict[str, str],
    ) -> CompiledQuery:
        """The PostgreSQL text; compiled once per (short) text when it is the same for every caller.

        It is when the query reads system tables only (a view's definition can change) and does not ask who
        runs it. The cache is looked up after the grant checks, which run on every statement.
        """
        cacheable = len(request.statement) <= CACHED_STATEMENT_CHARS and not query.asks_identity
        if not cacheable or not all(system_table(table) for table in query.tables):
            return compile_query(substitute(query, sources), self._identity(principal), types)
        key = (request.statement, request.catalog, request.schema, tuple(sorted(types.items())))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_query(substitute(query, sources), self._identity(principal), types)
            self._compiled.put(key, compiled)
        return compiled

    def _check_read(self, reader: Reader, table: TableName, *, through: str = Privilege.SELECT) -> None:
        """USE CATALOG, USE SCHEMA and SELECT on the table, in that order, up to `through`."""
        if reader.account_admin:
            return
        snapshot = self._access.policy.snapshot
        for obj, privilege, what in (
            (table.catalog_securable, Privilege.USE_CATALOG, f"catalog {table.catalog}"),
            (table.schema_securable, Privilege.USE_SCHEMA, f"schema {table.catalog}.{table.schema}"),
            (table.securable, Privilege.SELECT, f"{'table' if table.is_system else 'view'} {table}"),
        ):
            if not snapshot.allows(reader.subjects, ACCOUNT_DOMAIN, obj, privilege):
                raise reader.lacks(privilege, what)
            if privilege == through:
                return

    def _owner(self, stored: StoredView, view: TableName) -> Reader:
        """The view's owner, by id: a principal who later gets a deleted or renamed owner's name owns nothing."""
        if stored.owner_id is None and stored.owner == BOOTSTRAP_OWNER:
            return Reader("the bootstrap admin", frozenset(), True, view)
        snapshot = self._access.policy.snapshot
        info = snapshot.principal(stored.owner_id) if stored.owner_id is not None else None
        if info is not None and info.active:
            return Reader(info.name, snapshot.subjects(info.id), info.account_admin, view)
        raise PermissionDenied(f"View {view} cannot be read: its owner {stored.owner} no longer exists or is disabled.")

    def _identity(self, principal: Principal) -> Identity:
        snapshot = self._access.policy.snapshot

        def member_of(group: str) -> bool:
            if names.folded(group) == names.ACCOUNT_USERS:
                # The system group, whatever group a name older than its reservation gave (principals/names.py).
                return principal.id is not None
            info = snapshot.find("group", group)
            return info is not None and info.id in principal.subjects

        return Identity(principal.name, member_of)

    async def _run(
        self, statement_id: str, compiled: CompiledQuery, arguments: Sequence[str | None], max_rows: int
    ) -> None:
        outcome: Outcome | None = None
        try:
            async with self._runner.connection() as connection:
                if not await StatementRepository(connection).mark_running(statement_id):
                    return  # cancelled before it started
                fetched = await self._runner.fetch(
                    connection,
                    statement_id,
                    compiled,
                    arguments,
                    account_id=self._account_id,
                    timeout_seconds=self._timeout,
                    max_rows=max_rows,
                )
            outcome = _succeeded(fetched.columns, fetched.records, fetched.truncated)
        except asyncio.CancelledError:
            outcome = _failed("TEMPORARILY_UNAVAILABLE", "The gateway stopped while the statement ran; run it again.")
            raise
        except asyncpg.QueryCanceledError as exc:
            if "statement timeout" in str(exc):
                outcome = _failed(
                    "DEADLINE_EXCEEDED",
                    f"The statement ran longer than the statement timeout ({self._timeout:g} s) and was cancelled.",
                    exc.sqlstate,
                )
            else:
                outcome = Outcome(CANCELED)
        except ValueOutOfRange:
            outcome = _failed(
                "BAD_REQUEST",
                "The result holds a date or timestamp outside the years 1 to 9999, or an interval longer than "
                "999,999,999 days, which cannot be answered; cast or filter such values.",
            )
        except ResultTooLarge as exc:
            outcome = _failed(
                "BAD_REQUEST",
                f"The result is larger than {exc.limit // (1024 * 1024)} MiB, the most a statement answers inline "
                "(as Databricks' INLINE disposition); select fewer rows or columns.",
            )
        except asyncpg.PostgresError as exc:
            outcome = _postgres_failure(exc)
        except (OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("sql statement %s: database unavailable: %s", statement_id, type(exc).__name__)
            outcome = _failed("TEMPORARILY_UNAVAILABLE", "The database could not be reached; try again.")
        except Exception:
            log.exception("sql statement %s failed unexpectedly", statement_id)
            outcome = _failed("INTERNAL_ERROR", "The statement failed inside the gateway.")
        finally:
            if outcome is not None:
                await asyncio.shield(self._finish(statement_id, outcome))

    async def _finish(self, statement_id: str, outcome: Outcome) -> None:
        try:
            pool = await self._runner.pool()
            await StatementRepository(pool).finish(
                statement_id,
                outcome.state,
                manifest=outcome.manifest,
                result=outcome.result,
                error=outcome.error,
                keep_bytes=self._results_bytes,
            )
        except Exception as exc:  # the statement stays RUNNING until a reader expires it
            log.warning("sql statement %s: outcome not recorded: %s", statement_id, type(exc).__name__)

    async def _cancel(self, statement_id: str) -> None:
        """Mark the statement cancelled, then signal its backend until it no longer runs the statement.

        PostgreSQL drops a cancel that reaches a backend between two round trips of the statement (it is idle
        then), so one signal is not enough: the backend is signalled again while it still carries the
        statement's application_name, which it drops when the statement's transaction ends. A runner that had
        not set that name yet sees the cancel when it does, and stops before the query runs (QueryRunner.fetch).
        """
        pool = await self._runner.pool()
        repository = StatementRepository(pool)
        pid = await repository.cancel(statement_id, None)
        if pid is None:
            return
        deadline = time.monotonic() + CANCEL_PATIENCE_SECONDS
        while await repository.interrupt(pid, statement_id):
            if time.monotonic() >= deadline:
                log.warning("sql statement %s: its backend still runs it after the cancel", statement_id)
                return
            await asyncio.sleep(CANCEL_RETRY_SECONDS)

    def _prune_now_and_then(self) -> None:
        """At the first query and then at most every PRUNE_EVERY_SECONDS, delete the statements past their window
        in a task of its own, PRUNE_BATCH per transaction: no query waits for it, and a backlog never holds a
        long lock or one huge transaction. One prune at a time per process."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        if self._pruning is not None and not self._pruning.done():
            return
        self._pruned_at = now
        task = asyncio.create_task(self._prune(), name="sql statement prune")
        self._pruning = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prune(self) -> None:
        try:
            pruned = await prune_statements(self._sessionmaker, RETENTION_SECONDS)
        except Exception:
            log.exception("sql statements: pruning those past their window failed; trying again later")
            return
        if pruned:
            log.info("sql statements: deleted %d statements older than %d hours", pruned, RETENTION_SECONDS // 3600)

    # -- GRANT, REVOKE, SHOW GRANTS, CREATE VIEW, DROP VIEW -------------------------------------------------

    async def _command(self, principal: Principal, statement: Statement) -> Outcome:
        if isinstance(statement, ShowGrants):
            owner = await self._access.view_owner(statement.securable_type, statement.name)
            return self._show_grants(principal, statement, owner)
        if isinstance(statement, ChangeGrants):
            owner = await self._access.view_owner(statement.securable_type, statement.name)
            obj = self._access.securable(principal, statement.securable_type, statement.name, owner_id=owner)
            self._access.check_uc_manager(principal, obj)
            privileges = list(statement.privileges)
            change = PermissionsChange(
                principal=statement.principal,
                add=privileges if statement.grant else None,
                remove=None if statement.grant else privileges,
            )
            await self._access.uc_update(principal, obj, [change])
            return _succeeded([], [], False)
        if isinstance(statement, CreateView):
            await self._create_view(principal, statement)
            return _succeeded([], [], False)
        if isinstance(statement, DropView):
            await self._drop_view(principal, statement)
            return _succeeded([], [], False)
        raise InvalidParameter("This statement is not supported.")

    def _show_grants(self, principal: Principal, statement: ShowGrants, owner: int | None) -> Outcome:
        obj = self._access.securable(principal, statement.securable_type, statement.name, owner_id=owner)
        if not self._access.is_self(principal, statement.principal):
            self._access.check_uc_manager(principal, obj)
        effective = self._access.uc_effective(principal, obj, statement.principal)
        object_type = statement.securable_type.upper()
        if object_type == "TABLE" and not statement.name.startswith(f"{SYSTEM_CATALOG}."):
            object_type = "VIEW"
        found: list[list[Any]] = []
        for assignment in effective.privilege_assignments:
            for item in assignment.privileges:
                holder = item.inherited_from_principal or assignment.principal
                source = item.inherited_from_type
                inherited = f"{source} {item.inherited_from_name}" if source else None
                found.append([holder, item.privilege.replace("_", " "), object_type, statement.name, inherited])
        found.sort(key=lambda row: (row[0], row[1], row[4] or ""))
        columns = [PgColumn(name, "text", "scalar") for name in SHOW_GRANTS_COLUMNS]
        return _succeeded(columns, found, False)

    async def _create_view(self, principal: Principal, statement: CreateView) -> None:
        name = statement.name
        self._check_manage(principal, name, "create or replace views")
        # The creator becomes the owner: the view reads with the creator's rights, checked here and on every read.
        caller = Reader(principal.name, principal.subjects, principal.account_admin)
        sources = await self._sources(statement.query, caller, depth=1, path=(name,))
        # Compiled as a read of it would be, so a body every read would refuse is refused now, not stored.
        compile_query(substitute(statement.query, sources), self._identity(principal), {})
        owner = BOOTSTRAP_OWNER if principal.id is None else principal.name
        async with self._sessionmaker() as session, session.begin():
            stored = await ViewRepository(session).create(
                name.full, statement.definition, owner, principal.id, replace=statement.replace
            )
            if not stored:
                raise AlreadyExists(f"View {name} already exists; use CREATE OR REPLACE VIEW.")
            await self._audit.write(
                session,
                entry(principal.name, "sql.view.create", name.securable, "ok", {"definition": statement.definition}),
            )
            # The view is a securable from now on, on every replica (a replaced one already was).
            await PolicyVersionRepository(session).bump([ViewAdded(name.full)])
        await self._access.policy.reload()

    async def _drop_view(self, principal: Principal, statement: DropView) -> None:
        name = statement.name
        self._check_manage(principal, name, "drop views")
        async with self._sessionmaker() as session, session.begin():
            dropped = await ViewRepository(session).drop(name.full)
            if not dropped:
                if statement.if_exists:
                    return
                raise ResourceNotFound(f"View {name} does not exist.")
            # A view created again later under this name is a new object: the old grants go with the old one.
            changes = await GrantRepository(session).clear(ACCOUNT_DOMAIN, name.securable)
            await self._audit.write(session, entry(principal.name, "sql.view.drop", name.securable, "ok"))
            await PolicyVersionRepository(session).bump([*changes, ViewRemoved(name.full)])
        await self._access.policy.reload()

    def _check_manage(self, principal: Principal, name: TableName, what: str) -> None:
        if name.catalog == SYSTEM_CATALOG:
            raise InvalidParameter("The system catalog is read-only: views live in catalogs of your own.")
        if principal.account_admin:
            return
        snapshot = self._access.policy.snapshot
        # MANAGE on the view, or inherited from its schema or catalog.
        if not snapshot.allows(principal.subjects, ACCOUNT_DOMAIN, name.securable, Privilege.MANAGE):
            raise PermissionDenied(
                f"{principal.name} needs MANAGE on schema {name.catalog}.{name.schema} (or to be an account admin) "
                f"to {what} there."
            )

    # -- answers -------------------------------------------------------------------------------------------

    async def _stored(self, statement_id: str, principal: Principal) -> StoredStatement:
        pool = await self._runner.pool()
        repository = StatementRepository(pool)
        stored = await repository.get(statement_id)
        # Only the principal who ran a statement may see it; to anybody else it does not exist.
        if stored is None or stored.principal_id != _principal_key(principal):
            raise hidden(f"Statement {statement_id} does not exist.")
        if stored.state in (PENDING, RUNNING):
            error = _failed("TEMPORARILY_UNAVAILABLE", "The gateway process running the statement stopped.").error
            assert error is not None
            await repository.expire(statement_id, self._timeout + ABANDONED_AFTER_SECONDS, error)
            stored = await repository.get(statement_id) or stored
        return stored

    async def _response(self, statement_id: str, principal: Principal) -> StatementResponse:
        stored = await self._stored(statement_id, principal)
        error = stored.error
        status = StatementStatus(
            state=stored.state,
            error=ServiceError(error_code=str(error["error_code"]), message=str(error["message"])) if error else None,
            sql_state=str(error["sql_state"]) if error and error.get("sql_state") else None,
        )
        if stored.state != SUCCEEDED or stored.manifest is None:
            return StatementResponse(statement_id=statement_id, status=status)
        manifest = msgspec.convert(stored.manifest, ResultManifest)
        return StatementResponse(
            statement_id=statement_id,
            status=status,
            manifest=manifest,
            result=_result_chunk(statement_id, manifest, stored.result, 0),
        )


# -- helpers -----------------------------------------------------------------------------------------------------


def _principal_key(principal: Principal) -> int:
    return principal.id if principal.id is not None else 0  # the bootstrap admin has no row, hence no id


def _wait_seconds(text: str) -> float:
    match = WAIT_RE.match(text.strip())
    seconds = int(match.group(1)) if match else -1
    if seconds != 0 and not 5 <= seconds <= 50:
        raise InvalidParameter("wait_timeout is '0s' or between '5s' and '50s'.")
    return float(seconds)


def _parameters(
    given: Sequence[StatementParameter], used: Sequence[str]
) -> tuple[dict[str, str], dict[str, str | None]]:
    """PostgreSQL type and value of every parameter; unknown, missing, duplicate or mistyped ones are refused."""
    types: dict[str, str] = {}
    values: dict[str, str | None] = {}
    for parameter in given:
        if parameter.name in types:
            raise InvalidParameter(f"The parameter '{parameter.name}' is given twice.")
        spelled = parameter.type.strip().upper()
        decimal = DECIMAL_RE.match(spelled)
        if decimal:
            pg_type = f"NUMERIC({decimal.group(1)}, {decimal.group(2)})"
        elif spelled in PARAMETER_TYPES:
            pg_type = PARAMETER_TYPES[spelled]
        else:
            known = ", ".join(sorted(PARAMETER_TYPES))
            raise InvalidParameter(f"Parameter '{parameter.name}' has type '{parameter.type}'; use one of {known}.")
        types[parameter.name] = pg_type
        values[parameter.name] = parameter.value
    unknown = sorted(set(types) - set(used))
    if unknown:
        raise InvalidParameter(f"The statement has no parameter marker :{unknown[0]}.")
    missing = [name for name in used if name not in types]
    if missing:
        raise InvalidParameter(f"No value was given for the parameter :{missing[0]}.")
    return types, values


def _succeeded(columns: Sequence[PgColumn], records: Sequence[Sequence[Any]], truncated: bool) -> Outcome:
    data = rows(records, columns)
    manifest = ResultManifest(
        format="JSON_ARRAY",
        schema=ResultSchema(
            column_count=len(columns), columns=[column_info(index, column) for index, column in enumerate(columns)]
        ),
        total_chunk_count=len(chunks(len(data))),
        chunks=chunks(len(data)),
        total_row_count=len(data),
        truncated=truncated,
    )
    return Outcome(SUCCEEDED, msgspec.to_builtins(manifest), {"data_array": data})


def _failed(error_code: str, message: str, sql_state: str | None = None) -> Outcome:
    error: dict[str, Any] = {"error_code": error_code, "message": message}
    if sql_state:
        error["sql_state"] = sql_state
    return Outcome(FAILED, error=error)


def _postgres_failure(exc: asyncpg.PostgresError) -> Outcome:
    """A short reason in the words of PostgreSQL's primary message: never its query text, detail or context."""
    sql_state = str(getattr(exc, "sqlstate", "") or "")
    if sql_state == TEMP_FILE_LIMIT_STATE:
        # The statement's own doing (a sort or hash larger than server.sql_temp_file_limit_mb), not the database's.
        return _failed(
            "RESOURCE_EXHAUSTED",
            "The statement wrote more temporary files than a statement may (server.sql_temp_file_limit_mb) and "
            "was stopped; read fewer rows, or sort, join or group fewer of them.",
            sql_state,
        )
    message = str(getattr(exc, "message", "") or "the statement failed").splitlines()[0][:300]
    if sql_state in PROGRAM_LIMIT_STATES or (
        sql_state == INTERNAL_ERROR_STATE and message.startswith("invalid memory alloc request size")
    ):
        # A value past the gateway's bound for the values a statement builds (migration 0044) or PostgreSQL's 1 GB,
        # a plan or an expression too large, memory the backend could not get.
        return _failed("RESOURCE_EXHAUSTED", f"The statement went past a limit of the database: {message}.", sql_state)
    if sql_state.startswith(UNAVAILABLE_STATES):
        return _failed("TEMPORARILY_UNAVAILABLE", "The database is not available right now; try again.", sql_state)
    if sql_state == "42501":  # cannot happen through the allow-list; never say more than that it is not allowed
        return _failed("BAD_REQUEST", "The statement reads something it is not allowed to.", sql_state)
    return _failed("BAD_REQUEST", f"The statement failed: {message}.", sql_state)


def _result_chunk(
    statement_id: str, manifest: ResultManifest, result: dict[str, Any] | None, chunk_index: int
) -> ResultData:
    data = (result or {}).get("data_array") or []
    info = manifest.chunks[chunk_index]
    following = chunk_index + 1 if chunk_index + 1 < manifest.total_chunk_count else None
    return ResultData(
        chunk_index=info.chunk_index,
        row_offset=info.row_offset,
        row_count=info.row_count,
        data_array=data[info.row_offset : info.row_offset + info.row_count] if info.row_count else None,
        next_chunk_index=following,
        next_chunk_internal_link=(
            f"/api/2.0/sql/statements/{statement_id}/result/chunks/{following}" if following is not None else None
        ),
    )
