"""The resumable per-workspace background pass, as the reconciler (dual/) and the index sync (index/) run it.

Both walk each workspace's store in the background of every replica and keep what they found in a
state table of their own (`reconcile_state`, `ix_sync_state`). What they share is here:

- Scheduling (`Passes`): soon after start-up and then every `tick_seconds`, the owner says which
  workspaces are due (from the states it saved, so a pass cut short on another replica is seen
  everywhere) and a pass is launched for each; a pass is also launched on demand. One task per
  workspace per process: a workspace whose pass is still running here is not launched again.
- One replica per workspace (`exclusive`): a pass runs under a session-level advisory lock (its
  class in `db/locks.py`, the workspace id as key) on the connection the pass holds; a replica that
  does not get it skips the workspace (or, asked to queue, waits a while). The lock is taken and
  released outside any transaction: the pass writes its state in short transactions of its own and
  calls stores with none open.
- Resuming: the owner saves its position as it goes; a pass that finds its workspace's last state
  unfinished takes it up after that position, whichever replica ran it before.

Failures of a pass are the owner's to record in its state (shown by its status API and retried by a
later pass); a failure to look for due passes (the database away for a moment) is logged and
looked at again at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from gateway.core.background import BackgroundLoop, cancel_all
from gateway.core.links import WorkspaceLink
from gateway.db.locks import LockClass, LockConnection, held

log = logging.getLogger(__name__)

TICK_SECONDS = 10  # how often a replica looks for passes that are due or were cut short
FIRST_LOOK_SECONDS = 5  # on start-up, soon: a pass cut short goes on

Result = TypeVar("Result")
Due = Callable[[float], Awaitable[Iterable[tuple[WorkspaceLink, bool]]]]  # now → (link, everything) to launch
# (link, everything) → the pass. Called when the pass is launched (the owner may note that it was), its
# coroutine then runs in a task of its own.
Run = Callable[[WorkspaceLink, bool], Coroutine[Any, Any, Result]]


class Passes(Generic[Result]):
    """Launches `run` for the workspaces `due` names, every `tick_seconds`, one task per workspace."""

    def __init__(
        self, name: str, interval_seconds: float, due: Due, run: Run[Result], tick_seconds: float = TICK_SECONDS
    ) -> None:
        self.name = name
        self.interval = interval_seconds  # 0 or less: passes only on demand
        self._due = due
        self._run = run
        self._looking = BackgroundLoop(
            name,
            self._launch_due,
            tick_seconds,
            on_error=self._not_looked,
            first_delay_seconds=min(interval_seconds, FIRST_LOOK_SECONDS),
        )
        self._running: dict[str, asyncio.Task[Result]] = {}

    def start(self) -> None:
        if self.interval > 0:
            self._looking.start()

    async def stop(self) -> None:
        await self._looking.stop()  # launches no more
        await cancel_all(self._running.values())

    def running(self, link: WorkspaceLink) -> bool:
        task = self._running.get(link.name)
        return task is not None and not task.done()

    def launch(self, link: WorkspaceLink, everything: bool) -> bool:
        """Start a pass in the background; False when one is already running in this process."""
        if self.running(link):
            return False
        self._running[link.name] = asyncio.create_task(self._run(link, everything), name=f"{self.name} {link.name}")
        return True

    async def _launch_due(self) -> None:
        for link, everything in await self._due(time.time()):
            self.launch(link, everything)

    def _not_looked(self, exc: Exception) -> None:
        log.warning("%s: looking for due passes failed: %s", self.name, type(exc).__name__)


@asynccontextmanager
async def exclusive(
    connection: LockConnection, lock_class: LockClass, link: WorkspaceLink, *, wait: float = 0
) -> AsyncIterator[bool]:
    """Whether this replica holds `link`'s pass of this class for the block (see `db.locks.held`)."""
    async with held(connection, lock_class, link.workspace_id, wait=wait) as got:
        yield got
