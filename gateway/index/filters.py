"""MLflow's search grammar (filters and order_by of runs and experiments) parsed into a typed AST.

MLflow parses filters with sqlparse and a stack of special cases; this is a small hand-written
tokenizer and parser for the same language, so the account scope accepts what a workspace store
accepts and refuses the rest with an INVALID_PARAMETER_VALUE that names the offending token.

Two of MLflow's habits are kept on purpose, because users compare account-wide results with
per-workspace ones: string literals are taken verbatim between their quotes (no unescaping), and a
key is unquoted only when the whole key is quoted (`tags.\\`mlflow.runName\\``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.errors import InvalidParameter
from gateway.core.filter_syntax import IDENT, NUMBER, OPERATOR, SPLIT_PARTS, STRING, quoted, unquote_key


class Entity(StrEnum):
    METRIC = "metric"
    PARAM = "param"
    TAG = "tag"
    ATTRIBUTE = "attribute"
    DATASET = "dataset"


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    LIKE = "LIKE"
    ILIKE = "ILIKE"
    IN = "IN"
    NOT_IN = "NOT IN"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"


# A comparison's right-hand side: a string, a number, a list of strings, or nothing (IS [NOT] NULL).
Value = str | int | float | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Comparison:
    entity: Entity
    key: str
    op: Op
    value: Value


@dataclass(frozen=True, slots=True)
class OrderKey:
    entity: Entity
    key: str
    ascending: bool


NUMERIC_OPS = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE})
STRING_OPS = frozenset({Op.EQ, Op.NE, Op.LIKE, Op.ILIKE})
NULL_OPS = frozenset({Op.IS_NULL, Op.IS_NOT_NULL})
LIST_OPS = frozenset({Op.IN, Op.NOT_IN})

# -- tokens -----------------------------------------------------------------------------------------


class Kind(StrEnum):
    IDENT = "identifier"
    STRING = "string"
    NUMBER = "number"
    OPERATOR = "operator"
    KEYWORD = "keyword"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    position: int
    parts: tuple[str, ...] = ()  # an identifier's dot-separated parts, as written (quotes kept)
    integer: bool = False  # a number written without a fraction or exponent


KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ASC", "DESC"})
# Words MLflow's SQL tokenizer reads as keywords even after a dot, so it refuses a key with such an
# unquoted part (`metrics.as`, `tags.x.from`); quoted (metrics.`as`) they are names like any other.
RESERVED_PARTS = frozenset({"as", "case", "from", "in", "using", "values"})
# MLflow's order_by parser reads `as` in a key as a name, except as the key's last part with no
# direction after it (metrics.as.a and `metrics.a.as DESC` order by a metric; `metrics.a.as` is refused).
_PATTERNS: tuple[tuple[str | None, re.Pattern[str]], ...] = (
    (None, re.compile(r"\s+")),
    ("string", re.compile(STRING)),
    ("number", re.compile(NUMBER)),
    ("ident", re.compile(IDENT)),
    ("operator", re.compile(OPERATOR)),
    ("(", re.compile(r"\(")),
    (")", re.compile(r"\)")),
    (",", re.compile(r",")),
)


def _reserved(parts: tuple[str, ...], order_by: bool) -> bool:
    return any(part.lower() in RESERVED_PARTS and not (order_by and part.lower() == "as") for part in parts)


def tokenize(text: str, what: str = "filter", *, order_by: bool = False) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        for kind, pattern in _PATTERNS:
            match = pattern.match(text, position)
            if match is None:
                continue
            word = match.group(0)
            if kind == "string":
                tokens.append(Token(Kind.STRING, word, position))
            elif kind == "number":
                integer = not any(c in word for c in ".eE")
                tokens.append(Token(Kind.NUMBER, word, position, integer=integer))
            elif kind == "ident":
                parts = tuple(p.group(0) for p in SPLIT_PARTS.finditer(word))
                if len(parts) == 1 and word.upper() in KEYWORDS:
                    tokens.append(Token(Kind.KEYWORD, word.upper(), position))
                elif _reserved(parts, order_by):
                    raise InvalidParameter(
                        f"Invalid {what} {text!r}: {word!r} has an SQL keyword as a part of its name; "
                        "quote that part with backticks."
                    )
                else:
                    tokens.append(Token(Kind.IDENT, word, position, parts=parts))
            elif kind == "operator":
                tokens.append(Token(Kind.OPERATOR, word, position))
            elif kind is not None:
                tokens.append(Token(Kind(kind), word, position))
            position = match.end()
            break
        else:
            bad = re.match(r"\S+", text[position:])
            word = bad.group(0) if bad else text[position]
            raise InvalidParameter(f"Invalid {what} {text!r}: unexpected {word!r} at position {position}.")
    return tokens


# -- clauses ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Clause:
    """`identifier operator value` before the grammar of a particular search checks it."""

    identifier: Token
    op: Op
    value: Token | tuple[Token, ...] | None


class _Reader:
    def __init__(self, text: str, tokens: list[Token], what: str) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.what = what

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def next(self, expected: str) -> Token:
        token = self.peek()
        if token is None:
            raise self.error(f"expected {expected} at the end")
        self.index += 1
        return token

    def error(self, detail: str) -> InvalidParameter:
        return InvalidParameter(f"Invalid {self.what} {self.text!r}: {detail}.")

    def unexpected(self, token: Token, expected: str) -> InvalidParameter:
        return self.error(f"expected {expected}, found {token.text!r} at position {token.position}")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind is Kind.KEYWORD and token.text == word:
            self.index += 1
            return True
        return False


def _clauses(text: str) -> list[_Clause]:
    reader = _Reader(text, tokenize(text), "filter")
    clauses: list[_Clause] = []
    if not reader.tokens:
        return clauses
    while True:
        clauses.append(_clause(reader))
        token = reader.peek()
        if token is None:
            return clauses
        if token.kind is Kind.KEYWORD and token.text == "OR":
            raise reader.error(
                f"OR at position {token.position} is not supported; MLflow filters only combine with AND"
            )
        if not (token.kind is Kind.KEYWORD and token.text == "AND"):
            raise reader.unexpected(token, "AND")
        reader.index += 1


def _clause(reader: _Reader) -> _Clause:
    identifier = reader.next("an identifier such as metrics.accuracy")
    if identifier.kind is not Kind.IDENT:
        raise reader.unexpected(identifier, "an identifier such as metrics.accuracy or params.lr")
    token = reader.next("a comparison operator")
    if token.kind is Kind.OPERATOR:
        if token.text in ("<>", "=="):
            replacement = "!=" if token.text == "<>" else "="
            raise reader.error(
                f"operator {token.text!r} at position {token.position} is not supported; use {replacement!r}"
            )
        value = reader.next("a value")
        if value.kind not in (Kind.STRING, Kind.NUMBER, Kind.IDENT):
            raise reader.unexpected(value, "a value")
        return _Clause(identifier, Op(token.text), value)
    if token.kind is not Kind.KEYWORD:
        raise reader.unexpected(token, "a comparison operator")
    if token.text == "IS":
        negated = reader.keyword("NOT")
        null = reader.next("NULL")
        if not (null.kind is Kind.KEYWORD and null.text == "NULL"):
            raise reader.unexpected(null, "NULL")
        return _Clause(identifier, Op.IS_NOT_NULL if negated else Op.IS_NULL, None)
    negated = token.text == "NOT"
    if negated:
        token = reader.next("IN")
        if token.kind is Kind.KEYWORD and token.text in ("LIKE", "ILIKE"):
            raise reader.error(f"NOT {token.text} at position {token.position} is not supported")
        if not (token.kind is Kind.KEYWORD and token.text == "IN"):
            raise reader.unexpected(token, "IN")
    if token.text in ("LIKE", "ILIKE"):
        value = reader.next("a pattern")
        if value.kind not in (Kind.STRING, Kind.NUMBER, Kind.IDENT):
            raise reader.unexpected(value, "a quoted pattern")
        return _Clause(identifier, Op(token.text), value)
    if token.text != "IN":
        raise reader.unexpected(token, "a comparison operator")
    opening = reader.next("(")
    if opening.kind is not Kind.LPAREN:
        raise reader.unexpected(opening, "a parenthesised list such as ('a', 'b')")
    items: list[Token] = []
    while True:
        item = reader.next("a quoted string or )")
        if item.kind is Kind.RPAREN and items:
            break
        if item.kind is Kind.RPAREN:
            raise reader.error("IN needs a non-empty list of quoted strings")
        items.append(item)
        separator = reader.next(", or )")
        if separator.kind is Kind.RPAREN:
            break
        if separator.kind is not Kind.COMMA:
            raise reader.unexpected(separator, ", or )")
    return _Clause(identifier, Op.NOT_IN if negated else Op.IN, tuple(items))


# -- identifiers and values -------------------------------------------------------------------------


def _string(token: Token, where: str) -> str:
    """A quoted string value: single quotes, or double quotes (which the tokenizer reads as a name)."""
    if token.kind is Kind.STRING:
        return token.text[1:-1]
    if token.kind is Kind.IDENT and len(token.parts) == 1 and quoted(token.text, '"'):
        return token.text[1:-1]
    raise InvalidParameter(
        f"Expected a quoted string value for {where} (e.g. 'my-value'), found {token.text!r} at position "
        f"{token.position}."
    )


def _strings(tokens: Iterable[Token], where: str) -> tuple[str, ...]:
    return tuple(_string(token, where) for token in tokens)


def _number(token: Token, where: str) -> int | float:
    if token.kind is not Kind.NUMBER:
        raise InvalidParameter(
            f"Expected a numeric value for {where}, found {token.text!r} at position {token.position}."
        )
    if not token.integer:
        return float(token.text)
    try:
        return int(token.text)
    except ValueError:  # more than the 4,300 digits `int` reads
        raise InvalidParameter(f"The number for {where} at position {token.position} has too many digits.") from None


def _split(token: Token, entities: dict[str, Entity]) -> tuple[Entity, str]:
    """`metrics.accuracy` → (METRIC, "accuracy"); a name without a prefix is an attribute."""
    parts = token.parts
    if len(parts) == 1:
        return Entity.ATTRIBUTE, unquote_key(parts[0])
    prefix = parts[0][1:-1] if quoted(parts[0], "`") else parts[0]
    entity = entities.get(prefix)
    if entity is None:
        valid = ", ".join(sorted(entities))
        raise InvalidParameter(
            f"Invalid entity type {prefix!r} in {token.text!r} at position {token.position}. "
            f"Valid entity types: {valid}."
        )
    return entity, unquote_key(token.text[len(parts[0]) + 1 :])


# -- runs -------------------------------------------------------------------------------------------

RUN_ENTITIES: dict[str, Entity] = {
    "metric": Entity.METRIC,
    "metrics": Entity.METRIC,
    "parameter": Entity.PARAM,
    "parameters": Entity.PARAM,
    "param": Entity.PARAM,
    "params": Entity.PARAM,
    "tag": Entity.TAG,
    "tags": Entity.TAG,
    "attribute": Entity.ATTRIBUTE,
    "attributes": Entity.ATTRIBUTE,
    "attr": Entity.ATTRIBUTE,
    "run": Entity.ATTRIBUTE,
    "dataset": Entity.DATASET,
    "datasets": Entity.DATASET,
}
RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
RUN_STRING_ATTRIBUTES = frozenset({"run_id", "run_name", "status", "user_id", "artifact_uri"})
RUN_ATTRIBUTE_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}
RUN_ORDER_ALIASES = {"created": "start_time", "Created": "start_time"}
DATASET_KEYS = frozenset({"name", "digest", "context"})


def parse_run_filter(text: str | None) -> list[Comparison]:
    """The AND-ed comparisons of a runs/search filter, checked as MLflow checks them."""
    comparisons = []
    for clause in _clauses(text or ""):
        entity, key = _split(clause.identifier, RUN_ENTITIES)
        comparisons.append(_run_comparison(clause, entity, key))
    return comparisons


def _require(op: Op, allowed: frozenset[Op], where: str) -> None:
    if op not in allowed:
        names = ", ".join(sorted(o.value for o in allowed))
        raise InvalidParameter(f"Invalid comparator {op.value!r} for {where}; allowed: {names}.")


def _run_comparison(clause: _Clause, entity: Entity, key: str) -> Comparison:
    op, value = clause.op, clause.value
    where = f"{entity.value} {key!r}"
    if op in NULL_OPS:
        if entity not in (Entity.PARAM, Entity.TAG):
            raise InvalidParameter(f"IS NULL / IS NOT NULL is only supported for tags and params, not for {where}.")
        return Comparison(entity, key, op, None)
    assert value is not None
    if entity is Entity.METRIC:
        _require(op, NUMERIC_OPS, where)
        return Comparison(entity, key, op, float(_number(_single(value, where), where)))
    if entity in (Entity.PARAM, Entity.TAG):
        _require(op, STRING_OPS, where)
        return Comparison(entity, key, op, _string(_single(value, where), where))
    if entity is Entity.DATASET:
        if key not in DATASET_KEYS:
            raise InvalidParameter(f"Invalid dataset key {key!r}; valid keys: context, digest, name.")
        _require(op, STRING_OPS | LIST_OPS, where)
        if op in LIST_OPS:
            return Comparison(entity, key, op, _strings(_many(value, where), where))
        return Comparison(entity, key, op, _string(_single(value, where), where))
    key = RUN_ATTRIBUTE_ALIASES.get(key, key)
    where = f"attribute {key!r}"
    if key in RUN_NUMERIC_ATTRIBUTES:
        _require(op, NUMERIC_OPS, where)
        return Comparison(entity, key, op, _number(_single(value, where), where))
    if key not in RUN_STRING_ATTRIBUTES:
        valid = ", ".join(sorted(RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES))
        raise InvalidParameter(f"Invalid attribute key {key!r}; valid keys: {valid}.")
    _require(op, STRING_OPS | LIST_OPS, where)
    if op in LIST_OPS:
        if key != "run_id":
            raise InvalidParameter(f"Only run_id can be compared with a list (IN / NOT IN), not {key!r}.")
        return Comparison(entity, key, op, _strings(_many(value, where), where))
    return Comparison(entity, key, op, _string(_single(value, where), where))


def _single(value: Token | tuple[Token, ...], where: str) -> Token:
    if isinstance(value, tuple):
        raise InvalidParameter(f"A list is not a valid value for {where}.")
    return value


def _many(value: Token | tuple[Token, ...], where: str) -> tuple[Token, ...]:
    if not isinstance(value, tuple):
        raise InvalidParameter(f"IN / NOT IN for {where} needs a parenthesised list.")
    return value


def parse_run_order_by(items: Sequence[str] | None) -> list[OrderKey]:
    keys: list[OrderKey] = []
    seen: set[tuple[Entity, str]] = set()
    for item in items or []:
        entity, key, ascending = _order_item(item, RUN_ENTITIES)
        if entity is Entity.DATASET:
            raise InvalidParameter(f"Invalid order_by clause {item!r}: datasets cannot be ordered by.")
        if entity is Entity.ATTRIBUTE:
            key = RUN_ORDER_ALIASES.get(key, key)
            if key not in RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES:
                valid = ", ".join(sorted(RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES))
                raise InvalidParameter(f"Invalid order_by clause {item!r}: unknown attribute {key!r}; valid: {valid}.")
        if (entity, key) in seen:
            raise InvalidParameter(f"order_by contains duplicate fields: {list(items or [])}")
        seen.add((entity, key))
        keys.append(OrderKey(entity, key, ascending))
    return keys


def _order_item(item: str, entities: dict[str, Entity]) -> tuple[Entity, str, bool]:
    reader = _Reader(item, tokenize(item, "order_by clause", order_by=True), "order_by clause")
    identifier = reader.next("a field such as metrics.rmse")
    if identifier.kind is not Kind.IDENT:
        raise reader.unexpected(identifier, "a field such as metrics.rmse or start_time")
    ascending = True
    direction = reader.peek()
    if direction is not None:
        if not (direction.kind is Kind.KEYWORD and direction.text in ("ASC", "DESC")):
            raise reader.unexpected(direction, "ASC or DESC")
        ascending = direction.text == "ASC"
        reader.index += 1
    trailing = reader.peek()
    if trailing is not None:
        raise reader.unexpected(trailing, "the end of the clause")
    if direction is None and identifier.parts[-1].lower() == "as":
        raise InvalidParameter(
            f"Invalid order_by clause {item!r}: {identifier.text!r} ends in the SQL keyword 'as'; "
            "quote that part with backticks or add ASC or DESC."
        )
    entity, key = _split(identifier, entities)
    return entity, key, ascending


# -- experiments ------------------------------------------------------------------------------------

EXPERIMENT_ENTITIES: dict[str, Entity] = {"attribute": Entity.ATTRIBUTE, "tag": Entity.TAG, "tags": Entity.TAG}
EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id"}) | EXPERIMENT_NUMERIC_ATTRIBUTES


def parse_experiment_filter(text: str | None) -> list[Comparison]:
    """The AND-ed comparisons of an experiments/search filter, checked as MLflow's SQL store checks them."""
    comparisons = []
    for clause in _clauses(text or ""):
        entity, key = _split(clause.identifier, EXPERIMENT_ENTITIES)
        comparisons.append(_experiment_comparison(clause, entity, key))
    return comparisons


def _experiment_comparison(clause: _Clause, entity: Entity, key: str) -> Comparison:
    op, value = clause.op, clause.value
    if entity is Entity.TAG:
        where = f"tag {key!r}"
        if op in NULL_OPS:
            return Comparison(entity, key, op, None)
        _require(op, STRING_OPS, where)
        assert value is not None
        return Comparison(entity, key, op, _string(_single(value, where), where))
    where = f"attribute {key!r}"
    if key not in EXPERIMENT_ATTRIBUTES:
        valid = ", ".join(sorted(EXPERIMENT_ATTRIBUTES))
        raise InvalidParameter(f"Invalid attribute key {key!r}; valid keys: {valid}.")
    if op in NULL_OPS:
        raise InvalidParameter(f"IS NULL / IS NOT NULL is only supported for tags, not for {where}.")
    assert value is not None
    if key == "experiment_id":
        _require(op, frozenset({Op.EQ, Op.NE}) | LIST_OPS, where)
        if op in LIST_OPS:
            return Comparison(entity, key, op, _strings(_many(value, where), where))
        return Comparison(entity, key, op, _string(_single(value, where), where))
    if key == "name":
        _require(op, STRING_OPS, where)
        return Comparison(entity, key, op, _string(_single(value, where), where))
    _require(op, NUMERIC_OPS, where)
    number = _number(_single(value, where), where)
    if isinstance(number, float):
        raise InvalidParameter(f"Invalid value for numeric attribute {key!r}: {number!r} (an integer is expected).")
    return Comparison(entity, key, op, number)


def parse_experiment_order_by(items: Sequence[str] | None) -> list[OrderKey]:
    keys: list[OrderKey] = []
    for item in items or []:
        entity, key, ascending = _order_item(item, EXPERIMENT_ENTITIES)
        if entity is not Entity.ATTRIBUTE:
            raise InvalidParameter(f"Invalid order_by clause {item!r}: experiments can only be ordered by attributes.")
        if key not in EXPERIMENT_ATTRIBUTES:
            valid = ", ".join(sorted(EXPERIMENT_ATTRIBUTES))
            raise InvalidParameter(f"Invalid order_by clause {item!r}: unknown attribute {key!r}; valid: {valid}.")
        keys.append(OrderKey(entity, key, ascending))
    return keys


# -- registry names in the account scope ------------------------------------------------------------

NAME_KEYS = frozenset({"name", "attribute.name", "attributes.name", "attr.name"})


@dataclass(frozen=True, slots=True)
class _NameClause:
    op: Op
    values: tuple[str, ...]  # the string(s) compared, as written between their quotes
    quote: str  # the quote they were written with


@dataclass(frozen=True, slots=True)
class AccountNameFilter:
    """A registry search's filter in the account scope, where a model is named `<workspace>.<name>`.

    `for_workspace` gives the filter one workspace's store is asked (its names bare), or None when no model
    of that workspace can match. A compared value with a dot names a workspace before its first dot (for
    LIKE and ILIKE that part is itself a pattern over workspace names); a value without one is a name inside
    every workspace. Every other clause goes to each store as written.
    """

    others: tuple[str, ...]
    names: tuple[_NameClause, ...]

    def for_workspace(self, workspace: str) -> str | None:
        clauses = list(self.others)
        for clause in self.names:
            kept: list[str] = []
            for value in clause.values:
                home, dot, bare = value.partition(".")
                if not dot:
                    kept.append(value)
                elif clause.op in (Op.LIKE, Op.ILIKE):
                    if like(home, workspace, insensitive=clause.op is Op.ILIKE):
                        kept.append(bare)
                elif home == workspace:
                    kept.append(bare)
            quoted = [f"{clause.quote}{value}{clause.quote}" for value in kept]
            if clause.op in (Op.EQ, Op.LIKE, Op.ILIKE, Op.IN) and not kept:
                return None  # it names only other workspaces
            if clause.op in LIST_OPS:
                if quoted:
                    clauses.append(f"name {clause.op.value} ({', '.join(quoted)})")
            elif quoted:  # != of another workspace's model holds for every model here
                clauses.append(f"name {clause.op.value} {quoted[0]}")
        return " AND ".join(clauses)


def account_name_filter(text: str | None) -> AccountNameFilter:
    """`text` checked as a filter, its `name` comparisons set apart (see `AccountNameFilter`)."""
    text = text or ""
    clauses = _clauses(text)
    spans = _clause_spans(text, tokenize(text))
    assert len(spans) == len(clauses)
    others: list[str] = []
    names: list[_NameClause] = []
    for clause, span in zip(clauses, spans, strict=True):
        key = unquote_key(clause.identifier.text) if len(clause.identifier.parts) == 1 else clause.identifier.text
        value = clause.value
        tokens = value if isinstance(value, tuple) else (value,) if value is not None else ()
        strings = [t for t in tokens if t.kind is Kind.STRING or (t.kind is Kind.IDENT and quoted(t.text, '"'))]
        if key.lower() not in NAME_KEYS or clause.op in NULL_OPS or not tokens or len(strings) != len(tokens):
            others.append(span)  # not a name, or not a form the stores accept: theirs to judge
            continue
        if clause.op not in STRING_OPS | LIST_OPS or len({t.text[0] for t in strings}) != 1:
            others.append(span)
            continue
        names.append(_NameClause(clause.op, _strings(strings, "attribute 'name'"), strings[0].text[0]))
    return AccountNameFilter(tuple(others), tuple(names))


def _clause_spans(text: str, tokens: list[Token]) -> list[str]:
    """Each AND-ed clause of a (checked) filter as written."""
    spans: list[str] = []
    start: Token | None = None
    last: Token | None = None
    depth = 0
    for token in tokens:
        if token.kind is Kind.KEYWORD and token.text == "AND" and depth == 0:
            assert start is not None and last is not None
            spans.append(text[start.position : last.position + len(last.text)])
            start = None
            continue
        depth += 1 if token.kind is Kind.LPAREN else -1 if token.kind is Kind.RPAREN else 0
        start = start or token
        last = token
    if start is not None and last is not None:
        spans.append(text[start.position : last.position + len(last.text)])
    return spans


def like(pattern: str, value: str, *, insensitive: bool = False) -> bool:
    """SQL's LIKE (`%` any run, `_` any one character), on the whole of `value`."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if insensitive else re.DOTALL) is not None
