"""The request pipeline: canonical body → resolve the workspace → guard → before-send checks → send → read →
after-write hooks.

The forwarder knows no feature: what may refuse a call before it is sent (the secrets leak guard), what
happens after an accepted write (run routes, the index, the dual outbox), how a call is sent (failover
reads) and which workspace names are served elsewhere (the `account` scope) plug in through the
protocols of hooks.py, chosen by the composition root (app.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, quote

from gateway.core.config import WORKSPACE_NAME_RE
from gateway.core.downloads import download_headers
from gateway.core.errors import (
    GatewayError,
    GraphqlNotFound,
    InvalidParameter,
    PermissionDenied,
    ResourceNotFound,
    StoreTimeout,
    StoreUnavailable,
    error_bytes,
)
from gateway.core.links import DEFAULT_WORKSPACE, LinkTable, WorkspaceLink
from gateway.core.paths import (
    OBJECT_FOLDER_BYTES,
    artifact_run_id,
    artifact_workspace,
    canonical_artifact_path,
    quote_path,
    refuse_bare_workspaces,
    refuse_dotted_folder,
    refuse_long_artifact_path,
    rewrite_artifact_workspace,
)
from gateway.core.ports import Store, StoreResponse, StoreTimedOut, StoreUnreachable
from gateway.core.route_table import EXPERIMENTS_GET_BY_NAME, GATEWAY_PROXY_INVOKE, Body, Resource, RouteSpec
from gateway.core.workspace_headers import WorkspaceHeaders, read_workspace_headers
from gateway.federation.call import ACCOUNT_SCOPE, ForwardCall, ForwardResult
from gateway.federation.canonical import CanonicalBody, canonical_body, canonical_query, reencoded_headers
from gateway.federation.filter_renames import rename_request as _rename_request
from gateway.federation.filter_renames import renames_filters as _renames_filters
from gateway.federation.graphql import canonical_graphql
from gateway.federation.guard import Plan
from gateway.federation.hooks import (
    AcceptedWrite,
    AfterWrite,
    BeforeSend,
    Check,
    Held,
    Outgoing,
    PendingCall,
    RunHomes,
    Sender,
    Sent,
    WriteAhead,
)
from gateway.federation.mlflow_requests import refuse_partial_read, unread_part, worded_as_the_store
from gateway.federation.otlp import canonical_export
from gateway.federation.renames import renames as _renames
from gateway.federation.renames import rewrite_json as _rewrite_json
from gateway.federation.schemas import RequestIds
from gateway.federation.store_answers import (
    MAX_ERROR_BODY,
    FeatureNotServed,
    foreign_error,
    known_failure,
    reads_error,
    unshaped_error,
)
from gateway.observability.metrics import UPSTREAM_ERRORS, UPSTREAM_LATENCY

__all__ = ["ACCOUNT_SCOPE", "ForwardCall", "ForwardResult", "Forwarder", "StoreSender", "scan_headers"]

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")
# Path parameters other than artifact paths are single, plain segments.
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,256}\Z")
# A response larger than this (or of unknown size) is streamed instead of buffered.
BUFFER_LIMIT = 1024 * 1024
# A store that does not serve the route at all (MLflow's NOT_IMPLEMENTED, or a feature it was started without,
# store_answers.py, which MLflow refuses before its handler runs) applied nothing: a write answered so is settled,
# not handed to recovery as of unknown outcome.
NOT_SERVED = FeatureNotServed.status

# Client headers the store may see. Everything else (Authorization, Cookie, Host, X-Forwarded-*,
# hop-by-hop headers, the workspace header) is dropped or replaced by the gateway. `traceparent` is dropped too:
# the store's AI gateway (MLflow 3.17.2 `gateway/tracing_utils.py`) records a span under the trace it names, and
# spans are filed under `tr-<hex of its trace id>` wherever that trace lives (docs/security.md, invariant 10).
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "accept",
        "user-agent",
        "x-mlflow-client-version",
        "x-mlflow-experiment-id",
        "x-mlflow-run-id",
        "content-encoding",
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
        # MLflow's artifact answers: with their `attachment` disposition, what keeps a browser from running a file a
        # user uploaded (HTML, SVG) in the gateway's origin, where the web UI's session lives.
        "x-content-type-options",
    }
)


class StoreSender:
    """The plain send step: the call goes to the workspace's own store (timed, failures mapped to 503/504)."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self.stores = stores

    async def send(self, outgoing: Outgoing) -> Sent:
        link, spec = outgoing.link, outgoing.spec
        store = self.stores[link.store]
        started = time.perf_counter()
        try:
            try:
                response = await store.request(
                    spec.method,
                    outgoing.path,
                    query=outgoing.query,
                    headers=outgoing.headers,
                    body=outgoing.body,
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
        finally:
            _upstream_latency(store.name).observe(time.perf_counter() - started)
        return Sent(response)


@functools.cache
def _upstream_latency(store: str) -> Any:
    """The store's labelled latency histogram (looked up once per store)."""
    return UPSTREAM_LATENCY.labels(store)


class Forwarder:
    """Forwards one call through the pipeline; every collaborator is given here, none is set later."""

    def __init__(
        self,
        links: LinkTable,
        runs: RunHomes,
        guard: Check,
        sender: Sender,
        hooks: Sequence[AfterWrite] = (),
        before_send: Sequence[BeforeSend] = (),
        write_ahead: WriteAhead | None = None,
    ) -> None:
        self.links = links
        self.runs = runs  # which workspace a run lives in (federation/locate.py)
        self.guard = guard
        self.sender = sender
        self.hooks = tuple(hooks)  # after-write hooks (hooks.py), asked in this order
        self.before_send = tuple(before_send)  # checks that may refuse an allowed call (hooks.py), in this order
        self.write_ahead = write_ahead  # notes writes before they are sent (intents.py), for crash recovery

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
        """The headers name the workspace; without them, the artifact path, the run, or `default` do."""
        # No two links share a store namespace (links withheld for overlapping answer 409), so the
        # store alone keeps each workspace's objects apart.
        link = call.workspace.link(self.links, self.link_named, lambda found: self.guard.enters(call.principal, found))
        if link is not None:
            return link
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

    async def _decided(
        self,
        call: ForwardCall,
        canonical: CanonicalBody | None,
        artifact_path: str | None,
        traces: dict[str, dict[str, Any]],
    ) -> tuple[WorkspaceLink, Plan]:
        """The call's workspace and the guard's plan for it, decided by the stored policy when refused.

        A grant made through another replica moments ago (the owner's grant on an experiment the caller just
        created there, as a balancer sends each call elsewhere) may not have reached this one: before a refusal
        by access control (403, or 404 as for a missing object) stands, this replica's policy is brought up to
        the stored one, and the call decided again if that changed it. One query when the replica is not behind;
        an object that is really missing costs none. The policy only moves forward, revocations included.
        """
        try:
            return await self._decide(call, canonical, artifact_path, traces)
        except (PermissionDenied, ResourceNotFound) as refusal:
            if isinstance(refusal, ResourceNotFound) and not refusal.denied:
                raise
            principal = await self.guard.caught_up(call.principal)
            if principal is None:
                raise
            call.principal = principal  # as the stored policy knows it: its groups with that policy's grants
            return await self._decide(call, canonical, artifact_path, traces)

    async def _decide(
        self,
        call: ForwardCall,
        canonical: CanonicalBody | None,
        artifact_path: str | None,
        traces: dict[str, dict[str, Any]],
    ) -> tuple[WorkspaceLink, Plan]:
        link = await self.resolve(call, canonical.ids if canonical is not None else None, artifact_path)
        plan = await self.guard.check(
            call.spec,
            call.principal,
            link,
            canonical,
            call.query,
            artifact_path,
            dict(call.path_params),
            call.headers,
            traces,
        )
        return link, plan

    async def forward(self, call: ForwardCall) -> ForwardResult:
        spec = call.spec
        # What the client sent: a refusal of the gateway's own reads as the store's where MLflow refuses it too.
        sent_body, sent_query = (call.body if isinstance(call.body, bytes) else None), call.query
        # 1 canonical: the store gets exactly what the guard reads.
        try:
            canonical = self._canonical(call)
        except InvalidParameter as refusal:
            raise worded_as_the_store(spec, refusal, sent_body, sent_query) from None
        ids = canonical.ids if canonical is not None else None
        artifact_path = self._artifact_path(call) if spec.resource is Resource.ARTIFACT else None
        # 2 resolve, 3 guard; the traces it reads are the before-send checks' too
        traces: dict[str, dict[str, Any]] = {}
        try:
            link, plan = await self._decided(call, canonical, artifact_path, traces)
        except InvalidParameter as refusal:
            raise worded_as_the_store(spec, refusal, sent_body, sent_query) from None
        except ResourceNotFound as missing:
            if canonical is not None and canonical.graphql is not None:
                raise GraphqlNotFound(canonical.graphql.field, missing) from None  # as the store answers it
            raise
        _refuse_long_paths(call, link, artifact_path)
        if plan.answer is not None:
            return ForwardResult(200, {"Content-Type": "application/json"}, link.name, body=plan.answer)
        if plan.query is not None:
            call.query = plan.query
        if plan.body is not None:
            call.body = plan.body
        # The body as the guard decoded it, while it is the one sent (None once the guard's plan replaced it).
        document = canonical.document if canonical is not None and call.body is canonical.encoded else None
        points = None  # a log-batch's points as the check below converted them, for the after-write hooks
        if plan.query is not None or plan.body is not None or (spec.writes and spec.body is Body.JSON):
            # MLflow stops parsing at the first value it cannot parse and acts on the fields before it: what the guard
            # wrote into the request (a search narrowed to what the caller may read) must be read by the store, and a
            # write is applied whole or not at all (the index and the dual outbox record the whole document).
            points = refuse_partial_read(
                spec, call.body if isinstance(call.body, bytes) else None, call.query, document
            )
        # 3b before send: checks of the body exactly as it will be sent, before it goes anywhere
        checks = [check for check in self.before_send if check.wants(spec, link)]
        checked = canonical_body(plan.body) if checks and plan.body is not None else canonical
        if checks and checked is None and spec.body is Body.JSON:
            checked = canonical_body(b"{}")  # a call without a body is checked as the empty document
        held: list[Held] = []
        if checks and checked is not None:
            pending = PendingCall(spec, link, call.principal, checked, call.request_id, call.path_params, traces)
            held = await _checked(checks, pending)
        # 4 send; what the checks hold is let go once the store has answered (or did not)
        intent = None
        try:
            path, query = self._upstream_target(call, link, artifact_path)
            body = call.body
            if _renames(link) and _renames_filters(spec) and (isinstance(body, bytes) or body is None):
                # A search's filter comparing an artifact URI names the store's name, as the store keeps it.
                query, body = _rename_request(spec, query, body, link.name, link.upstream_workspace or link.name)
            if spec.body is Body.JSON and isinstance(body, bytes) and body and _renames(link):
                body = _rewrite_json(body, link.name, link.upstream_workspace or link.name)
            headers = call.headers
            headers.append(("X-Request-Id", call.request_id))
            # 4a write ahead: a write a crash must not lose is noted before it leaves (intents.py).
            if ids is None:
                ids = _query_ids(spec, call.query)
            if self.write_ahead is not None and self.write_ahead.wants(spec, link):
                intent = await self.write_ahead.begin(spec, link, ids, call.path_params, artifact_path)
            sent = await self.sender.send(Outgoing(spec, link, path, query, headers, body, artifact_path))
        except BaseException:
            if intent is not None:
                intent.unknown()  # no answer, or the caller went away: recovered now
            raise
        finally:
            await _release(held)
        try:
            # 5 read
            hooks = [hook for hook in self.hooks if hook.wants(spec, link)]
            answer_needed = sent.response.status == 200 and any(hook.needs_answer(spec, link) for hook in hooks)
            result = await self._result(call, link, sent, plan, answer_needed)
            # 6 after-write hooks, concurrently: the client waits for the slowest, not the sum.
            if result.status == 200 and hooks:
                write = AcceptedWrite(
                    spec,
                    link,
                    call.principal.name,
                    call.body if isinstance(call.body, bytes) else b"",
                    result.body,
                    ids,
                    call.path_params,
                    artifact_path,
                    call.query,
                    document,
                    points,
                )
                if len(hooks) == 1:
                    await hooks[0].record(write)
                else:
                    await asyncio.gather(*(hook.record(write) for hook in hooks))
        except BaseException:
            if intent is not None:
                intent.unknown()  # a failed hook (the outbox), or the caller went away: recovered now
            raise
        if intent is not None:
            if result.status >= 500 and result.status != NOT_SERVED:
                intent.unknown()  # a store error may have applied part of the write
            else:
                intent.settled()
        return result

    async def _result(
        self, call: ForwardCall, link: WorkspaceLink, sent: Sent, plan: Plan, answer_needed: bool
    ) -> ForwardResult:
        spec = call.spec
        response, translate = sent.response, sent.translate
        headers = {k: v for k, v in response.headers.items() if k.lower() in RETURNED_RESPONSE_HEADERS}
        if sent.headers:
            headers.update(sent.headers)
        if spec.body is Body.DOWNLOAD:
            headers = download_headers(headers)
        # Artifact bytes are the user's and are never rewritten; JSON answers of renamed links are.
        rewrite = _renames(link) and spec.body is not Body.DOWNLOAD
        # get-by-name names no id up front: the guard checks the experiment found in the answer.
        found_by_name = spec == EXPERIMENTS_GET_BY_NAME and response.status == 200
        must_read = answer_needed or rewrite or plan.after is not None or found_by_name or translate is not None
        body: bytes | None = None
        content_type = response.headers.get("Content-Type", "")
        if response.status >= 500 and _error_sized(response.content_length):
            # Read before it is judged by its head: a 5xx that is the store's fixed answer to the request, not its
            # failure nor a proxy's page (MLflow's own 503 of a feature its server was started without is text/html).
            body = await _read(response, link)
            if (error := known_failure(spec, response.status, body, link.name, content_type=content_type)) is not None:
                return _error_result(error, link.name)
        if response.status >= 500 and (missing := await self.guard.missing_after_failure(spec, link, call.path_params)):
            if body is None:
                response.release()
            return _error_result(missing, link.name)
        if response.status >= 500 and not spec.writes and spec.body is Body.JSON:
            # A read MLflow parses only in part (a value of the wrong type: `"max_results": []`) and then fails on:
            # the caller's error, told as such; judged only once the store failed, so a read that passes is never
            # parsed for it. A write is never sent so (refuse_partial_read, before the store).
            sent_body = call.body if isinstance(call.body, bytes) else None
            if (reason := unread_part(spec, sent_body, call.query)) is not None:
                if body is None:
                    response.release()
                refusal = InvalidParameter(f"Invalid request: MLflow reads only part of it ({reason[:200]}).")
                return _error_result(worded_as_the_store(spec, refusal, sent_body, call.query), link.name)
        foreign = foreign_error(spec, response.status, content_type)
        if foreign is not None:
            if body is None:
                response.release()
            status, error_code = foreign
            if response.status in (204, 205):
                what = f"a {response.status} answer without a body where MLflow answers JSON"
            elif response.status < 300:
                what = f"a {response.status} answer that is not JSON where MLflow answers JSON"
            else:
                what = f"a {response.status} answer that is not an MLflow error"
            retry = (
                {"Retry-After": response.headers.get("Retry-After") or "5"}
                if error_code == "TEMPORARILY_UNAVAILABLE"
                else {}
            )
            message = f"The store of workspace '{link.name}' sent {what}."
            return _error_result(GatewayError(message, error_code=error_code, status=status, headers=retry), link.name)
        if reads_error(spec, response.status):
            # An error answer goes out in MLflow's shape: a JSON one of MLflow's size is read to be judged (errors
            # only; a success is never read here), any other is judged by its head.
            judged: bytes | None = b"" if response.content_length == 0 else None
            if content_type.split(";", 1)[0].strip().lower() == "application/json" and judged is None:
                if body is None and _error_sized(response.content_length):
                    body = await _read(response, link)
                judged = body
            if (unshaped := unshaped_error(spec, response.status, content_type, judged, link.name)) is not None:
                if body is None:
                    response.release()
                if unshaped.status in (429, 503) and (after := response.headers.get("Retry-After")):
                    unshaped.headers["Retry-After"] = after  # the store's own wait
                return _error_result(unshaped, link.name)
        small = response.content_length is not None and response.content_length <= BUFFER_LIMIT
        if body is None and ((spec.body is Body.DOWNLOAD and not must_read) or not (small or must_read)):
            if response.content_length is not None:
                headers["Content-Length"] = str(response.content_length)
            return ForwardResult(response.status, headers, link.name, stream=response.iter_chunks())
        if body is None:
            body = await _read(response, link)
        if translate is not None:
            body = await translate(body)
        if rewrite and body[:1] == b"{":
            body = _rewrite_json(body, link.upstream_workspace or link.name, link.name)
        if plan.after is not None and (replaced := await plan.after(response.status, body)) is not None:
            body = replaced
        if found_by_name:
            await self.guard.check_found_experiment(call.principal, link, body)
        return ForwardResult(response.status, headers, link.name, body=body)

    # -- request parsing -----------------------------------------------------------------------------

    @staticmethod
    def _canonical(call: ForwardCall) -> CanonicalBody | None:
        """The store gets exactly what the guard reads: the re-encoded query and body (canonical.py)."""
        call.query = canonical_query(call.query)
        if call.spec.relative_path:
            _check_relative_path(call.query, call.spec.relative_path)
        if call.spec is GATEWAY_PROXY_INVOKE and isinstance(call.body, bytes):
            _check_gateway_path(call.body)
        if call.spec.body is Body.GRAPHQL:
            graphql = canonical_graphql(call.body if isinstance(call.body, bytes) else b"")
            call.body = graphql.body()
            call.headers = reencoded_headers(call.headers, "application/json")
            return CanonicalBody(call.body, {}, RequestIds(), graphql=graphql)
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
            return artifact_run_id(artifact_path)
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
            path = canonical_artifact_path(values[0], allow_empty=True)
        else:
            path = canonical_artifact_path(raw)
        refuse_bare_workspaces(path)
        if call.spec.method in ("PUT", "POST"):  # an upload, a multipart upload
            refuse_dotted_folder(path)
        return path

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
            # A `{key:path}` parameter (the AI gateway's raw proxy) is several such segments, none empty.
            segments = text.split("/") if "{" + key + ":path}" in template else [text]
            for segment in segments:
                if not SEGMENT_RE.match(segment) or segment in (".", ".."):
                    raise InvalidParameter(f"Invalid value for path parameter '{key}': {text!r}")
            # pchar: ':', '@', '+' and '=' stay as written in a path's segments (Gemini's `model:action`)
            safe = ":@+=" if len(segments) > 1 or "{" + key + ":path}" in template else ""
            quoted = "/".join(quote(segment, safe=safe) for segment in segments)
            template = re.sub(r"\{" + key + r":\w+\}", quoted.replace("\\", "\\\\"), template)
        return f"{spec.upstream_prefix}{template}", query


def _error_result(error: GatewayError, workspace: str) -> ForwardResult:
    """The gateway's answer in place of the store's: `error` in MLflow's shape, with its headers."""
    headers = {"Content-Type": "application/json", **error.headers}
    return ForwardResult(error.status, headers, workspace, body=error_bytes(error.document()))


def _error_sized(content_length: int | None) -> bool:
    return content_length is not None and content_length <= MAX_ERROR_BODY


async def _read(response: StoreResponse, link: WorkspaceLink) -> bytes:
    try:
        return await response.read()
    except StoreUnreachable as exc:
        raise StoreUnavailable(f"The store of workspace '{link.name}' dropped the answer.") from exc


async def _checked(checks: Sequence[BeforeSend], pending: PendingCall) -> list[Held]:
    """Ask each check in turn; what they hold, or nothing held when one refuses."""
    held: list[Held] = []
    try:
        for check in checks:
            hold = await check.check(pending)
            if hold is not None:
                held.append(hold)
    except BaseException:
        await _release(held)
        raise
    return held


async def _release(held: Sequence[Held]) -> None:
    for hold in reversed(held):
        await hold.release()


def _query_ids(spec: RouteSpec, query: str) -> RequestIds | None:
    """The run an upload names in its query (the UI's upload button: `?run_uuid&path`), for the write-ahead
    note and the after-write hooks, as a JSON body's ids are. Workspace resolution does not use it."""
    if spec.body is not Body.UPLOAD or spec.resource is Resource.ARTIFACT or not query:
        return None
    params = parse_qs(query)
    run_id = (params.get("run_uuid") or params.get("run_id") or [""])[0]
    return RequestIds(run_uuid=run_id) if RUN_ID_RE.match(run_id) else None


# Routes whose query names a folder inside a run's or logged model's artifacts without the UI routes' canonical check
# (MLflow's clients list "" and folders as they come): only its length is checked, as the UI routes' paths are.
_LISTED_FOLDERS = {
    "GET /mlflow/artifacts/list": "path",
    "GET /mlflow/logged-models/{model_id:str}/artifacts/directories": "artifact_directory_path",
}


def _refuse_long_paths(call: ForwardCall, link: WorkspaceLink, artifact_path: str | None) -> None:
    """A path the store's file system cannot hold, as the store will write it, is refused before it is asked
    (core/paths.py, refuse_long_artifact_path): the artifact proxy's path with the `workspaces/<name>/` the store puts
    before it, a path inside an object's artifacts with that and the object's folder too."""
    if artifact_path is not None:
        sent = rewrite_artifact_workspace(artifact_path, link.name, link.upstream_workspace)
        named = artifact_workspace(sent)
        if named is None:
            refuse_long_artifact_path(artifact_path, before=_workspace_folder_bytes(link))
        else:  # the caller's path after its prefix, as it names it; the prefix as the store writes it
            prefix = f"workspaces/{named}/"
            refuse_long_artifact_path(sent[len(prefix) :], before=len(prefix.encode()))
        return
    name = call.spec.relative_path or _LISTED_FOLDERS.get(call.spec.name, "")
    if name:
        for value in parse_qs(call.query, keep_blank_values=True).get(name, []):
            refuse_long_artifact_path(value, before=_workspace_folder_bytes(link) + OBJECT_FOLDER_BYTES)


def _workspace_folder_bytes(link: WorkspaceLink) -> int:
    """The `workspaces/<name>/` a store with workspaces puts before an artifact path of the link's workspace (none in
    its `default` workspace), or of its central copy's: the longer."""
    names = [name for name in (link.upstream_workspace, link.mirror_workspace) if name and name != DEFAULT_WORKSPACE]
    return max((len(f"workspaces/{name}/".encode()) for name in names), default=0)


def _check_relative_path(query: str, name: str) -> None:
    """A path inside an object's artifacts (the UI's artifact calls) is one canonical relative path, if given."""
    values = parse_qs(query, keep_blank_values=True).get(name, [])
    if len(values) > 1:
        raise InvalidParameter(f"Only one '{name}' parameter is allowed.")
    for value in values:
        canonical_artifact_path(value)


def _check_gateway_path(body: bytes) -> None:
    """The UI's deployments proxy: the store posts to `<deployments target>/<gateway_path>` and accepts any
    `gateway/<one segment>/invocations`, `..`, percent escapes, `?` and `#` included (the last two make the rest a
    query string or a fragment, reaching `gateway/<anything>`); those segments are refused here.

    Only `gateway_path` is read (the rest of the body is forwarded as sent); a body without one is the store's to
    answer."""
    try:
        fields = json.loads(body)
    except ValueError:
        return
    value = fields.get("gateway_path") if isinstance(fields, dict) else None
    if not isinstance(value, str):
        return
    for segment in value.strip("/").split("/"):
        if segment in (".", "..") or any(c in segment for c in "%\\?#"):
            raise InvalidParameter(f"Invalid gateway_path: {value} for method: POST")


def _replace_query_param(query: str, name: str, value: str) -> str:
    kept = [part for part in query.split("&") if part and part.split("=", 1)[0] != name]
    kept.append(f"{name}={quote(value, safe='/')}")
    return "&".join(kept)


def scan_headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[WorkspaceHeaders, list[tuple[str, str]]]:
    """One pass over the raw ASGI headers: the workspace headers, and the headers a store may see."""
    return read_workspace_headers(raw, FORWARDED_REQUEST_HEADERS)
