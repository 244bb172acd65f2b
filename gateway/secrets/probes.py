"""How much the leak guard may tell a caller who may not read a secret: its probes of a scope's values, counted
across replicas.

The leak guard (leaks.py) refuses a write of a run that read a secret when the write holds the secret's value.
To a caller who may edit the run but holds no permission on the secret's scope, each answer says whether the
text it wrote holds the value: a guessing oracle for a short value (a four-digit PIN is one of 10,000, and a
log-batch of 6,000-character params holds them all). Two ways out of it, both bounded here per caller and
scope (of a workspace), in PostgreSQL so that every replica and worker counts the same:

- refusals: after `refusals` refused writes (by default 3) the caller is locked out of writing text to any run
  that read the scope's secrets for `window_seconds`; a bisection needs about log2(candidates) refusals;
- text: the bytes of text its writes to such runs carried, at most `text_bytes` (by default 16 KiB) per
  window, refused or not; a guess must be written to be checked, so this bounds the candidates a caller can
  try in a window however it packs them (one a call, thousands in a batch, all in one long value).

A write past either is refused before it is checked (the vault is not asked, the answer does not depend on
what it holds): 403 PERMISSION_DENIED with Retry-After, which the stock client does not retry. A check in flight
counts as a refusal until it is settled (`pending`), so a caller sending many writes at once gets at most as
many answers as it has refusals left; a write past that answers 429 REQUEST_LIMIT_EXCEEDED with Retry-After 1,
which the stock client retries. A check whose worker died before settling stays pending until the window
rolls over.

Callers who hold a permission on the scope (READ or more: they may read the values anyway) are not counted:
the guard tells them nothing they could not read. The decisions are the pure functions `admitted` and
`settled` (tests/unit/test_leak_probes.py); `ProbeLedger` keeps their state in `secret_leak_probes`
(migration 0045), one row per caller and scope, changed under its row lock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.errors import GatewayError

BUSY_RETRY_SECONDS = 1


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """What a caller without a permission on a scope may spend per window ([secrets] leak_*)."""

    refusals: int = 3
    text_bytes: int = 16 * 1024
    window_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class ProbeState:
    """One caller's spending on one scope, as its row holds it."""

    window_start: datetime
    text_bytes: int = 0
    refusals: int = 0
    pending: int = 0
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a write is not checked: `locked` (403, until `retry_after` seconds) or `busy` (429, checks in flight)."""

    reason: str  # "refusals", "text" or "busy"
    retry_after: int


def admitted(state: ProbeState | None, now: datetime, size: int, limits: ProbeLimits) -> ProbeState | Refused:
    """The state once a write of `size` bytes of text is let through to be checked, or why it is not."""
    window = timedelta(seconds=limits.window_seconds)
    if state is None:
        state = ProbeState(now)
    elif now >= state.window_start + window:  # a new window: what was spent is forgotten, a lock is not
        state = ProbeState(now, locked_until=state.locked_until)
    if state.locked_until is not None and now < state.locked_until:
        return Refused("refusals", _seconds(state.locked_until - now))
    if state.refusals >= limits.refusals:  # a lock set under a smaller window setting: until the window ends
        return Refused("refusals", _seconds(state.window_start + window - now))
    if state.text_bytes + size > limits.text_bytes:
        return Refused("text", _seconds(state.window_start + window - now))
    if state.refusals + state.pending >= limits.refusals:
        return Refused("busy", BUSY_RETRY_SECONDS)
    return replace(state, text_bytes=state.text_bytes + size, pending=state.pending + 1)


def settled(state: ProbeState, now: datetime, refused: bool, limits: ProbeLimits) -> ProbeState:
    """The state once a check let through by `admitted` is done: refused (the write held a value) or not."""
    pending = max(state.pending - 1, 0)
    if not refused:
        return replace(state, pending=pending)
    refusals = state.refusals + 1
    locked_until = state.locked_until
    if refusals >= limits.refusals:
        locked_until = now + timedelta(seconds=limits.window_seconds)
    return replace(state, pending=pending, refusals=refusals, locked_until=locked_until)


def refusals_left(state: ProbeState, limits: ProbeLimits) -> int:
    return max(limits.refusals - state.refusals, 0)


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


Scope = tuple[int, str]  # (workspace id, scope name)


@dataclass(frozen=True, slots=True)
class Ticket:
    """The scopes a write was let through on, to be settled once it is checked."""

    principal: str
    scopes: tuple[Scope, ...]


class ProbesLimited(GatewayError):
    """A write not checked because its caller spent what it may learn of a scope's values."""

    def __init__(self, refused: Refused, limits: ProbeLimits) -> None:
        headers = {"Retry-After": str(refused.retry_after)}
        if refused.reason == "busy":
            super().__init__(
                "Other writes of yours to runs that read a secret you may not read are being checked; "
                f"retry in {refused.retry_after} s.",
                error_code="REQUEST_LIMIT_EXCEEDED",
                status=429,
                headers=headers,
            )
            return
        if refused.reason == "refusals":
            why = (
                f"{limits.refusals} of your writes to runs that read a secret you may not read were refused "
                "because they held its value"
            )
        else:
            why = (
                f"your writes to runs that read a secret you may not read carried more than {limits.text_bytes} "
                f"bytes of text within {limits.window_seconds:g} s"
            )
        super().__init__(
            f"Writes of text to this run are refused for {refused.retry_after} s: {why}, and each such write "
            "tells whether it holds the value. Writes that carry no text (ending the run) are not concerned; "
            "a READ permission on the secret's scope lifts the limit.",
            error_code="PERMISSION_DENIED",
            status=403,
            headers=headers,
        )


_LOCK = text(
    "INSERT INTO secret_leak_probes (principal, workspace_id, scope, window_start) "
    "VALUES (:principal, :workspace_id, :scope, now()) ON CONFLICT DO NOTHING"
)
_READ = text(
    "SELECT window_start, text_bytes, refusals, pending, locked_until, now() AS now FROM secret_leak_probes "
    "WHERE principal = :principal AND workspace_id = :workspace_id AND scope = :scope FOR UPDATE"
)
_WRITE = text(
    "UPDATE secret_leak_probes SET window_start = :window_start, text_bytes = :text_bytes, "
    "refusals = :refusals, pending = :pending, locked_until = :locked_until "
    "WHERE principal = :principal AND workspace_id = :workspace_id AND scope = :scope"
)


class ProbeLedger:
    """The probes of callers without a permission on a scope, in `secret_leak_probes` (every replica's)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], limits: ProbeLimits) -> None:
        self._sessionmaker = sessionmaker
        self.limits = limits

    async def admit(self, principal: str, scopes: Sequence[Scope], size: int) -> Ticket:
        """Let a write of `size` bytes of text be checked against these scopes' values, or raise ProbesLimited
        (nothing spent then, on any of them)."""
        ordered = tuple(sorted(set(scopes)))  # one order for every caller: no deadlock between two writes
        async with self._sessionmaker() as session, session.begin():
            for workspace_id, scope in ordered:
                state, now = await _locked(session, principal, workspace_id, scope)
                after = admitted(state, now, size, self.limits)
                if isinstance(after, Refused):
                    raise ProbesLimited(after, self.limits)  # the transaction rolls back what it spent
                await _store(session, principal, workspace_id, scope, after)
        return Ticket(principal, ordered)

    async def settle(self, ticket: Ticket, refused: Sequence[Scope]) -> int:
        """The check is done; `refused`: the scopes whose values the write held. Answers the refusals the
        caller has left on those scopes (the fewest)."""
        left = self.limits.refusals
        async with self._sessionmaker() as session, session.begin():
            for workspace_id, scope in ticket.scopes:
                state, now = await _locked(session, ticket.principal, workspace_id, scope)
                hit = (workspace_id, scope) in refused
                after = settled(state or ProbeState(now), now, hit, self.limits)
                await _store(session, ticket.principal, workspace_id, scope, after)
                if hit:
                    left = min(left, refusals_left(after, self.limits))
        return left


async def _locked(session: AsyncSession, principal: str, workspace_id: int, scope: str) -> tuple[ProbeState, datetime]:
    key = {"principal": principal, "workspace_id": workspace_id, "scope": scope}
    await session.execute(_LOCK, key)
    row = (await session.execute(_READ, key)).one()
    state = ProbeState(row.window_start, row.text_bytes, row.refusals, row.pending, row.locked_until)
    return state, row.now


async def _store(session: AsyncSession, principal: str, workspace_id: int, scope: str, state: ProbeState) -> None:
    await session.execute(
        _WRITE,
        {
            "principal": principal,
            "workspace_id": workspace_id,
            "scope": scope,
            "window_start": state.window_start,
            "text_bytes": state.text_bytes,
            "refusals": state.refusals,
            "pending": state.pending,
            "locked_until": state.locked_until,
        },
    )
