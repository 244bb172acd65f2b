"""The background loop the gateway's pollers share: straight on while a step says more may wait, else a wait a
wake ends early; a failing step is reported and the loop goes on; stop ends it, a step under way included.

Every wait below is a bound on a loaded machine (an hour-long interval never passes in a test): the loop is moved
on by its steps' answers and by `wake` alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.core.background import BackgroundLoop, cancel_all

HOUR = 3600.0
BOUND = 30.0


def _no_error(exc: Exception) -> None:
    raise AssertionError(f"unexpected step failure: {exc!r}")


async def _until(done: Callable[[], bool]) -> None:
    """Let the loop run until `done()` holds, within BOUND."""
    async with asyncio.timeout(BOUND):
        while not done():
            await asyncio.sleep(0.01)


async def test_a_step_that_says_more_may_wait_runs_again_at_once_then_the_loop_waits_for_a_wake() -> None:
    steps = 0
    waiting = asyncio.Event()

    async def step() -> bool:
        nonlocal steps
        steps += 1
        if steps == 3:
            waiting.set()
        return steps < 3  # more may wait after the first two

    loop = BackgroundLoop("test loop", step, HOUR, on_error=_no_error)
    loop.start()
    try:
        await asyncio.wait_for(waiting.wait(), BOUND)
        for _ in range(20):
            await asyncio.sleep(0)
        assert steps == 3  # the third said nothing more is waiting: the loop waits out its hour
        loop.wake()
        await _until(lambda: steps >= 4)
    finally:
        await loop.stop()


async def test_a_wake_during_a_step_is_not_lost() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    steps = 0

    async def step() -> None:
        nonlocal steps
        steps += 1
        if steps == 1:
            entered.set()
            await release.wait()

    loop = BackgroundLoop("test loop", step, HOUR, on_error=_no_error)
    loop.start()
    try:
        await asyncio.wait_for(entered.wait(), BOUND)
        loop.wake()  # while the first step runs
        release.set()
        await _until(lambda: steps >= 2)
    finally:
        await loop.stop()


async def test_a_failing_step_is_reported_and_the_loop_goes_on() -> None:
    errors: list[Exception] = []
    recovered = asyncio.Event()
    steps = 0

    async def step() -> bool:
        nonlocal steps
        steps += 1
        if steps == 1:
            raise ValueError("the database is away")
        recovered.set()
        return False

    loop = BackgroundLoop("test loop", step, 0.01, on_error=errors.append)
    loop.start()
    try:
        await asyncio.wait_for(recovered.wait(), BOUND)
        assert [type(e) for e in errors] == [ValueError]
    finally:
        await loop.stop()


async def test_the_first_step_waits_for_the_first_delay_or_a_wake() -> None:
    ran = asyncio.Event()

    async def step() -> None:
        ran.set()

    loop = BackgroundLoop("test loop", step, HOUR, on_error=_no_error, first_delay_seconds=HOUR)
    loop.start()
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        assert not ran.is_set()
        loop.wake()
        await asyncio.wait_for(ran.wait(), BOUND)
    finally:
        await loop.stop()


async def test_stop_cancels_a_step_under_way_and_may_be_called_twice() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def step() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = BackgroundLoop("test loop", step, HOUR, on_error=_no_error)
    await loop.stop()  # never started: nothing to do
    loop.start()
    await asyncio.wait_for(entered.wait(), BOUND)
    await loop.stop()
    assert cancelled.is_set()
    await loop.stop()


async def test_a_stop_that_is_itself_cancelled_is_cancelled_not_swallowed() -> None:
    unwinding, finish = asyncio.Event(), asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            unwinding.set()
            await finish.wait()  # takes its time to unwind
            raise

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_all([task]))
    await asyncio.wait_for(unwinding.wait(), BOUND)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
