"""The transactional outbox of dual workspaces, and the relay that drains it into the central store.

After the primary store accepts a write, the entry is committed here before the client gets its
answer. Relays run in every gateway process: each claims the oldest pending entry of a key (a run or
an experiment) with `FOR UPDATE SKIP LOCKED` together with the entries queued behind it, so a key is
only ever worked on by one relay and in order, while different keys drain in parallel. Failures
are retried with exponential back-off and jitter for as long as the central store is unreachable
(probed every second, so a recovered store is drained at once); an entry the central store keeps
refusing is moved to a visible dead-letter state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.models import OutboxRow
from gateway.observability.metrics import OUTBOX_APPLIED, OUTBOX_FAILURES
from gateway.stores.client import Refused, Transient

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0  # for refusals
MAX_OUTAGE_BACKOFF_SECONDS = 10.0  # an unreachable store is probed at least this often, so drains start soon
GROUP_LIMIT = 2_000  # entries of one key taken in one claim


@dataclass(frozen=True, slots=True)
class Applied:
    """How far a group of entries got: the first `count` succeeded; `error` stopped the rest.

    A `Transient` error (the central store unreachable or failing) is retried for as long as it takes; a
    `Refused` one (the central store said no) `max_refusals` times, then the entry is a dead letter.
    """

    count: int
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """What becomes of the entry a failure stopped at: tried again after `delay` seconds, or a dead letter.

    Either way the entries queued behind it for the same key stay pending: a key's oldest pending entry
    is its only one a relay claims (`claim_heads`), so they wait for it to succeed, or, once it is a
    dead letter, go on without it.
    """

    attempts: int
    refusals: int
    state: str  # pending | dead
    delay: float


def after_failure(
    attempts: int, refusals: int, error: Exception, max_refusals: int, jitter: float | None = None
) -> Retry:
    """The entry's next state after `error`; `jitter` in [0, 1) (random when not given) spreads retries."""
    attempts += 1
    refusals += int(isinstance(error, Refused))
    # An unreachable central store is waited out, however long; only repeated refusals give up.
    dead = refusals >= max_refusals
    cap = MAX_BACKOFF_SECONDS if isinstance(error, Refused) else MAX_OUTAGE_BACKOFF_SECONDS
    spread = random.random() if jitter is None else jitter  # noqa: S311 (jitter)
    delay = min(cap, 0.5 * 2 ** min(attempts, 10)) * (0.5 + spread)
    return Retry(attempts, refusals, "dead" if dead else "pending", delay)


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_heads(self, limit: int) -> Sequence[tuple[int, str]]:
        """The oldest due pending entry of keys nobody else holds, locked until this transaction ends."""
        result = await self.session.execute(
            text(
                """
                SELECT o.id, o.order_key FROM outbox o
                WHERE o.state = 'pending' AND o.next_attempt_at <= now()
                  AND NOT EXISTS (
                      SELECT 1 FROM outbox p
                      WHERE p.order_key = o.order_key AND p.state = 'pending' AND p.id < o.id)
                ORDER BY o.next_attempt_at, o.id
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
                """
            ),
            {"limit": limit},
        )
        return [(int(row[0]), str(row[1])) for row in result.all()]

    async def group(self, head_id: int, order_key: str) -> Sequence[OutboxRow]:
        """The head and the entries queued behind it for the same key (the head's lock keeps others off)."""
        result = await self.session.execute(
            select(OutboxRow)
            .where(OutboxRow.order_key == order_key, OutboxRow.state == "pending", OutboxRow.id >= head_id)
            .order_by(OutboxRow.id)
            .limit(GROUP_LIMIT)
            .with_for_update()
        )
        return result.scalars().all()

    async def mark_done(self, ids: list[int]) -> None:
        if ids:
            await self.session.execute(
                update(OutboxRow).where(OutboxRow.id.in_(ids)).values(state="done", done_at=func.now())
            )

    async def mark_failed(self, row: OutboxRow, error: Exception, max_refusals: int) -> None:
        retry = after_failure(row.attempts, row.refusals, error, max_refusals)
        row.attempts = retry.attempts
        row.refusals = retry.refusals
        row.last_error = str(error)[:2000]
        row.state = retry.state
        row.next_attempt_at = datetime.now(UTC) + timedelta(seconds=retry.delay)
        await self.session.flush()
        if retry.state == "dead":
            log.error("outbox entry %s (%s) is a dead letter: %s", row.id, row.route, row.last_error)

    async def status(self) -> list[dict[str, Any]]:
        result = await self.session.execute(
            text(
                """
                SELECT workspace_id,
                       count(*) FILTER (WHERE state = 'pending') AS pending,
                       extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending')) AS oldest,
                       count(*) FILTER (WHERE state = 'dead') AS dead,
                       count(*) FILTER (WHERE state = 'done' AND done_at > now() - interval '60 seconds') AS recent
                FROM outbox GROUP BY workspace_id
                """
            )
        )
        return [
            {
                "workspace_id": int(row.workspace_id),
                "pending": int(row.pending),
                "oldest_pending_seconds": round(float(row.oldest), 1) if row.oldest is not None else 0.0,
                "dead_letters": int(row.dead),
                "replayed_per_second": round(int(row.recent) / 60, 2),
            }
            for row in result.all()
        ]

    async def due_now(self, workspace_id: int) -> None:
        await self.session.execute(
            update(OutboxRow)
            .where(OutboxRow.workspace_id == workspace_id, OutboxRow.state == "pending")
            .values(next_attempt_at=func.now())
        )

    async def dead_letters(self, workspace_id: int, limit: int = 100) -> Sequence[OutboxRow]:
        result = await self.session.execute(
            select(OutboxRow)
            .where(OutboxRow.workspace_id == workspace_id, OutboxRow.state == "dead")
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        return result.scalars().all()

    async def pending(self, workspace_id: int) -> int:
        """How many entries of the workspace still wait for the central store."""
        result = await self.session.execute(
            select(func.count()).where(OutboxRow.workspace_id == workspace_id, OutboxRow.state == "pending")
        )
        return int(result.scalar_one())

    async def drop_dead(self, workspace_id: int) -> int:
        """Delete the workspace's dead letters; how many there were."""
        result = await self.session.execute(
            delete(OutboxRow).where(OutboxRow.workspace_id == workspace_id, OutboxRow.state == "dead")
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def drop_all(self, workspace_id: int) -> None:
        """Delete every entry of the workspace (it is unlinked, nothing of it is pending)."""
        await self.session.execute(delete(OutboxRow).where(OutboxRow.workspace_id == workspace_id))

    async def renumber(self, old_id: int, new_id: int) -> None:
        """Every entry of `old_id` moves to `new_id`, order keys (`<workspace id>/...`) included, so pending
        entries stay in line with the ones written from now on."""
        await self.session.execute(
            update(OutboxRow)
            .where(OutboxRow.workspace_id == old_id)
            .values(
                workspace_id=new_id,
                order_key=func.regexp_replace(OutboxRow.order_key, "^[0-9]+/", f"{new_id}/"),
            )
        )

    async def retry_dead(self, workspace_id: int, entry_id: int | None = None) -> int:
        statement = (
            update(OutboxRow)
            .where(OutboxRow.workspace_id == workspace_id, OutboxRow.state == "dead")
            .values(state="pending", attempts=0, refusals=0, next_attempt_at=func.now())
        )
        if entry_id is not None:
            statement = statement.where(OutboxRow.id == entry_id)
        result = await self.session.execute(statement)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class Relay:
    """Drains the outbox. One per process; `workers` keys are worked on at a time."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        apply: Callable[[Sequence[OutboxRow]], Awaitable[Applied]],
        reachable: Callable[[int], Awaitable[bool]],
        workers: int = 4,
        idle_seconds: float = 0.5,
        max_refusals: int = 5,
    ) -> None:
        self._max_refusals = max_refusals  # a central store refusing (4xx) this often makes a dead letter
        self._sessionmaker = sessionmaker
        self._apply = apply
        self._reachable = reachable  # is the central store of this workspace answering again?
        self._workers = workers
        self._idle = idle_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._outages: set[int] = set()  # workspaces whose central store was last found unreachable

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"outbox relay {i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._watch_outages(), name="outbox outage probe"))

    async def _watch_outages(self) -> None:
        """Probe an unreachable central store every second; when it answers, its backlog is due at once."""
        while True:
            await asyncio.sleep(1)
            for workspace_id in list(self._outages):
                with contextlib.suppress(Exception):
                    if await self._reachable(workspace_id):
                        self._outages.discard(workspace_id)
                        async with self._sessionmaker() as session, session.begin():
                            await OutboxRepository(session).due_now(workspace_id)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay round failed: %s", type(exc).__name__)
                worked = 0
            if not worked:
                await asyncio.sleep(self._idle)

    async def run_once(self) -> int:
        """Claim one key and apply what is queued for it; the number of entries applied."""
        async with self._sessionmaker() as session, session.begin():
            repository = OutboxRepository(session)
            heads = await repository.claim_heads(1)
            if not heads:
                return 0
            head_id, order_key = heads[0]
            rows = list(await repository.group(head_id, order_key))
            started = time.perf_counter()
            outcome: Applied = await self._apply(rows)
            await repository.mark_done([row.id for row in rows[: outcome.count]])
            if outcome.error is not None and outcome.count < len(rows):
                if isinstance(outcome.error, Transient):
                    self._outages.add(rows[0].workspace_id)
                failed = rows[outcome.count]
                OUTBOX_FAILURES.labels(type(outcome.error).__name__).inc()
                await repository.mark_failed(failed, outcome.error, self._max_refusals)
            OUTBOX_APPLIED.inc(outcome.count)
            log.debug(
                "relayed %s entries of %s in %.1f ms", outcome.count, order_key, (time.perf_counter() - started) * 1000
            )
            return outcome.count
