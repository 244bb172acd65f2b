"""The body the guard reads is the body the store receives: decoded once, refused or re-encoded canonically."""

from __future__ import annotations

import importlib
import json
import pkgutil
from urllib.parse import parse_qsl, urlencode

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.errors import InvalidParameter
from gateway.federation.canonical import MAX_DEPTH, canonical_body, canonical_query
from gateway.federation.mlflow_aliases import PROTO_JSON_ALIASES
from gateway.federation.schemas import RequestIds

RUN = "a" * 32
HIDDEN = "b" * 32


def mlflow_aliases() -> set[str]:
    import mlflow.protos

    found: set[str] = set()

    def visit(message: object) -> None:
        for field in message.fields:  # type: ignore[attr-defined]
            if field.json_name != field.name:
                found.add(field.json_name)
        for nested in message.nested_types:  # type: ignore[attr-defined]
            visit(nested)

    for module in pkgutil.walk_packages(mlflow.protos.__path__, "mlflow.protos."):
        if not module.name.endswith("_pb2"):
            continue
        try:
            loaded = importlib.import_module(module.name)
        except Exception:  # a proto module the installed protobuf cannot load is not served either
            continue
        for message in loaded.DESCRIPTOR.message_types_by_name.values():
            visit(message)
    return found


def test_the_alias_list_is_exactly_what_mlflows_parser_accepts() -> None:
    assert mlflow_aliases() == set(PROTO_JSON_ALIASES)


def test_an_escaped_key_is_read_as_the_store_reads_it_and_forwarded_unescaped() -> None:
    body = canonical_body(b'{"run_uuid": "' + RUN.encode() + b'", "run\\u005fid": "' + HIDDEN.encode() + b'"}')
    assert body.ids.run_id == HIDDEN and body.ids.run_uuid == RUN
    assert json.loads(body.encoded) == {"run_uuid": RUN, "run_id": HIDDEN}
    assert b"\\u" not in body.encoded


@pytest.mark.parametrize(
    "raw",
    [
        b'{"run_uuid": "x", "run\\u0049d": "y"}',  # runId, escaped
        b'{"runId": "y"}',
        b'{"trace": {"traceInfo": {"trace_location": {}}}}',
        b'{"run_id": "x", "models": [{"modelId": "m-1"}]}',
        b'{"experiment_id": "1", "sourceRunId": "y"}',
        b'{"name": "e", "artifact\\u004cocation": "s3://elsewhere"}',  # artifactLocation
    ],
)
def test_proto_json_aliases_are_refused_at_any_depth(raw: bytes) -> None:
    with pytest.raises(InvalidParameter, match="snake_case"):
        canonical_body(raw)


def test_of_repeated_keys_the_last_wins_and_only_it_is_forwarded() -> None:
    body = canonical_body(b'{"run_id": "' + RUN.encode() + b'", "run_id": "' + HIDDEN.encode() + b'"}')
    assert body.ids.run_id == HIDDEN == json.loads(body.encoded)["run_id"]
    assert body.encoded.count(b"run_id") == 1


@pytest.mark.parametrize("raw", [b'"{\\"run_id\\": \\"x\\"}"', b"[1]", b"null", b"{", b'{"a": NaN}', b"\xff\xfe{}"])
def test_anything_but_one_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidParameter):
        canonical_body(raw)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 2, 5000])
def test_deep_nesting_is_refused_with_a_clear_error(depth: int) -> None:
    with pytest.raises(InvalidParameter, match="nested"):
        canonical_body(b'{"a": ' + b"[" * depth + b"]" * depth + b"}")


def test_nested_ids_are_listed_with_their_paths() -> None:
    raw = json.dumps(
        {
            "run_id": RUN,
            "metrics": [{"key": "k", "value": 1, "timestamp": 1, "model_id": "m-1"}, {"key": "k", "run_id": RUN}],
            "trace": {"trace_info": {"trace_location": {"mlflow_experiment": {"experiment_id": "2"}}}},
            "request_ids": ["tr-1"],
        }
    ).encode()
    nested = {(item.path, json.dumps(item.value)) for item in canonical_body(raw).nested}
    assert nested == {
        ("metrics[].model_id", '"m-1"'),
        ("metrics[].run_id", json.dumps(RUN)),
        ("trace.trace_info.trace_location.mlflow_experiment.experiment_id", '"2"'),
        ("request_ids", '["tr-1"]'),
    }


def test_a_large_log_batch_has_no_nested_ids_and_round_trips() -> None:
    metrics = [
        {"key": f"m{i % 10}", "value": i / 3, "timestamp": 1_700_000_000_000 + i, "step": i} for i in range(1000)
    ]
    document = {"run_id": RUN, "metrics": metrics, "tags": [{"key": "mlflow.note", "value": '{"run_id": "x"}'}]}
    body = canonical_body(json.dumps(document).encode())
    assert body.nested == [] and json.loads(body.encoded) == document


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_any_object_is_forwarded_as_the_document_python_reads(document: dict[str, object]) -> None:
    raw = json.dumps(document, ensure_ascii=True).encode()  # every non-ASCII character escaped
    if PROTO_JSON_ALIASES.intersection(_keys(document)):
        with pytest.raises(InvalidParameter):
            canonical_body(raw)
        return
    try:
        body = canonical_body(raw)
    except InvalidParameter:  # only a value of the wrong type for a top-level id field is refused
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(document, type=RequestIds)
        return
    assert json.loads(body.encoded) == json.loads(raw)


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


def test_query_strings_are_forwarded_as_parsed() -> None:
    assert canonical_query("run_id=a&run%5Fid=b&x") == "run_id=a&run_id=b&x="
    assert canonical_query("filter=name+%3D+%27%C3%A9%27") == "filter=name+%3D+%27%C3%A9%27"
    with pytest.raises(InvalidParameter):
        canonical_query("name=%FF")


_QUERY_TEXT = st.text(alphabet=st.sampled_from("aZ09_.~-=&+%/ é;"), max_size=40)


@settings(max_examples=2000, deadline=None)
@given(_QUERY_TEXT | st.lists(st.tuples(_QUERY_TEXT, _QUERY_TEXT)).map(lambda pairs: urlencode(pairs)))
def test_a_query_skipped_as_plain_is_what_parsing_and_encoding_make_of_it(query: str) -> None:
    """The plain-pairs shortcut answers exactly what parsing and re-encoding would."""
    try:
        expected = urlencode(parse_qsl(query.encode("latin-1").decode(), keep_blank_values=True, errors="strict"))
    except UnicodeError:
        expected = None
    try:
        answered = canonical_query(query)
    except InvalidParameter:
        answered = None
    if query:
        assert answered == expected
