"""Litestar handlers generated from the route table: parse the request, call the forwarder, answer."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from typing import Any
from urllib.parse import unquote

from litestar import Request, route
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream
from litestar.response.base import ASGIResponse

from gateway.core.errors import BodyTooLarge, EndpointNotFound, GatewayError, InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.ports import StoreTimedOut, StoreUnreachable, StreamCutShort
from gateway.core.principal import Principal
from gateway.core.route_table import FORWARDED_ROUTES, SERVER_INFO, UI_UPLOAD_ARTIFACT, Body, RouteSpec
from gateway.federation.call import ACCOUNT_SCOPE
from gateway.federation.hooks import FeatureRoute, Scope
from gateway.federation.service import ForwardCall, Forwarder, ForwardResult, scan_headers
from gateway.observability.access import REQUEST_ID_KEY, ROUTE_KEY, note
from gateway.stores.capabilities import StoreCapabilities

log = logging.getLogger(__name__)


def forwarding_handlers(
    forwarder: Forwarder,
    *,
    max_json_body: int,
    max_artifact_body: int,
    scopes: Mapping[str, Scope] | None = None,
    routes: Mapping[RouteSpec, FeatureRoute] | None = None,
) -> list[HTTPRouteHandler]:
    """One Litestar handler per declared route, mounted at every alias of its path.

    `scopes`: workspace names served by something other than the forwarder (the `account` scope),
    chosen here, at the edge, before the forwarder sees the call. `routes`: declared routes a feature
    serves itself (MLflow's transition-stage: the registry workflow), in any workspace but a scope.
    """
    # Routes MLflow tells apart by a suffix of a segment (Gemini's `{endpoint_name}:generateContent`) share one
    # Litestar path, which matches whole segments only: one handler serves them and picks the route by suffix.
    mounted: dict[tuple[str, str, int], list[RouteSpec]] = {}
    for spec in FORWARDED_ROUTES:
        mounted.setdefault((spec.method, mount_path(spec.path), spec.version), []).append(spec)
    return [
        _forwarding_handler(
            specs,
            _declared_before(specs),
            forwarder,
            scopes or {},
            routes or {},
            max_json_body=max_json_body,
            max_artifact_body=max_artifact_body,
        )
        for specs in mounted.values()
    ]


def route_name(spec: RouteSpec) -> str:
    """The name of the handler that serves `spec`, and the route label of its metrics."""
    return f"{spec.method} {mount_path(spec.path)} v{spec.version}"


# MLflow's AI-gateway router (FastAPI, mounted at `/gateway/`) tries its routes in the order declared; Litestar prefers
# a segment of text to a parameter. Where both of two routes match a target, the store's is the first declared:
# `/gateway/proxy/mlflow/invocations` invokes the endpoint named `proxy` (`{endpoint_name}/mlflow/invocations`), and
# is not the raw proxy (`proxy/{endpoint_name}/{path:path}`) of an endpoint `mlflow`, where Litestar sends it.
IN_DECLARED_ORDER = "/gateway/"


def _declared_before(specs: list[RouteSpec]) -> tuple[RouteSpec, ...]:
    """Routes of the AI-gateway router declared before a mount's own that may match a target the mount serves."""
    first = specs[0]
    if not (first.absolute and first.path.startswith(IN_DECLARED_ORDER)):
        return ()
    earlier = FORWARDED_ROUTES[: FORWARDED_ROUTES.index(first)]
    return tuple(
        spec
        for spec in earlier
        if spec.method == first.method
        and spec.absolute
        and spec.path.startswith(IN_DECLARED_ORDER)
        and spec not in specs
        and _may_overlap(spec.path.split("/"), first.path.split("/"))
    )


def _may_overlap(left: list[str], right: list[str]) -> bool:
    """Whether two declared paths, as segments, may match one target: text matches the same text, a parameter any
    segment (one with a suffix too, which is more than it matches), `{x:path}` any number of them."""
    if not left or not right:
        return left == right
    if left[0].endswith(":path}"):
        return any(_may_overlap(left[1:], right[at:]) for at in range(len(right) + 1))
    if right[0].endswith(":path}"):
        return _may_overlap(right, left)
    if left[0].startswith("{") or right[0].startswith("{") or left[0] == right[0]:
        return _may_overlap(left[1:], right[1:])
    return False


def _first_declared(earlier: tuple[RouteSpec, ...], request: Request[Any, Any, Any]) -> RouteSpec | None:
    """The first of `earlier` whose path the raw target spells (as `_raw_parameters` reads it), if any."""
    raw = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1").split("?", 1)[0]
    for spec in earlier:
        if any(_raw_pattern(path).fullmatch(raw) for path in spec.paths()):
            return spec
    return None


# A path parameter followed by text within its segment: `{endpoint_name:str}:generateContent`.
SUFFIXED_SEGMENT = re.compile(r"\{(\w+):str\}([^/{}]+)")


# A multi-segment parameter with more path after it: `{name:path}/versions/{version:path}` (the MCP registry).
INTERIOR_PATH = re.compile(r"(\{\w+:path\})/.*")


def mount_path(path: str) -> str:
    """Where Litestar mounts a declared path: a parameter with a suffix in its segment becomes the whole segment,
    and a `{name:path}` followed by more path is mounted as `{name:path}` alone (Litestar's path parameters end
    the path). A trailing slash (MLflow's `jobs/`) is dropped: Litestar matches a path with or without one."""
    mounted = INTERIOR_PATH.sub(r"\1", SUFFIXED_SEGMENT.sub(r"{\1:str}", path))
    return mounted[:-1] if len(mounted) > 1 and mounted.endswith("/") else mounted


def _pattern(path: str) -> re.Pattern[str]:
    """A declared path after its static prefix as the store's router matches it: `{x:path}` any text (slashes too),
    `{x:str}` one segment; the first declared route that matches wins, as in the store."""
    tail = path[path.index("{") :]
    parts = re.split(r"(\{\w+:\w+\})", tail)
    regex = ""
    for part in parts:
        param = re.fullmatch(r"\{(\w+):(\w+)\}", part)
        if param is None:
            regex += re.escape(part)
        else:
            regex += f"(?P<{param[1]}>{'.*' if param[2] == 'path' else '[^/]+'})"
    return re.compile(regex)


def _choose_by_pattern(specs: list[RouteSpec], request: Request[Any, Any, Any]) -> tuple[RouteSpec, dict[str, Any]]:
    """The route of a call whose path parameters may hold slashes, read from the raw path as the store reads it.

    The raw path after the static prefix is decoded once (`%2F` is a slash: the stock client sends a server's name
    `com.example/server` as one encoded segment), then matched against each route's pattern in declaration order.
    Every parameter is later split into segments and each checked by the forwarder (no `.`, `..`, `%` or empty
    segment reaches the store), and the store decodes the forwarded path into the same text.
    """
    raw = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1").split("?", 1)[0]
    for prefix in {path[: path.index("{")] for path in specs[0].paths()}:
        if (spelt := _static_pattern(prefix).match(raw)) is not None:
            tail = unquote(raw[spelt.end() :])
            for spec in specs:
                found = _pattern(spec.path).fullmatch(tail)
                if found is not None:
                    return spec, found.groupdict()
    raise EndpointNotFound("No such endpoint.")


@functools.cache
def _static_pattern(text: str) -> re.Pattern[str]:
    """The static part of a mount as the raw target must spell it: the text exactly (no percent-encoding), each `/`
    one or more (the router merges them, as `_raw_pattern` reads them; the fewest, so that a `//` after the part
    is an empty segment of what follows, refused)."""
    return re.compile("/+?".join(re.escape(piece) for piece in text.split("/")))


def _choose(specs: list[RouteSpec], path_params: dict[str, Any]) -> tuple[RouteSpec, dict[str, Any]]:
    """The route of a call: the only one, or the one whose segment suffix the parameter ends with (stripped)."""
    if len(specs) == 1 and not SUFFIXED_SEGMENT.search(specs[0].path):
        return specs[0], path_params
    for spec in specs:
        for name, suffix in SUFFIXED_SEGMENT.findall(spec.path):
            value = str(path_params.get(name, ""))
            if len(value) > len(suffix) and value.endswith(suffix):
                return spec, {**path_params, name: value[: -len(suffix)]}
    raise EndpointNotFound("No such endpoint.")


@functools.cache
def _raw_pattern(path: str) -> re.Pattern[str]:
    """A mounted path as the raw request target must spell it: each `/` of the static part one or more (the router
    merges them; the fewest, so that `artifacts//etc/passwd` keeps its path absolute), the static text exactly (no
    percent-encoding), `{x:str}` one raw segment, `{x:path}` the rest."""
    regex = ""
    for part in re.split(r"(\{\w+:\w+\})", path):
        param = re.fullmatch(r"\{(\w+):(\w+)\}", part)
        if param is None:
            regex += _static_pattern(part).pattern
        else:
            regex += f"(?P<{param[1]}>{'.*' if param[2] == 'path' else '[^/]+'})"
    return re.compile(regex)


def _raw_parameters(request: Request[Any, Any, Any], spec: RouteSpec) -> dict[str, str]:
    """The path parameters of a route read from the raw target as the client sent it (not decoded).

    The router matches the decoded path: `%2F` and `%61` decoded, `//` merged. A parameter read there and one read
    from the raw target could disagree on where it starts (`/mlflow-artifacts/%61rtifacts/1/x/mlflow-artifacts/
    artifacts/2/y` holds the mount's own text again inside the path), and the store would act on another path or
    endpoint than the one checked. A target whose static part is spelt otherwise than the mount is no route here.
    """
    raw = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1").split("?", 1)[0]
    for path in spec.paths():
        found = _raw_pattern(path).fullmatch(raw)
        if found is not None:
            return found.groupdict()
    raise EndpointNotFound(f"No API endpoint {spec.method} {request.url.path}")


# MLflow's own limit for a file uploaded with its UI's button.
UI_UPLOAD_LIMIT = 10 * 1024 * 1024


def _forwarding_handler(
    specs: list[RouteSpec],
    earlier: tuple[RouteSpec, ...],
    forwarder: Forwarder,
    scopes: Mapping[str, Scope],
    features: Mapping[RouteSpec, FeatureRoute],
    *,
    max_json_body: int,
    max_artifact_body: int,
) -> HTTPRouteHandler:
    first = specs[0]
    upload = first.body is Body.UPLOAD
    # The static part before an artifact path, e.g. "/mlflow-artifacts/artifacts/".
    artifact_prefix = first.path.split("{artifact_path:path}")[0] if "{artifact_path:path}" in first.path else None
    # Other multi-segment parameters (the AI gateway's raw proxy: `{path:path}`), read raw.
    raw_tails = [name for name in re.findall(r"\{(\w+):path\}", first.path) if name != "artifact_path"]
    # Routes with a `{name:path}` before more path share one mount and are told apart by pattern (the MCP registry).
    by_pattern = any(INTERIOR_PATH.search(spec.path) for spec in specs)

    async def forward(request: Request[Principal, Any, Any]) -> ASGIResponse:
        if by_pattern:
            spec, path_params = _choose_by_pattern(specs, request)
        else:
            spec, path_params = _choose(specs, request.path_params)
        store_runs = _first_declared(earlier, request) if earlier else None
        if store_runs is not None:
            spec = store_runs
            request.scope[ROUTE_KEY] = route_name(spec)  # type: ignore[literal-required,unused-ignore]
        feature = features.get(spec)
        body: bytes | AsyncIterable[bytes] | None
        bounded: BoundedUpload | None = None
        if upload and spec == UI_UPLOAD_ARTIFACT:
            # MLflow reads the UI's upload whole (`request.data`, 10 MB at most) and finds nothing in a chunked
            # body: it is read here, within that limit, and sent with its length.
            limit = min(max_artifact_body or UI_UPLOAD_LIMIT, UI_UPLOAD_LIMIT)
            body = b"".join([chunk async for chunk in BoundedUpload(request, limit)])
        elif upload:
            body = bounded = BoundedUpload(request, max_artifact_body)
        elif spec.method in ("GET",):
            body = None
        else:
            body = await request.body()
        if artifact_prefix is not None or (raw_tails and not by_pattern) or store_runs is not None:
            raw = _raw_parameters(request, spec)
            # The artifact path decoded exactly once (`//etc/passwd` stays absolute, `%2F` a separator the
            # canonicaliser sees); `{name:path}` tails as sent, each segment checked by the forwarder (no `.`, `..`,
            # `%` or empty segment reaches the store); one-segment parameters decoded, as the store decodes them.
            path_params = {name: value if name in raw_tails else unquote(value) for name, value in raw.items()}
        workspace, headers = scan_headers(request.scope["headers"])
        call = ForwardCall(
            spec=spec,
            principal=request.user,
            workspace=workspace,
            path_params=path_params,
            query=request.scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
            request_id=str(request.scope.get(REQUEST_ID_KEY, "")),  # type: ignore[call-overload,unused-ignore]
        )
        try:
            result = await _serve(call, forwarder, scopes, feature)
        except GatewayError:
            # The store saw the upload cut short; the reason is ours, not an unreachable store.
            if bounded is not None and bounded.exceeded:
                raise bounded.error() from None
            raise
        note(request.scope, workspace=result.workspace)
        return _response(result, request)

    # Uploads are bounded by our own streaming check (0 = no limit); JSON bodies by Litestar's.
    return route(
        path=[mount_path(path) for path in first.paths()],
        http_method=served_methods(first.method),
        name=route_name(first),
        opt={"route": first},
        request_max_body_size=None if upload else max_json_body,
        status_code=200,  # the real status is the store's; this only satisfies DELETE defaults
        include_in_schema=False,
    )(forward)


def served_methods(method: str) -> list[HttpMethod]:
    """A route's method, and HEAD beside a GET: MLflow's server (Flask) runs a GET route's view for a HEAD and
    answers its status and head without the body. Here a HEAD is that GET's own call (the same handler, route and
    authorization, the store asked a GET); the server sends the head alone, with the GET's length."""
    return [HttpMethod.GET, HttpMethod.HEAD] if method == "GET" else [HttpMethod(method)]


async def _serve(
    call: ForwardCall, forwarder: Forwarder, scopes: Mapping[str, Scope], feature: FeatureRoute | None = None
) -> ForwardResult:
    """The call's scope (the `account` scope, say) answers it, else the feature that serves the route, else
    the forwarder sends it to a workspace."""
    if (scope := call.workspace.scope(scopes)) is not None:
        return await scope.serve(call)
    if call.workspace.name == ACCOUNT_SCOPE:
        raise InvalidParameter("This gateway does not serve the 'account' scope; choose a workspace.")
    if feature is not None:
        return await feature.serve(call)
    return await forwarder.forward(call)


class BoundedUpload:
    """The request body as a stream for the store, cut off at the gateway's artifact size limit (0: none)."""

    def __init__(self, request: Request[Any, Any, Any], limit: int) -> None:
        self.limit = limit
        self.exceeded = False
        declared = request.headers.get("content-length", "")
        if limit and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            raise self.error()  # refused before a byte is read
        self._chunks = request.stream()

    def error(self) -> BodyTooLarge:
        return BodyTooLarge(f"Artifact upload exceeds the gateway's limit of {self.limit} bytes.")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._bounded()

    async def _bounded(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._chunks:
            received += len(chunk)
            if self.limit and received > self.limit:
                self.exceeded = True
                raise self.error()
            if chunk:
                yield chunk


async def _relayed(chunks: AsyncIterable[bytes], request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The store's streamed answer, passed on; one that breaks off (the store died, dropped the connection or
    stalled past its timeout) is logged in one line and raised as `StreamCutShort`, which ends the client's
    connection short of the length without a stack trace (gateway/observability/access.py)."""
    sent = 0
    try:
        async for chunk in chunks:
            sent += len(chunk)
            yield chunk
    except (StoreUnreachable, StoreTimedOut, TimeoutError) as exc:
        log.warning(
            "download cut short: the store's answer broke off",
            extra={"request_id": request.scope.get(REQUEST_ID_KEY, ""), "bytes_sent": sent, "reason": str(exc)},  # type: ignore[call-overload,unused-ignore]
        )
        raise StreamCutShort(str(exc)) from None


async def _unread(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A HEAD's body: none. The store's streamed answer (a download) is let go after its first chunk rather than
    read to its end for nothing; its connection is then not used again (adapters/keepalive.py)."""
    with contextlib.suppress(StoreUnreachable, StoreTimedOut, TimeoutError):  # nothing of it was to be sent
        await anext(chunks, b"")  # started, so that closing it runs its release
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
    yield b""


def _response(result: ForwardResult, request: Request[Any, Any, Any]) -> ASGIResponse:
    # The store's Content-Type stays a header and goes out as the store sent it: given as the media type, a
    # text type that names its charset (`text/plain; charset=utf-8`) would get Litestar's second one. An answer
    # that came without one goes out as bytes of no known type (application/octet-stream: a browser saves it, never
    # renders or sniffs it in the gateway's origin), except an empty one, as MLflow answers an artifact upload
    # (200, no body, no Content-Type), which goes out without: there is nothing to type.
    if result.stream is not None:
        stream = Stream(
            _unread(result.stream) if request.method == "HEAD" else _relayed(result.stream, request),
            status_code=result.status,
            headers=result.headers,
            media_type="application/octet-stream",
        )
        return stream.to_asgi_response(app=None, request=request)
    # The store's bytes go out as they came: no re-encoding on the hot path.
    if result.status < 200 or result.status in (204, 304):  # no body allowed: Litestar's own checks and shape
        return ASGIResponse(
            body=result.body,
            status_code=result.status,
            headers=result.headers,
            media_type="application/json",  # not sent: no body
        )
    return PassThrough(result.status, result.headers, "application/octet-stream" if result.body else None, result.body)


class PassThrough(ASGIResponse):
    """A buffered answer sent as it came, with the head `ASGIResponse` sends for it (names in lower case, the
    media type with Litestar's charset rule, the length) but built directly: Litestar's header object and its
    lookups were about 5% of a forwarded call's CPU."""

    __slots__ = ("_head",)

    def __init__(self, status: int, headers: Mapping[str, str], media_type: str | None, body: bytes) -> None:
        head = []
        names = set()
        for key, value in headers.items():
            name = key.lower()
            names.add(name)
            head.append((name.encode("latin-1"), value.encode("latin-1")))
        if "content-type" not in names and media_type is not None:
            content_type = f"{media_type}; charset=utf-8" if media_type.startswith("text/") else media_type
            head.append((b"content-type", content_type.encode("latin-1")))
        if "content-length" not in names:
            head.append((b"content-length", str(len(body)).encode("latin-1")))
        self._head = head
        self.status_code = status
        self.body = body
        self.content_length = len(body)
        self.background = None
        self.is_head_response = False
        self.encoding = "utf-8"
        self._encoded_cookies = ()

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        return self._head

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self._head})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def server_info_handler(capabilities: StoreCapabilities, forwarder: Forwarder) -> HTTPRouteHandler:
    """`server-info` is answered by the gateway: workspaces are always on; the rest is the store's."""

    async def server_info(request: Request[Any, Any, Any]) -> dict[str, Any]:
        workspace, _ = scan_headers(request.scope["headers"])
        user = request.scope.get("user")
        # Without valid credentials, only the gateway's own capabilities are shown.
        if not isinstance(user, Principal):
            return await capabilities.server_info(None)
        link: WorkspaceLink | None
        if workspace.workspace_id is not None:  # by the one rule (an id the caller may not see: 404)
            link = workspace.link(
                forwarder.links, forwarder.link_named, lambda found: forwarder.guard.enters(user, found)
            )
        else:  # a name nothing serves (`account`, say) shows the gateway's own capabilities, as it always did
            link = forwarder.links.get(workspace.name) if workspace.name else forwarder.links.default
        return await capabilities.server_info(link)

    return route(
        path=SERVER_INFO.paths(),
        http_method=served_methods("GET"),
        opt={"route": SERVER_INFO, "public": True},
        include_in_schema=False,
        name="server-info",
    )(server_info)
