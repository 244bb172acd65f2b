"""The web UI's GraphQL queries pass the allow-list as the UI sends them; nothing else does.

The UI's own queries are read from the installed MLflow build (the JavaScript bundle the gateway serves),
so an MLflow upgrade that changes a query fails here first. Every refused request is refused before any
store is asked (canonical_graphql runs in the pipeline's first step).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.core.errors import InvalidParameter
from gateway.federation.graphql import ALLOWED, canonical_graphql
from gateway.federation.guard.graphql import _filter_versions
from gateway.ui.static import find_build

RUN = "a" * 32
UI_VARIABLES: dict[str, dict[str, Any]] = {
    "mlflowGetRun": {"runId": RUN},
    "mlflowSearchRuns": {"experimentIds": ["1"], "filter": f"attributes.run_id = '{RUN}'"},
    "mlflowGetExperiment": {"experimentId": "1"},
    "mlflowGetMetricHistoryBulkInterval": {"runIds": [RUN], "metricKey": "loss", "maxResults": 320},
}


def ui_queries() -> list[str]:
    """Every GraphQL document in the MLflow UI bundle (its gql`...` template literals)."""
    build = find_build()
    if build is None:
        pytest.skip("the MLflow UI build is not installed (the `ui` extra)")
    found = []
    for path in sorted(Path(build, "static", "js").glob("*.js")):
        text = path.read_text(errors="replace")
        for match in re.finditer(r"`\s*((?:query|mutation) [A-Za-z]+\s*\([^`]*)`", text):
            found.append(match.group(1))
    return found


def request(query: str, variables: dict[str, Any] | None = None, **extra: Any) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}, **extra}).encode()


def test_every_query_the_ui_sends_is_allowed_and_reaches_the_store_reprinted() -> None:
    queries = ui_queries()
    fields = set()
    for query in queries:
        field = re.search(r"\{\s*(mlflow\w+)\s*\(", query)
        assert field is not None, query
        name = re.search(r"(?:query|mutation) (\w+)", query)
        assert name is not None
        call = canonical_graphql(
            request(query, {"data": UI_VARIABLES[field.group(1)], "input": UI_VARIABLES[field.group(1)]})
        )
        fields.add(call.field)
        assert call.input == UI_VARIABLES[call.field]
        sent = msgspec.json.decode(call.body())
        assert sent["variables"] == {"input": UI_VARIABLES[call.field]}
        assert sent["operationName"] == name.group(1)
        # The re-print parses to the same one operation: the store reads what the guard read.
        assert canonical_graphql(call.body()).input == call.input
    assert fields == set(ALLOWED), "a query of the allow-list is no longer sent by the UI, or one is missing"


GET_RUN = "query GetRun($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) { run { info { runUuid } } } }"


@pytest.mark.parametrize(
    ("label", "body"),
    [
        ("introspection", request("{ __schema { types { name } } }")),
        (
            "introspection inside an allowed field",
            request(GET_RUN.replace("runUuid", "runUuid __schema { types { name } }")),
        ),
        ("a type by introspection", request('query { __type(name: "MlflowRun") { name } }')),
        ("a mutation", request('mutation { testMutation(inputString: "x") { output } }')),
        ("an unknown root field", request('query { test(inputString: "x") { output } }')),
        ("a root field the UI never sends", request('query { mlflowListArtifacts(input: {runId: "x"}) { root } }')),
        (
            "two root fields",
            request(GET_RUN.replace("} } } }", "} } } mlflowGetExperiment(input: {}) { experiment { name } } }")),
        ),
        ("an alias", request(GET_RUN.replace("mlflowGetRun(", "a: mlflowGetRun("))),
        ("a nested alias", request(GET_RUN.replace("info {", "i: info {"))),
        ("a field selected twice", request(GET_RUN.replace("runUuid", "runUuid runUuid"))),
        (
            "a fragment",
            request(GET_RUN.replace("info { runUuid }", "...F") + " fragment F on MlflowRun { info { runUuid } }"),
        ),
        ("an inline fragment", request(GET_RUN.replace("info { runUuid }", "... on MlflowRun { info { runUuid } }"))),
        (
            "a field the UI never selects",
            request(GET_RUN.replace("runUuid", "runUuid lifecycleStage runName artifactUri nope")),
        ),
        ("a directive on a field", request(GET_RUN.replace("runUuid", "runUuid @skip(if: false)"))),
        (
            "another operation directive",
            request(
                GET_RUN.replace("$data: MlflowGetRunInput!)", '$data: MlflowGetRunInput!) @deprecated(reason: "x")')
            ),
        ),
        ("two operations", request(GET_RUN + " " + GET_RUN.replace("GetRun(", "Again("))),
        ("batched queries", json.dumps([{"query": GET_RUN}, {"query": GET_RUN}]).encode()),
        ("a subscription", request("subscription { mlflowGetRun(input: {}) { run { info { runUuid } } } }")),
        ("an unknown input field", request(GET_RUN, {"data": {"runId": RUN, "experimentId": "1"}})),
        ("an input of the wrong type", request(GET_RUN, {"data": {"runId": 5}})),
        (
            "an unused variable",
            request(
                GET_RUN.replace("$data: MlflowGetRunInput!", "$data: MlflowGetRunInput!, $x: String"),
                {"data": {"runId": RUN}},
            ),
        ),
        ("a default value", request(GET_RUN.replace("MlflowGetRunInput!", 'MlflowGetRunInput = {runId: "x"}'))),
        ("an operation name naming another", request(GET_RUN, {"data": {"runId": RUN}}, operationName="Other")),
        ("a body that is not JSON", b"query { x }"),
        ("a very long query", request("query Q { " + "a " * 20_000 + "}")),
    ],
)
def test_anything_else_is_refused(label: str, body: bytes) -> None:
    with pytest.raises(InvalidParameter):
        canonical_graphql(body)


def test_an_inline_input_becomes_the_one_variable_the_store_receives() -> None:
    call = canonical_graphql(
        request(f'query GetRun {{ mlflowGetRun(input: {{runId: "{RUN}"}}) {{ run {{ info {{ runUuid }} }} }} }}')
    )
    assert call.input == {"runId": RUN}
    sent = msgspec.json.decode(call.body())
    assert sent["variables"] == {"input": {"runId": RUN}}
    assert "$input: MlflowGetRunInput!" in sent["query"] and RUN not in sent["query"]


def test_model_versions_of_unreadable_models_leave_the_answer() -> None:
    answer = {
        "data": {
            "mlflowSearchRuns": {
                "runs": [
                    {"info": {"runUuid": "r1"}, "modelVersions": [{"name": "churn"}, {"name": "fraud"}]},
                    {"info": {"runUuid": "r2"}, "modelVersions": [{"name": "fraud"}]},
                ]
            }
        }
    }
    assert _filter_versions(answer, {"churn"})
    runs = answer["data"]["mlflowSearchRuns"]["runs"]
    assert [r["modelVersions"] for r in runs] == [[{"name": "churn"}], []]
    assert not _filter_versions(answer, {"churn"})  # nothing left to drop
