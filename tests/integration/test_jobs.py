"""The store's jobs through the gateway: jobs follow what they act on (federation/guard/jobs.py).

A gateway of its own (its own database) with two workspaces: `jobs-a`, linked in dual mode to a store that runs
MLflow's job runner (its copies go to the stack's central store), and `jobs-b` on the stack's store b. The web
UI's calls that start jobs (a scorer on traces, an evaluation run, issue detection), MLflow's generic job API,
prompt optimisation and the prompt lab's run are called as the UI and clients call them; the runs the stock
client logs are the stock client's. Every refusal is checked to have left the store without a job: its own job
list is read directly.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import pytest
import requests
from mlflow.genai.judges import make_judge
from mlflow.genai.scorers import scorer

from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import Stack
from tests.databases import rows
from tests.support.identity import Admin, Person, unique
from tests.support.own_gateway import own_gateway
from tests.support.stock_client import stock_client_env

pytestmark = pytest.mark.integration

DUAL, OTHER = "jobs-a", "jobs-b"
ALLOWED_PROVIDER = "https://api.openai.com/v1"  # the gateway's allow-list holds OpenAI's API and nothing else
TIMEOUT = 60


@dataclass
class Jobs:
    gateway: GatewayProcess
    primary: MlflowServer  # jobs-a's own store, with MLflow's job runner
    central: MlflowServer
    database_url: str
    admin: Admin
    owner: Person  # may use jobs-a; created the experiment (CAN_MANAGE on it) and registered the prompt
    reader: Person  # CAN_READ on the experiment
    stranger: Person  # may use jobs-a, holds nothing on the experiment
    manager: Person  # CAN_MANAGE on the workspace jobs-a
    experiment_id: str
    experiment_name: str
    trace_id: str  # a trace of the experiment
    hidden_experiment: str  # an experiment of jobs-a the owner holds nothing on
    hidden_run: str  # a run of it
    hidden_trace: str  # a trace of it
    other_run: str  # a run of jobs-b

    def call(self, who: Person | Admin, method: str, path: str, workspace: str = DUAL, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {who.token}", "X-MLFLOW-WORKSPACE": workspace}
        return requests.request(method, f"{self.gateway.url}{path}", headers=headers, timeout=TIMEOUT, **kw)

    def store_jobs(self, **params: Any) -> list[dict[str, Any]]:
        """The jobs the store itself has with these parameters (read from the store, not through the gateway)."""
        found = requests.post(f"{self.primary.url}/ajax-api/3.0/jobs/search", json={"params": params}, timeout=TIMEOUT)
        assert found.status_code == 200, found.text
        return list(found.json()["jobs"])


def _stock_client_as(url: str, person: Person) -> None:
    os.environ.update(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_TOKEN=person.token, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    mlflow.set_tracking_uri(url)
    mlflow.set_workspace(DUAL)


def _log_trace(experiment_id: str) -> str:
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_span("answer") as span:
        span.set_inputs({"question": "why"})
        span.set_outputs({"answer": "because"})
        trace_id = span.trace_id
    mlflow.flush_trace_async_logging()
    return str(trace_id)


@pytest.fixture(scope="module")
def jobs(stack: Stack) -> Iterator[Jobs]:
    primary = MlflowServer(stack.workdir / "jobs-primary", jobs=True).start(timeout=180)
    try:
        _import_first_one_at_a_time(primary)
        with own_gateway(
            stack.database_url,
            stack.workdir / "jobs.toml",
            f"""
[account]
id = "7001"
[stores.primary]
url = "{primary.url}"
[stores.b]
url = "{stack.stores["b"].url}"
[stores.central]
url = "{stack.stores["central"].url}"
workspaces = true
[central]
store = "central"
[outbound]
allowed_destinations = ["{ALLOWED_PROVIDER}"]
[[workspaces]]
name = "{DUAL}"
id = "4001"
store = "primary"
mode = "dual"
[[workspaces]]
name = "{OTHER}"
id = "4002"
store = "b"
""",
            prefix="jobs",
        ) as own:
            gateway, url = own.process, own.config.database_url
            with stock_client_env():  # the stock client is switched between people below
                admin = Admin(gateway.url)
                suffix = uuid.uuid4().hex[:6]
                people = {
                    role: admin.person(f"{role}.{suffix}@example.com")
                    for role in ("owner", "reader", "stranger", "mgr")
                }
                for person in people.values():
                    admin.grant(f"workspaces/{DUAL}", "CAN_USE", user=person.name)
                admin.grant(f"workspaces/{DUAL}", "CAN_MANAGE", user=people["mgr"].name)
                # The hidden experiment, its run and trace: the admin's.
                _stock_client_as(gateway.url, Person("admin", 0, admin.token))
                hidden_experiment = mlflow.create_experiment(unique("jobs-hidden"))
                hidden_trace = _log_trace(hidden_experiment)
                with mlflow.start_run(experiment_id=hidden_experiment) as hidden:
                    pass
                other = admin.http(OTHER)
                other_experiment = other.post(
                    f"{gateway.url}/api/2.0/mlflow/experiments/create", json={"name": unique("jobs-b")}, timeout=TIMEOUT
                ).json()["experiment_id"]
                other_run = other.post(
                    f"{gateway.url}/api/2.0/mlflow/runs/create",
                    json={"experiment_id": other_experiment},
                    timeout=TIMEOUT,
                ).json()["run"]["info"]["run_id"]
                # The owner's experiment and trace, through the stock client.
                _stock_client_as(gateway.url, people["owner"])
                name = unique("jobs")
                experiment_id = mlflow.create_experiment(name)
                trace_id = _log_trace(experiment_id)
                admin.grant(f"experiments/{experiment_id}", "CAN_READ", user=people["reader"].name, workspace=DUAL)
                yield Jobs(
                    gateway, primary, stack.stores["central"], url, admin, people["owner"], people["reader"],
                    people["stranger"], people["mgr"], experiment_id, name, trace_id, hidden_experiment,
                    hidden.info.run_id, hidden_trace, other_run,
                )  # fmt: skip
    finally:
        primary.stop()


def _import_first_one_at_a_time(server: MlflowServer) -> None:
    """MLflow 3.17.2 imports its job functions (a post-import hook of `mlflow.server.jobs.utils`, under a lock of
    its own) on the first job call, and `mlflow.server.auth` on the first runs search: the two first uses at once
    deadlock the store's worker threads on Python's module locks (py-spy: `submit_job` in `_load_function` and
    `search_runs_impl` each waiting for the other's module). The gateway's index sync and relay search runs while
    a test starts its first job, so each is used once, alone, before the gateway starts."""
    searched = requests.post(f"{server.url}/api/2.0/mlflow/runs/search", json={"experiment_ids": ["0"]}, timeout=120)
    assert searched.status_code == 200, searched.text
    refused = requests.post(f"{server.url}/ajax-api/3.0/jobs/", json={"job_name": "none", "params": {}}, timeout=120)
    assert refused.status_code == 400, refused.text  # "Invalid job name": the job functions are loaded


def _judge(model: str = "openai:/gpt-4o-mini", **inference_params: Any) -> str:
    judge = make_judge(
        name="helpful",
        instructions="Is {{ outputs }} a helpful answer?",
        model=model,
        feedback_value_type=bool,
        inference_params=inference_params or None,
    )
    return json.dumps(judge.model_dump())


def _custom_scorer() -> str:
    @scorer
    def short(outputs: Any) -> bool:
        return len(str(outputs)) < 100

    return json.dumps(short.model_dump())


def _error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code, response.text
    return str(response.json()["message"])


def _pairs(run: dict[str, Any], kind: str) -> dict[str, str]:
    return {pair["key"]: pair["value"] for pair in run["data"].get(kind) or []}


def _central_copy(jobs: Jobs, run_id: str, holds: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    """The central store's copy of a run of jobs-a once the relay made it and `holds` is true of it (up to 120 s).

    The relay creates the copy before it copies the run's params, tags and metrics, so a test that reads them
    waits for them."""
    central = requests.Session()
    central.headers["X-MLFLOW-WORKSPACE"] = DUAL
    deadline = time.monotonic() + 120
    while True:
        found = central.post(
            f"{jobs.central.url}/api/2.0/mlflow/experiments/search",
            json={"filter": f"name = '{jobs.experiment_name}'", "max_results": 1},
            timeout=TIMEOUT,
        ).json()
        for experiment in found.get("experiments") or []:
            runs = central.post(
                f"{jobs.central.url}/api/2.0/mlflow/runs/search",
                json={
                    "experiment_ids": [experiment["experiment_id"]],
                    "filter": f"tags.`fedgate.source_run_id` = '{run_id}'",
                },
                timeout=TIMEOUT,
            ).json()
            if runs.get("runs") and holds(runs["runs"][0]):
                return dict(runs["runs"][0])
        assert time.monotonic() < deadline, f"run {run_id} was not copied to the central store"
        time.sleep(1)


# -- starting a job ---------------------------------------------------------------------------------------


def test_a_scorer_job_is_started_and_cancelled_by_its_experiments_editors_and_read_by_its_readers(jobs: Jobs) -> None:
    body = {"experiment_id": jobs.experiment_id, "serialized_scorer": _judge(), "trace_ids": [jobs.trace_id]}
    started = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    assert started.status_code == 200, started.text
    [job] = started.json()["jobs"]
    job_id = job["job_id"]
    assert job["trace_ids"] == [jobs.trace_id]

    refused = jobs.call(jobs.reader, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    _error(refused, 403, "PERMISSION_DENIED")
    refused = jobs.call(jobs.stranger, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    assert _error(refused, 404, "RESOURCE_DOES_NOT_EXIST") == f"No Experiment with id={jobs.experiment_id} exists"

    for path in (f"/ajax-api/3.0/jobs/{job_id}", f"/ajax-api/3.0/mlflow/jobs/{job_id}"):
        assert jobs.call(jobs.owner, "GET", path).status_code == 200
        # A reader of the experiment reads the job: its traces and its results are the experiment's.
        read = jobs.call(jobs.reader, "GET", path)
        assert read.status_code == 200, read.text
        assert "status" in read.json() and read.json().get("job_id", job_id) == job_id  # the UI's route names none
        assert _error(jobs.call(jobs.stranger, "GET", path), 404, "RESOURCE_DOES_NOT_EXIST") == (
            f"Job with ID {job_id} not found"
        )

    # Cancelled while it is still pending (the store refuses to cancel a job that has ended); still read after.
    _error(jobs.call(jobs.reader, "PATCH", f"/ajax-api/3.0/jobs/cancel/{job_id}"), 403, "PERMISSION_DENIED")
    cancelled = jobs.call(jobs.owner, "PATCH", f"/ajax-api/3.0/mlflow/jobs/cancel/{job_id}")
    assert cancelled.status_code == 200, cancelled.text

    def listed(who: Person) -> list[str]:
        found = jobs.call(who, "POST", "/ajax-api/3.0/jobs/search", json={"job_name": "invoke_scorer"})
        assert found.status_code == 200, found.text
        return [item["job_id"] for item in found.json()["jobs"]]

    assert job_id in listed(jobs.owner) and job_id in listed(jobs.reader)
    assert listed(jobs.stranger) == []


def test_a_job_naming_another_workspaces_run_or_a_hidden_experiments_objects_never_reaches_the_store(
    jobs: Jobs,
) -> None:
    def submit(**params: Any) -> requests.Response:
        body = {
            "job_name": "invoke_genai_evaluate",
            "params": {
                "experiment_id": jobs.experiment_id,
                "trace_ids": [jobs.trace_id],
                "serialized_scorers": [_judge()],
                "scorer_versions": [None],
                **params,
            },
        }
        return jobs.call(jobs.owner, "POST", "/ajax-api/3.0/jobs/", json=body)

    for run_id in (jobs.other_run, jobs.hidden_run):
        assert _error(submit(run_id=run_id), 404, "RESOURCE_DOES_NOT_EXIST") == f"Run with id={run_id} not found"
        assert jobs.store_jobs(run_id=run_id) == []
    hidden = submit(run_id=jobs.other_run, trace_ids=[jobs.hidden_trace])
    assert _error(hidden, 404, "RESOURCE_DOES_NOT_EXIST") == f"Trace with ID {jobs.hidden_trace} is not found."
    body = {"experiment_id": jobs.experiment_id, "serialized_scorer": _judge(), "trace_ids": [jobs.hidden_trace]}
    refused = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    _error(refused, 404, "RESOURCE_DOES_NOT_EXIST")
    # A trace the caller may read, of another of its experiments: refused in MLflow's words.
    _stock_client_as(jobs.gateway.url, jobs.owner)
    mine = mlflow.create_experiment(unique("jobs-mine"))
    elsewhere = _log_trace(mine)
    mlflow.set_experiment(experiment_id=jobs.experiment_id)
    body["trace_ids"] = [elsewhere]
    refused = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    assert _error(refused, 403, "PERMISSION_DENIED") == "Not all requested traces could be accessed."
    assert [j for j in jobs.store_jobs(experiment_id=jobs.experiment_id) if elsewhere in j["params"]["trace_ids"]] == []
    # A job the gateway has no rule for, and online scoring (the store's scheduler starts it): refused.
    for job_name in ("run_online_trace_scorer", "no_such_job"):
        body = {"job_name": job_name, "params": {"experiment_id": jobs.experiment_id, "online_scorers": []}}
        _error(jobs.call(jobs.owner, "POST", "/ajax-api/3.0/jobs/", json=body), 403, "PERMISSION_DENIED")


def test_a_call_naming_more_traces_than_the_gateway_reads_is_refused_before_any_is_read(jobs: Jobs) -> None:
    """Every trace a call names is read from the store before the call is sent (MLflow reads them in one query):
    their number was bounded only by the body limit, and a job start naming a million short ids held a million
    reads in the gateway at once. 10,000 distinct traces at most; beyond, 400 before the store is asked."""
    many = [jobs.trace_id, *(f"tr-{i:x}" for i in range(10_000))]  # 10,001 distinct, one of them real
    body = {"experiment_id": jobs.experiment_id, "serialized_scorer": _judge(), "trace_ids": many}
    refused = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    message = _error(refused, 400, "INVALID_PARAMETER_VALUE")
    assert message == "This call names 10,001 traces; one call may name at most 10,000. Split it into several calls."
    submitted = {"job_name": "invoke_genai_evaluate", "params": {**body, "serialized_scorers": [_judge()]}}
    _error(jobs.call(jobs.owner, "POST", "/ajax-api/3.0/jobs/", json=submitted), 400, "INVALID_PARAMETER_VALUE")
    assert [j for j in jobs.store_jobs(experiment_id=jobs.experiment_id) if "tr-0" in j["params"]["trace_ids"]] == []
    # Repeated ids count once, as the store reads them: the same trace 20,000 times is one trace.
    body["trace_ids"] = [jobs.trace_id] * 20_000
    started = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    assert started.status_code == 200, started.text
    [job] = started.json()["jobs"]
    jobs.call(jobs.owner, "PATCH", f"/ajax-api/3.0/jobs/cancel/{job['job_id']}")  # refused once it has ended
    # The other calls naming traces by id are bounded alike: a deletion of 10,001 traces.
    deletion = {"experiment_id": jobs.experiment_id, "request_ids": many}
    refused = jobs.call(jobs.owner, "POST", "/api/2.0/mlflow/traces/delete-traces", json=deletion)
    _error(refused, 400, "INVALID_PARAMETER_VALUE")


def test_a_scorer_carrying_its_own_code_is_for_workspace_managers(jobs: Jobs) -> None:
    body = {"experiment_id": jobs.experiment_id, "serialized_scorer": _custom_scorer(), "trace_ids": [jobs.trace_id]}
    _error(jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body), 403, "PERMISSION_DENIED")
    register = {"experiment_id": jobs.experiment_id, "name": "short", "serialized_scorer": _custom_scorer()}
    _error(jobs.call(jobs.owner, "POST", "/api/3.0/mlflow/scorers/register", json=register), 403, "PERMISSION_DENIED")
    # A workspace manager passes the gateway; this store does not run custom scorers (its own refusal, 400).
    jobs.admin.grant(f"experiments/{jobs.experiment_id}", "CAN_EDIT", user=jobs.manager.name, workspace=DUAL)
    passed = jobs.call(jobs.manager, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    assert "MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS" in _error(passed, 400, "INVALID_PARAMETER_VALUE")


def test_where_a_jobs_llm_calls_go_is_checked_against_the_allow_list(jobs: Jobs) -> None:
    body = {
        "experiment_id": jobs.experiment_id,
        "serialized_scorer": _judge("anthropic:/claude-sonnet-4"),
        "trace_ids": [jobs.trace_id],
    }
    refused = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body)
    assert "api.anthropic.com" in _error(refused, 403, "PERMISSION_DENIED")
    body["serialized_scorer"] = _judge(api_base="http://169.254.169.254/latest")
    _error(
        jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/scorer/invoke", json=body), 400, "INVALID_PARAMETER_VALUE"
    )
    issues = {
        "experiment_id": jobs.experiment_id,
        "trace_ids": [jobs.trace_id],
        "categories": ["correctness"],
        "provider": "anthropic",
        "model": "claude-sonnet-4",
    }
    refused = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/issues/invoke", json=issues)
    _error(refused, 403, "PERMISSION_DENIED")
    assert jobs.store_jobs(experiment_id=jobs.experiment_id, model="anthropic:/claude-sonnet-4") == []


# -- runs the store creates for jobs and the prompt lab: the account index and the dual relay see them ---------


def test_an_evaluation_runs_run_is_indexed_routed_and_mirrored(jobs: Jobs) -> None:
    body = {"experiment_id": jobs.experiment_id, "trace_ids": [jobs.trace_id], "serialized_scorers": [_judge()]}
    _error(jobs.call(jobs.reader, "POST", "/ajax-api/3.0/mlflow/genai/evaluate/invoke", json=body), 403,
           "PERMISSION_DENIED")  # fmt: skip
    started = jobs.call(jobs.owner, "POST", "/ajax-api/3.0/mlflow/genai/evaluate/invoke", json=body)
    assert started.status_code == 200, started.text
    job_id, run_id = started.json()["job_id"], started.json()["run_id"]
    assert jobs.call(jobs.owner, "GET", f"/ajax-api/3.0/mlflow/jobs/{job_id}").status_code == 200
    assert rows(jobs.database_url, "SELECT run_id FROM ix_runs WHERE run_id = $1", run_id) == [{"run_id": run_id}]
    assert rows(jobs.database_url, "SELECT workspace FROM run_routes WHERE run_id = $1", run_id) == [
        {"workspace": DUAL}
    ]
    copy = _central_copy(jobs, run_id, lambda run: "mlflow.runType" in _pairs(run, "tags"))
    assert _pairs(copy, "tags")["mlflow.runType"] == "genai_evaluate"


def test_the_prompt_labs_run_follows_its_experiment_and_is_indexed_and_mirrored(jobs: Jobs) -> None:
    body = {
        "experiment_id": jobs.experiment_id,
        "prompt_template": "Answer {{ question }}",
        "prompt_parameters": [{"key": "question", "value": "why"}],
        "model_route": "chat",
        "model_parameters": [{"key": "temperature", "value": "0.1"}],
        "model_input": "Answer why",
        "model_output": "because",
        "mlflow_version": mlflow.__version__,
        "user_id": "someone",
    }
    path = "/ajax-api/2.0/mlflow/runs/create-promptlab-run"
    _error(jobs.call(jobs.reader, "POST", path, json=body), 403, "PERMISSION_DENIED")
    _error(jobs.call(jobs.stranger, "POST", path, json=body), 404, "RESOURCE_DOES_NOT_EXIST")
    created = jobs.call(jobs.owner, "POST", path, json=body)
    assert created.status_code == 200, created.text
    run_id = created.json()["run"]["info"]["run_id"]
    indexed = rows(jobs.database_url, "SELECT params->>'prompt_template' AS t FROM ix_runs WHERE run_id = $1", run_id)
    assert indexed == [{"t": "Answer {{ question }}"}]
    copy = _central_copy(jobs, run_id, lambda run: "prompt_template" in _pairs(run, "params"))
    assert _pairs(copy, "params")["prompt_template"] == "Answer {{ question }}"


def test_a_prompt_optimisation_needs_the_prompt_and_its_jobs_are_listed_to_who_may_see_them(jobs: Jobs) -> None:
    # A prompt version's source is no run or logged model: only an account admin registers one here. The owner
    # gets CAN_EDIT on it.
    _stock_client_as(jobs.gateway.url, Person("admin", 0, jobs.admin.token))
    prompt = mlflow.genai.register_prompt(name=unique("jobs-prompt"), template="Answer {{ question }}")
    databricks_get = "/api/2.0/mlflow/databricks/registered-models/get"
    found = jobs.call(jobs.admin, "GET", databricks_get, params={"name": prompt.name})
    assert found.status_code == 200, found.text
    model_id = found.json()["registered_model_databricks"]["id"]
    jobs.admin.grant(f"registered-models/{model_id}", "CAN_EDIT", user=jobs.owner.name, workspace=DUAL)
    _stock_client_as(jobs.gateway.url, jobs.owner)
    body = {
        "experiment_id": jobs.experiment_id,
        "source_prompt_uri": f"prompts:/{prompt.name}/{prompt.version}",
        "config": {
            "optimizer_type": "OPTIMIZER_TYPE_METAPROMPT",
            "scorers": ["helpful"],
            "optimizer_config_json": json.dumps({"reflection_model": "openai:/gpt-4o-mini"}),
        },
    }
    path = "/api/3.0/mlflow/prompt-optimization/jobs"
    # The reader, now allowed to change the experiment, holds nothing on the prompt.
    jobs.admin.grant(f"experiments/{jobs.experiment_id}", "CAN_EDIT", user=jobs.reader.name, workspace=DUAL)
    refused = jobs.call(jobs.reader, "POST", path, json=body)
    assert _error(refused, 404, "RESOURCE_DOES_NOT_EXIST") == f"Registered Model with name={prompt.name} not found"
    anthropic = {**body, "config": {**body["config"], "optimizer_config_json": '{"reflection_model": "anthropic:/x"}'}}
    _error(jobs.call(jobs.owner, "POST", path, json=anthropic), 403, "PERMISSION_DENIED")
    assert [j for j in jobs.store_jobs(experiment_id=jobs.experiment_id) if j["job_name"] == "optimize_prompts"] == []

    created = jobs.call(jobs.owner, "POST", path, json=body)
    assert created.status_code == 200, created.text
    job = created.json()["job"]
    job_id, run_id = job["job_id"], job["run_id"]
    # Cancelled at once, while it is still pending: the store refuses to cancel a job that has ended.
    _error(jobs.call(jobs.reader, "POST", f"{path}/{job_id}/cancel"), 404, "RESOURCE_DOES_NOT_EXIST")
    cancelled = jobs.call(jobs.owner, "POST", f"{path}/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert jobs.call(jobs.owner, "GET", f"{path}/{job_id}").json()["job"]["job_id"] == job_id
    # The job shows the prompt it optimises: not to a caller who may not read that prompt.
    _error(jobs.call(jobs.reader, "GET", f"{path}/{job_id}"), 404, "RESOURCE_DOES_NOT_EXIST")
    search = f"{path}/search"
    assert [j["job_id"] for j in jobs.call(jobs.owner, "GET", search, params={"experiment_id": jobs.experiment_id})
            .json()["jobs"]] == [job_id]  # fmt: skip
    assert (
        jobs.call(jobs.reader, "POST", search, json={"experiment_id": jobs.experiment_id}).json().get("jobs", []) == []
    )
    # Once they may read it, they read and list the job, and still do not change it (it writes the prompt).
    jobs.admin.grant(f"registered-models/{model_id}", "CAN_READ", user=jobs.reader.name, workspace=DUAL)
    read = jobs.call(jobs.reader, "GET", f"{path}/{job_id}")
    assert read.status_code == 200 and read.json()["job"]["job_id"] == job_id, read.text
    listed = jobs.call(jobs.reader, "POST", search, json={"experiment_id": jobs.experiment_id})
    assert [j["job_id"] for j in listed.json()["jobs"]] == [job_id]
    _error(jobs.call(jobs.stranger, "POST", search, json={"experiment_id": jobs.experiment_id}), 404,
           "RESOURCE_DOES_NOT_EXIST")  # fmt: skip
    assert rows(jobs.database_url, "SELECT run_id FROM ix_runs WHERE run_id = $1", run_id) == [{"run_id": run_id}]
    _central_copy(jobs, run_id)
    _error(jobs.call(jobs.reader, "DELETE", f"{path}/{job_id}"), 403, "PERMISSION_DENIED")
    assert jobs.call(jobs.owner, "DELETE", f"{path}/{job_id}").status_code == 200
