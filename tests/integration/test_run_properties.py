"""A run's properties survive every attempt to change or delete them, through a real gateway and real stores.

Properties are set with the Run API (`Run.add_properties`, gateway.client); then every route that can touch a
run tag is tried with the raw MLflow REST API (both API prefixes, run_uuid, key spellings a store may take
for the same key, escapes in the JSON) and with the stock MLflow client, by a workspace user and by the
account admin. Each is refused with 400 INVALID_PARAMETER_VALUE, the audit log says so, and the original
value is still there, in the store and in the account index. Setting a property again to its value, adding
new ones and writing other tags go through; two clients racing to set one property keep exactly one value.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import asyncpg
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from gateway.client import Run
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.waiting import until

pytestmark = pytest.mark.integration

TIMEOUT = 60
DATA = "fedgate.property.data_version"


@pytest.fixture(scope="module")
def trainer(stack: Stack) -> Person:
    admin = Admin.of(stack)
    person = admin.person(f"{unique('auditor')}@example.com")
    admin.grant("workspaces/team-a", "CAN_MANAGE", user=person.name)
    return person


def rest(stack: Stack, token: str, path: str, body: dict[str, Any] | bytes, prefix: str = "/api") -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "team-a", "Content-Type": "application/json"}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{stack.url}{prefix}/2.0/mlflow/{path}", data=data, headers=headers, timeout=TIMEOUT)


def refused(response: requests.Response, fragment: str) -> None:
    assert response.status_code == 400, f"{response.status_code} {response.text}"
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE", response.text
    assert fragment in response.json()["message"], response.text


def tags_of(stack: Stack, run_id: str) -> dict[str, str]:
    answer = requests.get(
        f"{stack.url}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": "team-a"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    return {t["key"]: t["value"] for t in answer.json()["run"]["data"].get("tags", [])}


def test_nobody_changes_or_deletes_a_property_through_any_route(
    mlflow_env: Stack, trainer: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = mlflow_env
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", trainer.token)
    mlflow.set_workspace("team-a")
    experiment_id = mlflow.set_experiment(unique("audit")).experiment_id
    run = Run(None, MlflowClient().create_run(experiment_id).info.run_id)
    run.add_properties({"data_version": "2024-05", "owner": "team-a"})
    run_id = run.id
    assert run.get_properties() == {"data_version": "2024-05", "owner": "team-a"}

    for token in (trainer.token, ADMIN_TOKEN):
        attempts: list[tuple[str, dict[str, Any] | bytes, str, str]] = [
            ("runs/set-tag", {"run_id": run_id, "key": DATA, "value": "2024-06"}, "/api", "Changing property values"),
            ("runs/set-tag", {"run_id": run_id, "key": DATA, "value": "2024-06"}, "/ajax-api", "Changing property"),
            ("runs/set-tag", {"run_uuid": run_id, "key": DATA, "value": "x"}, "/api", "Changing property values"),
            ("runs/set-tag", {"run_id": run_id, "key": DATA, "value": ""}, "/api", "Changing property values"),
            ("runs/set-tag", {"run_id": run_id, "key": DATA.upper(), "value": "x"}, "/api", "Changing property"),
            ("runs/set-tag", {"run_id": run_id, "key": DATA + "  ", "value": "x"}, "/api", "Changing property"),
            (
                "runs/set-tag",
                b'{"run_id": "%s", "key": "fedgate.property.data\\u005fversion", "value": "x"}' % run_id.encode(),
                "/api",
                "Changing property values",
            ),
            ("runs/delete-tag", {"run_id": run_id, "key": DATA}, "/api", "Deleting properties is not allowed"),
            ("runs/delete-tag", {"run_id": run_id, "key": DATA}, "/ajax-api", "Deleting properties is not allowed"),
            (
                "runs/log-batch",
                {"run_id": run_id, "tags": [{"key": "stage", "value": "x"}, {"key": DATA, "value": "2024-06"}]},
                "/api",
                "Changing property values",
            ),
            (
                "runs/log-batch",
                {"run_id": run_id, "metrics": [], "tags": [{"key": DATA, "value": "2024-06"}]},
                "/ajax-api",
                "Changing property values",
            ),
        ]
        for path, body, prefix, fragment in attempts:
            refused(rest(stack, token, path, body, prefix), fragment)

    # The stock client, as the trainer: every way it writes a tag.
    client = MlflowClient()
    stock = [
        lambda: client.set_tag(run_id, DATA, "2024-06"),
        lambda: client.delete_tag(run_id, DATA),
        lambda: client.log_batch(run_id, tags=[RunTag("fine", "1"), RunTag(DATA, "2024-06")]),
        lambda: run.add_properties({"data_version": "2024-06"}),
    ]
    for attempt in stock:
        with pytest.raises(MlflowException, match=r"(Changing|Deleting) propert"):
            attempt()
    with mlflow.start_run(run_id=run_id):
        with pytest.raises(MlflowException, match="Changing property values"):
            mlflow.set_tag(DATA, "2024-06")
        with pytest.raises(MlflowException, match="Changing property values"):
            mlflow.set_tags({"other": "x", DATA: "2024-06"})

    # Nothing of a refused call was written (the other tags of those batches neither); the value survives.
    tags = tags_of(stack, run_id)
    assert tags[DATA] == "2024-05" and "fine" not in tags and "other" not in tags and "stage" not in tags
    assert run.get_properties() == {"data_version": "2024-05", "owner": "team-a"}

    # What stays allowed: the same value again, new properties, other tags, deleting other tags.
    assert rest(stack, trainer.token, "runs/set-tag", {"run_id": run_id, "key": DATA, "value": "2024-05"}).ok
    run.add_properties({"data_version": "2024-05", "reviewed_by": "carol"})
    client.set_tag(run_id, "stage", "done")
    client.delete_tag(run_id, "stage")
    assert run.get_properties() == {"data_version": "2024-05", "owner": "team-a", "reviewed_by": "carol"}

    # Properties given when the run is created are properties from then on.
    created = client.create_run(experiment_id, tags={DATA: "2023-12"}).info.run_id
    refused(rest(stack, trainer.token, "runs/set-tag", {"run_id": created, "key": DATA, "value": "x"}), "Changing")
    assert Run(None, created).properties == {"data_version": "2023-12"}

    # Each refusal is in the audit log, naming the key and the run, never the attempted value (written from a
    # queue, after the refusal was answered).
    rows = until(
        lambda: audit_rows(stack, run_id),
        lambda rows: len(rows) >= 20 and {r["details"]["attempt"] for r in rows} == {"change", "delete"},
        "the refusals' audit rows",
    )
    assert {r["actor"] for r in rows} >= {trainer.name} and all("2024-06" not in json.dumps(r) for r in rows)

    # The account index has the original value too.
    assert indexed_tag(stack, run_id, DATA) == "2024-05"


def test_racing_first_writes_of_a_property_keep_exactly_one_value(mlflow_env: Stack, trainer: Person) -> None:
    stack = mlflow_env
    mlflow.set_workspace("team-a")
    experiment_id = mlflow.set_experiment(unique("race")).experiment_id
    run_id = MlflowClient().create_run(experiment_id).info.run_id
    for round_ in range(5):
        key = f"fedgate.property.race-{round_}"
        answers: dict[str, requests.Response] = {}
        start = threading.Barrier(2)

        def write(value: str, key: str, answers: dict[str, requests.Response], start: threading.Barrier) -> None:
            start.wait()
            answers[value] = rest(stack, trainer.token, "runs/set-tag", {"run_id": run_id, "key": key, "value": value})

        threads = [threading.Thread(target=write, args=(v, key, answers, start)) for v in ("left", "right")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(a.status_code for a in answers.values())
        assert statuses == [200, 400], {v: (a.status_code, a.text) for v, a in answers.items()}
        winner = next(v for v, a in answers.items() if a.status_code == 200)
        assert tags_of(stack, run_id)[key] == winner


def test_a_key_with_blanks_around_it_is_the_property_it_spells(mlflow_env: Stack, trainer: Person) -> None:
    """MLflow's check of a tag key (`^[/\\w.\\- :]*$`, where Python's `$` also matches before a last newline) takes
    `fedgate.property.data_version\\n` and ` fedgate.property.data_version`, and the store keeps each as written:
    beside the property they read as another property of the same name, or the same one to a reader that trims
    keys. Keys are compared trimmed of blanks on both sides, as the gateway compares every name it keeps; before,
    only trailing spaces were trimmed, and both keys were written with another value."""
    stack = mlflow_env
    mlflow.set_workspace("team-a")
    run_id = MlflowClient().create_run(mlflow.set_experiment(unique("blanks")).experiment_id).info.run_id
    assert rest(stack, trainer.token, "runs/set-tag", {"run_id": run_id, "key": DATA, "value": "2024-05"}).ok
    for key in (DATA + "\n", " " + DATA, f" {DATA} \n"):
        refused(rest(stack, trainer.token, "runs/set-tag", {"run_id": run_id, "key": key, "value": "x"}), "Changing")
        refused(rest(stack, trainer.token, "runs/delete-tag", {"run_id": run_id, "key": key}), "Deleting properties")
    tags = tags_of(stack, run_id)
    assert ([k for k in tags if k.strip() == DATA], tags[DATA]) == ([DATA], "2024-05"), tags


def indexed_tag(stack: Stack, run_id: str, key: str) -> str | None:
    async def fetch() -> str | None:
        connection = await asyncpg.connect(stack.database_url)
        try:
            value = await connection.fetchval("SELECT tags ->> $2 FROM ix_runs WHERE run_id = $1", run_id, key)
            return None if value is None else str(value)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def audit_rows(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetch(
                "SELECT actor, target, outcome, details FROM audit_log WHERE action = 'runs.property_refused' "
                "AND target = $1 ORDER BY id",
                f"run:team-a/{run_id}",
            )
            return [{"actor": r["actor"], "outcome": r["outcome"], "details": json.loads(r["details"])} for r in rows]
        finally:
            await connection.close()

    return asyncio.run(fetch())
