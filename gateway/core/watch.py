"""Keep shared state in step across replicas: reload on NOTIFY, and poll a version as the backstop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gateway.core.ports import ChangeFeed

log = logging.getLogger(__name__)


class ReloadLoop:
    """Calls `check(notified)` on every notification and at least every `poll_seconds`.

    `check` compares the stored version with what this process has and reloads when they differ
    (or unconditionally when notified). A missed notification is therefore late by one poll at most.
    """

    def __init__(
        self,
        name: str,
        change_feed: Callable[[Callable[[], None]], ChangeFeed],
        check: Callable[[bool], Awaitable[None]],
        poll_seconds: float,
    ) -> None:
        self.name = name
        self.poll_seconds = poll_seconds
        self._check = check
        self._wake = asyncio.Event()
        self._listener = change_feed(self._wake.set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listener.start()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await self._listener.stop()
        await cancel_all([self._task])

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            notified = self._wake.is_set()
            self._wake.clear()
            try:
                await self._check(notified)
            except Exception as exc:
                log.warning("%s: reload failed: %s", self.name, type(exc).__name__)


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel background tasks and wait until each has finished unwinding."""
    started = [task for task in tasks if task is not None]
    for task in started:
        task.cancel()
    for task in started:
        with contextlib.suppress(asyncio.CancelledError):
            await task
