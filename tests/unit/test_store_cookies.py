"""The store session keeps no cookies: one user's answer must not hand its cookie to the next user's call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.stores.mlflow_rest import MlflowRestStore


@pytest.fixture
async def cookie_store() -> AsyncIterator[tuple[str, list[str]]]:
    """A store that sets a session cookie on every answer and records the Cookie header of every call."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie", ""))
        response = web.json_response({"run": {"info": {"run_id": "0" * 32}}})
        response.set_cookie("session", f"of-call-{len(seen)}", path="/")
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    # By name: aiohttp's default jar would keep a cookie of `localhost` (it keeps none of a bare IP address).
    yield f"http://localhost:{port}", seen
    await runner.cleanup()


async def upload() -> AsyncIterator[bytes]:
    yield b"streamed "
    yield b"bytes"


async def test_a_cookie_the_store_sets_is_not_sent_on_the_next_call(cookie_store: tuple[str, list[str]]) -> None:
    url, seen = cookie_store
    store = MlflowRestStore("cookies", url)
    path = "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a.bin"
    try:
        # One user's calls, a streamed upload (aiohttp's session) and a plain call: the store answers with a cookie.
        for body in (upload(), b"whole"):
            answer = await store.request("PUT", path, body=body)
            assert answer.status == 200 and "session=of-call-" in answer.headers.get("Set-Cookie", "")
            await answer.read()
        # The next calls, whoever makes them, carry no cookie of those.
        for body in (upload(), None):
            answer = await store.request("PUT" if body else "GET", path, body=body)
            await answer.read()
    finally:
        await store.close()
    assert seen == ["", "", "", ""]
