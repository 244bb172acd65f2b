"""What an artifact path lets a caller reach, beyond the files under its own experiment.

A dual workspace `lab` (its own store, copies in the central store's workspace `lab`) and a workspace `legacy`
linked to the central store's `default` workspace, whose artifacts MLflow keeps at the root of its artifact store,
above every other workspace's `workspaces/<name>/`. Real mlflow servers, a real PostgreSQL, a real gateway process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gateway.core.errors import mlflow_error
from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, _start_all, _stop_all
from tests.support.identity import Admin, unique
from tests.support.waiting import until

pytestmark = pytest.mark.integration
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
TIMEOUT = 60


@dataclass
class Reach:
    primary: MlflowServer  # the store of the dual workspace `lab`
    central: MlflowServer  # the central store, with workspaces: `lab`'s copies, and `legacy` as its `default`
    gateway: GatewayProcess
    admin: Admin
    database_url: str

    def http(self, workspace: str, token: str = ADMIN_TOKEN) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace})
        return session

    def drained(self, workspace: str = "lab") -> None:
        def pending() -> int:
            links = self.admin.http().get(f"{self.gateway.url}/api/2.0/fedgate/links", timeout=TIMEOUT).json()
            return int(next(link for link in links["links"] if link["workspace"] == workspace)["pending"])

        until(pending, lambda left: left == 0, f"the outbox of {workspace} drained")

    def _central(self) -> requests.Session:
        session = requests.Session()
        session.headers["X-MLFLOW-WORKSPACE"] = "lab"
        return session

    def _central_experiments(self) -> list[str]:
        search = {"max_results": 1000}
        found = self._central().post(
            f"{self.central.url}/api/2.0/mlflow/experiments/search", json=search, timeout=TIMEOUT
        )
        return [e["experiment_id"] for e in found.json()["experiments"]]

    def central_file(self, kind: str, source_id: str, path: str) -> bytes:
        """A file of the central copy of a run (`kind` "run") or logged model ("model") of `lab`, read from the
        central store itself."""
        central, experiments = self._central(), self._central_experiments()
        if kind == "run":
            search = {"experiment_ids": experiments, "filter": f"tags.`fedgate.source_run_id` = '{source_id}'"}
            found = central.post(f"{self.central.url}/api/2.0/mlflow/runs/search", json=search, timeout=TIMEOUT)
            uri = found.json()["runs"][0]["info"]["artifact_uri"]
        else:
            search = {"experiment_ids": experiments, "filter": f"tags.`fedgate.source_model_id` = '{source_id}'"}
            found = central.post(
                f"{self.central.url}/api/2.0/mlflow/logged-models/search", json=search, timeout=TIMEOUT
            )
            uri = found.json()["models"][0]["info"]["artifact_uri"]
        root = str(uri).removeprefix("mlflow-artifacts:").lstrip("/")
        answer = central.get(f"{self.central.url}{ARTIFACTS}/{root}/{path}", timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        return answer.content


@pytest.fixture(scope="module")
def reach(workdir: Path) -> Iterator[Reach]:
    from gateway.db.engine import start_embedded

    root = workdir / "artifact-reach"
    embedded = start_embedded(root / "postgres")
    primary, central = MlflowServer(root / "primary"), MlflowServer(root / "central", workspaces=True)
    _start_all([primary, central])
    config = root / "fedgate.toml"
    config.write_text(
        f"""
[account]
id = "7004"
[database]
url = "{embedded.url}"
[stores.primary]
url = "{primary.url}"
[stores.central]
url = "{central.url}"
workspaces = true
[central]
store = "central"
[[workspaces]]
name = "lab"
id = "4001"
store = "primary"
mode = "dual"
[[workspaces]]
name = "legacy"
id = "4002"
store = "central"
upstream_workspace = "default"
"""
    )
    gateway = GatewayProcess(config, GATEWAY_ENV).start()
    try:
        yield Reach(primary, central, gateway, Admin(gateway.url), embedded.url)
    finally:
        gateway.stop()
        _stop_all([primary, central])
        embedded.stop()


def _experiment(session: requests.Session, url: str) -> str:
    created = session.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": unique("exp")}, timeout=TIMEOUT)
    assert created.status_code == 200, created.text
    return str(created.json()["experiment_id"])


def _put(session: requests.Session, url: str, path: str, data: bytes) -> requests.Response:
    return session.put(f"{url}{ARTIFACTS}/{path}", data=data, timeout=TIMEOUT)


@dataclass
class Victim:
    experiment_id: str
    run_id: str
    model_id: str
    model_root: str  # the logged model's artifact path, `<exp>/models/<model id>/artifacts`


@pytest.fixture(scope="module")
def people(reach: Reach) -> dict[str, Any]:
    """Alice, whose experiment, run and logged model Mallory holds nothing on; both may use `lab`."""
    alice, mallory = (
        reach.admin.person(unique("alice") + "@example.com"),
        reach.admin.person(unique("mallory") + "@example.com"),
    )
    for person in (alice, mallory):
        reach.admin.grant("workspaces/lab", "CAN_USE", user=person.name)
    return {"alice": alice, "mallory": mallory}


@pytest.fixture(scope="module")
def victim(reach: Reach, people: dict[str, Any]) -> Victim:
    alice, url = reach.http("lab", people["alice"].token), reach.gateway.url
    experiment_id = _experiment(alice, url)
    run = alice.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=TIMEOUT)
    run_id = str(run.json()["run"]["info"]["run_id"])
    model = alice.post(
        f"{url}/api/2.0/mlflow/logged-models", json={"experiment_id": experiment_id, "name": "m"}, timeout=TIMEOUT
    )
    assert model.status_code == 200, model.text
    info = model.json()["model"]["info"]
    model_root = str(info["artifact_uri"]).removeprefix("mlflow-artifacts:").lstrip("/")
    for path in (f"{experiment_id}/{run_id}/artifacts/model.pkl", f"{model_root}/model.pkl"):
        assert _put(alice, url, path, b"alice's weights").status_code == 200
    reach.drained()
    assert reach.central_file("run", run_id, "model.pkl") == b"alice's weights"
    assert reach.central_file("model", str(info["model_id"]), "model.pkl") == b"alice's weights"
    return Victim(experiment_id, run_id, str(info["model_id"]), model_root)


def test_a_path_under_ones_own_experiment_naming_anothers_run_or_model_is_refused(
    reach: Reach, people: dict[str, Any], victim: Victim
) -> None:
    """The relay copies an upload into the central copy of the run or logged model its path names: Mallory, an
    editor of her own experiment only, overwrote the central copy of Alice's model file by naming Alice's run (or
    logged model) under her own experiment, and anyone loading it from the central store ran her bytes."""
    mallory, url = reach.http("lab", people["mallory"].token), reach.gateway.url
    own = _experiment(mallory, url)
    hidden = mallory.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": victim.run_id}, timeout=TIMEOUT)
    assert hidden.status_code == 404  # Alice's run is not Mallory's to see
    for path, missing in [
        (f"{own}/{victim.run_id}/artifacts/model.pkl", f"Run with id={victim.run_id} not found"),
        (f"{own}/models/{victim.model_id}/artifacts/model.pkl", f"Logged model with ID '{victim.model_id}' not found."),
    ]:
        for method in ("PUT", "GET"):
            answer = mallory.request(method, f"{url}{ARTIFACTS}/{path}", data=b"mallory's weights", timeout=TIMEOUT)
            assert answer.status_code == 404, f"{method} {path}: {answer.status_code} {answer.text}"
            assert answer.json() == mlflow_error("RESOURCE_DOES_NOT_EXIST", missing)
    # Her own run's files, and a folder that names no run, are hers as before.
    run = mallory.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": own}, timeout=TIMEOUT)
    own_run = run.json()["run"]["info"]["run_id"]
    for path in (f"{own}/{own_run}/artifacts/notes.txt", f"{own}/x/y.txt"):
        assert _put(mallory, url, path, b"mine").status_code == 200, path
    reach.drained()
    assert reach.central_file("run", victim.run_id, "model.pkl") == b"alice's weights"
    assert reach.central_file("model", victim.model_id, "model.pkl") == b"alice's weights"


def test_a_manager_of_a_stores_default_workspace_reaches_no_other_workspace_of_the_store(
    reach: Reach, people: dict[str, Any], victim: Victim
) -> None:
    """MLflow keeps its `default` workspace's artifacts at the root of the artifact store, where
    `workspaces/<name>/` holds every other workspace's, and in `default` it serves a bare `workspaces` path as
    that folder. Mallory, who manages `legacy` (the central store's `default`), listed the store's other
    workspaces and deleted every file of theirs, `lab`'s central copies included, with one DELETE."""
    url, mallory = reach.gateway.url, reach.admin.person(unique("mallory") + "@example.com")
    reach.admin.grant("workspaces/legacy", "CAN_MANAGE", user=mallory.name)
    legacy = reach.http("legacy", mallory.token)
    message = "Artifact paths prefixed with 'workspaces/' must include a workspace name."
    for path in ("workspaces", "Workspaces", "WORKSPACES"):
        for method, target, params in [
            ("GET", f"{url}{ARTIFACTS}", {"path": path}),
            ("DELETE", f"{url}{ARTIFACTS}/{path}", None),
            ("PUT", f"{url}{ARTIFACTS}/{path}", None),
            ("GET", f"{url}{ARTIFACTS}/{path}", None),
        ]:
            answer = legacy.request(method, target, params=params, data=b"x" if method == "PUT" else None)
            assert answer.status_code == 400, f"{method} {path}: {answer.status_code} {answer.text}"
            assert answer.json() == mlflow_error("INVALID_PARAMETER_VALUE", message)
    # Her own workspace's files are hers as before: the root (her experiments), and a file of her experiment.
    own = _experiment(legacy, url)
    assert _put(legacy, url, f"{own}/notes.txt", b"mine").status_code == 200
    listed = legacy.get(f"{url}{ARTIFACTS}", params={"path": own}, timeout=TIMEOUT)
    assert listed.status_code == 200 and [f["path"] for f in listed.json()["files"]] == ["notes.txt"], listed.text
    assert legacy.get(f"{url}{ARTIFACTS}", timeout=TIMEOUT).status_code == 200
    # lab's central copies are all there.
    assert reach.central_file("run", victim.run_id, "model.pkl") == b"alice's weights"
    assert reach.central_file("model", victim.model_id, "model.pkl") == b"alice's weights"


def test_a_manager_of_a_stores_default_workspace_reaches_no_other_workspace_by_the_stores_own_spellings(
    reach: Reach, people: dict[str, Any], victim: Victim
) -> None:
    """MLflow reads every artifact route's path as a URL (`validate_path_is_safe`): an empty query or fragment at
    its end is dropped and a `file:` URI is read as the path it names. So `workspaces?` (`workspaces#`) was the bare
    `workspaces` folder the gateway refuses, and `?`, `#` and `file:` the empty path, which `default` serves as the
    root of the whole artifact store: Mallory, who manages `legacy` (the central store's `default`), listed every
    other workspace of the store, and one DELETE of `workspaces?` (or of `?`) removed all their files."""
    url, mallory = reach.gateway.url, reach.admin.person(unique("mallory") + "@example.com")
    reach.admin.grant("workspaces/legacy", "CAN_MANAGE", user=mallory.name)
    legacy = reach.http("legacy", mallory.token)
    spellings = [("workspaces?", "workspaces"), ("Workspaces#", "Workspaces"), ("?", ""), ("#", "")]
    for path, read in [*spellings, ("file:", ""), ("FILE:", ""), ("file:?workspaces", "")]:
        message = f"Invalid artifact path: {path!r}. The store would read it as {read!r}."
        for method, target, params in [
            ("GET", f"{url}{ARTIFACTS}", {"path": path}),
            ("GET", f"{url}{ARTIFACTS}/{quote(path)}", None),
            ("PUT", f"{url}{ARTIFACTS}/{quote(path)}", None),
            ("DELETE", f"{url}{ARTIFACTS}/{quote(path)}", None),
        ]:
            answer = legacy.request(method, target, params=params, data=b"x" if method == "PUT" else None)
            assert answer.status_code == 400, f"{method} {path}: {answer.status_code} {answer.text}"
            assert answer.json() == mlflow_error("INVALID_PARAMETER_VALUE", message), answer.text
    # A run's files through the UI's routes (`path` relative to the run): the store reads it as the gateway does.
    alice = reach.http("lab", people["alice"].token)
    for route in ("/get-artifact", "/ajax-api/2.0/mlflow/upload-artifact"):
        method = "POST" if "upload" in route else "GET"
        params = {"run_uuid": victim.run_id, "run_id": victim.run_id, "path": "model.pkl?"}
        headers = {"Content-Type": "application/octet-stream"}
        answer = alice.request(method, f"{url}{route}", params=params, data=b"x", headers=headers)
        assert answer.status_code == 400, f"{route}: {answer.status_code} {answer.text}"
    # Files whose names hold a `?` or `:` the store keeps as written are written and read as before.
    own = _experiment(legacy, url)
    for name in ("what?.txt", "model:v1.txt"):
        assert _put(legacy, url, f"{own}/{quote(name)}", name.encode()).status_code == 200, name
        got = legacy.get(f"{url}{ARTIFACTS}/{own}/{quote(name)}", timeout=TIMEOUT)
        assert got.status_code == 200 and got.content == name.encode(), got.text
    listed = legacy.get(f"{url}{ARTIFACTS}", params={"path": own}, timeout=TIMEOUT)
    assert sorted(f["path"] for f in listed.json()["files"]) == ["model:v1.txt", "what?.txt"]
    # lab's central copies are all there.
    assert reach.central_file("run", victim.run_id, "model.pkl") == b"alice's weights"
    assert reach.central_file("model", victim.model_id, "model.pkl") == b"alice's weights"


def test_an_upload_into_a_folder_starting_with_two_dots_is_refused_not_failed(reach: Reach) -> None:
    """MLflow's local artifact store refuses to make a folder whose path starts with `..` (`..x`, `... `): not a
    traversal, a name, which it refuses with an exception its artifact routes answer as 500 `INTERNAL_ERROR` (the
    client retried it as the store's failure). 400 in MLflow's words; the same path as a file is written."""
    for workspace in ("lab", "legacy"):
        session, url = reach.http(workspace), reach.gateway.url
        for folder in ("..x", "... "):
            answer = _put(session, url, quote(f"{folder}/notes.txt"), b"x")
            message = (
                f"Invalid artifact path: '{folder}'. Names may be treated as files in certain cases, and must not "
                f"resolve to other names when treated as such. This name would resolve to '{folder}'"
            )
            assert answer.status_code == 400, f"{workspace} {folder!r}: {answer.status_code} {answer.text}"
            assert answer.json() == mlflow_error("INVALID_PARAMETER_VALUE", message)
        name = unique("..notes")
        assert _put(session, url, name, b"x").status_code == 200
        assert session.get(f"{url}{ARTIFACTS}/{name}", timeout=TIMEOUT).content == b"x"
        assert session.delete(f"{url}{ARTIFACTS}/{name}", timeout=TIMEOUT).status_code == 200


# Pieces of artifact paths: MLflow's URL reading (`?`, `#`, `file:`, schemes), traversal and escapes, Unicode dots.
_PIECES = ["x", "workspaces", "?", "#", "file:", "FILE:", "Ab:", ":", ".", "..", " ", "\uff0e", "%3F", ";"]
_PIECE = st.sampled_from(_PIECES)
_SEGMENT = st.lists(_PIECE, min_size=1, max_size=3).map("".join)


@pytest.fixture(scope="module")
def legacy_experiment(reach: Reach) -> str:
    return _experiment(reach.http("legacy"), reach.gateway.url)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(under_experiment=True, folders=[], ending=["?"])
@example(under_experiment=True, folders=["x"], ending=["#"])
@example(under_experiment=False, folders=["Ab:"], ending=[])
@example(under_experiment=False, folders=["..x"], ending=[])
@given(under_experiment=st.booleans(), folders=st.lists(_SEGMENT, max_size=2), ending=st.lists(_PIECE, max_size=2))
def test_an_upload_the_gateway_lets_through_lands_at_the_path_it_checked(
    reach: Reach, legacy_experiment: str, under_experiment: bool, folders: list[str], ending: list[str]
) -> None:
    """Differential against the store itself: an upload into `legacy` (the central store's `default`, whose files
    lie at the root of its artifact folder) that the gateway lets through is either refused by the store or
    written at exactly the path the guard checked, read from the store's disk; never a 500. Before,
    `<experiment>/notes?` and `<experiment>/notes#` were written as `<experiment>/notes`, `Ab:/notes` as
    `ab:/notes`, and an upload into a folder `..x` was answered 500 `INTERNAL_ERROR`."""
    name = unique("file") + "".join(ending)  # a new file each time, never a folder of an earlier one
    path = "/".join([legacy_experiment, *folders, name] if under_experiment else [*folders, name])
    assume(not {".", ".."} & set(path.split("/")))  # the client itself resolves those (requests' URL parsing)
    content = name.encode()
    answer = reach.http("legacy").put(f"{reach.gateway.url}{ARTIFACTS}/{quote(path)}", data=content, timeout=TIMEOUT)
    assert answer.status_code < 500, f"{path!r}: {answer.status_code} {answer.text}"
    if answer.status_code == 200:
        on_disk = reach.central.root / "artifacts" / path
        assert on_disk.is_file() and on_disk.read_bytes() == content, f"{path!r} was written elsewhere"


def test_an_experiment_given_a_renamed_experiments_old_name_gets_a_central_copy_of_its_own(
    reach: Reach, people: dict[str, Any]
) -> None:
    """Alice renames her experiment and Mallory creates one under its old name: the store takes both in that
    order, but the relay applies each experiment's entries in order of their own, and found Mallory's copy by
    name in Alice's copy while Alice's rename waited. Mallory's runs and renames then went into Alice's central
    experiment (served to Mallory by failover). Here a relay holds Alice's key, as one busy with it would."""
    import asyncpg

    url = reach.gateway.url
    alice, mallory = reach.http("lab", people["alice"].token), reach.http("lab", people["mallory"].token)
    name = unique("quarterly")
    created = alice.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": name}, timeout=TIMEOUT)
    alices = str(created.json()["experiment_id"])
    run = alice.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": alices}, timeout=TIMEOUT)
    alices_run = run.json()["run"]["info"]["run_id"]
    reach.drained()

    loop = asyncio.new_event_loop()
    relay = loop.run_until_complete(asyncpg.connect(reach.database_url))
    try:
        key = f"4001/experiment:{alices}"
        assert loop.run_until_complete(relay.fetchval("SELECT pg_try_advisory_lock(7005, hashtext($1))", key))
        renamed = alice.post(
            f"{url}/api/2.0/mlflow/experiments/update",
            json={"experiment_id": alices, "new_name": f"{name}-old"},
            timeout=TIMEOUT,
        )
        assert renamed.status_code == 200, renamed.text
        created = mallory.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": name}, timeout=TIMEOUT)
        assert created.status_code == 200, created.text
        mallorys = str(created.json()["experiment_id"])
        run = mallory.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": mallorys}, timeout=TIMEOUT)
        mallorys_run = run.json()["run"]["info"]["run_id"]

        def tried() -> Any:
            query = "SELECT state, refusals FROM outbox WHERE order_key = $1 AND route LIKE '%experiments/create'"
            return loop.run_until_complete(relay.fetchrow(query, f"4001/experiment:{mallorys}"))

        until(tried, lambda row: row is not None and (row["state"] != "pending" or row["refusals"] > 0),
              "the relay tried Mallory's experiment")  # fmt: skip
        loop.run_until_complete(relay.fetchval("SELECT pg_advisory_unlock(7005, hashtext($1))", key))
    finally:
        loop.run_until_complete(relay.close())
        loop.close()
    reach.drained()

    central = requests.Session()
    central.headers["X-MLFLOW-WORKSPACE"] = "lab"
    search = {"max_results": 1000, "view_type": "ALL"}
    found = central.post(f"{reach.central.url}/api/2.0/mlflow/experiments/search", json=search, timeout=TIMEOUT)
    tagged = [({t["key"]: t["value"] for t in e.get("tags") or []}, e) for e in found.json()["experiments"]]
    copies = {tags["fedgate.source_experiment_id"]: e for tags, e in tagged if "fedgate.source_experiment_id" in tags}
    assert copies[alices]["name"] == f"{name}-old"
    assert copies[mallorys]["name"] == name
    assert copies[mallorys]["experiment_id"] != copies[alices]["experiment_id"]
    for owner, experiment_id, run_id in [(alices, alices, alices_run), (mallorys, mallorys, mallorys_run)]:
        runs = central.post(
            f"{reach.central.url}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [copies[owner]["experiment_id"]], "run_view_type": "ALL"},
            timeout=TIMEOUT,
        ).json()["runs"]
        sources = [next(t["value"] for t in r["data"]["tags"] if t["key"] == "fedgate.source_run_id") for r in runs]
        assert sources == [run_id], (experiment_id, sources)


def test_a_model_created_under_a_renamed_models_old_name_never_reaches_the_renamed_models_copy(
    reach: Reach, people: dict[str, Any]
) -> None:
    """Alice renames her registered model and Mallory registers one under its old name, then tags it. The relay
    ordered registry writes per name (a rename under its new one), so Mallory's could come first: her model took the
    central copy still under that name, Alice's, for its own and her tag landed on it. Here a relay holds the key
    Alice's rename was once ordered under, as one busy with it would; now every registry write waits its turn."""
    import asyncpg

    url = reach.gateway.url
    alice, mallory = reach.http("lab", people["alice"].token), reach.http("lab", people["mallory"].token)
    models = f"{url}/api/2.0/mlflow/registered-models"
    name = unique("forecast")
    assert alice.post(f"{models}/create", json={"name": name}, timeout=TIMEOUT).status_code == 200
    reach.drained()

    loop = asyncio.new_event_loop()
    relay = loop.run_until_complete(asyncpg.connect(reach.database_url))
    try:
        key = f"4001/model:{name}-old"
        assert loop.run_until_complete(relay.fetchval("SELECT pg_try_advisory_lock(7005, hashtext($1))", key))
        renamed = alice.post(f"{models}/rename", json={"name": name, "new_name": f"{name}-old"}, timeout=TIMEOUT)
        assert renamed.status_code == 200, renamed.text
        assert mallory.post(f"{models}/create", json={"name": name}, timeout=TIMEOUT).status_code == 200
        tag = {"name": name, "key": "owner", "value": "mallory"}
        assert mallory.post(f"{models}/set-tag", json=tag, timeout=TIMEOUT).status_code == 200

        def tried() -> Any:
            query = "SELECT state, refusals FROM outbox WHERE route LIKE '%registered-models/set-tag' AND payload @> $1"
            return loop.run_until_complete(relay.fetchrow(query, json.dumps({"request": tag})))

        until(tried, lambda row: row is not None and (row["state"] != "pending" or row["refusals"] > 0),
              "the relay tried Mallory's tag")  # fmt: skip
        loop.run_until_complete(relay.fetchval("SELECT pg_advisory_unlock(7005, hashtext($1))", key))
    finally:
        loop.run_until_complete(relay.close())
        loop.close()
    reach.drained()

    central = requests.Session()
    central.headers["X-MLFLOW-WORKSPACE"] = "lab"

    def tags_of(model: str) -> dict[str, str] | None:
        got = central.get(f"{reach.central.url}/api/2.0/mlflow/registered-models/get", params={"name": model})
        if got.status_code != 200:
            return None
        return {t["key"]: t["value"] for t in got.json()["registered_model"].get("tags") or []}

    assert tags_of(f"{name}-old") == {}  # Alice's, renamed, without Mallory's tag
    assert tags_of(name) == {"owner": "mallory"}  # Mallory's own copy
