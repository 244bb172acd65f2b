"""A load balancer in front of gateway replicas, as a Kubernetes Service with an ingress sees them.

Each request goes to the next replica (round robin) among those whose `/health/ready` answered 200 at its
last probe (every `probe_seconds`, as the readiness probe and the endpoints controller do). A replica that
refuses the connection is skipped, as ingress-nginx's `proxy_next_upstream error` does; a replica that
drops a request it had taken answers the client 502, which the balancer counts apart (`dropped`): a
graceful shutdown must never cause one. Bodies stream through both ways, so a 50 MB upload is never held.
Every answer's status is recorded (`statuses`) with the replica that gave it. `upload_bytes_per_second`
slows request bodies down to that rate, as a slower network between the clients and the replicas would,
so that an upload is still streaming when its replica is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web

from gateway.devstack import LOOPBACK, free_port

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade", "host"}
)  # fmt: skip


class Balancer:
    def __init__(
        self, backends: Sequence[str], probe_seconds: float = 0.2, upload_bytes_per_second: float | None = None
    ) -> None:
        self.backends = list(backends)  # base URLs of the replicas
        self.upload_bytes_per_second = upload_bytes_per_second
        self.port = free_port()
        self.probe_seconds = probe_seconds
        self.ready: set[str] = set()
        self.statuses: Counter[tuple[str, int]] = Counter()  # (backend, status) of every answer
        self.failures: list[str] = []  # answers of 5xx other than a 503 with Retry-After
        self.dropped: list[str] = []  # requests a replica took and then dropped
        self.refused = 0  # connections a replica refused (skipped to the next)
        self.unready = 0  # requests answered 503 because no replica was ready
        self.active: Counter[tuple[str, str]] = Counter()  # (backend, method) of the requests in flight
        self._turn = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True, name="balancer")
        self._started = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Balancer:
        self._thread.start()
        if not self._started.wait(30):
            raise TimeoutError("the balancer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(30)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as client:
            app = web.Application(client_max_size=0)
            app.router.add_route("*", "/{tail:.*}", lambda request: self._forward(client, request))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, LOOPBACK, self.port).start()
            prober = asyncio.create_task(self._probe(client))
            self._started.set()
            try:
                await self._stopped.wait()
            finally:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
                await runner.cleanup()

    async def _probe(self, client: aiohttp.ClientSession) -> None:
        async def ready(backend: str) -> bool:
            try:
                async with client.get(f"{backend}/health/ready", timeout=aiohttp.ClientTimeout(total=1)) as answer:
                    return answer.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        while True:
            found = await asyncio.gather(*(ready(backend) for backend in self.backends))
            self.ready = {backend for backend, ok in zip(self.backends, found, strict=True) if ok}
            await asyncio.sleep(self.probe_seconds)

    async def _slowly(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        assert self.upload_bytes_per_second is not None
        started, sent = time.monotonic(), 0
        async for chunk in content.iter_chunked(64 * 1024):
            sent += len(chunk)
            ahead = sent / self.upload_bytes_per_second - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            yield chunk

    def _candidates(self) -> list[str]:
        ready = [backend for backend in self.backends if backend in self.ready]
        if not ready:
            return []
        first = next(self._turn) % len(ready)
        return ready[first:] + ready[:first]

    async def _forward(self, client: aiohttp.ClientSession, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body: aiohttp.StreamReader | AsyncIterator[bytes] | None = None
        if request.body_exists:
            body = request.content if self.upload_bytes_per_second is None else self._slowly(request.content)
        for backend in self._candidates():
            self.active[(backend, request.method)] += 1
            try:
                return await self._to(client, request, backend, headers, body)
            except aiohttp.ClientConnectorError:
                self.refused += 1  # nothing was sent: the next replica may take it
            finally:
                self.active[(backend, request.method)] -= 1
        self.unready += 1
        return web.Response(status=503, text="no replica is ready", headers={"Retry-After": "1"})

    async def _to(
        self,
        client: aiohttp.ClientSession,
        request: web.Request,
        backend: str,
        headers: dict[str, str],
        body: aiohttp.StreamReader | AsyncIterator[bytes] | None,
    ) -> web.StreamResponse:
        """The request sent to `backend` and its answer streamed back; ClientConnectorError if it refused."""
        url = f"{backend}{request.rel_url}"
        try:
            upstream = await client.request(request.method, url, headers=headers, data=body, allow_redirects=False)
        except aiohttp.ClientConnectorError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.dropped.append(f"{request.method} {request.rel_url.path} at {backend}: {exc!r}")
            return web.Response(status=502, text="the replica dropped the request")
        async with upstream:
            answer = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await answer.prepare(request)
            try:
                async for chunk in upstream.content.iter_chunked(256 * 1024):
                    await answer.write(chunk)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.dropped.append(f"{request.method} {request.rel_url.path} at {backend} (answer): {exc!r}")
                raise
            await answer.write_eof()
            self.statuses[(backend, upstream.status)] += 1
            if upstream.status >= 500 and not (upstream.status == 503 and upstream.headers.get("Retry-After")):
                self.failures.append(f"{request.method} {request.rel_url.path} at {backend}: {upstream.status}")
            return answer
