"""Vaults that answer JSON of the wrong shape: the adapters report the vault unavailable (the API answers 503),
never an AttributeError or TypeError (which the gateway answered as a 500) and never a value read as missing.

OpenBao and Key Vault are scripted here (an aiohttp server on a free loopback port): neither real server can be
made to answer garbage. Their behaviour against real (or contract) servers is tests/integration/test_vault_*.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from adapters.vaults.azure_keyvault import AzureKeyVault, KeyVaultSettings, keyvault_name
from adapters.vaults.openbao import AppRoleAuth, OpenBaoSettings, OpenBaoVault, TokenAuth
from gateway.core.ports import VaultUnavailable
from tests.support.scripted import scripted_server

Answer = Callable[[web.Request], web.Response | None]
LOCATION = "w1/db"


@dataclass
class Scripted:
    address: str = ""
    answer: Answer = lambda request: None
    seen: list[str] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    scripted = Scripted()

    async def handle(request: web.Request) -> web.Response:
        scripted.seen.append(f"{request.method} {request.path}")
        return scripted.answer(request) or web.json_response({})

    async with scripted_server(handle) as address:
        scripted.address = address
        yield scripted


def raw(body: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


# Shapes a KV v2 answer never has, at each level the adapter reads.
GARBAGE = [
    {"data": "garbage-marker"},
    {"data": [1, 2]},
    {"data": 5},
    {"data": {"data": "garbage-marker"}},
    {"data": {"data": [1]}},
    {"data": {"keys": "abc"}},
    {"data": {"keys": [1, None, {"a": 1}]}},
    {"data": {"versions": [], "current_version": 1}},
    {"data": {"versions": {"1": "garbage-marker"}, "current_version": 1}},
    {"data": {"type": "kv", "options": "garbage-marker"}},
    {"data": {"policies": [1, 2], "ttl": "soon", "display_name": 3}},
    {"errors": 5},
    {"errors": {"a": 1}},
]


def openbao(server: Scripted, **settings: Any) -> OpenBaoVault:
    return OpenBaoVault("bao", OpenBaoSettings(address=server.address, auth=TokenAuth("t"), attempts=1, **settings))


@pytest.mark.parametrize("body", GARBAGE, ids=[json.dumps(b)[:40] for b in GARBAGE])
@pytest.mark.parametrize("operation", ["get", "get_many", "list", "delete", "drop", "check"])
async def test_openbao_answering_the_wrong_shape_is_unavailable_or_read_sanely(
    server: Scripted, body: object, operation: str
) -> None:
    def answer(request: web.Request) -> web.Response:
        if request.path.endswith("/auth/token/lookup-self") and operation != "check":
            return raw({"data": {"ttl": 0}})
        if operation in ("list", "drop") and request.method == "GET" and "/metadata/" in request.path:
            return raw({"data": {"current_version": 1, "versions": {"1": {"created_time": "x"}}}})
        if request.method == "DELETE":
            return web.Response(status=204)
        return raw(body, 404 if isinstance(body, dict) and "errors" in body else 200)

    server.answer = answer
    vault = openbao(server)
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: vault.get(LOCATION, "k"),
        "get_many": lambda: vault.get_many(LOCATION, ["k", "j"]),
        "list": lambda: vault.list(LOCATION),
        "delete": lambda: vault.delete(LOCATION, "k"),
        "drop": lambda: vault.drop(LOCATION),
        "check": lambda: vault.check(),
    }
    try:
        outcome = await calls[operation]()
    except VaultUnavailable as exc:
        assert "garbage-marker" not in str(exc)  # the answer is described, never quoted
        return
    finally:
        await vault.close()
    # What an answer of another shape may read as: nothing in the scope, never a value.
    if operation in ("get", "get_many"):
        assert outcome in (None, {"k": None, "j": None})
    elif operation == "list":
        assert outcome == []
    elif operation == "check":
        assert isinstance(outcome, str)


@pytest.mark.parametrize(
    "body",
    [{"data": {"data": "garbage-marker"}}, {"data": "garbage-marker"}, {"data": {"data": [1]}}],
    ids=["data-data-text", "data-text", "data-data-list"],
)
async def test_an_openbao_read_of_the_wrong_shape_is_unavailable_never_missing(server: Scripted, body: object) -> None:
    """A 200 for a secret that is not a KV v2 secret is a failure: read as missing, the leak guard would not
    look for the value in the run's writes."""
    server.answer = lambda request: raw({"data": {"ttl": 0}}) if request.path.endswith("lookup-self") else raw(body)
    vault = openbao(server)
    try:
        with pytest.raises(VaultUnavailable):
            await vault.get(LOCATION, "k")
    finally:
        await vault.close()


@pytest.mark.parametrize(
    "login",
    [{"auth": "garbage-marker"}, {"auth": [1]}, {"auth": {"client_token": "tok", "lease_duration": "long"}}],
    ids=["auth-text", "auth-list", "lease-text"],
)
async def test_an_approle_login_answered_in_the_wrong_shape_is_unavailable_or_works(
    server: Scripted, login: object
) -> None:
    def answer(request: web.Request) -> web.Response:
        if request.path.endswith("/login"):
            return raw(login)
        return raw({"data": {"data": {"value": "plain"}}})

    server.answer = answer
    vault = OpenBaoVault(
        "bao", OpenBaoSettings(address=server.address, auth=AppRoleAuth("role", "secret-id"), attempts=1)
    )
    try:
        assert await vault.get(LOCATION, "k") == b"plain"
    except VaultUnavailable:
        pass
    finally:
        await vault.close()


KEYVAULT_GARBAGE = [
    {"value": "v", "attributes": "garbage-marker"},
    {"value": "v", "attributes": [1]},
    {"value": [{"id": 5, "attributes": "x"}], "nextLink": None},
    {"value": [{"id": "https://[bad/secrets/x", "attributes": []}], "nextLink": None},
    {"value": [{"id": "https://h/secrets/w1-db--k", "attributes": "x"}], "nextLink": None},
    {"value": [], "nextLink": "http://[::1"},
    {"value": [], "nextLink": 5},
]


@pytest.mark.parametrize("body", KEYVAULT_GARBAGE, ids=[json.dumps(b)[:40] for b in KEYVAULT_GARBAGE])
@pytest.mark.parametrize("operation", ["get", "list"])
async def test_key_vault_answering_the_wrong_shape_is_unavailable_or_read_sanely(
    server: Scripted, body: object, operation: str
) -> None:
    def answer(request: web.Request) -> web.Response:
        if request.path.endswith("/oauth2/v2.0/token"):
            return raw({"access_token": "tok", "expires_in": 3600})
        return raw(body)

    server.answer = answer
    settings = KeyVaultSettings(
        vault_url=server.address,
        tenant_id="tenant",
        client_id="client",
        client_secret="client-secret",
        authority_host=server.address,
        attempts=1,
    )
    vault = AzureKeyVault("kv", settings)
    try:
        if operation == "get":
            outcome: Any = await vault.get(LOCATION, "k")
            assert outcome in (None, b"v")
        else:
            outcome = await vault.list(LOCATION)
            assert [info.key for info in outcome] in ([], ["k"])
    except VaultUnavailable:
        pass
    finally:
        await vault.close()
    assert keyvault_name(LOCATION, "k") == "w1-db--k"
