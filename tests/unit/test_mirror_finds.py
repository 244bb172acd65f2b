"""The dual relay looks for an earlier central copy before it makes one: only a definite not-found means there is
none. A refusal of another kind (a later page of the search refused, a read refused with 403 or 400) or an outage
leaves the entry to be tried again, and no second copy is made. The relay runs on a migrated database (the
session's embedded PostgreSQL); both stores are the store port's in-memory stand-in, which answers by route."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.route_table import EXPERIMENTS_CREATE, MODEL_VERSIONS_CREATE
from gateway.db.models import OutboxRow
from gateway.dual.mirror import Mirror
from gateway.stores.client import Refused, Transient
from tests.unit.test_store_client import FakeResponse, FakeStore, Handler, Sent, answer

WORKSPACE_ID = 41
SEARCH = ("GET", "/api/2.0/mlflow/model-versions/search")
CREATE_VERSION = ("POST", "/api/2.0/mlflow/model-versions/create")
BY_NAME = ("GET", "/api/2.0/mlflow/experiments/get-by-name")
CREATE_EXPERIMENT = ("POST", "/api/2.0/mlflow/experiments/create")


def _link() -> WorkspaceLink:
    return WorkspaceLink(
        "lab", WORKSPACE_ID, "dual", "own", "own", None, mirror="central", mirror_workspace="lab", mirror_prefix=""
    )


def _mirror(sessionmaker: async_sessionmaker[AsyncSession], central: FakeStore) -> Mirror:
    links = LinkTable()
    links.replace([_link()])
    return Mirror(links, {"own": FakeStore(name="own"), "central": central}, sessionmaker)


def _version_row(version: str) -> OutboxRow:
    request = {"name": "forecast", "source": "models:/m-own", "model_id": "m-own"}
    return OutboxRow(
        workspace_id=WORKSPACE_ID,
        order_key=f"{WORKSPACE_ID}/registry",
        route=MODEL_VERSIONS_CREATE.name,
        payload={"request": request, "response": {"model_version": {"version": version}}},
    )


def _later_page(second: int) -> Handler:
    """The search for an earlier copy: a first page of another model's versions, then `second` for the next page."""

    def handle(call: Sent) -> FakeResponse:
        if "page_token" not in call.query:
            other = [{"name": "other-model", "version": "9"}]
            return answer(200, {"model_versions": other, "next_page_token": "p2"})
        return answer(second, {"error_code": "PERMISSION_DENIED" if second < 500 else "", "message": "no"})

    return handle


async def _map_logged_model(database: str) -> None:
    """The version's logged model has its central copy already (so only the version itself is at stake)."""
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            "INSERT INTO id_map (workspace_id, kind, primary_id, central_id, central_artifact_uri) "
            "VALUES ($1, 'logged_model', 'm-own', 'm-central', 'mlflow-artifacts:/1/models/m-central/artifacts')",
            WORKSPACE_ID,
        )
    finally:
        await connection.close()


@pytest.mark.parametrize(("second", "raised"), [(403, Refused), (400, Refused), (503, Transient)])
async def test_a_later_page_of_the_search_for_an_earlier_copy_refused_makes_no_copy(
    database: str, sessionmaker: async_sessionmaker[AsyncSession], second: int, raised: type[Exception]
) -> None:
    await _map_logged_model(database)
    central = FakeStore(name="central")
    central.handlers[SEARCH] = _later_page(second)
    central.handlers[CREATE_VERSION] = lambda _call: answer(200, {"model_version": {"version": "1"}})

    applied = await _mirror(sessionmaker, central).apply([_version_row("3")])

    assert applied.count == 0 and isinstance(applied.error, raised), applied
    searched = [call for call in central.sent if (call.method, call.path) == SEARCH]
    assert [call.query.get("page_token") for call in searched] == [None, "p2"]
    assert [call for call in central.sent if (call.method, call.path) == CREATE_VERSION] == []


async def test_an_earlier_copy_on_a_later_page_is_taken_and_no_search_page_means_none(
    database: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _map_logged_model(database)
    central = FakeStore(name="central")

    def search(call: Sent) -> FakeResponse:
        if "page_token" not in call.query:
            return answer(200, {"model_versions": [{"name": "other-model", "version": "9"}], "next_page_token": "p2"})
        return answer(200, {"model_versions": [{"name": "forecast", "version": "5"}]})

    central.handlers[SEARCH] = search
    central.handlers[CREATE_VERSION] = lambda _call: answer(200, {"model_version": {"version": "6"}})
    mirror = _mirror(sessionmaker, central)

    assert (await mirror.apply([_version_row("3")])).error is None
    assert [call for call in central.sent if (call.method, call.path) == CREATE_VERSION] == []

    central.handlers[SEARCH] = lambda _call: answer(200, {})  # nothing found: the copy is made
    assert (await mirror.apply([_version_row("4")])).error is None
    [created] = [call for call in central.sent if (call.method, call.path) == CREATE_VERSION]
    tags = {tag["key"]: tag["value"] for tag in created.body["tags"]}
    assert tags["fedgate.source_version"] == "4" and created.body["model_id"] == "m-central"


@pytest.mark.parametrize(("status", "raised"), [(403, Refused), (400, Refused), (502, Transient)])
async def test_an_experiment_is_created_only_when_the_central_store_says_it_has_none(
    sessionmaker: async_sessionmaker[AsyncSession], status: int, raised: type[Exception]
) -> None:
    central = FakeStore(name="central")
    central.handlers[BY_NAME] = lambda _call: answer(status, {"error_code": "PERMISSION_DENIED", "message": "no"})
    central.handlers[CREATE_EXPERIMENT] = lambda _call: answer(200, {"experiment_id": "77"})
    row = OutboxRow(
        workspace_id=WORKSPACE_ID,
        order_key=f"{WORKSPACE_ID}/experiment:5",
        route=EXPERIMENTS_CREATE.name,
        payload={"request": {"name": "churn"}, "response": {"experiment_id": "5"}},
    )
    mirror = _mirror(sessionmaker, central)

    applied = await mirror.apply([row])
    assert applied.count == 0 and isinstance(applied.error, raised), applied
    assert [call for call in central.sent if (call.method, call.path) == CREATE_EXPERIMENT] == []

    central.handlers[BY_NAME] = lambda _call: answer(
        404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Could not find experiment with name churn"}
    )
    assert (await mirror.apply([row])).error is None
    [created] = [call for call in central.sent if (call.method, call.path) == CREATE_EXPERIMENT]
    assert created.body["name"] == "churn" and created.workspace == "lab"


async def test_a_provenance_tag_queued_before_the_gateway_refused_it_never_reaches_a_copy(
    database: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # The relay finds an earlier copy by these tags: one a caller set (before the guard refused them) and still
    # queued, mirrored to a copy, made that copy pass for another object's.
    connection = await asyncpg.connect(database)
    try:
        await connection.executemany(
            "INSERT INTO id_map (workspace_id, kind, primary_id, central_id, central_artifact_uri) "
            "VALUES ($1, $2, $3, $4, $5)",
            [(WORKSPACE_ID, "experiment", "5", "77", ""), (WORKSPACE_ID, "run", "r-own", "r-central", "")],
        )
    finally:
        await connection.close()
    central = FakeStore(name="central")
    ok = lambda _call: answer(200, {})  # noqa: E731
    central.handlers[("POST", "/api/2.0/mlflow/experiments/set-experiment-tag")] = ok
    central.handlers[("POST", "/api/2.0/mlflow/runs/log-batch")] = ok
    central.handlers[BY_NAME] = lambda _call: answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "-"})
    central.handlers[CREATE_EXPERIMENT] = lambda _call: answer(200, {"experiment_id": "78"})
    mirror = _mirror(sessionmaker, central)

    def row(route: str, request: dict[str, object], response: dict[str, object] | None = None) -> OutboxRow:
        payload = {"request": request, "response": response or {}}
        return OutboxRow(workspace_id=WORKSPACE_ID, order_key="k", route=route, payload=payload)

    tag = "POST /mlflow/experiments/set-experiment-tag"
    assert (
        await mirror.apply([row(tag, {"experiment_id": "5", "key": "FEDGATE.source_experiment_id", "value": "9"})])
    ).error is None
    set_tag = "POST /mlflow/runs/set-tag"
    tags = [row(set_tag, {"run_id": "r-own", "key": key, "value": "x"}) for key in ("fedgate.source_run_id ", "phase")]
    assert (await mirror.apply(tags)).error is None
    made = {
        "name": "churn",
        "tags": [{"key": "fedgate.source_experiment_id", "value": "9"}, {"key": "team", "value": "a"}],
    }
    assert (await mirror.apply([row(EXPERIMENTS_CREATE.name, made, {"experiment_id": "6"})])).error is None

    sent = [(call.path.rsplit("/", 1)[-1], call.body) for call in central.sent if call.method == "POST"]
    assert [name for name, _ in sent] == ["log-batch", "create"]
    assert sent[0][1]["tags"] == [{"key": "phase", "value": "x"}]
    assert sent[1][1]["tags"] == [
        {"key": "team", "value": "a"},
        {"key": "fedgate.source_experiment_id", "value": "6"},
        {"key": "fedgate.source_workspace", "value": "lab"},
    ]
