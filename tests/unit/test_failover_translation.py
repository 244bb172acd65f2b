"""Failover reads of a dual workspace: requests translated to the central copies, answers translated back.

The id map's rows are given (as `Failover` reads them from PostgreSQL); what is tested is the translation
itself, the code the failover routes run: ids and names of filters, and answers that show only this
workspace's copies, under the workspace's own ids, names and artifact locations.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.errors import InvalidParameter, ResourceNotFound, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.reserved import SOURCE_RUN_TAG, SOURCE_WORKSPACE_TAG
from gateway.core.route_table import FORWARDED_ROUTES, RouteSpec
from gateway.dual.failover import (
    FAILOVER_ROUTES,
    NO_EXPERIMENT,
    NO_RUN,
    central_experiment_filter,
    central_run_filter,
    filter_ids,
    ids_in_answer,
    own_answer,
    refuse_artifact_uri_filter,
)
from gateway.index.filters import EXPERIMENT_ENTITIES, RUN_ENTITIES

ROUTES = {spec.name: spec for spec in FORWARDED_ROUTES}
PREFIXED = WorkspaceLink("lab", 7, "dual", "a", "a", None, mirror="central", mirror_prefix="lab/")
NAMESPACED = WorkspaceLink("lab", 7, "dual", "a", "a", "lab", mirror="central", mirror_workspace="lab")
CENTRAL_RUN, OWN_RUN = "c" * 32, "a" * 32
FOREIGN_RUN = "f" * 32
MAPS = {"experiment": {"40": "3"}, "run": {CENTRAL_RUN: OWN_RUN}}  # central → the workspace's


def route(name: str) -> RouteSpec:
    assert name in FAILOVER_ROUTES
    return ROUTES[name]


def central_run(run_id: str, experiment_id: str) -> dict[str, Any]:
    return {
        "info": {
            "run_id": run_id,
            "run_uuid": run_id,
            "experiment_id": experiment_id,
            "artifact_uri": f"mlflow-artifacts:/40/{run_id}/artifacts",
        },
        "data": {
            "tags": [
                {"key": "mlflow.runName", "value": "r"},
                {"key": SOURCE_RUN_TAG, "value": OWN_RUN},
                {"key": SOURCE_WORKSPACE_TAG, "value": "lab"},
            ],
            "metrics": [{"key": "loss", "value": 0.5, "step": 1, "timestamp": 1}],
        },
    }


def test_a_run_page_keeps_only_the_workspaces_copies_under_its_own_ids() -> None:
    page = {"runs": [central_run(CENTRAL_RUN, "40"), central_run(FOREIGN_RUN, "41")], "next_page_token": "t"}
    assert ids_in_answer(page) == {"experiment": {"40", "41"}, "run": {CENTRAL_RUN, FOREIGN_RUN}}
    answer = own_answer(route("POST /mlflow/runs/search"), PREFIXED, page, MAPS)
    assert answer["next_page_token"] == "t"
    [run] = answer["runs"]  # the run written around the gateway is not shown
    assert run["info"] == {
        "run_id": OWN_RUN,
        "run_uuid": OWN_RUN,
        "experiment_id": "3",
        "artifact_uri": f"mlflow-artifacts:/3/{OWN_RUN}/artifacts",  # where the workspace's store keeps it
    }
    assert run["data"]["tags"] == [{"key": "mlflow.runName", "value": "r"}]  # provenance tags hidden
    assert run["data"]["metrics"] == [{"key": "loss", "value": 0.5, "step": 1, "timestamp": 1}]


def test_a_page_of_none_of_the_workspaces_copies_is_an_empty_page() -> None:
    page = {"runs": [central_run(FOREIGN_RUN, "41")]}
    assert own_answer(route("POST /mlflow/runs/search"), PREFIXED, page, MAPS) == {}


def test_artifact_locations_name_the_workspace_on_a_store_with_workspaces() -> None:
    answer = own_answer(route("GET /mlflow/runs/get"), NAMESPACED, {"run": central_run(CENTRAL_RUN, "40")}, MAPS)
    assert answer["run"]["info"]["artifact_uri"] == f"mlflow-artifacts:/workspaces/lab/3/{OWN_RUN}/artifacts"


def test_experiments_lose_the_prefix_and_foreign_ones_are_dropped() -> None:
    page = {
        "experiments": [
            {"experiment_id": "40", "name": "lab/churn", "artifact_location": "mlflow-artifacts:/40"},
            {"experiment_id": "41", "name": "lab/made-around-the-gateway", "artifact_location": "x"},
        ]
    }
    answer = own_answer(route("POST /mlflow/experiments/search"), PREFIXED, page, MAPS)
    assert answer == {
        "experiments": [{"experiment_id": "3", "name": "churn", "artifact_location": "mlflow-artifacts:/3"}]
    }
    got = {"experiment": {"experiment_id": "40", "name": "lab/churn", "artifact_location": "mlflow-artifacts:/40"}}
    answer = own_answer(route("GET /mlflow/experiments/get-by-name"), PREFIXED, got, MAPS)
    assert answer["experiment"]["name"] == "churn" and answer["experiment"]["experiment_id"] == "3"


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("GET /mlflow/runs/get", {"run": central_run(FOREIGN_RUN, "41")}),
        ("GET /mlflow/experiments/get", {"experiment": {"experiment_id": "41", "name": "lab/x"}}),
    ],
)
def test_a_get_of_something_not_the_workspaces_copy_is_not_found_in_the_stores_words(
    name: str, document: dict[str, Any]
) -> None:
    with pytest.raises(ResourceNotFound, match="No Experiment with id=9 exists"):
        own_answer(route(name), PREFIXED, document, MAPS, "No Experiment with id=9 exists")


def test_run_filters_compare_with_the_central_copies_ids() -> None:
    text = f"attributes.run_id IN ('{OWN_RUN}', '{'b' * 32}') AND params.lr = '{OWN_RUN}' AND run_id != \"{OWN_RUN}\""
    assert filter_ids(text, RUN_ENTITIES, "run_id") == {OWN_RUN, "b" * 32}
    translated = central_run_filter(text, {OWN_RUN: CENTRAL_RUN})
    # A param that happens to hold an id is left as written; an id without a copy matches no run.
    assert translated == (
        f"attributes.run_id IN ('{CENTRAL_RUN}', '{NO_RUN}') AND params.lr = '{OWN_RUN}' AND run_id != '{CENTRAL_RUN}'"
    )
    assert central_run_filter("metrics.loss < 1", {}) == "metrics.loss < 1"


@pytest.mark.parametrize(
    "text",
    [
        f"attributes.artifact_uri = 'mlflow-artifacts:/3/{OWN_RUN}/artifacts'",
        "params.lr = '1' AND artifact_uri LIKE '%/artifacts'",
        "run.`artifact_uri` != 'mlflow-artifacts:/workspaces/lab/3'",
        'attr.artifact_uri ILIKE "S3://%"',
    ],
)
def test_a_run_filter_on_artifact_uris_waits_for_the_store(text: str) -> None:
    """The copies' URIs are the central store's: no rewrite compares what the workspace shows, so 503 as a write."""
    with pytest.raises(StoreUnavailable) as refused:
        refuse_artifact_uri_filter(NAMESPACED, text)
    assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    assert "attributes.artifact_uri" in str(refused.value)


@pytest.mark.parametrize(
    "text", ["", "params.artifact_uri = 'x'", "tags.artifact_uri = 'x' AND run_name = 'mlflow-artifacts:/3'"]
)
def test_other_run_filters_are_read_from_the_copies(text: str) -> None:
    refuse_artifact_uri_filter(NAMESPACED, text)


def test_experiment_filters_take_the_copies_ids_and_names_and_stay_in_the_workspace() -> None:
    text = "experiment_id IN ('3', '8') AND name LIKE 'churn%'"
    assert filter_ids(text, EXPERIMENT_ENTITIES, "experiment_id") == {"3", "8"}
    assert central_experiment_filter(PREFIXED, text, {"3": "40"}) == (
        f"experiment_id IN ('40', '{NO_EXPERIMENT}') AND name LIKE 'lab/churn%' AND name LIKE 'lab/%'"
    )
    # No filter at all is still narrowed to the workspace's copies.
    assert central_experiment_filter(PREFIXED, "", {}) == "name LIKE 'lab/%'"
    # On a central store with workspaces the copies live in a namespace of their own: names stay.
    assert central_experiment_filter(NAMESPACED, "name = 'churn'", {}) == "name = 'churn'"


def test_an_id_compared_with_a_number_is_refused_as_the_store_refuses_it() -> None:
    with pytest.raises(InvalidParameter):
        filter_ids("attributes.run_id = 5", RUN_ENTITIES, "run_id")
