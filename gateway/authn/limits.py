"""Overload protection: what one principal may spend, and how much a worker takes on at once.

- `PrincipalLimiter`: a token bucket per authenticated principal, in each worker process
  (`server.principal_burst` at once, refilled at `server.principal_requests_per_second`); past it a request
  answers 429 REQUEST_LIMIT_EXCEEDED with Retry-After. Buckets are per worker, not shared through
  PostgreSQL: a shared bucket would cost a database round trip on every request, and the Service spreads a
  principal's requests over the replicas, so the account-wide rate a principal gets is about
  `replicas * workers * principal_requests_per_second` (docs/operations.md).
- `Admission`: an ASGI layer in front of the app: at most `server.max_in_flight` requests are worked on at
  once, at most `server.max_queued` more wait, first come first served, at most `server.queue_wait_seconds`
  each; past either the request answers 503 TEMPORARILY_UNAVAILABLE with Retry-After before anything of it
  is read, so memory stays bounded however large the burst. Health probes and /metrics are never held.

Both answer in MLflow's error shape, and MLflow's client retries 429 and 503 with back-off (honouring
Retry-After), so a stock client slows down instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque
from typing import Any

from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Send

from gateway.core.errors import GatewayError, error_bytes, mlflow_error
from gateway.observability.metrics import IN_FLIGHT, OVERLOAD_REFUSED, QUEUED

# Never held or refused: a probe must answer while the replica is busy (and /metrics shows why it is).
UNLIMITED_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/health/stores", "/metrics"})


class TokenBuckets:
    """A token bucket per key; a key absent from the table has a full bucket. Bounded: the least recently
    charged keys are forgotten past `max_keys` (which only gives them a full bucket back)."""

    def __init__(self, per_second: float, burst: int, max_keys: int = 100_000) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def tokens(self, key: str, now: float) -> float:
        held = self._buckets.get(key)
        if held is None:
            return self.burst
        tokens, at = held
        return min(self.burst, tokens + (now - at) * self.per_second)

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token of `key`: 0 if there was one, else the seconds until there is (nothing spent)."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = self.tokens(key, now)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            return (1 - tokens) / self.per_second
        self._buckets[key] = (tokens - 1, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return 0.0


class PrincipalRateLimited(GatewayError):
    error_code = "REQUEST_LIMIT_EXCEEDED"
    status = 429

    def __init__(self, retry_after_seconds: float) -> None:
        retry_after = max(1, math.ceil(retry_after_seconds))
        super().__init__(
            f"Too many requests from this principal; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


class PrincipalLimiter:
    """Requests per authenticated principal (by name), in a token bucket of this worker."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.buckets = TokenBuckets(per_second, burst)

    def check(self, principal: str) -> None:
        """Spend one request of the principal's budget; raises PrincipalRateLimited once it is spent."""
        wait = self.buckets.take(principal)
        if wait > 0:
            OVERLOAD_REFUSED.labels("principal_rate").inc()
            raise PrincipalRateLimited(wait)


class Admission:
    """At most `max_in_flight` requests at once, `max_queued` more waiting (FIFO, `queue_wait` each)."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, max_queued: int, queue_wait: float) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.queue_wait = queue_wait
        self.in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._seconds = 0.05  # moving average of how long a request holds its place (for Retry-After)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self.max_in_flight <= 0 or scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        if not await self._enter():
            await self._refuse(send)
            return
        started = time.monotonic()
        try:
            await self.app(scope, receive, send)  # type: ignore[arg-type]
        finally:
            self._seconds += 0.05 * (time.monotonic() - started - self._seconds)
            self._leave()

    async def _enter(self) -> bool:
        if self.in_flight < self.max_in_flight and not self._waiting:
            self._take()
            return True
        if len(self._waiting) >= self.max_queued:
            OVERLOAD_REFUSED.labels("queue_full").inc()
            return False
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(place)
        QUEUED.set(len(self._waiting))
        try:
            await asyncio.wait_for(asyncio.shield(place), self.queue_wait)
        except TimeoutError:
            if place.done() and not place.cancelled():
                return True  # handed a place just as the wait ended: it is ours
            place.cancel()
            self._forget(place)
            OVERLOAD_REFUSED.labels("queue_timeout").inc()
            return False
        except BaseException:
            if place.done() and not place.cancelled():
                self._leave()  # handed a place, then cancelled (the client went away): pass it on
            else:
                place.cancel()
                self._forget(place)
            raise
        return True

    def _take(self) -> None:
        self.in_flight += 1
        IN_FLIGHT.set(self.in_flight)

    def _leave(self) -> None:
        """A request is done: its place goes to the longest waiting request, else it is freed."""
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                place.set_result(None)  # the place changes hands: in_flight stays as it is
                QUEUED.set(len(self._waiting))
                return
        QUEUED.set(0)
        self.in_flight -= 1
        IN_FLIGHT.set(self.in_flight)

    def _forget(self, place: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already handed on
            self._waiting.remove(place)
        QUEUED.set(len(self._waiting))

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about the time the queue takes to drain, 1 to 30."""
        drain = self._seconds * (len(self._waiting) + 1) / max(1, self.max_in_flight)
        return min(30, max(1, math.ceil(drain)))

    async def _refuse(self, send: Send) -> None:
        body = error_bytes(
            mlflow_error(
                "TEMPORARILY_UNAVAILABLE", "The gateway is at capacity; retry after the time Retry-After gives."
            )
        )
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(self.retry_after()).encode()),
            ],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
        await send(end)
