"""Forwarding: resolve the workspace of a call, check it, send it to the linked store, record runs."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.config import WORKSPACE_NAME_RE
from gateway.core.errors import (
    InvalidParameter,
    PermissionDenied,
    ResourceNotFound,
    StoreTimeout,
    StoreUnavailable,
)
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.paths import (
    artifact_workspace,
    canonical_artifact_path,
    quote_path,
    rewrite_artifact_workspace,
)
from gateway.core.ports import Store, StoreResponse, StoreTimedOut, StoreUnreachable
from gateway.core.principal import Principal
from gateway.core.route_table import EXPERIMENTS_GET_BY_NAME, RUNS_CREATE, Body, Resource, RouteSpec
from gateway.dual.failover import SERVED_BY, Failover
from gateway.dual.mirror import order_key
from gateway.federation.bookkeeping import AcceptedWrite, Bookkeeping, OutboxEntry
from gateway.federation.canonical import CanonicalBody, canonical_body, canonical_query, reencoded_headers
from gateway.federation.guard import Guard, Plan
from gateway.federation.otlp import canonical_export
from gateway.federation.repository import RunRouteRepository
from gateway.federation.schemas import CreateRunResponse, RequestIds
from gateway.observability.metrics import UPSTREAM_ERRORS, UPSTREAM_LATENCY

if TYPE_CHECKING:
    from gateway.index.account import AccountScope

log = logging.getLogger(__name__)

ACCOUNT_SCOPE = "account"
RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# Path parameters other than artifact paths are single, plain segments.
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,256}$")
# A response larger than this (or of unknown size) is streamed instead of buffered.
BUFFER_LIMIT = 1024 * 1024

# Client headers the store may see. Everything else (Authorization, Cookie, Host, X-Forwarded-*,
# hop-by-hop headers, the workspace header) is dropped or replaced by the gateway.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "accept",
        "user-agent",
        "x-mlflow-client-version",
        "x-mlflow-experiment-id",
        "x-mlflow-run-id",
        "content-encoding",
        "traceparent",
    }
)
RETURNED_RESPONSE_HEADERS = frozenset(
    {
        "content-type",
        "content-disposition",
        "content-encoding",
        "etag",
        "last-modified",
        "cache-control",
        "retry-after",
    }
)


@dataclass(slots=True)
class ForwardCall:
    spec: RouteSpec
    principal: Principal
    workspace_header: str | None
    path_params: Mapping[str, Any]
    query: str
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterable[bytes] | None
    request_id: str


@dataclass(slots=True)
class ForwardResult:
    status: int
    headers: dict[str, str]
    workspace: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class RunDirectory:
    """run_id → (workspace, experiment), for calls that name only a run. Cached; the database is the truth."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cache_size: int = 100_000) -> None:
        self._sessionmaker = sessionmaker
        self._cache: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._cache_size = cache_size

    def _remember(self, run_id: str, workspace: str, experiment_id: str) -> None:
        self._cache[run_id] = (workspace, experiment_id)
        self._cache.move_to_end(run_id)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def remember(self, run_id: str, workspace: str, experiment_id: str) -> None:
        """A run the gateway saw created (its route is written with the rest of the call's bookkeeping)."""
        self._remember(run_id, workspace, experiment_id)

    async def _lookup(self, run_id: str) -> tuple[str, str] | None:
        if (cached := self._cache.get(run_id)) is not None:
            return cached
        async with self._sessionmaker() as session:
            found = await RunRouteRepository(session).lookup(run_id)
        if found is not None:
            self._remember(run_id, *found)
        return found

    async def workspace_of(self, run_id: str) -> str | None:
        found = await self._lookup(run_id)
        return found[0] if found else None

    async def experiment_of(self, run_id: str, workspace: str) -> str | None:
        found = await self._lookup(run_id)
        return found[1] if found and found[0] == workspace else None


class Forwarder:
    def __init__(self, links: LinkTable, stores: Mapping[str, Store], runs: RunDirectory) -> None:
        self.links = links
        self.stores = stores
        self.runs = runs
        self.guard: Guard | None = None  # set by the composition root; without it every call is refused
        self.bookkeeping: Bookkeeping | None = None  # run routes, index rows, outbox entries of accepted writes
        self.failover: Failover | None = None  # dual workspaces' reads while their store is down
        self.account: AccountScope | None = None  # the read-only `account` scope, set by the composition root

    async def fetch(self, link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        """A read of the gateway's own (ids for authorization), sent with the store's credentials."""
        store = self.stores[link.store]
        try:
            response = await store.request(
                "GET", path, query=query, headers=[], workspace=link.upstream_workspace, idempotent=True
            )
            body = await response.read()
        except (StoreUnreachable, StoreTimedOut) as exc:
            raise StoreUnavailable(f"The store of workspace '{link.name}' is unreachable; try again shortly.") from exc
        if _renames(link) and body[:1] == b"{":
            body = _rewrite_json(body, link.upstream_workspace or link.name, link.name)
        return response.status, body

    async def exists(self, link: WorkspaceLink, kind: str, object_id: str) -> bool:
        if kind == "experiment":
            status, _ = await self.fetch(link, "/api/2.0/mlflow/experiments/get", f"experiment_id={quote(object_id)}")
        else:
            status, _ = await self.fetch(
                link, "/api/2.0/mlflow/registered-models/get", f"name={quote(object_id, safe='')}"
            )
        return status == 200

    async def undo_create(self, link: WorkspaceLink, kind: str, object_id: str) -> None:
        """Compensate a creation whose owner could not be recorded."""
        store = self.stores[link.store]
        if kind == "experiment":
            path, body = "/api/2.0/mlflow/experiments/delete", {"experiment_id": object_id}
            method = "POST"
        else:
            path, body = "/api/2.0/mlflow/registered-models/delete", {"name": object_id}
            method = "DELETE"
        try:
            response = await store.request(
                method,
                path,
                headers=[("content-type", "application/json")],
                body=msgspec.json.encode(body),
                workspace=link.upstream_workspace,
            )
            response.release()
        except Exception:
            log.exception("could not undo the creation of %s %s", kind, object_id)

    # -- workspace resolution ------------------------------------------------------------------------

    def link_named(self, name: str) -> WorkspaceLink:
        if name == ACCOUNT_SCOPE:
            # Reached only when something other than the header names it (an artifact path, say).
            raise InvalidParameter(
                "The 'account' scope is read-only account-wide search, selected with X-MLFLOW-WORKSPACE; "
                "it is not a workspace."
            )
        if not WORKSPACE_NAME_RE.match(name) and name != "default":
            raise InvalidParameter(f"Invalid workspace name '{name}' in X-MLFLOW-WORKSPACE.")
        link = self.links.get(name)
        if link is None:
            raise ResourceNotFound(f"Workspace '{name}' not found")
        return link

    async def resolve(self, call: ForwardCall, ids: RequestIds | None, artifact_path: str | None) -> WorkspaceLink:
        """The header names the workspace; without one, the artifact path, the run, or `default` do."""
        # No two links share a store namespace (links withheld for overlapping answer 409), so the
        # store alone keeps each workspace's objects apart.
        if call.workspace_header:
            self.links.refuse_withheld(call.workspace_header)
            return self.link_named(call.workspace_header)
        path_workspace = artifact_workspace(artifact_path) if artifact_path else None
        if path_workspace:
            self.links.refuse_withheld(path_workspace)
            return self.link_named(path_workspace)
        run_id = self._run_id(call, ids, artifact_path)
        if run_id is not None and (workspace := await self.runs.workspace_of(run_id)) is not None:
            self.links.refuse_withheld(workspace)
            run_link = self.links.get(workspace)
            if run_link is not None:
                return run_link
        if self.links.default is not None:
            return self.links.default
        raise InvalidParameter(
            "No workspace selected: set MLFLOW_WORKSPACE, call mlflow.set_workspace(...), or send the "
            "X-MLFLOW-WORKSPACE header (this gateway has no 'default' workspace)."
        )

    # -- forwarding ----------------------------------------------------------------------------------

    async def forward(self, call: ForwardCall) -> ForwardResult:
        if call.workspace_header == ACCOUNT_SCOPE:
            if self.account is None:
                raise InvalidParameter("This gateway does not serve the 'account' scope; choose a workspace.")
            return await self.account.serve(call)
        spec = call.spec
        canonical = self._canonical(call)
        ids = canonical.ids if canonical is not None else None
        artifact_path = self._artifact_path(call) if spec.resource is Resource.ARTIFACT else None
        link = await self.resolve(call, ids, artifact_path)
        if self.guard is None:
            raise PermissionDenied("Access control is not configured.")
        plan = await self.guard.check(
            spec,
            call.principal,
            link,
            canonical,
            call.query,
            artifact_path,
            dict(call.path_params),
            call.headers,
        )
        if plan.answer is not None:
            return ForwardResult(200, {"Content-Type": "application/json"}, link.name, body=plan.answer)
        if plan.query is not None:
            call.query = plan.query
        if plan.body is not None:
            call.body = plan.body
        path, query = self._upstream_target(call, link, artifact_path)
        body = call.body
        if spec.body is Body.JSON and isinstance(body, bytes) and body and _renames(link):
            body = _rewrite_json(body, link.name, link.upstream_workspace or link.name)
        headers = call.headers
        headers.append(("X-Request-Id", call.request_id))

        store = self.stores[link.store]
        translate: Callable[[bytes], Awaitable[bytes]] | None = None
        try:
            response = await self._send(store, spec, path, query, headers, body, link)
        except StoreUnavailable:
            if self.failover is None or not self.failover.serves(spec, link):
                raise
            # A dual workspace's store is down: reads are answered from the central copy.
            json_body = body if isinstance(body, bytes) else None
            response, translate = await self.failover.request(spec, link, path, query, json_body, artifact_path)
        result = await self._result(call, link, response, plan, translate)
        if result.status == 200 and (
            spec == RUNS_CREATE or self._indexes(spec) or (link.mirror is not None and spec.mirrored)
        ):
            await self._bookkeep(call, link, result, artifact_path, ids)
        return result

    async def _bookkeep(
        self,
        call: ForwardCall,
        link: WorkspaceLink,
        result: ForwardResult,
        artifact_path: str | None,
        ids: RequestIds | None,
    ) -> None:
        """Run route, index rows and outbox entry of an accepted write: committed before the answer."""
        if self.bookkeeping is None:
            return
        name = call.spec.name
        entry = None
        if link.mirror is not None and call.spec.mirrored:
            entry = self._outbox_entry(call, link, result, artifact_path, ids)
        run_route = None
        if call.spec == RUNS_CREATE:
            try:
                created = msgspec.json.decode(result.body, type=CreateRunResponse).run.info
                run_route = (created.run_id, created.experiment_id)
            except msgspec.DecodeError:
                log.warning("runs/create answer without a run id; run not recorded", extra={"ws": link.name})
        write = AcceptedWrite(
            route=name,
            workspace=link.name,
            workspace_id=link.workspace_id,
            principal=call.principal.name,
            request=call.body if isinstance(call.body, bytes) else b"",
            response=result.body,
            run_route=run_route,
            outbox=entry,
            indexed=self._indexes(call.spec),
        )

        async def experiment_of_run(run_id: str) -> str | None:
            return await self.guard.lookups.experiment_of(link, "run", run_id) if self.guard else None

        try:
            await self.bookkeeping.record(write, experiment_of_run)
        except Exception as exc:
            log.error("outbox write failed", extra={"ws": link.name, "route": name})
            raise StoreUnavailable(
                "The workspace store accepted the write but it could not be queued for the central store; "
                "repeat the call."
            ) from exc
        if run_route is not None:
            self.runs.remember(run_route[0], link.name, run_route[1])

    def _indexes(self, spec: RouteSpec) -> bool:
        return spec.indexed and self.bookkeeping is not None and self.bookkeeping.index is not None

    def _outbox_entry(
        self,
        call: ForwardCall,
        link: WorkspaceLink,
        result: ForwardResult,
        artifact_path: str | None,
        ids: RequestIds | None,
    ) -> OutboxEntry | None:
        """Dual mode: the write goes to the outbox before the client hears it succeeded.

        The client's body is stored as it came (it was parsed once already): no re-encoding here.
        """
        name = call.spec.name
        model_id = call.path_params.get("model_id")
        run_id = None
        fields: dict[str, Any] = {}
        response: dict[str, Any] = {}
        if artifact_path is not None:
            run_id, model_id = _artifact_run_id(artifact_path), _artifact_model_id(artifact_path)
            if run_id is None and model_id is None:
                return None  # neither a run's nor a logged model's artifact: nothing the central store keeps
            upstream_path = rewrite_artifact_workspace(artifact_path, link.name, link.upstream_workspace)
            document = msgspec.json.encode({"path": upstream_path})
        else:
            request = call.body if isinstance(call.body, bytes) and call.body[:1] == b"{" else b"{}"
            answer = result.body if call.spec.creates and result.body[:1] == b"{" else b"{}"
            response = msgspec.json.decode(answer)
            extra = b',"path_params":' + msgspec.json.encode({"model_id": str(model_id)}) if model_id else b""
            document = b'{"request":' + request + b',"response":' + answer + extra + b"}"
            fields = {f: v for f in ORDER_FIELDS if (v := getattr(ids, f, None))} if ids is not None else {}
        key = order_key(link.workspace_id, name, fields, response, run_id, str(model_id) if model_id else None)
        if key is None:
            log.warning("dual write not mirrored: nothing to order it by", extra={"route": name})
            return None
        return OutboxEntry(key, name, document)

    async def _send(
        self,
        store: Store,
        spec: RouteSpec,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None,
        link: WorkspaceLink,
    ) -> StoreResponse:
        with UPSTREAM_LATENCY.labels(store.name).time():
            try:
                return await store.request(
                    spec.method,
                    path,
                    query=query,
                    headers=headers,
                    body=body,
                    workspace=link.upstream_workspace,
                    idempotent=spec.idempotent,
                )
            except StoreUnreachable as exc:
                UPSTREAM_ERRORS.labels(store.name, "unreachable").inc()
                log.warning("store unreachable", extra={"store": store.name, "reason": str(exc)})
                raise StoreUnavailable(
                    f"The store of workspace '{link.name}' is unreachable; try again shortly."
                ) from exc
            except StoreTimedOut as exc:
                UPSTREAM_ERRORS.labels(store.name, "timeout").inc()
                raise StoreTimeout(f"The store of workspace '{link.name}' did not answer in time.") from exc

    async def _result(
        self,
        call: ForwardCall,
        link: WorkspaceLink,
        response: StoreResponse,
        plan: Plan,
        translate: Callable[[bytes], Awaitable[bytes]] | None = None,
    ) -> ForwardResult:
        spec = call.spec
        headers = {k: v for k, v in response.headers.items() if k.lower() in RETURNED_RESPONSE_HEADERS}
        if translate is not None:
            headers[SERVED_BY] = "central"
        # Artifact bytes are the user's and are never rewritten; JSON answers of renamed links are.
        rewrite = _renames(link) and spec.body is not Body.DOWNLOAD
        found_by_name = spec == EXPERIMENTS_GET_BY_NAME and response.status == 200
        must_read = (
            (spec.indexed and spec.creates and response.status == 200)
            or (link.mirror is not None and spec.mirrored)
            or rewrite
            or plan.after is not None
            or found_by_name
            or (translate is not None and spec.body is not Body.DOWNLOAD)
        )
        small = response.content_length is not None and response.content_length <= BUFFER_LIMIT
        if (spec.body is Body.DOWNLOAD and not must_read) or not (small or must_read):
            if response.content_length is not None:
                headers["Content-Length"] = str(response.content_length)
            return ForwardResult(response.status, headers, link.name, stream=response.iter_chunks())
        try:
            body = await response.read()
        except StoreUnreachable as exc:
            raise StoreUnavailable(f"The store of workspace '{link.name}' dropped the answer.") from exc
        if translate is not None and spec.body is not Body.DOWNLOAD:
            body = await translate(body)
        if rewrite and body[:1] == b"{":
            body = _rewrite_json(body, link.upstream_workspace or link.name, link.name)
        if plan.after is not None:
            await plan.after(response.status, body)
        if found_by_name and self.guard is not None:
            await self.guard.check_found_experiment(call.principal, link, body)
        return ForwardResult(response.status, headers, link.name, body=body)

    # -- request parsing -----------------------------------------------------------------------------

    @staticmethod
    def _canonical(call: ForwardCall) -> CanonicalBody | None:
        """The store gets exactly what the guard reads: the re-encoded query and body (canonical.py)."""
        call.query = canonical_query(call.query)
        if call.spec.body is Body.OPAQUE and isinstance(call.body, bytes):
            export, call.headers = canonical_export(call.body, call.headers)
            call.body = export.encoded
            return export
        if call.spec.body is not Body.JSON or not isinstance(call.body, bytes):
            return None
        if not call.body.strip():
            call.body = None
            return None
        canonical = canonical_body(call.body)
        call.body = canonical.encoded
        call.headers = reencoded_headers(call.headers, "application/json")
        return canonical

    def _run_id(self, call: ForwardCall, ids: RequestIds | None, artifact_path: str | None) -> str | None:
        spec = call.spec
        if artifact_path is not None:
            return _artifact_run_id(artifact_path)
        if spec.resource is not Resource.RUN:
            return None
        if ids is not None:
            candidate = ids.run_id or ids.run_uuid
        elif spec.method == "GET" and call.query:
            params = parse_qs(call.query)
            candidate = (params.get("run_id") or params.get("run_uuid") or [""])[0]
        else:
            candidate = None
        return candidate if candidate and RUN_ID_RE.match(candidate) else None

    @staticmethod
    def _artifact_path(call: ForwardCall) -> str:
        raw = call.path_params.get("artifact_path")
        if raw is None:  # the listing route carries the directory in ?path=
            values = parse_qs(call.query, keep_blank_values=True).get("path", [""])
            if len(values) > 1:
                raise InvalidParameter("Only one 'path' parameter is allowed.")
            return canonical_artifact_path(values[0], allow_empty=True)
        return canonical_artifact_path(raw)

    def _upstream_target(self, call: ForwardCall, link: WorkspaceLink, artifact_path: str | None) -> tuple[str, str]:
        spec = call.spec
        query = call.query
        template = spec.path
        if artifact_path is not None:
            upstream_path = rewrite_artifact_workspace(artifact_path, link.name, link.upstream_workspace)
            if "artifact_path" in call.path_params:
                template = template.replace("{artifact_path:path}", quote_path(upstream_path))
            else:
                query = _replace_query_param(query, "path", upstream_path)
        for key, value in call.path_params.items():
            if key == "artifact_path":
                continue
            text = str(value)
            if not SEGMENT_RE.match(text) or text in (".", ".."):
                raise InvalidParameter(f"Invalid value for path parameter '{key}': {text!r}")
            template = re.sub(r"\{" + key + r":\w+\}", quote(text, safe=""), template)
        if spec.absolute:
            return template, query
        return f"/api/{spec.version}.0{template}", query


ORDER_FIELDS = ("run_id", "run_uuid", "experiment_id", "name", "new_name")


def _renames(link: WorkspaceLink) -> bool:
    return link.upstream_workspace is not None and link.upstream_workspace != link.name


def _artifact_run_id(artifact_path: str) -> str | None:
    """`[workspaces/<ws>/]<experiment_id>/<run_id>/artifacts/...` names a run."""
    parts = artifact_path.split("/")
    if parts and parts[0].lower() == "workspaces":
        parts = parts[2:]
    if len(parts) >= 2 and RUN_ID_RE.match(parts[1]):
        return parts[1]
    return None


def _artifact_model_id(artifact_path: str) -> str | None:
    """`[workspaces/<ws>/]<experiment_id>/models/<model_id>/artifacts/...` names a logged model."""
    parts = artifact_path.split("/")
    if parts and parts[0].lower() == "workspaces":
        parts = parts[2:]
    if len(parts) >= 4 and parts[1] == "models" and parts[2].startswith("m-"):
        return parts[2]
    return None


def _replace_query_param(query: str, name: str, value: str) -> str:
    kept = [part for part in query.split("&") if part and part.split("=", 1)[0] != name]
    kept.append(f"{name}={quote(value, safe='/')}")
    return "&".join(kept)


# Fields that carry artifact URIs or the workspace name; user data (params, tags...) is never touched.
REWRITTEN_FIELDS = frozenset({"artifact_location", "artifact_uri", "root_uri", "source", "workspace"})


def _rewrite_json(body: bytes, old: str, new: str) -> bytes:
    """Rename a workspace in the artifact-URI and `workspace` fields of a JSON document."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    old_prefix = f"mlflow-artifacts:/workspaces/{old}/"
    new_prefix = f"mlflow-artifacts:/workspaces/{new}/"

    def walk(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and key in REWRITTEN_FIELDS:
            if key == "workspace" and node == old:
                return new
            if node.startswith(old_prefix):
                return new_prefix + node[len(old_prefix) :]
        return node

    return msgspec.json.encode(walk(document))


def scan_headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, list[tuple[str, str]]]:
    """One pass over the raw ASGI headers: the workspace header, and the headers a store may see."""
    workspace = None
    forwarded = []
    for name, value in raw:
        key = name.decode("latin-1")  # ASGI servers hand header names over lower-cased
        if key == "x-mlflow-workspace":
            if workspace is not None:
                # Two values could be read differently by the gateway and the store; choose neither.
                raise InvalidParameter("X-MLFLOW-WORKSPACE was sent more than once.")
            workspace = value.decode("latin-1")
        elif key in FORWARDED_REQUEST_HEADERS:
            forwarded.append((key, value.decode("latin-1")))
    return workspace or None, forwarded
