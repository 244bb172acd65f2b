"""What the probes answer: readiness of this replica, and the health of every store, reported apart.

Readiness (`/health/ready`, the Kubernetes readiness probe) is about this replica only: the database
answers, its schema is one this code serves (not older than its migrations), the access policy is
loaded, and the replica is not draining for a shutdown. A store that is down is never a reason to take
the replica out of the Service: with many workspaces one dead store would take every replica out at once,
exactly when dual workspaces should be answering reads from their central copies.

Stores are probed in the background (`StoreHealth`: each store's health check every `interval` seconds,
at most `timeout` each, all at once) and reported at `/health/stores` and as the gauge
`fedgate_store_up{store}`, for dashboards and alerts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from gateway.core.background import BackgroundLoop
from gateway.db.migrate import SchemaState, schema_state
from gateway.observability.metrics import STORE_CHECK_SECONDS, STORE_UP

log = logging.getLogger(__name__)

DATABASE_TIMEOUT_SECONDS = 2.0
STORE_INTERVAL_SECONDS = 15.0
STORE_TIMEOUT_SECONDS = 2.0


class Readiness:
    """Whether this replica should get requests; `draining` is set once it is asked to stop."""

    def __init__(
        self,
        revision: Callable[[], Awaitable[str | None]],
        policy_loaded: Callable[[], bool],
        *,
        timeout_seconds: float = DATABASE_TIMEOUT_SECONDS,
    ) -> None:
        self._revision = revision  # the database's schema revision (a query: reachability too)
        self._policy_loaded = policy_loaded
        self._timeout = timeout_seconds
        self.draining = False

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, what was checked)."""
        report: dict[str, Any] = {}
        schema: SchemaState | None = None
        try:
            revision = await asyncio.wait_for(self._revision(), self._timeout)
        except Exception as exc:
            report["database"] = f"unreachable: {type(exc).__name__}"
        else:
            report["database"] = "ok"
            schema = schema_state(revision)
            report["schema"] = schema.report()
        loaded = self._policy_loaded()
        report["policy"] = "loaded" if loaded else "not loaded"
        report["draining"] = self.draining
        ready = report["database"] == "ok" and schema is not None and schema.servable and loaded and not self.draining
        report["status"] = "ok" if ready else "unavailable"
        return ready, report


@dataclass(slots=True)
class StoreState:
    up: bool | None = None  # None: not probed yet
    detail: str = "not checked yet"
    checked_at: float = 0.0
    since: float = 0.0  # when `up` last changed
    seconds: float = 0.0  # how long the last check took

    def report(self, now: float) -> dict[str, Any]:
        state = "unknown" if self.up is None else "ok" if self.up else "unreachable"
        return {
            "state": state,
            "detail": self.detail,
            "checked_seconds_ago": round(now - self.checked_at, 1) if self.checked_at else None,
            "for_seconds": round(now - self.since, 1) if self.since else None,
            "check_ms": round(self.seconds * 1000, 1),
        }


class StoreHealth:
    """Probes every store in the background; never part of readiness."""

    def __init__(
        self,
        probes: Mapping[str, Callable[[], Awaitable[object]]],
        *,
        interval_seconds: float = STORE_INTERVAL_SECONDS,
        timeout_seconds: float = STORE_TIMEOUT_SECONDS,
    ) -> None:
        self._probes = dict(probes)  # store name → its health check (raises when the store does not answer)
        self._timeout = timeout_seconds
        self.states = {name: StoreState() for name in self._probes}
        self._loop = BackgroundLoop("store health", self.check_all, interval_seconds, on_error=_failed)

    def start(self) -> None:
        if self._probes:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(name) for name in self._probes))

    async def _check(self, name: str) -> None:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._probes[name](), self._timeout)
        except Exception as exc:
            cause = exc if isinstance(exc, TimeoutError) else exc.__cause__ or exc  # what the client wrapped
            up, detail = False, f"unreachable: {type(cause).__name__}"
        else:
            up, detail = True, "ok"
        state = self.states[name]
        now = time.time()
        if state.up is not up:
            state.since = now
            if state.up is not None:
                log.log(logging.INFO if up else logging.WARNING, "store %s", "up again" if up else "down",
                        extra={"store": name, "detail": detail})  # fmt: skip
        state.up, state.detail, state.checked_at = up, detail, now
        state.seconds = time.perf_counter() - started
        STORE_UP.labels(name).set(1 if up else 0)
        STORE_CHECK_SECONDS.labels(name).set(state.seconds)

    def report(self) -> dict[str, Any]:
        now = time.time()
        stores = {name: state.report(now) for name, state in sorted(self.states.items())}
        down = sorted(name for name, s in self.states.items() if s.up is False)
        return {"status": "degraded" if down else "ok", "down": down, "stores": stores}


def _failed(exc: Exception) -> None:  # never ends the loop
    log.warning("store health checks failed: %s", type(exc).__name__)


def drain_on_sigterm(readiness: Readiness, delay_seconds: float) -> Callable[[], None]:
    """On SIGTERM: unready at once, and only after `delay_seconds` the server's own handling (stop accepting,
    let requests in flight finish, shut down). Returns what undoes it.

    Installed in front of the handler the server (uvicorn) put there, from the main thread only; a second
    SIGTERM while the delay runs goes to the server's handler at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)
        else:  # nothing of the server's: the default action
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if readiness.draining or delay_seconds <= 0:
            readiness.draining = True
            forward(signum, frame)
            return
        readiness.draining = True
        log.info("SIGTERM: unready, stopping after the shutdown delay", extra={"delay_seconds": delay_seconds})
        loop.call_soon_threadsafe(loop.call_later, delay_seconds, forward, signum, None)

    signal.signal(signal.SIGTERM, on_sigterm)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return undo
