"""Registered models of every workspace in the read-only `account` scope, and a model's files by its grant.

A model is named there by its workspace and its name, `<workspace>.<name>` (workspace names never hold a
dot, so the first dot splits them): `mlflow.set_workspace("account")`, then
`mlflow.pyfunc.load_model("models:/team-a.churn/3")` loads version 3 of team-a's `churn`.

- `search_registered_models` and `search_model_versions` ask each workspace in which the caller may read a
  model, as an ordinary guarded call (the guard narrows it to the readable models), workspace after
  workspace in id order, and name every model in the qualified form; the page token says where the next
  page starts. `name` in the filter is the qualified name: only the workspaces it can match are asked,
  each with its own names (`index/filters.py`, `account_name_filter`). A workspace whose store does not
  answer is left out of the page, and named in the answer's `X-Fedgate-Unreachable-Workspaces` header.
- A read of one model or version (`get_registered_model`, `get_model_version`, `get_latest_versions`,
  `get_model_version_by_alias`, `get_model_version_download_uri`) is forwarded to the model's workspace
  with the workspace's own name, so the guard checks the caller's grant on that model exactly as it
  does there; a model the caller may not read is "not found", as a missing one.
- A version's files. In its workspace they lie in an experiment, governed by grants on the experiment,
  which a reader of the model elsewhere need not hold. In the account scope the download URI of a version
  is the gateway's `mlflow-artifacts:/registered-models/<workspace>/<model id>/<version>` (the model's
  immutable id), and every list or download under it checks CAN_READ on that model, then streams the
  files from where the store keeps the version (its own download location), with the store's credentials.
  A revoked grant stops the next file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode

import msgspec

from gateway.authz.decide import Authorizer, Everything
from gateway.authz.levels import Level, model_object
from gateway.core.downloads import download_headers
from gateway.core.errors import (
    GatewayError,
    InvalidParameter,
    ResourceNotFound,
    StoreTimeout,
    StoreUnavailable,
    hidden,
)
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.numbers import is_number, whole
from gateway.core.paths import canonical_artifact_path
from gateway.core.ports import Store, StoreTimedOut, StoreUnreachable
from gateway.core.route_table import RouteSpec, declared
from gateway.core.workspace_headers import WorkspaceHeaders
from gateway.federation.call import ACCOUNT_SCOPE, ForwardCall, ForwardResult
from gateway.index.filters import account_name_filter

MODELS_GET = declared("GET /mlflow/registered-models/get")
MODELS_SEARCH = declared("GET /mlflow/registered-models/search")
LATEST_POST = declared("POST /mlflow/registered-models/get-latest-versions")
LATEST_GET = declared("GET /mlflow/registered-models/get-latest-versions")
ALIAS_GET = declared("GET /mlflow/registered-models/alias")
VERSIONS_GET = declared("GET /mlflow/model-versions/get")
VERSIONS_SEARCH = declared("GET /mlflow/model-versions/search")
DOWNLOAD_URI = declared("GET /mlflow/model-versions/get-download-uri")
MODEL_READS = frozenset(
    spec.name
    for spec in (
        MODELS_GET,
        MODELS_SEARCH,
        LATEST_POST,
        LATEST_GET,
        ALIAS_GET,
        VERSIONS_GET,
        VERSIONS_SEARCH,
        DOWNLOAD_URI,
    )
)

# `mlflow-artifacts:/registered-models/<workspace>/<model id>/<version>/...` in the account scope.
FILES_ROOT = "registered-models"


@dataclass(frozen=True, slots=True)
class _Searched:
    """What one of the registry's searches answers, and MLflow's page sizes of it."""

    field: str  # the answer's list
    one: str  # one item's key in `_qualify`
    default: int
    maximum: int


MODELS = _Searched("registered_models", "registered_model", 100, 1000)
VERSIONS = _Searched("model_versions", "model_version", 10_000, 200_000)
# Workspaces whose store did not answer a search: their models are missing from that page.
UNREACHABLE_HEADER = "X-Fedgate-Unreachable-Workspaces"
JSON = {"Content-Type": "application/json"}
RETURNED = (
    "content-type",
    "content-disposition",
    "content-encoding",
    "etag",
    "last-modified",
    "x-content-type-options",
)

Forward = Callable[[ForwardCall], Awaitable[ForwardResult]]


class ModelNames(Protocol):
    """The gateway's immutable ids of registered models (`AccessService` in the app)."""

    async def model_id(self, link: WorkspaceLink, name: str, *, adopt: bool) -> str | None: ...

    async def model_names(self, link: WorkspaceLink, model_ids: set[str]) -> list[str]: ...


def qualified(link: WorkspaceLink, name: str) -> str:
    return f"{link.name}.{name}"


def missing_model(name: str) -> str:
    return f"Registered Model with name={name} not found"


class _Token(msgspec.Struct):
    w: int  # the workspace the page goes on in
    t: str  # the store's token there ("" from its start)
    s: str  # the query's shape: a token is good only for the query it came from


class AccountModels:
    """The registry's reads in the `account` scope (called by `AccountScope`)."""

    def __init__(
        self,
        links: LinkTable,
        authorizer: Authorizer,
        forward: Forward,
        models: ModelNames,
        stores: Mapping[str, Store],
    ) -> None:
        self.links = links
        self.authorizer = authorizer
        self.forward = forward
        self.models = models
        self.stores = stores

    def serves(self, spec: RouteSpec) -> bool:
        return spec.name in MODEL_READS

    async def serve(self, call: ForwardCall) -> ForwardResult:
        if call.spec == MODELS_SEARCH:
            return await self.search(call, MODELS)
        if call.spec == VERSIONS_SEARCH:
            return await self.search(call, VERSIONS)
        version_text = ""
        if call.spec == LATEST_POST:
            document = _document(call.body)
            link, name = self.split(str(document.get("name") or ""))
            document["name"] = name
            inner = _inner(call, link, body=msgspec.json.encode(document))
        else:
            params = parse_qs(call.query, keep_blank_values=True)
            link, name = self.split((params.get("name") or [""])[0])
            params["name"] = [name]
            version_text = (params.get("version") or [""])[0]
            # ASCII digits only (core/numbers.py): the store's `int` also takes fullwidth digits.
            if call.spec == DOWNLOAD_URI and version_text and not is_number(version_text):
                raise InvalidParameter(f"Invalid model version '{version_text[:40]}': a version is a whole number.")
            inner = _inner(call, link, query=urlencode(params, doseq=True))
        result = await self._forward_hidden(inner, missing_model(qualified(link, name)))
        body = await _read(result)
        if result.status != 200:
            return ForwardResult(result.status, _headers(result), ACCOUNT_SCOPE, body=body)
        document = msgspec.json.decode(body)
        if call.spec == DOWNLOAD_URI:
            model_id = await self.models.model_id(link, name, adopt=False)
            if model_id is None:  # read through the gateway, so it has an id; gone meanwhile
                raise ResourceNotFound(missing_model(qualified(link, name)))
            version = str(whole(version_text) or 0)
            uri = f"mlflow-artifacts:/{FILES_ROOT}/{link.name}/{model_id}/{version}"
            return ForwardResult(200, dict(JSON), ACCOUNT_SCOPE, body=msgspec.json.encode({"artifact_uri": uri}))
        _qualify(document, link)
        return ForwardResult(200, dict(JSON), ACCOUNT_SCOPE, body=msgspec.json.encode(document))

    def split(self, name: str) -> tuple[WorkspaceLink, str]:
        """`<workspace>.<name>` → the workspace's link and the model's name there; 404 when it names none."""
        workspace, dot, rest = name.partition(".")
        if not name:
            raise InvalidParameter("Missing value for required parameter 'name'.")
        if not dot or not rest:
            raise InvalidParameter(
                f"In the account scope a registered model is named '<workspace>.<name>' (e.g. 'team-a.churn'), "
                f"not '{name[:200]}'."
            )
        link = self.links.get(workspace)
        if link is None:  # one the caller may not enter is refused alike by the forwarded call
            raise ResourceNotFound(missing_model(name))
        return link, rest

    # -- search -----------------------------------------------------------------------------------------

    async def search(self, call: ForwardCall, searched: _Searched) -> ForwardResult:
        params = parse_qs(call.query, keep_blank_values=True)
        filter_string = (params.get("filter") or [""])[0]
        names = account_name_filter(filter_string)
        order_by = params.get("order_by", [])
        wanted = _max_results((params.get("max_results") or [""])[0], searched)
        shape = hashlib.sha256(msgspec.json.encode([filter_string, order_by])).hexdigest()[:16]
        start = _decode_token((params.get("page_token") or [""])[0], shape)
        readable = [
            (link, asked)
            for link in sorted(self.links.all(), key=lambda link: link.workspace_id)
            if (start is None or link.workspace_id >= start.w)
            and (asked := names.for_workspace(link.name)) is not None
            and self._reads_models(call, link)
        ]
        found: list[Any] = []
        next_token: _Token | None = None
        unreachable: list[str] = []
        for index, (link, asked) in enumerate(readable):
            token = start.t if start is not None and link.workspace_id == start.w else ""
            while len(found) < wanted:
                query: dict[str, Any] = {"max_results": str(wanted - len(found))}
                if asked:
                    query["filter"] = asked
                if order_by:
                    query["order_by"] = order_by
                if token:
                    query["page_token"] = token
                inner = _inner(call, link, query=urlencode(query, doseq=True))
                try:
                    result = await self.forward(inner)
                except (StoreUnavailable, StoreTimeout):
                    unreachable.append(link.name)  # the others still answer; the header says who did not
                    token = ""
                    break
                body = await _read(result)
                if result.status != 200:
                    return ForwardResult(result.status, _headers(result), ACCOUNT_SCOPE, body=body)
                page = msgspec.json.decode(body)
                for item in page.get(searched.field) or []:
                    _qualify({searched.one: item}, link)
                    found.append(item)
                token = str(page.get("next_page_token") or "")
                if not token:
                    break
            if len(found) >= wanted:
                if token:
                    next_token = _Token(link.workspace_id, token, shape)
                elif index + 1 < len(readable):
                    next_token = _Token(readable[index + 1][0].workspace_id, "", shape)
                break
        answer: dict[str, Any] = {searched.field: found}
        if next_token is not None:
            answer["next_page_token"] = base64.urlsafe_b64encode(msgspec.json.encode(next_token)).decode()
        headers = dict(JSON)
        if unreachable:
            headers[UNREACHABLE_HEADER] = ", ".join(unreachable)
        return ForwardResult(200, headers, ACCOUNT_SCOPE, body=msgspec.json.encode(answer))

    def _reads_models(self, call: ForwardCall, link: WorkspaceLink) -> bool:
        readable = self.authorizer.readable_models(call.principal, link.workspace_id)
        return isinstance(readable, Everything) or bool(readable)

    # -- a version's files ----------------------------------------------------------------------------

    @staticmethod
    def governs(path: str) -> bool:
        return path == FILES_ROOT or path.startswith(FILES_ROOT + "/")

    async def files(self, call: ForwardCall, path: str) -> ForwardResult:
        """A list or download under `registered-models/<workspace>/<model id>/<version>/`, by the model's grant."""
        parts = path.split("/")
        if len(parts) < 4 or not is_number(parts[3]):
            raise InvalidParameter(
                f"Invalid artifact path '{path[:200]}': files of a registered model are under "
                f"{FILES_ROOT}/<workspace>/<model id>/<version>/ (what get_model_version_download_uri answers)."
            )
        workspace, model_id, version, rest = parts[1], parts[2], str(int(parts[3])), "/".join(parts[4:])
        missing = f"Artifact path '{path}' not found"
        link = self.links.get(workspace)
        if link is None:
            raise ResourceNotFound(missing)
        obj = model_object(link.workspace_id, model_id)
        self.authorizer.require(call.principal, link.workspace_id, obj, Level.CAN_READ, missing)
        names = await self.models.model_names(link, {model_id})
        if not names:
            raise ResourceNotFound(missing)
        root = await self._version_root(link, names[0], version, missing)
        target = f"{root}/{rest}" if rest else root
        store = self.stores[link.store]
        if "artifact_path" in call.path_params:
            route, query = "/api/2.0/mlflow-artifacts/artifacts/" + quote(target, safe="/"), ""
        else:
            route, query = "/api/2.0/mlflow-artifacts/artifacts", urlencode({"path": target})
        try:
            response = await store.request(
                "GET", route, query=query, headers=[], workspace=link.upstream_workspace, idempotent=True
            )
        except (StoreUnreachable, StoreTimedOut) as exc:
            raise StoreUnavailable(f"The store of workspace '{link.name}' is unreachable; try again shortly.") from exc
        headers = {k: v for k, v in response.headers.items() if k.lower() in RETURNED}
        if response.status != 200:
            await response.read()
            raise ResourceNotFound(missing)
        if "artifact_path" in call.path_params:  # a file, not a list: sent as every download route sends one
            headers = download_headers(headers)
        if response.content_length is not None:
            headers["Content-Length"] = str(response.content_length)
        return ForwardResult(200, headers, ACCOUNT_SCOPE, stream=response.iter_chunks())

    async def _version_root(self, link: WorkspaceLink, name: str, version: str, missing: str) -> str:
        """The store's path (under its proxied artifacts) of the version's files."""
        store = self.stores[link.store]
        query = urlencode({"name": name, "version": version})
        try:
            response = await store.request(
                "GET",
                "/api/2.0/mlflow/model-versions/get-download-uri",
                query=query,
                headers=[],
                workspace=link.upstream_workspace,
                idempotent=True,
            )
            body = await response.read()
        except (StoreUnreachable, StoreTimedOut) as exc:
            raise StoreUnavailable(f"The store of workspace '{link.name}' is unreachable; try again shortly.") from exc
        if response.status == 404:
            raise ResourceNotFound(missing)
        if response.status != 200:
            raise GatewayError(f"The store of workspace '{link.name}' answered {response.status}.", status=502)
        uri = str(msgspec.json.decode(body).get("artifact_uri") or "")
        return store_path(uri, link)

    async def _forward_hidden(self, call: ForwardCall, missing: str) -> ForwardResult:
        try:
            return await self.forward(call)
        except ResourceNotFound as exc:
            raise (hidden(missing) if exc.denied else ResourceNotFound(missing)) from None


def store_path(uri: str, link: WorkspaceLink) -> str:
    """The path under the store's proxied artifacts of a download URI (`mlflow-artifacts:/...`)."""
    if not uri.startswith("mlflow-artifacts:/"):
        raise InvalidParameter(
            f"The files of this version are not in workspace '{link.name}''s proxied artifacts "
            f"({uri.split(':', 1)[0]}:); load it from its workspace."
        )
    return canonical_artifact_path(uri[len("mlflow-artifacts:") :].lstrip("/"))


def _qualify(document: dict[str, Any], link: WorkspaceLink) -> None:
    """Every model name of a registry answer in the account form."""
    model = document.get("registered_model")
    if isinstance(model, dict):
        if "name" in model:
            model["name"] = qualified(link, str(model["name"]))
        for version in model.get("latest_versions") or []:
            if isinstance(version, dict) and "name" in version:
                version["name"] = qualified(link, str(version["name"]))
    versions = list(document.get("model_versions") or [])
    if isinstance(document.get("model_version"), dict):
        versions.append(document["model_version"])
    for version in versions:
        if isinstance(version, dict) and "name" in version:
            version["name"] = qualified(link, str(version["name"]))


def _inner(
    call: ForwardCall, link: WorkspaceLink, *, query: str | None = None, body: bytes | None = None
) -> ForwardCall:
    return ForwardCall(
        spec=call.spec,
        principal=call.principal,
        workspace=WorkspaceHeaders(name=link.name),
        path_params=call.path_params,
        query=call.query if query is None else query,
        headers=[(k, v) for k, v in call.headers if k.lower() != "content-length"],
        body=call.body if body is None else body,
        request_id=call.request_id,
    )


def _document(body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) and body.strip() else b"{}"
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidParameter(f"Invalid request body: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidParameter("Invalid request body: a JSON object is expected.")
    return document


def _max_results(raw: str, searched: _Searched) -> int:
    if not raw:
        return searched.default
    if not is_number(raw) or not 1 <= int(raw) <= searched.maximum:
        raise InvalidParameter(f"Invalid value {raw[:40]!r} for parameter 'max_results': 1 to {searched.maximum}.")
    return int(raw)


def _decode_token(raw: str, shape: str) -> _Token | None:
    if not raw:
        return None
    try:
        token = msgspec.json.decode(base64.urlsafe_b64decode(raw.encode()), type=_Token)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidParameter("Invalid page_token.") from None
    if token.s != shape:
        raise InvalidParameter("This page_token belongs to another search (filter or order_by differ).")
    return token


def _headers(result: ForwardResult) -> dict[str, str]:
    return {k: v for k, v in result.headers.items() if k.lower() != "content-length"}


async def _read(result: ForwardResult) -> bytes:
    if result.stream is None:
        return result.body
    return b"".join([chunk async for chunk in result.stream])
