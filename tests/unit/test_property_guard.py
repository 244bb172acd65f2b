"""The property guard (gateway/properties/guard.py): a run's properties are add-only through every route.

Which routes can touch a run tag is read from MLflow's own request messages, not from a list kept by hand.
The guard's decisions run against an in-test store (a dict of runs' tags, what runs/get answers) and the
session's real PostgreSQL for its per-run lock: two replicas (two engines) racing to set one property to
different values let exactly one through, and the value never changes after.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from gateway.client import encoding
from gateway.core.errors import GatewayError, InvalidParameter, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.reserved import folded
from gateway.core.route_table import (
    FORWARDED_ROUTES,
    RUNS_CREATE,
    RUNS_DELETE_TAG,
    RUNS_LOG_BATCH,
    RUNS_SET_TAG,
    RouteSpec,
)
from gateway.db.engine import async_url
from gateway.federation.canonical import canonical_body
from gateway.federation.hooks import PendingCall
from gateway.properties.guard import PROPERTY_TAG, PropertyGuard

LINK = WorkspaceLink("team-a", 1001, "workspace", "a", "a", None)
ALICE = Principal("alice@example.com", "user")
RUN = "a" * 32
OTHER = "b" * 32


def test_the_routes_that_can_touch_a_run_tag_are_read_from_mlflow_itself() -> None:
    """Every MLflow request message that names run tags by key (SetTag, DeleteTag, a `tags` field of RunTag),
    but the one that creates the run, is a route of the guard, and no other route is."""
    from mlflow.server.handlers import get_endpoints

    carrying: set[tuple[str, str, int]] = set()
    for path, message, methods in get_endpoints(get_handler=lambda request_class: request_class):
        descriptor = getattr(message, "DESCRIPTOR", None)
        if descriptor is None or not path.startswith("/api/"):
            continue
        by_key = descriptor.full_name in ("mlflow.SetTag", "mlflow.DeleteTag")
        tagged = any(
            f.name == "tags" and f.message_type is not None and f.message_type.full_name == "mlflow.RunTag"
            for f in descriptor.fields
        )
        if by_key or tagged:
            version = int(path.split("/")[2].split(".")[0])
            carrying.update((method, path.split(".0", 1)[1], version) for method in methods)
    guarded = {(s.method, s.path, s.version) for s in FORWARDED_ROUTES if s.run_tags}
    assert guarded == {(s.method, s.path, s.version) for s in (RUNS_SET_TAG, RUNS_DELETE_TAG, RUNS_LOG_BATCH)}
    assert carrying == guarded | {(RUNS_CREATE.method, RUNS_CREATE.path, RUNS_CREATE.version)}


def test_the_gateway_and_the_client_name_properties_alike() -> None:
    assert PROPERTY_TAG == encoding.PROPERTY_TAG
    for variant in (
        "FEDGATE.PROPERTY.data",
        "fedgate.property.Data  ",
        "fedgate.propérty.data",
        "\uff26\uff25\uff24\uff27\uff21\uff34\uff25.property.data",  # fullwidth letters,
        " fedgate.property.data",
        "fedgate.property.data\n",  # MLflow's key check takes a last newline
    ):
        assert folded(variant).startswith(PROPERTY_TAG)
    assert folded("fedgate.property.Daté ") == folded("fedgate.property.date") == folded(" fedgate.property.date\n")


# -- decisions ---------------------------------------------------------------------------------------------


class Store:
    """The runs' tags as the workspace's store keeps them; what the guard's runs/get reads."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, str]] = {RUN: {}, OTHER: {}}
        self.reads = 0
        self.status = 200

    async def fetch(self, link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        assert path == "/api/2.0/mlflow/runs/get"
        self.reads += 1
        run_id = parse_qs(query)["run_id"][0]
        if self.status != 200:
            return self.status, b'{"error_code": "INTERNAL_ERROR"}'
        if run_id not in self.tags:
            return 404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}'
        tags = [{"key": k, "value": v} for k, v in self.tags[run_id].items()]
        return 200, json.dumps({"run": {"info": {"run_id": run_id}, "data": {"tags": tags}}}).encode()

    def apply(self, spec: RouteSpec, body: dict[str, Any]) -> None:
        run_id = body.get("run_id") or body.get("run_uuid")
        if spec == RUNS_SET_TAG:
            self.tags[run_id][body["key"]] = body.get("value") or ""
        elif spec == RUNS_DELETE_TAG:
            self.tags[run_id].pop(body["key"], None)
        else:
            for tag in body.get("tags", []):
                self.tags[run_id][tag["key"]] = tag.get("value") or ""


class Audit:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, item: dict[str, Any]) -> None:
        self.entries.append(item)


@pytest.fixture
async def sessionmakers(database_url: str) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], ...]]:
    """Two replicas' engines on the session's PostgreSQL (the lock needs no table)."""
    engines = [create_async_engine(async_url(database_url), pool_size=4, max_overflow=0) for _ in range(2)]
    yield tuple(async_sessionmaker(engine, expire_on_commit=False) for engine in engines)
    for engine in engines:
        await engine.dispose()


def pending(spec: RouteSpec, body: dict[str, Any]) -> PendingCall:
    return PendingCall(spec, LINK, ALICE, canonical_body(json.dumps(body).encode()), "req-1")


async def write(guard: PropertyGuard, store: Store, spec: RouteSpec, body: dict[str, Any], pause: float = 0) -> None:
    """What the forwarder does: check, send (the store applies it), then let go of what the check holds."""
    held = await guard.check(pending(spec, body))
    try:
        await asyncio.sleep(pause)
        store.apply(spec, body)
    finally:
        if held is not None:
            await held.release()


def set_tag(key: str, value: Any, run: str = RUN) -> dict[str, Any]:
    return {"run_id": run, "key": key, "value": value}


def batch(*tags: tuple[str, Any], run: str = RUN) -> dict[str, Any]:
    return {"run_id": run, "tags": [{"key": k, "value": v} for k, v in tags]}


async def test_a_property_is_set_once_then_only_to_the_same_value(
    sessionmakers: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    store, audit = Store(), Audit()
    guard = PropertyGuard(store.fetch, sessionmakers[0], audit)  # type: ignore[arg-type]
    data = "fedgate.property.data_version"
    await write(guard, store, RUNS_SET_TAG, set_tag(data, "2024-05"))
    await write(guard, store, RUNS_SET_TAG, set_tag(data, "2024-05"))  # idempotent
    await write(guard, store, RUNS_LOG_BATCH, batch(("team", "a"), (data, "2024-05"), ("fedgate.property.owner", "a")))
    assert store.tags[RUN] == {data: "2024-05", "team": "a", "fedgate.property.owner": "a"}

    refusals = [
        (
            RUNS_SET_TAG,
            set_tag(data, "2024-06"),
            "Changing property values is not allowed. Property with "
            f"key='{data}' was already set with value='2024-05' for run ID='{RUN}'. Attempted new value '2024-06'.",
        ),
        (RUNS_LOG_BATCH, batch(("team", "b"), (data, "")), "Changing property values is not allowed"),
        (RUNS_SET_TAG, set_tag(data, None), "Attempted new value ''"),
        (RUNS_SET_TAG, set_tag("FEDGATE.Property.DATA_VERSION ", "x"), "key='fedgate.property.data_version'"),
        (RUNS_SET_TAG, set_tag("fedgate.property.dáta_version", "x"), "Changing property values"),
        (RUNS_SET_TAG, {"run_uuid": RUN, "key": data, "value": "x"}, "Changing property values"),
        (RUNS_DELETE_TAG, {"run_id": RUN, "key": data}, "Deleting properties is not allowed"),
        (RUNS_DELETE_TAG, {"run_id": RUN, "key": "fedgate.property.never-set"}, "Deleting properties is not allowed"),
        (RUNS_SET_TAG, set_tag("fedgate.property.n", 5), "takes a string value, not a number"),
        (RUNS_LOG_BATCH, batch(("fedgate.property.n", "1"), ("fedgate.property.N", "2")), "set twice in one call"),
    ]
    for spec, body, message in refusals:
        with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(".", r"\.")):
            await write(guard, store, spec, body)
    assert store.tags[RUN] == {data: "2024-05", "team": "a", "fedgate.property.owner": "a"}
    refused = [(e["action"], e["outcome"], e["details"]["attempt"]) for e in audit.entries]
    assert (
        refused[0] == ("runs.property_refused", "denied", "change")
        and ("runs.property_refused", "denied", "delete") in refused
    )
    assert all("2024-06" not in json.dumps(e) for e in audit.entries)  # the audit names the key, not the values

    # Writes without properties are not read from the store; a property of another run is that run's.
    reads = store.reads
    await write(guard, store, RUNS_LOG_BATCH, batch(("team", "c"), ("mlflow.note.content", "x")))
    await write(guard, store, RUNS_DELETE_TAG, {"run_id": RUN, "key": "team"})
    assert store.reads == reads
    await write(guard, store, RUNS_SET_TAG, set_tag(data, "2025-01", run=OTHER))
    assert store.tags[OTHER] == {data: "2025-01"}


async def test_a_store_that_does_not_answer_refuses_the_write_and_a_missing_run_is_the_stores_to_say(
    sessionmakers: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    store = Store()
    guard = PropertyGuard(store.fetch, sessionmakers[0])  # type: ignore[arg-type]
    held = await guard.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.p", "v", run="c" * 32)))
    assert held is not None  # not in the store: forwarded, and the store answers 404
    await held.release()
    store.status = 500
    with pytest.raises(StoreUnavailable, match="could not be read from the store"):
        await guard.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.p", "v")))


async def test_racing_first_writes_of_one_property_let_exactly_one_value_in(
    sessionmakers: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    """Two replicas set the same new property to different values at once, ten times over."""
    store = Store()
    replicas = [PropertyGuard(store.fetch, s, lock_wait=10) for s in sessionmakers]  # type: ignore[arg-type]
    for round_ in range(10):
        key = f"fedgate.property.race-{round_}"
        outcomes = await asyncio.gather(
            write(replicas[0], store, RUNS_SET_TAG, set_tag(key, "one"), pause=0.05),
            write(replicas[1], store, RUNS_LOG_BATCH, batch((key, "two")), pause=0.05),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, InvalidParameter)]
        assert len(refused) == 1 and outcomes.count(None) == 1, outcomes
        winner = "one" if outcomes[0] is None else "two"
        assert store.tags[RUN][key] == winner


async def test_writes_of_different_runs_do_not_wait_for_each_other(
    sessionmakers: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    store = Store()
    guard = PropertyGuard(store.fetch, sessionmakers[0], lock_wait=0.2, slots=2)  # type: ignore[arg-type]
    first = await guard.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.x", "1")))
    second = await guard.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.x", "1", run=OTHER)))
    assert first is not None and second is not None
    # The same run waits (here at most 0.2 s) and is then refused as "try again".
    other = PropertyGuard(store.fetch, sessionmakers[1], lock_wait=0.2)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable, match="still under way"):
        await other.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.x", "1")))
    await first.release()
    await second.release()
    again = await other.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.x", "1")))
    assert again is not None
    await again.release()


async def test_a_worker_holds_at_most_its_slots_and_its_writers_of_one_run_take_turns(
    sessionmakers: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    store = Store()
    guard = PropertyGuard(store.fetch, sessionmakers[0], slots=1, slot_wait=0.2)  # type: ignore[arg-type]
    first = await guard.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.x", "1")))
    assert first is not None
    # Another run finds the worker's one slot taken: 429 with Retry-After, which MLflow's client retries.
    with pytest.raises(GatewayError) as refused:
        await guard.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.x", "1", run=OTHER)))
    assert (refused.value.status, refused.value.error_code) == (429, "REQUEST_LIMIT_EXCEEDED")
    assert refused.value.headers["Retry-After"] == "1"
    # The same run waits for its turn (longer than the slot wait), then reads what the first wrote.
    later = asyncio.create_task(write(guard, store, RUNS_SET_TAG, set_tag("fedgate.property.x", "2")))
    await asyncio.sleep(0.5)
    store.apply(RUNS_SET_TAG, set_tag("fedgate.property.x", "1"))
    await first.release()
    with pytest.raises(InvalidParameter, match="Changing property values"):
        await later
    other = await guard.check(pending(RUNS_SET_TAG, set_tag("fedgate.property.x", "1", run=OTHER)))
    assert other is not None
    await other.release()
