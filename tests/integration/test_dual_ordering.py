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
        """Nothing pending, and no dead letter of `key` (a run's id, or `experiment:<id>`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status()["pending"] == 0:
                url = f"{self.gateway.url}/api/2.0/fedgate/links/{WORKSPACE}/dead-letters"
                headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                letters = requests.get(url, headers=headers, timeout=30).json()["dead_letters"]
                key = key if ":" in key else f"run:{key}"
                dead = [letter for letter in letters if letter["order_key"].endswith(f"/{key}")]
                assert dead == [], dead
                return
            time.sleep(0.3)
        raise AssertionError(f"outbox not drained: {self.status()}")

    def call(self, route: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(
            f"{self.gateway.url}/api/2.0/mlflow/{route}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLflow-Workspace": WORKSPACE},
            timeout=120,
        )

    def write(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.call(route, body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def new_run(self) -> str:
        experiment = self.write("experiments/create", {"name": f"ordered-{uuid.uuid4().hex[:8]}"})["experiment_id"]
        return str(self.write("runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"])

    def own_tags(self, run_id: str) -> dict[str, str]:
        run = requests.get(f"{self.primary.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30)
        return _user_tags(run.json()["run"])

    def central_tags(self, run_id: str) -> dict[str, str]:
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
        return _user_tags(found[0])

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
def answered_late(stack: Stack, route: str, body: dict[str, Any], marker: str) -> Iterator[None]:
    """`route` sent through the gateway (its body holds `marker`); the block runs once the workspace store has taken
    and answered it, with that answer held back; the answer reaches the gateway when the block ends."""
    statuses: list[int] = []
    with stack.proxy.hold(f'"{marker}"'.encode()):
        sender = threading.Thread(target=lambda: statuses.append(stack.call(route, body).status_code))
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


def database(stack: Stack, statements: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(stack.database)
        try:
            await connection.execute(statements)
        finally:
            await connection.close()

    asyncio.run(run())


def test_a_runs_tag_deletion_whose_entry_failed_is_made_in_the_central_copy_by_recovery(stack: Stack) -> None:
    """The store deleted the tag and the entry's commit failed (the client got 503, as when the gateway is killed
    before it): recovery made the run's copy level by adding and changing tags only, so the tag stayed centrally."""
    run_id = stack.new_run()
    stack.write("runs/log-batch", {"run_id": run_id, "tags": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]})
    stack.drained(run_id)
    assert stack.central_tags(run_id) == {"a": "1", "b": "2"}
    database(stack, FAIL_TAG_DELETIONS)
    try:
        answer = stack.call("runs/delete-tag", {"run_id": run_id, "key": "a"})
        assert answer.status_code == 503, answer.text
    finally:
        database(stack, "DROP TRIGGER fail_tag_deletion ON outbox; DROP FUNCTION fail_tag_deletion();")
    assert stack.own_tags(run_id) == {"b": "2"}  # the store made it
    until(lambda: stack.central_tags(run_id), lambda tags: tags == {"b": "2"}, "the deleted tag gone from the copy")
