"""The access-control commands: which HTTP calls a command line makes (no network), and how answers print."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway.cli import build_parser, main, plan_for
from gateway.cli.client import Call, table

SCIM = "/api/2.0/preview/scim/v2"
MODEL_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["users", "list"], Call("GET", f"{SCIM}/Users")),
        (
            ["users", "list", "--filter", 'userName eq "ann"'],
            Call("GET", f"{SCIM}/Users", query={"filter": 'userName eq "ann"'}),
        ),
        (
            ["users", "create", "ann@example.com", "--display-name", "Ann", "--admin"],
            Call(
                "POST",
                f"{SCIM}/Users",
                {"userName": "ann@example.com", "displayName": "Ann", "roles": [{"value": "account_admin"}]},
            ),
        ),
        (["users", "create", "bob"], Call("POST", f"{SCIM}/Users", {"userName": "bob"})),
        (["users", "show", "7"], Call("GET", f"{SCIM}/Users/7")),
        (
            ["users", "disable", "7"],
            Call("PATCH", f"{SCIM}/Users/7", {"Operations": [{"op": "replace", "value": {"active": False}}]}),
        ),
        (
            ["users", "enable", "7"],
            Call("PATCH", f"{SCIM}/Users/7", {"Operations": [{"op": "replace", "value": {"active": True}}]}),
        ),
        (["users", "delete", "7"], Call("DELETE", f"{SCIM}/Users/7")),
        (["service-principals", "list"], Call("GET", f"{SCIM}/ServicePrincipals")),
        (
            ["service-principals", "create", "nightly job"],
            Call("POST", f"{SCIM}/ServicePrincipals", {"displayName": "nightly job"}),
        ),
        (["service-principals", "delete", "9"], Call("DELETE", f"{SCIM}/ServicePrincipals/9")),
        (["groups", "list"], Call("GET", f"{SCIM}/Groups")),
        (
            ["groups", "create", "ml-team", "--member", "7", "--member", "9"],
            Call("POST", f"{SCIM}/Groups", {"displayName": "ml-team", "members": [{"value": "7"}, {"value": "9"}]}),
        ),
        (["groups", "create", "empty"], Call("POST", f"{SCIM}/Groups", {"displayName": "empty", "members": []})),
        (["groups", "show", "3"], Call("GET", f"{SCIM}/Groups/3")),
        (
            ["groups", "add-member", "3", "7"],
            Call(
                "PATCH",
                f"{SCIM}/Groups/3",
                {"Operations": [{"op": "add", "path": "members", "value": [{"value": "7"}]}]},
            ),
        ),
        (
            ["groups", "remove-member", "3", "7"],
            Call("PATCH", f"{SCIM}/Groups/3", {"Operations": [{"op": "remove", "path": 'members[value eq "7"]'}]}),
        ),
        (["groups", "delete", "3"], Call("DELETE", f"{SCIM}/Groups/3")),
        (["tokens", "create"], Call("POST", "/api/2.0/token/create", {})),
        (
            ["tokens", "create", "--comment", "laptop", "--lifetime-seconds", "3600"],
            Call("POST", "/api/2.0/token/create", {"comment": "laptop", "lifetime_seconds": 3600}),
        ),
        (
            ["tokens", "create", "--for-user", "ann@example.com", "--comment", "ci"],
            Call(
                "POST",
                "/api/2.0/token-management/on-behalf-of/tokens",
                {"user_name": "ann@example.com", "comment": "ci"},
            ),
        ),
        (
            ["tokens", "create", "--for-sp", "6f1c-app"],
            Call("POST", "/api/2.0/token-management/on-behalf-of/tokens", {"application_id": "6f1c-app"}),
        ),
        (["tokens", "list"], Call("GET", "/api/2.0/token/list")),
        (["tokens", "list", "--all"], Call("GET", "/api/2.0/token-management/tokens")),
        (["tokens", "revoke", "abc123"], Call("POST", "/api/2.0/token/delete", {"token_id": "abc123"})),
        (["tokens", "revoke", "abc123", "--any"], Call("DELETE", "/api/2.0/token-management/tokens/abc123")),
        (
            ["permissions", "get", "experiment", "42", "--workspace", "team-a"],
            Call("GET", "/api/2.0/permissions/experiments/42", workspace="team-a"),
        ),
        (
            ["permissions", "update", "workspace", "team-a", "--group", "ml-team=can_use"],
            Call(
                "PATCH",
                "/api/2.0/permissions/workspaces/team-a",
                {"access_control_list": [{"group_name": "ml-team", "permission_level": "CAN_USE"}]},
            ),
        ),
        (
            [
                "permissions",
                "set",
                "experiment",
                "42",
                "--workspace",
                "team-a",
                "--user",
                "ann@example.com=CAN_MANAGE",
                "--group",
                "readers=CAN_READ",
                "--sp",
                "6f1c-app=CAN_EDIT",
            ],
            Call(
                "PUT",
                "/api/2.0/permissions/experiments/42",
                {
                    "access_control_list": [
                        {"user_name": "ann@example.com", "permission_level": "CAN_MANAGE"},
                        {"group_name": "readers", "permission_level": "CAN_READ"},
                        {"service_principal_name": "6f1c-app", "permission_level": "CAN_EDIT"},
                    ]
                },
                workspace="team-a",
            ),
        ),
        (
            ["permissions", "get", "registered-model", MODEL_ID, "--workspace", "team-b"],
            Call("GET", f"/api/2.0/permissions/registered-models/{MODEL_ID}", workspace="team-b"),
        ),
        (
            ["grants", "show", "catalog", "system"],
            Call("GET", "/api/2.1/unity-catalog/permissions/catalog/system"),
        ),
        (
            ["grants", "show", "schema", "system.mlflow", "--principal", "ml-team"],
            Call("GET", "/api/2.1/unity-catalog/permissions/schema/system.mlflow", query={"principal": "ml-team"}),
        ),
        (
            ["grants", "effective", "table", "system.mlflow.runs_latest", "--principal", "ann@example.com"],
            Call(
                "GET",
                "/api/2.1/unity-catalog/effective-permissions/table/system.mlflow.runs_latest",
                query={"principal": "ann@example.com"},
            ),
        ),
        (
            [
                "grants",
                "add",
                "--privilege",
                "USE_CATALOG",
                "--privilege",
                "select",
                "catalog",
                "system",
                "--principal",
                "ml-analysts",
            ],
            Call(
                "PATCH",
                "/api/2.1/unity-catalog/permissions/catalog/system",
                {"changes": [{"principal": "ml-analysts", "add": ["SELECT", "USE_CATALOG"]}]},
            ),
        ),
        (
            [
                "grants",
                "revoke",
                "schema",
                "system.mlflow",
                "--principal",
                "ml-analysts",
                "--privilege",
                "USE_SCHEMA,SELECT",
            ],
            Call(
                "PATCH",
                "/api/2.1/unity-catalog/permissions/schema/system.mlflow",
                {"changes": [{"principal": "ml-analysts", "remove": ["SELECT", "USE_SCHEMA"]}]},
            ),
        ),
        (["audit"], Call("GET", "/api/2.0/fedgate/audit-log", query={"max_results": "100"})),
        (
            ["audit", "--actor", "bob", "--action", "request.denied", "--outcome", "denied", "--limit", "5"],
            Call(
                "GET",
                "/api/2.0/fedgate/audit-log",
                query={"actor": "bob", "action": "request.denied", "outcome": "denied", "max_results": "5"},
            ),
        ),
    ],
)
def test_a_command_line_makes_these_calls(argv: list[str], expected: Call) -> None:
    assert plan_for(argv) == [expected]


def test_a_registered_model_named_rather_than_identified_is_looked_up_first() -> None:
    argv = ["permissions", "update", "registered-model", "churn model", "--workspace", "team-a"]
    [lookup] = plan_for([*argv, "--user", "ann@example.com=CAN_READ"])
    assert lookup == Call(
        "GET", "/api/2.0/mlflow/databricks/registered-models/get", query={"name": "churn model"}, workspace="team-a"
    )
    assert lookup.then is not None
    answer = {"registered_model_databricks": {"id": MODEL_ID, "name": "churn model", "permission_level": "CAN_MANAGE"}}
    assert lookup.then(answer) == [
        Call(
            "PATCH",
            f"/api/2.0/permissions/registered-models/{MODEL_ID}",
            {"access_control_list": [{"user_name": "ann@example.com", "permission_level": "CAN_READ"}]},
            workspace="team-a",
        )
    ]


def test_path_segments_are_escaped() -> None:
    assert plan_for(["users", "show", "7/../Groups"]) == [Call("GET", f"{SCIM}/Users/7%2F..%2FGroups")]
    assert plan_for(["tokens", "revoke", "a b", "--any"]) == [Call("DELETE", "/api/2.0/token-management/tokens/a%20b")]


def test_the_workspace_header_goes_only_with_experiments_and_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-b")
    [experiment] = plan_for(["permissions", "get", "experiment", "42"])
    assert experiment.workspace == "team-b"
    [workspace] = plan_for(["permissions", "get", "workspace", "team-a"])
    assert workspace.workspace is None


@pytest.mark.parametrize(
    "argv",
    [
        ["permissions", "update", "workspace", "team-a", "--group", "no-level"],
        ["permissions", "update", "workspace", "team-a", "--group", "=CAN_USE"],
        ["permissions", "get", "model", "x"],
        ["tokens", "create", "--for-user", "ann", "--for-sp", "app"],
        ["grants", "add", "catalog", "system", "--principal", "x"],  # no --privilege
        ["grants", "add", "volume", "system.x", "--principal", "x", "--privilege", "SELECT"],
        ["groups", "add-member", "3"],
    ],
)
def test_malformed_command_lines_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        build_parser().parse_args(argv)
    assert excinfo.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_an_update_without_entries_is_refused_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["permissions", "update", "workspace", "team-a", "--url", "http://127.0.0.1:9"]) == 2
    assert "at least one" in capsys.readouterr().err


def test_url_may_come_before_or_after_the_action() -> None:
    parser = build_parser()
    assert parser.parse_args(["users", "--url", "http://a:1", "list"]).url == "http://a:1"
    assert parser.parse_args(["users", "list", "--url", "http://b:2"]).url == "http://b:2"
    assert parser.parse_args(["users", "--url", "http://a:1", "list", "--url", "http://b:2"]).url == "http://b:2"


def test_table_aligns_columns(capsys: pytest.CaptureFixture[str]) -> None:
    table(("ID", "NAME", "ADMIN"), [(1, "ann", True), (12345, None, False), (7, ["a", "b"], None)])
    assert capsys.readouterr().out.splitlines() == [
        "ID     NAME  ADMIN",
        "1      ann   yes",
        "12345        no",
        "7      a, b",
    ]


# -- the executor against a stand-in HTTP server (loopback only) ------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []
    answers: dict[str, tuple[int, Any]] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        Recorder.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "authorization": self.headers.get("Authorization"),
                "workspace": self.headers.get("X-MLFLOW-WORKSPACE"),
            }
        )
        status, answer = Recorder.answers.get(self.path.split("?")[0], (200, {}))
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("FEDGATE_TOKEN", raising=False)
    monkeypatch.setenv("FEDGATE_ADMIN_TOKEN", "admin-secret")
    Recorder.seen, Recorder.answers = [], {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_executor_sends_query_workspace_and_follow_up_calls(
    server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDGATE_TOKEN", "user-secret")  # preferred over the admin token
    Recorder.answers["/api/2.0/mlflow/databricks/registered-models/get"] = (
        200,
        {"registered_model_databricks": {"id": MODEL_ID, "name": "m 1", "permission_level": "CAN_MANAGE"}},
    )
    Recorder.answers[f"/api/2.0/permissions/registered-models/{MODEL_ID}"] = (
        200,
        {
            "object_id": f"/registered-models/{MODEL_ID}",
            "object_type": "registered-model",
            "access_control_list": [
                {"group_name": "ml", "all_permissions": [{"permission_level": "CAN_READ", "inherited": False}]}
            ],
        },
    )
    argv = ["permissions", "update", "registered-model", "m 1", "--workspace", "team-a", "--group", "ml=CAN_READ"]
    assert main([*argv, "--url", server]) == 0
    lookup, update = Recorder.seen
    assert lookup["path"] == "/api/2.0/mlflow/databricks/registered-models/get?name=m+1"
    assert (lookup["workspace"], lookup["authorization"]) == ("team-a", "Bearer user-secret")
    assert (update["method"], update["path"], update["workspace"]) == (
        "PATCH",
        f"/api/2.0/permissions/registered-models/{MODEL_ID}",
        "team-a",
    )
    assert update["body"] == {"access_control_list": [{"group_name": "ml", "permission_level": "CAN_READ"}]}
    out = capsys.readouterr().out
    assert "PRINCIPAL" in out and "ml" in out and "CAN_READ" in out


def test_errors_are_printed_the_mlflow_way(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    Recorder.answers[f"{SCIM}/Users"] = (403, {"error_code": "PERMISSION_DENIED", "message": "admins only"})
    assert main(["users", "list", "--url", server]) == 1
    assert Recorder.seen[0]["authorization"] == "Bearer admin-secret"
    assert "PERMISSION_DENIED: admins only" in capsys.readouterr().err


def test_a_created_token_is_printed_once_with_a_warning(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    Recorder.answers["/api/2.0/token-management/on-behalf-of/tokens"] = (
        200,
        {"token_value": "dapi-secret", "token_info": {"token_id": "t1", "expiry_time": -1, "owner_name": "ann"}},
    )
    assert main(["tokens", "create", "--for-user", "ann", "--url", server]) == 0
    captured = capsys.readouterr()
    assert captured.out == "dapi-secret\n"
    assert "t1" in captured.err and "only time" in captured.err


def test_every_token_listed_names_its_creator_or_says_the_creator_was_deleted(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    made = {"creation_time": 0, "expiry_time": -1, "comment": "", "owner_id": 7, "owner_name": "ann@example.com"}
    Recorder.answers["/api/2.0/token-management/tokens"] = (
        200,
        {
            "token_infos": [
                {"token_id": "t1", **made, "created_by_id": 0, "created_by_username": "admin"},
                {"token_id": "t2", **made, "created_by_id": 42, "created_by_username": None},
            ]
        },
    )
    assert main(["tokens", "list", "--all", "--url", server]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " admin " in rows["t1"] and "(deleted, id 42)" in rows["t2"] and "admin" not in rows["t2"]
