"""Whether a run is RUNNING, for a secret read: the store's answer, kept by a worker while nothing can have changed it.

A run reads a secret only while it is RUNNING and active in its store, and asking the store (`runs/get`)
costs more than the whole vault read. So a worker keeps the store's answer (`RunChecks`) and trusts it
on a later read of the same run, in the same workspace link, when all of this holds:

- it is at most `ttl_seconds` old (`[secrets] run_check_seconds`; 0: the store is asked on every read);
- the run's state version in the database is the one read *before* the store was asked. The version is
  that of `run_state_changes` (migration 0022) for the subjects `run:<run id>` and `workspace:<id>`,
  summed; the read's own statement compares it (service.py), so a change made through any worker or
  replica is seen by the next read, without any notification;
- no change of the run's state is in flight (sent to the store, not yet answered) when the answer is kept.

Every call through the gateway that may end or delete a run bumps the version before anything of it is
sent, durably, and again once the store has answered, whatever it answered (`RunStateChanges`, a
before-send check whose held part is released by the forwarder after the send): runs/update that sets
a status (how MLflow ends a run), runs/delete (the run), experiments/delete (MLflow deletes the
experiment's runs with it: the whole workspace's subject). A read that meets a bumped version, or a
change in flight, asks the store as before. So a run ended, killed or deleted through the gateway is
refused exactly as if every read asked the store; the CAN_EDIT on the run's experiment is decided on
every read against the live policy (the experiment of a run never changes).

What is not seen: a run ended or deleted in its store without the gateway (a client talking to the
`mlflow server` directly) is trusted for at most `ttl_seconds` after the last check of this worker. A
worker that died between the two bumps leaves its change in flight; reads then ask the store until
`IN_FLIGHT_SECONDS` have passed (the first bump already outdated every earlier check).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from gateway.core.bounded import BoundedCache
from gateway.core.errors import GatewayError, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.route_table import EXPERIMENTS_DELETE, RUNS_DELETE, RUNS_UPDATE, RouteSpec
from gateway.federation.hooks import PendingCall
from gateway.secrets.taint import run_key

log = logging.getLogger(__name__)

PoolSource = Callable[[], Awaitable[asyncpg.Pool]]
# A change sent and never answered (its worker died) stops holding reads back after this long.
IN_FLIGHT_SECONDS = 300
MAX_RUN_ID = 256

_BEGIN = (
    "INSERT INTO run_state_changes AS c (subject, version, in_flight, changed_at) VALUES ($1, 1, 1, now()) "
    "ON CONFLICT (subject) DO UPDATE SET version = c.version + 1, in_flight = c.in_flight + 1, changed_at = now()"
)
_SETTLE = (
    "UPDATE run_state_changes SET version = version + 1, in_flight = greatest(in_flight - 1, 0), changed_at = now() "
    "WHERE subject = $1"
)


def run_subject(run_id: str) -> str:
    return f"run:{run_key(run_id)}"


def workspace_subject(workspace_id: int) -> str:
    return f"workspace:{workspace_id}"


def subjects(link: WorkspaceLink, run_id: str) -> list[str]:
    """The subjects whose versions a run's state depends on."""
    return [run_subject(run_id), workspace_subject(link.workspace_id)]


@dataclass(frozen=True, slots=True)
class CheckedRun:
    """The store said the run is RUNNING and active, in `experiment_id`, when its state version was `version`."""

    experiment_id: str
    version: int
    until: float  # monotonic


class RunChecks:
    """This worker's recent answers of runs' stores, per workspace link and run (see the module docstring)."""

    def __init__(
        self, ttl_seconds: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: BoundedCache[tuple[WorkspaceLink, str], CheckedRun] = BoundedCache(max_entries)

    def get(self, link: WorkspaceLink, run_id: str) -> CheckedRun | None:
        key = (link, run_key(run_id))
        checked = self._entries.peek(key)
        if checked is None:
            return None
        if self._clock() >= checked.until:
            self._entries.pop(key)
            return None
        return checked

    def keep(self, link: WorkspaceLink, run_id: str, experiment_id: str, version: int) -> None:
        if self.ttl_seconds <= 0 or not 0 < len(run_id) <= MAX_RUN_ID:
            return
        key = (link, run_key(run_id))
        self._entries.put(key, CheckedRun(experiment_id, version, self._clock() + self.ttl_seconds))

    def forget(self, link: WorkspaceLink, run_id: str) -> None:
        self._entries.pop((link, run_key(run_id)))

    def __len__(self) -> int:
        return len(self._entries)


class _Settle:
    """The second bump of a change, once the store answered (released by the forwarder after the send)."""

    def __init__(self, pool: PoolSource, subject: str) -> None:
        self._pool = pool
        self._subject = subject

    async def release(self) -> None:
        try:
            pool = await self._pool()
            await pool.execute(_SETTLE, self._subject)
        except Exception as exc:  # the change stays in flight: reads ask the store until IN_FLIGHT_SECONDS pass
            log.warning("a run state change was not settled: %s", type(exc).__name__)


class RunStateChanges:
    """Before-send check: a call that may end or delete runs bumps their state version around its send."""

    def __init__(self, pool: PoolSource) -> None:
        self._pool = pool

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec in (RUNS_UPDATE, RUNS_DELETE, EXPERIMENTS_DELETE)

    @staticmethod
    def subject(spec: RouteSpec, link: WorkspaceLink, document: dict[str, object], run_id: str | None) -> str | None:
        """What the call may change: one run, every run of the workspace, or nothing (a rename)."""
        if spec == RUNS_UPDATE and "status" not in document:
            return None  # a new name only: the run keeps its state
        if spec in (RUNS_UPDATE, RUNS_DELETE) and run_id and len(run_id) <= MAX_RUN_ID:
            return run_subject(run_id)
        return workspace_subject(link.workspace_id)

    async def check(self, call: PendingCall) -> _Settle | None:
        ids = call.body.ids
        subject = self.subject(call.spec, call.link, call.body.document, ids.run_id or ids.run_uuid)
        if subject is None:
            return None
        try:
            pool = await self._pool()
            await pool.execute(_BEGIN, subject)
        except GatewayError:
            raise
        except Exception as exc:  # unversioned, the change could leave a finished run trusted: nothing is sent
            log.warning("a run state change could not be noted: %s", type(exc).__name__)
            raise StoreUnavailable("The gateway's database did not answer; try again.") from None
        return _Settle(self._pool, subject)
