"""Search filters of a renamed workspace: literals compared with an artifact URI name the store's workspace.

A workspace the store knows under another name sees its artifact URIs renamed in every answer (renames.py):
`mlflow-artifacts:/workspaces/<name>/...` where the store keeps `mlflow-artifacts:/workspaces/<store's name>/...`.
A search filter comparing one of those fields with a URI the caller was shown is renamed the other way before it
leaves, so it matches what the caller sees; nothing else of a filter (params, tags, names: user data) is touched.
The fields MLflow 3.17.2's stores filter on and the gateway renames in their answers:

- a run's `artifact_uri` (`attributes.artifact_uri`, also `attr.`, `run.` or no prefix): runs/search and the web
  UI's GraphQL `mlflowSearchRuns`;
- a model version's `source_path` (its `source`): model-versions/search, also as each workspace's part of the
  account scope's search;
- a trace's tag `mlflow.artifactLocation`: the v2 and v3 trace searches and the filter-correlation read, and as
  `trace.tag.mlflow.artifactLocation` in each of the `filters` of MLflow 3's trace metrics query
  (`/api/3.0/mlflow/traces/metrics`: a list of filters of one comparison each, `=` only, read by
  `SearchTraceMetricsUtils`), also as each workspace's part of the account scope's.

(An experiment's `artifact_location`, a logged model's and a dataset's location are not filterable fields.) The
other routes of MLflow 3.17.2 whose requests carry a `filter`, `filter_string`, `filters` or `order_by` compare
nothing that depends on the workspace's name: experiments/search (name, id, times, tags), registered-models/search
(name, tags), logged-models/search (name, ids, source run, status, metrics, params, tags), the evaluation datasets'
search (name, authors, times, tags), issues/search (status, source run) and the MCP server registry's searches
(names, status, times). Ordering runs by `artifact_uri` is unchanged by the rename: every URI under the workspace's
root carries the same root. The one filter not renamed is the one a store keeps: an online scorer's
`filter_string` (scorers/online-config), which the store's own scorer job evaluates later.

A literal is renamed only where it starts with the URI root `mlflow-artifacts:/workspaces/<name>` followed by its
`/` (or, in a pattern, a wildcard or the end), and only to the store's name of the caller's own workspace: a
literal naming any other workspace is left as it is, so a filter can never be renamed into another workspace's
store name. A literal naming the store's own name (never shown to the caller, who cannot match it) is renamed to
the reserved name `workspaces`, which no workspace has: it matches nothing, as it matches nothing the caller sees.

Other LIKE/ILIKE patterns are forwarded unchanged when they match a URI under the caller's name exactly when they
match it under the store's name (`%/model/%`, `%.json`): computed by matching the pattern against both roots (with
a backslash read both as MLflow's SQLite and PostgreSQL stores read it). A pattern whose result depends on the
workspace's name without starting with its root (`%team-c%`), and a regular expression (RLIKE) on the trace tag
that does not start with `^` and the root, are refused (400 INVALID_PARAMETER_VALUE): no rewrite of them would
match exactly what the caller sees, and MLflow's filters have no OR to write one. Workspace names hold neither `%`,
`_` nor a backslash (`[a-z0-9-]`), so a root written into a pattern needs no escaping.

MLflow parses these filters with sqlparse (`mlflow.utils.search_utils`); the gateway does not depend on MLflow, so
the comparisons are found with the same token rules as the account scope's parser (index/filters.py): quoted
strings taken verbatim between their quotes, keys unquoted when a part is quoted whole. A filter this reading
cannot follow is forwarded as it came, for the store to refuse. The unit tests check the literals found against
MLflow's own parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec

from gateway.core.errors import InvalidParameter
from gateway.core.filter_syntax import IDENT, NUMBER, OPERATOR, SPLIT_PARTS, STRING, quoted, unquote_key
from gateway.core.route_table import Body, RouteSpec
from gateway.federation.renames import TRACE_LOCATION_TAG

ROOT = "mlflow-artifacts:/workspaces/"
# MLflow (WorkspaceNameValidator) and the gateway both reserve it: no store has a workspace of that name.
NOWHERE = "workspaces"


@dataclass(frozen=True, slots=True)
class Field:
    """A filterable field holding an artifact URI: the entity prefixes that name it ("" for none) and its key."""

    entities: frozenset[str]
    key: str
    shown: str  # how an error names it
    depth: int = 1  # how many parts of a key its entity prefix is (`trace.tag.<key>`: 2)


RUN_URI = Field(frozenset({"", "attribute", "attributes", "attr", "run"}), "artifact_uri", "attributes.artifact_uri")
VERSION_SOURCE = Field(frozenset({"", "attribute"}), "source_path", "source_path")
TRACE_LOCATION = Field(frozenset({"tag", "tags"}), TRACE_LOCATION_TAG, f"tags.`{TRACE_LOCATION_TAG}`")
# The trace metrics query's filters name a view, an entity and a key: `trace.tag.<key>` (MLflow splits the key at
# its first two dots and takes backticks off the view and quotes and backticks off the key; the entity is exact).
TRACE_METRICS_LOCATION = Field(
    frozenset({"trace.tag"}), TRACE_LOCATION_TAG, f"trace.tag.`{TRACE_LOCATION_TAG}`", depth=2
)

# (method, path, API version) → the field and the request fields (body, or query for GET) holding filters.
FILTERS: dict[tuple[str, str, int], tuple[Field, tuple[str, ...]]] = {
    ("POST", "/mlflow/runs/search", 2): (RUN_URI, ("filter",)),
    ("GET", "/mlflow/model-versions/search", 2): (VERSION_SOURCE, ("filter",)),
    ("GET", "/mlflow/traces", 2): (TRACE_LOCATION, ("filter",)),
    ("POST", "/mlflow/traces/search", 3): (TRACE_LOCATION, ("filter",)),
    (
        "POST",
        "/mlflow/traces/calculate-filter-correlation",
        3,
    ): (TRACE_LOCATION, ("filter_string1", "filter_string2", "base_filter")),
    ("POST", "/mlflow/traces/metrics", 3): (TRACE_METRICS_LOCATION, ("filters",)),
}


def renames_filters(spec: RouteSpec) -> bool:
    return spec.body is Body.GRAPHQL or (spec.method, spec.path, spec.version) in FILTERS


def rename_request(spec: RouteSpec, query: str, body: bytes | None, user: str, store: str) -> tuple[str, bytes | None]:
    """The query and body of a search of workspace `user` (`store` on its store), their filters renamed."""
    if spec.body is Body.GRAPHQL:
        return query, _graphql(body, user, store) if body else body
    wanted = FILTERS.get((spec.method, spec.path, spec.version))
    if wanted is None:
        return query, body
    field, names = wanted
    if spec.method == "GET":
        return _query(query, names, field, user, store), body
    if not body:
        return query, body
    return query, _document(body, names, field, user, store)


def _query(query: str, names: tuple[str, ...], field: Field, user: str, store: str) -> str:
    if not any(f"{name}=" in query for name in names):
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    renamed = [(k, rename_filter(v, field, user, store) if k in names else v) for k, v in pairs]
    return query if renamed == pairs else urlencode(renamed)


def _document(body: bytes, names: tuple[str, ...], field: Field, user: str, store: str) -> bytes:
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    if not isinstance(document, dict):
        return body
    changed = False
    for name in names:
        value = document.get(name)
        if isinstance(value, str) and (renamed := rename_filter(value, field, user, store)) != value:
            document[name] = renamed
            changed = True
        elif isinstance(value, list):  # the trace metrics query's `filters`: one comparison each
            items = [rename_filter(item, field, user, store) if isinstance(item, str) else item for item in value]
            if items != value:
                document[name] = items
                changed = True
    return msgspec.json.encode(document) if changed else body


def _graphql(body: bytes, user: str, store: str) -> bytes:
    """The web UI's `mlflowSearchRuns` (the one allowed GraphQL field with a filter: graphql.py) sends its filter
    as the `filter` of its one variable `input`."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    given: Any = document.get("variables") if isinstance(document, dict) else None
    given = given.get("input") if isinstance(given, dict) else None
    value = given.get("filter") if isinstance(given, dict) else None
    if not isinstance(given, dict) or not isinstance(value, str):
        return body
    renamed = rename_filter(value, RUN_URI, user, store)
    if renamed == value:
        return body
    given["filter"] = renamed
    return msgspec.json.encode(document)


# -- finding the literals ---------------------------------------------------------------------------

_TOKENS = re.compile(
    r"(?P<space>\s+)"
    rf"|(?P<string>{STRING})"
    rf"|(?P<number>{NUMBER})"
    rf"|(?P<ident>{IDENT})"
    rf"|(?P<operator>{OPERATOR})"
    r"|(?P<punct>[(),])"
)
_COMPARISONS = frozenset({"=", "!=", "LIKE", "ILIKE", "RLIKE"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    start: int


def _tokens(text: str) -> list[_Token] | None:
    found: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKENS.match(text, position)
        if match is None:
            return None
        kind = match.lastgroup or ""
        if kind != "space":
            found.append(_Token(kind, match.group(0), position))
        position = match.end()
    return found


def _names(token: _Token, field: Field) -> bool:
    parts = list(SPLIT_PARTS.finditer(token.text))
    if not parts:
        return False
    if len(parts) == 1:
        return "" in field.entities and unquote_key(parts[0].group(0)) == field.key
    if len(parts) <= field.depth:
        return False
    entity = ".".join(unquote_key(part.group(0)) for part in parts[: field.depth])
    return entity in field.entities and unquote_key(token.text[parts[field.depth - 1].end() + 1 :]) == field.key


def _literal(token: _Token) -> bool:
    """A string value as MLflow reads one: single quotes, or double quotes (which sqlparse reads as a name)."""
    if token.kind == "string":
        return True
    return token.kind == "ident" and quoted(token.text, '"') and len(list(SPLIT_PARTS.finditer(token.text))) == 1


def rename_filter(text: str, field: Field, user: str, store: str) -> str:
    """`text` with each literal compared with `field` renamed from workspace `user` to `store` (see the module)."""
    if ROOT not in text.lower() and "LIKE" not in text.upper():
        return text  # no root written, and no pattern that could read a name without writing it
    tokens = _tokens(text)
    if tokens is None:
        return text
    pieces: list[str] = []
    done = 0
    for index in range(len(tokens) - 2):
        key, op, value = tokens[index : index + 3]
        if key.kind != "ident" or not _names(key, field) or not _literal(value):
            continue
        comparator = op.text.upper()
        if comparator not in _COMPARISONS or op.kind not in ("operator", "ident"):
            continue
        renamed = _renamed(value.text[1:-1], comparator, field, user, store)
        if renamed is None:
            continue
        pieces.append(text[done : value.start + 1])
        pieces.append(renamed)
        done = value.start + len(value.text) - 1
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


# -- renaming one literal ---------------------------------------------------------------------------


def _renamed(value: str, comparator: str, field: Field, user: str, store: str) -> str | None:
    """The literal to send in place of `value`, or None to send it as it is."""
    if comparator in ("=", "!="):
        for name, to in ((user, store), (store, NOWHERE)):
            if value.startswith(f"{ROOT}{name}/"):
                return f"{ROOT}{to}{value[len(ROOT) + len(name) :]}"
        return None
    if comparator == "RLIKE":
        return _regex(value, field, user, store)
    fold: Callable[[str], str] = str.lower if comparator == "ILIKE" else str
    for name, to in ((user, store), (store, NOWHERE)):
        root = f"{ROOT}{name}"
        head, after = value[: len(root)], value[len(root) : len(root) + 1]
        if fold(head) == root and after in ("", "/", "%", "_"):
            return f"{ROOT}{to}{value[len(root) :]}"
    if all(
        _residues(items, f"{ROOT}{user}/", fold) == _residues(items, f"{ROOT}{store}/", fold)
        for items in _readings(value)
    ):
        return None
    raise InvalidParameter(
        f"The pattern {value!r} on {field.shown} depends on the workspace's name in its artifact URIs without "
        f"starting with them: start it with '{ROOT}{user}/' (for example '{ROOT}{user}/%'), or leave the "
        "workspace's name out of it."
    )


def _regex(value: str, field: Field, user: str, store: str) -> str:
    if "|" not in value:
        for name, to in ((user, store), (store, NOWHERE)):
            root = f"^{ROOT}{name}"
            after = value[len(root) : len(root) + 1]
            if value.startswith(root) and after in ("", "/", ".", "(", "[", "$"):
                return f"^{ROOT}{to}{value[len(root) :]}"
    raise InvalidParameter(
        f"A regular expression (RLIKE) on {field.shown} must start with '^{ROOT}{user}/' in this workspace, "
        f"without '|': {value!r} could match its artifact URIs otherwise than they are shown. LIKE and ILIKE "
        "patterns are read whole."
    )


# A LIKE pattern's items: a literal character, `_` (one character) or `%` (any run of characters).
_ONE, _ANY = "_", "%"
Item = tuple[str, str]  # (kind, character): kind "c" for a literal


def _readings(value: str) -> list[tuple[Item, ...]]:
    """The pattern's items as a store reads it: a backslash escapes on PostgreSQL and MySQL, not on SQLite."""
    plain = tuple(_item(c) for c in value)
    if "\\" not in value:
        return [plain]
    escaped: list[Item] = []
    index = 0
    while index < len(value):
        if value[index] == "\\" and index + 1 < len(value):
            escaped.append(("c", value[index + 1]))
            index += 2
            continue
        escaped.append(_item(value[index]))
        index += 1
    return [plain, tuple(escaped)]


def _item(character: str) -> Item:
    if character == "%":
        return (_ANY, "")
    if character == "_":
        return (_ONE, "")
    return ("c", character)


def _residues(items: tuple[Item, ...], prefix: str, fold: Callable[[str], str]) -> frozenset[tuple[Item, ...]]:
    """What is left of the pattern for the rest of a URI once `prefix` is matched: the set of remaining patterns
    (the rest matches the pattern after `prefix` exactly when it matches one of them). A remainder of `%` alone
    matches everything and stands for all."""

    def closure(states: set[int]) -> set[int]:
        pending = list(states)
        while pending:
            index = pending.pop()
            if index < len(items) and items[index][0] == _ANY and index + 1 not in states:
                states.add(index + 1)
                pending.append(index + 1)
        return states

    states = closure({0})
    for character in prefix:
        following: set[int] = set()
        for index in states:
            if index >= len(items):
                continue
            kind, literal = items[index]
            if kind == _ANY:
                following.add(index)
            elif kind == _ONE or fold(literal) == fold(character):
                following.add(index + 1)
        states = closure(following)
        if not states:
            return frozenset()
    rests = {items[index:] for index in states}
    if any(all(kind == _ANY for kind, _ in rest) and rest for rest in rests):
        return frozenset({((_ANY, ""),)})
    return frozenset(tuple((kind, fold(literal)) for kind, literal in rest) for rest in rests)
