"""Differential: a search the guard narrows reaches the store narrowed, whatever else the request holds.

MLflow's `_get_request_message` parses a request message field by field and, at the first value it cannot parse
(`"view_type": 99`, `"order_by": [1]`, `max_results=+10`), stops and acts on the fields read before. The guard
narrows a search by writing into the request (a filter ANDed with `experiment_id IN (...)`, `experiment_ids` cut to
the readable ones); a value the client put before that field once made the store drop the narrowing, and
`experiments/search` listed every experiment of the workspace.

Here the whole pipeline (canonical body, the real guard with a real policy, the forwarder) forwards to a store
stand-in that records the request; MLflow's own handler code then parses what the store received, as an
`mlflow server` would. The caller may read experiment 1 and nothing else: every request the store receives must
search experiment 1 alone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.errors import GatewayError
from gateway.core.route_table import EXPERIMENTS_SEARCH, EXPERIMENTS_SEARCH_GET, RUNS_SEARCH, RouteSpec, declared
from gateway.core.workspace_headers import WorkspaceHeaders
from gateway.federation.call import ForwardCall
from gateway.federation.service import Forwarder, StoreSender
from tests.unit.test_guard_differential import GUARD, LINK, ORACLE, USER
from tests.unit.test_pipeline import RecordingStore, Runs, links

handlers = pytest.importorskip("mlflow.server.handlers")
service_pb2 = pytest.importorskip("mlflow.protos.service_pb2")

LOGGED_MODELS_SEARCH = declared("POST /mlflow/logged-models/search")
NARROWED = {
    EXPERIMENTS_SEARCH: service_pb2.SearchExperiments,
    EXPERIMENTS_SEARCH_GET: service_pb2.SearchExperiments,
    RUNS_SEARCH: service_pb2.SearchRuns,
    LOGGED_MODELS_SEARCH: service_pb2.SearchLoggedModels,
}
READABLE = {"1"}
LOOP = asyncio.new_event_loop()

# Values of every JSON type, so that some fields get one MLflow cannot parse (a number for a string, an
# unknown enum number, a list of numbers, a fraction for an integer).
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**40),
    st.sampled_from([0.5, 99, -1, "ACTIVE_ONLY", "x", "", " 10", "1e3", "+10"]),
    st.lists(st.sampled_from([1, "name", "1", "2", None, {"field_name": "x"}]), max_size=2),
    st.just({"field_name": 1}),
)


@st.composite
def search_pairs(draw: st.DrawFn, message: Any) -> list[tuple[str, Any]]:
    """Fields of the search's request message in any order, each with a value of any JSON type; sometimes the
    experiments to search (readable, hidden, both) among them."""
    names = [field.name for field in message.DESCRIPTOR.fields if field.name not in ("experiment_ids", "filter")]
    pairs = [(name, draw(JSON_VALUES)) for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True))]
    if draw(st.booleans()):
        pairs.append(("filter", draw(st.sampled_from(["", "name = 'x'", "experiment_id = '2'"]))))
    if "experiment_ids" in message.DESCRIPTOR.fields_by_name:
        pairs.append(("experiment_ids", draw(st.sampled_from([["1"], ["2"], ["1", "2"], ["2", "1"]]))))
    return draw(st.permutations(pairs))


def _as_query(pairs: list[tuple[str, Any]]) -> str:
    flat: list[tuple[str, str]] = []
    for key, value in pairs:
        for item in value if isinstance(value, list) else [value]:
            flat.append((key, item if isinstance(item, str) else json.dumps(item)))
    return urlencode(flat)


def _forwarded(spec: RouteSpec, pairs: list[tuple[str, Any]]) -> tuple[bytes | None, str] | None:
    """What the store received (body, query) for this request through the gateway; None when it was refused or
    answered without asking the store."""
    store = RecordingStore()
    forwarder = Forwarder(links(LINK), Runs({}), GUARD, StoreSender({LINK.store: store}))
    get = spec.method == "GET"
    call = ForwardCall(
        spec=spec,
        principal=USER,
        workspace=WorkspaceHeaders(name=LINK.name),
        path_params={},
        query=_as_query(pairs) if get else "",
        headers=[("content-type", "application/json")],
        body=None if get else json.dumps(dict(pairs)).encode(),
        request_id="req-1",
    )
    try:
        LOOP.run_until_complete(forwarder.forward(call))
    except GatewayError:
        return None
    if not store.sent:
        return None
    sent = store.sent[-1]
    return sent.body, sent.query


def _mlflow_reads(spec: RouteSpec, message: Any, body: bytes | None, query: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    with ORACLE.test_request_context(
        "/x", method=spec.method, data=body or b"", content_type="application/json", query_string=query
    ):
        try:
            return handlers._get_request_message(message())
        except MlflowException:
            return None  # the store refuses it


@pytest.mark.parametrize("spec", list(NARROWED), ids=[f"{s.method} {s.path}" for s in NARROWED])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_store_searches_only_what_the_guard_narrowed_the_search_to(spec: RouteSpec, data: st.DataObject) -> None:
    message = NARROWED[spec]
    pairs = data.draw(search_pairs(message))
    forwarded = _forwarded(spec, pairs)
    if forwarded is None:
        return
    parsed = _mlflow_reads(spec, message, *forwarded)
    if parsed is None:
        return
    if "experiment_ids" in message.DESCRIPTOR.fields_by_name:
        assert set(parsed.experiment_ids) <= READABLE, f"the store searches {list(parsed.experiment_ids)}: {forwarded}"
    else:
        assert "experiment_id IN ('1')" in parsed.filter, f"the store reads filter {parsed.filter!r}: {forwarded}"


@pytest.mark.parametrize(
    "body",
    [
        {"max_results": 10, "view_type": 99},  # an enum number MLflow does not know
        {"max_results": 10, "order_by": [1]},  # a number where MLflow wants text
    ],
)
def test_a_narrowed_search_that_mlflow_would_read_in_part_is_refused(body: dict[str, Any]) -> None:
    """Before: the store received `{..., "view_type": 99, "filter": "experiment_id IN ('1')"}`, stopped parsing
    at `view_type` and listed every experiment of the workspace."""
    assert _forwarded(EXPERIMENTS_SEARCH, list(body.items())) is None
