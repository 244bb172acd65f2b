"""The MLflow web UI's pages through the gateway, in a real headless Chromium: models and versions, traces,
compare runs, a run's metric chart, a logged model's files; what a person may not read stays hidden there.

Real mlflow stores behind the session's gateway, a person signed in with a personal access token who may
read one experiment of team-a and one registered model, and the stock client logging as the admin. Each
page is checked in what the browser shows and in the gateway's answers to the UI's own calls. Screenshots:
test-artifacts/ui/ (README, "The web UI").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pytest
import requests
import sklearn
from mlflow import MlflowClient
from mlflow.entities.trace_location import MlflowExperimentLocation
from sklearn.linear_model import LogisticRegression

from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.browser import answered_missing, new_tab, reload_catching, shot, sign_in_with_token
from tests.support.identity import Admin, Person, unique
from tests.support.stock_client import stock_client_env

pytestmark = pytest.mark.integration
WORKSPACE = "team-a"
LOSSES = [round(1.0 / (step + 1), 4) for step in range(12)]


@dataclass
class Gallery:
    url: str
    viewer: Person  # may read the `visible` experiment and the `model` registered model, nothing else
    visible: str  # experiment ids
    hidden: str
    runs: dict[str, str]  # run name -> id: "gbm" and "linear" in `visible`, "payroll-2025" in `hidden`
    model: str  # registered model names (version 1 each, from a logged sklearn model)
    hidden_model: str
    logged_model: str  # logged model ids: `model`'s in `visible`, `hidden_model`'s in `hidden`
    hidden_logged_model: str
    trace: str  # trace ids: one in each experiment
    hidden_trace: str

    def at(self, path: str) -> str:
        """A UI route in team-a."""
        return f"/#/{path}{'&' if '?' in path else '?'}workspace={WORKSPACE}"


@pytest.fixture(scope="module")
def gallery(stack: Stack) -> Iterator[Gallery]:
    admin = Admin.of(stack)
    suite = unique("pages")
    viewer = admin.person(f"{suite}-viewer@example.com")
    group = f"{suite}-viewers"
    admin.group(group, members=[viewer.id])
    names = {"model": f"{suite}-churn-model", "hidden_model": f"{suite}-payroll-model"}
    with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
        features, labels = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.2, 0.9]]), np.array([0, 1, 1, 0])
        runs: dict[str, str] = {}
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace(WORKSPACE)
        client = MlflowClient()
        visible = client.create_experiment(f"{suite} churn")
        hidden = client.create_experiment(f"{suite} payroll")
        for name, rate in (("gbm", "0.05"), ("linear", "0.2")):
            with mlflow.start_run(experiment_id=visible, run_name=name) as run:
                for step, loss in enumerate(LOSSES):
                    mlflow.log_metric("loss", loss if name == "gbm" else loss * 2, step=step)
                mlflow.log_param("learning_rate", rate)
                if name == "gbm":
                    model = LogisticRegression().fit(features, labels)
                    logged = mlflow.sklearn.log_model(model, name="model", registered_model_name=names["model"])
            runs[name] = run.info.run_id
        with mlflow.start_run(experiment_id=hidden, run_name="payroll-2025") as run:
            mlflow.log_metric("loss", 0.3)
            model = LogisticRegression().fit(features, labels)
            hidden_logged = mlflow.sklearn.log_model(model, name="model", registered_model_name=names["hidden_model"])
        runs["payroll-2025"] = run.info.run_id
        traces = {}
        for experiment, span_name, question in ((visible, "score_customer", "c-17"), (hidden, "score_salary", "e-4")):
            with mlflow.start_span(span_name, trace_destination=MlflowExperimentLocation(experiment)) as span:
                span.set_inputs({"customer": question})
                span.set_outputs({"churn": 0.83})
                traces[experiment] = span.trace_id
        mlflow.flush_trace_async_logging()
    admin.grant(f"experiments/{visible}", "CAN_READ", group=group, workspace=WORKSPACE)
    found = admin.http(WORKSPACE).get(
        f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": names["model"]}, timeout=30
    )
    assert found.status_code == 200, found.text
    model_id = found.json()["registered_model_databricks"]["id"]
    admin.grant(f"registered-models/{model_id}", "CAN_READ", group=group, workspace=WORKSPACE)
    yield Gallery(
        stack.url,
        viewer,
        visible,
        hidden,
        runs,
        names["model"],
        names["hidden_model"],
        logged.model_id,
        hidden_logged.model_id,
        traces[visible],
        traces[hidden],
    )


@pytest.fixture
def page(chromium: Any, gallery: Gallery) -> Iterator[Any]:
    """A fresh browser context, signed in as the viewer."""
    with new_tab(chromium, gallery.url) as tab:
        sign_in_with_token(tab, gallery.viewer.token)
        yield tab


def calls(fragment: str) -> Any:
    """A predicate of the UI's calls whose URL holds `fragment` (for page.expect_response)."""
    return lambda response: fragment in response.url


def admin_get(gallery: Gallery, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{gallery.url}/api/2.0/mlflow/{path}",
        params=params,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE},
        timeout=30,
    )


def test_registered_models_and_their_versions(page: Any, gallery: Gallery) -> None:
    # The list: the readable model only.
    with page.expect_response(calls("/registered-models/search")) as listed:
        page.goto(gallery.at("models"))
    assert [m["name"] for m in listed.value.json()["registered_models"]] == [gallery.model]
    page.get_by_text(gallery.model).first.wait_for()
    assert page.get_by_text(gallery.hidden_model).count() == 0
    # A fresh browser's first visit opens MLflow's note on its new registry page; it is closed.
    note = page.get_by_role("dialog").filter(has_text="new Model Registry UI")
    note.get_by_role("button", name="Close").click()
    note.wait_for(state="hidden")
    shot(page, "11-registered-models")

    # The model and its versions, then version 1: its source run, and the MLmodel file of the version
    # (the UI reads its signature through /model-versions/get-artifact).
    page.get_by_role("link", name=gallery.model).first.click()
    version = page.get_by_role("link", name="Version 1")
    version.first.wait_for()
    shot(page, "12-model-versions")
    with page.expect_response(calls("/model-versions/get-artifact")) as mlmodel:
        version.first.click()
    assert mlmodel.value.status == 200 and mlmodel.value.headers["content-type"].startswith("text/plain")
    page.get_by_text("Source Run").first.wait_for()
    page.get_by_role("link", name="gbm").first.wait_for()
    shot(page, "13-model-version")

    # The unreadable model by its URL, and its version: as if neither existed.
    with page.expect_response(calls("/registered-models/get")) as refused:
        page.goto(gallery.at(f"models/{gallery.hidden_model}"))
    assert answered_missing(refused.value, f"Registered Model with name={gallery.hidden_model} not found")
    page.get_by_text(f"Model {gallery.hidden_model} does not exist").wait_for()
    with page.expect_response(calls("/model-versions/get-artifact")) as file_refused:
        page.goto(gallery.at(f"models/{gallery.hidden_model}/versions/1"))
    assert file_refused.value.status == 404
    page.get_by_text(f"Model {gallery.hidden_model} v1 does not exist").wait_for()
    shot(page, "14-hidden-model-refused")

    # A button the person may not use: the description of a model they may only read.
    page.goto(gallery.at(f"models/{gallery.model}"))
    page.get_by_role("link", name="Version 1").first.wait_for()
    page.get_by_text("Edit", exact=True).first.click()
    page.locator("textarea").fill("changed from the browser")
    with page.expect_response(calls("/registered-models/update")) as denied:
        page.get_by_role("button", name="Save").click()
    assert denied.value.status == 403 and denied.value.json()["error_code"] == "PERMISSION_DENIED"
    page.get_by_text("lacks CAN_EDIT on registered model").first.wait_for()
    shot(page, "15-model-edit-refused")
    model = admin_get(gallery, "registered-models/get", name=gallery.model).json()["registered_model"]
    assert not model.get("description")


def test_traces_of_a_readable_experiment_and_no_other(page: Any, gallery: Gallery) -> None:
    with page.expect_response(calls("/traces/search")) as listed:
        page.goto(gallery.at(f"experiments/{gallery.visible}/traces"))
    assert [t["trace_id"] for t in listed.value.json()["traces"]] == [gallery.trace]
    cell = page.get_by_text('{"customer": "c-17"}')
    cell.first.wait_for()
    # The trace: its span tree and data, read through get-trace-artifact.
    with page.expect_response(calls("/get-trace-artifact")) as data:
        cell.first.click()
    assert data.value.status == 200 and "score_customer" in data.value.text()
    page.get_by_text("score_customer").first.wait_for()
    shot(page, "16-trace")

    # The other experiment's trace, opened by its URL in the readable experiment: as if it did not exist.
    with page.expect_response(calls(f"/traces/{gallery.hidden_trace}")) as refused:
        page.goto(gallery.at(f"experiments/{gallery.visible}/traces?selectedEvaluationId={gallery.hidden_trace}"))
    assert answered_missing(refused.value, f"Trace with ID {gallery.hidden_trace} is not found.")
    artifact = page.request.get(
        f"{gallery.url}/ajax-api/3.0/mlflow/get-trace-artifact",
        params={"request_id": gallery.hidden_trace},
        headers={"X-MLFLOW-WORKSPACE": WORKSPACE},
    )
    assert artifact.status == 404
    # And the unreadable experiment's own traces page lists nothing.
    page.goto(gallery.at(f"experiments/{gallery.hidden}/traces"))
    with page.expect_response(calls("/traces/search")) as searched:
        page.reload()  # a fresh page makes the calls read below
    assert searched.value.status == 200 and not searched.value.json().get("traces")
    page.get_by_text(f"No Experiment with id={gallery.hidden} exists").first.wait_for()
    assert page.get_by_text("score_salary").count() == 0 and page.get_by_text('"e-4"').count() == 0
    shot(page, "17-hidden-traces-refused")


def test_compare_runs(page: Any, gallery: Gallery) -> None:
    pair = [gallery.runs["gbm"], gallery.runs["linear"]]
    route = gallery.at(f"compare-runs?runs={json.dumps(pair)}&experiments={json.dumps([gallery.visible])}")
    for _ in range(3):
        # Right after sign-in the UI may still be starting at "/" and replace a hash route given meanwhile
        # (a CI run's page ended at "/"): open the route again until the reloaded page stands on it.
        page.goto(route)
        page.reload()
        if "compare-runs" in page.url:
            break
    page.get_by_text("Comparing 2 Runs from 1 Experiment").wait_for()
    for shown in ("gbm", "linear", "learning_rate", "0.05", "0.2", "loss"):
        page.get_by_text(shown, exact=True).first.wait_for()
    shot(page, "18-compare-runs")

    # A run of the unreadable experiment, named in the URL beside a readable one: never in the answer.
    mixed = [gallery.runs["gbm"], gallery.runs["payroll-2025"]]
    experiments = [gallery.visible, gallery.hidden]
    page.goto(gallery.at(f"compare-runs?runs={json.dumps(mixed)}&experiments={json.dumps(experiments)}"))
    with page.expect_response(calls("/runs/search")) as searched:
        page.reload()  # a fresh page makes the calls read below
    found = [r["info"]["run_id"] for r in searched.value.json().get("runs", [])]
    assert found == [gallery.runs["gbm"]]
    page.get_by_text("Error while loading compare runs page").wait_for()  # as for a run that does not exist
    assert page.get_by_text("payroll-2025").count() == 0


def test_a_run_page_with_its_metric_chart_and_a_hidden_run(page: Any, gallery: Gallery) -> None:
    run_page = f"experiments/{gallery.visible}/runs/{gallery.runs['gbm']}"
    with page.expect_response(calls("/metrics/get-history-bulk-interval")) as history:
        page.goto(gallery.at(f"{run_page}/model-metrics"))
    points = history.value.json()["metrics"]
    assert [p["value"] for p in sorted(points, key=lambda p: p["step"])] == LOSSES
    page.locator("canvas, svg.main-svg").first.wait_for()
    page.get_by_text("gbm (loss)").first.wait_for()
    shot(page, "19-run-metric-chart")

    # A run of the unreadable experiment, by its URL: GraphQL answers as a store does for a missing run,
    # and the UI says it does not exist; the same answer as for a run id that was never created.
    hidden_run = gallery.runs["payroll-2025"]
    page.goto(gallery.at(f"experiments/{gallery.hidden}/runs/{hidden_run}"))
    refused = reload_catching(page, lambda r: "/graphql" in r.url and hidden_run in (r.request.post_data or ""))
    assert answered_missing(refused, f"Run with id={hidden_run} not found")
    page.get_by_text(f"Run ID {hidden_run} does not exist").wait_for()
    shot(page, "20-hidden-run-refused")
    never = "0123456789abcdef0123456789abcdef"
    query = refused.request.post_data_json
    for run_id in (hidden_run, never):
        answer = page.request.post(
            f"{gallery.url}/graphql",
            data={**query, "variables": {"data": {"runId": run_id}}},
            headers={"X-MLFLOW-WORKSPACE": WORKSPACE, "Origin": gallery.url},  # as the UI's own fetch
        )
        assert answer.status == 200 and answer.json() == {
            "data": {"mlflowGetRun": None},
            "errors": [f"Run with id={run_id} not found"],
        }


def test_a_logged_model_and_its_files(page: Any, gallery: Gallery) -> None:
    model_page = f"experiments/{gallery.visible}/models/{gallery.logged_model}"
    page.goto(gallery.at(f"{model_page}/artifacts"))
    page.reload()
    for name in ("MLmodel", "conda.yaml", "model.skops", "python_env.yaml", "requirements.txt"):
        page.get_by_text(name, exact=True).first.wait_for()
    with page.expect_response(calls("artifact_file_path=requirements.txt")) as fetched:
        page.get_by_text("requirements.txt", exact=True).first.click()
    assert fetched.value.status == 200
    page.get_by_text(f"scikit-learn=={sklearn.__version__}").first.wait_for()  # the file, shown by the UI
    shot(page, "21-logged-model-files")

    # Register it as a new version of the model the person may only read: the gateway refuses.
    with page.expect_response(calls("/registered-models/search")) as choices:
        page.get_by_role("button", name="Register model").click()
    assert [m["name"] for m in choices.value.json()["registered_models"]] == [gallery.model]
    page.locator("#selectedModel").click()
    models = page.locator("[class*=select-item-option-grouped]")  # the existing models the UI offers
    models.first.wait_for()
    assert [m.get_attribute("title") for m in models.all()] == [gallery.model]
    models.first.click()
    with page.expect_response(calls("/model-versions/create")) as denied:
        page.get_by_role("button", name="Register", exact=True).click()
    assert denied.value.status == 403 and denied.value.json()["error_code"] == "PERMISSION_DENIED"
    page.get_by_text("lacks CAN_EDIT on registered model").first.wait_for()
    shot(page, "22-register-refused")
    versions = admin_get(gallery, "registered-models/get", name=gallery.model).json()["registered_model"]
    assert [v["version"] for v in versions.get("latest_versions", [])] == ["1"]

    # The other experiment's logged model, by its URL: as if it did not exist.
    page.goto(gallery.at(f"experiments/{gallery.hidden}/models/{gallery.hidden_logged_model}"))
    refused = reload_catching(page, calls(f"/logged-models/{gallery.hidden_logged_model}"))
    assert answered_missing(refused, f"Logged model with ID '{gallery.hidden_logged_model}' not found.")
    files = page.request.get(
        f"{gallery.url}/ajax-api/2.0/mlflow/logged-models/{gallery.hidden_logged_model}/artifacts/files",
        params={"artifact_file_path": "MLmodel"},
        headers={"X-MLFLOW-WORKSPACE": WORKSPACE},
    )
    assert files.status == 404
