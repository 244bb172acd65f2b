"""The read-only `account` scope: one workspace name under which a caller sees every workspace it may read.

`mlflow.set_workspace("account")` sends `X-MLFLOW-WORKSPACE: account`. Searches (experiments and
runs) are answered from the index, across every workspace, narrowed to what the caller may read.
Experiment ids there are `<workspace_id>-<experiment_id>` (stores reuse ids, so the account scope
always names both); run ids are unchanged. Reads of one object (an experiment, a run, its metric
history, its artifacts, its model versions) are forwarded as ordinary calls to the workspace the object
lives in, so the guard checks them exactly as it does elsewhere, and experiment ids in the answer are put
in the account form. The web UI's GraphQL reads (federation/graphql.py's allow-list: one experiment, one
run, runs' metric histories, a search of runs) are sent the same way, each to the workspace its ids name,
with the input in that workspace's ids; an object that is missing or hidden there is answered as GraphQL
answers a missing one, named by its account id. Every write is refused: the account scope is for looking,
not for logging.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz.decide import Authorizer, Everything
from gateway.core.errors import GatewayError, GraphqlNotFound, InvalidParameter, ResourceNotFound, hidden
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.numbers import whole
from gateway.core.paths import artifact_run_id, artifact_workspace
from gateway.core.principal import Principal
from gateway.core.route_table import (
    ARTIFACTS_LIST,
    EXPERIMENTS_GET,
    EXPERIMENTS_GET_BY_NAME,
    EXPERIMENTS_SEARCH,
    EXPERIMENTS_SEARCH_GET,
    GRAPHQL,
    METRIC_HISTORY,
    METRIC_HISTORY_BULK,
    PRESIGNED_DOWNLOAD_URL,
    RUNS_GET,
    RUNS_SEARCH,
    Action,
    Resource,
    declared,
)
from gateway.core.workspace_headers import WorkspaceHeaders
from gateway.federation.call import ACCOUNT_SCOPE, ForwardCall, ForwardResult
from gateway.federation.graphql import GraphqlCall, canonical_graphql
from gateway.federation.locate import RunDirectory
from gateway.federation.service import Forwarder
from gateway.index.account_models import AccountModels
from gateway.index.filters import (
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_run_filter,
    parse_run_order_by,
)
from gateway.index.search import (
    ExperimentSearch,
    IndexSearch,
    RunSearch,
    Visibility,
    account_experiment_id,
    max_results,
    parse_account_experiment_id,
    search_shape,
    view_type,
)

READ_ONLY = "The account scope is read-only; choose a workspace."
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][\w\-]{0,255}\Z")
JSON = {"Content-Type": "application/json"}
# An answer read whole to translate its ids (a run with very many params and tags is still far below).
MAX_TRANSLATED_BODY = 64 * 1024 * 1024

GET_EXPERIMENT = EXPERIMENTS_GET
VERSIONS_SEARCH = declared("GET /mlflow/model-versions/search")
# Reads of an experiment's page that name their experiments in `experiment_ids` of a JSON body: answered by the
# experiments' own workspace (one), each with the path of the experiment id in its answer's items.
EXPERIMENT_PAGE_READS = {
    declared("POST /mlflow/traces/metrics", version=3).name: (),
    declared("POST /mlflow/experiments/search-datasets").name: ("dataset_summaries",),
    declared("POST /mlflow/logged-models/search").name: ("models", "info"),
}
GATEWAY_ENDPOINTS = declared("GET /mlflow/gateway-proxy")
# What the run page asks of the registry: the versions made from its run (MLflow accepts either quote).
RUN_VERSIONS_FILTER = re.compile(r"""^\s*run_id\s*=\s*(?:'([^']*)'|"([^"]*)")\s*$""")


class SearchExperimentsRequest(msgspec.Struct):
    max_results: int | None = None
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] = []
    view_type: str | int | None = None


class SearchRunsRequest(msgspec.Struct):
    experiment_ids: list[str] = []
    filter: str | None = None
    run_view_type: str | int | None = None
    max_results: int | None = None
    order_by: list[str] = []
    page_token: str | None = None


class RunIdRequest(msgspec.Struct):
    run_id: str | None = None
    run_uuid: str | None = None


Forward = Callable[[ForwardCall], Awaitable[ForwardResult]]
_T = TypeVar("_T")


class AccountScope:
    """Serves calls whose workspace is `account` (a `Scope` of federation/hooks.py, chosen at the HTTP edge);
    `forward` sends a call on to one workspace, guarded: the forwarder's."""

    def __init__(
        self,
        links: LinkTable,
        authorizer: Authorizer,
        sessionmaker: async_sessionmaker[AsyncSession],
        forward: Forward,
        runs: RunDirectory,
        models: AccountModels | None = None,
        search_timeout_seconds: float = 10.0,
    ) -> None:
        self.search_timeout_seconds = search_timeout_seconds
        self.links = links
        self.models = models  # registered models of every workspace, `<workspace>.<name>` (account_models.py)
        self.authorizer = authorizer
        self.sessionmaker = sessionmaker
        self.forward = forward
        self.runs = runs

    async def serve(self, call: ForwardCall) -> ForwardResult:
        spec = call.spec
        if spec.action not in (Action.READ, Action.SEARCH):
            raise InvalidParameter(READ_ONLY)
        name = spec.name
        if spec in (EXPERIMENTS_SEARCH, EXPERIMENTS_SEARCH_GET):
            return await self.search_experiments(call)
        if spec == RUNS_SEARCH:
            return await self.search_runs(call)
        if spec == EXPERIMENTS_GET:
            return await self.get_experiment(call)
        if spec == EXPERIMENTS_GET_BY_NAME:
            return await self.get_experiment_by_name(call)
        if name in RUN_READS:
            return await self.run_read(call)
        if spec == METRIC_HISTORY_BULK:
            return await self.bulk_metric_history(call)
        if spec == GRAPHQL:
            return await self.graphql(call)
        if spec == VERSIONS_SEARCH and self._by_run(call):
            try:
                return await self.run_model_versions(call)
            except ResourceNotFound:
                if self.models is None:
                    raise
                # A run the caller cannot read (or the index does not know): the versions of it they may
                # read are found as any other version search finds them, in every workspace.
        if spec.name in EXPERIMENT_PAGE_READS and spec.method == "POST":
            return await self.experiment_page_read(call)
        if spec == GATEWAY_ENDPOINTS:
            # The AI gateway's endpoints belong to a workspace: the account scope has none of its own.
            return ForwardResult(200, dict(JSON), ACCOUNT_SCOPE, body=b'{"endpoints":[]}')
        if self.models is not None and self.models.serves(spec):
            return await self.models.serve(call)
        if spec.resource is Resource.ARTIFACT:
            return await self.artifact_read(call)
        raise InvalidParameter(
            f"{spec.method} {spec.path} is not served in the account scope, which answers experiment and run "
            "searches, get_experiment, get_run, metric history, run artifacts, the web UI's reads of experiments "
            "and runs, and reads of registered models ('<workspace>.<name>'); choose a workspace with "
            "mlflow.set_workspace(...) for anything else."
        )

    # -- what the caller may read ---------------------------------------------------------------------

    def visibility(self, principal: Principal) -> Visibility:
        """Every linked workspace, through the one helper that decides what a caller may read."""
        workspaces: set[int] = set()
        experiments: set[tuple[int, str]] = set()
        for link in self.links.all():
            readable = self.authorizer.readable_experiments(principal, link.workspace_id)
            if isinstance(readable, Everything):
                workspaces.add(link.workspace_id)
            else:
                experiments.update((link.workspace_id, e) for e in readable)
        return Visibility(frozenset(workspaces), frozenset(experiments))

    def readable_among(self, principal: Principal, asked: list[tuple[int, str]]) -> list[tuple[int, str]]:
        kept: list[tuple[int, str]] = []
        linked = {link.workspace_id for link in self.links.all()}
        readable_in: dict[int, Everything | set[str]] = {}
        for workspace_id, experiment_id in asked:
            if workspace_id not in linked:
                continue
            if workspace_id not in readable_in:
                readable_in[workspace_id] = self.authorizer.readable_experiments(principal, workspace_id)
            readable = readable_in[workspace_id]
            if isinstance(readable, Everything) or experiment_id in readable:
                kept.append((workspace_id, experiment_id))
        return kept

    # -- searches -------------------------------------------------------------------------------------

    async def search_experiments(self, call: ForwardCall) -> ForwardResult:
        if call.spec.method == "GET":
            params = parse_qs(call.query, keep_blank_values=True)
            request = SearchExperimentsRequest(
                max_results=_int_param(params, "max_results"),
                page_token=_param(params, "page_token"),
                filter=_param(params, "filter"),
                order_by=params.get("order_by", []),
                view_type=_param(params, "view_type"),
            )
        else:
            request = _decode(call.body, SearchExperimentsRequest)
        view = view_type(request.view_type)
        search = ExperimentSearch(
            visibility=self.visibility(call.principal),
            comparisons=parse_experiment_filter(request.filter),
            order=parse_experiment_order_by(request.order_by),
            view=view,
            max_results=max_results(request.max_results),
            page_token=request.page_token,
            shape=search_shape("experiments", request.filter or "", request.order_by, view.value),
        )
        names = {link.workspace_id: link.name for link in self.links.all()}
        async with self.sessionmaker() as session:
            answer = await IndexSearch(session, self.search_timeout_seconds).experiments(search, names)
        return ForwardResult(200, dict(JSON), ACCOUNT_SCOPE, body=msgspec.json.encode(answer))

    async def search_runs(self, call: ForwardCall) -> ForwardResult:
        request = _decode(call.body, SearchRunsRequest)
        asked = list(dict.fromkeys(parse_account_experiment_id(e) for e in request.experiment_ids))
        view = view_type(request.run_view_type)
        search = RunSearch(
            experiments=self.readable_among(call.principal, asked),
            comparisons=parse_run_filter(request.filter),
            order=parse_run_order_by(request.order_by),
            view=view,
            max_results=max_results(request.max_results),
            page_token=request.page_token,
            shape=search_shape("runs", request.filter or "", request.order_by, view.value, sorted(asked)),
        )
        async with self.sessionmaker() as session:
            answer = await IndexSearch(session, self.search_timeout_seconds).runs(search)
        return ForwardResult(200, dict(JSON), ACCOUNT_SCOPE, body=msgspec.json.encode(answer))

    # -- one experiment -------------------------------------------------------------------------------

    async def get_experiment(self, call: ForwardCall) -> ForwardResult:
        params = parse_qs(call.query, keep_blank_values=True)
        asked = _param(params, "experiment_id")
        if not asked:
            raise InvalidParameter("Missing value for required parameter 'experiment_id'.")
        workspace_id, experiment_id = parse_account_experiment_id(asked)
        return await self._experiment(call, workspace_id, experiment_id, f"No Experiment with id={asked} exists")

    async def get_experiment_by_name(self, call: ForwardCall) -> ForwardResult:
        name = _param(parse_qs(call.query, keep_blank_values=True), "experiment_name")
        if not name:
            raise InvalidParameter("Missing value for required parameter 'experiment_name'.")
        missing = f"Could not find experiment with name '{name}'"
        async with self.sessionmaker() as session:
            found = await IndexSearch(session).experiments_named(self.visibility(call.principal), name)
        active = [f for f in found if not f[2]]
        chosen = active or found
        if not chosen:
            raise ResourceNotFound(missing)
        if len(chosen) > 1:
            where = ", ".join(sorted(self._workspace_name(w) for w, _, _ in chosen))
            raise InvalidParameter(
                f"Experiment name '{name}' exists in several workspaces ({where}); in the account scope use its "
                "account id (from search_experiments) or choose a workspace."
            )
        workspace_id, experiment_id, _ = chosen[0]
        inner = ForwardCall(
            spec=GET_EXPERIMENT,
            principal=call.principal,
            workspace=WorkspaceHeaders(),
            path_params={},
            query="",
            headers=list(call.headers),
            body=None,
            request_id=call.request_id,
        )
        return await self._experiment(inner, workspace_id, experiment_id, missing)

    async def _experiment(
        self, call: ForwardCall, workspace_id: int, experiment_id: str, missing: str
    ) -> ForwardResult:
        link = self.links.by_id(workspace_id)
        if link is None:
            raise ResourceNotFound(missing)
        params = parse_qs(call.query, keep_blank_values=True)
        params["experiment_id"] = [experiment_id]
        result = await self._forward_hidden(call, link, missing, query=urlencode(params, doseq=True))
        if result.status == 404:
            raise ResourceNotFound(missing)  # the store's message would name the workspace's own id

        def translate(document: dict[str, Any]) -> None:
            experiment = document.get("experiment")
            if isinstance(experiment, dict):
                experiment["experiment_id"] = account_experiment_id(workspace_id, str(experiment["experiment_id"]))
                experiment.setdefault("workspace", link.name)

        return await _translated(result, translate)

    # -- one run --------------------------------------------------------------------------------------

    async def run_read(self, call: ForwardCall) -> ForwardResult:
        run_id = _run_id_of(call)
        link = await self._run_link(run_id)
        result = await self._forward_hidden(call, link, f"Run with id={run_id} not found")
        if call.spec != RUNS_GET:
            return result

        def translate(document: dict[str, Any]) -> None:
            info = (document.get("run") or {}).get("info")
            if isinstance(info, dict) and "experiment_id" in info:
                info["experiment_id"] = account_experiment_id(link.workspace_id, str(info["experiment_id"]))

        return await _translated(result, translate)

    async def bulk_metric_history(self, call: ForwardCall) -> ForwardResult:
        params = parse_qs(call.query, keep_blank_values=True)
        run_ids = list(dict.fromkeys(v for v in params.get("run_ids", []) if v))
        if not run_ids:
            raise InvalidParameter("Missing value for required parameter 'run_ids'.")
        groups: dict[str, tuple[WorkspaceLink, list[str]]] = {}
        for run_id in run_ids:
            link = await self._run_link(run_id)
            groups.setdefault(link.name, (link, []))[1].append(run_id)
        metrics: list[Any] = []
        for link, ids in groups.values():
            query = urlencode({**params, "run_ids": ids}, doseq=True)
            result = await self._forward_hidden(call, link, f"Run with id={ids[0]} not found", query=query)
            if result.status != 200:
                return result
            document = msgspec.json.decode(await _body(result))
            metrics.extend(document.get("metrics") or [])
        answer = {"metrics": metrics} if metrics else {}
        return ForwardResult(200, dict(JSON), ACCOUNT_SCOPE, body=msgspec.json.encode(answer))

    async def artifact_read(self, call: ForwardCall) -> ForwardResult:
        path = Forwarder._artifact_path(call)
        if self.models is not None and self.models.governs(path):
            return await self.models.files(call, path)
        named = artifact_workspace(path)
        if named is not None:
            link = self.links.get(named)
            if link is None:
                raise ResourceNotFound(f"Workspace '{named}' not found")
            missing = f"Artifact path '{path}' not found"
        else:
            run_id = artifact_run_id(path)
            if run_id is None:
                raise InvalidParameter(
                    "In the account scope an artifact path must name a run (<experiment>/<run_id>/...) or a "
                    "workspace (workspaces/<name>/...); choose a workspace for other artifacts."
                )
            link = await self._run_link(run_id)
            missing = f"Run with id={run_id} not found"
        return await self._forward_hidden(call, link, missing)

    def _by_run(self, call: ForwardCall) -> bool:
        """A version search by one run alone (the run page's question); other version searches ask every
        workspace (account_models.py), or are refused where that is not wired."""
        asked = _param(parse_qs(call.query, keep_blank_values=True), "filter") or ""
        return self.models is None or RUN_VERSIONS_FILTER.match(asked) is not None

    async def run_model_versions(self, call: ForwardCall) -> ForwardResult:
        """The model versions made from one run (the run page's question), from the run's workspace, with
        model names in the account form `<workspace>.<name>`."""
        asked = _param(parse_qs(call.query, keep_blank_values=True), "filter") or ""
        match = RUN_VERSIONS_FILTER.match(asked)
        if match is None:
            raise InvalidParameter(
                "In the account scope model versions are searched by their run (filter \"run_id='...'\"); read a "
                "model as '<workspace>.<name>', or choose a workspace for other searches."
            )
        run_id = match.group(1) if match.group(1) is not None else match.group(2)
        link = await self._run_link(run_id)
        if not self.authorizer.enters(call.principal, link.workspace_id):
            raise ResourceNotFound(f"Run with id={run_id} not found")
        result = await self._forward_hidden(call, link, f"Run with id={run_id} not found")

        def translate(document: dict[str, Any]) -> None:
            for version in document.get("model_versions") or []:
                if isinstance(version, dict) and "name" in version:
                    version["name"] = f"{link.name}.{version['name']}"

        return await _translated(result, translate)

    async def experiment_page_read(self, call: ForwardCall) -> ForwardResult:
        """What an experiment's page reads besides its runs (trace figures, datasets, logged models), from the
        experiment's own workspace, experiment ids in the account form."""
        document = _decode(call.body, dict[str, Any])
        asked = document.get("experiment_ids")
        if not isinstance(asked, list) or not asked or not all(isinstance(e, str) for e in asked):
            raise InvalidParameter("Missing value for required parameter 'experiment_ids'.")
        pairs = list(dict.fromkeys(parse_account_experiment_id(e) for e in asked))
        if len({workspace_id for workspace_id, _ in pairs}) > 1:
            raise InvalidParameter(
                "In the account scope this read names experiments of one workspace; choose a workspace."
            )
        missing = f"No Experiment with id={asked[0]} exists"
        found = self.links.by_id(pairs[0][0])
        if found is None:
            raise ResourceNotFound(missing)
        link = found
        body = msgspec.json.encode({**document, "experiment_ids": [e for _, e in pairs]})
        inner = ForwardCall(
            spec=call.spec,
            principal=call.principal,
            workspace=call.workspace,
            path_params=call.path_params,
            query=call.query,
            headers=[(k, v) for k, v in call.headers if k.lower() != "content-length"],
            body=body,
            request_id=call.request_id,
        )
        result = await self._forward_hidden(inner, link, missing)
        where = EXPERIMENT_PAGE_READS[call.spec.name]
        if not where:
            return result

        def translate(answer: dict[str, Any]) -> None:
            for item in answer.get(where[0]) or []:
                for step in where[1:]:
                    item = item.get(step) if isinstance(item, dict) else None
                if isinstance(item, dict) and item.get("experiment_id") is not None:
                    item["experiment_id"] = account_experiment_id(link.workspace_id, str(item["experiment_id"]))

        return await _translated(result, translate)

    # -- the web UI's GraphQL reads -------------------------------------------------------------------

    async def graphql(self, call: ForwardCall) -> ForwardResult:
        """One of the UI's allowed queries, sent to the workspace its ids name as an ordinary GraphQL call
        (guarded there), its input in that workspace's ids and its answer in the account's."""
        query = canonical_graphql(call.body if isinstance(call.body, bytes) else b"")
        field, given = query.field, query.input
        try:
            if field == "mlflowGetExperiment":
                document = await self._graphql_experiment(call, query)
            elif field == "mlflowGetRun":
                named = {v for v in (given.get("runId"), given.get("runUuid")) if v}
                if len(named) != 1:
                    raise InvalidParameter("GraphQL: mlflowGetRun must name one run (runId).")
                run_id = named.pop()
                link = await self._graphql_run_link(field, run_id)
                document = await self._graphql_in(call, link, query, given, f"Run with id={run_id} not found")
                _account_runs(document, field, link)
            elif field == "mlflowGetMetricHistoryBulkInterval":
                document = await self._graphql_histories(call, query)
            else:
                document = await self._graphql_search(call, query)
        except _Unchanged as unchanged:
            return unchanged.result
        return ForwardResult(200, dict(JSON), ACCOUNT_SCOPE, body=msgspec.json.encode(document))

    async def _graphql_experiment(self, call: ForwardCall, query: GraphqlCall) -> dict[str, Any]:
        asked = query.input.get("experimentId")
        if not isinstance(asked, str) or not asked:
            raise InvalidParameter("GraphQL: the input must name 'experimentId'.")
        missing = f"No Experiment with id={asked} exists"
        workspace_id, experiment_id = parse_account_experiment_id(asked)
        link = self.links.by_id(workspace_id)
        if link is None:
            raise GraphqlNotFound(query.field, ResourceNotFound(missing))
        document = await self._graphql_in(call, link, query, {**query.input, "experimentId": experiment_id}, missing)
        experiment = _field_answer(document, query.field).get("experiment")
        if isinstance(experiment, dict) and "experimentId" in experiment:
            experiment["experimentId"] = account_experiment_id(workspace_id, str(experiment["experimentId"]))
        return document

    async def _graphql_histories(self, call: ForwardCall, query: GraphqlCall) -> dict[str, Any]:
        run_ids = list(dict.fromkeys(query.input.get("runIds") or []))
        if not run_ids:
            raise InvalidParameter("GraphQL: mlflowGetMetricHistoryBulkInterval must name its runs (runIds).")
        groups: dict[str, tuple[WorkspaceLink, list[str]]] = {}
        for run_id in run_ids:
            link = await self._graphql_run_link(query.field, run_id)
            groups.setdefault(link.name, (link, []))[1].append(run_id)
        merged: dict[str, Any] | None = None
        for link, ids in groups.values():
            missing = f"Run with id={ids[0]} not found"
            document = await self._graphql_in(call, link, query, {**query.input, "runIds": ids}, missing)
            if merged is None:
                merged = document
                continue
            metrics = _field_answer(document, query.field).get("metrics") or []
            answer = _field_answer(merged, query.field)
            answer["metrics"] = [*(answer.get("metrics") or []), *metrics]
        assert merged is not None
        return merged

    async def _graphql_search(self, call: ForwardCall, query: GraphqlCall) -> dict[str, Any]:
        asked = list(dict.fromkeys(parse_account_experiment_id(e) for e in query.input.get("experimentIds") or []))
        if not asked:
            raise InvalidParameter("GraphQL: mlflowSearchRuns must name its experiments (experimentIds).")
        kept = self.readable_among(call.principal, asked)
        workspaces = {workspace_id for workspace_id, _ in kept}
        if not kept:
            return {"data": {query.field: {"apiError": None, "runs": [], "nextPageToken": None}}}
        if len(workspaces) > 1:
            raise InvalidParameter(
                "GraphQL: in the account scope a search of runs names experiments of one workspace; the runs "
                "table of the account scope searches across workspaces."
            )
        link = self.links.by_id(workspaces.pop())
        assert link is not None  # readable_among keeps linked workspaces only
        local = [experiment_id for _, experiment_id in kept]
        document = await self._graphql_in(call, link, query, {**query.input, "experimentIds": local}, "")
        _account_runs(document, query.field, link)
        return document

    async def _graphql_run_link(self, field: str, run_id: str) -> WorkspaceLink:
        try:
            return await self._run_link(run_id)
        except ResourceNotFound as missing:
            raise GraphqlNotFound(field, missing) from None

    async def _graphql_in(
        self, call: ForwardCall, link: WorkspaceLink, query: GraphqlCall, given: dict[str, Any], missing: str
    ) -> dict[str, Any]:
        """The query with `given` as its input, answered in `link`'s workspace, as a document; an object missing
        or hidden there is answered as missing (`missing`: its words, with the id the caller gave)."""
        inner = ForwardCall(
            spec=call.spec,
            principal=call.principal,
            workspace=WorkspaceHeaders(name=link.name),
            path_params={},
            query=call.query,
            headers=[(k, v) for k, v in call.headers if k.lower() != "content-length"],
            body=query.body(given),
            request_id=call.request_id,
        )
        try:
            result = await self.forward(inner)
        except ResourceNotFound as exc:
            found = hidden(missing) if exc.denied else ResourceNotFound(missing)
            raise GraphqlNotFound(query.field, found) from None
        body = await _body(result)
        if result.status != 200 or body[:1] != b"{":
            headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
            raise _Unchanged(ForwardResult(result.status, headers, result.workspace, body=body))
        document = msgspec.json.decode(body)
        data = document.get("data") if isinstance(document, dict) else None
        if isinstance(data, dict) and data.get(query.field) is None and missing:
            document["errors"] = [missing]  # the store's words would name the workspace's own id
        return document  # type: ignore[no-any-return]

    # -- plumbing -------------------------------------------------------------------------------------

    async def _run_link(self, run_id: str) -> WorkspaceLink:
        missing = f"Run with id={run_id} not found"
        if not RUN_ID_RE.match(run_id):
            raise InvalidParameter(f"Invalid run id {run_id!r}.")
        name = await self.runs.workspace_of(run_id)
        link = self.links.get(name) if name else None
        if link is None:
            async with self.sessionmaker() as session:
                found = await IndexSearch(session).run_location(run_id)
            link = self.links.by_id(found[0]) if found else None
        if link is None:
            raise ResourceNotFound(missing)
        return link

    async def _forward_hidden(
        self, call: ForwardCall, link: WorkspaceLink, missing: str, query: str | None = None
    ) -> ForwardResult:
        """The call, sent to `link` as an ordinary guarded call. A refusal reads like "not found", with no
        word of the workspace it was found in."""
        inner = ForwardCall(
            spec=call.spec,
            principal=call.principal,
            workspace=WorkspaceHeaders(name=link.name),
            path_params=call.path_params,
            query=call.query if query is None else query,
            headers=list(call.headers),
            body=call.body,
            request_id=call.request_id,
        )
        try:
            return await self.forward(inner)
        except ResourceNotFound as exc:
            error = hidden(missing) if exc.denied else ResourceNotFound(missing)
            raise error from None

    def _workspace_name(self, workspace_id: int) -> str:
        link = self.links.by_id(workspace_id)
        return link.name if link is not None else str(workspace_id)


RUN_READS = frozenset({RUNS_GET.name, METRIC_HISTORY.name, ARTIFACTS_LIST.name, PRESIGNED_DOWNLOAD_URL.name})


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _int_param(params: dict[str, list[str]], name: str) -> int | None:
    """A whole number of a query string, ASCII digits only (core/numbers.py): `int` also takes fullwidth digits."""
    value = _param(params, name)
    if value is None or value == "":
        return None
    number = whole(value)
    if number is None:
        raise InvalidParameter(f"Invalid value {value[:40]!r} for parameter '{name}'.")
    return number


def _decode(body: Any, kind: type[_T]) -> _T:
    raw = body if isinstance(body, bytes) and body.strip() else b"{}"
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise InvalidParameter(f"Invalid request body: {exc}") from None


def _run_id_of(call: ForwardCall) -> str:
    if call.spec.method == "GET":
        params = parse_qs(call.query, keep_blank_values=True)
        run_id = _param(params, "run_id") or _param(params, "run_uuid")
    else:
        ids = _decode(call.body, RunIdRequest)
        run_id = ids.run_id or ids.run_uuid
    if not run_id:
        raise InvalidParameter("This call must name its run (run_id).")
    return run_id


async def _body(result: ForwardResult) -> bytes:
    if result.stream is None:
        return result.body
    chunks: list[bytes] = []
    size = 0
    async for chunk in result.stream:
        size += len(chunk)
        if size > MAX_TRANSLATED_BODY:
            raise GatewayError("The store's answer is too large to translate for the account scope.")
        chunks.append(chunk)
    return b"".join(chunks)


class _Unchanged(Exception):
    """A store's answer passed on as it came (an error status, or not JSON)."""

    def __init__(self, result: ForwardResult) -> None:
        super().__init__("unchanged")
        self.result = result


def _field_answer(document: dict[str, Any], field: str) -> dict[str, Any]:
    data = document.get("data")
    answer = data.get(field) if isinstance(data, dict) else None
    return answer if isinstance(answer, dict) else {}


def _account_runs(document: dict[str, Any], field: str, link: WorkspaceLink) -> None:
    """The runs of a GraphQL answer with experiment ids in the account form and model names qualified."""
    answer = _field_answer(document, field)
    runs = [answer["run"]] if isinstance(answer.get("run"), dict) else list(answer.get("runs") or [])
    for run in runs:
        if not isinstance(run, dict):
            continue
        for part in (run.get("info"), run.get("experiment")):
            if isinstance(part, dict) and part.get("experimentId") is not None:
                part["experimentId"] = account_experiment_id(link.workspace_id, str(part["experimentId"]))
        for version in run.get("modelVersions") or []:
            if isinstance(version, dict) and version.get("name") is not None:
                version["name"] = f"{link.name}.{version['name']}"


async def _translated(result: ForwardResult, translate: Callable[[dict[str, Any]], None]) -> ForwardResult:
    """The store's JSON answer with its experiment ids put in the account form (errors pass unchanged)."""
    body = await _body(result)
    headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
    if result.status != 200 or body[:1] != b"{":
        return ForwardResult(result.status, headers, result.workspace, body=body)
    document = msgspec.json.decode(body)
    translate(document)
    return ForwardResult(result.status, headers, result.workspace, body=msgspec.json.encode(document))
