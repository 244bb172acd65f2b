"""The store client: how every answer (or its absence) reaches a caller, and paging through searches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest

from gateway.core.links import WorkspaceLink
from gateway.core.ports import Body, StoreTimedOut, StoreUnreachable
from gateway.stores.client import Refused, StoreClient, Transient, central_store, id_order, own_store


class FakeResponse:
    def __init__(self, status: int, body: bytes, *, drop: bool = False) -> None:
        self.status = status
        self.headers = {"Content-Type": "application/json"}
        self.content_length: int | None = len(body)
        self._body = body
        self._drop = drop
        self.released = False

    async def read(self) -> bytes:
        self.released = True
        if self._drop:
            raise StoreUnreachable("connection reset while reading")
        return self._body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        self.released = True
        yield self._body

    def release(self) -> None:
        self.released = True


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    workspace: str | None
    idempotent: bool


Handler = Callable[[Sent], FakeResponse]


@dataclass
class FakeStore:
    """An in-memory store behind the `Store` port: answers by (method, path), records every call."""

    handlers: dict[tuple[str, str], Handler] = field(default_factory=dict)
    name: str = "fake"
    workspaces_enabled: bool = True
    sent: list[Sent] = field(default_factory=list)
    fail: type[Exception] | None = None  # raised instead of answering
    hang: bool = False

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        body: Body = None,
        workspace: str | None = None,
        idempotent: bool = False,
    ) -> FakeResponse:
        decoded = json.loads(body) if isinstance(body, bytes) and body[:1] == b"{" else body
        call = Sent(method, path, dict(parse_qsl(query)), dict(headers), decoded, workspace, idempotent)
        self.sent.append(call)
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail is not None:
            raise self.fail(f"{self.name} failed")
        handler = self.handlers.get((method, path))
        if handler is None:
            return answer(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No route {path}"})
        return handler(call)

    async def close(self) -> None:
        return None


def answer(status: int, document: Any = None, raw: bytes | None = None, *, drop: bool = False) -> FakeResponse:
    return FakeResponse(status, raw if raw is not None else json.dumps(document or {}).encode(), drop=drop)


def replying(response: FakeResponse) -> Handler:
    return lambda _call: response


PATH = "/api/2.0/mlflow/runs/get"


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        (200, b'{"run": {"info": {"run_id": "r1"}}}', {"run": {"info": {"run_id": "r1"}}}),
        (200, b"", {}),  # a 2xx without a JSON object reads as an empty one
        (204, b"", {}),
        (200, b"[1, 2]", {}),
    ],
)
async def test_a_2xx_answer_is_its_json_object(status: int, raw: bytes, expected: dict[str, Any]) -> None:
    store = FakeStore({("GET", PATH): replying(answer(status, raw=raw))})
    assert await StoreClient(store).get(PATH, {"run_id": "r1"}) == expected


@pytest.mark.parametrize("status", [400, 403, 404, 409])
async def test_a_4xx_answer_is_refused_with_the_stores_error_code_and_message(status: int) -> None:
    error = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run with id=r1 not found"}
    store = FakeStore({("GET", PATH): replying(answer(status, error))})
    with pytest.raises(Refused) as refused:
        await StoreClient(store, label="workspace store").get(PATH, {"run_id": "r1"})
    assert refused.value.status == status
    assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert refused.value.message == "Run with id=r1 not found"
    described = f"workspace store refused ({status}): RESOURCE_DOES_NOT_EXIST: Run with id=r1 not found"
    assert str(refused.value) == described
    assert not refused.value.already_exists


async def test_a_refusal_without_an_mlflow_error_body_keeps_the_text() -> None:
    store = FakeStore({("POST", PATH): replying(answer(401, raw=b"<html>Unauthorized</html>"))})
    with pytest.raises(Refused) as refused:
        await StoreClient(store).post(PATH, {})
    assert (refused.value.status, refused.value.error_code) == (401, "")
    assert refused.value.message == "<html>Unauthorized</html>"
    assert "store fake refused (401)" in str(refused.value)


async def test_already_exists_is_recognised_by_its_error_code() -> None:
    exists = {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Experiment 'x' already exists."}
    store = FakeStore({("POST", PATH): replying(answer(400, exists))})
    with pytest.raises(Refused) as refused:
        await StoreClient(store).post(PATH, {"name": "x"})
    assert refused.value.already_exists


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_5xx_and_429_are_transient_with_their_status(status: int) -> None:
    store = FakeStore({("GET", PATH): replying(answer(status, raw=b"upstream busy"))})
    with pytest.raises(Transient) as transient:
        await StoreClient(store, label="central store").get(PATH)
    assert transient.value.status == status
    assert str(transient.value).startswith(f"central store answered {status}: b'upstream busy'")


@pytest.mark.parametrize("failure", [StoreUnreachable, StoreTimedOut])
async def test_no_answer_is_transient_without_a_status(failure: type[Exception]) -> None:
    store = FakeStore(fail=failure)
    for call in (StoreClient(store).get(PATH), StoreClient(store).send("GET", PATH), StoreClient(store).ping()):
        with pytest.raises(Transient) as transient:
            await call
        assert transient.value.status is None and isinstance(transient.value.__cause__, failure)


async def test_an_answer_dropped_while_read_is_transient() -> None:
    store = FakeStore({("GET", PATH): replying(answer(200, raw=b'{"run": {}}', drop=True))})
    with pytest.raises(Transient, match="dropped its answer"):
        await StoreClient(store).get(PATH)


async def test_a_call_over_the_clients_time_budget_is_transient() -> None:
    store = FakeStore(hang=True)
    with pytest.raises(Transient, match=r"did not answer within 0\.05 s") as transient:
        await StoreClient(store, timeout_seconds=0.05).get(PATH)
    assert isinstance(transient.value.__cause__, TimeoutError)


async def test_a_2xx_body_that_is_not_json_raises_value_error() -> None:
    store = FakeStore({("GET", PATH): replying(answer(200, raw=b"{not json"))})
    with pytest.raises(ValueError):
        await StoreClient(store).get(PATH)


async def test_send_and_fetch_hand_back_any_status_unmapped() -> None:
    missing = answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
    store = FakeStore({("GET", PATH): replying(missing), ("GET", "/health"): replying(answer(503))})
    response = await StoreClient(store).send("GET", PATH)
    assert response.status == 404 and not missing.released  # unread: the caller reads or releases it
    status, body = await StoreClient(store).fetch("GET", PATH)
    assert status == 404 and json.loads(body) == {"error_code": "RESOURCE_DOES_NOT_EXIST"}
    assert await StoreClient(store).ping() == 503  # a health check's status is its answer, not a failure


async def test_calls_carry_the_namespace_json_and_idempotence() -> None:
    store = FakeStore({("GET", PATH): replying(answer(200)), ("POST", PATH): replying(answer(200))})
    client = StoreClient(store, "team-a")
    await client.get(PATH, {"run_id": "r 1"})
    await client.post(PATH, {"run_id": "r1"})
    await client.post(PATH, {"run_id": "r1"}, idempotent=True)
    get, post, repeatable = store.sent
    assert get.query == {"run_id": "r 1"} and get.body is None and get.idempotent and get.workspace == "team-a"
    assert post.body == {"run_id": "r1"} and post.headers == {"content-type": "application/json"}
    assert not post.idempotent and repeatable.idempotent


async def test_a_streamed_answer_is_decoded_as_a_call_would_be() -> None:
    store = FakeStore({("PUT", "/f"): replying(answer(403, {"error_code": "PERMISSION_DENIED", "message": "no"}))})
    client = StoreClient(store)
    response = await client.send("PUT", "/f", body=b"bytes")
    with pytest.raises(Refused, match="PERMISSION_DENIED: no"):
        await client.document(response)


# -- pages -------------------------------------------------------------------------------------------------------


def paged(items: list[dict[str, Any]], key: str, page_size: int) -> Handler:
    """A search that pages `items` by `page_size`, with opaque tokens, reading its parameters as MLflow does."""

    def handle(call: Sent) -> FakeResponse:
        params = call.query if call.method == "GET" else call.body
        start = int(str(params.get("page_token") or "tok-0").removeprefix("tok-"))
        page: dict[str, Any] = {key: items[start : start + page_size]}
        if start + page_size < len(items):
            page["next_page_token"] = f"tok-{start + page_size}"
        return answer(200, page)

    return handle


async def test_pages_follow_next_page_token_to_the_end_and_resume_from_a_token() -> None:
    runs = [{"info": {"run_id": f"r{i}"}} for i in range(7)]
    store = FakeStore({("POST", "/api/2.0/mlflow/runs/search"): paged(runs, "runs", 3)})
    client = StoreClient(store)
    body = {"experiment_ids": ["1"], "max_results": 3}
    pages = [page async for page in client.pages("POST", "/api/2.0/mlflow/runs/search", body)]
    assert [len(page["runs"]) for page in pages] == [3, 3, 1]
    assert [page.get("next_page_token") for page in pages] == ["tok-3", "tok-6", None]
    assert [sent.body.get("page_token") for sent in store.sent] == [None, "tok-3", "tok-6"]
    assert all(sent.body["experiment_ids"] == ["1"] and sent.idempotent for sent in store.sent)
    # A reader cut short resumes at the token of the last page it finished.
    resumed = [page async for page in client.pages("POST", "/api/2.0/mlflow/runs/search", body, page_token="tok-6")]
    assert resumed == [{"runs": runs[6:]}]


async def test_experiments_are_every_page_in_id_order() -> None:
    ids = ["10", "2", "exp-b", "1", "exp-a", "3"]
    experiments = [{"experiment_id": i} for i in ids]
    store = FakeStore({("POST", "/api/2.0/mlflow/experiments/search"): paged(experiments, "experiments", 4)})
    found = await StoreClient(store).experiments()
    assert [e["experiment_id"] for e in found] == ["1", "2", "3", "10", "exp-a", "exp-b"]
    assert store.sent[0].body == {"max_results": 1000, "view_type": "ALL"}


async def test_metric_history_pages_through_the_query() -> None:
    points = [{"key": "loss", "step": i, "timestamp": i, "value": 1 / (i + 1)} for i in range(5)]
    store = FakeStore({("GET", "/api/2.0/mlflow/metrics/get-history"): paged(points, "metrics", 2)})
    assert await StoreClient(store).metric_history("r1", "loss") == points
    assert [sent.query.get("page_token") for sent in store.sent] == [None, "tok-2", "tok-4"]
    assert store.sent[0].query == {"run_id": "r1", "metric_key": "loss", "max_results": "25000"}


async def test_a_page_the_store_refuses_ends_the_reading_with_the_refusal() -> None:
    calls = 0

    def flaky(call: Sent) -> FakeResponse:
        nonlocal calls
        calls += 1
        return answer(200, {"metrics": [{"step": 0}], "next_page_token": "t"}) if calls == 1 else answer(503)

    store = FakeStore({("GET", "/api/2.0/mlflow/metrics/get-history"): flaky})
    with pytest.raises(Transient):
        await StoreClient(store).metric_history("r1", "loss")


async def test_items_are_every_pages_items_and_a_later_page_refused_is_raised() -> None:
    versions = [{"name": "m", "version": str(i)} for i in range(5)]
    path = "/api/2.0/mlflow/model-versions/search"
    store = FakeStore({("GET", path): paged(versions, "model_versions", 2)})
    found = [v async for v in StoreClient(store).items("GET", path, {"max_results": "2"}, "model_versions")]
    assert found == versions
    assert [sent.query.get("page_token") for sent in store.sent] == [None, "tok-2", "tok-4"]

    def refused_later(call: Sent) -> FakeResponse:
        if "page_token" in call.query:
            return answer(403, {"error_code": "PERMISSION_DENIED", "message": "no"})
        return answer(200, {"model_versions": versions[:1], "next_page_token": "p2"})

    read: list[dict[str, Any]] = []
    store = FakeStore({("GET", path): refused_later})
    with pytest.raises(Refused) as refused:
        async for version in StoreClient(store).items("GET", path, {}, "model_versions"):
            read.append(version)
    assert read == versions[:1] and refused.value.status == 403


def test_id_order_puts_numbers_in_numeric_order_and_other_ids_after() -> None:
    assert sorted(["9", "10", "b", "0", "a"], key=id_order) == ["0", "9", "10", "a", "b"]


def test_a_links_two_stores_are_its_own_namespace_and_its_copies_namespace() -> None:
    stores = {"a": FakeStore(name="a"), "central": FakeStore(name="central")}
    link = WorkspaceLink(
        "team-a", 1, "dual", "a", "a", None, mirror="central", mirror_workspace="team-a", mirror_prefix=""
    )
    own, central = own_store(stores, link), central_store(stores, link)
    assert (own.store, own.workspace, own.label) == (stores["a"], None, "workspace store")
    assert (central.store, central.workspace, central.label) == (stores["central"], "team-a", "central store")
    with pytest.raises(ValueError, match="not linked in dual mode"):
        central_store(stores, WorkspaceLink("team-b", 2, "workspace", "a", "a", "team-b"))
