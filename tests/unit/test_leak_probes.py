"""What the leak guard lets a caller without a permission on a scope learn of its values (gateway/secrets/probes.py):
the decisions as pure functions, and the ledger on the session's embedded PostgreSQL, where a second `ProbeLedger`
on the same database is another replica."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.config import ConfigError, Settings, load_settings
from gateway.db.engine import make_sessionmaker
from gateway.secrets.probes import (
    ProbeLedger,
    ProbeLimits,
    ProbesLimited,
    ProbeState,
    Refused,
    admitted,
    settled,
)
from tests.support.identity import unique

LIMITS = ProbeLimits(refusals=3, text_bytes=1000, window_seconds=3600)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def admit(state: ProbeState | None, seconds: float, size: int = 10) -> ProbeState:
    after = admitted(state, at(seconds), size, LIMITS)
    assert isinstance(after, ProbeState), after
    return after


def test_three_refused_writes_lock_the_caller_out_for_a_whole_window_from_the_last() -> None:
    state: ProbeState | None = None
    for second in (0, 10, 20):
        state = settled(admit(state, second), at(second), True, LIMITS)
    assert state is not None and state.refusals == 3 and state.pending == 0
    assert state.locked_until == at(3620)
    assert admitted(state, at(30), 10, LIMITS) == Refused("refusals", 3590)
    # The window it started in has ended, the lock has not: what it spent is forgotten, the lock holds.
    assert admitted(state, at(3610), 10, LIMITS) == Refused("refusals", 10)
    assert isinstance(admitted(state, at(3620), 10, LIMITS), ProbeState)


def test_clean_writes_cost_text_only_and_the_window_forgets_what_was_spent() -> None:
    state = admit(None, 0, 400)
    state = settled(state, at(0), False, LIMITS)
    state = settled(admit(state, 5, 600), at(5), False, LIMITS)
    assert (state.text_bytes, state.refusals, state.pending) == (1000, 0, 0)
    # One more byte is past the budget, whatever it holds, until the window that began at 0 ends.
    assert admitted(state, at(100), 1, LIMITS) == Refused("text", 3500)
    assert admitted(state, at(100), 0, LIMITS) != Refused("text", 3500)
    renewed = admit(state, 3600, 1000)
    assert (renewed.window_start, renewed.text_bytes) == (at(3600), 1000)
    # A write larger than the budget is never checked.
    assert admitted(None, at(0), 1001, LIMITS) == Refused("text", 3600)


def test_checks_in_flight_count_as_refusals_until_settled() -> None:
    state = admit(admit(admit(None, 0), 0), 0)
    assert state.pending == 3
    assert admitted(state, at(0), 10, LIMITS) == Refused("busy", 1)
    state = settled(state, at(1), False, LIMITS)
    state = settled(state, at(1), True, LIMITS)
    assert (state.pending, state.refusals) == (1, 1)
    state = admit(state, 2)  # one refusal, two in flight: the third may be a refusal, no fourth check
    assert admitted(state, at(2), 10, LIMITS) == Refused("busy", 1)


def test_a_bisection_over_any_candidates_gets_at_most_the_refusals_allowed() -> None:
    """The attacker halves the candidates holding the secret; only the refused halves cost it."""
    candidates = list(range(1024))
    secret = 777
    state: ProbeState | None = None
    answers = 0
    while len(candidates) > 1:
        half = candidates[: len(candidates) // 2]
        after = admitted(state, at(answers), 5 * len(half), ProbeLimits(3, 10**9, 3600))
        if isinstance(after, Refused):
            break
        answers += 1
        hit = secret in half
        state = settled(after, at(answers), hit, ProbeLimits(3, 10**9, 3600))
        candidates = half if hit else candidates[len(half) :]
    assert state is not None and state.refusals == 3 and len(candidates) > 1


@pytest.fixture
def ledgers(engine: AsyncEngine) -> tuple[ProbeLedger, ProbeLedger]:
    return ProbeLedger(make_sessionmaker(engine), LIMITS), ProbeLedger(make_sessionmaker(engine), LIMITS)


async def test_refusals_on_one_replica_lock_the_caller_out_on_another_and_no_one_else(
    ledgers: tuple[ProbeLedger, ProbeLedger],
) -> None:
    one, two = ledgers
    mallory, alice = unique("mallory"), unique("alice")
    scope, other = (1001, unique("pins")), (1001, unique("keys"))
    for ledger in (one, two, one):
        ticket = await ledger.admit(mallory, [scope], 10)
        await ledger.settle(ticket, [scope])
    with pytest.raises(ProbesLimited) as raised:
        await two.admit(mallory, [scope], 1)
    assert raised.value.status == 403 and raised.value.error_code == "PERMISSION_DENIED"
    assert 3590 <= int(raised.value.headers["Retry-After"]) <= 3600
    assert "refused for" in raised.value.message
    # Another scope of the caller, and another caller of the scope, are not concerned.
    await one.settle(await one.admit(mallory, [other], 10), [])
    await two.settle(await two.admit(alice, [scope], 10), [])
    # A write that touches a locked scope spends nothing on the others.
    with pytest.raises(ProbesLimited):
        await one.admit(mallory, [other, scope], 900)
    await one.settle(await one.admit(mallory, [other], 980), [])


async def test_writes_sent_at_once_get_no_more_answers_than_refusals_left(
    ledgers: tuple[ProbeLedger, ProbeLedger],
) -> None:
    mallory, scope = unique("mallory"), (1001, unique("pins"))
    results = await asyncio.gather(
        *(ledgers[i % 2].admit(mallory, [scope], 10) for i in range(20)), return_exceptions=True
    )
    let_through = [result for result in results if not isinstance(result, BaseException)]
    refused = [result for result in results if isinstance(result, ProbesLimited)]
    assert len(let_through) == 3 and len(refused) == 17
    assert all(exc.status == 429 and exc.headers["Retry-After"] == "1" for exc in refused)
    for ticket in let_through:
        await ledgers[0].settle(ticket, [scope])
    with pytest.raises(ProbesLimited) as raised:
        await ledgers[1].admit(mallory, [scope], 10)
    assert raised.value.status == 403


async def test_the_text_budget_is_shared_by_replicas(ledgers: tuple[ProbeLedger, ProbeLedger]) -> None:
    one, two = ledgers
    mallory, scope = unique("mallory"), (1001, unique("pins"))
    await one.settle(await one.admit(mallory, [scope], 600), [])
    assert await two.settle(await two.admit(mallory, [scope], 400), []) == 3
    with pytest.raises(ProbesLimited) as raised:
        await two.admit(mallory, [scope], 1)
    assert raised.value.status == 403 and "more than 1000 bytes of text" in raised.value.message


def test_the_settings_have_safe_defaults_and_bounds(tmp_path: Path) -> None:
    secrets = Settings().secrets
    assert (secrets.leak_refusals, secrets.leak_text_bytes, secrets.leak_window_seconds) == (3, 16384, 3600)
    config = tmp_path / "fedgate.toml"
    config.write_text("[secrets]\nleak_refusals = 5\nleak_text_bytes = 4096\nleak_window_seconds = 600\n")
    loaded = load_settings(config, environ={}).secrets
    assert (loaded.leak_refusals, loaded.leak_text_bytes, loaded.leak_window_seconds) == (5, 4096, 600)
    for key, bad in (("REFUSALS", "0"), ("TEXT_BYTES", "0"), ("WINDOW_SECONDS", "0"), ("WINDOW_SECONDS", "1e9")):
        with pytest.raises(ConfigError, match=rf"secrets\.leak_{key.lower()}: must be between"):
            load_settings(config, environ={f"FEDGATE_SECRETS_LEAK_{key}": bad})
