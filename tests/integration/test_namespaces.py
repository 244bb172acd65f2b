"""One store namespace per workspace, and failover reads that keep to the workspace's own central copies.

The central store here has no workspaces (the README's first example): dual workspaces keep their
copies there under a name prefix, central-mode workspaces are refused, and no link may reach a
namespace another one reads or writes. Real mlflow servers, a real PostgreSQL, a real gateway process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, _start_all, _stop_all
from tests.support.identity import Admin, unique

pytestmark = pytest.mark.integration
EXPERIMENTS = "/api/2.0/mlflow/experiments"
RUNS = "/api/2.0/mlflow/runs"


@dataclass
class Namespaces:
    north: MlflowServer  # dual workspace `north`'s own store
    south: MlflowServer  # dual workspace `south`'s own store
    central: MlflowServer  # the central store, without workspaces
    spare: MlflowServer  # a store no declared workspace uses
    gateway: GatewayProcess
    database_url: str

    def http(self, workspace: str | None = None, token: str = ADMIN_TOKEN) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        if workspace:
            session.headers["X-MLFLOW-WORKSPACE"] = workspace
        return session

    def links(self) -> list[dict[str, Any]]:
        return list(self.http().get(f"{self.gateway.url}/api/2.0/fedgate/links", timeout=30).json()["links"])

    def drained(self, workspace: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if next(link for link in self.links() if link["workspace"] == workspace)["pending"] == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"outbox of {workspace} not drained")


@pytest.fixture(scope="module")
def spaces(workdir: Path) -> Iterator[Namespaces]:
    from gateway.db.engine import start_embedded

    root = workdir / "namespaces"
    embedded = start_embedded(root / "postgres")
    servers = [MlflowServer(root / name) for name in ("north", "south", "central", "spare")]
    _start_all(servers)
    north, south, central, spare = servers
    config = root / "fedgate.toml"
    config.write_text(
        f"""
[account]
id = "7003"
[database]
url = "{embedded.url}"
[stores.north]
url = "{north.url}"
[stores.south]
url = "{south.url}"
[stores.central]
url = "{central.url}"
workspaces = false
[stores.spare]
url = "{spare.url}"
[central]
store = "central"
[[workspaces]]
name = "north"
id = "3001"
store = "north"
mode = "dual"
[[workspaces]]
name = "south"
id = "3002"
store = "south"
mode = "dual"
"""
    )
    gateway = GatewayProcess(config, GATEWAY_ENV).start()
    try:
        yield Namespaces(north, south, central, spare, gateway, embedded.url)
    finally:
        gateway.stop()
        _stop_all(servers)
        embedded.stop()


def error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    body = response.json()
    assert body["error_code"] == code, body
    return str(body["message"])


# -- finding 3: workspaces sharing one store namespace ----------------------------------------------


def test_a_central_workspace_needs_a_central_store_with_workspaces(spaces: Namespaces) -> None:
    base = f"{spaces.gateway.url}/api/3.0/mlflow/workspaces"
    # Without a store a workspace is central-mode; on this central store every such workspace (and the
    # dual workspaces' copies) would share the one namespace the store has.
    for body in ({"name": "research-1"}, {"name": "research-2", "mode": "central"}):
        message = error(spaces.http().post(base, json=body, timeout=30), 400, "INVALID_PARAMETER_VALUE")
        assert "needs a central store with workspaces" in message and "workspaces = true" in message
    assert spaces.http().get(f"{base}/research-1", timeout=30).status_code == 404


def test_linking_into_an_occupied_namespace_is_refused_with_409(spaces: Namespaces) -> None:
    base = f"{spaces.gateway.url}/api/3.0/mlflow/workspaces"
    admin = spaces.http()
    assert admin.post(base, json={"name": "east", "store": "spare"}, timeout=30).status_code == 201
    try:
        for body, occupant in [
            ({"name": "west", "store": "spare"}, "east"),
            # An upstream workspace means nothing to a store without workspaces: still its one namespace.
            ({"name": "west", "store": "spare", "upstream_workspace": "west"}, "east"),
            ({"name": "west", "store": "north"}, "north"),  # a dual workspace's own store
            ({"name": "west", "store": "central"}, "north"),  # the whole central store holds north/ and south/
        ]:
            message = error(admin.post(base, json=body, timeout=30), 409, "RESOURCE_ALREADY_EXISTS")
            assert f"Workspace '{occupant}' already uses" in message, message
        moved = admin.patch(f"{base}/east", json={"store": "south"}, timeout=30)
        assert "Workspace 'south' already uses store 'south'" in error(moved, 409, "RESOURCE_ALREADY_EXISTS")
        assert admin.get(f"{base}/west", timeout=30).status_code == 404
        # east is untouched, and still served from its own store
        assert admin.get(f"{base}/east", timeout=30).json()["workspace"]["store"] == "spare"
        search = spaces.http("east").post(
            f"{spaces.gateway.url}{EXPERIMENTS}/search", json={"max_results": 10}, timeout=30
        )
        assert search.status_code == 200, search.text
    finally:
        assert admin.delete(f"{base}/east", timeout=30).status_code == 204


def _insert_link(database_url: str, name: str, workspace_id: int, store: str) -> None:
    """A row as an older gateway wrote it, past today's checks."""
    import asyncpg

    async def insert() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(
                "INSERT INTO workspace_links (name, workspace_id, mode, store, description, default_artifact_root,"
                " managed_by) VALUES ($1, $2, 'workspace', $3, '', '', 'api')",
                name,
                workspace_id,
                store,
            )
        finally:
            await connection.close()

    asyncio.run(insert())


def test_two_workspaces_on_one_namespace_in_the_database_are_reported_at_start_up_and_not_served(
    spaces: Namespaces,
) -> None:
    base = f"{spaces.gateway.url}/api/3.0/mlflow/workspaces"
    admin = spaces.http()
    assert admin.post(base, json={"name": "harbour", "store": "spare"}, timeout=30).status_code == 201
    _insert_link(spaces.database_url, "stowaway", 3999, "spare")
    spaces.gateway.stop()
    spaces.gateway.start()
    search = f"{spaces.gateway.url}{EXPERIMENTS}/search"
    try:
        for name, other in (("harbour", "stowaway"), ("stowaway", "harbour")):
            message = error(spaces.http(name).post(search, json={"max_results": 10}, timeout=30), 409, "INVALID_STATE")
            assert f"Workspace '{name}' and workspace '{other}' share one store namespace" in message
        conflicts = {link["workspace"]: link.get("conflict", "") for link in spaces.links()}
        assert "share one store namespace" in conflicts["harbour"] and "harbour" in conflicts["stowaway"]
        assert conflicts["north"] == "" and conflicts["south"] == ""
        assert spaces.gateway.log_path is not None
        log = spaces.gateway.log_path.read_text()
        assert "workspace harbour is not served" in log and "workspace stowaway is not served" in log
        assert spaces.http("north").post(search, json={"max_results": 10}, timeout=30).status_code == 200
        # The admin resolves it over the API; the other one is served again at once.
        assert admin.delete(f"{base}/stowaway", timeout=30).status_code == 204
        assert spaces.http("harbour").post(search, json={"max_results": 10}, timeout=30).status_code == 200
    finally:
        admin.delete(f"{base}/stowaway", timeout=30)
        assert admin.delete(f"{base}/harbour", timeout=30).status_code == 204


# -- finding 5: failover reads leaked the central namespace ------------------------------------------


def create(session: requests.Session, url: str, name: str) -> tuple[str, str]:
    """(experiment id, run id) of a new experiment with one run and a metric."""
    created = session.post(f"{url}{EXPERIMENTS}/create", json={"name": name}, timeout=30)
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    run = session.post(f"{url}{RUNS}/create", json={"experiment_id": experiment_id, "start_time": 1}, timeout=30)
    run_id = run.json()["run"]["info"]["run_id"]
    point = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 2, "step": 0}
    assert session.post(f"{url}{RUNS}/log-metric", json=point, timeout=30).status_code == 200
    return experiment_id, run_id


def reader_of(spaces: Namespaces, experiment_id: str) -> str:
    """A user who may enter `north` and read one of its experiments; their token."""
    admin = Admin(spaces.gateway.url)
    name, group = unique("reader") + "@example.com", unique("readers")
    admin.group(group, [admin.user(name)])
    admin.grant("workspaces/north", "CAN_USE", group=group)
    admin.grant(f"experiments/{experiment_id}", "CAN_READ", user=name, workspace="north")
    return admin.token_for(name)


def all_pages(session: requests.Session, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = ""
    while True:
        page = session.post(url, json={**body, **({"page_token": token} if token else {})}, timeout=30)
        assert page.status_code == 200 and page.headers.get("X-Fedgate-Served-By") == "central", page.text
        found += page.json().get("experiments") or []
        token = page.json().get("next_page_token") or ""
        if not token:
            return found


def test_failover_reads_return_only_the_workspaces_own_central_copies(spaces: Namespaces) -> None:
    url, tag = spaces.gateway.url, uuid.uuid4().hex[:6]
    south, north = spaces.http("south"), spaces.http("north")
    # South's copies first: the central store numbers them 1, 2, 3, which are also ids north's store
    # gives its own experiments; a leak then shows as south's data under north's ids.
    south_ids = {name: create(south, url, f"{name}-{tag}") for name in ("shared", "south-only", "south-extra")}
    spaces.drained("south")
    north_ids = {name: create(north, url, f"{name}-{tag}") for name in ("shared", "north-only")}
    spaces.drained("north")
    reader = reader_of(spaces, north_ids["north-only"][0])
    own = {
        e["experiment_id"]: e["name"]
        for e in north.post(f"{url}{EXPERIMENTS}/search", json={"max_results": 1000}).json()["experiments"]
    }
    central = requests.Session()
    copies = {}
    for name in south_ids:
        found = central.get(f"{spaces.central.url}{EXPERIMENTS}/get-by-name",
                            params={"experiment_name": f"south/{name}-{tag}"}, timeout=30)  # fmt: skip
        copies[name] = found.json()["experiment"]["experiment_id"]
    south_run_copy = central.post(
        f"{spaces.central.url}{RUNS}/search", json={"experiment_ids": [copies["south-only"]]}, timeout=30
    ).json()["runs"][0]["info"]["run_id"]
    foreign_experiment = next(c for c in copies.values() if c not in own)  # a south copy id north has no experiment of

    spaces.north.stop()
    try:
        listed = all_pages(north, f"{url}{EXPERIMENTS}/search", {"max_results": 1})
        assert listed and all(own.get(e["experiment_id"]) == e["name"] for e in listed), listed
        assert {f"shared-{tag}", f"north-only-{tag}"} <= {e["name"] for e in listed}
        assert not any("south" in e["name"] for e in listed)
        filtered = north.post(
            f"{url}{EXPERIMENTS}/search", json={"filter": f"name = 'shared-{tag}'", "max_results": 10}
        ).json()
        assert [e["experiment_id"] for e in filtered["experiments"]] == [north_ids["shared"][0]]
        # A reader of one experiment: the guard's narrowing names north's ids, which must stay north's.
        readers = spaces.http("north", reader)
        seen = (
            readers.post(f"{url}{EXPERIMENTS}/search", json={"max_results": 10}, timeout=30).json().get("experiments")
            or []
        )
        assert [(e["experiment_id"], e["name"]) for e in seen] == [(north_ids["north-only"][0], f"north-only-{tag}")]

        by_name = north.get(f"{url}{EXPERIMENTS}/get-by-name", params={"experiment_name": f"shared-{tag}"})
        assert by_name.json()["experiment"]["experiment_id"] == north_ids["shared"][0]
        absent = north.get(f"{url}{EXPERIMENTS}/get-by-name", params={"experiment_name": f"south-only-{tag}"})
        assert (
            error(absent, 404, "RESOURCE_DOES_NOT_EXIST") == f"Could not find experiment with name 'south-only-{tag}'"
        )
        alien = north.get(f"{url}{EXPERIMENTS}/get", params={"experiment_id": foreign_experiment})
        assert error(alien, 404, "RESOURCE_DOES_NOT_EXIST") == f"No Experiment with id={foreign_experiment} exists"

        north_runs = {run_id for _, run_id in north_ids.values()}
        for experiment_id in [north_ids["shared"][0], *copies.values()]:
            runs = north.post(f"{url}{RUNS}/search", json={"experiment_ids": [experiment_id]}).json().get("runs") or []
            assert {r["info"]["run_id"] for r in runs} <= north_runs
        runs = north.post(f"{url}{RUNS}/search", json={"experiment_ids": [north_ids["shared"][0]]}).json()["runs"]
        assert [r["info"]["run_id"] for r in runs] == [north_ids["shared"][1]]
        foreign_run = north.get(f"{url}{RUNS}/get", params={"run_id": south_run_copy})
        assert error(foreign_run, 404, "RESOURCE_DOES_NOT_EXIST") == f"Run with id={south_run_copy} not found"
        history = north.get(f"{url}/api/2.0/mlflow/metrics/get-history",
                            params={"run_id": south_run_copy, "metric_key": "loss"})  # fmt: skip
        error(history, 404, "RESOURCE_DOES_NOT_EXIST")
        own_history = north.get(f"{url}/api/2.0/mlflow/metrics/get-history",
                                params={"run_id": north_ids["shared"][1], "metric_key": "loss"})  # fmt: skip
        assert [m["value"] for m in own_history.json()["metrics"]] == [0.5]
        artifact = f"{url}/api/2.0/mlflow-artifacts/artifacts/{copies['south-only']}/{south_run_copy}/artifacts/x"
        error(north.get(artifact, timeout=30), 404, "RESOURCE_DOES_NOT_EXIST")
    finally:
        spaces.north.start(timeout=300)


@pytest.mark.parametrize(
    ("route", "raw"),
    [
        ("experiments/search", '{"max_results": 1, "view_type": 99}'),  # an enum number MLflow does not know
        ("experiments/search", '{"max_results": 1, "order_by": [1]}'),  # a number where MLflow wants text
        ("runs/search", '{"max_results": 1, "run_view_type": 99, "experiment_ids": ["{own}"]}'),
    ],
)
def test_a_failover_search_keeps_its_narrowing_whatever_mlflow_cannot_parse(
    spaces: Namespaces, route: str, raw: str
) -> None:
    """Failover ANDs `name LIKE 'north/%'` into an experiment search and puts the copies' ids into a run search, after
    the client's fields. MLflow stops parsing a body at the first value it cannot parse and searches with the fields
    read before it: the central store then searched every workspace's copies, and page by page (`max_results` 1)
    north's reader was answered an empty page with a next_page_token for each of south's experiments, which counted
    them. A rewritten search the central store would read only in part is refused, as the guard refuses its own."""
    url, tag = spaces.gateway.url, uuid.uuid4().hex[:6]
    south, north = spaces.http("south"), spaces.http("north")
    create(south, url, f"south-partial-{tag}")
    spaces.drained("south")
    own, _ = create(north, url, f"north-partial-{tag}")
    spaces.drained("north")
    body, target, json_type = (
        raw.replace("{own}", own),
        f"{url}/api/2.0/mlflow/{route}",
        {"Content-Type": "application/json"},
    )
    # North's own store reads the part it can: the gateway rewrote nothing (an admin's search is not narrowed).
    assert north.post(target, data=body, headers=json_type, timeout=30).status_code == 200
    spaces.north.stop()
    try:
        served = north.post(target, data=body, headers=json_type, timeout=30)
        error(served, 400, "INVALID_PARAMETER_VALUE")
        assert "south" not in served.text
    finally:
        spaces.north.start(timeout=300)
