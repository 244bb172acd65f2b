"""An attacker's review of searches and lookups: what a user who may only use team-a reaches of Alice's work.

Bob may use team-a (create experiments and models of his own); Alice's experiment, run and registered model
are hidden from him. Each test sends what an attacker would and checks, through the answer and through
Alice's eyes, that nothing of hers came back or changed.
"""

# ruff: noqa: F811  (the fixtures imported from test_access_control are redefined as parameters)
from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack
from tests.integration.test_access_control import Org, Owned, alices_work, org  # noqa: F401
from tests.support.identity import unique

pytestmark = pytest.mark.integration


def _names(answer: dict[str, Any], key: str) -> set[str]:
    return {str(item["name"]) for item in answer.get(key, [])}


def test_an_escape_in_an_own_models_name_does_not_widen_a_registry_search(
    stack: Stack, org: Org, alices_work: Owned
) -> None:
    """The store reads the list of `name IN (...)` with Python's literal reader, escapes included: a model Bob
    named `alice\\x2dmodel-...` once stood for Alice's `alice-model-...` in the filter narrowing his search, and
    his registry searches returned her model and its versions."""
    bob = org.bob.http(stack)
    hers = alices_work.model_name
    lookalike = hers.replace("-", "\\x2d", 1)
    assert lookalike != hers
    created = bob.post(f"{stack.url}/api/2.0/mlflow/registered-models/create", json={"name": lookalike})
    assert created.status_code == 200, created.text

    models = bob.get(f"{stack.url}/api/2.0/mlflow/registered-models/search", params={"max_results": 1000})
    assert models.status_code == 200, models.text
    assert hers not in _names(models.json(), "registered_models")
    versions = bob.get(f"{stack.url}/api/2.0/mlflow/model-versions/search", params={"max_results": 1000})
    assert versions.status_code == 200, versions.text
    assert hers not in _names(versions.json(), "model_versions")
    # Alice still finds her model and its version: the narrowing keeps what is readable.
    alice = org.alice.http(stack)
    own = alice.get(f"{stack.url}/api/2.0/mlflow/model-versions/search", params={"filter": f"name = '{hers}'"})
    assert own.status_code == 200, own.text
    assert _names(own.json(), "model_versions") == {hers}


def test_ids_in_the_query_of_a_call_the_store_reads_from_its_body_authorize_nothing(
    stack: Stack, org: Org, alices_work: Owned
) -> None:
    """MLflow reads a POST's parameters from its JSON body only; the guard read the query string too. An issue
    search naming Bob's experiment in the query and nothing in the body passed the guard, and the store, given no
    experiment, searched every issue of the workspace: Alice's included."""
    alice, bob = org.alice.http(stack), org.bob.http(stack)
    issue = alice.post(
        f"{stack.url}/api/3.0/mlflow/issues",
        json={"experiment_id": alices_work.experiment_id, "name": "alice's issue", "description": "hers alone"},
    )
    assert issue.status_code == 200, issue.text
    issue_id = issue.json()["issue"]["issue_id"]
    mine = bob.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("bob-issues")})
    assert mine.status_code == 200, mine.text
    own = mine.json()["experiment_id"]

    found = bob.post(f"{stack.url}/api/3.0/mlflow/issues/search", params={"experiment_id": own}, json={})
    assert found.status_code == 400, found.text
    assert found.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert issue_id not in found.text
    # Named in the body, Bob's search is his experiment's; Alice's own search finds her issue.
    own_search = bob.post(f"{stack.url}/api/3.0/mlflow/issues/search", json={"experiment_id": own})
    assert own_search.status_code == 200, own_search.text
    assert own_search.json().get("issues", []) == []
    hers = alice.post(f"{stack.url}/api/3.0/mlflow/issues/search", json={"experiment_id": alices_work.experiment_id})
    assert hers.status_code == 200, hers.text
    assert [i["issue_id"] for i in hers.json()["issues"]] == [issue_id]
