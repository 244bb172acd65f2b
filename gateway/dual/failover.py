"""Reads of a dual workspace served from the central copy while the workspace's own store is down.

Only the workspace's own central copies are ever answered, for every failover route:

- Ids in the request are translated to the central copies' ids through the workspace's id map. An
  id with no copy of this workspace's answers 404 as the store would (`No Experiment with id=...
  exists`, `Run with id=... not found`), whatever the central store holds under that number.
- Searches are narrowed before they are sent, so pages stay full: runs/search to the copies of the
  experiments asked for; experiments/search to the workspace's name prefix on a central store
  without workspaces (on one with workspaces the copies live in a namespace of the workspace's
  own). Ids and names compared in a filter are translated (an id without a copy becomes one no
  object has), so a filter the guard narrowed by the workspace's own ids keeps its meaning.
- A run filter comparing `attributes.artifact_uri` answers 503 with Retry-After, as a write does: the
  copies' URIs are the central store's (other ids, another root), and the URIs the workspace shows are
  made back from ids only in answers, so no rewrite of a URI or a pattern compares what the workspace
  shows. It is answered once the store is back, rather than wrongly (an empty page) now.
- Answers are checked after: a search drops any experiment or run that is not in the id map
  (something written to the central store around the gateway), a get of one answers 404. Ids in
  the answer are translated back, names lose the prefix and provenance tags are hidden, so the
  client sees what it would have seen from its own store.

The answer says it came from the central store: `X-Fedgate-Served-By: central`. Writes are not
failed over: they answer 503 with Retry-After, and the client's retry lands once the store is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.errors import InvalidParameter, ResourceNotFound, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.ports import Store, StoreResponse
from gateway.core.reserved import SOURCE_EXPERIMENT_TAG, SOURCE_RUN_TAG, SOURCE_WORKSPACE_TAG
from gateway.core.route_table import (
    EXPERIMENTS_GET,
    EXPERIMENTS_GET_BY_NAME,
    EXPERIMENTS_SEARCH,
    EXPERIMENTS_SEARCH_GET,
    RUNS_GET,
    RUNS_SEARCH,
    Body,
    RouteSpec,
    Trait,
    having,
)
from gateway.db.models import IdMapRow
from gateway.federation.hooks import Outgoing, Sender, Sent
from gateway.federation.mlflow_requests import refuse_partial_read
from gateway.index.filters import (
    EXPERIMENT_ENTITIES,
    RUN_ENTITIES,
    Entity,
    Token,
    _clauses,
    _split,
    _string,
    parse_experiment_filter,
    parse_run_filter,
)
from gateway.stores.client import Transient, central_store

SERVED_BY = "X-Fedgate-Served-By"
PROVENANCE_TAGS = frozenset({SOURCE_RUN_TAG, SOURCE_WORKSPACE_TAG, SOURCE_EXPERIMENT_TAG})
EXPERIMENT_SEARCH = frozenset({EXPERIMENTS_SEARCH.name, EXPERIMENTS_SEARCH_GET.name})
RUN_SEARCH = RUNS_SEARCH.name
EXPERIMENT_GETS = frozenset({EXPERIMENTS_GET.name, EXPERIMENTS_GET_BY_NAME.name})
RUN_GET = RUNS_GET.name
# The routes served from the central copy (the FAILOVER trait of the route table).
FAILOVER_ROUTES = frozenset(spec.name for spec in having(Trait.FAILOVER))
ID_FIELDS = {"experiment_id": "experiment", "run_id": "run", "run_uuid": "run"}
# Ids no experiment or run has: what a filter compares with in place of an id without a copy here.
NO_EXPERIMENT = "-1"
NO_RUN = "0" * 32

Translate = Callable[[bytes], Awaitable[bytes]]


class _Nothing(Exception):
    """The request can match none of the workspace's copies: answered empty without asking the store."""


class IdTranslator:
    """Both directions of one workspace's id map."""

    def __init__(self, session: AsyncSession, link: WorkspaceLink) -> None:
        self.session = session
        self.link = link

    async def row(self, kind: str, primary_id: str) -> IdMapRow | None:
        result = await self.session.execute(
            select(IdMapRow).where(
                IdMapRow.workspace_id == self.link.workspace_id,
                IdMapRow.kind == kind,
                IdMapRow.primary_id == primary_id,
            )
        )
        return result.scalar_one_or_none()

    async def central(self, kind: str, primary_id: str) -> str | None:
        found = await self.row(kind, primary_id)
        return found.central_id if found is not None else None

    async def to_central(self, kind: str, primary_id: str) -> str:
        """The copy's id, or 404 in the words of the store (the id has no copy of this workspace's)."""
        central = await self.central(kind, primary_id)
        if central is None:
            raise ResourceNotFound(_missing(kind, primary_id))
        return central

    async def centrals(self, kind: str, primary_ids: set[str]) -> dict[str, str]:
        """primary → central id, for those of `primary_ids` this workspace has a copy of."""
        if not primary_ids:
            return {}
        result = await self.session.execute(
            select(IdMapRow.primary_id, IdMapRow.central_id).where(
                IdMapRow.workspace_id == self.link.workspace_id,
                IdMapRow.kind == kind,
                IdMapRow.primary_id.in_(primary_ids),
            )
        )
        return {primary: central for primary, central in result.all()}

    async def to_primary(self, kind: str, central_ids: set[str]) -> dict[str, str]:
        if not central_ids:
            return {}
        result = await self.session.execute(
            select(IdMapRow.central_id, IdMapRow.primary_id).where(
                IdMapRow.workspace_id == self.link.workspace_id,
                IdMapRow.kind == kind,
                IdMapRow.central_id.in_(central_ids),
            )
        )
        return {central: primary for central, primary in result.all()}


class EmptyAnswer:
    """A 200 with an empty JSON object (MLflow's empty search page), answered by the gateway itself."""

    status = 200
    headers: Mapping[str, str] = {"Content-Type": "application/json"}
    content_length: int | None = 2

    async def read(self) -> bytes:
        return b"{}"

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield b"{}"

    def release(self) -> None:
        return None


class Failover:
    def __init__(self, stores: Mapping[str, Store], sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.stores = stores
        self._sessionmaker = sessionmaker

    @staticmethod
    def serves(spec: RouteSpec, link: WorkspaceLink) -> bool:
        return link.mirror is not None and spec.failover

    async def request(
        self,
        spec: RouteSpec,
        link: WorkspaceLink,
        path: str,
        query: str,
        body: bytes | None,
        artifact_path: str | None,
    ) -> tuple[StoreResponse, Translate]:
        """Send the read to the central store; (response, function translating its JSON body back)."""
        missing: list[str] = []  # what the store would say if the object asked for were not there

        async def translate(raw: bytes) -> bytes:
            return await self.translate_back(spec, link, raw, missing[0] if missing else "")

        sent_query, sent_body = query, body
        async with self._sessionmaker() as session:
            ids = IdTranslator(session, link)
            try:
                query = await self._query(spec, link, ids, query, artifact_path, missing)
                if body and body[:1] == b"{":
                    body = await self._body(spec, link, ids, body)
                if "{artifact_path:path}" in spec.path and artifact_path is not None:
                    central_path = await self._artifact_path(ids, artifact_path)
                    path = "/api/2.0/mlflow-artifacts/artifacts/" + quote(central_path)
            except _Nothing:
                return EmptyAnswer(), translate
        if query != sent_query or body != sent_body:
            # What failover wrote (the name prefix ANDed into a filter, the copies' ids) must be read by the central
            # store: MLflow stops parsing at the first value it cannot parse and acts on the fields before it.
            refuse_partial_read(spec, body, query)
        try:
            response = await central_store(self.stores, link).send(
                spec.method,
                path,
                query=query,
                headers=[("content-type", "application/json")] if body else [],
                body=body,
                idempotent=True,
            )
        except Transient as exc:
            raise StoreUnavailable(
                f"Neither the store of workspace '{link.name}' nor the central store can be reached."
            ) from exc
        return response, translate

    async def _query(
        self,
        spec: RouteSpec,
        link: WorkspaceLink,
        ids: IdTranslator,
        query: str,
        artifact_path: str | None,
        missing: list[str],
    ) -> str:
        translated = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in ID_FIELDS:
                missing.append(_missing(ID_FIELDS[name], value))
                value = await ids.to_central(ID_FIELDS[name], value)
            elif name == "path" and artifact_path is not None:
                value = await self._artifact_path(ids, value)
            elif name == "experiment_name":
                missing.append(f"Could not find experiment with name '{value}'")
                value = link.mirror_prefix + value
            elif name == "filter" and spec.name in EXPERIMENT_SEARCH:
                continue  # rewritten below, narrowed
            translated.append((name, value))
        if spec.method == "GET" and spec.name in EXPERIMENT_SEARCH:
            asked = next((v for n, v in parse_qsl(query, keep_blank_values=True) if n == "filter"), "")
            if narrowed := await self._experiment_filter(link, ids, asked):
                translated.append(("filter", narrowed))
        return urlencode(translated)

    async def _body(self, spec: RouteSpec, link: WorkspaceLink, ids: IdTranslator, body: bytes) -> bytes:
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidParameter(f"Malformed JSON request body: {exc}") from exc
        if not isinstance(document, dict):
            raise InvalidParameter("The request body must be a JSON object.")
        if spec.name == RUN_SEARCH:
            asked = document.get("experiment_ids") or []
            if not isinstance(asked, list):
                raise InvalidParameter("experiment_ids must be a list of experiment ids.")
            # Experiments without a copy of this workspace's hold none of its runs.
            kept = [central for e in asked if (central := await ids.central("experiment", str(e))) is not None]
            if not kept:
                raise _Nothing
            document["experiment_ids"] = kept
            if document.get("filter"):
                refuse_artifact_uri_filter(link, str(document["filter"]))
                document["filter"] = await self._run_filter(ids, str(document["filter"]))
        elif spec.name in EXPERIMENT_SEARCH:
            narrowed = await self._experiment_filter(link, ids, str(document.get("filter") or ""))
            if narrowed:
                document["filter"] = narrowed
        for name, kind in ID_FIELDS.items():
            if name in document:
                document[name] = await ids.to_central(kind, str(document[name]))
        return msgspec.json.encode(document)

    async def _experiment_filter(self, link: WorkspaceLink, ids: IdTranslator, text: str) -> str:
        parse_experiment_filter(text)  # refused here as the store would refuse it
        central = await ids.centrals("experiment", filter_ids(text, EXPERIMENT_ENTITIES, "experiment_id"))
        return central_experiment_filter(link, text, central)

    async def _run_filter(self, ids: IdTranslator, text: str) -> str:
        parse_run_filter(text)
        return central_run_filter(text, await ids.centrals("run", filter_ids(text, RUN_ENTITIES, "run_id")))

    async def _artifact_path(self, ids: IdTranslator, client_path: str) -> str:
        """`[workspaces/<ws>/]<exp>/<run>/artifacts/<rest>` → the same file under the central run's root."""
        parts = [p for p in client_path.split("/") if p]
        if parts and parts[0] == "workspaces":
            parts = parts[2:]
        if len(parts) < 3 or parts[2] != "artifacts":
            raise ResourceNotFound("Only run artifacts are served from the central copy while the store is down.")
        row = await ids.row("run", parts[1])
        if row is None:
            raise ResourceNotFound(_missing("run", parts[1]))
        root = row.central_artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        return "/".join([root, *parts[3:]])

    async def translate_back(self, spec: RouteSpec, link: WorkspaceLink, raw: bytes, missing: str = "") -> bytes:
        if raw[:1] != b"{":
            return raw
        document = msgspec.json.decode(raw)
        if missing and document.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
            # The store's words would name the central copy's id or prefixed name.
            document["message"] = missing
            return msgspec.json.encode(document)
        async with self._sessionmaker() as session:
            ids = IdTranslator(session, link)
            maps = {kind: await ids.to_primary(kind, values) for kind, values in ids_in_answer(document).items()}
        return msgspec.json.encode(own_answer(spec, link, document, maps, missing))


# -- the translation itself, given the id map's rows it needs -------------------------------------------


def filter_ids(text: str, entities: dict[str, Entity], key: str) -> set[str]:
    """The ids a filter compares attribute `key` (experiment_id, run_id) with."""
    found: set[str] = set()
    for clause in _clauses(text):
        entity, name = _split(clause.identifier, entities)
        if entity is Entity.ATTRIBUTE and name == key and clause.value is not None:
            values = clause.value if isinstance(clause.value, tuple) else (clause.value,)
            found.update(_string(token, key) for token in values)
    return found


def refuse_artifact_uri_filter(link: WorkspaceLink, text: str) -> None:
    """503 (with Retry-After) for a run filter comparing a run's artifact URI: not answerable from the copies."""
    if any(c.entity is Entity.ATTRIBUTE and c.key == "artifact_uri" for c in parse_run_filter(text)):
        raise StoreUnavailable(
            f"The store of workspace '{link.name}' cannot be reached. While it is down its runs are read from their "
            "central copies, whose artifact URIs are not the ones this workspace shows: a filter on "
            "attributes.artifact_uri is answered once the store is back."
        )


def central_experiment_filter(link: WorkspaceLink, text: str, central: Mapping[str, str]) -> str:
    """The client's filter with ids (`central`: primary → central) and names of the central copies, AND the
    workspace's name prefix. An id without a copy becomes one no experiment has."""
    edits: list[tuple[Token, str]] = []
    for clause in _clauses(text):
        entity, key = _split(clause.identifier, EXPERIMENT_ENTITIES)
        if entity is not Entity.ATTRIBUTE or clause.value is None:
            continue
        values = clause.value if isinstance(clause.value, tuple) else (clause.value,)
        if key == "experiment_id":
            for token in values:
                edits.append((token, f"'{central.get(_string(token, 'experiment_id'), NO_EXPERIMENT)}'"))
        elif key == "name" and link.mirror_prefix:
            # Workspace names are [a-z0-9-]: the prefix needs no escaping in any quote or LIKE pattern.
            edits.extend((token, token.text[0] + link.mirror_prefix + token.text[1:]) for token in values)
    rewritten = _apply(text, edits).strip()
    if not link.mirror_prefix:
        return rewritten
    own = f"name LIKE '{link.mirror_prefix}%'"
    return f"{rewritten} AND {own}" if rewritten else own


def central_run_filter(text: str, central: Mapping[str, str]) -> str:
    """The client's run filter with the central copies' run ids; an id without a copy becomes one no run has."""
    edits: list[tuple[Token, str]] = []
    for clause in _clauses(text):
        entity, key = _split(clause.identifier, RUN_ENTITIES)
        if entity is not Entity.ATTRIBUTE or key != "run_id" or clause.value is None:
            continue
        values = clause.value if isinstance(clause.value, tuple) else (clause.value,)
        edits.extend((token, f"'{central.get(_string(token, 'run_id'), NO_RUN)}'") for token in values)
    return _apply(text, edits)


def ids_in_answer(document: Any) -> dict[str, set[str]]:
    """The experiment and run ids an answer of the central store names, by kind."""
    found: dict[str, set[str]] = {"experiment": set(), "run": set()}
    _collect(document, found)
    return found


def own_answer(
    spec: RouteSpec, link: WorkspaceLink, document: dict[str, Any], maps: dict[str, dict[str, str]], missing: str = ""
) -> Any:
    """A central answer as the workspace's own store would give it.

    `maps` (kind → central id → the workspace's id) holds this workspace's copies among `ids_in_answer`:
    anything else is dropped from a page, or answered 404 (`missing`, the store's words) for a get.
    Ids are translated back, names lose the workspace's prefix, artifact locations are the workspace's
    and provenance tags are hidden.
    """
    _keep_own(spec, document, maps, missing)
    return _rewrite(document, maps, link)


class FailoverSender:
    """The send step for dual workspaces: a failover read whose store is unreachable goes to the central copy.

    Wraps the plain sender (federation/service.py's StoreSender). The answer says where it came from
    (`X-Fedgate-Served-By: central`) and its JSON body is translated back (artifact bytes are not).
    """

    def __init__(self, inner: Sender, failover: Failover) -> None:
        self._inner = inner
        self._failover = failover

    async def send(self, outgoing: Outgoing) -> Sent:
        try:
            return await self._inner.send(outgoing)
        except StoreUnavailable:
            spec, link = outgoing.spec, outgoing.link
            if not self._failover.serves(spec, link):
                raise
            body = outgoing.body if isinstance(outgoing.body, bytes) else None
            response, translate = await self._failover.request(
                spec, link, outgoing.path, outgoing.query, body, outgoing.artifact_path
            )
            return Sent(response, {SERVED_BY: "central"}, None if spec.body is Body.DOWNLOAD else translate)


def _keep_own(spec: RouteSpec, document: dict[str, Any], maps: dict[str, dict[str, str]], missing: str) -> None:
    """Drop from a page, or answer 404 for, what is not one of this workspace's copies."""
    if spec.name in EXPERIMENT_SEARCH:
        own = [e for e in document.get("experiments") or [] if str(e.get("experiment_id")) in maps["experiment"]]
        document.pop("experiments", None)
        if own:
            document["experiments"] = own
    elif spec.name == RUN_SEARCH:
        own = [r for r in document.get("runs") or [] if str((r.get("info") or {}).get("run_id")) in maps["run"]]
        document.pop("runs", None)
        if own:
            document["runs"] = own
    elif spec.name in EXPERIMENT_GETS:
        experiment = document.get("experiment") or {}
        if str(experiment.get("experiment_id")) not in maps["experiment"]:
            raise ResourceNotFound(missing or "Experiment not found")
    elif spec.name == RUN_GET:
        info = (document.get("run") or {}).get("info") or {}
        if str(info.get("run_id")) not in maps["run"]:
            raise ResourceNotFound(missing or "Run not found")


def _missing(kind: str, primary_id: str) -> str:
    if kind == "experiment":
        return f"No Experiment with id={primary_id} exists"
    return f"Run with id={primary_id} not found"


def _apply(text: str, edits: list[tuple[Token, str]]) -> str:
    """Replace tokens of a filter by position, leaving every other character as the client wrote it."""
    for token, replacement in sorted(edits, key=lambda edit: edit[0].position, reverse=True):
        text = text[: token.position] + replacement + text[token.position + len(token.text) :]
    return text


def _collect(node: Any, found: dict[str, set[str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_FIELDS and isinstance(value, str):
                found[ID_FIELDS[key]].add(value)
            else:
                _collect(value, found)
    elif isinstance(node, list):
        for item in node:
            _collect(item, found)


def _rewrite(node: Any, maps: dict[str, dict[str, str]], link: WorkspaceLink, key: str = "") -> Any:
    if isinstance(node, dict):
        result = {k: _rewrite(v, maps, link, k) for k, v in node.items()}
        prefix = f"workspaces/{link.name}/" if link.upstream_workspace else ""
        if "run_id" in result and "experiment_id" in result and "artifact_uri" in result:
            run_dir = f"{result['experiment_id']}/{result['run_id']}"
            result["artifact_uri"] = f"mlflow-artifacts:/{prefix}{run_dir}/artifacts"
        is_experiment = key == "experiment" or ("experiment_id" in result and "artifact_location" in result)
        if is_experiment and isinstance(result.get("name"), str):
            result["name"] = result["name"].removeprefix(link.mirror_prefix)
        if is_experiment and "artifact_location" in result and "experiment_id" in result:
            # Where the workspace's own store keeps it, not the central copy's location.
            result["artifact_location"] = f"mlflow-artifacts:/{prefix}{result['experiment_id']}"
        return result
    if isinstance(node, list):
        kept = [item for item in node if not (isinstance(item, dict) and item.get("key") in PROVENANCE_TAGS)]
        return [_rewrite(item, maps, link, key) for item in kept]
    if isinstance(node, str) and key in ID_FIELDS:
        return maps[ID_FIELDS[key]].get(node, node)
    return node
