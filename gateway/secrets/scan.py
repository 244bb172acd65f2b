"""What the leak guard looks for, and where: the spellings of a secret's value, and the text a run write carries.

Pure functions over values and decoded bodies (tests/unit/test_leak_scan.py holds their properties).

Where: every string of the canonical body of a write that carries text into a run (the `RUN_TEXT` routes
of core/route_table.py: log-parameter, set-tag, log-metric, log-batch, runs/update, log-model,
log-inputs), except the values of id fields (`*_id`, `*_ids`, `*_uuid`: the run, model and experiment
ids the guard checked and the store resolves) and a run's `status` (an enum: MLflow refuses any other
string, and a run whose secrets cannot be checked can still end). The keys of the body are the protocol's
field names, which no store keeps; numbers are not text (MLflow refuses a number where it expects a
string). Each string is described by a fixed vocabulary (`param value`, `metric name`, ...), never by its
own content or the body's keys: a message about a refused write says where, never what.

What: a value with surrounding white space removed (a value kept in a file often ends in a new line that
the script strips), as it is, percent-encoded (a password inside a connection URI) and escaped as inside
a JSON string (a configuration dumped as JSON). A value shorter than MIN_CHECKED_CHARACTERS once stripped
is not looked for: one to three characters occur in ordinary text all the time, and so short a value
protects nothing. Case matters; a value encoded in any other way (base64, reversed, split over two
fields) is not found: the guard catches accidents, not a script set on leaking.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

from gateway.core.route_table import RUNS_LOG_METRIC, RUNS_LOG_PARAMETER, RUNS_SET_TAG, RouteSpec

MIN_CHECKED_CHARACTERS = 4  # characters of UTF-8 text; bytes of a value that is not UTF-8
ID_SUFFIXES = ("_id", "_ids", "_uuid")
ENUM_FIELDS = frozenset({"status"})  # top-level fields whose values are names of the protocol's enums
RUN_NAME_TAG = "mlflow.runName"

# Where a string sits in the body (list items as `[]`), described for a message.
_KINDS = {
    "run_name": "run name",
    "params[].key": "param key",
    "params[].value": "param value",
    "tags[].key": "tag key",
    "tags[].value": "tag value",
    "metrics[].key": "metric name",
    "model_json": "logged model (tag mlflow.log-model.history)",
}
# The top-level `key` and `value` of the routes that write one param, tag or metric.
_TOP_LEVEL_KINDS: dict[RouteSpec, dict[str, str]] = {
    RUNS_LOG_PARAMETER: {"key": "param key", "value": "param value"},
    RUNS_SET_TAG: {"key": "tag key", "value": "tag value"},
    RUNS_LOG_METRIC: {"key": "metric name"},
}


@dataclass(frozen=True, slots=True)
class Text:
    """One string of a write: what kind of field holds it, and its UTF-8 bytes."""

    kind: str
    value: bytes


def spellings(value: bytes) -> tuple[bytes, ...]:
    """The byte strings a write is searched for to find `value`; none when the value is too short to check."""
    core = value.strip()
    try:
        text = core.decode()
    except UnicodeDecodeError:
        return (core,) if len(core) >= MIN_CHECKED_CHARACTERS else ()
    if len(text) < MIN_CHECKED_CHARACTERS:
        return ()
    found = dict.fromkeys([core])
    for spelled in (
        quote(text, safe=""),
        quote_plus(text, safe=""),
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
    ):
        found.setdefault(spelled.encode("utf-8", "surrogatepass"))
    return tuple(found)


def written_texts(spec: RouteSpec, document: Mapping[str, Any]) -> list[Text]:
    """Every string of a run write's body that a store may keep, each with the kind of field it is in."""
    found: list[Text] = []
    top = _TOP_LEVEL_KINDS.get(spec, {})

    def visit(node: Any, path: str, kind: str | None) -> None:
        if type(node) is str:
            found.append(Text(kind or _kind(path), node.encode("utf-8", "surrogatepass")))
        elif type(node) is dict:
            names_run = node.get("key") == RUN_NAME_TAG  # a tag {key: mlflow.runName, value}: the run's name
            for name, value in node.items():
                if name.endswith(ID_SUFFIXES) or (not path and name in ENUM_FIELDS):
                    continue
                named = top.get(name) if not path else None
                if name == "value" and names_run:
                    named = "run name (tag mlflow.runName)"
                visit(value, f"{path}.{name}" if path else name, named)
        elif type(node) is list:
            for value in node:
                visit(value, f"{path}[]", None)

    visit(document, "", None)
    return found


def _kind(path: str) -> str:
    kind = _KINDS.get(path)
    if kind is not None:
        return kind
    if path.startswith("datasets[]"):
        return "dataset input"
    if path.startswith("metrics[]"):
        return "metric field"
    return "field"


def leaked_into(texts: Sequence[Text], needles: Sequence[bytes]) -> str | None:
    """The kind of the first text that holds one of `needles` (a value's spellings), or None."""
    for text in texts:
        for needle in needles:
            if needle in text.value:
                return text.kind
    return None
