"""The OpenBao adapter's requests against a scripted HTTP server: Kubernetes login, retries, re-login, names.

The adapter's behaviour against a real server is tests/integration/test_vault_openbao.py; what a real
server cannot be made to do here (a Kubernetes login, a 5xx) is scripted."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.vaults.openbao import (
    KubernetesAuth,
    OpenBaoSettings,
    OpenBaoVault,
    TokenAuth,
    _epoch_ms,
)
from gateway.core.ports import VaultDenied, VaultNameRefused, VaultUnavailable
from tests.support.scripted import scripted_server

Handler = Callable[[web.Request, dict[str, Any] | None], web.Response | None]


@dataclass
class Scripted:
    """Records every request; `answer` decides each response (None: a 200 with an empty body)."""

    address: str = ""
    seen: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = field(default_factory=list)
    answer: Handler = lambda request, body: None


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    scripted = Scripted()

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        scripted.seen.append((request.method, request.path, dict(request.headers), body))
        return scripted.answer(request, body) or web.json_response({})

    async with scripted_server(handle) as address:
        scripted.address = address
        yield scripted


def login_answer(token: str = "k8s-issued-token", ttl: int = 3600) -> web.Response:
    return web.json_response({"auth": {"client_token": token, "lease_duration": ttl, "renewable": True}})


def secret_answer(value: bytes) -> web.Response:
    return web.json_response({"data": {"data": {"value": base64.b64encode(value).decode(), "encoding": "base64"}}})


async def test_kubernetes_login_posts_the_role_and_the_service_account_jwt(server: Scripted, tmp_path: Path) -> None:
    jwt = tmp_path / "token"
    jwt.write_text("eyJhbGciOiJSUzI1NiJ9.service-account.jwt\n")

    def answer(request: web.Request, body: dict[str, Any] | None) -> web.Response | None:
        if request.path == "/v1/auth/k8s-cluster/login":
            return login_answer()
        return secret_answer(b"v")

    server.answer = answer
    settings = OpenBaoSettings(
        address=server.address,
        auth=KubernetesAuth(role="fedgate", jwt_path=str(jwt), mount="k8s-cluster"),
        namespace="team-a",
        mount="kv",
        prefix="gw",
    )
    vault = OpenBaoVault("k8s", settings)
    try:
        assert await vault.get("w1/db", "password") == b"v"
    finally:
        await vault.close()
    (method, path, headers, body), (read_method, read_path, read_headers, _) = server.seen
    assert (method, path) == ("POST", "/v1/auth/k8s-cluster/login")
    assert body == {"role": "fedgate", "jwt": "eyJhbGciOiJSUzI1NiJ9.service-account.jwt"}
    assert headers["X-Vault-Namespace"] == "team-a" and "X-Vault-Token" not in headers
    assert (read_method, read_path) == ("GET", "/v1/kv/data/gw/w1/db/password")
    assert read_headers["X-Vault-Token"] == "k8s-issued-token" and read_headers["X-Vault-Namespace"] == "team-a"


async def test_kubernetes_logs_in_again_once_on_a_refusal_then_reports_denied(server: Scripted, tmp_path: Path) -> None:
    jwt = tmp_path / "token"
    jwt.write_text("jwt-1")
    logins = iter(["first-token", "second-token", "third-token"])

    def answer(request: web.Request, body: dict[str, Any] | None) -> web.Response | None:
        if request.path.endswith("/login"):
            return login_answer(next(logins))
        return web.json_response({"errors": ["permission denied"]}, status=403)

    server.answer = answer
    vault = OpenBaoVault("k8s", OpenBaoSettings(address=server.address, auth=KubernetesAuth("r", str(jwt))))
    try:
        with pytest.raises(VaultDenied, match="403") as caught:
            await vault.get("w1/db", "k")
    finally:
        await vault.close()
    assert [path for _, path, _, _ in server.seen] == [
        "/v1/auth/kubernetes/login",
        "/v1/secret/data/fedgate/w1/db/k",
        "/v1/auth/kubernetes/login",
        "/v1/secret/data/fedgate/w1/db/k",
    ]
    assert "token" not in str(caught.value).replace("gateway's token", "")


async def test_a_missing_jwt_file_is_denied_naming_the_file(tmp_path: Path) -> None:
    vault = OpenBaoVault(
        "k8s", OpenBaoSettings(address="http://127.0.0.1:9", auth=KubernetesAuth("r", str(tmp_path / "absent")))
    )
    with pytest.raises(VaultDenied, match="absent"):
        await vault.get("w1/db", "k")
    await vault.close()


async def test_5xx_is_retried_with_back_off_then_unavailable(server: Scripted) -> None:
    statuses = iter([503, 500, 200])

    def answer(request: web.Request, body: dict[str, Any] | None) -> web.Response | None:
        if request.path.endswith("lookup-self"):
            return web.json_response({"data": {"ttl": 0}})
        status = next(statuses, 502)
        return secret_answer(b"ok") if status == 200 else web.json_response({"errors": []}, status=status)

    server.answer = answer
    settings = OpenBaoSettings(address=server.address, auth=TokenAuth("t"), attempts=3, backoff_seconds=0.001)
    vault = OpenBaoVault("v", settings)
    try:
        assert await vault.get("w1/db", "k") == b"ok"
        with pytest.raises(VaultUnavailable, match="502"):
            await vault.get("w1/db", "k")
    finally:
        await vault.close()
    reads = [path for _, path, _, _ in server.seen if "/data/" in path]
    assert len(reads) == 3 + 3  # three tries each, bounded


async def test_a_login_is_not_repeated_on_a_5xx(server: Scripted, tmp_path: Path) -> None:
    jwt = tmp_path / "token"
    jwt.write_text("jwt")
    server.answer = lambda request, body: web.json_response({"errors": []}, status=500)
    vault = OpenBaoVault("k8s", OpenBaoSettings(address=server.address, auth=KubernetesAuth("r", str(jwt))))
    with pytest.raises(VaultUnavailable, match="500"):
        await vault.get("w1/db", "k")
    await vault.close()
    assert len(server.seen) == 1


async def test_a_token_is_denied_without_a_login_to_retry(server: Scripted) -> None:
    server.answer = lambda request, body: web.json_response({"errors": ["permission denied"]}, status=403)
    vault = OpenBaoVault("v", OpenBaoSettings(address=server.address, auth=TokenAuth("the-token-itself")))
    with pytest.raises(VaultDenied) as caught:
        await vault.put("w1/db", "k", b"the-value-itself")
    await vault.close()
    assert "the-token-itself" not in str(caught.value) and "the-value-itself" not in str(caught.value)
    assert [path for _, path, _, _ in server.seen][-1] == "/v1/secret/data/fedgate/w1/db/k"


@pytest.mark.parametrize(("location", "key"), [("w1/db", ".."), ("w1/db", "."), ("w1/..", "k"), ("w1//db", "k")])
async def test_path_segments_a_server_would_resolve_are_refused(location: str, key: str) -> None:
    vault = OpenBaoVault("v", OpenBaoSettings(address="http://127.0.0.1:9", auth=TokenAuth("t")))
    with pytest.raises(VaultNameRefused):
        await vault.get(location, key)
    await vault.close()


def test_update_times_are_read_to_the_millisecond() -> None:
    assert _epoch_ms("2026-12-02T11:50:02.437397408Z") == 1796212202437
    assert _epoch_ms("2026-12-02T12:50:02+01:00") == 1796212202000
    assert _epoch_ms("") == 0


def test_settings_do_not_show_credentials() -> None:
    settings = OpenBaoSettings(address="http://x", auth=TokenAuth("hidden-token"))
    assert "hidden-token" not in repr(settings)
