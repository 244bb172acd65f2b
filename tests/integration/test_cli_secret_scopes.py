"""`fedgate secrets` scope commands against a running gateway: a scope's life cycle from the command line, values
from a file and from standard input (a real pipe), never from argv and never printed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from gateway.cli import main
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, unique

pytestmark = pytest.mark.integration

WORKSPACE = "team-a"


def read_values(stack: Stack, scope: str, keys: list[str]) -> dict[str, bytes | None]:
    """The values as a running run reads them (the account admin's run of team-a)."""
    admin = Admin.of(stack).http(WORKSPACE)
    experiment = admin.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("cli")}, timeout=60)
    run = admin.post(
        f"{stack.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment.json()["experiment_id"]},
        timeout=60,
    )
    answer = admin.post(
        f"{stack.url}/api/2.0/secrets/get-many",
        json={"scope": scope, "keys": keys, "run_id": run.json()["run"]["info"]["run_id"]},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return {k: base64.b64decode(v) if v is not None else None for k, v in answer.json()["values"].items()}


def test_a_scope_life_cycle_from_the_command_line(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('cli-owner')}@example.com")
    reader = admin.person(f"{unique('cli-reader')}@example.com")
    for person in (owner, reader):
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
    monkeypatch.setenv("FEDGATE_TOKEN", owner.token)
    monkeypatch.delenv("FEDGATE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    scope = unique("cli-creds")

    def fedgate(*argv: str, code: int = 0) -> str:
        assert main(["secrets", *argv, "--workspace", WORKSPACE, "--url", stack.url]) == code, capsys.readouterr()
        captured = capsys.readouterr()
        return captured.out if code == 0 else captured.err

    assert fedgate("create-scope", scope) == f"created scope {scope}\n"
    assert "RESOURCE_ALREADY_EXISTS" in fedgate("create-scope", scope, code=1)
    listed = fedgate("list-scopes")
    assert listed.splitlines()[0].split() == ["SCOPE", "BACKEND"]
    assert any(line.split() == [scope, "DATABRICKS"] for line in listed.splitlines())

    binary = b"\x00\xffbinary value\n" + uuid.uuid4().bytes
    value_file = tmp_path / "value.bin"
    value_file.write_bytes(binary)
    assert fedgate("put", scope, "blob", "--value-file", str(value_file)) == f"set secret blob in scope {scope}\n"

    # Standard input through a real pipe, in a process of its own: the bytes exactly, trailing newline included.
    piped = f"pw-{uuid.uuid4().hex}\n"
    put = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "secrets", "put", scope, "db-password"],
        input=piped.encode(),
        capture_output=True,
        env={**os.environ, "FEDGATE_TOKEN": owner.token, "FEDGATE_URL": stack.url, "MLFLOW_WORKSPACE": WORKSPACE},
        timeout=120,
        check=False,
    )
    assert put.returncode == 0, put.stderr
    assert piped.strip() not in (put.stdout + put.stderr).decode()

    secrets_listed = fedgate("list", scope)
    assert [line.split()[0] for line in secrets_listed.splitlines()] == ["KEY", "blob", "db-password"]
    assert piped.strip() not in secrets_listed
    as_json = json.loads(fedgate("list", scope, "--json"))
    assert {s["key"] for s in as_json["secrets"]} == {"blob", "db-password"}
    assert read_values(stack, scope, ["blob", "db-password"]) == {"blob": binary, "db-password": piped.encode()}

    assert fedgate("put-acl", scope, reader.name, "read") == f"{reader.name} has READ on scope {scope}\n"
    assert fedgate("get-acl", scope, reader.name).splitlines()[1].split() == [reader.name, "READ"]
    acl = {line.split()[0]: line.split()[1] for line in fedgate("list-acls", scope).splitlines()[1:]}
    assert acl == {owner.name: "MANAGE", reader.name: "READ"}
    # The reader lists the keys but may not change the ACL.
    monkeypatch.setenv("FEDGATE_TOKEN", reader.token)
    assert "db-password" in fedgate("list", scope)
    assert "PERMISSION_DENIED" in fedgate("put-acl", scope, reader.name, "MANAGE", code=1)
    monkeypatch.setenv("FEDGATE_TOKEN", owner.token)

    assert fedgate("delete-acl", scope, reader.name) == f"removed the entry of {reader.name} from scope {scope}\n"
    assert "RESOURCE_DOES_NOT_EXIST" in fedgate("get-acl", scope, reader.name, code=1)
    assert fedgate("delete", scope, "blob") == f"deleted secret blob from scope {scope}\n"
    assert "RESOURCE_DOES_NOT_EXIST" in fedgate("delete", scope, "blob", code=1)
    assert fedgate("delete-scope", scope) == f"deleted scope {scope} with its secrets and ACL\n"
    assert scope not in fedgate("list-scopes")
    assert "RESOURCE_DOES_NOT_EXIST" in fedgate("list", scope, code=1)

    # No value reached the audit log of this scope's changes either.
    audit = requests.get(
        f"{stack.url}/api/2.0/fedgate/audit-log",
        params={"max_results": "1000", "actor": owner.name},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert audit.status_code == 200 and scope in audit.text
    assert piped.strip() not in audit.text and base64.b64encode(binary).decode() not in audit.text
