"""What a statement is, and whether it is allowed: classification, strict grammars and the SELECT allow-list.

Queries are parsed by sqlglot in the Databricks dialect and then walked node by node against an
allow-list: every node kind, every function and every table a query may name is listed here, so
nothing this module has not seen (a PostgreSQL function, DML, a table of the gateway's own) can
reach the database. The other statements (GRANT, REVOKE, SHOW GRANTS, CREATE VIEW, DROP VIEW) are
parsed by a small grammar of our own over a strict tokenizer: sqlglot reads some of them only as
an opaque command.

Table references are resolved here, once, by the scope rules Databricks and PostgreSQL share: a CTE is
visible after its definition (in the later CTEs and the body of its WITH, and in every query nested
there), never inside itself nor before; an inner CTE hides an outer one of the same name; names compare
case-insensitively, as in Databricks. What this module decides is what runs, whatever PostgreSQL would
make of the names: every CTE is renamed to a name of the gateway's own (`_cte_<n>_<digest>`) and every
reference to it with it, and every other reference is completed to catalog.schema.table, which
transpile.py replaces by a subquery over a system view. No name the caller wrote is ever looked up by
PostgreSQL, so neither its catalog (`pg_roles`, `information_schema`) nor anything else outside the
system tables and stored views can be read, however it is spelled.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from gateway.core.errors import InvalidParameter
from gateway.sql.catalog import SYSTEM_CATALOG, TableName

DIALECT = "databricks"
MAX_STATEMENT_CHARS = 100_000
CACHED_STATEMENT_CHARS = 10_000  # longer texts are rare and would make the cache large
NAME_PART_RE = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,63}\Z")
# What a CTE is renamed to: `_cte_<n>_<digest of the text>`. The digest keeps the names of a view's CTEs apart
# from those of the query that reads the view; no relation PostgreSQL could find has such a name.
CTE_PREFIX = "_cte_"
CTE_NAME_RE = re.compile(r"^_cte_[0-9]+_[0-9a-f]{8}\Z")
# What a lambda variable is renamed to in PostgreSQL (transpile.py): `_lambda_<n>`. A name the caller writes may not
# start so, or it could name a lambda's scalar where PostgreSQL reads `name.f` as the call f(name).
LAMBDA_PREFIX = "_lambda_"
# Relations one statement may read: table, view and CTE references and LATERAL VIEWs, counted again for each
# reference and with views expanded (transpile.substitute counts those). The statement timeout bounds how long
# a statement runs; this bounds how large a plan (and a view expansion) one text can ask for. Eight-way
# joins of the three system tables are far more than any documented query needs (those use two).
MAX_RELATIONS = 16
PARAMETER_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")

IDENTITY_FUNCTIONS = ("current_user", "session_user", "is_account_group_member")
# Units of TIMESTAMPDIFF, DATE_TRUNC, EXTRACT and INTERVAL; any other keyword in a unit position is refused.
UNITS = frozenset({"MICROSECOND", "MILLISECOND", "SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR"})
# Lower-case names of functions sqlglot has no node for; each has a PostgreSQL rendering in transpile.py.
ANONYMOUS_FUNCTIONS = frozenset({"is_account_group_member", "map_values", "cardinality"})

_STRUCTURE: tuple[type[exp.Expr], ...] = (
    exp.Select,
    exp.Union,
    exp.Intersect,
    exp.Except,
    exp.Subquery,
    exp.From,
    exp.Join,
    exp.Where,
    exp.Group,
    exp.Rollup,
    exp.Cube,
    exp.GroupingSets,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Distinct,
    exp.With,
    exp.CTE,
    exp.TableAlias,
    exp.Alias,
    exp.Aliases,
    exp.Column,
    exp.Identifier,
    exp.Star,
    exp.Table,
    exp.Lateral,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Placeholder,
    exp.DataType,
    exp.DataTypeParam,
    exp.Var,
    exp.Interval,
    exp.Tuple,
    exp.Paren,
    exp.Window,
    exp.WindowSpec,
    exp.WithinGroup,
    exp.Filter,
    exp.Lambda,
    exp.Bracket,
    exp.Dot,
    exp.Array,
)
_OPERATORS: tuple[type[exp.Expr], ...] = (
    exp.And,
    exp.Or,
    exp.Not,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.RegexpLike,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.Neg,
    exp.DPipe,
    exp.Case,
    exp.If,
    exp.Cast,
    exp.Exists,
)
_FUNCTIONS: tuple[type[exp.Expr], ...] = (
    # aggregates
    exp.Count,
    exp.Sum,
    exp.Avg,
    exp.Min,
    exp.Max,
    exp.Stddev,
    exp.StddevSamp,
    exp.StddevPop,
    exp.Variance,
    exp.VariancePop,
    exp.PercentileCont,
    exp.PercentileDisc,
    exp.Median,
    exp.CountIf,
    exp.LogicalOr,
    exp.LogicalAnd,
    exp.ArrayAgg,
    # window functions
    exp.RowNumber,
    exp.Rank,
    exp.DenseRank,
    exp.PercentRank,
    exp.CumeDist,
    exp.Ntile,
    exp.Lag,
    exp.Lead,
    exp.FirstValue,
    exp.LastValue,
    # scalars
    exp.Coalesce,
    exp.Nullif,
    exp.Greatest,
    exp.Least,
    exp.Abs,
    exp.Round,
    exp.Floor,
    exp.Ceil,
    exp.Sqrt,
    exp.Exp,
    exp.Ln,
    exp.Log,
    exp.Pow,
    exp.Sign,
    exp.IsNan,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Trim,
    exp.Substring,
    exp.Concat,
    exp.ConcatWs,
    exp.Replace,
    exp.Left,
    exp.Right,
    exp.StartsWith,
    exp.RegexpReplace,
    # dates and times
    exp.TsOrDsToDate,
    exp.TimestampDiff,
    exp.DateDiff,
    exp.TimestampTrunc,
    exp.TimestampAdd,
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Hour,
    exp.Minute,
    exp.Second,
    exp.Extract,
    exp.CurrentTimestamp,
    exp.CurrentDate,
    # maps and arrays
    exp.ArraySize,
    exp.ArrayContains,
    exp.MapKeys,
    exp.Explode,
    exp.ArrayFilter,
    exp.Transform,
    # identity, evaluated for the caller before anything reaches PostgreSQL
    exp.CurrentUser,
    exp.SessionUser,
)
ALLOWED_NODES: frozenset[type[exp.Expr]] = frozenset((*_STRUCTURE, *_OPERATORS, *_FUNCTIONS))
_TYPES = exp.DataType.Type
CAST_TYPES = frozenset(
    {
        _TYPES.TEXT,
        _TYPES.VARCHAR,
        _TYPES.CHAR,
        _TYPES.INT,
        _TYPES.BIGINT,
        _TYPES.SMALLINT,
        _TYPES.TINYINT,
        _TYPES.DOUBLE,
        _TYPES.FLOAT,
        _TYPES.DECIMAL,
        _TYPES.BOOLEAN,
        _TYPES.DATE,
        _TYPES.TIMESTAMP,
        _TYPES.TIMESTAMPTZ,
        _TYPES.TIMESTAMPLTZ,
        _TYPES.TIMESTAMPNTZ,
    }
)
_TABLE_ARGS = frozenset({"this", "db", "catalog", "alias"})
_JOIN_KINDS = frozenset({"", "INNER", "OUTER", "CROSS"})


# -- what a statement is ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """An allowed SELECT: its tree (table names fully qualified), the tables it reads, its parameter names."""

    tree: exp.Query
    tables: tuple[TableName, ...]
    parameters: tuple[str, ...]
    # current_user(), session_user() or is_account_group_member(): the compiled text depends on who runs it.
    asks_identity: bool = False
    # Relations read, each reference counted (MAX_RELATIONS); a view counts 1 here, its own relations once expanded.
    relations: int = 0


@dataclass(frozen=True)
class ShowGrants:
    securable_type: str  # catalog | schema | table
    name: str
    principal: str | None = None


@dataclass(frozen=True)
class ChangeGrants:
    grant: bool  # False: REVOKE
    privileges: tuple[str, ...]  # USE_CATALOG, USE_SCHEMA, SELECT, MANAGE, ALL_PRIVILEGES
    securable_type: str
    name: str
    principal: str


@dataclass(frozen=True)
class CreateView:
    name: TableName
    replace: bool
    definition: str  # the SELECT as written
    query: Query


@dataclass(frozen=True)
class DropView:
    name: TableName
    if_exists: bool


Statement = Query | ShowGrants | ChangeGrants | CreateView | DropView


@dataclass(frozen=True)
class Defaults:
    """The request's `catalog` and `schema`: how one- and two-part table names are completed."""

    catalog: str | None = None
    schema: str | None = None


def classify(text: str, defaults: Defaults | None = None) -> Statement:
    """Parse one statement; anything not allowed raises InvalidParameter saying what and where."""
    defaults = defaults or Defaults()
    if len(text) > MAX_STATEMENT_CHARS:
        raise InvalidParameter(f"The statement is longer than {MAX_STATEMENT_CHARS} characters.")
    if "\x00" in text:
        raise InvalidParameter("The statement holds a NUL character, which no SQL text may hold.")
    first = _first_word(text)
    if first in ("SELECT", "WITH", "("):
        return parse_query(text, defaults)
    if first in ("GRANT", "REVOKE", "SHOW", "DROP"):
        tokens = _Tokens(text)
        statement = _command(tokens, first, defaults)
        tokens.end()
        return statement
    if first == "CREATE":
        return _create_view(text, defaults)
    if first is None:
        raise InvalidParameter("The statement is empty.")
    raise InvalidParameter(
        f"{first} statements are not allowed; accepted are SELECT, SHOW GRANTS, GRANT, REVOKE, "
        "CREATE VIEW and DROP VIEW."
    )


def _first_word(text: str) -> str | None:
    tokens = _Tokens(text)
    token = tokens.peek_raw()
    if token is None:
        return None
    return "(" if token.text == "(" else token.text.upper()


# -- SELECT ---------------------------------------------------------------------------------------------------


def parse_query(text: str, defaults: Defaults | None = None, *, allow_parameters: bool = True) -> Query:
    """Parse and check a query; one- and two-part table names are completed from `defaults`.

    Dashboards send the same few texts over and over: each one up to CACHED_STATEMENT_CHARS long is parsed
    and checked once. The Query is then shared by every caller that sends the text, so nothing may modify
    its tree (substitute() works on a copy).
    """
    if len(text) > CACHED_STATEMENT_CHARS:
        return _parse_query(text, defaults, allow_parameters)
    return _parse_query_cached(text, defaults, allow_parameters)


def _parse_query(text: str, defaults: Defaults | None, allow_parameters: bool) -> Query:
    try:
        return _parse_and_check(text, defaults, allow_parameters)
    except RecursionError:
        # sqlglot parses and walks recursively; a text nested thousands deep is refused, not a server error.
        raise InvalidParameter("The statement nests too deeply.") from None


def _parse_and_check(text: str, defaults: Defaults | None, allow_parameters: bool) -> Query:
    try:
        parsed = [tree for tree in sqlglot.parse(text, read=DIALECT) if tree is not None]
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        where = f" at line {error.get('line')}, column {error.get('col')}" if error.get("line") else ""
        reason = str(error.get("description") or "not valid SQL")
        raise InvalidParameter(f"Syntax error{where}: {reason}.") from None
    except TokenError:
        raise InvalidParameter("Syntax error: an unterminated string, identifier or comment.") from None
    if not parsed:
        raise InvalidParameter("The statement is empty.")
    if len(parsed) > 1:
        raise InvalidParameter("Only one statement at a time: a second statement follows the first ';'.")
    tree = parsed[0]
    while isinstance(tree, exp.Subquery) and not tree.alias and isinstance(tree.this, exp.Query):
        tree = tree.this
    if not isinstance(tree, exp.Query) or isinstance(tree, exp.Subquery):
        raise InvalidParameter(f"{tree.key.upper()} is not allowed here; only a SELECT is.")
    checker = _QueryChecker(text, defaults or Defaults(), allow_parameters)
    checker.check(tree)
    return Query(
        tree,
        tuple(sorted(set(checker.tables))),
        tuple(dict.fromkeys(checker.parameters)),
        checker.asks_identity,
        checker.relations,
    )


_parse_query_cached = functools.lru_cache(maxsize=512)(_parse_query)


@dataclass
class _QueryChecker:
    text: str
    defaults: Defaults
    allow_parameters: bool
    tables: list[TableName] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    asks_identity: bool = False
    relations: int = 0
    ctes: int = 0

    def check(self, tree: exp.Expr) -> None:
        for node in tree.walk():
            self._node(node)
        resolved = self._resolve(tree)
        # Every table reference and every WITH must have been met by the scope walk; one it missed (a place in
        # the tree it does not know) would reach PostgreSQL unresolved, so it is refused instead.
        for node in tree.find_all(exp.Table, exp.With):
            if id(node) not in resolved:
                raise _refused(node, "This table reference is not allowed here")
        if self.relations > MAX_RELATIONS:
            raise InvalidParameter(too_many_relations(self.relations))

    def _resolve(self, tree: exp.Expr) -> set[int]:
        """Resolve every table reference under `tree` by scope; answers the ids of the nodes it resolved.

        Iterative, so a deep tree costs no recursion. Each item is a node and the CTEs visible there.
        """
        digest = hashlib.blake2b(self.text.encode(), digest_size=4).hexdigest()
        resolved: set[int] = set()
        pending: list[tuple[exp.Expr, _Scope | None]] = [(tree, None)]
        while pending:
            node, scope = pending.pop()
            if isinstance(node, exp.Table):
                resolved.add(id(node))
                self._reference(node, scope)
                continue
            with_ = node.args.get("with_")
            if isinstance(with_, exp.With):
                resolved.add(id(with_))
                scope, bodies = self._ctes(with_, scope, digest)
                pending.extend(bodies)
            pending.extend((child, scope) for child in node.iter_expressions() if child is not with_)
        return resolved

    def _ctes(
        self, with_: exp.With, outer: _Scope | None, digest: str
    ) -> tuple[_Scope, list[tuple[exp.Expr, _Scope | None]]]:
        """The scope of a WITH's body, and each CTE's definition with the scope it is resolved in."""
        names: dict[str, tuple[int, str]] = {}
        bodies: list[tuple[exp.Expr, _Scope | None]] = []
        for position, cte in enumerate(with_.expressions):
            alias = cte.args.get("alias")
            name = cte.alias.lower()
            if not isinstance(cte, exp.CTE) or not isinstance(alias, exp.TableAlias) or not name:
                raise _refused(cte, "Every CTE needs a name")
            if name in names:
                raise _refused(cte, f"The CTE name '{name}' is defined twice in one WITH")
            self.ctes += 1
            names[name] = (position, f"{CTE_PREFIX}{self.ctes}_{digest}")
            # Only the CTEs before this one are visible in its definition: not itself, not the later ones.
            bodies.append((cte.this, _Scope(names, position, outer)))
            alias.set("this", exp.to_identifier(names[name][1]))
        return _Scope(names, len(names), outer), bodies

    def _reference(self, node: exp.Table, scope: _Scope | None) -> None:
        self.relations += 1
        parts = [part.name for part in node.parts]
        generated = scope.find(parts[0].lower()) if scope is not None and len(parts) == 1 else None
        if generated is not None:
            # The name as written stays the alias, so `r.run_id` keeps resolving to this FROM item.
            if not node.args.get("alias"):
                node.set("alias", exp.TableAlias(this=node.this.copy()))
            node.set("this", exp.to_identifier(generated))
            return
        name = qualify(parts, self.defaults, node)
        # The tree is rewritten to the full name, so later stages never need the defaults again.
        node.set("catalog", exp.to_identifier(name.catalog))
        node.set("db", exp.to_identifier(name.schema))
        node.set("this", exp.to_identifier(name.name))
        self.tables.append(name)

    def _node(self, node: exp.Expr) -> None:
        if isinstance(node, exp.Anonymous):
            name = str(node.name).lower()
            if name not in ANONYMOUS_FUNCTIONS:
                raise _refused(node, f"The function {name}() is not allowed")
            if name == "is_account_group_member":
                self.asks_identity = True
                argument = node.expressions[0] if len(node.expressions) == 1 else None
                if not (isinstance(argument, exp.Literal) and argument.is_string):
                    raise _refused(node, "is_account_group_member() takes one group name as a string literal")
            return
        if type(node) not in ALLOWED_NODES:
            raise _refused(node, self._describe(node))
        if isinstance(node, (exp.Literal, exp.Identifier)) and "\x00" in node.name:
            # PostgreSQL ends the statement's text at a NUL and fails the connection's protocol (08P01).
            raise _refused(node, "A string or name cannot hold the NUL character (\\0, \\u0000)")
        if isinstance(node, exp.Identifier) and node.name.lower().startswith(LAMBDA_PREFIX):
            raise _refused(node, f"'{node.name}': names starting with {LAMBDA_PREFIX} are reserved")
        if isinstance(node, (exp.CurrentUser, exp.SessionUser)):
            self.asks_identity = True
        elif isinstance(node, exp.Table):
            self._table(node)
        elif isinstance(node, exp.Placeholder):
            self._placeholder(node)
        elif isinstance(node, exp.Star):
            if any(node.args.get(key) for key in node.args):
                raise _refused(node, "SELECT * EXCEPT/REPLACE is not allowed")
        elif isinstance(node, exp.Var):
            if node.name.upper().removesuffix("S") not in UNITS:
                raise _refused(node, f"'{node.name}' is not allowed here (expected a unit such as MINUTE or DAY)")
        elif isinstance(node, exp.Lateral):
            if not node.args.get("view") or not isinstance(node.this, exp.Explode):
                raise _refused(node, "Only LATERAL VIEW explode(...) is allowed")
            self.relations += 1
        elif isinstance(node, exp.Dot):
            # `(x).field` or `m['k'].field`: a field, never a function in a schema (`pg_catalog.version()`).
            if not isinstance(node.expression, exp.Identifier):
                raise _refused(node, "Functions are called by their name alone, without a schema")
            self._field(node, node.expression.name)
        elif isinstance(node, exp.Column) and node.table:
            self._field(node, node.name)
        elif isinstance(node, exp.Explode):
            self._explode(node)
        elif isinstance(node, exp.Lambda):
            if len(node.expressions) != 1:
                raise _refused(node, "Lambda functions take exactly one parameter here")
        elif isinstance(node, exp.With):
            if node.args.get("recursive"):
                raise _refused(node, "WITH RECURSIVE is not allowed")
        elif isinstance(node, exp.Join):
            kind = str(node.args.get("kind") or "").upper()
            if kind not in _JOIN_KINDS:
                raise _refused(node, f"{kind} JOIN is not allowed")
        elif isinstance(node, exp.DataType):
            if node.this not in CAST_TYPES:
                raise _refused(node, f"The type {node.sql(DIALECT)} is not allowed")
        elif isinstance(node, exp.TsOrDsToDate) and node.args.get("format"):
            raise _refused(node, "to_date() with a format is not allowed; use date() or CAST")
        elif isinstance(node, exp.Bracket) and len(node.expressions) != 1:
            raise _refused(node, "Subscripts take exactly one key or index")
        elif isinstance(node, (exp.ArrayFilter, exp.Transform)) and not isinstance(node.expression, exp.Lambda):
            raise _refused(node, f"{node.key}() takes a lambda function")

    def _field(self, node: exp.Expr, name: str) -> None:
        # PostgreSQL reads `x.f`, when x has no column f, as the call f(x) (its functional notation): a field named
        # like one of its pg_* functions would call it. Its functions of a whole row that are left (row_to_json,
        # to_jsonb, ...) only render the row's own values.
        if name.lower().startswith("pg_"):
            raise _refused(node, f"'{name}': names starting with pg_ are PostgreSQL's own and cannot be read")

    def _describe(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Func):
            meta = node.meta
            # The name as written (sqlglot's own name may differ: lpad is PAD to it).
            name = self.text[meta["start"] : meta["end"] + 1] if "start" in meta else node.sql_name()
            return f"The function {name.lower()}() is not allowed"
        return f"{node.key.upper()} is not allowed in a query"

    def _placeholder(self, node: exp.Placeholder) -> None:
        name = str(node.args.get("this") or "")
        if not self.allow_parameters:
            raise _refused(node, "Parameter markers are not allowed in a view definition")
        if not name:
            raise _refused(node, "Use named parameter markers (:name), not '?'")
        if not PARAMETER_NAME_RE.match(name):
            raise _refused(node, f"':{name}' is not a valid parameter name")
        self.parameters.append(name)

    def _explode(self, node: exp.Explode) -> None:
        item = node.parent if isinstance(node.parent, (exp.Alias, exp.Aliases)) else node
        holder = item.parent
        if isinstance(holder, exp.Lateral) and item is node:
            return
        if not (isinstance(holder, exp.Select) and item.arg_key == "expressions"):
            raise _refused(node, "explode() must be a whole item of the SELECT list or a LATERAL VIEW")
        if sum(1 for other in holder.expressions if other.find(exp.Explode)) > 1:
            raise _refused(node, "Only one explode() per SELECT list")

    def _table(self, node: exp.Table) -> None:
        extra = sorted(key for key, value in node.args.items() if value and key not in _TABLE_ARGS)
        if extra:
            raise _refused(node, f"{extra[0].upper()} on a table reference is not allowed")
        if not all(isinstance(part, exp.Identifier) for part in node.parts) or not node.name:
            raise _refused(node, "Only named tables can be read (no table functions)")


@dataclass(frozen=True)
class _Scope:
    """The CTEs visible at a point of a query: the first `visible` names of one WITH, then the enclosing scope's."""

    names: dict[str, tuple[int, str]]  # lower-case name -> (position in its WITH, the name it is renamed to)
    visible: int
    outer: _Scope | None

    def find(self, name: str) -> str | None:
        scope: _Scope | None = self
        while scope is not None:
            found = scope.names.get(name)
            if found is not None and found[0] < scope.visible:
                return found[1]
            scope = scope.outer
        return None


def too_many_relations(count: int) -> str:
    return (
        f"The statement reads {count} relations (table, view and CTE references and LATERAL VIEWs, views "
        f"expanded); at most {MAX_RELATIONS} are allowed."
    )


def is_cte_reference(node: exp.Table) -> bool:
    """Whether a checked table reference names one of the statement's CTEs (as renamed), not a table."""
    return not node.args.get("db") and not node.args.get("catalog") and bool(CTE_NAME_RE.match(node.name))


def qualify(parts: list[str], defaults: Defaults, node: exp.Expr | None = None) -> TableName:
    """Complete and check a table name: `runs_latest` with catalog system and schema mlflow, say."""
    names = [part.lower() for part in parts]
    if len(names) == 1 and defaults.catalog and defaults.schema:
        names = [defaults.catalog.lower(), defaults.schema.lower(), *names]
    elif len(names) == 2 and defaults.catalog:
        names = [defaults.catalog.lower(), *names]
    if len(names) != 3:
        what = ".".join(parts)
        message = f"Name tables in full as catalog.schema.table: '{what}' is not (or set catalog and schema)"
        raise _refused(node, message) if node is not None else InvalidParameter(message + ".")
    for part in names:
        if not NAME_PART_RE.match(part):
            raise InvalidParameter(f"'{part}' is not a valid catalog, schema or table name.")
    return TableName(*names)


def _refused(node: exp.Expr | None, message: str) -> InvalidParameter:
    where = _position(node) if node is not None else None
    suffix = f" (line {where[0]}, column {where[1]})" if where else ""
    return InvalidParameter(f"{message}{suffix}.")


def _position(node: exp.Expr) -> tuple[int, int] | None:
    for candidate in node.walk():
        meta = candidate.meta
        if "line" in meta and "col" in meta:
            # sqlglot's column is where the token ends; report where it starts.
            length = int(meta.get("end", 0)) - int(meta.get("start", 0))
            return int(meta["line"]), int(meta["col"]) - length
    return None


# -- GRANT, REVOKE, SHOW GRANTS, DROP VIEW, CREATE VIEW: a strict grammar of our own ---------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<quoted>`(?:[^`]|``)*`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[,.;()])
    """,
    re.S | re.X,
)
SECURABLE_TYPES = {"CATALOG": "catalog", "SCHEMA": "schema", "DATABASE": "schema", "TABLE": "table", "VIEW": "table"}
NAME_PARTS = {"catalog": 1, "schema": 2, "table": 3}
PRIVILEGES = {
    "USE CATALOG": "USE_CATALOG",
    "USE SCHEMA": "USE_SCHEMA",
    "SELECT": "SELECT",
    "MANAGE": "MANAGE",
    "ALL PRIVILEGES": "ALL_PRIVILEGES",
    "ALL": "ALL_PRIVILEGES",
}


@dataclass(frozen=True)
class _Token:
    kind: str  # word | quoted | punct
    text: str  # a quoted identifier without its backticks
    start: int


class _Tokens:
    """The tokens of a command statement, read one at a time; comments and whitespace are skipped."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0
        self._next: _Token | None = None

    def _scan(self) -> Iterator[_Token]:
        while self.position < len(self.text):
            match = _TOKEN_RE.match(self.text, self.position)
            if match is None:
                raise self.error(self.position, f"unexpected character {self.text[self.position]!r}")
            start, self.position = match.start(), match.end()
            kind = match.lastgroup or ""
            if kind in ("space", "comment"):
                continue
            value = match.group()
            if kind == "quoted":
                value = value[1:-1].replace("``", "`")
            yield _Token(kind, value, start)
            return

    def peek_raw(self) -> _Token | None:
        if self._next is None:
            self._next = next(self._scan(), None)
        return self._next

    def take(self) -> _Token | None:
        token = self.peek_raw()
        self._next = None
        return token

    def word(self, *expected: str) -> str:
        token = self.take()
        if token is None or token.kind != "word" or (expected and token.text.upper() not in expected):
            wanted = " or ".join(expected) if expected else "a keyword"
            raise self._unexpected(token, wanted)
        return token.text.upper()

    def accept(self, *words: str) -> bool:
        token = self.peek_raw()
        if token is not None and token.kind == "word" and token.text.upper() in words:
            self.take()
            return True
        return False

    def punct(self, char: str) -> bool:
        token = self.peek_raw()
        if token is not None and token.kind == "punct" and token.text == char:
            self.take()
            return True
        return False

    def identifier(self) -> str:
        token = self.take()
        if token is None or token.kind not in ("word", "quoted") or not token.text:
            raise self._unexpected(token, "a name")
        return token.text

    def name(self, parts: int | None = None) -> list[str]:
        names = [self.identifier()]
        while self.punct("."):
            names.append(self.identifier())
        if parts is not None and len(names) != parts:
            dotted = ".".join(names)
            raise InvalidParameter(f"'{dotted}' should have {parts} part{'s' if parts > 1 else ''}.")
        return names

    def end(self) -> None:
        separated = self.punct(";")
        token = self.take()
        if token is not None:
            if separated:
                raise InvalidParameter("Only one statement at a time: a second statement follows the first ';'.")
            raise self._unexpected(token, "the end of the statement")

    def rest(self) -> str:
        """Everything after the last token taken, as written."""
        if self._next is not None:
            return self.text[self._next.start :]
        return self.text[self.position :]

    def _unexpected(self, token: _Token | None, wanted: str) -> InvalidParameter:
        if token is None:
            return InvalidParameter(f"Syntax error: the statement ends where {wanted} was expected.")
        return self.error(token.start, f"expected {wanted}, found '{token.text}'")

    def error(self, offset: int, message: str) -> InvalidParameter:
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return InvalidParameter(f"Syntax error at line {line}, column {column}: {message}.")


def _command(tokens: _Tokens, first: str, defaults: Defaults) -> Statement:
    tokens.word()
    if first == "SHOW":
        tokens.word("GRANTS", "GRANT")
        principal = None if tokens.accept("ON") else _principal(tokens, then="ON")
        securable_type, name = _securable(tokens, defaults)
        return ShowGrants(securable_type, name, principal)
    if first == "DROP":
        tokens.word("VIEW")
        if_exists = tokens.accept("IF")
        if if_exists:
            tokens.word("EXISTS")
        return DropView(qualify(tokens.name(), defaults), if_exists)
    privileges = _privileges(tokens)
    securable_type, name = _securable(tokens, defaults)
    tokens.word("TO" if first == "GRANT" else "FROM")
    principal = tokens.identifier()
    return ChangeGrants(first == "GRANT", privileges, securable_type, name, principal)


def _principal(tokens: _Tokens, then: str) -> str:
    principal = tokens.identifier()
    tokens.word(then)
    return principal


def _privileges(tokens: _Tokens) -> tuple[str, ...]:
    found: list[str] = []
    while True:
        words = [tokens.word()]
        while (token := tokens.peek_raw()) is not None and token.kind == "word" and token.text.upper() != "ON":
            words.append(tokens.word())
        spelled = " ".join(words)
        privilege = PRIVILEGES.get(spelled)
        if privilege is None:
            known = ", ".join(key for key in PRIVILEGES if key != "ALL")
            raise InvalidParameter(f"Unknown privilege '{spelled}'; use {known}.")
        found.append(privilege)
        if not tokens.punct(","):
            break
    tokens.word("ON")
    return tuple(dict.fromkeys(found))


def _securable(tokens: _Tokens, defaults: Defaults) -> tuple[str, str]:
    token = tokens.peek_raw()
    kind = "table"
    if token is not None and token.kind == "word" and token.text.upper() in SECURABLE_TYPES:
        kind = SECURABLE_TYPES[tokens.word()]
    parts = tokens.name()
    if kind == "table":
        return kind, qualify(parts, defaults).full
    if kind == "schema" and len(parts) == 1 and defaults.catalog:
        parts = [defaults.catalog, *parts]
    if len(parts) != NAME_PARTS[kind]:
        raise InvalidParameter(f"A {kind} is named with {NAME_PARTS[kind]} part(s), not '{'.'.join(parts)}'.")
    lowered = [part.lower() for part in parts]
    for part in lowered:
        if not NAME_PART_RE.match(part):
            raise InvalidParameter(f"'{part}' is not a valid {kind} name.")
    return kind, ".".join(lowered)


def _create_view(text: str, defaults: Defaults) -> CreateView:
    tokens = _Tokens(text)
    tokens.word("CREATE")
    replace = tokens.accept("OR")
    if replace:
        tokens.word("REPLACE")
    tokens.word("VIEW")
    name = qualify(tokens.name(), defaults)
    if name.catalog == SYSTEM_CATALOG:
        raise InvalidParameter("The system catalog is read-only: create views in a catalog of your own.")
    token = tokens.peek_raw()
    if token is not None and token.kind == "punct" and token.text == "(":
        raise tokens.error(token.start, "a column list is not supported; name the columns in the SELECT")
    tokens.word("AS")
    definition = tokens.rest().strip()
    definition = definition.removesuffix(";").rstrip()
    # View bodies name their tables in full: the stored text must mean the same for every later reader.
    query = parse_query(definition, Defaults(), allow_parameters=False)
    return CreateView(name, replace, definition, query)
