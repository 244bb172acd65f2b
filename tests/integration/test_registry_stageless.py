"""The tag-plus-alias fallback, against a real gateway (its own database) whose store is declared to have no stages
(`registry_stages = false`, a real mlflow server): approvals, Databricks' direct transition and the stock client's
transition_model_version_stage record a version's stage as the tag `fedgate.stage` and the alias `staging` or
`production`, archive_existing_versions archives by tag, the store's own stage is never touched, and neither the
tag nor the stage aliases can be written around the workflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, unique
from tests.support.own_gateway import own_gateway

pytestmark = pytest.mark.integration

WORKSPACE = "stageless"


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[GatewayProcess]:
    with own_gateway(
        stack.database_url,
        stack.workdir / "registry_stageless.toml",
        f"""
[account]
id = "7001"
[stores.b]
url = "{stack.stores["b"].url}"
registry_stages = false
[[workspaces]]
name = "{WORKSPACE}"
id = "5001"
store = "b"
""",
        prefix="registry_stageless",
    ) as own:
        yield own.process


def call(gateway: GatewayProcess, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE}
    return requests.request(method, f"{gateway.url}/api/2.0/mlflow/{path}", headers=headers, timeout=60, **kw)


def ok(gateway: GatewayProcess, method: str, path: str, **kw: Any) -> dict[str, Any]:
    answer = call(gateway, method, path, **kw)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def on_store(stack: Stack, name: str) -> tuple[dict[str, tuple[str, str | None]], dict[str, str]]:
    """As the store holds them: each version's own stage and `fedgate.stage` tag, and the model's aliases."""
    store = stack.stores["b"].url
    found = requests.get(
        f"{store}/api/2.0/mlflow/model-versions/search", params={"filter": f"name = '{name}'"}, timeout=60
    ).json()["model_versions"]
    versions = {
        v["version"]: (v["current_stage"], {t["key"]: t.get("value") for t in v.get("tags", [])}.get("fedgate.stage"))
        for v in found
    }
    model = requests.get(f"{store}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=60).json()
    return versions, {a["alias"]: a["version"] for a in model["registered_model"].get("aliases", [])}


def test_stages_are_tags_and_aliases_on_a_store_without_stages(
    stack: Stack, gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("stageless")
    experiment_id = ok(gateway, "POST", "experiments/create", json={"name": unique("stageless")})["experiment_id"]
    run_id = ok(gateway, "POST", "runs/create", json={"experiment_id": experiment_id})["run"]["info"]["run_id"]
    ok(gateway, "POST", "registered-models/create", json={"name": name})
    for _ in range(2):
        ok(
            gateway,
            "POST",
            "model-versions/create",
            json={"name": name, "source": f"runs:/{run_id}/m", "run_id": run_id},
        )

    # An approved request: the tag and the alias, not the store's own stage.
    ok(gateway, "POST", "transition-requests/create", json={"name": name, "version": "1", "stage": "Production"})
    approved = ok(
        gateway,
        "POST",
        "transition-requests/approve",
        json={"name": name, "version": "1", "stage": "Production", "archive_existing_versions": False},
    )["activity"]
    assert (approved["from_stage"], approved["to_stage"]) == ("None", "Production")
    assert on_store(stack, name) == ({"1": ("None", "Production"), "2": ("None", None)}, {"production": "1"})

    # The stock client's transition, with archive_existing_versions: the stage is read from the tag.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_workspace(WORKSPACE)
    try:
        client = MlflowClient(tracking_uri=gateway.url)
        moved = client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
        assert moved.current_stage == "Production"
        assert on_store(stack, name) == ({"1": ("None", "Archived"), "2": ("None", "Production")}, {"production": "2"})

        # Neither the tag nor a stage alias is written around the workflow; other tags and aliases are.
        for attempt in (
            lambda: client.set_model_version_tag(name, "1", "fedgate.stage", "Production"),
            lambda: client.delete_model_version_tag(name, "2", "fedgate.stage"),
            lambda: client.set_registered_model_alias(name, "production", "1"),
            lambda: client.delete_registered_model_alias(name, "production"),
        ):
            with pytest.raises(MlflowException) as refused:
                attempt()
            assert refused.value.error_code == "PERMISSION_DENIED"
        client.set_model_version_tag(name, "1", "owner", "ml-team")
        client.set_registered_model_alias(name, "champion", "1")
    finally:
        mlflow.set_workspace(None)

    # Databricks' direct transition out of Production: the production alias leaves the version.
    direct = ok(
        gateway,
        "POST",
        "databricks/model-versions/transition-stage",
        json={"name": name, "version": "2", "stage": "Staging", "archive_existing_versions": False},
    )["model_version_databricks"]
    assert direct["current_stage"] == "Staging"
    assert on_store(stack, name) == (
        {"1": ("None", "Archived"), "2": ("None", "Staging")},
        {"staging": "2", "champion": "1"},
    )
    assert (
        call(gateway, "POST", "alias-requests/create", json={"name": name, "alias": "staging", "version": "1"}).json()[
            "error_code"
        ]
        == "PERMISSION_DENIED"
    )
    log = ok(gateway, "GET", "activities/list", params={"name": name})["activities"]
    assert [(a["version"], a["activity_type"], a.get("from_stage"), a.get("to_stage")) for a in log] == [
        ("2", "APPLIED_TRANSITION", "Production", "Staging"),
        ("1", "SET_ALIAS", None, None),
        ("1", "SYSTEM_TRANSITION", "Production", "Archived"),
        ("2", "APPLIED_TRANSITION", "None", "Production"),
        ("1", "APPROVED_REQUEST", "None", "Production"),
        ("1", "REQUESTED_TRANSITION", "None", "Production"),
    ]


def test_a_version_number_mlflow_reads_in_another_spelling_is_decided_and_logged_as_that_version(
    stack: Stack, gateway: GatewayProcess
) -> None:
    """MLflow's store reads a version with Python's `int` (`+1`, ` 1`, `0_1`, a fullwidth one (U+FF11) are all
    version 1). The workflow took such a spelling for no version at all: the level asked was that of a version in no
    stage, and the store then moved version 1 out of Production for a holder of CAN_MANAGE_STAGING_VERSIONS,
    unlogged."""
    admin = Admin(gateway.url)
    staging = admin.person(f"{unique('stager')}@example.com")
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=staging.name)
    name = unique("spelt")
    experiment_id = ok(gateway, "POST", "experiments/create", json={"name": unique("spelt")})["experiment_id"]
    run_id = ok(gateway, "POST", "runs/create", json={"experiment_id": experiment_id})["run"]["info"]["run_id"]
    ok(gateway, "POST", "registered-models/create", json={"name": name})
    ok(gateway, "POST", "model-versions/create", json={"name": name, "source": f"runs:/{run_id}/m", "run_id": run_id})
    ok(
        gateway,
        "POST",
        "databricks/model-versions/transition-stage",
        json={"name": name, "version": "1", "stage": "Production", "archive_existing_versions": False},
    )
    model_id = ok(gateway, "GET", "databricks/registered-models/get", params={"name": name})[
        "registered_model_databricks"
    ]["id"]
    admin.grant(f"registered-models/{model_id}", "CAN_MANAGE_STAGING_VERSIONS", user=staging.name, workspace=WORKSPACE)
    http = staging.http(stack, WORKSPACE)
    for spelt in ("+1", " 1", "0_1", "\uff11"):
        for path in ("model-versions/transition-stage", "databricks/model-versions/transition-stage"):
            body = {"name": name, "version": spelt, "stage": "Staging", "archive_existing_versions": False}
            moved = http.post(f"{gateway.url}/api/2.0/mlflow/{path}", json=body, timeout=60)
            assert moved.status_code in (400, 403), (spelt, path, moved.text)
            assert moved.json()["error_code"] in ("PERMISSION_DENIED", "INVALID_PARAMETER_VALUE"), moved.text
    assert on_store(stack, name) == ({"1": ("None", "Production")}, {"production": "1"})

    # The admin's move in such a spelling is version 1's, and lands in the log as version 1's.
    moved = call(
        gateway,
        "POST",
        "model-versions/transition-stage",
        json={"name": name, "version": "+1", "stage": "Staging", "archive_existing_versions": False},
    )
    assert moved.status_code == 200, moved.text
    assert on_store(stack, name) == ({"1": ("None", "Staging")}, {"staging": "1"})
    log = ok(gateway, "GET", "activities/list", params={"name": name})["activities"]
    assert [(a["version"], a["activity_type"], a.get("from_stage"), a.get("to_stage")) for a in log] == [
        ("1", "APPLIED_TRANSITION", "Production", "Staging"),
        ("1", "APPLIED_TRANSITION", "None", "Production"),
    ]


def test_a_stage_spelt_with_blanks_around_asks_the_level_of_that_stage(stack: Stack, gateway: GatewayProcess) -> None:
    """On a store without stages the workflow reads the stage of MLflow's transition-stage with blanks around it
    (` Production`, `Production\\t`, a no-break space) as that stage, but the level it asked read them as some other
    stage: a holder of CAN_MANAGE_STAGING_VERSIONS moved a version into Production."""
    admin = Admin(gateway.url)
    staging = admin.person(f"{unique('stager')}@example.com")
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=staging.name)
    name = unique("blank")
    experiment_id = ok(gateway, "POST", "experiments/create", json={"name": unique("blank")})["experiment_id"]
    run_id = ok(gateway, "POST", "runs/create", json={"experiment_id": experiment_id})["run"]["info"]["run_id"]
    ok(gateway, "POST", "registered-models/create", json={"name": name})
    ok(gateway, "POST", "model-versions/create", json={"name": name, "source": f"runs:/{run_id}/m", "run_id": run_id})
    model_id = ok(gateway, "GET", "databricks/registered-models/get", params={"name": name})[
        "registered_model_databricks"
    ]["id"]
    admin.grant(f"registered-models/{model_id}", "CAN_MANAGE_STAGING_VERSIONS", user=staging.name, workspace=WORKSPACE)
    http = staging.http(stack, WORKSPACE)
    for stage in (" Production", "Production\t", "production\u00a0", "\nPRODUCTION"):
        body = {"name": name, "version": "1", "stage": stage, "archive_existing_versions": False}
        moved = http.post(f"{gateway.url}/api/2.0/mlflow/model-versions/transition-stage", json=body, timeout=60)
        assert (moved.status_code, moved.json()["error_code"]) == (403, "PERMISSION_DENIED"), (stage, moved.text)
    assert on_store(stack, name) == ({"1": ("None", None)}, {})
    assert ok(gateway, "GET", "activities/list", params={"name": name})["activities"] == []
