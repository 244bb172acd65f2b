"""Keep shared state in step across replicas: reload on NOTIFY, and poll a version as the backstop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.core.background import BackgroundLoop
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
        self._notified = False
        # The first check comes after a poll (or a notification) too: the caller loaded the state before start.
        self._loop = BackgroundLoop(
            name, self._reload, poll_seconds, on_error=self._failed, first_delay_seconds=poll_seconds
        )
        self._listener = change_feed(self._notify)

    def start(self) -> None:
        self._listener.start()
        self._loop.start()

    async def stop(self) -> None:
        await self._listener.stop()
        await self._loop.stop()

    def _notify(self) -> None:
        self._notified = True
        self._loop.wake()

    async def _reload(self) -> None:
        notified, self._notified = self._notified, False
        await self._check(notified)

    def _failed(self, exc: Exception) -> None:
        log.warning("%s: reload failed: %s", self.name, type(exc).__name__)
