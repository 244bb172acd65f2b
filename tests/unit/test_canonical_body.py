"""The body the guard reads is the body the store receives: decoded once, refused or re-encoded canonically."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.errors import InvalidParameter
from gateway.federation.canonical import MAX_DEPTH, canonical_body, canonical_query
from gateway.federation.mlflow_aliases import PROTO_JSON_ALIASES, USER_KEYED_PATHS
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


USER_KEYED_TYPES = ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")


def served_request_paths() -> tuple[set[str], set[str]]:
    """Over the request messages an `mlflow server` parses: the paths of fields whose JSON object holds the caller's
    keys (maps, `google.protobuf.Value`) and the paths of message fields (whose keys are field names)."""
    from mlflow.protos.mlflow_artifacts_pb2 import MlflowArtifactsService
    from mlflow.protos.model_registry_pb2 import ModelRegistryService
    from mlflow.protos.service_pb2 import MlflowService
    from mlflow.protos.webhooks_pb2 import WebhookService

    user_keyed: set[str] = set()
    messages: set[str] = set()

    def walk(message: Any, path: str, within: frozenset[str]) -> None:
        if message.full_name in within:  # a recursive message: no path below adds another kind of field
            return
        for item in message.fields:
            if item.message_type is None:
                continue
            where = f"{path}.{item.name}" if path else item.name
            kind = item.message_type
            if kind.GetOptions().map_entry:
                assert kind.fields_by_name["value"].message_type is None, "a map of messages: keys below are fields"
                user_keyed.add(where)
            elif kind.full_name in USER_KEYED_TYPES:
                user_keyed.add(where)
            elif not kind.full_name.startswith("google.protobuf."):
                below = where + "[]" if item.is_repeated else where
                messages.add(below)
                walk(kind, below, within | {message.full_name})

    for service in (MlflowService, ModelRegistryService, MlflowArtifactsService, WebhookService):
        for method in service.DESCRIPTOR.methods:
            walk(method.input_type, "", frozenset())
    return user_keyed, messages


def test_the_user_keyed_paths_are_exactly_the_maps_and_values_of_mlflows_request_messages() -> None:
    user_keyed, messages = served_request_paths()
    assert user_keyed == set(USER_KEYED_PATHS)
    # A path holding the caller's keys in one request message and field names in another would let an alias pass.
    assert not user_keyed & messages
    assert not {path.removesuffix("[]") for path in messages} & user_keyed


def _at(path: str, leaf: object) -> dict[str, Any]:
    """A body with `leaf` at `path` (each `[]` a list of one)."""
    node: Any = leaf
    for step in reversed(path.split(".")):
        node = {step[:-2]: [node]} if step.endswith("[]") else {step: node}
    return node  # type: ignore[no-any-return]


aliases = st.sampled_from(sorted(PROTO_JSON_ALIASES))
user_keyed_paths = st.sampled_from(sorted(USER_KEYED_PATHS))


@settings(max_examples=300, deadline=None)
@given(user_keyed_paths, aliases, st.dictionaries(aliases | st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_a_key_the_caller_chose_is_never_taken_for_an_alias(path: str, alias: str, more: dict[str, str]) -> None:
    document = _at(path, {alias: "x", **more})
    body = canonical_body(json.dumps(document).encode())
    assert json.loads(body.encoded) == document


@settings(max_examples=300, deadline=None)
@given(user_keyed_paths, aliases, st.integers(min_value=0, max_value=4))
def test_an_alias_where_mlflow_reads_field_names_is_refused_beside_a_map(path: str, alias: str, up: int) -> None:
    """The same alias is refused as a field of the message that holds the map, or of any message around it."""
    steps = path.split(".")
    parent = ".".join(steps[: max(0, len(steps) - 1 - up)])
    document = _at(path, {alias: "x"})
    node: Any = document
    for step in parent.split(".") if parent else []:
        node = node[step[:-2]][0] if step.endswith("[]") else node[step]
    node[alias] = "y"
    with pytest.raises(InvalidParameter, match=f"Field '{alias}' is refused"):
        canonical_body(json.dumps(document).encode())


@pytest.mark.parametrize(
    "document",
    [
        {"trace": {"trace_info": {"tags": {"artifactLocation": "x"}}}},
        {"trace": {"trace_info": {"tags": {"runId": "x"}, "trace_metadata": {"experimentId": "2"}}}},
        {"assessment": {"feedback": {"value": {"runId": {"traceInfo": [1]}}}, "metadata": {"sourceRunId": "y"}}},
        {"secret_value": {"accessKeyId": "k"}, "auth_config": {"sessionToken": "t"}},
    ],
)
def test_map_keys_that_look_like_aliases_are_data(document: dict[str, Any]) -> None:
    assert json.loads(canonical_body(json.dumps(document).encode()).encoded) == document


@pytest.mark.parametrize(
    "document",
    [
        {"trace": {"trace_info": {"tags": {"a": "b"}, "traceLocation": {}}}},
        {"trace": {"traceInfo": {"tags": {"artifactLocation": "x"}}}},
        {"tags": {"runId": "x"}},  # `tags` holds the caller's keys in a trace's info only
        {"assessment": {"feedback": {"value": {}, "traceId": "t"}}},
        {"assessment": {"expectation": {"value": 1}, "traceId": "t"}},
    ],
)
def test_aliases_beside_or_around_a_map_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameter, match="snake_case"):
        canonical_body(json.dumps(document).encode())


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


def _keys(node: object, path: str = "") -> set[str]:
    """The keys MLflow's parser reads as field names: all but those below a user-keyed path."""
    if isinstance(node, dict):
        below = ((f"{path}.{k}" if path else k, v) for k, v in node.items())
        return set(node).union(*(_keys(v, where) for where, v in below if where not in USER_KEYED_PATHS))
    if isinstance(node, list):
        return set().union(*(_keys(v, path + "[]") for v in node))
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


@pytest.mark.parametrize(
    ("raw", "where", "half"),
    [
        (b'{"tags": [{"key": "a", "value": "x\\ud800"}]}', "parameter 'tags[0].value'", "\\ud800"),
        (b'{"run_id": "\\udfff"}', "parameter 'run_id'", "\\udfff"),
        (b'{"tags": [{"key": "a\\ud800b", "value": ""}]}', "parameter 'tags[0].key'", "\\ud800"),
        (b'{"tags": {"k\\udc00": "v"}}', "a field name in 'tags.k\\udc00'", "\\udc00"),
        (b'{"key": "\\ud83d\\ud83d"}', "parameter 'key'", "\\ud83d"),
    ],
)
def test_a_lone_surrogate_is_refused_in_words_that_say_so(raw: bytes, where: str, half: str) -> None:
    # Python's json module (so MLflow's server) decodes it into text no UTF-8 can carry; msgspec calls the body
    # truncated. Refused, naming the field and the half of a pair it holds.
    json.loads(raw)
    with pytest.raises(InvalidParameter) as refused:
        canonical_body(raw)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert str(refused.value) == (
        f"Invalid value for {where} supplied: it contains an unpaired surrogate ({half}), half of a UTF-16 pair "
        "without its other half, which is no Unicode character. Send the text as UTF-8, or escape a character beyond "
        "U+FFFF as both halves of its pair."
    )
    # A pair written as two escapes is one character, an escaped backslash before the same letters is text, and a
    # body the json module cannot read either is still called malformed.
    for text in (b'{"a": "\\ud83d\\ude00"}', b'{"a": "\\\\ud800"}'):
        assert canonical_body(text).document == json.loads(text)
    for text in (b'{"name": ', b'{"a": NaN}', raw[:-1]):
        with pytest.raises(InvalidParameter, match=r"^Malformed JSON request body: "):
            canonical_body(text)
