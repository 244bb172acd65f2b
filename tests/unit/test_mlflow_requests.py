"""The gateway words its refusals as MLflow would: its copy of MLflow's request checks against the installed package.

`mlflow_checks.py` and `mlflow_requests.binpb` are read off mlflow 3.17.2; the first two tests fail when an
upgrade changes a route's checks or request messages (regenerate with tests/support/mlflow_surface.py:
`request_checks` and `request_descriptors`). The differential property test then runs MLflow's own request
parsing (`_get_request_message` in a Flask request, with each handler's real schema) and
`mlflow_requests.store_refusal` on the same generated requests, for every route: whenever MLflow refuses,
the gateway knows the exact message; whenever MLflow goes ahead or fails with a 500, the gateway claims
no refusal of MLflow's.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.route_table import FORWARDED_ROUTES, RouteSpec
from gateway.federation.canonical import canonical_body
from gateway.federation.mlflow_checks import REQUEST_CHECKS, Check
from gateway.federation.mlflow_requests import DESCRIPTORS, store_refusal
from gateway.federation.schemas import RequestIds
from tests.support.mlflow_surface import request_checks, request_descriptors

pytest.importorskip("mlflow.server")

SPECS = {(spec.method, spec.path, spec.version): spec for spec in FORWARDED_ROUTES}
ROUTES = sorted(REQUEST_CHECKS)


@pytest.fixture(scope="module")
def captured() -> dict[tuple[str, str, int], dict[str, Any]]:
    return request_checks(list(FORWARDED_ROUTES))


def _as_mlflow_names(check: Check) -> str:
    """The name of MLflow's function behind one of the gateway's checks."""
    if isinstance(check, str):
        return f"_assert_{check}"
    if check[0] == "fields_present":
        return f"_assert_{check[1]}_fields_present"
    if check[0] == "int_between" and len(check) > 4:
        return str(check[4])  # a named function of MLflow's
    return "<lambda>"


def test_the_checks_of_every_route_are_mlflows(captured: dict[tuple[str, str, int], dict[str, Any]]) -> None:
    assert sorted(captured) == ROUTES, "routes whose handlers validate their request changed"
    for key, (message, reads_first, schema) in REQUEST_CHECKS.items():
        real = captured[key]
        assert (message, reads_first) == (real["message"], real["reads_first"]), key
        ours = [(name, [_as_mlflow_names(check) for check in checks]) for name, checks in schema]
        theirs = [(name, [function.__name__ for function in functions]) for name, functions in real["schema"].items()]
        assert ours == theirs, key


def test_the_request_descriptors_are_mlflows() -> None:
    from google.protobuf import descriptor_pb2

    names = {message for message, _, _ in REQUEST_CHECKS.values() if message}
    shipped = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    assert shipped == descriptor_pb2.FileDescriptorSet.FromString(request_descriptors(names))


# -- the differential ------------------------------------------------------------------------------------------

SPECIAL_INTS = [0, 1, -1, 5, 99, 100, 101, 500, 501, 1000, 1001, 2500, 2501, 50000, 50001, 200000, 200001, 10**23]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(SPECIAL_INTS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "5", "abc", "true", "FALSE", "1.5", " 7 ", "LOGGED_MODEL_READY", "ACTIVE_ONLY"]),
    st.text(max_size=4),
)
NESTED_KEYS = ["key", "value", "timestamp", "step", "model_id", "run_id", "name", "digest", "x"]
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(NESTED_KEYS), children, max_size=3)
    ),
    max_leaves=6,
)
GARBAGE = [b"", b"not json", b"[1, 2]", b"null", b"5", b'"{}"', b'"x"', b'{"run_id": ', b"\xff\xfe", b"{} {}"]


def _keys(key: tuple[str, str, int]) -> list[str]:
    """Names a request of this route is written with: its checked fields, message fields, ids, aliases, others."""
    from google.protobuf import descriptor_pool

    message, _, schema = REQUEST_CHECKS[key]
    names = [name for name, _ in schema] + list(RequestIds.__struct_fields__) + ["bogus", "foo_id", "runId"]
    if message:
        for field in descriptor_pool.Default().FindMessageTypeByName(message).fields:
            names += [field.name, field.json_name]
    return sorted(set(names))


def _limits(key: tuple[str, str, int]) -> list[int]:
    """The numbers around each inline limit of the route's checks (at_most N: N and N + 1, ...)."""
    found: list[int] = []
    for _, checks in REQUEST_CHECKS[key][2]:
        for check in checks:
            if isinstance(check, tuple) and check[0] in ("at_most", "count_at_most"):
                found += [check[1], check[1] + 1]
            elif isinstance(check, tuple) and check[0] == "int_between":
                found += [check[1] - 1, check[1], check[2], check[2] + 1]
    return found


def _requests(key: tuple[str, str, int]) -> st.SearchStrategy[tuple[bytes | None, str]]:
    checked = [name for name, _ in REQUEST_CHECKS[key][2]]
    keys = st.sampled_from(_keys(key)) | (st.sampled_from(checked) if checked else st.nothing())
    limits = _limits(key)
    if key[0] == "GET":
        texts = st.sampled_from(["", "a", "5", "-3", "abc", "true", "False", "maybe", "0", "1.5"]) | st.text(max_size=3)
        if limits:
            texts |= st.sampled_from([str(limit) for limit in limits])
        return st.lists(st.tuples(keys, texts), max_size=5).map(lambda pairs: (None, urlencode(pairs)))
    values = VALUES | st.sampled_from(limits + [str(limit) for limit in limits]) if limits else VALUES
    objects = st.dictionaries(keys, values, max_size=4).map(lambda d: json.dumps(d).encode())
    strings = objects.map(lambda raw: json.dumps(raw.decode()).encode())  # a JSON string holding a body
    nearly_valid = _nearly_valid(key, values)
    bodies = st.one_of(objects, nearly_valid, nearly_valid, nearly_valid, strings, st.sampled_from(GARBAGE))
    return bodies.map(lambda body: (body, ""))


def _nearly_valid(key: tuple[str, str, int], values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies whose checked fields mostly pass MLflow's checks, one of them perhaps anything: the later checks
    of a schema (limits, entries of lists) are reached only past the earlier ones."""
    limits = _limits(key)
    fields = {}
    for name, checks in REQUEST_CHECKS[key][2]:
        if any(isinstance(c, tuple) and c[0] == "fields_present" for c in checks):
            entry = st.fixed_dictionaries({}, optional={k: st.sampled_from(["a", 1, None, ""]) for k in NESTED_KEYS})
            fields[name] = st.lists(entry, max_size=2)
        elif "array" in checks or "map_key_present" in checks:
            fields[name] = st.lists(st.sampled_from(["a", "1"]), max_size=2)
        elif "intlike" in checks:
            fields[name] = st.sampled_from([5, *limits, *(str(limit) for limit in limits)] if limits else [1, 5, "5"])
        elif "floatlike" in checks:
            fields[name] = st.sampled_from([1.5, 2, "3.5"])
        elif "bool" in checks:
            fields[name] = st.booleans()
        else:
            fields[name] = st.sampled_from(["a", "1"])
    if not fields:
        return st.nothing()
    base = st.fixed_dictionaries({}, optional=fields)
    return st.tuples(base, st.sampled_from(sorted(fields)), values, st.booleans()).map(
        lambda drawn: json.dumps({**drawn[0], drawn[1]: drawn[2]} if drawn[3] else drawn[0]).encode()
    )


def _mlflow_answer(spec: RouteSpec, real: dict[str, Any], body: bytes | None, query: str) -> tuple[str, Any]:
    """What MLflow's own request parsing does with the request: ("refused", message), ("accepted",) or ("crash",)."""
    import mlflow.server
    from google.protobuf import descriptor_pool, message_factory
    from mlflow.exceptions import MlflowException
    from mlflow.server import handlers
    from mlflow.utils.validation import _validate_batch_log_api_req

    path = re.sub(r"\{(\w+):\w+\}", "x", spec.upstream_prefix + spec.path) + (f"?{query}" if query else "")
    context = mlflow.server.app.test_request_context(
        path, method=spec.method, data=body, content_type=None if body is None else "application/json"
    )
    with context:
        try:
            if real["reads_first"]:
                _validate_batch_log_api_req(handlers._get_request_json())
            if real["message"]:
                descriptor = descriptor_pool.Default().FindMessageTypeByName(real["message"])
                handlers._get_request_message(message_factory.GetMessageClass(descriptor)(), schema=real["schema"])
            else:
                handlers._get_validated_flask_request_json(schema=real["schema"])
        except MlflowException as refused:
            assert refused.error_code == "INVALID_PARAMETER_VALUE" and refused.get_http_status_code() == 400
            return ("refused", refused.message)
        except Exception:
            return ("crash", None)
    return ("accepted", None)


@pytest.mark.parametrize("key", ROUTES, ids=[f"{m} {p} v{v}" for m, p, v in ROUTES])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_gateway_knows_every_refusal_of_mlflow_and_claims_no_other(
    captured: dict[tuple[str, str, int], dict[str, Any]], key: tuple[str, str, int], data: st.DataObject
) -> None:
    spec = SPECS[key]
    body, query = data.draw(_requests(key))
    kind, message = _mlflow_answer(spec, captured[key], body, query)
    ours = store_refusal(spec, body, query)
    if kind == "refused":
        assert ours == message, (body, query)
    else:
        assert ours is None, (kind, body, query, ours)


def _valid(checks: tuple[Check, ...]) -> Any:
    """A value that passes `checks` (before their inline limits)."""
    if "array" in checks or "map_key_present" in checks:
        return ["a"]
    if "intlike" in checks:
        return 5
    if "floatlike" in checks:
        return 1.5
    if "bool" in checks:
        return True
    return "a"


def _inline_cases() -> list[tuple[tuple[str, str, int], str, Any]]:
    """(route, field, value): every inline check of every route at and around its limit."""
    cases: list[tuple[tuple[str, str, int], str, Any]] = []
    for key in ROUTES:
        for name, checks in REQUEST_CHECKS[key][2]:
            for check in checks:
                if not isinstance(check, tuple):
                    continue
                if check[0] == "fields_present":
                    whole = {"key": "k", "value": 1.5, "timestamp": 1}
                    cases += [(key, name, [{k: v for k, v in whole.items() if k != left_out}]) for left_out in whole]
                    cases += [(key, name, [whole, {**whole, "key": ""}])]
                elif check[0] == "count_at_most":
                    cases += [(key, name, ["a"] * count) for count in (check[1], check[1] + 1)]
                else:
                    bounds = (
                        [check[1], check[1] + 1]
                        if check[0] == "at_most"
                        else [check[1] - 1, check[1], check[2], check[2] + 1]
                    )
                    cases += [(key, name, value) for bound in bounds for value in (bound, str(bound))]
    return cases


@pytest.mark.parametrize(("key", "name", "value"), _inline_cases())
def test_every_inline_check_refuses_where_mlflows_does(
    captured: dict[tuple[str, str, int], dict[str, Any]], key: tuple[str, str, int], name: str, value: Any
) -> None:
    """Past the route's other checks, at each limit: the generated differential rarely reaches them."""
    spec = SPECS[key]
    document = {field: _valid(checks) for field, checks in REQUEST_CHECKS[key][2] if "required" in checks}
    document[name] = value
    if spec.method == "GET":
        pairs = [(k, item) for k, v in document.items() for item in (v if isinstance(v, list) else [v])]
        body, query = None, urlencode(pairs)
    else:
        body, query = json.dumps(document).encode(), ""
    kind, message = _mlflow_answer(spec, captured[key], body, query)
    ours = store_refusal(spec, body, query)
    assert ours == (message if kind == "refused" else None), (kind, message, body, query)


HINT_INT = "supplied:  Hint: Value was of type 'int'."
EXAMPLES = [
    ("POST /mlflow/runs/delete", 2, b'{"run_id": 31}', f"Invalid value 31 for parameter 'run_id' {HINT_INT}"),
    ("POST /mlflow/runs/delete", 2, b"not json", "Missing value for required parameter 'run_id'."),
    (
        "POST /mlflow/runs/delete",
        2,
        b'{"runId": "a", "run_id": "b"}',
        "Request specifies both 'run_id' and 'runId'; provide only one of them.",
    ),
    (
        "POST /mlflow/runs/log-batch",
        2,
        b'{"metrics": [{"key": 1}]}',
        "Invalid value null for parameter 'run_id' supplied:  Hint: Value was of type 'NoneType'.",
    ),
    ("POST /mlflow/runs/log-metric", 2, b'{"run_id": "r", "model_id": 5}', "Missing value for required parameter"),
    (
        "GET /mlflow/traces/get",
        3,
        "trace_id=t&allow_partial=maybe",
        "Invalid boolean value: maybe, must be 'true' or 'false'.",
    ),
    (
        "GET /mlflow/metrics/get-history-bulk-interval",
        2,
        "run_ids=a&metric_key=m&max_results=0",
        "max_results must be between 1 and 2500.",
    ),
]


@pytest.mark.parametrize(("name", "version", "request_", "message"), EXAMPLES)
def test_examples_of_mlflows_words(name: str, version: int, request_: bytes | str, message: str) -> None:
    from gateway.core.route_table import declared

    spec = declared(name, version)
    body, query = (None, request_) if isinstance(request_, str) else (request_, "")
    found = store_refusal(spec, body, query)
    assert found is not None and found.startswith(message), found


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("POST /mlflow/runs/delete", b"[1, 2]"),  # MLflow fails with a 500
        ("POST /mlflow/runs/log-batch", b"not json"),  # likewise: log-batch measures the body it could not read
        ("POST /mlflow/runs/search", b'{"experiment_ids": [1]}'),  # MLflow searches a partly parsed message
        ("POST /mlflow/runs/search", b'{"experiment_id": 5}'),  # not a field of SearchRuns: MLflow ignores it
        ("DELETE /mlflow/logged-models/{model_id:str}", b'{"model_id": 5}'),  # the handler reads no body
    ],
)
def test_no_refusal_is_claimed_where_mlflow_makes_none(name: str, body: bytes) -> None:
    from gateway.core.route_table import declared

    assert store_refusal(declared(name), body, "") is None


def test_a_mistyped_id_the_guard_reads_is_refused_in_mlflows_words() -> None:
    from gateway.core.errors import InvalidParameter

    with pytest.raises(InvalidParameter) as refused:
        canonical_body(b'{"experiment_ids": ["1", 2], "run_id": "r"}')
    assert refused.value.message == (
        "Invalid value [\"1\",2] for parameter 'experiment_ids' supplied:  Hint: Value was of type 'list'. "
        "See the API docs for more information about request parameters."
    )
