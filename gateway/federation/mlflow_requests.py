"""What an MLflow server refuses a request with before its handler acts, so the gateway's refusals read as the store's.

The gateway refuses some calls itself, before the store sees them: a body it cannot read safely (not JSON,
not one object, proto JSON names, too deep), an id of the wrong type, a call that names no object. The
client would often have been refused by the store too, for the same request, in MLflow's words, and
clients and tests match those words. `store_refusal` says what MLflow 3.17.2 would answer: it reads the
request as MLflow's `_get_request_message` does (Flask's lenient JSON: a body it cannot parse is `{}`; a
JSON string body decoded a second time; a GET's query parameters by the request message's fields), parses
it into the route's request message (`google.protobuf.json_format`, with MLflow's own descriptors from
mlflow_requests.binpb), and runs the route's checks of mlflow_checks.py in MLflow's order and with the
same Python semantics. Where MLflow would go ahead, or fail with a 500, it answers None and the gateway's
own refusal stands: one MLflow does not make (docs/security.md, "Refusals in the store's words").

Only refusal paths get here; a request the gateway forwards is answered by the store itself.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import msgspec
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.core.errors import InvalidParameter
from gateway.core.route_table import RouteSpec
from gateway.federation.mlflow_checks import REQUEST_CHECKS, Check
from gateway.federation.schemas import GUARD_ID_FIELDS

DESCRIPTORS = Path(__file__).with_name("mlflow_requests.binpb")
SEE_THE_DOCS = " See the API docs for more information about request parameters."
MAX_BATCH_LOG_REQUEST_SIZE = 1_000_000  # mlflow.utils.validation: top-level keys of a log-batch body
# MLflow skips these checks when the request parsed into its protobuf message (handlers._TYPE_VALIDATORS).
TYPE_CHECKS = frozenset({"intlike", "string", "bool", "floatlike", "array", "item_type_string"})


class _Refused(Exception):
    """MLflow answers 400 INVALID_PARAMETER_VALUE with `message`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Crashed(Exception):
    """MLflow's check of parameter `name` raises something other than its refusal: the store answers 500."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def worded_as_the_store(spec: RouteSpec, refusal: InvalidParameter, body: bytes | None, query: str) -> InvalidParameter:
    """MLflow's refusal of this request when an MLflow server would refuse it too, else the gateway's own."""
    message = store_refusal(spec, body, query)
    return refusal if message is None else InvalidParameter(message)


def store_refusal(spec: RouteSpec, body: bytes | None, query: str) -> str | None:
    """The message an MLflow server refuses this request with (400 INVALID_PARAMETER_VALUE) before its handler
    acts; None when it would not refuse it so (it goes ahead, fails with a 500, or validates nothing)."""
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None:
        return None
    message_name, reads_first, schema = route
    try:
        _read_and_check(spec.method, message_name, reads_first, schema, body or b"", query)
    except _Refused as refused:
        return refused.message
    except Exception:  # MLflow fails with a 500 on this request; the gateway's own refusal stands
        return None
    return None


def crashing_parameter(spec: RouteSpec, document: dict[str, Any], body: bytes | None, query: str) -> str | None:
    """The parameter whose check raises inside MLflow 3.17.2's reading of this request (its handlers'
    `_validate_request_json_with_schema`: `int(None)` of a `max_results: null` in runs/search, `entry.get("key")` of
    a log-batch's `metrics: null` or `["x"]`, of a v2 trace start's `tags: ["x"]`), which the store answers with its
    500 (Flask's HTML page); None when MLflow refuses or reads it. `document` is the body as decoded (the guard's
    canonical one) and `body` as it will be sent.

    Every check of every field is first run on `document` (or a GET's query) regardless of the others' results:
    one that raises in MLflow raises there too. Only then is the request read as MLflow reads it (`_read_and_check`,
    json_format and all), to confirm; a request no check can raise on costs one pass over its fields."""
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None:
        return None
    message_name, reads_first, schema = route
    args = parse_qsl(query, keep_blank_values=True) if spec.method == "GET" else []
    try:
        descriptor = _pool().FindMessageTypeByName(message_name) if message_name else None
        request_json = _from_query(args, descriptor, schema) if args else document
    except _Refused:
        return None
    if not _may_raise(request_json, schema):
        return None
    try:
        _read_and_check(spec.method, message_name, reads_first, schema, body or b"", query)
    except _Crashed as crashed:
        return crashed.name
    except Exception:  # MLflow refuses it (or it is not read as this request was): the store's to answer
        return None
    return None


def parsed_message(spec: RouteSpec, document: dict[str, Any]) -> Any | None:
    """The route's request message as MLflow's handler goes on with it: json_format's parse of the body (unknown
    fields ignored), as far as it got where it stopped at a value it cannot parse. None for a route without a
    message, or a body json_format raises on otherwise (MLflow fails on it as well)."""
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None or not route[0]:
        return None
    message = _message_class(route[0])()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError:
        pass
    except Exception:
        return None
    return message


def _may_raise(request_json: dict[str, Any], schema: tuple[tuple[str, tuple[Check, ...]], ...]) -> bool:
    """Whether any of MLflow's checks of these fields raises something other than its refusal, each check of each
    field run whatever the others gave (a superset of what MLflow runs)."""
    for name, checks in schema:
        if name in request_json or "required" in checks:
            value = request_json.get(name)
            if name == "run_id" and value is None and "run_uuid" in request_json:
                value = request_json.get("run_uuid")
            for check in checks:
                if type(check) is tuple and check[0] == "fields_present" and _objects(value):
                    continue  # `entry.get` of each: it cannot raise (a log-batch's points, read without the gets)
                try:
                    _apply(check, value)
                except (AssertionError, _Refused):
                    continue
                except Exception:
                    return True
    return False


def _objects(value: object) -> bool:
    return type(value) is list and all(type(entry) is dict for entry in value)


def ignored_id_field(spec: RouteSpec, document: dict[str, Any], params: dict[str, list[str]]) -> str | None:
    """An id field of GUARD_ID_FIELDS that names something in the body (or a GET's query) but is no field of the
    route's request message, which MLflow therefore never reads; None when every such field is one (or the route
    parses no protobuf message).

    The guard counts the field as naming the call's object, the store acts on its own field, left empty: MLflow
    3.17.2's `issues/search` read `{"experiment_ids": ["<own>"]}` as a search of no experiment in particular, and
    answered the issues of every experiment of the workspace."""
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None or not route[0]:
        return None
    fields = _message_class(route[0]).DESCRIPTOR.fields_by_name
    for name in itertools.chain.from_iterable(GUARD_ID_FIELDS):
        if name in fields:
            continue
        if document.get(name) or any(params.get(name, ())):
            return name
    return None


def unread_part(spec: RouteSpec, body: bytes | None, query: str, document: object = None) -> str | None:
    """Why MLflow would act on only part of this request, or None when it reads all of it (or none: it refuses it,
    fails on it, or reads no protobuf message).

    MLflow's `_get_request_message` parses the request message field by field, in the order of the body's keys (of
    the message's fields for a GET's parameters), and at the first value it cannot parse (`"view_type": 99`,
    `"order_by": [1]`, a param's value sent as a number) it stops and goes on with the fields read before: a field
    after that one never reaches the handler, and a write applies what was read, silently. The gateway checks this
    where it rewrote a request (a search narrowed to what the caller may read), since a field it added after the
    client's could otherwise be dropped, and for every write, which the index and the dual outbox would otherwise
    record whole.

    `document`, the body as decoded (the guard's canonical document), lets a log-batch's points be checked in one
    pass (`_read_whole`) instead of through json_format, about a hundred times slower."""
    return partial_read(spec, body, query, document)[0]


def partial_read(
    spec: RouteSpec, body: bytes | None, query: str, document: object = None
) -> tuple[str | None, list[ClientPoint] | None]:
    """`unread_part`, and a log-batch's points as its check read them when they are all in the shape MLflow's
    clients send (`ClientPoint`), else None: the after-write hooks read them from there instead of converting
    the document's points a second time."""
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None or not route[0]:
        return None, None
    message_name, _, schema = route
    points = None
    if (
        spec.path == LOG_BATCH_PATH
        and type(document) is dict
        and (read := _read_whole(document.get("metrics"))) is not False
    ):
        # The points parse whatever comes before or after them: the rest is read as it would be beside them.
        body = msgspec.json.encode({key: [] if key == "metrics" else value for key, value in document.items()})
        points = read if type(read) is list else None
    try:
        args = parse_qsl(query, keep_blank_values=True)
        if spec.method == "GET" and args:
            request_json = _from_query(args, _pool().FindMessageTypeByName(message_name), schema)
        else:
            request_json = _normalised_json(body or b"")
        json_format.ParseDict(request_json, _message_class(message_name)(), ignore_unknown_fields=True)
    except json_format.ParseError as partly:
        return str(partly), None
    except Exception:  # MLflow refuses the request, or fails on it: it acts on none of it
        return None, None
    return None, points


def refuse_partial_read(
    spec: RouteSpec, body: bytes | None, query: str, document: object = None
) -> list[ClientPoint] | None:
    """400 for a request that MLflow would read only in part (`unread_part`): a field the gateway wrote (a narrowing
    filter, experiment ids translated to a central store's) could otherwise never reach the handler, and a write
    would be applied in part. In MLflow's words where its checks refuse the request too. Returns the log-batch's
    points as the check read them (`partial_read`), or None."""
    reason, points = partial_read(spec, body, query, document)
    if reason is not None:
        refusal = InvalidParameter(f"Invalid request: MLflow would read only part of it ({reason[:200]}).")
        raise worded_as_the_store(spec, refusal, body, query)
    return points


LOG_BATCH_PATH = "/mlflow/runs/log-batch"
INT64 = msgspec.Meta(ge=-(2**63), le=2**63 - 1)
FINITE = msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)  # json_format refuses an unquoted inf or nan


class _WholeMetric(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A log-batch point json_format reads whole into MLflow's `Metric` message: a narrower shape than it takes
    (tests/unit/test_partial_reads.py holds the two to each other, and these fields to the message's)."""

    key: str = ""
    value: Annotated[float, FINITE] | Literal["NaN", "Infinity", "-Infinity"] = 0.0
    timestamp: Annotated[int, INT64] = 0
    step: Annotated[int, INT64] = 0
    dataset_name: str = ""
    dataset_digest: str = ""
    model_id: str = ""
    run_id: str = ""


_WHOLE_METRICS = list[_WholeMetric]


class ClientPoint(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A log-batch point in the shape MLflow's clients send: exactly these four fields, a finite number for its value.
    Narrower than `_WholeMetric` (every such point is one json_format reads whole; tests/unit/test_partial_reads.py),
    and what the index's write-through reads the points from (gateway/index/points.py, `read_client_points`)."""

    key: str
    value: Annotated[float, FINITE]
    timestamp: Annotated[int, INT64]
    step: Annotated[int, INT64]


_CLIENT_POINTS = list[ClientPoint]


def _read_whole(metrics: object) -> list[ClientPoint] | bool:
    """Whether json_format reads every one of these points (False: it may not; ask json_format itself); the points
    themselves when they are all in the clients' shape (`ClientPoint`), the common case, converted once."""
    if type(metrics) is not list:
        return False
    try:
        return msgspec.convert(metrics, _CLIENT_POINTS)
    except msgspec.ValidationError:
        pass
    try:
        msgspec.convert(metrics, _WHOLE_METRICS)
    except msgspec.ValidationError:
        return False
    return True


def invalid_value(name: str, value: Any) -> str:
    """MLflow's words for a parameter of the wrong type (handlers._validate_param_against_schema)."""
    rendered = json.dumps(value, sort_keys=True, separators=(",", ":"))
    hint = f" Hint: Value was of type '{type(value).__name__}'."
    return f"Invalid value {rendered} for parameter '{name}' supplied: {hint}{SEE_THE_DOCS}"


# -- reading the request (handlers._get_request_message, _get_validated_flask_request_json) ---------------


def _read_and_check(
    method: str,
    message_name: str,
    reads_first: bool,
    schema: tuple[tuple[str, tuple[Check, ...]], ...],
    body: bytes,
    query: str,
) -> None:
    args = parse_qsl(query, keep_blank_values=True)
    descriptor = _pool().FindMessageTypeByName(message_name) if message_name else None
    if reads_first:  # log-batch: _validate_batch_log_api_req(_get_request_json())
        request_json = _flask_json(body)
        if len(request_json) > MAX_BATCH_LOG_REQUEST_SIZE:
            raise _Refused(
                f"Batched logging API requests must be at most {MAX_BATCH_LOG_REQUEST_SIZE} bytes, got a "
                f"request of size {len(request_json)}."
            )
    request_json = _from_query(args, descriptor, schema) if method == "GET" and args else _normalised_json(body)
    if descriptor is None:  # validated as plain JSON, without a protobuf message
        _check(request_json, schema, None)
        return
    _reject_conflicting_field_aliases(request_json, descriptor)
    try:
        json_format.ParseDict(request_json, _message_class(message_name)(), ignore_unknown_fields=True)
        parsed = True
    except json_format.ParseError:
        parsed = False
    _check(request_json, schema, parsed)


def _flask_json(body: bytes) -> Any:
    """`request.get_json(force=True, silent=True)`: what `json.loads` reads, None for anything it cannot."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def _normalised_json(body: bytes) -> Any:
    request_json = _flask_json(body)
    if isinstance(request_json, str):  # older clients' double-encoded bodies
        request_json = json.loads(request_json)
    return {} if request_json is None else request_json


def _from_query(
    args: list[tuple[str, str]], descriptor: Descriptor | None, schema: tuple[tuple[str, tuple[Check, ...]], ...]
) -> dict[str, Any]:
    values: dict[str, list[str]] = {}
    for key, text in args:
        values.setdefault(key, []).append(text)
    request_json: dict[str, Any] = {}
    if descriptor is None:  # every parameter; a list where the schema checks for one
        checks = dict(schema)
        for key, found in values.items():
            listed = "array" in checks.get(key, ())
            request_json[key] = found if listed else (found[0] if len(found) == 1 else found)
        return request_json
    for field in descriptor.fields:
        if field.name not in values:
            continue
        if field.is_repeated:
            request_json[field.name] = values[field.name]
            continue
        first = values[field.name][0]
        if field.type != FieldDescriptor.TYPE_BOOL:
            request_json[field.name] = first
        elif first.lower() not in ("true", "false"):
            raise _Refused(f"Invalid boolean value: {first}, must be 'true' or 'false'.")
        else:
            request_json[field.name] = first.lower() == "true"
    return request_json


def _reject_conflicting_field_aliases(request_json: Any, descriptor: Descriptor) -> None:
    """A field spelt both ways (`run_id` and `runId`) in one object, at any depth of the message."""
    if not isinstance(request_json, dict):
        return
    for field in descriptor.fields:
        if field.name != field.json_name and field.name in request_json and field.json_name in request_json:
            raise _Refused(f"Request specifies both '{field.name}' and '{field.json_name}'; provide only one of them.")
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        nested = field.message_type
        if nested.GetOptions().map_entry or nested.full_name.startswith("google.protobuf."):
            continue
        value = request_json.get(field.name, request_json.get(field.json_name))
        for item in value if isinstance(value, list) else [value]:
            _reject_conflicting_field_aliases(item, nested)


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


@functools.cache
def _message_class(name: str) -> Any:
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(name))


# -- the checks (handlers._validate_request_json_with_schema, _validate_param_against_schema) -------------


def _check(request_json: Any, schema: tuple[tuple[str, tuple[Check, ...]], ...], parsed: bool | None) -> None:
    for name, checks in schema:
        if name in request_json or "required" in checks:
            value = request_json.get(name)
            if name == "run_id" and value is None and "run_uuid" in request_json:
                value = request_json.get("run_uuid")
            for check in checks:
                if parsed and check in TYPE_CHECKS:
                    continue
                try:
                    _apply(check, value)
                except AssertionError as failed:
                    if failed.args:
                        raise _Refused(f"{failed.args[0]}{SEE_THE_DOCS}") from None
                    if check == "required":
                        raise _Refused(f"Missing value for required parameter '{name}'.{SEE_THE_DOCS}") from None
                    raise _Refused(invalid_value(name, value)) from None
                except _Refused:
                    raise
                except Exception as raised:  # MLflow's check raises too: its 500
                    raise _Crashed(name) from raised


def _apply(check: Check, value: Any) -> None:
    """One of MLflow's checks; AssertionError where MLflow's fails, any other error where MLflow's crashes."""
    if isinstance(check, tuple):
        _apply_inline(check, value)
    elif check == "required":
        if value is None or value == "":
            raise AssertionError
    elif check == "string":
        _expect(isinstance(value, str))
    elif check == "intlike":
        with contextlib.suppress(ValueError):
            value = int(value)
        _expect(isinstance(value, int))
    elif check == "floatlike":
        with contextlib.suppress(ValueError):
            value = float(value)
        _expect(isinstance(value, float))
    elif check == "bool":
        _expect(isinstance(value, bool))
    elif check == "array":
        _expect(isinstance(value, list))
    elif check == "dict":
        _expect(isinstance(value, dict))
    elif check == "item_type_string":
        _expect(all(isinstance(item, str) for item in value))
    elif check == "secret_value":  # handlers._assert_secret_value: refused without the docs hint
        if value is None:
            raise _Refused("Missing value for required parameter 'secret_value'.")
    elif check == "map_key_present":
        _expect(isinstance(value, list))
        for entry in value:
            _apply("required", entry.get("key"))
    else:
        raise LookupError(f"unknown check {check!r}")


def _apply_inline(check: tuple[Any, ...], value: Any) -> None:
    kind = check[0]
    if kind == "at_most":
        _expect(int(value) <= check[1])
    elif kind == "count_at_most":
        if len(value) > check[1]:
            raise AssertionError(check[2].format(count=len(value)))
    elif kind == "int_between":
        if not check[1] <= int(value) <= check[2]:
            raise AssertionError(check[3])
    elif kind == "fields_present":
        _, name, keys = check
        for index, entry in enumerate(value):
            for key in keys:
                found = entry.get(key)
                if found is None or found == "":
                    raise AssertionError(f"Missing value for required parameter '{name}[{index}].{key}'.")
    else:
        raise LookupError(f"unknown check {check!r}")


def _expect(holds: bool) -> None:
    if not holds:
        raise AssertionError
