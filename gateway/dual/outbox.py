"""The transactional outbox of dual workspaces, and the relay that drains it into the central store.

After the primary store accepts a write, the entry is committed here before the client gets its
answer. Relays run in every gateway process: each reads the oldest due pending entries of keys (a
run or an experiment) without locking a row, and takes the first key it can lock (a session-level
advisory lock on a connection of its own, `LockClass.OUTBOX_KEY`), so a key is only ever worked on by
one relay at a time, across replicas, while different keys drain in parallel. Under the lock it reads
the key's pending entries again, oldest first, applies them in that order with no transaction open,
then marks what was applied (and the failure it stopped at) in one short transaction before letting
the key go. Failures are retried with exponential back-off and jitter for as long as the central
store is unreachable (probed every second, so a recovered store is drained at once); an entry the
central store keeps refusing is moved to a visible dead-letter state.

Applied entries stay as `done` (with `done_at`) for `keep_days` (`server.outbox_history_days`, 7), then
each relay's prune loop deletes them (`gateway/db/retention.py`), at most every ten minutes per process and once
when it starts:

    DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'done'
        AND done_at < now() - <keep_days> LIMIT <batch> FOR UPDATE SKIP LOCKED)

in batches of their own transactions, through the partial index `outbox_done` (migration 0035), so relays
pruning at once split the rows and none is deleted twice. Nothing needs a done entry for long: the relays'
ordering (`due_heads`, `group`) and the recovery of unknown writes read pending entries only, the link
status counts the last 60 seconds' (`status`), and a renumber or unlink carries or drops whatever is left.
Pending entries and dead letters are never pruned.
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

from sqlalchemy import BigInteger, DateTime, Table, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.background import BackgroundLoop
from gateway.core.errors import InvalidState
from gateway.db.locks import LockClass, autocommit_session, held, lock_timed_out
from gateway.db.models import OutboxRow
from gateway.db.retention import PRUNE_BATCH, PRUNE_EVERY_SECONDS, delete_in_batches, older_than
from gateway.observability.metrics import OUTBOX_APPLIED, OUTBOX_FAILURES
from gateway.stores.client import Refused, Transient

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0  # for refusals
MAX_OUTAGE_BACKOFF_SECONDS = 10.0  # an unreachable store is probed at least this often, so drains start soon
GROUP_LIMIT = 2_000  # entries of one key applied in one round
HEADS_PAGE = 32  # candidate heads read at a time; more are read only while every one read is held elsewhere
STOP_GRACE_SECONDS = 10.0  # how long a stopping relay lets rounds under way finish before it cancels them
RENUMBER_WAIT_SECONDS = 60.0  # how long a renumber waits for relays at work on the workspace's keys
_RELAYING = (
    "Dual-mode entries of workspace id {} are being applied to the central store right now; "
    "try the change again in a moment."
)


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

    Either way the entries queued behind it for the same key stay pending: a key is only taken up by
    a relay when its oldest pending entry is due (`due_heads`, `group`), so they wait for it to
    succeed, or, once it is a dead letter, go on without it.
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

    async def due_heads(
        self, limit: int, after: tuple[datetime, int] | None = None
    ) -> Sequence[tuple[int, str, datetime]]:
        """The oldest pending entry (id, order key, due time) of keys whose oldest is due, oldest due first.

        Read without locking anything: a relay then takes the first key it can lock (`Relay.run_once`).
        `after` (a due time and id read before) continues the list after that head.
        """
        page = ""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            page = "AND (o.next_attempt_at, o.id) > (:after_at, :after_id)"
            params.update(after_at=after[0], after_id=after[1])
        statement = text(
            f"""
            SELECT o.id, o.order_key, o.next_attempt_at FROM outbox o
            WHERE o.state = 'pending' AND o.next_attempt_at <= now()
              AND NOT EXISTS (
                  SELECT 1 FROM outbox p
                  WHERE p.order_key = o.order_key AND p.state = 'pending' AND p.id < o.id)
              {page}
            ORDER BY o.next_attempt_at, o.id
            LIMIT :limit
            """  # noqa: S608 (`page` is one of two constant strings)
        )
        if after is not None:
            statement = statement.bindparams(
                bindparam("after_at", type_=DateTime(timezone=True)), bindparam("after_id", type_=BigInteger)
            )
        result = await self.session.execute(statement, params)
        return [(int(row[0]), str(row[1]), row[2]) for row in result.all()]

    async def group(self, order_key: str) -> Sequence[OutboxRow]:
        """The key's pending entries, oldest first, if the oldest is due; else none.

        Read by the relay holding the key's lock: whatever another relay applied before it took the
        lock is no longer pending, a dead letter put back (`retry_dead`) is in line again, and a head
        that failed meanwhile waits out its back-off.
        """
        pending = (OutboxRow.order_key == order_key, OutboxRow.state == "pending")
        head_due = (
            select(OutboxRow.next_attempt_at <= func.now())
            .where(*pending)
            .order_by(OutboxRow.id)
            .limit(1)
            .scalar_subquery()
        )
        result = await self.session.execute(
            select(OutboxRow).where(*pending, head_due).order_by(OutboxRow.id).limit(GROUP_LIMIT)
        )
        return result.scalars().all()

    async def mark_done(self, ids: list[int]) -> None:
        if ids:
            await self.session.execute(
                update(OutboxRow).where(OutboxRow.id.in_(ids)).values(state="done", done_at=func.now())
            )

    async def mark_failed(self, row: OutboxRow, error: Exception, max_refusals: int) -> None:
        """Record the failure `row` (as read when it was taken up) stopped at: back-off or dead letter."""
        retry = after_failure(row.attempts, row.refusals, error, max_refusals)
        last_error = str(error)[:2000]
        await self.session.execute(
            update(OutboxRow)
            .where(OutboxRow.id == row.id)
            .values(
                attempts=retry.attempts,
                refusals=retry.refusals,
                last_error=last_error,
                state=retry.state,
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=retry.delay),
            )
            .execution_options(synchronize_session=False)
        )
        if retry.state == "dead":
            log.error("outbox entry %s (%s) is a dead letter: %s", row.id, row.route, last_error)

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

    async def discard_dead(self, workspace_id: int, entry_id: int | None = None) -> list[int]:
        """Delete the workspace's dead letters (only `entry_id`, if given); the ids deleted.

        No key lock is needed: a dead letter is in no relay's hands (relays read pending entries only), and the
        state condition leaves alone one retried meanwhile.
        """
        statement = delete(OutboxRow).where(OutboxRow.workspace_id == workspace_id, OutboxRow.state == "dead")
        if entry_id is not None:
            statement = statement.where(OutboxRow.id == entry_id)
        result = await self.session.execute(statement.returning(OutboxRow.id))
        return sorted(int(row[0]) for row in result.all())

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
        entries stay in line with the ones written from now on.

        A relay at work on one of the workspace's keys holds that key's lock while the central store is
        called, and no row lock: the renumber first waits for it to finish (at most
        `RENUMBER_WAIT_SECONDS`, then the change is refused), and keeps the old keys locked until its
        transaction ends, so no relay applies an entry under its old key while another takes it up
        under the new one. A key first written meanwhile that a relay holds refuses the change too.
        To be called before anything else in the transaction writes a row a relay may need.
        """
        waited = await self._hold_pending_keys(old_id)
        moved = await self.session.execute(
            text(
                """
                UPDATE outbox SET workspace_id = :new_id,
                                  order_key = regexp_replace(outbox.order_key, '^[0-9]+/', :prefix)
                FROM (SELECT id, order_key FROM outbox WHERE workspace_id = :old_id) AS before
                WHERE outbox.id = before.id
                RETURNING before.order_key, outbox.state
                """
            ),
            {"old_id": old_id, "new_id": new_id, "prefix": f"{new_id}/"},
        )
        for key in sorted({str(row[0]) for row in moved.all() if row[1] == "pending"} - waited):
            got = await self.session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:class, hashtext(:key))"),
                {"class": int(LockClass.OUTBOX_KEY), "key": key},
            )
            if not got:
                raise InvalidState(_RELAYING.format(old_id))

    async def _hold_pending_keys(self, workspace_id: int) -> set[str]:
        """Lock (until the transaction ends) the order key of every pending entry, waiting for relays."""
        keys = set(
            (
                await self.session.scalars(
                    select(OutboxRow.order_key)
                    .distinct()
                    .where(OutboxRow.workspace_id == workspace_id, OutboxRow.state == "pending")
                )
            ).all()
        )
        if not keys:
            return keys
        before = await self.session.scalar(text("SELECT current_setting('lock_timeout')"))
        await self.session.execute(
            text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": f"{int(RENUMBER_WAIT_SECONDS * 1000)}ms"}
        )
        try:
            for key in sorted(keys):
                await self.session.execute(
                    text("SELECT pg_advisory_xact_lock(:class, hashtext(:key))"),
                    {"class": int(LockClass.OUTBOX_KEY), "key": key},
                )
        except Exception as exc:
            if not lock_timed_out(exc):
                raise
            raise InvalidState(_RELAYING.format(workspace_id)) from None
        await self.session.execute(text("SELECT set_config('lock_timeout', :before, true)"), {"before": before})
        return keys

    async def retry_dead(self, workspace_id: int, entry_id: int | None = None) -> int:
        """Put dead letters back in line, due now; how many.

        No key lock is needed: a relay at work on the key marks its entries by id, and a revived entry
        older than them is the key's head from then on, read first by the next relay to take the key.
        """
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
        keep_days: int = 7,
    ) -> None:
        self._max_refusals = max_refusals  # a central store refusing (4xx) this often makes a dead letter
        self._sessionmaker = sessionmaker
        self._apply = apply
        self._reachable = reachable  # are the stores of this workspace answering again?
        self._workers = workers
        self._idle = idle_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._probe = BackgroundLoop("outbox outage probe", self._probe_outages, 1.0, first_delay_seconds=1.0)
        self.keep_days = keep_days  # applied entries are kept this long (module docstring)
        self._pruner = BackgroundLoop("outbox prune", self._prune_step, PRUNE_EVERY_SECONDS)
        self._outages: set[int] = set()  # workspaces whose stores were last found unreachable
        self._stopping = asyncio.Event()
        self._due = asyncio.Event()  # set by `wake`: idle workers look now

    def start(self) -> None:
        self._stopping.clear()
        self._due.clear()
        self._tasks = [
            asyncio.create_task(self._run(scout=i == 0), name=f"outbox relay {i}") for i in range(self._workers)
        ]
        self._probe.start()
        self._pruner.start()

    async def _probe_outages(self) -> None:
        """Probe unreachable stores (every second); when both answer, its backlog is due at once."""
        for workspace_id in list(self._outages):
            with contextlib.suppress(Exception):
                if await self._reachable(workspace_id):
                    self._outages.discard(workspace_id)
                    async with self._sessionmaker() as session, session.begin():
                        await OutboxRepository(session).due_now(workspace_id)
                    self.wake()

    async def _prune_step(self) -> None:
        pruned = await self.prune()
        if pruned:
            log.info("outbox: deleted %d entries applied more than %d days ago", pruned, self.keep_days)

    async def prune(self, batch: int = PRUNE_BATCH) -> int:
        """Delete the entries applied more than `keep_days` ago, `batch` per transaction; how many this call did.

        A loop of its own (not the outage probe's), so a long first prune never delays a probe."""
        table = OutboxRow.__table__
        assert isinstance(table, Table)
        return await delete_in_batches(
            self._sessionmaker, table, table.c.state == "done", older_than(table.c.done_at, self.keep_days), batch=batch
        )

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Hand every key back: no new round starts, rounds under way get `grace_seconds` to apply and mark
        what they took up (their keys are let go when they end), then whatever is left is cancelled (its
        entries stay pending, for any replica to apply again: replay is idempotent)."""
        self._stopping.set()
        self.wake()  # idle workers see the stop
        await self._probe.stop()
        await self._pruner.stop()
        running = [task for task in self._tasks if not task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=grace_seconds)
            for task in late:
                task.cancel()
        for ended in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ended
        self._tasks = []

    def wake(self) -> None:
        """Entries were queued or became due: the idle workers look at once instead of at the scout's next round."""
        self._due.set()

    async def _run(self, scout: bool) -> None:
        """A worker's rounds. Idle, the scout looks again every `idle_seconds` (entries other replicas queued and
        left, back-offs that ended) and the other workers wait for a wake: an idle process asks the database
        once per `idle_seconds`, not once per worker. A round that applied something wakes the others, since
        more keys may be due."""
        while not self._stopping.is_set():
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay round failed: %s", type(exc).__name__)
                worked = 0
            if worked:
                self.wake()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._idle if scout else None)
            self._due.clear()

    async def run_once(self) -> int:
        """Take one key nobody else holds and apply what is queued for it; the number of entries applied.

        Keys are tried oldest due head first. The key's lock is held on a connection of its own in
        autocommit mode while the central store is called, so no transaction (and no row lock) is
        open meanwhile; it is let go when the round ends, however it ends.
        """
        async with autocommit_session(self._sessionmaker) as (session, connection):
            repository = OutboxRepository(session)
            after: tuple[datetime, int] | None = None
            while True:
                heads = await repository.due_heads(HEADS_PAGE, after)
                for _, order_key, _ in heads:
                    async with held(connection, LockClass.OUTBOX_KEY, order_key) as got:
                        if got:
                            return await self._drain(repository, order_key)
                if len(heads) < HEADS_PAGE:
                    return 0  # every due key is held by another relay (or nothing is due)
                after = (heads[-1][2], heads[-1][0])

    async def _drain(self, repository: OutboxRepository, order_key: str) -> int:
        """Apply the key's pending entries (its lock held), then mark how far they got in one transaction."""
        rows = list(await repository.group(order_key))
        repository.session.expunge_all()  # plain values from here on; changes are written by statement
        if not rows:
            return 0  # applied by another relay before this one took the key, or its head is not due
        started = time.perf_counter()
        outcome: Applied = await self._apply(rows)
        failed = rows[outcome.count] if outcome.error is not None and outcome.count < len(rows) else None
        async with self._sessionmaker() as session, session.begin():
            marks = OutboxRepository(session)
            await marks.mark_done([row.id for row in rows[: outcome.count]])
            if failed is not None and outcome.error is not None:
                await marks.mark_failed(failed, outcome.error, self._max_refusals)
        if failed is not None and outcome.error is not None:
            OUTBOX_FAILURES.labels(type(outcome.error).__name__).inc()
            if isinstance(outcome.error, Transient):
                # Noted once the back-off is committed: the probe's `due_now` then always comes after it.
                self._outages.add(rows[0].workspace_id)
        OUTBOX_APPLIED.inc(outcome.count)
        log.debug(
            "relayed %s entries of %s in %.1f ms", outcome.count, order_key, (time.perf_counter() - started) * 1000
        )
        return outcome.count
