"""The leak guard against a real gateway, real mlflow servers and the stock clients (built-in vault): once a run
has read a secret, its writes that carry the secret's value are refused whole, by every replica, and
nothing of them reaches the store or the index; the value is in no answer and no log line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
import requests

from gateway.devstack import GatewayProcess
from tests.conftest import GATEWAY_ENV, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.waiting import logged_so_far, until

pytestmark = pytest.mark.integration

WORKSPACE = "team-a"


@dataclass(frozen=True)
class Secrets:
    scope: str
    password: str  # letters, digits and '-': fits in a param key or metric name
    dsn_password: str  # characters a URI percent-encodes


@dataclass(frozen=True)
class People:
    owner: Person  # creates the scope (MANAGE), runs the training
    colleague: Person  # may edit the owner's experiment, holds nothing on the scope


@pytest.fixture(scope="module")
def people(stack: Stack) -> People:
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('leak-owner')}@example.com")
    colleague = admin.person(f"{unique('leak-colleague')}@example.com")
    for person in (owner, colleague):
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
    return People(owner, colleague)


@pytest.fixture
def secrets(stack: Stack, people: People) -> Iterator[Secrets]:
    found = Secrets(unique("leak-scope"), f"pw-{uuid.uuid4().hex}", f"p@ss/wörd {uuid.uuid4().hex[:12]}")
    owner = people.owner.http(stack, WORKSPACE)
    api = f"{stack.url}/api/2.0/secrets"
    assert owner.post(f"{api}/scopes/create", json={"scope": found.scope}).status_code == 200
    for key, value in (("db-password", found.password), ("dsn-password", found.dsn_password)):
        put = owner.post(f"{api}/put", json={"scope": found.scope, "key": key, "string_value": value})
        assert put.status_code == 200, put.text
    yield found
    owner.post(f"{api}/scopes/delete", json={"scope": found.scope})


def read_secrets(url: str, person: Person, scope: str, run_id: str) -> dict[str, Any]:
    answer = requests.post(
        f"{url}/api/2.0/secrets/get-many",
        json={"scope": scope, "keys": ["db-password", "dsn-password"], "run_id": run_id},
        headers={"Authorization": f"Bearer {person.token}", "X-MLFLOW-WORKSPACE": WORKSPACE},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["values"])


def mlflow_call(url: str, person: Person, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{url}/api/2.0/mlflow/{path}",
        json=body,
        headers={"Authorization": f"Bearer {person.token}", "X-MLFLOW-WORKSPACE": WORKSPACE},
        timeout=60,
    )


def stored_run(stack: Stack, run_id: str) -> str:
    """The run as team-a's own store has it, read around the gateway: info, params, tags, metrics, inputs."""
    answer = requests.get(f"{stack.stores['a'].url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=60)
    assert answer.status_code == 200, answer.text
    return json.dumps(answer.json(), ensure_ascii=False)


def indexed_run(stack: Stack, run_id: str) -> str:
    async def fetch() -> str:
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetch(
                "SELECT r.run_name, r.params::text, r.tags::text, r.datasets::text, "
                "(SELECT string_agg(metric_name, ',') FROM ix_metric_latest m WHERE m.run_key = r.run_key) "
                "FROM ix_runs r WHERE r.run_id = $1",
                run_id,
            )
            return json.dumps([list(row) for row in rows], ensure_ascii=False)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def leak_audit(stack: Stack, scope: str, action: str = "secrets.leak_refused") -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return list(
                await connection.fetch(
                    "SELECT actor, target, outcome, details::text AS details FROM audit_log "
                    "WHERE action = $2 AND target LIKE $1",
                    f"%{scope}",
                    action,
                )
            )
        finally:
            await connection.close()

    return asyncio.run(fetch())


def refused(call: Callable[[], Any]) -> str:
    """The message of the stock client's MlflowException for a call the gateway refused with 400."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as raised:
        call()
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE", raised.value
    return str(raised.value)


def wait_until(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_a_run_that_read_a_secret_cannot_log_its_value_anywhere_a_store_keeps_text(
    mlflow_env: Stack, people: People, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from gateway.client import get_secrets

    stack = mlflow_env
    password, dsn_password = secrets.password, secrets.dsn_password
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", people.owner.token)
    mlflow.set_workspace(WORKSPACE)
    experiment = mlflow.set_experiment(unique("leaky-training"))
    client = MlflowClient()
    bystander = client.create_run(experiment.experiment_id).info.run_id  # reads nothing

    with mlflow.start_run() as run:
        run_id = run.info.run_id
        # Before the read, the run logs whatever it likes.
        mlflow.log_param("early", f"before-{password}")
        # The training script reads its secrets with the client module shipped in the package.
        names = [f"{secrets.scope}/db-password", f"{secrets.scope}/dsn-password"]
        assert get_secrets(names) == dict(zip(names, (password, dsn_password), strict=True))

        messages = [
            ("param value", refused(lambda: mlflow.log_param("db_uri", f"postgresql://u:{password}@db/x"))),
            ("param key", refused(lambda: mlflow.log_param(f"key-{password}", "v"))),
            ("tag value", refused(lambda: mlflow.set_tag("note", f"x{password}y"))),
            ("metric name", refused(lambda: mlflow.log_metric(f"loss-{password}", 0.5))),
            ("run name (tag mlflow.runName)", refused(lambda: mlflow.set_tag("mlflow.runName", f"run {password}"))),
            ("run name", refused(lambda: client.update_run(run_id, name=f"n-{password}"))),
            # log-batch: one bad param among good ones refuses the whole call.
            ("param value", refused(lambda: mlflow.log_params({"fine": "1", "also_fine": "2", "bad": password}))),
            # The value percent-encoded in a connection URI.
            ("param value", refused(lambda: mlflow.log_param("dsn", f"pg://u:{quote(dsn_password, safe='')}@db/x"))),
        ]
        for kind, message in messages:
            assert f"A {kind} of this write contains the value of secret " in message, message
            assert f"of scope {secrets.scope} that this run read" in message, message
            assert password not in message and dsn_password not in message
            assert quote(dsn_password, safe="") not in message

        # Dataset inputs (raw REST: a source naming a database with its password).
        source = json.dumps({"url": f"https://reader:{password}@warehouse.example.com/table"})
        inputs = mlflow_call(
            stack.url,
            people.owner,
            "runs/log-inputs",
            {
                "run_id": run_id,
                "datasets": [{"dataset": {"name": "d", "digest": "abc", "source_type": "http", "source": source}}],
            },
        )
        assert inputs.status_code == 400, inputs.text
        assert inputs.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "A dataset input of this write" in inputs.json()["message"] and password not in inputs.text

        # What does not carry the value passes; so does a secret's name.
        mlflow.log_param("db_host", "db.example.com")
        mlflow.log_params({"lr": "0.01", "secret_used": f"{secrets.scope}/db-password"})
        mlflow.set_tag("stage", "train")
        mlflow.log_metric("loss", 0.25)
        client.update_run(run_id, name="clean-name")

        # A colleague who may edit the run but holds nothing on the scope is refused without scope or key.
        Admin.of(stack).grant(
            f"experiments/{experiment.experiment_id}", "CAN_EDIT", user=people.colleague.name, workspace=WORKSPACE
        )
        theirs = mlflow_call(
            stack.url, people.colleague, "runs/log-parameter", {"run_id": run_id, "key": "k", "value": password}
        )
        assert theirs.status_code == 400, theirs.text
        assert "contains the value of a secret that this run read" in theirs.json()["message"]
        assert secrets.scope not in theirs.text and "db-password" not in theirs.text and password not in theirs.text

    # MLflow logs to a finished run too: the guard still refuses.
    assert refused(lambda: client.log_param(run_id, "after", password))

    # Another run, which read nothing, is not concerned.
    client.log_param(bystander, "dsn", password)
    assert password in stored_run(stack, bystander)

    # Nothing refused reached the store or the index; what passed did.
    stored = stored_run(stack, run_id)
    for value in (dsn_password, quote(dsn_password, safe=""), f"n-{password}", f"loss-{password}"):
        assert value not in stored
    assert stored.count(password) == 1 and f"before-{password}" in stored  # logged before the read
    for logged in ('"db_host"', '"lr"', '"stage"', '"loss"', "clean-name"):
        assert logged in stored
    assert '"fine"' not in stored  # the refused log-batch wrote none of its params
    assert wait_until(lambda: "clean-name" in indexed_run(stack, run_id))
    indexed = indexed_run(stack, run_id)
    assert indexed.count(password) == 1 and dsn_password not in indexed and '"fine"' not in indexed

    # Each refusal is audited with run, key and kind of field, never the value (written from a queue, after the
    # refusal was answered).
    expected = len(messages) + 3  # the log-inputs, the colleague's and the finished run's
    rows = until(
        lambda: leak_audit(stack, secrets.scope), lambda rows: len(rows) >= expected, "the refusals' audit rows"
    )
    assert len(rows) == expected, rows
    assert all(row["outcome"] == "denied" and run_id in row["details"] for row in rows)
    assert {people.owner.name, people.colleague.name} == {row["actor"] for row in rows}
    for row in rows:
        assert password not in row["details"] and dsn_password not in row["details"]

    # No value in the gateway's log, with every line of the calls above in it.
    log = logged_so_far(stack.url, stack.gateway.log_path)
    for value in (password, dsn_password, quote(dsn_password, safe="")):
        assert value not in log


def stored(stack: Stack, path: str, body: dict[str, Any] | None = None) -> str:
    """An answer of team-a's own store, read around the gateway (GET, or POST with `body`); "" for a refusal."""
    url = f"{stack.stores['a'].url}{path}"
    answer = requests.post(url, json=body, timeout=60) if body is not None else requests.get(url, timeout=60)
    return json.dumps(answer.json(), ensure_ascii=False) if answer.status_code == 200 else ""


@dataclass(frozen=True)
class TaintedRun:
    experiment_id: str
    run_id: str
    bystander: str  # a run of the same experiment that read nothing


@contextmanager
def tainted_run(people: People, secrets: Secrets, monkeypatch: pytest.MonkeyPatch) -> Iterator[TaintedRun]:
    """An active run of the owner (stock client, its credentials) that read the scope's db-password."""
    import mlflow
    from mlflow import MlflowClient

    from gateway.client import get_secret

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", people.owner.token)
    mlflow.set_workspace(WORKSPACE)
    experiment = mlflow.set_experiment(unique("leaky-agent"))
    bystander = MlflowClient().create_run(experiment.experiment_id).info.run_id
    with mlflow.start_run() as run:
        assert get_secret(f"{secrets.scope}/db-password") == secrets.password
        yield TaintedRun(experiment.experiment_id, run.info.run_id, bystander)


def traced(tags: dict[str, str] | None = None) -> str:
    """A trace recorded with the stock client's `mlflow.start_span` (inside the active run, which it names)."""
    import mlflow

    with mlflow.start_span("lookup") as span:
        span.set_inputs({"table": "orders"})
        if tags:
            mlflow.update_current_trace(tags=tags)
        trace_id = str(span.trace_id)
    mlflow.flush_trace_async_logging()
    return trace_id


def assert_named(messages: list[tuple[str, str]], secrets: Secrets) -> None:
    for kind, message in messages:
        assert f"A {kind} of this write contains the value of secret db-password of scope {secrets.scope}" in (
            message
        ), message
        assert secrets.password not in message


def audited_routes(stack: Stack, secrets: Secrets, run_id: str, count: int) -> list[str]:
    """The routes of the scope's leak refusals once `count` are audited (each with the run, never the value)."""
    rows = until(lambda: leak_audit(stack, secrets.scope), lambda rows: len(rows) >= count, "the refusals' audit")
    assert len(rows) == count, rows
    assert all(run_id in row["details"] and secrets.password not in row["details"] for row in rows)
    return sorted(json.loads(row["details"])["route"] for row in rows)


def test_a_run_that_read_a_secret_cannot_write_its_value_into_its_traces(
    mlflow_env: Stack, people: People, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    stack, password = mlflow_env, secrets.password
    with tainted_run(people, secrets, monkeypatch) as run:
        # A trace recorded inside the run (the stock client names the run in the trace's metadata) tagged with a
        # connection string: its start is refused, and the client only warns, as for any trace it cannot export.
        leaky = traced(tags={"dsn": f"pg://u:{password}@db/x"})
        clean = traced(tags={"table": "orders"})
        assert run.run_id in stored(stack, f"/api/3.0/mlflow/traces/{clean}")
        # A tag set later: linked to the run through the trace's metadata, as the store has it.
        messages = [("trace tag value", refused(lambda: mlflow.set_trace_tag(clean, "note", f"x{password}y")))]
        messages.append(("trace tag key", refused(lambda: mlflow.set_trace_tag(clean, f"k-{password}", "v"))))
        assert_named(messages, secrets)
        mlflow.set_trace_tag(clean, "note", "fine")

        # A colleague who may edit the traces but holds nothing on the scope: the short answer and the same limits
        # as for the run's own writes.
        Admin.of(stack).grant(
            f"experiments/{run.experiment_id}", "CAN_EDIT", user=people.colleague.name, workspace=WORKSPACE
        )
        colleague = people.colleague.http(stack, WORKSPACE)
        tag = colleague.patch(f"{stack.url}/api/3.0/mlflow/traces/{clean}/tags", json={"key": "k", "value": password})
        assert tag.status_code == 400, tag.text
        assert tag.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "contains the value of a secret that this run read" in tag.json()["message"]
        assert "2 more such refusal(s)" in tag.json()["message"]
        assert secrets.scope not in tag.text and "db-password" not in tag.text and password not in tag.text

    traces = stored(stack, f"/api/3.0/mlflow/traces/{clean}") + stored(stack, f"/api/3.0/mlflow/traces/{leaky}")
    assert password not in traces and '"note": "fine"' in traces
    assert audited_routes(stack, secrets, run.run_id, 4) == [
        "PATCH /mlflow/traces/{request_id:str}/tags",
        "PATCH /mlflow/traces/{request_id:str}/tags",
        "PATCH /mlflow/traces/{trace_id:str}/tags",
        "POST /mlflow/traces",
    ]
    assert password not in logged_so_far(stack.url, stack.gateway.log_path)


def test_a_run_that_read_a_secret_cannot_write_its_value_into_assessments_of_its_traces(
    mlflow_env: Stack, people: People, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    stack, password = mlflow_env, secrets.password
    with tainted_run(people, secrets, monkeypatch) as run:
        trace = traced()
        messages = [
            (
                "assessment rationale",
                refused(lambda: mlflow.log_feedback(trace_id=trace, name="ok", value=True, rationale=password)),
            ),
            ("feedback value", refused(lambda: mlflow.log_feedback(trace_id=trace, name="why", value=password))),
            (
                "expectation value",
                refused(lambda: mlflow.log_expectation(trace_id=trace, name="e", value={"answer": password})),
            ),
            (
                "assessment metadata value",
                refused(lambda: mlflow.log_feedback(trace_id=trace, name="m", value=1.0, metadata={"dsn": password})),
            ),
        ]
        assert_named(messages, secrets)
        mlflow.log_feedback(trace_id=trace, name="ok", value=True, rationale="looks right")
        mlflow.log_expectation(trace_id=trace, name="e", value={"answer": "42"})

    stored_trace = stored(stack, f"/api/3.0/mlflow/traces/{trace}")
    assert "looks right" in stored_trace and password not in stored_trace
    assert audited_routes(stack, secrets, run.run_id, 4) == ["POST /mlflow/traces/{trace_id:str}/assessments"] * 4


def store_reads(stack: Stack, path: str) -> int:
    """How many GETs of `path` team-a's own store has answered so far (its access log)."""
    return (stack.stores["a"].root / "server.log").read_text(errors="replace").count(f'"GET {path} HTTP/')


def test_a_trace_write_checked_for_secrets_reads_the_trace_from_its_store_once(
    mlflow_env: Stack, people: People, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard reads a trace from its store at every call (where it lives can change), and the leak guard needs the
    run that recorded it: the guard's answer goes along with the call, and the store is read once, not twice, for a
    write that passes and for one refused."""
    stack, password = mlflow_env, secrets.password
    owner = people.owner.http(stack, WORKSPACE)  # no account admin: the guard checks the trace's experiment
    with tainted_run(people, secrets, monkeypatch) as run:
        path = f"/api/3.0/mlflow/traces/{traced()}"
        reads = [store_reads(stack, path)]
        passed = owner.patch(f"{stack.url}{path}/tags", json={"key": "note", "value": "fine"})
        assert passed.status_code == 200, passed.text
        reads.append(store_reads(stack, path))
        leak = owner.patch(f"{stack.url}{path}/tags", json={"key": "note", "value": f"x{password}y"})
        assert leak.status_code == 400, leak.text
        assert_named([("trace tag value", leak.json()["message"])], secrets)  # linked through the guard's answer
        reads.append(store_reads(stack, path))

    assert [later - earlier for earlier, later in itertools.pairwise(reads)] == [1, 1]
    stored_trace = stored(stack, path)
    assert '"note": "fine"' in stored_trace and password not in stored_trace
    assert audited_routes(stack, secrets, run.run_id, 1) == ["PATCH /mlflow/traces/{trace_id:str}/tags"]


def test_a_run_that_read_a_secret_cannot_write_its_value_into_its_logged_models(
    mlflow_env: Stack, people: People, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    stack, password = mlflow_env, secrets.password
    with tainted_run(people, secrets, monkeypatch) as run:
        # Created by the run (its source run) with the value among its params, then its tags and params.
        messages = [
            (
                "logged model param value",
                refused(lambda: mlflow.initialize_logged_model(name="leaky", params={"dsn": password})),
            )
        ]
        model = mlflow.initialize_logged_model(name="clean-model", params={"lr": "0.1"})
        assert model.source_run_id == run.run_id
        messages += [
            ("logged model tag value", refused(lambda: mlflow.set_logged_model_tags(model.model_id, {"k": password}))),
            (
                "logged model param key",
                refused(lambda: mlflow.log_model_params({f"p-{password}": "1"}, model_id=model.model_id)),
            ),
        ]
        assert_named(messages, secrets)
        mlflow.set_logged_model_tags(model.model_id, {"stage": "dev"})
        mlflow.log_model_params({"epochs": "3"}, model_id=model.model_id)
        # A logged model of a run that read nothing is not concerned.
        theirs = mlflow.initialize_logged_model(
            name="bystander-model", source_run_id=run.bystander, params={"p": password}
        )

    models = stored(stack, "/api/2.0/mlflow/logged-models/search", {"experiment_ids": [run.experiment_id]})
    assert '"clean-model"' in models and '"stage"' in models and '"epochs"' in models
    assert '"leaky"' not in models and models.count(password) == 1 and theirs.model_id in models
    assert audited_routes(stack, secrets, run.run_id, 3) == [
        "PATCH /mlflow/logged-models/{model_id:str}/tags",
        "POST /mlflow/logged-models",
        "POST /mlflow/logged-models/{model_id:str}/params",
    ]


def test_a_run_that_read_a_secret_cannot_write_its_value_into_versions_registered_from_it(
    mlflow_env: Stack, people: People, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow import MlflowClient

    stack, password = mlflow_env, secrets.password
    name = unique("leaky-registered")
    with tainted_run(people, secrets, monkeypatch) as run:
        client = MlflowClient()
        client.create_registered_model(name)
        model = mlflow.initialize_logged_model(name="to-register", params={"lr": "0.1"})
        messages = [
            # A version naming the run (MlflowClient.create_model_version's run_id) with the value in its description.
            (
                "model version description",
                refused(
                    lambda: client.create_model_version(
                        name, f"runs:/{run.run_id}/model", run_id=run.run_id, description=f"db {password}"
                    )
                ),
            ),
            # Registered from the run's logged model: mlflow.register_model("models:/m-...") names no run, only the
            # model, whose source run the guard asks of the store.
            (
                "model version tag value",
                refused(lambda: mlflow.register_model(f"models:/{model.model_id}", name, tags={"dsn": password})),
            ),
        ]
        assert_named(messages, secrets)
        clean = mlflow.register_model(f"models:/{model.model_id}", name, tags={"stage": "dev"})
        # A version of a run that read nothing is not concerned.
        theirs = client.create_model_version(
            name, f"runs:/{run.bystander}/model", run_id=run.bystander, description=f"db {password}"
        )

    search = quote(f"name='{name}'", safe="")
    versions = stored(stack, f"/api/2.0/mlflow/model-versions/search?filter={search}")
    assert '"stage"' in versions and versions.count(password) == 1, versions
    assert sorted(v["version"] for v in json.loads(versions)["model_versions"]) == sorted(
        [clean.version, theirs.version]
    )
    assert audited_routes(stack, secrets, run.run_id, 2) == ["POST /mlflow/model-versions/create"] * 2


def experiment_with_runs(stack: Stack, client: requests.Session, prefix: str) -> tuple[str, Callable[[], str]]:
    """A new experiment made by `client`, and a function that makes a run in it (its id)."""
    experiment = client.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique(prefix)})
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]

    def new_run() -> str:
        created = client.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
        assert created.status_code == 200, created.text
        return str(created.json()["run"]["info"]["run_id"])

    return experiment_id, new_run


def test_every_replica_refuses_and_one_without_the_vault_refuses_unchecked_writes(
    stack: Stack, people: People, secrets: Secrets
) -> None:
    owner = people.owner.http(stack, WORKSPACE)
    _, new_run = experiment_with_runs(stack, owner, "replicas")
    leaky, other = new_run(), new_run()
    password = secrets.password

    # A replica running before the read hears of it through NOTIFY.
    replica = GatewayProcess(stack.gateway.config_path, GATEWAY_ENV).start()
    try:
        clean = mlflow_call(
            replica.url, people.owner, "runs/log-parameter", {"run_id": leaky, "key": "a", "value": "1"}
        )
        assert clean.status_code == 200, clean.text
        read_secrets(stack.url, people.owner, secrets.scope, leaky)
        # At once: the notification left PostgreSQL when the read committed, before its answer.
        there = mlflow_call(
            replica.url, people.owner, "runs/set-tag", {"run_id": leaky, "key": "t", "value": f"<{password}>"}
        )
        assert there.status_code == 400, there.text
        assert there.json()["error_code"] == "INVALID_PARAMETER_VALUE" and password not in there.text
        batch = {
            "run_id": leaky,
            "params": [{"key": "ok", "value": "1"}],
            "metrics": [{"key": f"m-{password}", "value": 1.0, "timestamp": 1, "step": 0}],
        }
        assert mlflow_call(replica.url, people.owner, "runs/log-batch", batch).status_code == 400
        assert mlflow_call(replica.url, people.owner, "runs/log-batch", {**batch, "run_id": other}).status_code == 200
    finally:
        replica.stop()
    assert replica.log_path is not None and password not in replica.log_path.read_text(errors="replace")

    # A replica started after the read loads it; this one has no vault keys, so it cannot check the run's
    # writes: 503 with Retry-After, even for a clean one. Runs that read nothing are not concerned.
    env = {key: value for key, value in GATEWAY_ENV.items() if key != "FEDGATE_VAULT_KEYS"}
    keyless = GatewayProcess(stack.gateway.config_path, env).start()
    try:
        unchecked = mlflow_call(
            keyless.url, people.owner, "runs/log-parameter", {"run_id": leaky, "key": "b", "value": "2"}
        )
        assert unchecked.status_code == 503, unchecked.text
        assert unchecked.json()["error_code"] == "TEMPORARILY_UNAVAILABLE" and "Retry-After" in unchecked.headers
        assert "cannot be checked" in unchecked.json()["message"]
        fine = mlflow_call(keyless.url, people.owner, "runs/log-parameter", {"run_id": other, "key": "b", "value": "2"})
        assert fine.status_code == 200, fine.text
        # Ending the run writes no text: it needs no vault.
        ended = {"run_id": leaky, "status": "FINISHED", "end_time": 1_700_000_000_000}
        assert mlflow_call(keyless.url, people.owner, "runs/update", ended).status_code == 200
    finally:
        keyless.stop()

    stored = stored_run(stack, leaky)
    assert password not in stored and '"ok"' not in stored and '"b"' not in stored and '"a"' in stored
    assert '"status": "FINISHED"' in stored
    assert f"m-{password}" in stored_run(stack, other)


def put_pin(stack: Stack, owner: Person, scope: str) -> str:
    """A four-digit PIN, the kind of value the guard's answers would give away to a guesser."""
    pin = f"{uuid.uuid4().int % 9000 + 1000}"
    api = f"{stack.url}/api/2.0/secrets"
    put = owner.http(stack, WORKSPACE).post(f"{api}/put", json={"scope": scope, "key": "pin", "string_value": pin})
    assert put.status_code == 200, put.text
    return pin


def test_a_caller_who_may_not_read_a_secret_cannot_find_it_by_bisection_or_by_trying_every_value(
    stack: Stack, people: People, secrets: Secrets
) -> None:
    """Someone who may edit a run that read a PIN, but holds nothing on its scope, writes candidates and watches
    which write the guard refuses. After three refusals every write of text it sends to a run that read the scope
    is refused (403, Retry-After) before it is checked, on every replica, whatever it holds; and its writes that
    hold no PIN spend a budget of text, so trying every value in turn is cut off too."""
    admin = Admin.of(stack)
    owner = people.owner
    pin = put_pin(stack, owner, secrets.scope)
    api = owner.http(stack, WORKSPACE)
    experiment_id, new_run = experiment_with_runs(stack, api, "pin-runs")
    leaky, second, clean = new_run(), new_run(), new_run()
    for run_id in (leaky, second):
        read = requests.post(
            f"{stack.url}/api/2.0/secrets/get-many",
            json={"scope": secrets.scope, "keys": ["pin"], "run_id": run_id},
            headers={"Authorization": f"Bearer {owner.token}", "X-MLFLOW-WORKSPACE": WORKSPACE},
            timeout=60,
        )
        assert read.status_code == 200, read.text
    mallory = admin.person(f"{unique('leak-guesser')}@example.com")
    patient = admin.person(f"{unique('leak-scanner')}@example.com")
    for person in (mallory, patient):
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
        admin.grant(f"experiments/{experiment_id}", "CAN_EDIT", user=person.name, workspace=WORKSPACE)

    def batch(person: Person, run_id: str, guesses: list[str], url: str = stack.url) -> requests.Response:
        """The guesses as one param value, as a guesser packs them."""
        body = {"run_id": run_id, "params": [{"key": unique("g"), "value": " ".join(guesses)}]}
        return mlflow_call(url, person, "runs/log-batch", body)

    # Bisection: 512 candidates, the PIN among them; each call sends half of what is left.
    others = [f"{n:04d}" for n in range(1000, 10000) if f"{n:04d}" != pin]
    candidates = [pin, *others[:511]]
    answers: list[int] = []
    refusals: list[requests.Response] = []
    while len(candidates) > 1:
        half = candidates[: len(candidates) // 2]
        answer = batch(mallory, leaky, half)
        answers.append(answer.status_code)
        if answer.status_code == 400:
            refusals.append(answer)
            candidates = half
        elif answer.status_code == 200:
            candidates = candidates[len(half) :]
        else:
            break
    # Without a limit nine calls found it (candidates == [pin]); three refusals stop it at 64 candidates.
    assert answers == [400, 400, 400, 403] and candidates != [pin], (answers, len(candidates))
    for answer, left in zip(refusals, ("2 more such refusal(s)", "1 more such refusal(s)", "are refused"), strict=True):
        body = answer.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE" and pin not in answer.text
        assert body["message"].startswith("This write contains the value of a secret that this run read.")
        assert "param" not in body["message"] and secrets.scope not in body["message"] and left in body["message"]
    assert len(candidates) == 64
    locked = batch(mallory, leaky, candidates[:32])
    assert locked.status_code == 403, locked.text
    assert locked.json()["error_code"] == "PERMISSION_DENIED" and pin not in locked.text
    retry_after = int(locked.headers["Retry-After"])
    assert 3000 < retry_after <= 3600
    # Locked out, every write of text answers alike, the PIN alone, a clean one, on another run that read it.
    for run_id, guesses in ((leaky, [pin]), (leaky, ["nothing-secret"]), (second, [pin]), (second, ["x"])):
        same = batch(mallory, run_id, guesses)
        assert same.status_code == 403 and same.json()["message"] == locked.json()["message"]
    tag = {"run_id": leaky, "key": "k", "value": pin}
    assert mlflow_call(stack.url, mallory, "runs/set-tag", tag).status_code == 403
    rename = {"run_id": leaky, "run_name": f"run-{pin}"}
    assert mlflow_call(stack.url, mallory, "runs/update", rename).status_code == 403

    # Another replica (every replica and worker counts in PostgreSQL) answers the same.
    replica = GatewayProcess(stack.gateway.config_path, GATEWAY_ENV).start()
    try:
        there = batch(mallory, leaky, [pin], url=replica.url)
        assert there.status_code == 403 and there.json()["error_code"] == "PERMISSION_DENIED", there.text
        assert batch(mallory, leaky, ["clean"], url=replica.url).status_code == 403
    finally:
        replica.stop()

    # Not concerned: writes of runs that read no secret, writes that carry no text (ending a run), and the
    # owner, who may read the PIN anyway and keeps being told which secret a write holds.
    assert batch(mallory, clean, [pin]).status_code == 200
    ended = {"run_id": second, "status": "FINISHED", "end_time": 1_700_000_000_000}
    assert mlflow_call(stack.url, mallory, "runs/update", ended).status_code == 200
    for _ in range(5):
        own = batch(owner, leaky, [pin])
        assert own.status_code == 400, own.text
        assert (
            f"A param value of this write contains the value of secret pin of scope {secrets.scope}"
            in (own.json()["message"])
        )
    assert batch(owner, leaky, ["fine"]).status_code == 200

    # Trying every value in turn, where most writes are clean: the text they carry is counted, refused or not.
    # 16 KiB of text an hour (the default): three writes of 1,000 wrong PINs pass, the fourth is not checked; what is
    # left of the budget checks a few hundred more candidates at most, of the 9,000 four-digit PINs, per hour.
    wrong = [guess for guess in others if guess != pin]
    for start in range(0, 3000, 1000):
        assert batch(patient, leaky, wrong[start : start + 1000]).status_code == 200
    spent = batch(patient, leaky, [*wrong[3000:3999], pin])  # would have been the refusal that finds it
    assert spent.status_code == 403, spent.text
    assert "bytes of text" in spent.json()["message"] and pin not in spent.text

    # Nothing refused reached the store (what passed holds no PIN); the refusals and lockouts are audited with
    # the caller and the run, never the PIN.
    params = json.loads(stored_run(stack, leaky))["run"]["data"].get("params", [])
    assert len(params) == answers.count(200) + 1 + 3  # the halves that passed, the owner's, the scanner's
    assert all(pin not in param["value"].split(" ") for param in params)
    refusal_rows = until(
        lambda: leak_audit(stack, secrets.scope), lambda rows: len(rows) >= 8, "the refusals' audit rows"
    )
    assert sorted(row["actor"] for row in refusal_rows) == sorted([mallory.name] * 3 + [owner.name] * 5)
    lockouts = until(
        lambda: leak_audit(stack, secrets.scope, "secrets.leak_probes_limited"),
        lambda rows: len(rows) >= 11,
        "the lockouts' audit rows",
    )
    assert sorted(row["actor"] for row in lockouts) == sorted([mallory.name] * 10 + [patient.name])
    assert all(row["outcome"] == "denied" and pin not in row["details"] for row in refusal_rows + lockouts)
