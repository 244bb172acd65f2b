"""The delivery loop over one feature's deliveries table, in every gateway process.

The table has (at least) `id`, `state` (pending | delivered | failed), `attempts`, `next_attempt_at`,
`last_status`, `last_error` and `delivered_at`; the feature writes its pending rows in the transaction of the
event they report, and names the other columns its `send` needs. A claim takes due rows and moves their next
attempt past a lease (the send's timeout and 30 seconds) in one statement:

    UPDATE <table> AS d SET attempts = d.attempts + 1, next_attempt_at = now() + <lease>
    FROM (SELECT id FROM <table> WHERE state = 'pending' AND next_attempt_at <= now()
          ORDER BY next_attempt_at, id LIMIT <batch> FOR UPDATE SKIP LOCKED) AS due
    WHERE d.id = due.id RETURNING ...

so one process at a time holds each. A process that dies mid-delivery leaves it to be claimed again once the
lease has passed; a delivery is at least once (a receiver that answered after the lease, or whose 2xx was lost,
sees it again). What an attempt did is recorded only while the claim is still this process's (the same number
of attempts, still pending): delivered; or pending again after `retry_seconds` doubled per attempt (at most an
hour); or failed, once `max_attempts` are spent or when the feature says another attempt is pointless. An
attempt whose `send` raises counts as one that failed (the exception's class recorded, never its words).

Settled deliveries (delivered or failed) are kept `keep_days` after their last attempt, then deleted by the same
loop, at most every ten minutes per process; pending ones are never. Every attempt moves `next_attempt_at` past
itself (the claim's lease, then the retry's delay), so a settled row whose `next_attempt_at` is older than the
cut-off was last tried before it:

    DELETE FROM <table> WHERE id IN (SELECT id FROM <table> WHERE state <> 'pending'
        AND next_attempt_at < now() - <keep_days> LIMIT <batch> FOR UPDATE SKIP LOCKED)

in batches of their own transactions. Replicas pruning at once split the rows (each skips what another holds)
instead of waiting on each other, and no row is deleted twice; the claim and an attempt's record touch pending
rows only, which pruning never does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.background import BackgroundLoop
from gateway.db.models import Base
from gateway.db.retention import PRUNE_BATCH, PRUNE_EVERY_SECONDS, delete_in_batches, older_than

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 3600.0
LEASE_MARGIN_SECONDS = 30.0


class Delivery(Protocol):
    """A claimed delivery as the feature reads it: at least its id and the attempt this claim is."""

    @property
    def id(self) -> int: ...

    @property
    def attempts(self) -> int: ...


D = TypeVar("D", bound=Delivery)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went: delivered (no `error`), worth another attempt, or not (`final`)."""

    status: int | None  # the receiver's HTTP status, if it answered
    error: str | None  # None: delivered; else why not, in words free of secrets and URLs
    final: bool = False

    @classmethod
    def delivered(cls, status: int | None) -> Outcome:
        return cls(status, None)

    @classmethod
    def retry(cls, status: int | None, error: str) -> Outcome:
        return cls(status, error)

    @classmethod
    def dropped(cls, error: str) -> Outcome:
        """Another attempt cannot succeed (the subscription is gone, the URL no longer allowed): failed now."""
        return cls(None, error, final=True)


@dataclass(frozen=True, slots=True)
class Pacing:
    poll_seconds: float  # how often a process looks when nothing woke it
    retry_seconds: float  # the first delay after a failed attempt; doubled per attempt, at most an hour
    max_attempts: int
    timeout_seconds: float  # of one attempt
    batch: int = 20  # claimed at once, sent side by side

    @property
    def lease_seconds(self) -> float:
        return self.timeout_seconds + LEASE_MARGIN_SECONDS

    def delay(self, attempts: int) -> float:
        return min(self.retry_seconds * 2.0 ** (attempts - 1), MAX_DELAY_SECONDS)


class DeliveryWorker(BackgroundLoop, Generic[D]):
    """Sends one table's due deliveries, in a `BackgroundLoop`: every poll, and at once when `wake` says some may be
    due (a notification arrived, the LISTEN was made again, this process queued some).

    `rows`: the ORM model of the deliveries table; `columns`: the columns `read` needs besides `id` and
    `attempts`; `send` makes one attempt. `log_as` names the columns logged with a refused attempt (log field ->
    column); `on_settled` is told of each attempt's result ("delivered", "retry" or "failed"), e.g. for a metric.
    `keep_days`: how long settled deliveries are kept after their last attempt (see the module).
    """

    def __init__(
        self,
        name: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        rows: type[Base],
        columns: Sequence[str],
        read: Callable[[Mapping[str, Any]], D],
        send: Callable[[D], Awaitable[Outcome]],
        pacing: Pacing,
        *,
        log_as: Mapping[str, str] | None = None,
        on_settled: Callable[[D, str], None] | None = None,
        keep_days: int = 30,
    ) -> None:
        # Straight on while deliveries were claimed (more may be due), else after a poll or a wake.
        super().__init__(name, self._deliver_some, pacing.poll_seconds, on_error=self._failed)
        self._sessionmaker = sessionmaker
        table = rows.__table__
        assert isinstance(table, Table)
        self._table = table
        self._read = read
        self._send = send
        self.pacing = pacing
        self._log_as = dict(log_as or {})
        self._on_settled = on_settled
        self.keep_days = keep_days
        self._pruned_at: float | None = None
        self._returning = [table.c.id, table.c.attempts, *(table.c[column] for column in columns)]

    async def _deliver_some(self) -> bool:
        sent = await self.deliver_due()
        await self._prune_now_and_then()
        return sent > 0

    def _failed(self, exc: Exception) -> None:
        log.error("%s failed; trying again shortly", self.name, exc_info=exc)

    async def deliver_due(self) -> int:
        """Claim the due deliveries and send them side by side; how many were claimed."""
        async with self._sessionmaker() as session, session.begin():
            found = await session.execute(self._claim())
            claimed = [self._read(dict(row._mapping)) for row in found.all()]
        if claimed:
            await asyncio.gather(*(self._attempt(delivery) for delivery in claimed))
        return len(claimed)

    async def _attempt(self, delivery: D) -> None:
        try:
            outcome = await self._send(delivery)
        except Exception as exc:  # a failure the feature did not foresee is an attempt that failed, and counts
            # Recorded as the others are, so it ends `failed` after max_attempts: raised out of the loop, the
            # delivery stayed pending and was claimed again at every lease, for ever. The class only: the
            # exception's words may carry what the delivery carries.
            log.error(
                "%s: an attempt failed unexpectedly (%s)",
                self.name,
                type(exc).__name__,
                extra={"delivery": delivery.id},
            )
            outcome = Outcome.retry(None, f"the attempt failed unexpectedly ({type(exc).__name__})")
        if outcome.error is None:
            await self._record(delivery, "delivered", outcome.status, None, 0.0)
            return
        final = outcome.final
        if not final:
            log.info(
                "%s: a delivery was not accepted",
                self.name,
                extra={
                    "delivery": delivery.id,
                    **{field: getattr(delivery, column) for field, column in self._log_as.items()},
                    "attempt": delivery.attempts,
                    "error": outcome.error,
                },
            )
            final = delivery.attempts >= self.pacing.max_attempts
        await self._record(
            delivery,
            "failed" if final else "pending",
            outcome.status,
            outcome.error,
            self.pacing.delay(delivery.attempts),
        )

    async def _prune_now_and_then(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        pruned = await self.prune()
        if pruned:
            log.info("%s: deleted %d settled deliveries older than %d days", self.name, pruned, self.keep_days)

    async def prune(self, batch: int = PRUNE_BATCH) -> int:
        """Delete the delivered and failed deliveries last tried more than `keep_days` ago; how many this call did."""
        table = self._table
        return await delete_in_batches(
            self._sessionmaker,
            table,
            table.c.state != "pending",
            older_than(table.c.next_attempt_at, self.keep_days),
            batch=batch,
        )

    def _claim(self) -> Any:
        table = self._table
        due = (
            select(table.c.id)
            .where(table.c.state == "pending", table.c.next_attempt_at <= func.now())
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(self.pacing.batch)
            .with_for_update(skip_locked=True)
            .subquery("due")
        )
        return (
            update(table)
            .where(table.c.id == due.c.id)
            .values(attempts=table.c.attempts + 1, next_attempt_at=func.now() + _seconds(self.pacing.lease_seconds))
            .returning(*self._returning)
        )

    async def _record(self, delivery: D, state: str, status: int | None, error: str | None, delay: float) -> None:
        """The attempt's result, only while the claim is still this process's (same attempts, still pending)."""
        table = self._table
        values: dict[str, Any] = {"state": state, "last_status": status, "last_error": error}
        if state == "delivered":
            values["delivered_at"] = func.now()
        else:
            values["next_attempt_at"] = func.now() + _seconds(delay)
        statement = (
            update(table)
            .where(table.c.id == delivery.id, table.c.attempts == delivery.attempts, table.c.state == "pending")
            .values(**values)
        )
        if self._on_settled is not None:
            self._on_settled(delivery, "retry" if state == "pending" else state)
        async with self._sessionmaker() as session, session.begin():
            await session.execute(statement)


def _seconds(seconds: float) -> Any:
    """An interval of so many seconds, computed by the database (make_interval's `secs`)."""
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)
