"""Store credentials: OAuth2 client credentials against a real local token endpoint, static headers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from adapters.stores.auth import ClientCredentialsAuth, StaticStoreAuth, token_url_for
from gateway.core.ports import StoreUnreachable


class TokenEndpoint:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.expires_in = 3600
        self.fail = False

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append({"authorization": request.headers.get("Authorization", ""), **form})  # type: ignore[dict-item]
        if self.fail:
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response(
            {"access_token": f"tok-{len(self.requests)}", "token_type": "Bearer", "expires_in": self.expires_in}
        )


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[TokenEndpoint, str]]:
    state = TokenEndpoint()
    app = web.Application()
    app.router.add_post("/oauth2/token", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, f"http://127.0.0.1:{port}/oauth2/token"
    await runner.cleanup()


async def test_client_credentials_token_is_fetched_once_and_cached(endpoint: tuple[TokenEndpoint, str]) -> None:
    state, url = endpoint
    auth = ClientCredentialsAuth(url, "gateway-client", "s3cret", scope="all-apis")
    async with aiohttp.ClientSession() as session:
        assert await auth.authorization(session) == "Bearer tok-1"
        assert await auth.authorization(session) == "Bearer tok-1"
    assert len(state.requests) == 1
    sent = state.requests[0]
    assert sent["grant_type"] == "client_credentials" and sent["scope"] == "all-apis"
    assert sent["authorization"] == "Basic " + base64.b64encode(b"gateway-client:s3cret").decode()


async def test_token_is_refreshed_before_expiry_and_after_a_refusal(endpoint: tuple[TokenEndpoint, str]) -> None:
    state, url = endpoint
    state.expires_in = 30  # inside the refresh leeway: every use fetches a fresh token
    auth = ClientCredentialsAuth(url, "c", "s")
    async with aiohttp.ClientSession() as session:
        assert await auth.authorization(session) == "Bearer tok-1"
        assert await auth.authorization(session) == "Bearer tok-2"
        state.expires_in = 3600
        assert await auth.authorization(session) == "Bearer tok-3"
        auth.invalidate()
        assert await auth.authorization(session) == "Bearer tok-4"


async def test_token_endpoint_failure_names_no_secret(endpoint: tuple[TokenEndpoint, str]) -> None:
    state, url = endpoint
    state.fail = True
    auth = ClientCredentialsAuth(url, "c", "very-secret-value")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(StoreUnreachable) as excinfo:
            await auth.authorization(session)
    assert "invalid_client" in str(excinfo.value)
    assert "very-secret-value" not in str(excinfo.value)


def test_provider_token_urls() -> None:
    assert token_url_for("databricks", host="https://adb-1.azuredatabricks.net/") == (
        "https://adb-1.azuredatabricks.net/oidc/v1/token"
    )
    assert token_url_for("entra", tenant_id="t-1") == "https://login.microsoftonline.com/t-1/oauth2/v2.0/token"


async def test_static_credentials() -> None:
    async with aiohttp.ClientSession() as session:
        assert await StaticStoreAuth.bearer("abc").authorization(session) == "Bearer abc"
        basic = await StaticStoreAuth.basic("u", "p").authorization(session)
    assert basic == "Basic " + base64.b64encode(b"u:p").decode()
