"""Writes of one run made at once in a dual workspace: the central copy ends as the workspace store does.

The workspace store takes two writes of one tag in one order; the gateway queues their entries as each answer comes
back, and those need not come back in that order. A proxy in front of the workspace store (a real `mlflow server`)
holds back the store's answer to a first write until a second write of the same tag has been taken and answered, as
a slow network, a busy worker or two replicas do; the store's own state is read directly. The reconciler is off
(`reconcile_interval_seconds = 0`): what the central store shows came through the outbox or crash recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web

from gateway.devstack import LOOPBACK, GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, _start_all, _stop_all
from tests.databases import execute
from tests.support.waiting import until

pytestmark = pytest.mark.integration
WORKSPACE = "ordered"
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host", "upgrade", "te"}
)


class HoldingProxy:
    """Forwards every call to `target`; the store's answer to the first call whose body holds `marker` is kept from
    the caller until `release` (the store has taken the write by then: it answered)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.url = ""
        self.marker: bytes | None = None
        self.holding = threading.Event()  # an answer is being held
        self._release = threading.Event()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop: asyncio.Event | None = None

    def start(self) -> HoldingProxy:
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @contextlib.contextmanager
    def hold(self, marker: bytes) -> Iterator[None]:
        self.marker, self.holding, self._release = marker, threading.Event(), threading.Event()
        try:
            yield
        finally:
            self.marker = None
            self._release.set()

    def release(self) -> None:
        self._release.set()

    def _serve(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(auto_decompress=True) as client:

            async def forward(request: web.Request) -> web.Response:
                body = await request.read()
                headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
                async with client.request(
                    request.method, self.target + request.path_qs, data=body, headers=headers
                ) as answer:
                    content = await answer.read()
                    out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                    status = answer.status
                marker = self.marker
                if marker is not None and marker in body and not self.holding.is_set():
                    self.holding.set()  # the first such answer only
                    await asyncio.get_running_loop().run_in_executor(None, self._release.wait, 120)
                return web.Response(status=status, body=content, headers=out)

            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, LOOPBACK, 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://{LOOPBACK}:{port}"
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()


@dataclass
class Stack:
    primary: MlflowServer
    proxy: HoldingProxy  # the gateway reaches the workspace store through it
    central: MlflowServer
    gateway: GatewayProcess
    database: str

    def status(self) -> dict[str, Any]:
        url = f"{self.gateway.url}/api/2.0/fedgate/links"
        links = requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).json()["links"]
        return next(link for link in links if link["workspace"] == WORKSPACE)

    def drained(self, key: str, timeout: float = 120.0) -> None:
        """Nothing pending, and no dead letter of `key` (a run's id, `experiment:<id>`, or `registry`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status()["pending"] == 0:
                url = f"{self.gateway.url}/api/2.0/fedgate/links/{WORKSPACE}/dead-letters"
                headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                letters = requests.get(url, headers=headers, timeout=30).json()["dead_letters"]
                key = key if ":" in key or key == "registry" else f"run:{key}"
                dead = [letter for letter in letters if letter["order_key"].endswith(f"/{key}")]
                assert dead == [], dead
                return
            time.sleep(0.3)
        raise AssertionError(f"outbox not drained: {self.status()}")

    def call(self, route: str, body: dict[str, Any], method: str = "POST") -> requests.Response:
        return requests.request(
            method,
            f"{self.gateway.url}/api/2.0/mlflow/{route}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLflow-Workspace": WORKSPACE},
            timeout=120,
        )

    def write(self, route: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
        answer = self.call(route, body, method)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def new_run(self) -> str:
        experiment = self.write("experiments/create", {"name": f"ordered-{uuid.uuid4().hex[:8]}"})["experiment_id"]
        return str(self.write("runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"])

    def own_tags(self, run_id: str) -> dict[str, str]:
        run = requests.get(f"{self.primary.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30)
        return _user_tags(run.json()["run"])

    def central_tags(self, run_id: str) -> dict[str, str]:
        return _user_tags(self.central_run(run_id))

    def central_run(self, run_id: str) -> dict[str, Any]:
        headers = {"X-MLflow-Workspace": WORKSPACE}
        experiments = requests.post(
            f"{self.central.url}/api/2.0/mlflow/experiments/search",
            json={"max_results": 1000},
            headers=headers,
            timeout=30,
        ).json()["experiments"]
        found = requests.post(
            f"{self.central.url}/api/2.0/mlflow/runs/search",
            json={
                "experiment_ids": [e["experiment_id"] for e in experiments],
                "filter": f"tags.`fedgate.source_run_id` = '{run_id}'",
            },
            headers=headers,
            timeout=30,
        ).json()["runs"]
        assert len(found) == 1, found
        return dict(found[0])

    def own_experiment(self, experiment_id: str) -> tuple[str, dict[str, str]]:
        url = f"{self.primary.url}/api/2.0/mlflow/experiments/get"
        found = requests.get(url, params={"experiment_id": experiment_id}, timeout=30).json()["experiment"]
        return found["name"], _user_tags({"data": found})

    def central_experiment(self, experiment_id: str) -> tuple[str, dict[str, str]]:
        found = requests.post(
            f"{self.central.url}/api/2.0/mlflow/experiments/search",
            json={"filter": f"tags.`fedgate.source_experiment_id` = '{experiment_id}'", "max_results": 10},
            headers={"X-MLflow-Workspace": WORKSPACE},
            timeout=30,
        ).json()["experiments"]
        assert len(found) == 1, found
        return found[0]["name"], _user_tags({"data": found[0]})


def _user_tags(run: dict[str, Any]) -> dict[str, str]:
    tags = (run.get("data") or {}).get("tags") or []
    return {t["key"]: t["value"] for t in tags if not t["key"].startswith(("mlflow.", "fedgate."))}


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[Stack]:
    from gateway.db.engine import start_embedded

    root = workdir / "dual-ordering"
    embedded = start_embedded(root / "postgres")
    primary = MlflowServer(root / "primary")
    central = MlflowServer(root / "central", workspaces=True)
    _start_all([primary, central])
    proxy = HoldingProxy(primary.url).start()
    config = root / "fedgate.toml"
    config.write_text(
        f"""
[account]
id = "7004"
[server]
reconcile_interval_seconds = 0
outbox_max_refusals = 2
[database]
url = "{embedded.url}"
[stores.primary]
url = "{proxy.url}"
[stores.central]
url = "{central.url}"
workspaces = true
[central]
store = "central"
[[workspaces]]
name = "{WORKSPACE}"
id = "2201"
store = "primary"
mode = "dual"
"""
    )
    gateway = GatewayProcess(config, GATEWAY_ENV).start()
    try:
        yield Stack(primary, proxy, central, gateway, embedded.url)
    finally:
        gateway.stop()
        proxy.stop()
        _stop_all([primary, central])
        embedded.stop()


@contextlib.contextmanager
def answered_late(stack: Stack, route: str, body: dict[str, Any], marker: str, method: str = "POST") -> Iterator[None]:
    """`route` sent through the gateway (its body holds `marker`); the block runs once the workspace store has taken
    and answered it, with that answer held back; the answer reaches the gateway when the block ends."""
    statuses: list[int] = []
    with stack.proxy.hold(f'"{marker}"'.encode()):
        sender = threading.Thread(target=lambda: statuses.append(stack.call(route, body, method).status_code))
        sender.start()
        try:
            until(stack.proxy.holding.is_set, bool, f"the store's answer to {route} held")
            yield
        finally:
            stack.proxy.release()
            sender.join(120)
    assert statuses == [200], statuses


def test_a_tag_set_twice_at_once_ends_in_the_central_copy_with_the_stores_last_value(stack: Stack) -> None:
    """The store took `first` then `second`; the gateway heard of `first` last and queued it last. The central copy
    kept `first` for good while the workspace store has `second`."""
    run_id = stack.new_run()
    with answered_late(stack, "runs/set-tag", {"run_id": run_id, "key": "stage", "value": "first"}, "first"):
        assert stack.own_tags(run_id) == {"stage": "first"}
        stack.write("runs/set-tag", {"run_id": run_id, "key": "stage", "value": "second"})
    assert stack.own_tags(run_id) == {"stage": "second"}
    stack.drained(run_id)
    assert stack.central_tags(run_id) == {"stage": "second"}


def test_a_tag_deleted_while_it_is_set_ends_in_the_central_copy_as_in_the_store(stack: Stack) -> None:
    """The store set the tag, then deleted it; the deletion was queued first. Centrally the deletion found no tag:
    refused until it was a dead letter, then the setting was applied, and the central copy kept a tag the workspace
    store does not have."""
    run_id = stack.new_run()
    with answered_late(stack, "runs/set-tag", {"run_id": run_id, "key": "note", "value": "raced"}, "raced"):
        assert stack.own_tags(run_id) == {"note": "raced"}
        stack.write("runs/delete-tag", {"run_id": run_id, "key": "note"})
    assert stack.own_tags(run_id) == {}
    stack.drained(run_id)
    assert stack.central_tags(run_id) == {}


def test_a_tag_set_again_while_it_is_deleted_ends_in_the_central_copy_as_in_the_store(stack: Stack) -> None:
    """The store deleted the tag, then it was set again in a log-batch; the deletion was queued last, and the
    central copy lost a tag the workspace store has."""
    run_id = stack.new_run()
    stack.write("runs/set-tag", {"run_id": run_id, "key": "owner", "value": "ana"})
    stack.drained(run_id)
    assert stack.central_tags(run_id) == {"owner": "ana"}
    with answered_late(stack, "runs/delete-tag", {"run_id": run_id, "key": "owner"}, "owner"):
        assert stack.own_tags(run_id) == {}
        stack.write("runs/log-batch", {"run_id": run_id, "tags": [{"key": "owner", "value": "bo"}]})
    assert stack.own_tags(run_id) == {"owner": "bo"}
    stack.drained(run_id)
    assert stack.central_tags(run_id) == {"owner": "bo"}


def test_an_experiments_tag_and_name_set_twice_at_once_end_in_the_central_copy_as_in_the_store(stack: Stack) -> None:
    """As for a run's tag: the central copy of the experiment kept the tag value and the name the store replaced."""
    experiment = stack.write("experiments/create", {"name": f"exp-{uuid.uuid4().hex[:8]}"})["experiment_id"]
    tag = {"experiment_id": experiment, "key": "team", "value": "first"}
    with answered_late(stack, "experiments/set-experiment-tag", tag, "first"):
        assert stack.own_experiment(experiment)[1] == {"team": "first"}
        stack.write("experiments/set-experiment-tag", {**tag, "value": "second"})
    late, soon = f"late-{uuid.uuid4().hex[:8]}", f"soon-{uuid.uuid4().hex[:8]}"
    with answered_late(stack, "experiments/update", {"experiment_id": experiment, "new_name": late}, late):
        assert stack.own_experiment(experiment)[0] == late
        stack.write("experiments/update", {"experiment_id": experiment, "new_name": soon})
    assert stack.own_experiment(experiment) == (soon, {"team": "second"})
    stack.drained(f"experiment:{experiment}")
    assert stack.central_experiment(experiment) == (soon, {"team": "second"})


def test_a_runs_updates_made_at_once_end_in_the_central_copy_as_in_the_store(stack: Stack) -> None:
    """Two `runs/update` of one run (its status, end time and name): the central copy kept the ones the store
    replaced."""
    run_id = stack.new_run()
    first = {"run_id": run_id, "status": "FINISHED", "end_time": 1000, "run_name": "first-name"}
    with answered_late(stack, "runs/update", first, "first-name"):
        stack.write("runs/update", {**first, "status": "KILLED", "end_time": 2000, "run_name": "second-name"})

    def state(run: dict[str, Any]) -> tuple[Any, ...]:
        info, tags = run["info"], {t["key"]: t["value"] for t in run["data"].get("tags") or []}
        return info["status"], int(info["end_time"]), info["run_name"], tags.get("mlflow.runName")

    own = requests.get(f"{stack.primary.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30)
    assert state(own.json()["run"]) == ("KILLED", 2000, "second-name", "second-name")
    stack.drained(run_id)
    assert state(stack.central_run(run_id)) == ("KILLED", 2000, "second-name", "second-name")


def reconciled(stack: Stack) -> dict[str, Any]:
    """A reconciler pass over every run of the workspace, run to its end: its progress."""
    url = f"{stack.gateway.url}/api/2.0/fedgate/links/{WORKSPACE}/reconcile"
    started = requests.post(url, json={"all": True}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert started.status_code == 202, started.text
    status = until(
        stack.status,
        lambda s: (s.get("reconcile") or {}).get("state") not in (None, "running") and s["pending"] == 0,
        "the reconciler's pass finished",
        seconds=180,
    )
    assert status["reconcile"]["state"] == "finished", status
    return dict(status["reconcile"])


def test_the_reconciler_leaves_a_run_copys_model_history_naming_the_central_run(stack: Stack) -> None:
    """`runs/log-model` is applied centrally naming the central copy of the run (the store keeps the document in the
    run's `mlflow.log-model.history` tag). The reconciler compared that tag by its exact value, found it differed
    from the workspace store's (which names the workspace's run) and overwrote it with the workspace's run ids."""
    run_id = stack.new_run()
    model = {"run_id": run_id, "artifact_path": "model", "utc_time_created": "2026-12-05 03:00:00.000000"}
    stack.write("runs/log-model", {"run_id": run_id, "model_json": json.dumps({**model, "flavors": {}})})
    stack.drained(run_id)
    copy = stack.central_run(run_id)
    central_id = copy["info"]["run_id"]

    def history() -> list[Any]:
        tags = {t["key"]: t["value"] for t in stack.central_run(run_id)["data"]["tags"]}
        return [entry["run_id"] for entry in json.loads(tags["mlflow.log-model.history"])]

    assert history() == [central_id]
    reconciled(stack)
    assert history() == [central_id]
    assert reconciled(stack)["runs_repaired"] == 0


def own_model(stack: Stack, name: str) -> dict[str, Any]:
    url = f"{stack.primary.url}/api/2.0/mlflow/registered-models/get"
    return dict(requests.get(url, params={"name": name}, timeout=30).json()["registered_model"])


def central_model(stack: Stack, name: str) -> dict[str, Any]:
    url = f"{stack.central.url}/api/2.0/mlflow/registered-models/get"
    headers = {"X-MLflow-Workspace": WORKSPACE}
    return dict(requests.get(url, params={"name": name}, headers=headers, timeout=30).json()["registered_model"])


def own_version(store: MlflowServer, name: str, version: str, workspace: bool = False) -> dict[str, Any]:
    url = f"{store.url}/api/2.0/mlflow/model-versions/get"
    headers = {"X-MLflow-Workspace": WORKSPACE} if workspace else {}
    found = requests.get(url, params={"name": name, "version": version}, headers=headers, timeout=30)
    return dict(found.json()["model_version"])


def _model_state(model: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    return {
        "tags": _user_tags({"data": model}),
        "description": model.get("description") or "",
        "version_tags": _user_tags({"data": version}),
        "version_description": version.get("description") or "",
    }


def test_a_registered_models_and_versions_tags_and_descriptions_written_at_once_end_as_in_the_store(
    stack: Stack,
) -> None:
    """As for a run's tags: the registry's entries were applied with the values they carried, in the order their
    answers reached the gateway, so the central copy kept a tag or a description the store had replaced or deleted.
    (Aliases are set one at a time per model, under the model's lock, entry and all.)"""
    name = f"ordered-{uuid.uuid4().hex[:8]}"
    run_id = stack.new_run()
    stack.write("registered-models/create", {"name": name})
    stack.write("model-versions/create", {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
    # A model's tag set, then deleted; the deletion queued first.
    with answered_late(stack, "registered-models/set-tag", {"name": name, "key": "team", "value": "gone"}, "gone"):
        stack.write("registered-models/delete-tag", {"name": name, "key": "team"}, "DELETE")
    # A model's tag set twice.
    tag = {"name": name, "key": "stage", "value": "first-tag"}
    with answered_late(stack, "registered-models/set-tag", tag, "first-tag"):
        stack.write("registered-models/set-tag", {**tag, "value": "second-tag"})
    # A model's description set twice.
    update = {"name": name, "description": "first-text"}
    with answered_late(stack, "registered-models/update", update, "first-text", "PATCH"):
        stack.write("registered-models/update", {**update, "description": "second-text"}, "PATCH")
    # A version's tag set twice, and its description.
    vtag = {"name": name, "version": "1", "key": "check", "value": "first-check"}
    with answered_late(stack, "model-versions/set-tag", vtag, "first-check"):
        stack.write("model-versions/set-tag", {**vtag, "value": "second-check"})
    vupdate = {"name": name, "version": "1", "description": "first-note"}
    with answered_late(stack, "model-versions/update", vupdate, "first-note", "PATCH"):
        stack.write("model-versions/update", {**vupdate, "description": "second-note"}, "PATCH")
    expected = {
        "tags": {"stage": "second-tag"},
        "description": "second-text",
        "version_tags": {"check": "second-check"},
        "version_description": "second-note",
    }
    assert _model_state(own_model(stack, name), own_version(stack.primary, name, "1")) == expected
    stack.drained("registry")
    central_version = own_version(stack.central, name, "1", workspace=True)
    assert _model_state(central_model(stack, name), central_version) == expected


FAIL_TAG_DELETIONS = """
CREATE FUNCTION fail_tag_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.route = 'POST /mlflow/runs/delete-tag' THEN
        RAISE EXCEPTION 'the outbox is failing';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_tag_deletion BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_tag_deletion();
"""


def test_a_runs_tag_deletion_whose_entry_failed_is_made_in_the_central_copy_by_recovery(stack: Stack) -> None:
    """The store deleted the tag and the entry's commit failed (the client got 503, as when the gateway is killed
    before it): recovery made the run's copy level by adding and changing tags only, so the tag stayed centrally."""
    run_id = stack.new_run()
    stack.write("runs/log-batch", {"run_id": run_id, "tags": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]})
    stack.drained(run_id)
    assert stack.central_tags(run_id) == {"a": "1", "b": "2"}
    asyncio.run(execute(stack.database, FAIL_TAG_DELETIONS))
    try:
        answer = stack.call("runs/delete-tag", {"run_id": run_id, "key": "a"})
        assert answer.status_code == 503, answer.text
    finally:
        asyncio.run(
            execute(stack.database, "DROP TRIGGER fail_tag_deletion ON outbox; DROP FUNCTION fail_tag_deletion();")
        )
    assert stack.own_tags(run_id) == {"b": "2"}  # the store made it
    until(lambda: stack.central_tags(run_id), lambda tags: tags == {"b": "2"}, "the deleted tag gone from the copy")
