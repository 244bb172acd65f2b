"""`fedgate demo`: embedded PostgreSQL, local mlflow servers and the gateway, with a training run through it."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.core.config import VAULT_KEYS_ENV, VAULT_KEYS_FILE_ENV
from gateway.core.sealing import new_key_entry
from gateway.devstack import LOOPBACK, NO_TELEMETRY, GatewayProcess, MlflowServer, free_port

CENTRAL = "central"
STORES = ("team-a-store", "team-b-store", CENTRAL)
DEMO_USER = "ds@example.com"
# team-a's default secret scope: the demo's training reads `db-password` from it (gateway.client).
DEMO_SCOPE = "team-a-creds"
RELEASE_MANAGER = "release-manager@example.com"
SCIM = "/api/2.0/preview/scim/v2"


def _config(root: Path, servers: dict[str, MlflowServer]) -> str:
    stores = "\n".join(
        f'[stores.{name}]\nurl = "{server.url}"\nworkspaces = {str(server.workspaces).lower()}\n'
        for name, server in servers.items()
    )
    return f"""# Written by `fedgate demo`.
[account]
id = "7001"

[database]
data_dir = "{root / "gateway"}"

{stores}
[central]
store = "central"

[[workspaces]]
name = "team-a"
id = "1001"
store = "team-a-store"
default_secret_scope = "{DEMO_SCOPE}"

[[workspaces]]
name = "team-b"
id = "1002"
store = "team-b-store"

[[workspaces]]
name = "research"
id = "1003"
mode = "central"
"""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _vault_keys(root: Path) -> dict[str, str]:
    """The built-in vault's keys: the caller's, else a key file of the demo's own, kept beside its data."""
    if os.environ.get(VAULT_KEYS_ENV) or os.environ.get(VAULT_KEYS_FILE_ENV):
        return {}
    path = root / "vault-keys"
    if not path.exists():
        path.write_text(f"active=demo\n{new_key_entry('demo')}\n")
        path.chmod(0o600)
    return {VAULT_KEYS_FILE_ENV: str(path)}


def run_demo(root: Path, port: int = 8080) -> int:
    # Explicit handlers: a shell may start us with SIGINT ignored, and SIGTERM must clean up too.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    root = root.resolve()
    token = os.environ.get("FEDGATE_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    # The central store has workspaces: each central-mode workspace gets a namespace of its own there.
    servers = {name: MlflowServer(root / name, workspaces=name == CENTRAL) for name in STORES}
    gateway: GatewayProcess | None = None
    print(f"starting {len(servers)} mlflow servers (sqlite + proxied artifacts) under {root} ...", flush=True)
    try:
        threads = [threading.Thread(target=server.start) for server in servers.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, server in servers.items():
            if server.process is None or server.process.poll() is not None:
                raise RuntimeError(f"mlflow server {name} did not start; see {server.root / 'server.log'}")
            print(f"  {name:13} {server.url}", flush=True)
        _create_central_workspace(servers[CENTRAL], "research")
        config = root / "fedgate.toml"
        config.write_text(_config(root, servers))
        gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": token, **_vault_keys(root)}, port=_port(port))
        gateway.log_path = root / "gateway.log"
        gateway.start()
        print(f"gateway listening on {gateway.url} (log: {gateway.log_path})\n", flush=True)
        user_token = _provision_data_scientist(gateway.url, token)
        _put_demo_secret(gateway.url, user_token)
        env = {
            **os.environ,
            **NO_TELEMETRY,
            "MLFLOW_TRACKING_URI": gateway.url,
            "MLFLOW_TRACKING_TOKEN": user_token,
            "MLFLOW_WORKSPACE": "team-a",
        }
        example = Path(__file__).with_name("train.py")
        print(f"running {example} through the gateway as {DEMO_USER} ...", flush=True)
        finished = subprocess.run([sys.executable, str(example)], env=env, check=False)
        if finished.returncode != 0:
            print("the example failed; see the output above", file=sys.stderr)
            return 1
        hidden = _call(
            gateway.url, user_token, "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 1}, "team-b"
        )
        print(f"\n{DEMO_USER} asks for team-b, where it holds no grant: {hidden}", flush=True)
        _show_system_tables(gateway.url, token, user_token)
        _show_registry_workflow(gateway.url, token, user_token)
        print(
            f"\nOpen the MLflow UI: {gateway.url}/  (sign in with {DEMO_USER}'s token: {user_token})\n"
            "\nUse it from another shell:\n"
            f"  export MLFLOW_TRACKING_URI={gateway.url}\n"
            f"  export MLFLOW_TRACKING_TOKEN={user_token}   # {DEMO_USER}: team-a only\n"
            "  export MLFLOW_WORKSPACE=team-a\n"
            f"  (account admin: FEDGATE_ADMIN_TOKEN={token}, every workspace; see `fedgate users --help`)\n"
            f"\nConfig: {config}\nPress Ctrl-C to stop everything.",
            flush=True,
        )
        while gateway.process is not None and gateway.process.poll() is None:
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C (or a supervisor's SIGTERM after ours) must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if gateway is not None:
            gateway.stop()
        for server in servers.values():
            server.stop()


def _call(
    url: str, token: str, method: str, path: str, body: dict[str, Any] | None, workspace: str | None = None
) -> str:
    """One JSON call; answers `<status> <error_code or ok>` for display, the body for 2xx."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if workspace:
        headers["X-MLFLOW-WORKSPACE"] = workspace
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data, headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the demo's own gateway)
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}")
        return f"{exc.code} {error.get('error_code', '')}: {error.get('message', '')}"


def _create_central_workspace(server: MlflowServer, name: str) -> None:
    """The namespace of the central-mode workspace `research` on the central store (kept on a rerun)."""
    body = json.dumps({"name": name}).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(f"{server.url}/api/3.0/mlflow/workspaces", body, headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310 (the demo's own mlflow server)
            pass
    except urllib.error.HTTPError as exc:
        if b"ALREADY_EXISTS" not in exc.read():
            raise


def _user(url: str, admin_token: str, name: str) -> dict[str, Any]:
    """The user `name`, created unless a demo directory used before already has it."""
    created = _call(url, admin_token, "POST", f"{SCIM}/Users", {"userName": name})
    if not created.startswith("{"):
        found = _call(url, admin_token, "GET", f"{SCIM}/Users?filter=userName%20eq%20%22{name}%22", None)
        created = json.dumps(json.loads(found)["Resources"][0])
    return dict(json.loads(created))


def _provision_data_scientist(url: str, admin_token: str) -> str:
    """A user in a group that may work in team-a, with a personal access token: what an admin sets up."""
    user = _user(url, admin_token, DEMO_USER)
    _call(
        url, admin_token, "POST", f"{SCIM}/Groups", {"displayName": "data-science", "members": [{"value": user["id"]}]}
    )
    _call(
        url,
        admin_token,
        "PATCH",
        "/api/2.0/permissions/workspaces/team-a",
        {"access_control_list": [{"group_name": "data-science", "permission_level": "CAN_USE"}]},
    )
    issued = _call(url, admin_token, "POST", "/api/2.0/token-management/on-behalf-of/tokens", {"user_name": DEMO_USER})
    print(f"created user {DEMO_USER} in group data-science (CAN_USE on team-a) and a token for it", flush=True)
    return str(json.loads(issued)["token_value"])


def _put_demo_secret(url: str, user_token: str) -> None:
    """The data scientist makes team-a's secret scope (and manages it) and puts a fresh database password in it."""
    created = _call(url, user_token, "POST", "/api/2.0/secrets/scopes/create", {"scope": DEMO_SCOPE}, "team-a")
    if not created.startswith("{") and "RESOURCE_ALREADY_EXISTS" not in created:  # kept from an earlier run
        raise RuntimeError(f"creating secret scope {DEMO_SCOPE} failed: {created}")
    body = {"scope": DEMO_SCOPE, "key": "db-password", "string_value": secrets.token_urlsafe(18)}
    put = _call(url, user_token, "POST", "/api/2.0/secrets/put", body, "team-a")
    if not put.startswith("{"):
        raise RuntimeError(f"putting the demo secret failed: {put}")
    print(f"{DEMO_USER} put secret db-password into scope {DEMO_SCOPE} (team-a's default scope)", flush=True)


def _show_system_tables(url: str, admin_token: str, user_token: str) -> None:
    """The account-wide index: SQL over system.mlflow once granted, and the read-only `account` scope."""
    from gateway.cli.sql import show
    from gateway.sql.documented import SUCCESS_RATIO

    def sql(token: str, statement: str) -> dict[str, Any]:
        answer = _call(url, token, "POST", "/api/2.0/sql/statements", {"statement": statement, "wait_timeout": "30s"})
        return dict(json.loads(answer)) if answer.startswith("{") else {"status": {"error": {"message": answer}}}

    denied = sql(user_token, SUCCESS_RATIO)
    error = denied.get("status", {}).get("error")
    if error:
        print(f"\n{DEMO_USER} queries system.mlflow.runs_latest before any grant: {error.get('message')}")
    else:  # a demo directory used before keeps the grants below
        print(f"\n{DEMO_USER} already holds the grants below (kept from an earlier run of the demo)")
    for grant in (
        "GRANT USE CATALOG ON CATALOG system TO `data-science`",
        "GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `data-science`",
    ):
        sql(admin_token, grant)
        print(f"account admin: {grant}", flush=True)
    answer = sql(user_token, SUCCESS_RATIO)
    if answer.get("status", {}).get("state") == "SUCCEEDED":
        print(f'\n{DEMO_USER}: success ratio per experiment, every workspace (fedgate sql "..."):')
        columns = [c["name"] for c in answer["manifest"]["schema"]["columns"]]
        show(columns, answer["result"].get("data_array") or [])
    else:
        print(f"the system-table query failed: {answer.get('status')}", flush=True)
    experiments = _call(url, user_token, "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 50}, "account")
    ids = [e["experiment_id"] for e in json.loads(experiments).get("experiments") or []]
    runs = _call(
        url, user_token, "POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ids, "max_results": 50}, "account"
    )
    count = len(json.loads(runs).get("runs") or []) if runs.startswith("{") else runs
    print(
        f"\n{DEMO_USER} in the read-only `account` scope (mlflow.set_workspace('account')): "
        f"experiments {ids}, {count} runs it may read",
        flush=True,
    )


def _show_registry_workflow(url: str, admin_token: str, user_token: str) -> None:
    """The data scientist asks for Production, a release manager approves, and the model's activity log."""
    from gateway.cli.registry import show_activities

    model = "churn-model"
    _user(url, admin_token, RELEASE_MANAGER)
    enter = {"access_control_list": [{"user_name": RELEASE_MANAGER, "permission_level": "CAN_USE"}]}
    _call(url, admin_token, "PATCH", "/api/2.0/permissions/workspaces/team-a", enter)
    issued = _call(
        url, admin_token, "POST", "/api/2.0/token-management/on-behalf-of/tokens", {"user_name": RELEASE_MANAGER}
    )
    manager_token = str(json.loads(issued)["token_value"])
    lookup = f"/api/2.0/mlflow/databricks/registered-models/get?name={model}"
    found = _call(url, user_token, "GET", lookup, None, "team-a")
    if not found.startswith("{"):
        print(f"the registry workflow needs {model}: {found}", flush=True)
        return
    registered = json.loads(found)["registered_model_databricks"]
    version = str(max((int(v["version"]) for v in registered.get("latest_versions") or []), default=1))
    # The model's creator holds CAN_MANAGE on it and lets the release manager decide about Production.
    level = "CAN_MANAGE_PRODUCTION_VERSIONS"
    decide = {"access_control_list": [{"user_name": RELEASE_MANAGER, "permission_level": level}]}
    _call(url, user_token, "PATCH", f"/api/2.0/permissions/registered-models/{registered['id']}", decide, "team-a")
    body = {"name": model, "version": version, "stage": "Production"}
    requests = "/api/2.0/mlflow/transition-requests"
    asked = _call(url, user_token, "POST", f"{requests}/create", {**body, "comment": "accuracy is up"}, "team-a")
    print(f"\n{DEMO_USER} requests Production for {model} version {version}: {_outcome(asked)}", flush=True)
    approval = {**body, "archive_existing_versions": True, "comment": "approved for release"}
    approved = _call(url, manager_token, "POST", f"{requests}/approve", approval, "team-a")
    print(f"{RELEASE_MANAGER} (CAN_MANAGE_PRODUCTION_VERSIONS) approves it: {_outcome(approved)}", flush=True)
    log = _call(url, user_token, "GET", f"/api/2.0/mlflow/activities/list?name={model}", None, "team-a")
    print(f"\nthe activity log of {model} (fedgate registry activities {model} --workspace team-a):", flush=True)
    if log.startswith("{"):
        show_activities(argparse.Namespace(), json.loads(log))
    else:
        print(log, flush=True)


def _outcome(answer: str) -> str:
    """`ok` for an answer of `_call` that is a JSON body, else the error it is."""
    return "ok" if answer.startswith("{") else answer


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        # As uvicorn binds: a connection of the last run lingering on the port (TIME_WAIT) does not make it taken,
        # a server listening there does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, preferred))
        except OSError:
            return free_port()
    return preferred
