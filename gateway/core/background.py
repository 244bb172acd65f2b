"""A step repeated in the background of a process, as the gateway's polling loops run it.

A `BackgroundLoop` calls its `step` in a task of its own: again at once while the step says more may be
waiting (it returned something true), else after `interval_seconds`, or as soon as `wake` is called,
whichever comes first. A step that raises is reported to `on_error` (each owner logs in its own words) and
the loop goes on after the usual wait: only `stop` ends it. A step that handles its own failures may leave
`on_error` out (what still escapes is logged here, with its traceback). An owner that is nothing but its loop
(the delivery worker, the alert scheduler) subclasses it and hands its own step to `__init__`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)


class BackgroundLoop:
    """Calls `step` over and over in one task, from `start` until `stop`.

    `first_delay_seconds`: how long to wait (woken early by `wake`) before the first step; 0 runs it at once.
    A `wake` that comes while a step runs is not lost: the wait after that step ends at once.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        interval_seconds: float,
        *,
        on_error: Callable[[Exception], None] | None = None,
        first_delay_seconds: float = 0.0,
    ) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self._step = step
        self._on_error = on_error or self._log_failure
        self._first_delay = first_delay_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Run the next step now, or as soon as the one under way ends."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop (a step under way included) and wait until its task has ended."""
        task, self._task = self._task, None
        await cancel_all([task])

    async def _run(self) -> None:
        if self._first_delay > 0:
            await self._pause(self._first_delay)
        while True:
            try:
                again = await self._step()
            except Exception as exc:
                self._on_error(exc)
                again = False
            if not again:
                await self._pause(self.interval_seconds)

    def _log_failure(self, exc: Exception) -> None:
        log.error("%s failed; trying again shortly", self.name, exc_info=exc)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel background tasks and wait until each has finished unwinding.

    The tasks' own cancellation ends here; the caller's is not swallowed (a stop that is itself cancelled
    stops waiting and is cancelled in turn).
    """
    started = [task for task in tasks if task is not None]
    for task in started:
        task.cancel()
    for task in started:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
