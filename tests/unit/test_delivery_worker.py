"""The shared delivery loop (gateway/delivery/) on a real (embedded) PostgreSQL and a real HTTP receiver on
loopback: replicas claiming at once send each delivery once; a refused attempt is tried again until it is
accepted or `max_attempts` are spent; a pointless one fails at once; a signed POST carries Databricks'
signature of exactly the bytes sent and follows no redirect; a URL off the allow-list gets nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.destinations import AllowList
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.models import RegistryWebhookDeliveryRow, SqlAlertDeliveryRow
from gateway.delivery import DELIVERY_HEADER, SIGNATURE_HEADER, DeliveryWorker, Outcome, Pacing, send_webhook
from tests.databases import sql


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    attempts: int
    event: str
    payload: bytes


@pytest.fixture
def pool_size() -> int:
    return 12  # claimers side by side


async def queue(database: str, count: int) -> None:
    for index in range(count):
        await sql(
            database,
            "INSERT INTO registry_webhook_deliveries (webhook_id, workspace_id, event, payload) "
            "VALUES ('w', 1, $1, $2)",
            f"E{index}",
            f'{{"n": {index}}}'.encode(),
        )


def worker(engine: AsyncEngine, send: Any, *, max_attempts: int = 3) -> DeliveryWorker[Item]:
    def read(row: Mapping[str, Any]) -> Item:
        return Item(**row)

    pacing = Pacing(poll_seconds=1, retry_seconds=0, max_attempts=max_attempts, timeout_seconds=5, batch=4)
    return DeliveryWorker(
        "test deliveries",
        make_sessionmaker(engine),
        RegistryWebhookDeliveryRow,
        ("event", "payload"),
        read,
        send,
        pacing,
        log_as={"event": "event"},
    )


async def states(database: str) -> list[tuple[str, str, int, str | None]]:
    rows = await sql(database, "SELECT event, state, attempts, last_error FROM registry_webhook_deliveries ORDER BY id")
    return [(row["event"], row["state"], row["attempts"], row["last_error"]) for row in rows]


async def test_replicas_claiming_at_once_send_each_delivery_once(engine: AsyncEngine, database: str) -> None:
    await queue(database, 20)
    sent: list[str] = []

    async def send(item: Item) -> Outcome:
        sent.append(item.event)
        await asyncio.sleep(0)
        return Outcome.delivered(200)

    replicas = [worker(engine, send) for _ in range(5)]
    while sum(await asyncio.gather(*(replica.deliver_due() for replica in replicas))):
        pass
    assert sorted(sent) == sorted(f"E{index}" for index in range(20))
    assert await states(database) == [(f"E{index}", "delivered", 1, None) for index in range(20)]


async def test_a_refused_attempt_is_retried_until_accepted_or_spent(engine: AsyncEngine, database: str) -> None:
    await queue(database, 3)
    answers = {"E0": [503, 200], "E1": [500, 500, 500, 500], "E2": [200]}

    async def send(item: Item) -> Outcome:
        status = answers[item.event].pop(0)
        return Outcome.delivered(status) if status == 200 else Outcome.retry(status, f"answered {status}")

    one = worker(engine, send, max_attempts=3)
    while await one.deliver_due():
        pass
    assert await states(database) == [
        ("E0", "delivered", 2, None),
        ("E1", "failed", 3, "answered 500"),
        ("E2", "delivered", 1, None),
    ]
    assert answers["E1"] == [500]  # three attempts, not four


async def test_a_pointless_attempt_fails_at_once(engine: AsyncEngine, database: str) -> None:
    await queue(database, 1)

    async def send(item: Item) -> Outcome:
        return Outcome.dropped("the webhook was deleted or is not active")

    one = worker(engine, send, max_attempts=8)
    while await one.deliver_due():
        pass
    assert await states(database) == [("E0", "failed", 1, "the webhook was deleted or is not active")]


async def test_an_attempt_that_raises_counts_as_failed_and_ends_after_max_attempts(
    engine: AsyncEngine, database: str
) -> None:
    """A `send` that raises (a message Python cannot build, say) is an attempt that failed, recorded with the
    exception's class only: before, the exception left the loop, the delivery was never recorded and was claimed
    again at every lease, for ever, and the others claimed with it were sent regardless."""
    await queue(database, 2)
    secret_words = "value-that-must-not-be-recorded"

    async def send(item: Item) -> Outcome:
        if item.event == "E0":
            raise ValueError(secret_words)
        return Outcome.delivered(200)

    one = worker(engine, send, max_attempts=3)
    while await one.deliver_due():
        pass
    assert await states(database) == [
        ("E0", "failed", 3, "the attempt failed unexpectedly (ValueError)"),
        ("E1", "delivered", 1, None),
    ]


async def test_a_claim_holds_a_delivery_for_its_lease(engine: AsyncEngine, database: str) -> None:
    """A process that claimed and died leaves the delivery alone until the lease has passed."""
    await queue(database, 1)
    seen: list[int] = []

    async def never(item: Item) -> Outcome:
        raise AssertionError("claimed twice")

    async def record(item: Item) -> Outcome:
        seen.append(item.attempts)
        return Outcome.delivered(204)

    lost = worker(engine, never)
    async with make_sessionmaker(engine)() as session, session.begin():
        claimed = (await session.execute(lost._claim())).all()
    assert len(claimed) == 1
    assert await worker(engine, never).deliver_due() == 0
    await sql(database, "UPDATE registry_webhook_deliveries SET next_attempt_at = now() - interval '1 second'")
    assert await worker(engine, record).deliver_due() == 1
    assert seen == [2]
    assert await states(database) == [("E0", "delivered", 2, None)]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    got: list[tuple[str, dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        got.append((request.path, dict(request.headers), await request.read()))
        if request.path.endswith("/moved"):
            raise web.HTTPFound("/allowed/elsewhere")
        if request.path.endswith("/busy"):
            return web.Response(status=503, text="busy")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", got
    await runner.cleanup()


async def test_a_webhook_is_signed_sent_to_allowed_urls_only_and_not_redirected(
    receiver: tuple[str, list[tuple[str, dict[str, str], bytes]]],
) -> None:
    base, got = receiver
    allowed = AllowList([f"{base}/allowed"])
    body = b'{"event":"COMMENT_CREATED","text":"hello"}'

    outcome = await send_webhook(allowed, f"{base}/allowed/hook", body, "17", 5.0, secret="s3cret", agent="t")
    assert outcome == Outcome.delivered(200)
    path, headers, sent = got[-1]
    assert (path, sent, headers[DELIVERY_HEADER]) == ("/allowed/hook", body, "17")
    assert headers[SIGNATURE_HEADER] == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()

    assert await send_webhook(allowed, f"{base}/allowed/plain", body, "18", 5.0, secret=None) == Outcome.delivered(200)
    assert SIGNATURE_HEADER not in got[-1][1]

    assert await send_webhook(allowed, f"{base}/allowed/busy", body, "19", 5.0, secret="s") == Outcome.retry(
        503, "answered 503"
    )
    assert await send_webhook(allowed, f"{base}/allowed/moved", body, "20", 5.0, secret="s") == Outcome.retry(
        302, "answered 302"
    )
    assert [path for path, _, _ in got] == ["/allowed/hook", "/allowed/plain", "/allowed/busy", "/allowed/moved"]

    before = len(got)
    off_list = await send_webhook(allowed, f"{base}/elsewhere", body, "21", 5.0, secret="s")
    assert off_list.final and off_list.error == "the URL is no longer an allowed destination"
    unchecked = await send_webhook(allowed, "http://user@127.0.0.1/allowed", body, "22", 5.0, secret="s")
    assert unchecked.final and unchecked.error == "the URL is not one this gateway can check"
    assert len(got) == before


# -- retention ---------------------------------------------------------------------------------------

# Each table's own columns besides the delivery loop's (registry webhooks, SQL alerts).
OWN_COLUMNS = {
    "registry_webhook_deliveries": ("webhook_id, workspace_id, event, payload", "'w', 1, $1, ''"),
    "sql_alert_deliveries": (
        "alert_id, evaluation_id, kind, destination, payload",
        "'a', 1, 'webhook', 'http://127.0.0.1/allowed/' || $1, ''",
    ),
}
ROWS = {"registry_webhook_deliveries": RegistryWebhookDeliveryRow, "sql_alert_deliveries": SqlAlertDeliveryRow}
OLD_DELIVERED = 2_500


async def seed(database: str, table: str, name: str, state: str, created: str, last: str, count: int = 1) -> None:
    """`count` deliveries named `name` (the event, or the URL's end) in `state`, made `created` ago and last tried
    (their next attempt, for pending ones) at now() minus `last`."""
    columns, values = OWN_COLUMNS[table]
    await sql(
        database,
        f"INSERT INTO {table} ({columns}, state, attempts, created_at, next_attempt_at, delivered_at) "
        f"SELECT {values}, $2::text, CASE WHEN $2::text = 'pending' THEN 0 ELSE 3 END, now() - $3::text::interval, "
        "now() - $4::text::interval, CASE WHEN $2::text = 'delivered' THEN now() - $4::text::interval END "
        "FROM generate_series(1, $5)",
        name,
        state,
        created,
        last,
        count,
    )


async def left(database: str, table: str) -> dict[str, int]:
    column = "event" if table == "registry_webhook_deliveries" else "substr(destination, 26)"
    rows = await sql(database, f"SELECT {column} AS name, count(*) AS n FROM {table} GROUP BY 1")
    return {row["name"]: row["n"] for row in rows}


def keeper(engine: AsyncEngine, table: str, send: Any = None) -> DeliveryWorker[Any]:
    async def delivered(item: Any) -> Outcome:
        return Outcome.delivered(200)

    return DeliveryWorker(
        f"{table} retention",
        make_sessionmaker(engine),
        ROWS[table],
        (),
        lambda row: Item(event="", payload=b"", **row),
        send or delivered,
        # A refused attempt is tried again only after ten minutes: within a test, once.
        Pacing(poll_seconds=1, retry_seconds=600, max_attempts=3, timeout_seconds=5),
        keep_days=30,
    )


@pytest.mark.parametrize("table", sorted(OWN_COLUMNS))
async def test_replicas_pruning_at_once_delete_old_settled_deliveries_once_and_keep_the_rest(
    database: str, table: str
) -> None:
    await seed(database, table, "old-delivered", "delivered", "40 days", "40 days", OLD_DELIVERED)
    await seed(database, table, "old-failed", "failed", "45 days", "39 days")
    await seed(database, table, "failed-lately", "failed", "40 days", "29 days")  # retried long, failed of late
    await seed(database, table, "delivered-lately", "delivered", "2 days", "2 days")
    await seed(database, table, "never-sent", "pending", "40 days", "40 days")  # due since, no process ran
    await seed(database, table, "retrying", "pending", "40 days", "-1 hour")
    kept = {"failed-lately": 1, "delivered-lately": 1, "never-sent": 1, "retrying": 1}

    engines = [make_engine(database, pool_size=2) for _ in range(4)]  # four replicas, each its own pool
    try:
        replicas = [keeper(engine, table) for engine in engines]
        pruned = await asyncio.gather(*(replica.prune(batch=100) for replica in replicas for _ in range(2)))
        assert sum(pruned) == OLD_DELIVERED + 1  # each old settled row deleted once, by one of them
        assert await left(database, table) == kept
        assert await asyncio.gather(*(replica.prune() for replica in replicas)) == [0, 0, 0, 0]

        # The long-due pending one is sent now: its last attempt is recent, so it stays.
        assert await replicas[0].deliver_due() == 1
        assert await replicas[1].prune() == 0
        assert await left(database, table) == kept
    finally:
        for engine in engines:
            await engine.dispose()


async def test_the_delivery_loop_prunes_when_it_starts(engine: AsyncEngine, database: str) -> None:
    table = "registry_webhook_deliveries"
    await seed(database, table, "old-delivered", "delivered", "40 days", "40 days", 3)
    await seed(database, table, "never-sent", "pending", "40 days", "40 days")

    async def send(item: Item) -> Outcome:
        return Outcome.retry(503, "answered 503")

    loop = keeper(engine, table, send)
    loop.start()
    try:
        for _ in range(300):  # until the loop has pruned and recorded its attempt
            if len(await left(database, table)) == 1 and (await states(database))[0][3] is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        await loop.stop()
    assert await left(database, table) == {"never-sent": 1}
    assert await states(database) == [("never-sent", "pending", 1, "answered 503")]
