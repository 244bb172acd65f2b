"""`fedgate secrets` scope commands: which HTTP calls a command line makes (no network), that a value never
comes from the command line, and how answers print."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import build_parser, plan_for
from gateway.cli.client import Call

SECRETS = "/api/2.0/secrets"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["secrets", "create-scope", "db-creds", "--workspace", "team-a"],
            Call("POST", f"{SECRETS}/scopes/create", {"scope": "db-creds"}, workspace="team-a"),
        ),
        (
            ["secrets", "create-scope", "db-creds", "--initial-manage-principal", "users", "--workspace", "team-a"],
            Call(
                "POST",
                f"{SECRETS}/scopes/create",
                {"scope": "db-creds", "initial_manage_principal": "users"},
                workspace="team-a",
            ),
        ),
        (
            ["secrets", "delete-scope", "db-creds", "--workspace", "team-a"],
            Call("POST", f"{SECRETS}/scopes/delete", {"scope": "db-creds"}, workspace="team-a"),
        ),
        (
            ["secrets", "list-scopes", "--workspace", "team-b"],
            Call("GET", f"{SECRETS}/scopes/list", workspace="team-b"),
        ),
        (
            ["secrets", "delete", "db-creds", "password", "--workspace", "team-a"],
            Call("POST", f"{SECRETS}/delete", {"scope": "db-creds", "key": "password"}, workspace="team-a"),
        ),
        (
            ["secrets", "list", "db-creds", "--workspace", "team-a"],
            Call("GET", f"{SECRETS}/list", query={"scope": "db-creds"}, workspace="team-a"),
        ),
        (
            ["secrets", "put-acl", "db-creds", "ml-engineers", "read", "--workspace", "team-a"],
            Call(
                "POST",
                f"{SECRETS}/acls/put",
                {"scope": "db-creds", "principal": "ml-engineers", "permission": "READ"},
                workspace="team-a",
            ),
        ),
        (
            ["secrets", "get-acl", "db-creds", "ann@example.com", "--workspace", "team-a"],
            Call(
                "GET",
                f"{SECRETS}/acls/get",
                query={"scope": "db-creds", "principal": "ann@example.com"},
                workspace="team-a",
            ),
        ),
        (
            ["secrets", "list-acls", "db-creds", "--workspace", "team-a"],
            Call("GET", f"{SECRETS}/acls/list", query={"scope": "db-creds"}, workspace="team-a"),
        ),
        (
            ["secrets", "delete-acl", "db-creds", "ml-engineers", "--workspace", "team-a"],
            Call(
                "POST",
                f"{SECRETS}/acls/delete",
                {"scope": "db-creds", "principal": "ml-engineers"},
                workspace="team-a",
            ),
        ),
    ],
)
def test_a_command_line_makes_these_calls(argv: list[str], expected: Call) -> None:
    assert plan_for(argv) == [expected]


def test_the_workspace_defaults_to_mlflow_workspace_else_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-b")
    assert plan_for(["secrets", "list-scopes"])[0].workspace == "team-b"
    monkeypatch.delenv("MLFLOW_WORKSPACE")
    assert plan_for(["secrets", "list", "s"])[0].workspace is None  # the gateway's default workspace


def test_put_reads_the_value_from_a_file_byte_for_byte(tmp_path: Path) -> None:
    value = b"pw-\x00\xff\n with a trailing newline\n"
    path = tmp_path / "value"
    path.write_bytes(value)
    [call] = plan_for(["secrets", "put", "db-creds", "blob", "--value-file", str(path), "--workspace", "team-a"])
    assert call == Call(
        "POST",
        f"{SECRETS}/put",
        {"scope": "db-creds", "key": "blob", "bytes_value": base64.b64encode(value).decode()},
        workspace="team-a",
    )


class Piped(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


def test_put_reads_piped_standard_input_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", Piped(io.BytesIO(b"s3cr\xc3\xa9t\n")))
    [call] = plan_for(["secrets", "put", "db-creds", "password"])
    assert call.body is not None and base64.b64decode(call.body["bytes_value"]) == b"s3cr\xc3\xa9t\n"


def test_put_prompts_without_echo_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(Piped):
        def isatty(self) -> bool:
            return True

    asked: list[str] = []

    def getpass(prompt: str = "") -> str:
        asked.append(prompt)
        return "typed-value"

    monkeypatch.setattr("sys.stdin", Terminal(io.BytesIO(b"")))
    monkeypatch.setattr("getpass.getpass", getpass)
    [call] = plan_for(["secrets", "put", "db-creds", "password"])
    assert call.body is not None and base64.b64decode(call.body["bytes_value"]) == b"typed-value"
    assert asked and "not shown" in asked[0]


@pytest.mark.parametrize("option", ["--string-value", "--bytes-value"])
def test_a_value_on_the_command_line_is_refused(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        build_parser().parse_args(["secrets", "put", "db-creds", "password", option, "hunter2"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "ps" in err and "--value-file" in err and "hunter2" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["secrets", "put-acl", "db-creds", "ann", "OWN"],
        ["secrets", "put-acl", "db-creds", "ann"],
        ["secrets", "put", "db-creds"],
        ["secrets", "create-scope"],
        ["secrets", "get-acl", "db-creds"],
        ["secrets", "list-scopes", "extra"],
    ],
)
def test_malformed_command_lines_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        build_parser().parse_args(argv)
    assert excinfo.value.code == 2
    assert "usage:" in capsys.readouterr().err


def show(argv: list[str], answer: Any, capsys: pytest.CaptureFixture[str]) -> list[str]:
    args = build_parser().parse_args(argv)
    args.show(args, answer)
    return capsys.readouterr().out.splitlines()


def test_answers_print_as_tables_without_values(capsys: pytest.CaptureFixture[str]) -> None:
    scopes = {
        "scopes": [{"name": "db-creds", "backend_type": "DATABRICKS"}, {"name": "kv", "backend_type": "AZURE_KEYVAULT"}]
    }
    assert show(["secrets", "list-scopes"], scopes, capsys) == [
        "SCOPE     BACKEND",
        "db-creds  DATABRICKS",
        "kv        AZURE_KEYVAULT",
    ]
    listed = {"secrets": [{"key": "password", "last_updated_timestamp": 1_767_225_600_000}]}
    assert show(["secrets", "list", "db-creds"], listed, capsys) == [
        "KEY       LAST UPDATED",
        "password  2026-01-01 00:00:00 UTC",
    ]
    acl = {
        "items": [{"principal": "ann@example.com", "permission": "MANAGE"}, {"principal": "ml", "permission": "READ"}]
    }
    assert show(["secrets", "list-acls", "db-creds"], acl, capsys) == [
        "PRINCIPAL        PERMISSION",
        "ann@example.com  MANAGE",
        "ml               READ",
    ]
    assert show(["secrets", "list-acls", "db-creds"], {}, capsys) == ["PRINCIPAL  PERMISSION"]
    one = {"principal": "ml", "permission": "READ"}
    assert show(["secrets", "get-acl", "db-creds", "ml"], one, capsys) == ["PRINCIPAL  PERMISSION", "ml         READ"]
    assert show(["secrets", "put-acl", "db-creds", "ml", "write"], {}, capsys) == ["ml has WRITE on scope db-creds"]
