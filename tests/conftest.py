"""Session fixtures: real embedded PostgreSQL, real mlflow servers, a real gateway process."""

from __future__ import annotations

import os

from gateway.devstack import NO_TELEMETRY

# Before mlflow is imported: its telemetry thread edits os.environ while requests iterates it.
os.environ.update(NO_TELEMETRY)
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from gateway.devstack import GatewayProcess, MlflowServer, free_port
from tests.support.bao import BaoServer, start_bao

# No property test is timed: on a loaded machine (CI shares its cores) how long one example took says nothing of
# the code, and Hypothesis's default 200 ms deadline (and its too-slow check of data generation) failed such tests
# at random. A test's own @settings still applies on top of this.
hypothesis_settings.register_profile("fedgate", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("fedgate")

ADMIN_TOKEN = "test-admin-token-4f1c2b9e7d"
MAX_JSON_BODY = 4 * 1024 * 1024
GUARDED_ADMIN = ("store-admin", "store-password-91c7e2")
# Nothing ever listens here: the store of the `offline` workspace.
OFFLINE_PORT = free_port()
# A test's own receiver of webhooks and fake LLM provider listens here (tests/integration/test_outbound.py); the
# test gateway allows destinations under OUTBOUND_ALLOWED only.
OUTBOUND_PORT = free_port()
OUTBOUND_ALLOWED = f"http://127.0.0.1:{OUTBOUND_PORT}/allowed"
# Store `a` accepts plain-http destinations on loopback, so that it reaches that receiver: the gateway's
# allow-list is what keeps its webhooks and providers in bounds.
OUTBOUND_STORE_ENV = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS": "true",
    # MLflow keeps the webhooks of each event in a cache for this many seconds (60 by default): a webhook made
    # within that time of the event's last delivery missed the next one, and a test of it failed or passed by
    # the clock. Without the cache the store reads its webhooks for every event.
    "MLFLOW_WEBHOOK_CACHE_TTL": "0",
}


# The built-in vault's key of the test gateway (a fixed, test-only key: 32 bytes, base64).
VAULT_KEYS = "active=t1 t1:ZmVkZ2F0ZS10ZXN0cy1idWlsdGluLXZhdWx0LWtleSE="
GATEWAY_ENV = {
    "FEDGATE_ADMIN_TOKEN": ADMIN_TOKEN,
    "GUARDED_PASSWORD": GUARDED_ADMIN[1],
    "FEDGATE_VAULT_KEYS": VAULT_KEYS,
}


@dataclass
class Stack:
    gateway: GatewayProcess
    stores: dict[str, MlflowServer]
    database_url: str
    workdir: Path

    @property
    def url(self) -> str:
        return self.gateway.url

    def http(self, workspace: str | None = None, token: str | None = ADMIN_TOKEN) -> requests.Session:
        session = requests.Session()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        if workspace:
            session.headers["X-MLFLOW-WORKSPACE"] = workspace
        return session


def _start_all(servers: list[MlflowServer]) -> None:
    errors: list[BaseException] = []

    def start(server: MlflowServer) -> None:
        try:
            server.start(timeout=180)
        except BaseException as exc:  # reported below, after every thread ended
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        _stop_all(servers)
        raise errors[0]


def _stop_all(servers: list[MlflowServer]) -> None:
    """Stopped side by side: each may take seconds to wind down."""
    threads = [threading.Thread(target=server.stop) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def write_config(path: Path, database_url: str, stores: dict[str, MlflowServer], extra: str = "") -> Path:
    store_blocks = "\n".join(
        f'[stores.{name}]\nurl = "{server.url}"\nworkspaces = {str(server.workspaces).lower()}\n'
        + (
            f'auth = {{ kind = "basic", username = "{server.basic_auth[0]}", password_env = "GUARDED_PASSWORD" }}\n'
            if server.basic_auth
            else ""
        )
        for name, server in stores.items()
    )
    path.write_text(
        f"""
[account]
id = "7001"
[server]
max_json_body_bytes = {MAX_JSON_BODY}
[database]
url = "{database_url}"
{store_blocks}
[stores.offline]
url = "http://127.0.0.1:{OFFLINE_PORT}"

[outbound]
allowed_destinations = ["{OUTBOUND_ALLOWED}"]

[central]
store = "central"
[[workspaces]]
name = "team-a"
id = "1001"
store = "a"
[[workspaces]]
name = "team-b"
id = "1002"
store = "b"
[[workspaces]]
name = "team-c"
id = "1003"
store = "central"
upstream_workspace = "upstream-c"
[[workspaces]]
name = "guarded"
id = "1006"
store = "guarded"
[[workspaces]]
name = "offline"
id = "1005"
store = "offline"
[[workspaces]]
name = "research"
id = "1004"
mode = "central"
upstream_workspace = "research"
{extra}
"""
    )
    return path


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Outside pytest's own temp root: pytest makes that 0700 whenever another session starts, and the
    embedded PostgreSQL runs as a separate user that must keep reaching its data directory."""
    root = Path(tempfile.mkdtemp(prefix="fedgate-tests-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(workdir: Path) -> Iterator[str]:
    from gateway.db.engine import start_embedded

    database = start_embedded(workdir / "postgres")
    yield database.url
    database.stop()


@pytest.fixture(scope="session")
def stores(workdir: Path) -> Iterator[dict[str, MlflowServer]]:
    servers = {
        "a": MlflowServer(workdir / "store-a", env=OUTBOUND_STORE_ENV),
        "b": MlflowServer(workdir / "store-b"),
        # The account's central store is an MLflow server with workspaces enabled.
        "central": MlflowServer(workdir / "store-central", workspaces=True),
        # A store behind MLflow's own basic-auth app: the gateway presents its credentials.
        "guarded": MlflowServer(workdir / "store-guarded", basic_auth=GUARDED_ADMIN),
    }
    _start_all(list(servers.values()))
    for upstream in ("upstream-c", "research"):
        response = requests.post(
            f"{servers['central'].url}/api/3.0/mlflow/workspaces", json={"name": upstream}, timeout=30
        )
        assert response.status_code == 201, response.text
    yield servers
    _stop_all(list(servers.values()))


@pytest.fixture(scope="session")
def stack(workdir: Path, database_url: str, stores: dict[str, MlflowServer]) -> Iterator[Stack]:
    config = write_config(workdir / "fedgate.toml", database_url, stores)
    gateway = GatewayProcess(config, GATEWAY_ENV).start()
    # An account admin of the account's own, as a real account has: the gateway refuses to remove the last active
    # one, and tests make admins of their own and remove them afterwards (the bootstrap token does not count).
    standing = requests.post(
        f"{gateway.url}/api/2.0/preview/scim/v2/Users",
        json={"userName": "standing-admin@example.com", "roles": [{"value": "account_admin"}]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert standing.status_code == 201, standing.text
    yield Stack(gateway, stores, database_url, workdir)
    gateway.stop()


@pytest.fixture(scope="session")
def bao(workdir: Path) -> Iterator[BaoServer]:
    """A real OpenBao dev server (in memory, KV v2 at secret/, root token ROOT_TOKEN of tests/support/bao.py)."""
    server = start_bao(workdir / "bao")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One headless Chromium per test module (Debian's chromium driven by Playwright).

    Playwright's sync API runs an event loop in the main thread for as long as it is open; kept for the
    whole session, it would make every later `asyncio.run` fail ("cannot be called from a running event
    loop"), so it is closed with the module that uses it.
    """
    from tests.support.browser import chromium_path

    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def mlflow_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stock client pointed at the gateway, as a user would configure it."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    mlflow.set_tracking_uri(stack.url)
    yield stack
    if mlflow.active_run():
        mlflow.end_run()
    mlflow.set_workspace(None)
    os.environ.pop("MLFLOW_WORKSPACE", None)
