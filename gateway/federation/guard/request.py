"""What a rule reads of a call (`Request`) and what it hands back to the forwarder (`Plan`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import msgspec

from gateway.core.errors import InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.route_table import REGISTERED_MODELS_SET_ALIAS, Action, Body, Resource, RouteSpec
from gateway.federation.canonical import NestedId
from gateway.federation.graphql import GraphqlCall
from gateway.federation.schemas import GUARD_ID_FIELDS, RequestIds

EMPTY_RESULT = b"{}"  # the answer to a search with nothing visible to search

# Called with the store's status and answer before the answer goes out; returns a replacement or None.
After = Callable[[int, bytes], Awaitable[bytes | None]]


@dataclass(slots=True)
class Plan:
    """What the forwarder does differently because of authorization."""

    body: bytes | None = None  # a narrowed request body
    query: str | None = None  # a narrowed query string
    answer: bytes | None = None  # answer without asking the store (nothing visible to search)
    after: After | None = None  # needs the store's answer


@dataclass(slots=True)
class Request:
    """One call as the guard sees it: the canonical body (what the store will receive), query, path, headers."""

    spec: RouteSpec
    principal: Principal
    link: WorkspaceLink
    ids: RequestIds
    body: bytes | None  # canonical
    document: dict[str, Any]  # the body, decoded
    nested: list[NestedId]  # ids below the top level of the body
    query: str
    path_params: dict[str, Any]
    headers: list[tuple[str, str]]
    artifact_path: str | None
    graphql: GraphqlCall | None = None  # a GraphQL body: its one allowed operation (federation/graphql.py)
    # The store's answers for the traces read to decide this call, by id: the forwarder passes them on to the checks
    # before the send (hooks.py `PendingCall.traces`), so a trace is read once per call.
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    _params: dict[str, list[str]] | None = None

    def params(self) -> dict[str, list[str]]:
        """The query string as the store reads it, parsed once per request.

        A call other than GET with a JSON body is read by MLflow 3.17.2 from its body alone
        (`handlers._get_request_message`, and the FastAPI routes' models): its query string names nothing the
        store acts on, so nothing in it counts here. It once did: `issues/search?experiment_id=<own>` with an
        empty body passed as a search of the caller's experiment, and the store, given no experiment, searched
        every issue of the workspace."""
        if self._params is None:
            reads_query = self.spec.method == "GET" or self.spec.body is not Body.JSON
            self._params = query_params(self.query) if reads_query else {}
        return self._params

    def single(self, name: str) -> str:
        """One id from the path, the body or the query; several different values are refused."""
        values: set[str] = set()
        if name in self.path_params:
            values.add(str(self.path_params[name]))
        body_value = getattr(self.ids, name, None)
        if body_value:
            values.add(str(body_value))
        values.update(v for v in self.params().get(name, []) if v)
        if len(values) != 1:
            raise InvalidParameter(f"Exactly one '{name}' is required." if not values else f"'{name}' given twice.")
        return values.pop()

    def experiment_ids(self, *, required: bool) -> list[str]:
        """Every experiment id of the body and the query, in order, once each."""
        found = [*self._body_ids(GUARD_ID_FIELDS.experiments), *self._query_ids(GUARD_ID_FIELDS.experiments)]
        found = list(dict.fromkeys(str(e) for e in found))
        if required and not found:
            raise InvalidParameter("This call must name its experiment (experiment_id).")
        return found

    def run_ids(self) -> list[str]:
        """Every run id of the body and the query; a call naming neither a run nor a logged model is refused."""
        found = [*self._body_ids(GUARD_ID_FIELDS.runs), *self._query_ids(GUARD_ID_FIELDS.runs)]
        found = list(dict.fromkeys(found))
        if not found and not self.ids.model_id:
            raise InvalidParameter("This call must name its run (run_id).")
        return found

    def trace_ids(self) -> list[str]:
        """Every trace id (v2 request ids too) of the body, the path and the query."""
        fields = GUARD_ID_FIELDS.traces
        found = self._body_ids(fields)
        found.extend(str(self.path_params[name]) for name in fields if name in self.path_params)
        found.extend(self._query_ids(fields))
        return list(dict.fromkeys(found))

    def _body_ids(self, fields: tuple[str, ...]) -> list[str]:
        """The ids the body gives in `fields`, in their order: a single id when not empty, a list whole."""
        found: list[str] = []
        for name in fields:
            value = getattr(self.ids, name)
            if isinstance(value, list):
                found.extend(value)
            elif value:
                found.append(value)
        return found

    def _query_ids(self, fields: tuple[str, ...]) -> list[str]:
        """The ids the query gives in `fields`, in their order; an empty value names nothing (`?experiment_id=`),
        as an empty string in the body does not."""
        params = self.params()
        return [v for name in fields for v in params.get(name, []) if v]

    def trace_experiments(self) -> list[str]:
        """Experiments a trace call writes to or searches: body fields, v3 locations, or the OTLP header."""
        found = self.experiment_ids(required=False)
        info = member(member(self.document, "trace"), "trace_info")
        location = member(member(info, "trace_location"), "mlflow_experiment")
        if location.get("experiment_id"):
            found.append(str(location["experiment_id"]))
        locations = self.document.get("locations") or []
        if not isinstance(locations, list):
            raise InvalidParameter("'locations' must be a list.")
        for item in locations:
            if not isinstance(item, dict):
                raise InvalidParameter("Each of 'locations' must be an object.")
            experiment = member(item, "mlflow_experiment")
            if experiment.get("experiment_id"):
                found.append(str(experiment["experiment_id"]))
        found.extend(value for name, value in self.headers if name == "x-mlflow-experiment-id")
        if self.spec.resource is Resource.TRACE and self.spec.action is Action.CREATE and not found:
            raise InvalidParameter("A trace must name the experiment it belongs to.")
        return list(dict.fromkeys(found))

    def with_filter(self, clause: str) -> Plan:
        """AND a clause into the search filter (MLflow filters only know AND, so this cannot be undone)."""
        if self.spec.method == "GET":
            params = dict(self.params())
            current = (params.get("filter") or [""])[0].strip()
            params["filter"] = [f"{current} AND {clause}" if current else clause]
            return Plan(query=urlencode(params, doseq=True))
        document = dict(self.document)
        current = str(document.get("filter") or "").strip()
        document["filter"] = f"{current} AND {clause}" if current else clause
        return Plan(body=msgspec.json.encode(document))

    def with_list(self, name: str, values: list[str]) -> Plan:
        """Replace one list field (of the query for GET, of the body otherwise) with `values`."""
        if self.spec.method == "GET":
            params = dict(self.params())
            params[name] = values
            return Plan(query=urlencode(params, doseq=True))
        document = dict(self.document)
        document[name] = values
        return Plan(body=msgspec.json.encode(document))


def query_params(query: str) -> dict[str, list[str]]:
    """The parameters of a query the guard reads, each name with its values in order.

    A name given more than once with an empty value among them is refused (400): the guard reads an empty value
    as naming nothing and checks the others, while MLflow 3.17.2 reads a single field's first value
    (`request.args.get`), empty or not, and a store given an empty id may act more widely than on any id named.
    `scorers/list?experiment_id=&experiment_id=<own>` was checked as a listing of the caller's experiment, and the
    store, reading no experiment, listed the scorers (a judge's instructions, a scorer's code) of every experiment
    of the workspace."""
    params = parse_qs(query, keep_blank_values=True)
    for name, values in params.items():
        if len(values) > 1 and "" in values:
            raise InvalidParameter(f"Parameter '{name}' is given {len(values)} times, one of them empty; give it once.")
    return params


INT64_MAX = 2**63 - 1


def refuse_out_of_range_numbers(request: Request) -> None:
    """An experiment id or a model version written in digits but past a 64-bit integer is refused (400), whoever
    calls: MLflow 3.17.2 takes `int()` of it and its database cannot hold the result, so every route naming one
    (an experiment's reads and writes, runs/create and search, scorers, label schemas, review queues, issues,
    traces, a model version's reads and writes, an alias set to a version) answered the store's 500 ("Python int
    too large to convert to SQLite INTEGER"; PostgreSQL's own out-of-range error on other stores). Ids that are not
    digits (another store's kind) are the store's to judge. Read from the body's ids and, only when the query names
    one, the query."""
    named: list[object] = [request.ids.experiment_id, *(request.ids.experiment_ids or [])]
    reads_query = request.spec.method == "GET" or request.spec.body is not Body.JSON
    if reads_query and "experiment_id" in request.query:
        parsed = parse_qs(request.query)
        named.extend(parsed.get("experiment_id", []))
        named.extend(parsed.get("experiment_ids", []))
    for value in named:
        if _past_int64(value):
            raise InvalidParameter(f"Invalid experiment ID '{value}': it is past the largest one ({INT64_MAX}).")
    if request.spec.resource is not Resource.MODEL_VERSION and request.spec != REGISTERED_MODELS_SET_ALIAS:
        return
    versions: list[object] = [request.document.get("version")]
    if reads_query and "version" in request.query:
        versions.extend(parse_qs(request.query).get("version", []))
    for value in versions:
        if _past_int64(value):
            raise InvalidParameter(f"Invalid model version '{value}': it is past the largest one ({INT64_MAX}).")


def _past_int64(value: object) -> bool:
    return (
        isinstance(value, str) and value.isascii() and value.isdigit() and (len(value) > 19 or int(value) > INT64_MAX)
    )


def member(node: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested message of the body: absent reads as empty, anything but an object is refused."""
    value = node.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"Field '{key}' must be an object.")
    return value
