"""The order in which the relay applies one key's outbox entries, and what a failure does to that key.

A relay takes up a key's pending entries, oldest first, under the key's lock (SQL, in
test_relay_claim.py and the dual-tracking integration tests); `plan` is how the mirror turns that
group into calls, in order, and `after_failure` what becomes of the entry a failure stopped at (the
entries behind it stay pending).
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.db.models import OutboxRow
from gateway.dual.mirror import MAX_METRICS, Coalesced, plan
from gateway.dual.outbox import MAX_BACKOFF_SECONDS, MAX_OUTAGE_BACKOFF_SECONDS, after_failure
from gateway.stores.client import Refused, Transient

_ids = iter(range(1, 10_000))


def entry(route: str, **request: Any) -> OutboxRow:
    return OutboxRow(
        id=next(_ids), workspace_id=7, order_key="7/run:r1", route=route, payload={"request": request}, attempts=0
    )


def metric(step: int, run_id: str = "r1") -> OutboxRow:
    return entry("POST /mlflow/runs/log-metric", run_id=run_id, key="loss", value=step, timestamp=step, step=step)


def describe(steps: list[Coalesced | OutboxRow]) -> list[Any]:
    return [("batch", s.run_id, s.rows) if isinstance(s, Coalesced) else s.route for s in steps]


def test_entries_are_applied_in_their_order_with_consecutive_run_writes_coalesced() -> None:
    rows = [
        entry("POST /mlflow/runs/create", experiment_id="1"),
        metric(0),
        entry("POST /mlflow/runs/log-parameter", run_id="r1", key="lr", value="0.1"),
        entry("POST /mlflow/runs/set-tag", run_id="r1", key="phase", value="a"),
        entry("POST /mlflow/runs/update", run_id="r1", status="FINISHED"),  # not coalesced: ends the batch
        metric(1),
        entry("POST /mlflow/runs/set-tag", run_uuid="r1", key="phase", value="b"),
    ]
    steps = plan(rows)
    assert describe(steps) == [
        "POST /mlflow/runs/create",
        ("batch", "r1", 3),
        "POST /mlflow/runs/update",
        ("batch", "r1", 2),
    ]
    # No write overtakes another: a later metric never reaches the central store before an earlier update.
    last = steps[3]
    assert isinstance(last, Coalesced)
    body = last.batch.body("central-r1")
    assert body["metrics"][0]["step"] == 1 and body["tags"] == [{"key": "phase", "value": "b"}]


def test_writes_of_another_run_start_a_batch_of_their_own() -> None:
    assert describe(plan([metric(0), metric(1, "r2"), metric(2)])) == [
        ("batch", "r1", 1),
        ("batch", "r2", 1),
        ("batch", "r1", 1),
    ]


def test_a_batch_that_would_pass_mlflows_limits_is_split_at_an_entry() -> None:
    points = [{"key": "m", "value": i, "timestamp": i, "step": i} for i in range(MAX_METRICS // 2 + 1)]
    rows = [entry("POST /mlflow/runs/log-batch", run_id="r1", metrics=points) for _ in range(3)]
    steps = plan(rows)
    assert describe(steps) == [("batch", "r1", 1)] * 3
    # Every step covers whole entries: what a failed step leaves is retried from its first entry.
    assert sum(s.rows if isinstance(s, Coalesced) else 1 for s in steps) == len(rows)


def test_an_empty_group_plans_nothing() -> None:
    assert plan([]) == []


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_an_unreachable_central_store_is_waited_out_and_probed_often(jitter: float) -> None:
    attempts, refusals = 0, 0
    for _ in range(50):
        retry = after_failure(attempts, refusals, Transient("central store down"), max_refusals=5, jitter=jitter)
        assert retry.state == "pending"  # however long the outage, the entry is never given up
        assert retry.delay <= MAX_OUTAGE_BACKOFF_SECONDS * 1.5
        attempts, refusals = retry.attempts, retry.refusals
    assert (attempts, refusals) == (50, 0)


def test_back_off_grows_with_attempts_and_is_spread_by_jitter() -> None:
    delays = [after_failure(n, 0, Refused("no"), max_refusals=100, jitter=0.5).delay for n in range(8)]
    assert delays == sorted(delays) and delays[0] == 1.0 and delays[-1] == MAX_BACKOFF_SECONDS
    low = after_failure(1, 0, Refused("no"), max_refusals=100, jitter=0.0).delay
    high = after_failure(1, 0, Refused("no"), max_refusals=100, jitter=0.999).delay
    assert low == 1.0 and 2.99 < high < 3.0


def test_a_refused_entry_becomes_a_dead_letter_after_max_refusals() -> None:
    retry = after_failure(0, 0, Refused("bad request", status=400), max_refusals=3, jitter=0)
    assert (retry.attempts, retry.refusals, retry.state) == (1, 1, "pending")
    retry = after_failure(retry.attempts, retry.refusals, Transient("down"), max_refusals=3, jitter=0)
    assert (retry.attempts, retry.refusals, retry.state) == (2, 1, "pending")  # outages do not count
    retry = after_failure(retry.attempts, retry.refusals, Refused("bad request"), max_refusals=3, jitter=0)
    assert retry.state == "pending"
    retry = after_failure(retry.attempts, retry.refusals, Refused("bad request"), max_refusals=3, jitter=0)
    assert (retry.attempts, retry.refusals, retry.state) == (4, 3, "dead")
