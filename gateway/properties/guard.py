"""The property guard: a run's properties are add-only, for every client and every route that can touch a run tag.

A property is a run tag under `fedgate.property.` (gateway/client/encoding.py, `Run.add_properties`). A
before-send check of the request pipeline (federation/hooks.py `BeforeSend`), plugged in by app.py, sees
every call of the routes that set or delete tags of an existing run under keys the caller chooses
(`RUN_TAGS`: runs/set-tag, runs/delete-tag, runs/log-batch). Every other route that writes run tags
writes fixed `mlflow.*` keys (runs/update: the run name; runs/log-model: the model history) or creates
the run (runs/create: a new run has no property to change); tests/unit/test_property_guard.py derives
this from MLflow's own request messages.

A call that names no property costs a scan of its tag keys. A call that does:

- deleting a property is refused, always;
- a value that is not a string, or one property set twice in the call with different values, is refused;
- otherwise the run's current tags are read from its store (runs/get, the gateway's own call) and the call
  is refused if it would give an existing property another value. Setting a property for the first time,
  or to the value it has, is allowed (idempotent).

Refused: 400 INVALID_PARAMETER_VALUE in the words MLflow uses for a changed param, nothing of the call is
sent, and the audit log gets `runs.property_refused` (run, key; not the values). Keys a store or a reader might
take for one another are compared as one (`core/reserved.py`, `folded`): case, accents and blanks around (a
MySQL-backed store's collation ignores the first two and trailing spaces; MLflow's key check takes spaces anywhere
and a last newline) do not make a new property.

Two calls that set the same property of one run at the same moment are serialised: the check holds a
session-level advisory lock (`LockClass.RUN_PROPERTIES`, key: workspace id and run id) on a connection of
its own, outside any transaction, until the store has answered; the second call then reads what the first
wrote. A call whose answer never came (the store timed out) releases it too: a store that applies such a
write later is the one case the lock cannot order.

That connection is one of the engine's, which every other request of the worker also needs (token lookups,
grants, the admin API), and it is held for as long as the store takes. So that many property writes at once
(to a slow or stalled store, or just many) cannot hold them all:

- one worker's calls to one run wait for each other in the worker first (an in-process lock per workspace and
  run), holding no connection; only the one whose turn it is takes a connection and the advisory lock, which
  orders it against other workers and replicas. Waiting for both together takes at most `lock_wait` (30 s),
  then 503 TEMPORARILY_UNAVAILABLE with Retry-After, as before;
- a worker holds at most `property_slots(database.pool_size)` such connections at once (half the pool size, at
  least one; the engine opens up to twice the pool size), one per call however many runs it names. A call that
  finds none free within `SLOT_WAIT_SECONDS` (2 s) is answered 429 REQUEST_LIMIT_EXCEEDED with Retry-After,
  which MLflow's client retries, and nothing of it is sent; `fedgate_property_slots_refused_total` counts them.

A call that names no property takes neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.core.errors import GatewayError, InvalidParameter, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.reserved import folded
from gateway.core.route_table import RUNS_DELETE_TAG, RUNS_LOG_BATCH, RUNS_SET_TAG, RouteSpec
from gateway.db.locks import LockClass, autocommit_connection, held
from gateway.federation.hooks import Held, PendingCall
from gateway.observability.metrics import PROPERTY_SLOTS_REFUSED

log = logging.getLogger(__name__)

PROPERTY_TAG = "fedgate.property."  # the same prefix as the client's (gateway/client/encoding.py), checked by a test
LOCK_WAIT_SECONDS = 30.0
SLOT_WAIT_SECONDS = 2.0  # how long a call waits for one of the worker's property slots before 429
RETRY_AFTER_SECONDS = 1
SHOWN = 200  # characters of a value an error message shows
RUN_GET = "/api/2.0/mlflow/runs/get"

# The gateway's own read of a run from the workspace's store: (status, body), federation/direct.py's fetch.
Fetch = Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]]


def property_slots(pool_size: int) -> int:
    """Connections one worker's property checks may hold at once: half of `database.pool_size`, at least one (the
    engine opens up to twice the pool size, so three quarters or more stay for everything else)."""
    return max(1, pool_size // 2)


def is_property(key: str) -> bool:
    return folded(key).startswith(PROPERTY_TAG)


@dataclass(frozen=True, slots=True)
class TagWrite:
    key: str
    value: Any  # as the call gives it; a missing or null value is "", as MLflow reads it
    delete: bool = False


def tag_writes(spec: RouteSpec, document: dict[str, Any]) -> list[TagWrite]:
    """The run tags a call sets or deletes, as the store will read them."""
    if spec == RUNS_SET_TAG:
        return [_write(document)]
    if spec == RUNS_DELETE_TAG:
        return [TagWrite(str(document.get("key") or ""), "", delete=True)]
    if spec == RUNS_LOG_BATCH:
        tags = document.get("tags")
        if not isinstance(tags, list):
            return []
        return [_write(t) for t in tags if isinstance(t, dict)]
    return []


def _write(tag: dict[str, Any]) -> TagWrite:
    value = tag.get("value")
    return TagWrite(str(tag.get("key") or ""), "" if value is None else value)


class _Tag(msgspec.Struct):
    key: str = ""
    value: str = ""


class _Data(msgspec.Struct):
    tags: list[_Tag] = []


class _Run(msgspec.Struct):
    data: _Data = msgspec.field(default_factory=_Data)


class _RunAnswer(msgspec.Struct):
    run: _Run = msgspec.field(default_factory=_Run)


class _RunTurns:
    """One worker's writers of one run, one at a time: an in-process lock per (workspace id, run id), kept while
    anyone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: tuple[str, str], deadline: float) -> AsyncIterator[bool]:
        """The run's turn for the block; whether it came before `deadline` (the loop's clock)."""
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await lock.acquire()
            except TimeoutError:
                got = False
            else:
                got = True
            try:
                yield got
            finally:
                if got:
                    lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _Lock:
    """The per-run lock a check holds until the store has answered (federation/hooks.py `Held`)."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack

    async def release(self) -> None:
        await self._stack.aclose()


class PropertyGuard:
    """A `BeforeSend` check: refuses any change or deletion of an existing run property."""

    def __init__(
        self,
        fetch: Fetch,
        sessionmaker: async_sessionmaker[AsyncSession],
        audit: AuditTrail | None = None,
        lock_wait: float = LOCK_WAIT_SECONDS,
        slots: int = 1,
        slot_wait: float = SLOT_WAIT_SECONDS,
    ) -> None:
        self._fetch = fetch
        self._sessionmaker = sessionmaker
        self._audit = audit
        self._lock_wait = lock_wait
        self._slots = asyncio.Semaphore(slots)  # connections this worker's checks hold at once (property_slots)
        self._slot_count = slots
        self._slot_wait = slot_wait
        self._turns = _RunTurns()

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.run_tags

    async def check(self, call: PendingCall) -> Held | None:
        writes = [w for w in tag_writes(call.spec, call.body.document) if is_property(w.key)]
        if not writes:
            return None
        ids = call.body.ids
        runs = sorted({r for r in (ids.run_id, ids.run_uuid) if isinstance(r, str) and r})
        run_shown = runs[0] if runs else ""
        setting: dict[str, TagWrite] = {}
        for write in writes:
            if write.delete:
                self._refused(call, run_shown, write.key, "delete")
                raise InvalidParameter(
                    f"Deleting properties is not allowed. Tag key='{write.key}' of run ID='{run_shown}' is a "
                    f"property (tags under '{PROPERTY_TAG}' are add-only)."
                )
            if not isinstance(write.value, str):
                raise InvalidParameter(f"Property '{write.key}' takes a string value, not {_json_type(write.value)}.")
            before = setting.setdefault(folded(write.key), write)
            if before.value != write.value:
                raise InvalidParameter(
                    f"Property '{write.key}' is set twice in one call, with different values "
                    f"('{_shown(before.value)}' and '{_shown(write.value)}')."
                )
        if not runs:
            return None  # the store refuses a call that names no run
        lock = await self._lock(call.link, runs)
        try:
            for run_id in runs:
                existing = await self._properties(call.link, run_id)
                for key, write in setting.items():
                    old = existing.get(key)
                    if old is not None and old[1] != write.value:
                        self._refused(call, run_id, write.key, "change")
                        raise InvalidParameter(
                            f"Changing property values is not allowed. Property with key='{old[0]}' was already set "
                            f"with value='{_shown(old[1])}' for run ID='{run_id}'. Attempted new value "
                            f"'{_shown(write.value)}'."
                        )
        except BaseException:
            await lock.release()
            raise
        return lock

    async def _lock(self, link: WorkspaceLink, runs: Sequence[str]) -> _Lock:
        """The runs' property locks (in order, so two calls naming the same runs cannot wait on each other): the
        worker's turn for each run, then one of its slots and a connection, on which the advisory locks are taken."""
        stack = contextlib.AsyncExitStack()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        try:
            for run_id in runs:
                if not await stack.enter_async_context(self._turns.turn((str(link.workspace_id), run_id), deadline)):
                    raise _busy(run_id)
            await stack.enter_async_context(self._slot(runs[0]))
            connection = await stack.enter_async_context(autocommit_connection(self._sessionmaker))
            for run_id in runs:
                key = f"{link.workspace_id}/{run_id}"
                wait = max(0.0, deadline - loop.time())
                got = await stack.enter_async_context(held(connection, LockClass.RUN_PROPERTIES, key, wait=wait))
                if not got:
                    raise _busy(run_id)
        except BaseException:
            await stack.aclose()
            raise
        return _Lock(stack)

    @contextlib.asynccontextmanager
    async def _slot(self, run_id: str) -> AsyncIterator[None]:
        """One of the worker's property slots for the block; 429 when none is free within the slot wait."""
        try:
            async with asyncio.timeout(self._slot_wait):
                await self._slots.acquire()
        except TimeoutError:
            PROPERTY_SLOTS_REFUSED.inc()
            raise GatewayError(
                f"The properties of run {run_id} cannot be checked now: this server is checking "
                f"{self._slot_count} property writes at once, its most; try again in {RETRY_AFTER_SECONDS} s.",
                error_code="REQUEST_LIMIT_EXCEEDED",
                status=429,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    async def _properties(self, link: WorkspaceLink, run_id: str) -> dict[str, tuple[str, str]]:
        """The run's properties now, by folded key: (key, value). Empty for a run the store does not have
        (its answer to the write says so)."""
        status, body = await self._fetch(link, RUN_GET, urlencode({"run_id": run_id}))
        if status in (400, 404):
            return {}
        if status != 200:
            raise StoreUnavailable(
                f"The properties of run {run_id} could not be read from the store of workspace '{link.name}' "
                f"(it answered {status}); try again shortly."
            )
        try:
            tags = msgspec.json.decode(body, type=_RunAnswer).run.data.tags
        except msgspec.DecodeError:
            raise StoreUnavailable(f"The store of workspace '{link.name}' answered runs/get unreadably.") from None
        return {folded(t.key): (t.key, t.value) for t in tags if is_property(t.key)}

    def _refused(self, call: PendingCall, run_id: str, key: str, attempt: str) -> None:
        log.info("property write refused", extra={"run_id": run_id, "key": key, "attempt": attempt})
        if self._audit is not None:
            self._audit.record(
                entry(
                    call.principal.name,
                    "runs.property_refused",
                    f"run:{call.link.name}/{run_id}",
                    "denied",
                    {"key": key, "attempt": attempt, "route": call.spec.name},
                    call.request_id,
                )
            )


def _busy(run_id: str) -> StoreUnavailable:
    return StoreUnavailable(f"Another write of the properties of run {run_id} is still under way; try again shortly.")


def _shown(value: str) -> str:
    return value if len(value) <= SHOWN else value[:SHOWN] + "..."


def _json_type(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
