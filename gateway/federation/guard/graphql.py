"""The rule of the web UI's GraphQL queries: every id an allowed operation carries is authorized.

The operation has been held to the allow-list and re-printed (federation/graphql.py) before this rule
runs. A run is read through the grants on its experiment, an experiment through its own, and a search of
runs is cut to the readable experiments, as the REST twins of these calls are. A run's `modelVersions`
field is a registry search the store runs for the run: versions of registered models the caller may not
read are taken out of the answer, which names no count of them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.authz.decide import Everything
from gateway.authz.levels import Level
from gateway.core.errors import InvalidParameter
from gateway.federation.graphql import GraphqlCall
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import After, Plan, Request

# What the store answers a search with nothing readable in it, in GraphQL's shape.
EMPTY_SEARCH = b'{"data":{"mlflowSearchRuns":{"apiError":null,"runs":[],"nextPageToken":null}},"errors":null}'


async def graphql(checks: Checks, request: Request, wanted: Level) -> Plan:
    call = request.graphql
    if call is None:  # only a GraphQL body reaches this rule (the route's body kind says so)
        raise InvalidParameter("GraphQL: the request carries no query.")
    given = call.input
    if call.field == "mlflowGetExperiment":
        await checks.require_experiment(request, _one(given, "experimentId"), Level.CAN_READ)
        return Plan()
    if call.field == "mlflowGetRun":
        named = {v for v in (given.get("runId"), given.get("runUuid")) if v}
        if len(named) != 1:
            raise InvalidParameter("GraphQL: mlflowGetRun must name one run (runId).")
        await checks.require_run(request, named.pop(), Level.CAN_READ)
        return Plan(after=await _readable_versions(checks, request))
    if call.field == "mlflowGetMetricHistoryBulkInterval":
        run_ids = list(dict.fromkeys(given.get("runIds") or []))
        if not run_ids:
            raise InvalidParameter("GraphQL: mlflowGetMetricHistoryBulkInterval must name its runs (runIds).")
        for run_id in run_ids:
            await checks.require_run(request, run_id, Level.CAN_READ)
        return Plan()
    if call.field == "mlflowSearchRuns":
        return await _search_runs(checks, request, call)
    raise InvalidParameter(f"GraphQL: {call.field} is not served.")  # ALLOWED and this rule go together


async def _search_runs(checks: Checks, request: Request, call: GraphqlCall) -> Plan:
    asked = list(dict.fromkeys(call.input.get("experimentIds") or []))
    if not asked:
        raise InvalidParameter("GraphQL: mlflowSearchRuns must name its experiments (experimentIds).")
    readable = checks.authorizer.readable_experiments(request.principal, request.link.workspace_id)
    kept = asked if isinstance(readable, Everything) else [e for e in asked if e in readable]
    if not kept:
        return Plan(answer=EMPTY_SEARCH)
    after = await _readable_versions(checks, request)
    if kept == asked:
        return Plan(after=after)
    return Plan(body=call.body({**call.input, "experimentIds": kept}), after=after)


async def _readable_versions(checks: Checks, request: Request) -> After | None:
    """An answer step keeping only model versions of readable registered models (None: all are readable)."""
    readable = checks.authorizer.readable_models(request.principal, request.link.workspace_id)
    if isinstance(readable, Everything):
        return None
    names = set(await checks.ownership.model_names(request.link, readable))

    async def keep_readable(status: int, answer: bytes) -> bytes | None:
        if status != 200 or not answer.startswith(b"{"):
            return None
        document = msgspec.json.decode(answer)
        if not _filter_versions(document, names):
            return None
        return msgspec.json.encode(document)

    return keep_readable


def _filter_versions(document: dict[str, Any], names: set[str]) -> bool:
    """Drop unreadable model versions from every run of the answer; whether anything was dropped."""
    data = document.get("data")
    if not isinstance(data, dict):
        return False
    runs: list[Any] = []
    for answer in data.values():
        if isinstance(answer, dict):
            if isinstance(answer.get("run"), dict):
                runs.append(answer["run"])
            if isinstance(answer.get("runs"), list):
                runs.extend(answer["runs"])
    dropped = False
    for run in runs:
        versions = run.get("modelVersions") if isinstance(run, dict) else None
        if isinstance(versions, list):
            kept = [v for v in versions if isinstance(v, dict) and v.get("name") in names]
            if len(kept) != len(versions):
                run["modelVersions"] = kept
                dropped = True
    return dropped


def _one(given: dict[str, Any], name: str) -> str:
    value = given.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidParameter(f"GraphQL: the input must name '{name}'.")
    return value
