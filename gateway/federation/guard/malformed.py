"""Malformed values MLflow 3.17.2's store cannot read and fails on with a 500 of its own (in its error shape, or
Flask's HTML page), refused (400 INVALID_PARAMETER_VALUE) by the guard before the store sees them, whoever calls.

Each refusal is of a value the store fails on, and of no value it reads (tests/integration/test_store_errors.py asks
the store itself first); a value the store refuses in its own words goes to it. Refused:

- a parameter whose check raises in MLflow's own reading of the request (`mlflow_requests.crashing_parameter`):
  `max_results: null` of runs/search (`int(None)`), a log-batch's `metrics`, `params` or `tags` null or holding
  something other than an object, a v2 trace start's `tags` or `request_metadata` holding one;
- a field MLflow reads as JSON text (`json.loads`) holding text it then fails on: a dataset's `tags` (create: non-JSON
  or a non-empty value other than an object; set-tags: anything but an object), a dataset's `records` (non-JSON, or
  anything whose items are not all objects), a scorer's `serialized_scorer` and a logged model's `model_json` (JSON
  other than an object; text that is no JSON the store refuses itself);
- an experiment location of a v3 trace search (`locations[].mlflow_experiment`) whose id `int()` refuses, empty
  included (one that is no object parses as an empty location);
- an experiment id of a v2 trace search (`GET /mlflow/traces?experiment_ids=abc`) that is no integer to Python's
  `int()`, which the store takes of each;
- a scoring config's `sample_rate` that `float()` refuses (MLflow's handler checks only that it is there);
- an event of a webhook update (`events`) or test (`event`) whose entity or action MLflow cannot map
  (`WebhookEvent.from_proto`), read from the request message as MLflow's handler goes on with it;
- a page token the store's decoding raises on rather than refusing: one outside ASCII (`base64.b64decode` of a str),
  or whose base64 decodes to JSON other than an object (or an object whose `offset` is a list, an object or an
  infinity), on the routes that read MLflow's offset tokens (`SearchUtils.parse_start_offset_from_page_token`);
  on a logged-model search, one whose base64 or UTF-8 is broken or whose JSON is no object; on a dataset's records,
  one that is neither the store's cursor (base64 of `<int>:<id>`) nor an integer, or whose integer is past the SQL
  integers (a 64-bit signed integer);
- a dataset records read's negative `max_results` (`GET /mlflow/datasets/{id}/records?max_results=-1`): the store
  reads one record more than asked and indexes the last of an empty page (0 reads its default, 1000).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from typing import Any

from gateway.core.errors import InvalidParameter
from gateway.core.route_table import Body, declared
from gateway.federation.guard.request import Request
from gateway.federation.mlflow_requests import crashing_parameter, parsed_message

MAX_SHOWN = 200  # characters of a refused value named in the message


def refuse_malformed(request: Request) -> None:
    """400 INVALID_PARAMETER_VALUE for a value the store fails on (the module's list)."""
    spec = request.spec
    if spec.body is not Body.JSON:
        return
    document = request.document
    if (name := crashing_parameter(spec, document, request.body, request.query)) is not None:
        raise InvalidParameter(_refusal(name, _sent(request, name), "the store cannot read it"))
    text_fields = JSON_TEXT_FIELDS.get(spec)
    if text_fields is not None:
        for name, fails, wanted in text_fields:
            value = document.get(name)
            if isinstance(value, str) and value and fails(value):
                raise InvalidParameter(_refusal(name, value, wanted))
    if (name := FLOAT_FIELDS.get(spec)) is not None and name in document and not _float_like(document[name]):
        raise InvalidParameter(_refusal(name, document[name], "it must be a number"))
    if (name := WEBHOOK_EVENTS.get(spec)) is not None and _unreadable_event(spec, document, name):
        raise InvalidParameter(
            _refusal(name, document.get(name), "each event is an object naming an entity and an action the store knows")
        )
    if spec == TRACES_SEARCH_V2:
        for value in request.params().get("experiment_ids", []):
            if not _int_like(value):
                raise InvalidParameter(_refusal("experiment_ids", value, "each must be an experiment's id"))
    if spec == TRACES_SEARCH_V3 and _unreadable_location(spec, document):
        raise InvalidParameter(
            _refusal("locations", document.get("locations"), "each experiment location names an experiment's id")
        )
    if spec == DATASET_RECORDS:
        for value in request.params().get("max_results", [])[:1]:  # MLflow reads the first
            if _int_like(value) and -(2**31) <= int(value) < 0:  # past an int32 MLflow refuses itself
                raise InvalidParameter(
                    _refusal("max_results", value, "it must not be negative (0 reads the store's default, 1000)")
                )
    token_fails = PAGE_TOKENS.get(spec)
    if token_fails is not None:
        token = _page_token(request)
        if token and token_fails(token):
            raise InvalidParameter(_refusal("page_token", token, "it is no page token of this search"))


def _refusal(name: str, value: object, why: str) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(shown) > MAX_SHOWN:
        shown = shown[:MAX_SHOWN] + "..."
    return f"Invalid value {shown!r} for parameter '{name}' supplied: {why}."


def _sent(request: Request, name: str) -> object:
    if request.spec.method == "GET":
        return request.params().get(name, [None])[0]
    return request.document.get(name)


def _page_token(request: Request) -> str | None:
    """The page token as MLflow reads it: a GET's first `page_token` parameter, else the body's (a string only:
    MLflow refuses any other type itself)."""
    if request.spec.method == "GET" and request.query:
        values = request.params().get("page_token")
        return values[0] if values else None
    token = request.document.get("page_token")
    return token if isinstance(token, str) else None


def _int_like(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _float_like(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    return True


# The online-scoring config's `sample_rate`: MLflow's handler checks only that it is there, then takes `float()`.
FLOAT_FIELDS = {declared("PUT /mlflow/scorers/online-config", 3): "sample_rate"}

# MLflow's WebhookEntity and WebhookAction (mlflow/entities/webhook.py), by their proto enums' names: what
# `WebhookEvent.from_proto` maps; any other (the UNSPECIFIED zero of an event parsed as empty, a number no name has)
# raises a ValueError the handler does not catch.
WEBHOOK_ENTITIES = frozenset(
    {
        "REGISTERED_MODEL",
        "MODEL_VERSION",
        "MODEL_VERSION_TAG",
        "MODEL_VERSION_ALIAS",
        "PROMPT",
        "PROMPT_VERSION",
        "PROMPT_TAG",
        "PROMPT_VERSION_TAG",
        "PROMPT_ALIAS",
        "BUDGET_POLICY",
    }
)
WEBHOOK_ACTIONS = frozenset({"CREATED", "UPDATED", "DELETED", "SET", "EXCEEDED"})
WEBHOOK_EVENTS = {
    declared("PATCH /mlflow/webhooks/{webhook_id:str}"): "events",
    declared("POST /mlflow/webhooks/{webhook_id:str}/test"): "event",
}


def _unreadable_event(spec: Any, document: dict[str, Any], name: str) -> bool:
    """An event of a webhook update (`events`, when any) or test (`event`, when set) that MLflow's handler cannot
    map, read from the request message as it goes on with it (an item that is no object parses as an empty
    event)."""
    message = parsed_message(spec, document)
    if message is None:
        return False
    single = [message.event] if name == "event" and message.HasField("event") else []
    events = list(message.events) if name == "events" else single
    for event in events:
        fields = event.DESCRIPTOR.fields_by_name
        entity = fields["entity"].enum_type.values_by_number.get(event.entity)
        action = fields["action"].enum_type.values_by_number.get(event.action)
        if (
            entity is None
            or entity.name not in WEBHOOK_ENTITIES
            or action is None
            or action.name not in WEBHOOK_ACTIONS
        ):
            return True
    return False


# -- fields MLflow reads as JSON text ---------------------------------------------------------------------------

_NOT_JSON = object()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _dataset_tags_on_create(text: str) -> bool:
    """`create_dataset` reads `tags` when non-empty (`json.loads`, which raises on text that is no JSON), then
    `MLFLOW_USER in tags` of any truthy value and `tags.items()`: only an object, or a falsy value, is read."""
    tags = _loads(text)
    return tags is _NOT_JSON or (bool(tags) and not isinstance(tags, dict))


def _dataset_tags(text: str) -> bool:
    """`set_dataset_tags`: `json.loads(tags).items()`."""
    return not isinstance(_loads(text), dict)


def _dataset_records(text: str) -> bool:
    """`upsert_dataset_records`: `for record in json.loads(records): record.get(...)`: every item an object (an
    empty object or string has none)."""
    records = _loads(text)
    if records is _NOT_JSON or not isinstance(records, list | dict | str):
        return True
    return any(not isinstance(record, dict) for record in records)


def _json_other_than_an_object(text: str) -> bool:
    """JSON text that decodes to anything but an object (`model.keys()`, `scorer.get(...)`); text that is no JSON
    the store refuses itself (400)."""
    value = _loads(text)
    return value is not _NOT_JSON and not isinstance(value, dict)


_OBJECT = "it must be a JSON object, as text"
JSON_TEXT_FIELDS: dict[Any, tuple[tuple[str, Callable[[str], bool], str], ...]] = {
    declared("POST /mlflow/datasets/create", 3): (("tags", _dataset_tags_on_create, _OBJECT),),
    declared("PATCH /mlflow/datasets/{dataset_id:str}/tags", 3): (("tags", _dataset_tags, _OBJECT),),
    declared("POST /mlflow/datasets/{dataset_id:str}/records", 3): (
        ("records", _dataset_records, "it must be a JSON list of objects, as text"),
    ),
    declared("POST /mlflow/scorers/register", 3): (("serialized_scorer", _json_other_than_an_object, _OBJECT),),
    declared("POST /mlflow/runs/log-model"): (("model_json", _json_other_than_an_object, _OBJECT),),
}

TRACES_SEARCH_V2 = declared("GET /mlflow/traces")
TRACES_SEARCH_V3 = declared("POST /mlflow/traces/search", 3)


def _unreadable_location(spec: Any, document: dict[str, Any]) -> bool:
    """A v3 trace search's experiment location whose id `int()` refuses (the store takes it of each), read from the
    request message as MLflow's handler goes on with it: a location's `mlflow_experiment` that is no object parses
    as an empty one."""
    if not document.get("locations"):
        return False
    message = parsed_message(spec, document)
    if message is None:
        return False
    return any(
        location.HasField("mlflow_experiment") and not _int_like(location.mlflow_experiment.experiment_id)
        for location in message.locations
    )


DATASET_RECORDS = declared("GET /mlflow/datasets/{dataset_id:str}/records", 3)


# -- page tokens ----------------------------------------------------------------------------------------------


def _offset_token(token: str) -> bool:
    """`SearchUtils.parse_start_offset_from_page_token`: `base64.b64decode(token)` (a ValueError it does not catch
    for a str outside ASCII), `json.loads` (refused), `parsed.get("offset")` (raises for anything but an object),
    `int(offset)` of a truthy offset (a TypeError for a list or an object, an OverflowError for an infinity)."""
    if not token.isascii():
        return True
    try:
        decoded = base64.b64decode(token)
    except binascii.Error:
        return False
    try:
        parsed = json.loads(decoded)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return True
    offset = parsed.get("offset")
    return bool(offset) and (isinstance(offset, list | dict) or (isinstance(offset, float) and math.isinf(offset)))


def _logged_models_token(token: str) -> bool:
    """`SearchLoggedModelsPaginationToken.decode`: `json.loads(base64.b64decode(token.encode()).decode())`, of
    which only a JSONDecodeError is refused, then `token.get(...)`."""
    try:
        text = base64.b64decode(token.encode()).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError
        return True
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return False
    return not isinstance(parsed, dict)


# The integers a store's SQL takes (SQLite's INTEGER, PostgreSQL's bigint): past them the query fails.
_SQL_INTEGERS = range(-(2**63), 2**63)


def _records_token(token: str) -> bool:
    """`_load_dataset_records`: the cursor `base64(<created time>:<record id>)`, or failing that `int(token)` as an
    offset, whose ValueError nothing catches (nor does the handler, whose every error is Flask's HTML 500); a
    created time or an offset past the SQL integers fails the query."""
    try:
        first, _ = base64.b64decode(token.encode()).decode().split(":", 1)
        return int(first) not in _SQL_INTEGERS
    except ValueError:
        return not _int_like(token) or int(token) not in _SQL_INTEGERS


PAGE_TOKENS: dict[Any, Callable[[str], bool]] = {
    **{
        declared(name, version): _offset_token
        for name, version in (
            ("POST /mlflow/runs/search", 2),
            ("GET /mlflow/registered-models/search", 2),
            ("GET /mlflow/model-versions/search", 2),
            ("GET /mlflow/traces", 2),
            ("POST /mlflow/datasets/search", 3),
            ("GET /mlflow/datasets/search", 3),
            ("POST /mlflow/issues/search", 3),
            ("GET /mlflow/label-schemas/list", 3),
            ("GET /mlflow/review-queues/list", 3),
            ("GET /mlflow/webhooks", 2),
            ("GET /mlflow/gateway/budgets/list", 3),
            ("GET /mlflow/gateway/guardrails/list", 3),
        )
    },
    declared("POST /mlflow/logged-models/search"): _logged_models_token,
    declared("GET /mlflow/datasets/{dataset_id:str}/records", 3): _records_token,
}
