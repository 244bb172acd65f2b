"""The store's MCP server registry through the gateway, with the stock client.

A workspace manager registers a server (its name holds a slash, which the stock client sends encoded as `%2F`),
versions, tags and an alias; a user of the workspace (CAN_USE) lists and reads them but cannot change them
(PERMISSION_DENIED); someone who holds nothing in the workspace is told it does not exist. Paths whose parameters
hold `.` or `..` segments, written plainly or percent-encoded, are refused before the store sees them; an encoded
slash reaches the same entry as a plain one, at the gateway and at the store alike.
"""

from __future__ import annotations

import http.client
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.conftest import Stack
from tests.support.identity import Admin, Person

pytestmark = pytest.mark.integration

PREFIX = "/api/3.0/mlflow/mcp-servers"


@dataclass(frozen=True)
class Cast:
    manager: Person  # CAN_MANAGE on team-a
    user: Person  # CAN_USE on team-a
    outsider: Person  # holds nothing in team-a


@pytest.fixture(scope="module")
def cast(stack: Stack) -> Cast:
    admin = Admin.of(stack)
    suffix = uuid.uuid4().hex[:6]
    manager, user, outsider = (admin.person(f"mcp-{r}.{suffix}@example.com") for r in ("manager", "user", "out"))
    admin.grant("workspaces/team-a", "CAN_MANAGE", user=manager.name)
    admin.grant("workspaces/team-a", "CAN_USE", user=user.name)
    admin.grant("workspaces/team-b", "CAN_USE", user=outsider.name)
    return Cast(manager, user, outsider)


@pytest.fixture
def client_as(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Person], MlflowClient]]:
    """The stock client of team-a, as `person` (the token is read per call)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    def client(person: Person) -> MlflowClient:
        os.environ["MLFLOW_TRACKING_TOKEN"] = person.token
        return MlflowClient(stack.url)

    yield client
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


def _refusal(action: Callable[[], Any]) -> MlflowException:
    with pytest.raises(MlflowException) as caught:
        action()
    return caught.value


def _raw(base: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """One call with the path sent byte for byte (no client-side normalising of dot segments or escapes)."""
    where = urlsplit(base)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
    try:
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, json.loads(body) if body else {}
    finally:
        connection.close()


@pytest.fixture
def server(cast: Cast, client_as: Callable[[Person], MlflowClient]) -> Iterator[str]:
    """A registered server with version 1.0.0, a tag, a version tag and an alias; removed afterwards."""
    manager = client_as(cast.manager)
    name = f"com.example.t{uuid.uuid4().hex[:6]}/weather-tools"
    manager.create_mcp_server(name=name, description="forecasts")
    manager.create_mcp_server_version(server_json={"name": name, "version": "1.0.0"}, tools=[])
    manager.set_mcp_server_tag(name, "team", "a")
    manager.set_mcp_server_version_tag(name, "1.0.0", "stage", "dev")
    manager.set_mcp_server_alias(name, "prod", "1.0.0")
    yield name
    client_as(cast.manager).delete_mcp_server(name)


def test_managers_register_users_read_and_outsiders_see_nothing(
    cast: Cast, client_as: Callable[[Person], MlflowClient], server: str
) -> None:
    user = client_as(cast.user)
    assert server in [s.name for s in user.search_mcp_servers()]
    found = user.get_mcp_server(server)
    assert (found.description, found.tags, found.aliases) == ("forecasts", {"team": "a"}, {"prod": "1.0.0"})
    assert [v.version for v in user.search_mcp_server_versions(server)] == ["1.0.0"]
    assert user.get_mcp_server_version(server, "1.0.0").tags == {"stage": "dev"}
    assert user.get_mcp_server_version_by_alias(server, "prod").version == "1.0.0"

    # A user of the workspace changes nothing; the entry is as the manager left it.
    for action in (
        lambda: user.set_mcp_server_tag(server, "team", "b"),
        lambda: user.delete_mcp_server_tag(server, "team"),
        lambda: user.set_mcp_server_version_tag(server, "1.0.0", "stage", "prod"),
        lambda: user.update_mcp_server(server, description="hijacked"),
        lambda: user.create_mcp_server_version(server_json={"name": server, "version": "2.0.0"}, tools=[]),
        lambda: user.delete_mcp_server_version(server, "1.0.0"),
        lambda: user.delete_mcp_server(server),
        lambda: user.create_mcp_server(name=f"{server}x"),
    ):
        assert _refusal(action).error_code == "PERMISSION_DENIED"
    assert user.get_mcp_server(server).description == "forecasts"
    assert [v.version for v in user.search_mcp_server_versions(server)] == ["1.0.0"]

    # The manager changes and removes what it registered, through the slash-holding name.
    manager = client_as(cast.manager)
    manager.update_mcp_server(server, description="forecasts, v2")
    manager.delete_mcp_server_version_tag(server, "1.0.0", "stage")
    manager.delete_mcp_server_tag(server, "team")
    manager.delete_mcp_server_alias(server, "prod")
    after = user.get_mcp_server(server)
    assert (after.description, after.tags, after.aliases) == ("forecasts, v2", {}, {})
    assert user.get_mcp_server_version(server, "1.0.0").tags == {}

    outsider = client_as(cast.outsider)
    for action in (
        lambda: outsider.get_mcp_server(server),
        lambda: outsider.search_mcp_servers(),
        lambda: outsider.set_mcp_server_tag(server, "team", "c"),
    ):
        assert _refusal(action).error_code == "RESOURCE_DOES_NOT_EXIST"


def test_dot_segments_are_refused_and_an_encoded_slash_names_the_same_entry(
    stack: Stack, cast: Cast, server: str
) -> None:
    headers = {"Authorization": f"Bearer {cast.manager.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    namespace, slug = server.split("/")
    plain = _raw(stack.url, "GET", f"{PREFIX}/{namespace}/{slug}", headers)
    encoded = _raw(stack.url, "GET", f"{PREFIX}/{namespace}%2F{slug}", headers)
    assert plain[0] == encoded[0] == 200, (plain, encoded)
    assert plain[1]["name"] == encoded[1]["name"] == server
    # The store reads the encoded slash the same way (it decodes the path before routing).
    direct = _raw(stack.stores["a"].url, "GET", f"{PREFIX}/{namespace}%2F{slug}", {})
    assert (direct[0], direct[1]["name"]) == (200, server)
    # Mixed case escapes are slashes too.
    assert _raw(stack.url, "GET", f"{PREFIX}/{namespace}%2f{slug}/versions/1.0.0", headers)[1]["version"] == "1.0.0"

    for method, path in (
        ("GET", f"{PREFIX}/{namespace}/{slug}/versions/..%2F..%2F..%2F2.0%2Fmlflow%2Fexperiments%2Fsearch"),
        ("GET", f"{PREFIX}/%2e%2e/%2e%2e/2.0/mlflow/experiments/search"),
        ("GET", f"{PREFIX}/%2E%2E%2F%2E%2E%2F2.0%2Fmlflow%2Fexperiments%2Fsearch"),
        ("GET", f"{PREFIX}/../../2.0/mlflow/experiments/search"),
        ("GET", f"{PREFIX}/{namespace}/./{slug}"),
        ("GET", f"{PREFIX}/{namespace}/%2e/{slug}"),
        ("GET", f"{PREFIX}/{namespace}/{slug}/versions/%252e%252e"),
        ("DELETE", f"{PREFIX}/{namespace}/{slug}/tags/%2e%2e"),
        ("DELETE", f"{PREFIX}/{namespace}%2F{slug}/versions/1.0.0/tags/..%2F..%2F..%2F..%2F{slug}"),
        ("DELETE", f"{PREFIX}/{namespace}/{slug}/versions/..%2F1.0.0"),
        ("PATCH", f"{PREFIX}/{namespace}/{slug}/endpoints/%2e%2e"),
        ("GET", f"{PREFIX}/{namespace}//{slug}"),
    ):
        status, answer = _raw(stack.url, method, path, headers)
        assert (status, answer.get("error_code")) == (400, "INVALID_PARAMETER_VALUE"), (method, path, answer)
    # Nothing was removed by the refused deletes.
    assert _raw(stack.url, "GET", f"{PREFIX}/{namespace}/{slug}/versions/1.0.0", headers)[0] == 200


def test_a_doubled_slash_in_the_registrys_prefix_is_merged_as_on_every_other_route(
    stack: Stack, cast: Cast, server: str
) -> None:
    """The gateway's router merges `//` in a route's static part (`//api/2.0/mlflow/experiments/get`, the registry's
    own list `//api/3.0/mlflow/mcp-servers`); the registry's routes by name, read from the raw target, took `//` there
    for no route at all (404). They now read it as the others do, and forward the path the store serves; a `//` in the
    name, after the prefix, is still an empty segment, refused."""
    headers = {"Authorization": f"Bearer {cast.user.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    quoted = server.replace("/", "%2F")
    plain = _raw(stack.url, "GET", f"{PREFIX}/{quoted}", headers)
    version = _raw(stack.url, "GET", f"{PREFIX}/{quoted}/versions/1.0.0", headers)
    assert (plain[0], plain[1]["name"], version[0], version[1]["version"]) == (200, server, 200, "1.0.0")
    assert _raw(stack.url, "GET", f"/{PREFIX}", headers)[0] == 200
    for spelt in (f"/{PREFIX}", "/api/3.0//mlflow/mcp-servers", "/api//3.0/mlflow//mcp-servers"):
        assert _raw(stack.url, "GET", f"{spelt}/{quoted}", headers) == plain, spelt
        assert _raw(stack.url, "GET", f"{spelt}/{quoted}/versions/1.0.0", headers) == version, spelt
    status, answer = _raw(stack.url, "GET", f"/{PREFIX}//{quoted}", headers)
    assert (status, answer.get("error_code")) == (400, "INVALID_PARAMETER_VALUE"), answer
    # Someone who holds nothing in the workspace is told it does not exist under every spelling.
    outsider = {"Authorization": f"Bearer {cast.outsider.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    status, answer = _raw(stack.url, "GET", f"/{PREFIX}/{quoted}", outsider)
    assert (status, answer.get("error_code")) == (404, "RESOURCE_DOES_NOT_EXIST"), answer
