"""A training script reads its secrets with `gateway.client` inside `mlflow.start_run()`, through a real gateway.

The script runs as a process of its own with the stock mlflow client and nothing but the environment a user
sets (MLFLOW_TRACKING_URI, MLFLOW_WORKSPACE, MLFLOW_TRACKING_TOKEN): the workspace's default scope, an
explicit `scope/key`, FEDGATE_SECRET_SCOPE, `get_secrets` in one HTTP call with None for a missing name, a
missing secret named in the error, no run at all. A workspace linked over the admin API chooses its vault
and default scope (validation, and 409 for another vault while it has scopes); a vault that does not
answer is an exception saying to try again. No value reaches the script's output or the gateway's log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from gateway.devstack import NO_TELEMETRY, GatewayProcess, free_port
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack
from tests.databases import migrated_database
from tests.support.bao import BaoServer
from tests.support.identity import Admin, Person, unique
from tests.support.waiting import logged_so_far

pytestmark = pytest.mark.integration

TIMEOUT = 60

# The training script: plain MLflow code and the client module; prints digests, never a value.
TRAINING = """
import hashlib, json, os

import mlflow
import requests

from gateway.client import NoActiveRun, SecretNotFound, SecretsUnavailable, get_secret, get_secrets

calls = []
send = requests.Session.request


def counted(self, method, url, *args, **kwargs):
    if "/api/2.0/secrets/" in url:
        calls.append(url.rsplit("/", 1)[-1])
    return send(self, method, url, *args, **kwargs)


requests.Session.request = counted


def digest(value):
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def error(call):
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return None


first, second = os.environ["SCOPE_ONE"], os.environ["SCOPE_TWO"]
out = {"outside": error(lambda: get_secret("db-password"))}
mlflow.set_experiment(os.environ["EXPERIMENT"])
with mlflow.start_run() as run:
    out["run_id"] = run.info.run_id
    if os.environ.get("ONLY_UNAVAILABLE"):
        out["unavailable"] = error(lambda: get_secret("db-password"))
    else:
        out["default"] = digest(get_secret("db-password"))
        out["explicit"] = digest(get_secret(f"{second}/api-key"))
        os.environ["FEDGATE_SECRET_SCOPE"] = second
        out["from_env"] = digest(get_secret("api-key"))
        out["env_and_qualified"] = digest(get_secret(f"{first}/db-password"))
        del os.environ["FEDGATE_SECRET_SCOPE"]
        calls.clear()
        many = get_secrets(["db-password", "absent", f"{second}/api-key"])
        out["many"] = {name: digest(value) for name, value in many.items()}
        out["many_calls"] = list(calls)
        out["missing"] = error(lambda: get_secret("absent"))
        out["hidden_scope"] = error(lambda: get_secret(f"{os.environ['SCOPE_HIDDEN']}/db-password"))
        out["hidden_in_many"] = error(lambda: get_secrets(["db-password", f"{os.environ['SCOPE_HIDDEN']}/x"]))
out["ended"] = error(lambda: get_secret("db-password", run_id=out["run_id"]))
print(json.dumps(out))
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def train(tmp_path: Path, url: str, workspace: str, token: str, **env: str) -> tuple[dict[str, Any], str]:
    """Runs the training script as a user would; its answer and everything it printed."""
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FEDGATE_"))}
    done = subprocess.run(
        [sys.executable, str(script)],
        env={
            **base,
            **NO_TELEMETRY,
            "MLFLOW_TRACKING_URI": url,
            "MLFLOW_WORKSPACE": workspace,
            "MLFLOW_TRACKING_TOKEN": token,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "EXPERIMENT": unique("training"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def call(
    url: str, token: str, method: str, path: str, workspace: str | None = None, **kwargs: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if workspace:
        headers["X-MLFLOW-WORKSPACE"] = workspace
    return requests.request(method, f"{url}{path}", headers=headers, timeout=TIMEOUT, **kwargs)


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json() if response.content else None


def error_of(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.json()["error_code"] == code, response.text
    return str(response.json()["message"])


@dataclass(frozen=True)
class Team:
    workspace: str
    reader: Person
    scopes: tuple[str, str, str]  # the default scope, another one, one the reader holds nothing on
    values: dict[str, str]  # "<scope>/<key>" -> value


@pytest.fixture(scope="module")
def team(stack: Stack) -> Iterator[Team]:
    """A workspace linked over the admin API, a user who may work there, two scopes the user reads."""
    admin = Admin.of(stack)
    workspace = unique("runs")
    base = "/api/3.0/mlflow/workspaces"
    ok(
        call(
            stack.url,
            ADMIN_TOKEN,
            "POST",
            base,
            json={"name": workspace, "store": "central", "upstream_workspace": workspace},
        ),
        201,
    )
    reader = admin.person(f"{unique('trainer')}@example.com")
    admin.grant(f"workspaces/{workspace}", "CAN_USE", user=reader.name)
    first, second, hidden = unique("db-creds"), unique("partner-apis"), unique("ops-only")
    values = {
        f"{first}/db-password": f"pw-{uuid.uuid4().hex}",
        f"{second}/api-key": f"key-{uuid.uuid4().hex}",
        f"{hidden}/db-password": f"ops-{uuid.uuid4().hex}",
    }
    for scope in (first, second, hidden):
        ok(call(stack.url, ADMIN_TOKEN, "POST", "/api/2.0/secrets/scopes/create", workspace, json={"scope": scope}))
    for name, value in values.items():
        scope, key = name.split("/")
        body = {"scope": scope, "key": key, "string_value": value}
        ok(call(stack.url, ADMIN_TOKEN, "POST", "/api/2.0/secrets/put", workspace, json=body))
    for scope in (first, second):
        body = {"scope": scope, "principal": reader.name, "permission": "READ"}
        ok(call(stack.url, ADMIN_TOKEN, "POST", "/api/2.0/secrets/acls/put", workspace, json=body))
    # The default scope, over the admin API; the workspace answers it.
    changed = ok(call(stack.url, ADMIN_TOKEN, "PATCH", f"{base}/{workspace}", json={"default_secret_scope": first}))
    assert changed["workspace"]["default_secret_scope"] == first and "vault" not in changed["workspace"]
    yield Team(workspace, reader, (first, second, hidden), values)
    assert call(stack.url, ADMIN_TOKEN, "DELETE", f"{base}/{workspace}").status_code == 204


def audit_reads(stack: Stack, run_id: str) -> list[tuple[str, str, str]]:
    async def fetch() -> list[tuple[str, str, str]]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetch(
                "SELECT action, target, outcome FROM audit_log WHERE action LIKE 'secrets.get%' "
                "AND details::text LIKE $1 ORDER BY id",
                f"%{run_id}%",
            )
            return [(row["action"], row["target"], row["outcome"]) for row in rows]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_a_training_script_reads_its_secrets_inside_a_run(stack: Stack, team: Team, tmp_path: Path) -> None:
    first, second, hidden = team.scopes
    out, printed = train(
        tmp_path, stack.url, team.workspace, team.reader.token, SCOPE_ONE=first, SCOPE_TWO=second, SCOPE_HIDDEN=hidden
    )
    password, api_key = team.values[f"{first}/db-password"], team.values[f"{second}/api-key"]

    # The workspace's default scope; `scope/key`; FEDGATE_SECRET_SCOPE, which a `scope/` prefix still overrides.
    assert out["default"] == digest(password)
    assert out["explicit"] == digest(api_key)
    assert out["from_env"] == digest(api_key)
    assert out["env_and_qualified"] == digest(password)
    # Several at once: one HTTP call, None for the missing one, keyed by the names as given.
    assert out["many"] == {"db-password": digest(password), "absent": None, f"{second}/api-key": digest(api_key)}
    assert out["many_calls"] == ["get-many"]

    # A missing secret is an error naming it; a scope the reader holds nothing on reads the same.
    kind, message = out["missing"]
    assert kind == "SecretNotFound"
    assert "secret 'absent'" in message and f"Secret absent does not exist in scope {first}!" in message
    assert team.workspace in message and out["run_id"] in message
    kind, message = out["hidden_scope"]
    assert kind == "SecretNotFound" and f"secret '{hidden}/db-password'" in message
    assert f"Secret db-password does not exist in scope {hidden}!" in message
    kind, message = out["hidden_in_many"]
    assert kind == "SecretNotFound" and f"Scope {hidden} does not exist!" in message

    # Outside a run there is nothing to read with; once the run ended, its reads are refused.
    kind, message = out["outside"]
    assert kind == "NoActiveRun" and "needs an active MLflow run" in message and "mlflow.start_run()" in message
    kind, message = out["ended"]
    assert kind == "SecretNotFound" and "must be RUNNING" in message

    # Audited: one row per scope of each read, the get-many call naming both scopes it read.
    reads = audit_reads(stack, out["run_id"])
    many = [target for action, target, outcome in reads if action == "secrets.get_many" and outcome == "ok"]
    assert sorted(many) == sorted(f"secret_scope:w{workspace_id(stack, team.workspace)}/{s}" for s in (first, second))
    assert ("secrets.get", f"secret_scope:w{workspace_id(stack, team.workspace)}/{hidden}", "denied") in reads

    log = logged_so_far(stack.url, stack.gateway.log_path)
    for value in team.values.values():
        assert value not in printed and value not in log


def workspace_id(stack: Stack, name: str) -> str:
    answer = ok(call(stack.url, ADMIN_TOKEN, "GET", f"/api/3.0/mlflow/workspaces/{name}"))
    return str(answer["workspace"]["workspace_id"])


def test_the_rest_calls_take_a_scope_a_qualified_key_or_the_default(stack: Stack, team: Team) -> None:
    """What another language sends: the calls of docs/secrets.md, from a run created over REST."""
    first, second, _ = team.scopes
    token, workspace = team.reader.token, team.workspace
    experiment = ok(
        call(stack.url, token, "POST", "/api/2.0/mlflow/experiments/create", workspace, json={"name": unique("rest")})
    )["experiment_id"]
    run_id = ok(
        call(stack.url, token, "POST", "/api/2.0/mlflow/runs/create", workspace, json={"experiment_id": experiment})
    )["run"]["info"]["run_id"]

    def read(path: str, **body: Any) -> requests.Response:
        return call(stack.url, token, "POST", f"/api/2.0/secrets/{path}", workspace, json={**body, "run_id": run_id})

    b64 = {name: _b64(value) for name, value in team.values.items()}
    assert ok(read("get", key="db-password")) == {"key": "db-password", "value": b64[f"{first}/db-password"]}
    expected = {"key": "api-key", "value": b64[f"{second}/api-key"]}
    assert ok(read("get", key=f"{second}/api-key")) == ok(read("get", scope=second, key="api-key")) == expected
    many = read("get-many", keys=["db-password", f"{second}/api-key", "absent"])
    assert many.headers["Cache-Control"] == "no-store"
    assert ok(many) == {
        "values": {
            "db-password": b64[f"{first}/db-password"],
            f"{second}/api-key": b64[f"{second}/api-key"],
            "absent": None,
        }
    }
    # `scope` is the scope of the keys that name none.
    assert ok(read("get-many", scope=second, keys=["api-key"])) == {"values": {"api-key": b64[f"{second}/api-key"]}}

    # No scope named and no default scope (team-a has none): 400 saying how to name one.
    for path, body in (("get", {"key": "k"}), ("get-many", {"keys": ["k"]})):
        answer = call(
            stack.url, ADMIN_TOKEN, "POST", f"/api/2.0/secrets/{path}", "team-a", json={**body, "run_id": "r"}
        )
        message = error_of(answer, 400, "INVALID_PARAMETER_VALUE")
        assert "workspace 'team-a' has no default secret scope" in message and "'scope/key'" in message
    ok(
        call(
            stack.url,
            token,
            "POST",
            "/api/2.0/mlflow/runs/update",
            workspace,
            json={"run_id": run_id, "status": "FINISHED"},
        )
    )


def _b64(value: str) -> str:
    import base64

    return base64.b64encode(value.encode()).decode()


# -- a gateway with a second vault: the vault of a workspace over the admin API ------------------------------


@dataclass(frozen=True)
class Vaulted:
    url: str
    config: Path
    down_address: str  # where `down` is said to be: nobody answers there


@pytest.fixture(scope="module")
async def vaulted(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Vaulted]:
    """A gateway of its own (own database) with the built-in vault and `down`, an OpenBao nobody answers for."""
    root = tmp_path_factory.mktemp("vaulted")
    async with migrated_database(stack.database_url, "vaulted") as database:
        config = root / "fedgate.toml"
        down_address = f"http://127.0.0.1:{free_port()}"
        config.write_text(
            f"""
[account]
id = "7001"
[database]
url = "{database}"
[stores.central]
url = "{stack.stores["central"].url}"
workspaces = true
[vaults.down]
kind = "openbao"
address = "{down_address}"
timeout_seconds = 2
auth = {{ method = "token", token_env = "DOWN_VAULT_TOKEN" }}
"""
        )
        gateway = GatewayProcess(config, {**GATEWAY_ENV, "DOWN_VAULT_TOKEN": "not-a-real-token"})
        await asyncio.to_thread(gateway.start)
        try:
            yield Vaulted(gateway.url, config, down_address)
        finally:
            await asyncio.to_thread(gateway.stop)


def test_a_linked_workspace_chooses_its_vault_and_keeps_it_while_it_has_scopes(
    vaulted: Vaulted, bao: BaoServer, tmp_path: Path
) -> None:
    base = "/api/3.0/mlflow/workspaces"
    name = unique("vaulted")
    link = {"name": name, "store": "central", "upstream_workspace": name}

    message = error_of(
        call(vaulted.url, ADMIN_TOKEN, "POST", base, json={**link, "vault": "nowhere"}), 400, "INVALID_PARAMETER_VALUE"
    )
    assert "no vault named 'nowhere'" in message and "configured: builtin, down" in message
    for scope in ("bad scope", "a/b", "x" * 129):
        refused = call(vaulted.url, ADMIN_TOKEN, "POST", base, json={**link, "default_secret_scope": scope})
        assert "is not a valid scope name" in error_of(refused, 400, "INVALID_PARAMETER_VALUE")
    assert call(vaulted.url, ADMIN_TOKEN, "GET", f"{base}/{name}").status_code == 404

    created = ok(call(vaulted.url, ADMIN_TOKEN, "POST", base, json={**link, "default_secret_scope": "creds"}), 201)
    assert created["workspace"]["default_secret_scope"] == "creds" and "vault" not in created["workspace"]
    ok(call(vaulted.url, ADMIN_TOKEN, "POST", "/api/2.0/secrets/scopes/create", name, json={"scope": "creds"}))
    refused = call(vaulted.url, ADMIN_TOKEN, "PATCH", f"{base}/{name}", json={"vault": "down"})
    message = error_of(refused, 409, "INVALID_STATE")
    assert "1 secret scope(s) whose values live in vault 'builtin'" in message and "Delete its scopes first" in message
    assert "vault" not in ok(call(vaulted.url, ADMIN_TOKEN, "GET", f"{base}/{name}"))["workspace"]
    bad = call(vaulted.url, ADMIN_TOKEN, "PATCH", f"{base}/{name}", json={"default_secret_scope": "no good"})
    error_of(bad, 400, "INVALID_PARAMETER_VALUE")

    ok(call(vaulted.url, ADMIN_TOKEN, "POST", "/api/2.0/secrets/scopes/delete", name, json={"scope": "creds"}))
    moved = ok(call(vaulted.url, ADMIN_TOKEN, "PATCH", f"{base}/{name}", json={"vault": "down"}))
    assert (moved["workspace"]["vault"], moved["workspace"]["default_secret_scope"]) == ("down", "creds")

    # `fedgate workspaces list` shows both.
    listed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "workspaces", "--url", vaulted.url, "list"],
        env={**os.environ, "FEDGATE_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(name))
    assert row[-2:] == ["down", "creds"] and "VAULT" in listed.stdout.splitlines()[0]

    # New scopes live in `down`. A scope is made only where its vault answers (its location is emptied first):
    # here 503, nothing made; through a second gateway process on the same database, whose `down` is a real
    # OpenBao, it is made. Then the run's read, through the first, is an exception saying to try again.
    refused = call(vaulted.url, ADMIN_TOKEN, "POST", "/api/2.0/secrets/scopes/create", name, json={"scope": "creds"})
    assert "did not answer" in error_of(refused, 503, "TEMPORARILY_UNAVAILABLE")
    assert refused.headers["Retry-After"] == "5"
    assert ok(call(vaulted.url, ADMIN_TOKEN, "GET", "/api/2.0/secrets/scopes/list", name)) in ({}, {"scopes": []})
    answering = tmp_path / "answering.toml"
    answering.write_text(
        vaulted.config.read_text()
        .replace(f'address = "{vaulted.down_address}"', f'address = "{bao.address}"\nprefix = "{unique("down")}"')
        .replace('token_env = "DOWN_VAULT_TOKEN"', 'token_env = "ANSWERING_VAULT_TOKEN"')
    )
    second = GatewayProcess(answering, {**GATEWAY_ENV, "ANSWERING_VAULT_TOKEN": bao.root_token}).start()
    try:
        ok(call(second.url, ADMIN_TOKEN, "POST", "/api/2.0/secrets/scopes/create", name, json={"scope": "creds"}))
    finally:
        second.stop()
    out, _ = train(tmp_path, vaulted.url, name, ADMIN_TOKEN, SCOPE_ONE="creds", SCOPE_TWO="creds", ONLY_UNAVAILABLE="1")
    kind, message = out["unavailable"]
    assert kind == "SecretsUnavailable"
    assert "secret 'db-password'" in message and "Try again in 5 s" in message
    assert call(vaulted.url, ADMIN_TOKEN, "DELETE", f"{base}/{name}").status_code == 204
