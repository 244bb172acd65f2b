"""Write intents: no accepted write is lost to a crash between the store's answer and the after-write hooks.

A write that some `Recovery` wants (the dual outbox: a dual workspace's mirrored writes; the index: every
indexed write) is noted in `write_intents` before it is sent, with its route, workspace and the ids it
names, owned by this worker. Once the store answered and the after-write hooks ran, the note is dropped;
when the outcome is unknown (no answer, a 5xx, a hook that failed) it is handed to recovery at once.

Owners are told apart by presence: each worker holds a session-level advisory lock (`LockClass.PRESENCE`,
its random id) on a connection of its own for as long as it lives. A note whose owner holds no such lock
belongs to a dead worker (SIGKILL, OOM, a lost node: PostgreSQL ends the session and its locks), and every
worker's sweeper looks for such notes every `SWEEP_SECONDS`: a worker that restarts finds its own within
seconds, and the other replicas find them even if it never comes back. A swept note is claimed (its
owner becomes the sweeper), given to each recovery that wants it (which checks the store and brings the
central copy or the index level with it), and dropped after a second look `SECOND_LOOK_SECONDS` later, for a
write the store finished after its caller died. A recovery that fails (the store down) leaves the note for a
later sweep, with back-off.

Cost on the hot path: one INSERT before the send, on the pool "derived" (asynchronous commit: no wait for
the disk; a note is lost only if PostgreSQL itself crashes in the same fraction of a second, and the
reconciler and index sync still cover that), grouped with the notes of concurrent calls into one
statement; the drops are batched in the background.

Writes that every recovery wanting them `coalesces` (the index's recovery of a run's log-batch, say: it
brings the whole run level with the store, whatever the write was) share one note: a write with the same
route and detail as a note this worker holds joins it instead of noting its own, and the note is dropped
once no write holds it and none has joined it for `SHARE_SECONDS`. A run logged call after call is noted
once, not once per call. The note stays in the table as long as any write that joined it is in flight, so
a crash still leaves a note for each of them; a write of unknown outcome hands the note to recovery once
the other writes holding it are done, and later writes note anew. (A shared note may be older than the
last write that joined it: hence the second look counts from the first recovery, not from the note's age.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from gateway.core.background import BackgroundLoop
from gateway.core.errors import StoreUnavailable
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.paths import artifact_model_id, artifact_run_id
from gateway.core.route_table import RouteSpec, declared
from gateway.db.locks import LockClass
from gateway.federation.hooks import Recovery, UnsettledWrite
from gateway.federation.schemas import RequestIds
from gateway.observability.metrics import INTENTS_RECOVERED, INTENTS_UNNOTED

log = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0  # how often each worker looks for notes of dead workers
SETTLE_SECONDS = 1.0  # a note of a dead worker younger than this waits (its store may still be answering)
SECOND_LOOK_SECONDS = 15.0  # a recovered note is recovered once more this long after its first recovery
FLUSH_SECONDS = 0.05  # drops and hand-overs are written in batches this often
SHARE_SECONDS = 1.0  # a shared note no write holds is kept this long for the next write of the same detail
KEEP_SECONDS = 5.0  # how often a worker checks the connection that holds its presence lock
SWEEP_BATCH = 100
MAX_BACKOFF_SECONDS = 30.0
DETAIL_FIELDS = ("run_id", "run_uuid", "experiment_id", "name", "new_name", "model_id")

INSERT_INTENTS = """
INSERT INTO write_intents (owner, workspace_id, route, version, detail)
SELECT $1, w, r, v, d::jsonb FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[]) AS t(w, r, v, d)
RETURNING id
"""
# One statement, so that the owners are read after the statement's snapshot was taken: a worker takes its
# presence lock before it notes anything, so the owner of every note the snapshot shows is either still in
# pg_locks or dead. Read in a statement of its own before the claim, a worker that came to life and noted a
# write between the two would look dead, and its in-flight write would be recovered under its feet.
CLAIM = """
UPDATE write_intents SET owner = $1, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM write_intents
    WHERE owner <> $1
      AND owner <> ALL(ARRAY(
          SELECT objid::bigint FROM pg_locks
          WHERE locktype = 'advisory' AND classid = $2 AND objsubid = 2 AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())))
      AND next_attempt_at <= now() AND created_at <= now() - make_interval(secs => $3)
    ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
RETURNING id, workspace_id, route, version, detail, extract(epoch FROM created_at) AS noted_at, looks, attempts
"""


@dataclass(slots=True, eq=False)
class _Note:
    """One row of `write_intents` and the writes that hold it (one, unless the note is shared)."""

    row: tuple[int, str, int, str]  # workspace id, route, route version, detail (JSON)
    noted: asyncio.Future[int]  # the row's id, once inserted
    shared: bool
    holders: int = 1
    unknown: bool = False  # a holder's outcome is unknown: handed to recovery once no write holds the note
    idle_since: float = 0.0


@dataclass(slots=True)
class _Held:
    """The handle the forwarder holds for one noted write (`Intent`)."""

    log: IntentLog
    note: _Note
    done: bool = field(default=False)

    def settled(self) -> None:
        if not self.done:
            self.done = True
            self.log._let_go(self.note, unknown=False)

    def unknown(self) -> None:
        if not self.done:
            self.done = True
            self.log._let_go(self.note, unknown=True)


class Presence:
    """This worker's presence lock, on a connection of its own, taken again if the connection is lost."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.id = 0
        self._connection: asyncpg.Connection | None = None
        self._keeping = BackgroundLoop("presence", self._keep, KEEP_SECONDS, first_delay_seconds=KEEP_SECONDS)

    async def start(self) -> None:
        await self._take()
        self._keeping.start()

    async def _take(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        try:
            for _ in range(10):
                wanted = self.id or random.randint(1, 2**31 - 1)  # noqa: S311 (an identity, not a secret)
                if await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", int(LockClass.PRESENCE), wanted):
                    self.id = wanted
                    self._connection = connection
                    return
                self.id = 0  # taken by another worker: choose again
        except BaseException:
            await connection.close()
            raise
        await connection.close()
        raise RuntimeError("no free presence id")

    async def _keep(self) -> None:
        try:
            assert self._connection is not None
            await self._connection.fetchval("SELECT 1")
        except Exception as exc:
            log.warning("presence connection lost; taking the lock again: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                if self._connection is not None:
                    self._connection.terminate()
            self._connection = None
            with contextlib.suppress(Exception):
                await self._take()

    async def stop(self) -> None:
        await self._keeping.stop()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()  # the lock ends with the session


class IntentLog:
    """The forwarder's `WriteAhead` (hooks.py): notes, drops and recovers write intents."""

    def __init__(
        self,
        pool: Callable[[], Awaitable[asyncpg.Pool]],
        presence: Presence,
        links: LinkTable,
        recoveries: Sequence[Recovery],
        *,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self._pool = pool  # the pool "derived" (asynchronous commit)
        self.presence = presence
        self._links = links
        self._recoveries = tuple(recoveries)
        self._pending: list[_Note] = []
        self._writing: asyncio.Task[None] | None = None
        self._drops: list[int] = []
        self._unknown: list[int] = []
        self._shared: dict[tuple[int, str, int, str], _Note] = {}  # the shared notes writes may join
        self._idle: dict[tuple[int, str, int, str], _Note] = {}  # those no write holds, longest idle first
        self._stopping = False
        self._flushing = BackgroundLoop(
            "write intents flush", self.flush, FLUSH_SECONDS, on_error=_not_flushed, first_delay_seconds=FLUSH_SECONDS
        )
        # Straight on while notes were claimed, else every `sweep_seconds`.
        self._sweeping = BackgroundLoop("write intents sweep", self._sweep_some, sweep_seconds, on_error=_not_swept)

    # -- the forwarder's side ------------------------------------------------------------------------

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return any(recovery.wants(spec, link) for recovery in self._recoveries)

    def coalesces(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        """Whether writes of `spec` with the same detail may share a note: every recovery that wants them says so."""
        wanting = [recovery for recovery in self._recoveries if recovery.wants(spec, link)]
        return bool(wanting) and all(recovery.coalesces(spec, link) for recovery in wanting)

    async def begin(
        self,
        spec: RouteSpec,
        link: WorkspaceLink,
        ids: RequestIds | None,
        path_params: Mapping[str, Any],
        artifact_path: str | None,
    ) -> _Held | None:
        detail = intent_detail(ids, path_params, artifact_path)
        row = (link.workspace_id, spec.name, spec.version, msgspec.json.encode(detail).decode())
        note = self._shared.get(row)
        if note is not None:
            note.holders += 1
            self._idle.pop(row, None)
        else:
            note = _Note(row, asyncio.get_running_loop().create_future(), self.coalesces(spec, link))
            if note.shared:
                self._shared[row] = note
            self._pending.append(note)
            if self._writing is None or self._writing.done():
                self._writing = asyncio.create_task(self._write_pending())
        try:
            await asyncio.shield(note.noted)
        except asyncio.CancelledError:
            # The caller went away before its note was written: once it is, its outcome is unknown.
            self._let_go(note, unknown=True)
            raise
        except Exception as exc:
            note.holders -= 1
            INTENTS_UNNOTED.inc()
            essential = any(r.essential and r.wants(spec, link) for r in self._recoveries)
            log.warning("write intent not noted", extra={"route": spec.name, "reason": type(exc).__name__})
            if essential:
                raise StoreUnavailable(
                    "The gateway's database did not take note of the write, so it was not sent; repeat the call."
                ) from exc
            return None
        return _Held(self, note)

    def _let_go(self, note: _Note, *, unknown: bool) -> None:
        """A holder of `note` is done; the last one drops the note (a shared one after `SHARE_SECONDS` unused), or
        hands it to recovery if any holder's outcome was unknown."""
        note.holders -= 1
        if unknown:
            note.unknown = True
            if self._shared.get(note.row) is note:
                del self._shared[note.row]  # later writes note anew: this one is about to be recovered
        if note.holders or not note.noted.done() or note.noted.cancelled() or note.noted.exception() is not None:
            return  # still held, or not written yet (`_write_pending` settles it), or never written
        if note.unknown:
            self._unknown.append(note.noted.result())
        elif note.shared:
            note.idle_since = time.monotonic()
            self._idle[note.row] = note
        else:
            self._drops.append(note.noted.result())

    async def _write_pending(self) -> None:
        """One INSERT for every note queued meanwhile: concurrent calls share a round trip."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                pool = await self._pool()
                ids = await pool.fetch(
                    INSERT_INTENTS,
                    self.presence.id,
                    [note.row[0] for note in batch],
                    [note.row[1] for note in batch],
                    [note.row[2] for note in batch],
                    [note.row[3] for note in batch],
                )
            except Exception as exc:
                for note in batch:
                    if self._shared.get(note.row) is note:
                        del self._shared[note.row]
                    note.noted.set_exception(exc)
                    note.noted.exception()  # retrieved: a note every caller left has nobody to tell
                continue
            for note, row in zip(batch, ids, strict=True):
                note.noted.set_result(int(row["id"]))
                if not note.holders:  # every caller went away before the note was written: the outcome is unknown
                    self._unknown.append(int(row["id"]))

    def _expire(self, everything: bool = False) -> None:
        """Shared notes unused for `SHARE_SECONDS` (all unused ones: `everything`) are dropped at the next flush."""
        limit = time.monotonic() - SHARE_SECONDS
        while self._idle:
            row, note = next(iter(self._idle.items()))
            if note.idle_since > limit and not everything:
                break
            del self._idle[row]
            del self._shared[row]
            self._drops.append(note.noted.result())

    # -- background ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.presence.start()
        self._flushing.start()
        self._sweeping.start()

    async def stop(self) -> None:
        """Stop sweeping, write the drops and hand-overs still queued, let go of presence."""
        self._stopping = True
        await self._sweeping.stop()
        await self._flushing.stop()
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        with contextlib.suppress(Exception):
            await self.flush()
        await self.presence.stop()

    async def flush(self) -> None:
        """Drop settled notes; hand notes of unknown outcome to recovery (owner 0: nobody's, due now)."""
        self._expire(everything=self._stopping)
        drops, self._drops = self._drops, []
        unknown, self._unknown = self._unknown, []
        if not drops and not unknown:
            return
        try:
            pool = await self._pool()
            async with pool.acquire() as connection:
                if drops:
                    await connection.execute("DELETE FROM write_intents WHERE id = ANY($1::bigint[])", drops)
                if unknown:
                    await connection.execute(
                        "UPDATE write_intents SET owner = 0, next_attempt_at = now() WHERE id = ANY($1::bigint[])",
                        unknown,
                    )
        except BaseException:
            self._drops.extend(drops)  # tried again at the next flush
            self._unknown.extend(unknown)
            raise

    async def _sweep_some(self) -> bool:
        return await self.sweep() > 0

    async def sweep(self) -> int:
        """Claim the notes of dead workers (and of unknown outcome) and recover them; how many were claimed."""
        pool = await self._pool()
        rows = await pool.fetch(CLAIM, self.presence.id, int(LockClass.PRESENCE), SETTLE_SECONDS, SWEEP_BATCH)
        if rows:
            await asyncio.gather(*(self._recover(row) for row in rows))
        return len(rows)

    async def _recover(self, row: Mapping[str, Any]) -> None:
        intent_id = int(row["id"])
        link = self._links.by_id(int(row["workspace_id"]))
        try:
            spec = declared(str(row["route"]), int(row["version"]))
        except LookupError:
            spec = None
        if link is None or spec is None:  # unlinked (or renumbered) since, or a route no longer declared
            await self._drop(intent_id)
            return
        write = UnsettledWrite(spec, link, _detail(row["detail"]), float(row["noted_at"]))
        try:
            for recovery in self._recoveries:
                if recovery.wants(spec, link):
                    await recovery.recover(write)
        except Exception as exc:
            delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(int(row["attempts"]), 8))
            log.info(
                "write intent not recovered yet",
                extra={"ws": link.name, "route": spec.name, "reason": f"{type(exc).__name__}: {exc}"[:300]},
            )
            await self._release(intent_id, delay, f"{type(exc).__name__}: {exc}"[:2000])
            return
        INTENTS_RECOVERED.labels(spec.name).inc()
        log.info("write of unknown outcome recovered", extra={"ws": link.name, "route": spec.name, **write.detail})
        if int(row["looks"]) == 0:  # once more later, for a write its store finished after its caller died
            await self._release(intent_id, SECOND_LOOK_SECONDS, "", looked=True)
        else:
            await self._drop(intent_id)

    async def _drop(self, intent_id: int) -> None:
        pool = await self._pool()
        await pool.execute("DELETE FROM write_intents WHERE id = $1", intent_id)

    async def _release(self, intent_id: int, delay: float, error: str, *, looked: bool = False) -> None:
        pool = await self._pool()
        await pool.execute(
            "UPDATE write_intents SET owner = 0, next_attempt_at = now() + make_interval(secs => $2), "
            "last_error = $3, looks = looks + $4 WHERE id = $1",
            intent_id,
            float(delay),
            error,
            int(looked),
        )

    async def pending(self) -> int:
        """Notes not dropped yet, of any worker (for tests and status)."""
        pool = await self._pool()
        return int(await pool.fetchval("SELECT count(*) FROM write_intents"))


def intent_detail(ids: RequestIds | None, path_params: Mapping[str, Any], artifact_path: str | None) -> dict[str, str]:
    """The ids a write names before it is sent: enough for a recovery to find what it touched."""
    detail: dict[str, str] = {}
    if ids is not None:
        for name in DETAIL_FIELDS:
            value = getattr(ids, name, None)
            if value:
                detail[name] = str(value)[:500]
    if (model_id := path_params.get("model_id")) is not None:
        detail["model_id"] = str(model_id)
    if artifact_path is not None:
        detail["artifact_path"] = artifact_path[:2000]
        if (run_id := artifact_run_id(artifact_path)) is not None:
            detail["run_id"] = run_id
        if (model_id := artifact_model_id(artifact_path)) is not None:
            detail["model_id"] = model_id
    if "run_uuid" in detail and "run_id" not in detail:
        detail["run_id"] = detail["run_uuid"]
    return detail


def _detail(value: Any) -> dict[str, str]:
    decoded = msgspec.json.decode(value) if isinstance(value, str | bytes) else value
    return {str(k): str(v) for k, v in (decoded or {}).items()}


def _not_flushed(exc: Exception) -> None:
    log.warning("write intents not flushed: %s", type(exc).__name__)


def _not_swept(exc: Exception) -> None:
    log.warning("write intents sweep failed: %s", type(exc).__name__)
