"""One decoded truth: the guard decides on the document the store will act on, and the store gets exactly it.

A JSON request body is decoded once (msgspec: escapes resolved; of repeated keys the last wins, as in
MLflow's own parser) and the store receives msgspec's compact re-encoding of that document, never the
client's bytes. An escaped key (`"run\\u0049d"`), a repeated key, odd whitespace or a compressed body
therefore cannot make the store read anything other than what was authorized.

Refused with 400 INVALID_PARAMETER_VALUE:

- a body that is not one JSON object (MLflow decodes a JSON *string* body a second time);
- any key, at any depth, that MLflow's parser takes as an alias of a snake_case field (the proto JSON
  names `runId`, `traceInfo`, `sourceRunId`, ...): the guard reads the snake_case names only. Not refused
  below the fields whose object holds keys of the caller's choosing (`USER_KEYED_PATHS`: a trace's `tags`
  and `trace_metadata`, an assessment's `metadata`, a feedback's or expectation's `value`, ...): MLflow
  reads those keys as data, so a tag named `artifactLocation` is no alias;
- nesting deeper than MAX_DEPTH;
- a field of `RequestIds` (the ids the guard reads, on every route) of another type than a string or a
  list of strings, worded as MLflow words a parameter of the wrong type, or holding a NUL character.

The forwarder words these refusals as the store would where an MLflow server refuses the same body too
(mlflow_requests.py).

Keys naming objects (`*_id`, `*_ids`, `*_uuid`) that the top-level `RequestIds` does not cover, at any
depth, are listed with their paths (`metrics[].model_id`) so the guard authorizes each or refuses the
call: a body cannot carry an id past the guard by nesting it.

Query strings get the same treatment: the store receives the re-encoding of the pairs the guard read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec

from gateway.core.errors import InvalidParameter, malformed_json
from gateway.federation.graphql import GraphqlCall
from gateway.federation.mlflow_aliases import PROTO_JSON_ALIASES, USER_KEYED_PATHS
from gateway.federation.mlflow_requests import invalid_value
from gateway.federation.schemas import RequestIds

MAX_DEPTH = 64
ID_SUFFIXES = ("_id", "_ids", "_uuid")
TOP_LEVEL_IDS = frozenset(RequestIds.__struct_fields__)
ID_TYPES = {field.name: field.type for field in msgspec.structs.fields(RequestIds)}

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class NestedId:
    """An object id the top-level fields do not cover: where it is (`models[].model_id`) and its value."""

    path: str
    value: Any


@dataclass(slots=True)
class CanonicalBody:
    encoded: bytes  # what the store receives
    document: dict[str, Any]
    ids: RequestIds
    nested: list[NestedId] = field(default_factory=list)
    graphql: GraphqlCall | None = None  # a GraphQL body's one allowed operation


def canonical_body(raw: bytes) -> CanonicalBody:
    """Decode, check and re-encode a JSON request body (see the module docstring for what is refused)."""
    try:
        document = _decoder.decode(raw)
    except RecursionError:
        raise InvalidParameter(f"The request body is nested more than {MAX_DEPTH} levels deep.") from None
    except msgspec.DecodeError as exc:
        raise malformed_json(raw, exc) from None
    if type(document) is not dict:
        raise InvalidParameter("The request body must be one JSON object.")
    encoded = _encoder.encode(document)
    has_nested_ids = _inspect(document, encoded)
    try:
        ids = msgspec.convert(document, RequestIds)
    except msgspec.ValidationError:
        raise InvalidParameter(_mistyped_id(document)) from None
    if b"\\u0000" in encoded:  # rare: only then are the ids looked through
        _refuse_nul(ids)
    nested = _nested_ids(document) if has_nested_ids else []
    return CanonicalBody(encoded, document, ids, nested)


def _refuse_nul(ids: RequestIds) -> None:
    """No id or name the guard reads holds a NUL character: the gateway's database (PostgreSQL text) cannot hold
    or look one up, so a call naming one failed after the store had acted (`registered-models/create` of such a
    name was made, then undone when its owner could not be recorded, and answered 503, which the client retried) or
    before it with a 503 of an unreachable database. MLflow's own names and ids never hold one."""
    for name in TOP_LEVEL_IDS:
        value = getattr(ids, name)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and "\x00" in item for item in values):
            raise InvalidParameter(f"Invalid value for parameter '{name}' supplied: it holds a NUL character.")


# A query of plain `name=value` pairs in characters that neither parsing nor encoding changes (RFC 3986's
# unreserved ones) is its own re-encoding: the common case (`run_id=...`) skips parsing.
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]*(?:&[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]*)*")


def canonical_query(query: str) -> str:
    """The query string as the pairs the gateway parsed, re-encoded (percent-encoding normalised)."""
    if not query:
        return ""
    if _PLAIN_QUERY.fullmatch(query):
        return query
    try:
        text = query.encode("latin-1").decode()  # ASGI hands the raw bytes over as latin-1; stores read UTF-8
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeError:
        raise InvalidParameter("The query string must be UTF-8 (percent-encoded).") from None
    return urlencode(pairs)


def reencoded_headers(headers: list[tuple[str, str]], media_type: str) -> list[tuple[str, str]]:
    """The headers of a body the gateway re-encoded: its own content type, and no content encoding."""
    kept = [(name, value) for name, value in headers if name not in ("content-type", "content-encoding")]
    kept.append(("content-type", media_type))
    return kept


def _inspect(document: dict[str, Any], encoded: bytes) -> bool:
    """Refuse alias keys and excessive depth; tell whether ids other than the top-level fields occur.

    Walks the document level by level and looks at each level's keys as one set (C speed): a log-batch
    of 1,000 metrics costs a few set unions, not a Python step per value. Once every container of the
    document has been met (their number is bounded by the brackets in the re-encoding), the values of
    the last level are not visited at all.
    """
    bound = encoded.count(b"{") + encoded.count(b"[")
    level: list[Any] = [document]
    met = 1
    depth = 0
    found_ids = False
    aliases_checked = False
    while level:
        dicts = [node for node in level if type(node) is dict]
        if dicts:
            keys: set[str] = set().union(*dicts)
            if not aliases_checked and not PROTO_JSON_ALIASES.isdisjoint(keys):
                alias = _field_alias(document)  # once, by path: a key the caller chose may look like one
                if alias is not None:
                    raise InvalidParameter(
                        f"Field '{alias}' is refused: use the snake_case field names of the MLflow REST API "
                        f"('{_snake(alias)}')."
                    )
                aliases_checked = True
            if depth:
                found_ids = found_ids or any(key.endswith(ID_SUFFIXES) for key in keys)
            else:
                found_ids = any(key.endswith(ID_SUFFIXES) for key in keys - TOP_LEVEL_IDS)
        if met >= bound:
            break
        below = [value for node in dicts for value in node.values() if type(value) is dict or type(value) is list]
        below += [value for node in level if type(node) is list for value in node if type(value) in (dict, list)]
        if below and depth >= MAX_DEPTH:
            raise InvalidParameter(f"The request body is nested more than {MAX_DEPTH} levels deep.")
        met += len(below)
        level = below
        depth += 1
    return found_ids


def _field_alias(document: dict[str, Any]) -> str | None:
    """The first (by name) alias key where MLflow's parser reads keys as field names, that is anywhere but below
    a path of `USER_KEYED_PATHS`. Not below MAX_DEPTH: the caller refuses such a body anyway."""
    found: list[str] = []
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        if type(node) is dict:
            found.extend(PROTO_JSON_ALIASES.intersection(node))
            for key, value in node.items():
                if type(value) is dict or type(value) is list:
                    where = f"{path}.{key}" if path else key
                    if where not in USER_KEYED_PATHS:
                        stack.append((value, where, depth + 1))
        else:
            stack.extend((value, f"{path}[]", depth + 1) for value in node if type(value) in (dict, list))
    return min(found) if found else None


def _nested_ids(document: dict[str, Any]) -> list[NestedId]:
    found: list[NestedId] = []

    def visit(node: Any, path: str, top: bool) -> None:
        if type(node) is dict:
            for key, value in node.items():
                where = f"{path}.{key}" if path else key
                if key.endswith(ID_SUFFIXES) and not (top and key in TOP_LEVEL_IDS):
                    found.append(NestedId(where, value))
                if type(value) is dict or type(value) is list:
                    visit(value, where, False)
        elif type(node) is list:
            for value in node:
                if type(value) is dict or type(value) is list:
                    visit(value, f"{path}[]", False)

    visit(document, "", True)
    return found


def _mistyped_id(document: dict[str, Any]) -> str:
    """The first id field of the wrong type, in MLflow's words for a parameter of the wrong type."""
    for name, value in document.items():
        kind = ID_TYPES.get(name)
        if kind is None:
            continue
        try:
            msgspec.convert(value, kind)
        except msgspec.ValidationError:
            return invalid_value(name, value)
    return "Invalid request body."  # not reached: RequestIds failed on one of its fields


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
