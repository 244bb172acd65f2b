"""Which runs have read a secret: a set in every worker, so a write of any other run costs no database round trip.

The rows are `run_secret_reads` (secrets/repository.py). Each worker keeps the ids of the runs in them:

- the worker that answers a read adds the run itself, after the row is committed and before it answers;
- a read that is new for its run NOTIFYs `SECRET_READS_CHANNEL` with the run's id at commit, and every
  worker's listener (adapters/postgres_notify.py, wired in app.py) adds it as it arrives;
- each time the listener is (re)connected, the worker loads every run of the table, and only then trusts
  its set ("live"). While the listener is down or the load is not done, the set may miss a run, so a run
  not in it is looked up in the database, write by write (and remembered when found).

What is left: a write that reaches another worker between the commit of the read and the arrival of
its notification there. The notification leaves PostgreSQL at that commit, before the reading worker
has even answered; the write can only carry the value once the client has that answer, and reaches the
worker over a connection of its own. The window is the difference between two deliveries, which in
practice the notification wins; it is not closed by a lock.

Rows are never removed while their workspace exists (MLflow logs to finished runs too); a run id stays
in the sets until the worker restarts, so an unlinked workspace's runs may cost one indexed lookup per
write, finding nothing. Run ids are compared lower-cased (MLflow's are lower-case hex).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.secrets.repository import ReadRepository

log = logging.getLogger(__name__)

MAX_RUN_ID = 256
RELOAD_RETRY_SECONDS = 2.0


def run_key(run_id: str) -> str:
    """How run ids are kept and compared."""
    return run_id.lower()


class TaintedRuns:
    """The runs that read a secret, as this worker knows them; `includes` is exact, `live` or not."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._runs: set[str] = set()
        self._live = False  # the listener is in place and every earlier row is loaded
        self._generation = 0  # a listener (re)connection: a load for an older one does not make us live
        self._loading: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        return self._live

    @property
    def none(self) -> bool:
        """Whether this worker knows, without asking the database, that no run read a secret."""
        return self._live and not self._runs

    def add(self, run_id: str) -> None:
        """A run read a secret (this worker answered it, or another one's notification says so)."""
        if 0 < len(run_id) <= MAX_RUN_ID:
            self._runs.add(run_key(run_id))

    def listening(self) -> None:
        """The listener is (again) in place: load every run, trust the set once that is done."""
        self._live = False
        self._generation += 1
        if self._loading is not None:
            self._loading.cancel()
        self._loading = asyncio.create_task(self._load(self._generation), name="load runs that read secrets")

    def not_listening(self) -> None:
        """The listener dropped: notifications may be missed until it is back (and the set reloaded)."""
        self._live = False
        self._generation += 1

    def __contains__(self, run_id: object) -> bool:
        """Whether this worker knows, without asking the database, that the run read a secret."""
        return isinstance(run_id, str) and run_key(run_id) in self._runs

    async def includes(self, run_id: str) -> bool:
        """Whether the run read a secret; asks the database only while the set cannot be trusted."""
        if run_id in self:
            return True
        key = run_key(run_id)
        if self._live:
            return False
        async with self._sessionmaker() as session:
            found = await ReadRepository(session).has_run(key)
        if found:
            self._runs.add(key)
        return found

    async def stop(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading

    async def _load(self, generation: int) -> None:
        while generation == self._generation:
            try:
                async with self._sessionmaker() as session:
                    runs = await ReadRepository(session).run_ids()
            except Exception as exc:  # the database is away: stay careful (lookups per write) and try again
                log.warning("loading the runs that read secrets failed: %s; retrying", type(exc).__name__)
                await asyncio.sleep(RELOAD_RETRY_SECONDS)
                continue
            self._runs.update(runs)
            if generation == self._generation:
                self._live = True
                log.info("runs that read secrets loaded", extra={"runs": len(self._runs)})
            return
