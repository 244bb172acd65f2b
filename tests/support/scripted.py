"""A scripted HTTP server: one handler answers every method and path, on a free loopback port.

For answers no real server can be made to give (a 5xx, JSON of the wrong shape, a Kubernetes login); the
handler decides each response and records what it saw. Stand-ins that implement a service's documented
behaviour live beside this (keyvault.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from gateway.devstack import LOOPBACK

Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def scripted_server(handle: Handle) -> AsyncIterator[str]:
    """Serves `handle` for every request until the block ends; yields the server's address (`http://host:port`).

    The port is the one the system gives when binding port 0, so no other server can hold it."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()
