"""PostgreSQL LISTEN/NOTIFY: tells a process at once that another replica changed shared state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)


class PostgresNotifications:
    """Keeps one LISTEN connection open and reconnects when it drops.

    `on_notify` is called once the LISTEN is in place (after every reconnection: what was sent meanwhile
    is missed) and on every notification. With `on_payload`, notifications go to it instead, with their
    payload, and `on_notify` only says that the LISTEN is in place. `on_lost` is called when the connection
    drops or cannot be opened: notifications may be missed until `on_notify` is called again. A connection
    that died without a word (a network that drops packets) is found by a query every `check_seconds`
    that must answer within as long.
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[], None],
        *,
        on_payload: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        check_seconds: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._on_payload = on_payload
        self._on_lost = on_lost
        self._check_seconds = check_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen {self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        if self._on_payload is not None:
            self._on_payload(payload)
        else:
            self._on_notify()

    async def _run(self) -> None:
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self._dsn)
                closed = asyncio.Event()
                connection.add_termination_listener(lambda *_, event=closed: event.set())
                await connection.add_listener(self._channel, self._notified)
                # A notification missed while disconnected is the caller's to cover (polling, or a reload now).
                self._on_notify()
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), timeout=self._check_seconds)
                        break
                    await asyncio.wait_for(connection.fetchval("SELECT 1"), timeout=self._check_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN %s failed: %s; retrying", self._channel, type(exc).__name__)
            finally:
                if connection is not None and not connection.is_closed():
                    try:
                        await asyncio.wait_for(connection.close(), timeout=self._check_seconds)
                    except Exception:  # a dead connection need not be closed politely
                        connection.terminate()
            if self._on_lost is not None:
                self._on_lost()
            await asyncio.sleep(2)
