"""The append-only audit log: access changes are written in their own transaction, denials in batches.

Contracts:
- Every row is built by `entry`, which bounds what a caller controls (actor names, paths, headers,
  user agents, request bodies echoed in details): a string longer than `MAX_VALUE_CHARS` keeps its
  first `MAX_VALUE_CHARS` characters and is marked truncated with its full length and a SHA-256 prefix
  (so a forensic copy can still be matched); containers keep `MAX_ITEMS` items and `MAX_DEPTH` levels.
  Characters PostgreSQL cannot store (NUL, unpaired surrogates) are replaced, so one hostile value can
  never make a whole batch of rows fail to insert.
- Denials are queued (at most `max_pending`) and written in the background; past that they are
  dropped, counted in `fedgate_audit_dropped_total`, and reported in the log at most once per
  `drop_log_interval` seconds, never once per row (a flood must not become a log flood). A batch the
  database refuses is counted there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.repository import AuditRepository
from gateway.observability.metrics import AUDIT_DROPPED

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 256
MAX_ITEMS = 64
MAX_DEPTH = 6
_INT64 = 2**63


def clip_text(value: str) -> str:
    """`value` as stored: at most MAX_VALUE_CHARS of it, marked when cut, without NUL or lone surrogates."""
    if len(value) > MAX_VALUE_CHARS:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        value = f"{value[:MAX_VALUE_CHARS]}...[truncated: {len(value)} chars, sha256 {digest}]"
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def clip(value: Any, depth: int = 0) -> Any:
    """A JSON-storable copy of `value` within the bounds of the module docstring."""
    if value is None or isinstance(value, bool | float):
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else "[integer out of range, truncated]"
    if isinstance(value, str):
        return clip_text(value)
    if isinstance(value, dict | list | tuple | set | frozenset):
        if depth >= MAX_DEPTH:
            return "[nested too deeply, truncated]"
        if isinstance(value, dict):
            clipped = {clip_text(str(k)): clip(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
            if len(value) > MAX_ITEMS:
                clipped["..."] = f"[truncated: {len(value)} entries]"
            return clipped
        items: list[Any] = [clip(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"[truncated: {len(value)} items]")
        return items
    return clip_text(f"<{type(value).__name__}>")


def entry(
    actor: str, action: str, target: str, outcome: str, details: dict[str, Any] | None = None, request_id: str = ""
) -> dict[str, Any]:
    return {
        "actor": clip_text(actor),
        "action": clip_text(action),
        "target": clip_text(target),
        "outcome": clip_text(outcome),
        "details": clip(details or {}),
        "request_id": clip_text(request_id)[:64],
    }


class AuditTrail:
    """Denied requests are queued and written in the background so a flood of them cannot stall requests."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        max_pending: int = 10_000,
        drop_log_interval: float = 60.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._drop_log_interval = drop_log_interval
        self._dropped_unreported = 0
        self._last_drop_report = -math.inf

    async def write(self, session: AsyncSession, *entries: dict[str, Any]) -> None:
        """Within the caller's transaction: the change and its audit record commit together."""
        await AuditRepository(session).append(list(entries))

    def record(self, item: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._dropped(1)

    def _dropped(self, count: int) -> None:
        self.dropped += count
        self._dropped_unreported += count
        AUDIT_DROPPED.inc(count)
        now = time.monotonic()
        if now - self._last_drop_report >= self._drop_log_interval:
            log.warning(
                "audit queue full (%d pending): %d denial rows dropped since the last report, %d in all",
                self._queue.maxsize,
                self._dropped_unreported,
                self.dropped,
            )
            self._last_drop_report = now
            self._dropped_unreported = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="audit writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self, first: dict[str, Any] | None = None) -> None:
        batch = self._batch(first)
        if batch:
            await self._write(batch)

    def _batch(self, first: dict[str, Any] | None) -> list[dict[str, Any]]:
        batch = [first] if first is not None else []
        while not self._queue.empty() and len(batch) < 500:
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        async with self._sessionmaker() as session, session.begin():
            await AuditRepository(session).append(batch)

    async def _drain(self) -> None:
        while True:
            batch = self._batch(await self._queue.get())
            try:
                await self._write(batch)
            except Exception as exc:
                # Lost rows are counted like dropped ones; this warning is at most one a second (the sleep).
                AUDIT_DROPPED.inc(len(batch))
                self.dropped += len(batch)
                log.warning("%d audit entries could not be written: %s", len(batch), type(exc).__name__)
                await asyncio.sleep(1)
