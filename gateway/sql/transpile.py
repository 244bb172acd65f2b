"""From an allowed Databricks query to the PostgreSQL text that runs: table references become row-scoped
subqueries, identity functions become constants, parameters become `$n`, and Databricks constructs
PostgreSQL spells differently (maps as jsonb, arrays of structs, TIMESTAMPDIFF, ROUND of a double) get
renderings of their own.

sqlglot's PostgreSQL generator does most of the work; the renderings here are the places where its output
is not right for this schema or these semantics, each checked against PostgreSQL by the unit tests.
"""

# ruff: noqa: S608 — the renderings compose SQL from fragments the generator rendered from the checked tree;
# user text reaches them only as quoted literals and identifiers, never spliced.
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.generators.postgres import PostgresGenerator

from gateway.core.errors import InvalidParameter
from gateway.sql import fences, rollup
from gateway.sql.catalog import (
    ARRAY_COLUMNS,
    DOUBLE_COLUMNS,
    MAP_COLUMNS,
    PG_SCHEMA,
    STORED_VALUE_COLUMNS,
    STRUCT_FIELDS,
    SYSTEM_COLUMNS,
    TableName,
)
from gateway.sql.statements import (
    DIALECT,
    LAMBDA_PREFIX,
    MAX_RELATIONS,
    Query,
    is_cte_reference,
    too_many_relations,
)

# Databricks parameter types (the `type` of a parameter) and the PostgreSQL type its text is cast to.
PARAMETER_TYPES = {
    "STRING": "TEXT",
    "INT": "INTEGER",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "LONG": "BIGINT",
    "SMALLINT": "SMALLINT",
    "SHORT": "SMALLINT",
    "TINYINT": "SMALLINT",
    "BYTE": "SMALLINT",
    "DOUBLE": "DOUBLE PRECISION",
    "FLOAT": "REAL",
    "DECIMAL": "NUMERIC",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMPTZ",
    "TIMESTAMP_NTZ": "TIMESTAMP",
}
_SECONDS_PER_UNIT = {"MICROSECOND": "0.000001", "MILLISECOND": "0.001", "SECOND": "1", "MINUTE": "60", "HOUR": "3600"}
_MONTHS_PER_UNIT = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}
_MAX_VIEW_DEPTH = 8
MAX_COLUMN_NAME = 63  # PostgreSQL's identifier length
# What the values one statement builds may hold in all (replace(), ||, concat, array(...), collect_list, transform()),
# and the stored values it reads (a run's tags, params, aggregated_metrics): each place of the statement that builds,
# copies or reads a value gets an equal share (value_limit()), so however many of them one row's expressions evaluate
# at once, and however they nest, together they stay within it.
VALUE_BUDGET_BYTES = 256 * 1024 * 1024
# The gateway's functions that check a value's size before (or as) it is built (migration 0044) or read (0047).
_GUARDS = "system_mlflow"
# Words PostgreSQL evaluates as functions without parentheses, naming its own roles and database.
POSTGRES_KEYWORD_FUNCTIONS = frozenset(
    {"user", "current_user", "session_user", "current_role", "system_user", "current_catalog", "current_schema"}
)


@dataclass(frozen=True)
class Identity:
    """Who runs the statement, for current_user() and is_account_group_member()."""

    user: str
    member_of: Callable[[str], bool]


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    parameters: tuple[str, ...]  # the name bound to $1, $2, ...


@functools.lru_cache(maxsize=len(SYSTEM_COLUMNS))
def system_source(name: TableName) -> exp.Query:
    """The subquery a system table reference becomes: every row of the account, the documented columns.

    One shared tree per table: never modify it (substitute() copies it into the query).
    """
    columns = [exp.column(column) for column in SYSTEM_COLUMNS[name.name]]
    return exp.select(*columns).from_(exp.table_(name.name, db=PG_SCHEMA))


def substitute(query: Query, sources: Mapping[TableName, exp.Query]) -> exp.Query:
    """A copy of the query in which each table reference is `(source) AS alias`.

    Refused when the relations read, views expanded, would exceed MAX_RELATIONS: counted before anything is
    copied, so views that read views many times over cannot make the gateway build a huge tree.
    """
    relations = query.relations
    for table in query.tree.find_all(exp.Table):
        if table.args.get("catalog"):
            name = TableName(table.catalog.lower(), table.db.lower(), table.name.lower())
            relations += relation_count(sources[name]) - 1
    if relations > MAX_RELATIONS:
        raise InvalidParameter(too_many_relations(relations))
    tree = query.tree.copy()
    for table in list(tree.find_all(exp.Table)):
        if is_cte_reference(table):
            continue
        if not table.args.get("catalog"):
            # statements.py completes or refuses every other name; this would be a name PostgreSQL looks up.
            raise InvalidParameter(f"The table reference '{table.sql(DIALECT)}' cannot be resolved.")
        name = TableName(table.catalog.lower(), table.db.lower(), table.name.lower())
        alias = table.args.get("alias")
        if alias is None:
            # Unaliased references keep their name as alias, so `runs_latest.run_id` still resolves.
            alias = exp.TableAlias(this=exp.to_identifier(name.name))
        source = sources[name].copy()
        table.replace(exp.Subquery(this=source if name.is_system else fences.mark(fence(source)), alias=alias.copy()))
    return tree


def fence(view: exp.Query) -> exp.Query:
    """A view's rows as its definition answers them, before anything of the reader's sees a row: `OFFSET 0`.

    PostgreSQL pulls a plain subquery up into the query around it and pushes the reader's conditions down into
    it, where they run in the order of their cost, before the view's own filter when cheaper: a reader's
    `WHERE CAST(run_name AS BOOLEAN)` then failed on a row the view hides, with its name in the message (and a
    condition that fails or not is a yes/no question about any hidden row). A subquery with an OFFSET is
    neither pulled up nor given outer conditions (a security_barrier view in all but name), so the reader's
    expressions only ever see the rows the view lets through. One with a LIMIT or OFFSET of its own, or a set
    operation, is wrapped in `SELECT * FROM (...) OFFSET 0`. What of the reader's cannot fail on any row is moved
    inside afterwards (fences.narrow: leakproof comparisons of plain columns, and the order and limit of a plain
    read of one view), as PostgreSQL lets leakproof conditions into a security_barrier view.
    """
    if isinstance(view, exp.Select) and not view.args.get("limit") and not view.args.get("offset"):
        view.set("offset", exp.Offset(expression=exp.Literal.number(0)))
        return view
    wrapped = exp.select(exp.Star()).from_(
        exp.Subquery(this=view, alias=exp.TableAlias(this=exp.to_identifier("_view")))
    )
    wrapped.set("offset", exp.Offset(expression=exp.Literal.number(0)))
    return wrapped


def relation_count(tree: exp.Expr) -> int:
    """Relations a substituted tree reads: system views and CTE references, and LATERAL VIEWs."""
    return sum(1 for _ in tree.find_all(exp.Table, exp.Lateral))


def compile_query(
    tree: exp.Query, identity: Identity, parameter_types: Mapping[str, str], *, counts: bool = True
) -> CompiledQuery:
    """PostgreSQL text for a substituted tree; `parameter_types` maps every parameter to its Databricks type.

    `counts`: aggregate blocks over runs_latest that run counts answer exactly read those (gateway/sql/rollup.py).
    """
    try:
        return _compile(tree, identity, parameter_types, counts)
    except RecursionError:
        # The generator recurses; a statement nested too deep for it is refused, not a server error.
        raise InvalidParameter("The statement nests too deeply.") from None


def _compile(tree: exp.Query, identity: Identity, parameter_types: Mapping[str, str], counts: bool) -> CompiledQuery:
    check_relations(tree)
    tree = tree.copy()
    _name_columns(tree)
    _quote_keyword_columns(tree)
    _evaluate_identity(tree, identity)
    names = _bind_parameters(tree, parameter_types)
    _rename_lambda_variables(tree)
    _struct_fields(tree)
    _check_fields(tree)
    _lateral_views(tree)
    _select_list_explodes(tree)
    _fold_table_names(tree)
    if counts:
        rollup.use_counts(tree, _kind)
    fences.narrow(tree)
    _fence_expansion(tree)
    _guard_values(tree)
    return CompiledQuery(_GENERATOR.generate(tree, copy=False), names)


def check_relations(tree: exp.Expr) -> None:
    """The last guard before PostgreSQL: every relation is a system view or a CTE the statement defines.

    statements.py resolves names by scope and substitute() replaces tables by system views; this checks the
    result, so a stage that let a name through could not make PostgreSQL look it up (in pg_catalog, say).
    A CTE name (renamed by statements.py) matches no relation PostgreSQL could find instead of the CTE.
    """
    defined = {cte.alias for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if is_cte_reference(table) and table.name in defined:
            continue
        system = table.db == PG_SCHEMA and table.name in SYSTEM_COLUMNS and not table.args.get("catalog")
        if not system:
            raise InvalidParameter(f"The table reference '{table.sql(DIALECT)}' cannot be resolved.")


def check_depth(depth: int, name: TableName) -> None:
    if depth > _MAX_VIEW_DEPTH:
        raise InvalidParameter(f"Views nest deeper than {_MAX_VIEW_DEPTH} levels (or refer to themselves) at {name}.")


# -- tree rewrites ------------------------------------------------------------------------------------------


def _name_columns(tree: exp.Expr) -> None:
    """Unnamed expressions get the name Databricks gives them (`count(metric_time)`), not PostgreSQL's `count`."""
    for select in list(tree.find_all(exp.Select)):
        items: list[exp.Expr] = []
        for item in select.expressions:
            if isinstance(item, exp.Subquery):
                # As Databricks names it; the query's text would show the names CTEs are renamed to.
                item = exp.alias_(item, "scalarsubquery()", quoted=True)
            elif not isinstance(item, (exp.Alias, exp.Aliases, exp.Column, exp.Star, exp.Explode)):
                name = _without_queries(item).sql(dialect=DIALECT, normalize_functions="lower", comments=False)
                item = exp.alias_(item, name[:MAX_COLUMN_NAME], quoted=True)
            items.append(item)
        select.set("expressions", items)


def _without_queries(item: exp.Expr) -> exp.Expr:
    """The item with each query in it written `scalarsubquery()`, as Databricks names them.

    The tree is the substituted one: a query in it shows the views it reads expanded, and its text as a column's
    name gave a reader the opening of a view's definition (`1 + (SELECT count(*) FROM (SELECT 'note' AS n, ...`).
    """
    if item.find(exp.Query) is None:
        return item
    named = item.copy()
    # Outermost first (breadth-first): the queries nested in one go with it.
    while (query := next((q for q in named.find_all(exp.Query) if q is not named), None)) is not None:
        target = query.parent if isinstance(query.parent, exp.Subquery) and query.parent is not named else query
        target.replace(exp.Anonymous(this="scalarsubquery", expressions=[]))
    return named


def _quote_keyword_columns(tree: exp.Expr) -> None:
    """A bare `user` or `current_role` is a column to Databricks but the database role to PostgreSQL: quote it."""
    for column in tree.find_all(exp.Column):
        if not column.table and column.name.lower() in POSTGRES_KEYWORD_FUNCTIONS:
            column.set("this", exp.to_identifier(column.name.lower(), quoted=True))


def _evaluate_identity(tree: exp.Expr, identity: Identity) -> None:
    for node in list(tree.find_all(exp.CurrentUser, exp.SessionUser)):
        node.replace(exp.Literal.string(identity.user))
    for anonymous in list(tree.find_all(exp.Anonymous)):
        if str(anonymous.name).lower() == "is_account_group_member":
            group = anonymous.expressions[0].name
            anonymous.replace(exp.Boolean(this=identity.member_of(group)))


def _bind_parameters(tree: exp.Expr, parameter_types: Mapping[str, str]) -> tuple[str, ...]:
    order: dict[str, int] = {}
    for placeholder in list(tree.find_all(exp.Placeholder)):
        name = placeholder.name
        if name not in parameter_types:
            raise InvalidParameter(f"No value was given for the parameter ':{name}'.")
        index = order.setdefault(name, len(order) + 1)
        # Bound as text and cast here: the value never becomes SQL text, and the cast checks its type.
        value: exp.Expr = exp.Cast(this=exp.Parameter(this=exp.Literal.number(index)), to=exp.DataType.build("TEXT"))
        target = parameter_types[name]
        if target != "TEXT":
            value = exp.Cast(this=value, to=exp.DataType.build(target, dialect="postgres"))
        placeholder.replace(value)
    return tuple(order)


def _rename_lambda_variables(tree: exp.Expr) -> None:
    """Each lambda variable runs under a name of the gateway's own (`_lambda_<n>`), which no user text can spell.

    A lambda becomes `... FROM UNNEST(array) AS <variable>`, the innermost scope of its body in PostgreSQL, where
    the variable is a scalar and `<variable>.f` is the call f(<variable>). sqlglot marks the references it matches
    (as written, so not `X` for `x`), and only those were checked as fields: `x -> X.current_setting`, with a FROM
    item named x, was a column of that FROM item to the gateway and `current_setting(x)` to PostgreSQL, and
    `X.ts_stat` ran any query as the reader role (which could leave that role with set_config). Now the marked
    references and every unquoted `x`/`X.f` of the body (Databricks compares names case-insensitively) read the
    renamed variable, as a value and as checked fields; any other name finds only what the user named.
    """
    # Innermost first: a nested lambda's own variable shadows an outer one of the same name.
    for number, function in enumerate(_innermost_first(list(tree.find_all(exp.Lambda))), start=1):
        variable = function.expressions[0]
        written = variable.name
        renamed = f"{LAMBDA_PREFIX}{number}"
        for node in list(function.this.walk()):
            if isinstance(node, exp.Identifier) and node.name == written and _is_reference(node):
                node.replace(exp.to_identifier(renamed))
            elif isinstance(node, exp.Column) and not node.args.get("catalog") and not node.args.get("db"):
                qualifier = node.args.get("table")
                part = qualifier if qualifier is not None else node.this
                if not isinstance(part, exp.Identifier) or part.quoted or part.name.lower() != written.lower():
                    continue
                if qualifier is None:
                    node.replace(exp.to_identifier(renamed))
                else:
                    node.replace(exp.Dot(this=exp.to_identifier(renamed), expression=node.this.copy()))
        function.set("expressions", [exp.to_identifier(renamed)])


def _innermost_first(lambdas: list[exp.Lambda]) -> list[exp.Lambda]:
    def depth(node: exp.Expr) -> int:
        count = 0
        while node.parent is not None:
            node = node.parent
            count += 1
        return count

    return sorted(lambdas, key=depth, reverse=True)


def _is_reference(node: exp.Identifier) -> bool:
    """An identifier sqlglot put in place of a lambda variable: a value, or the `this` of a Dot, never a name part."""
    parent = node.parent
    if isinstance(parent, (exp.Column, exp.Table, exp.TableAlias, exp.Alias, exp.Lambda)):
        return False
    return not (isinstance(parent, exp.Dot) and node.arg_key == "expression")


def _source_names(node: exp.Expr) -> set[str]:
    """Names of the FROM items visible at `node`: its own SELECT's and those of enclosing SELECTs."""
    names: set[str] = set()
    scope = node.parent
    while scope is not None:
        if isinstance(scope, exp.Select):
            from_ = scope.args.get("from_")
            items: list[exp.Expr] = [from_.this] if from_ is not None else []
            items += [join.this for join in scope.args.get("joins") or []]
            items += list(scope.args.get("laterals") or [])
            names.update(item.alias_or_name.lower() for item in items if item.alias_or_name)
        scope = scope.parent
    return names


def _struct_fields(tree: exp.Expr) -> None:
    """`m.metric_name` where `m` is no FROM item but a struct-valued column: a field of that column."""
    for column in list(tree.find_all(exp.Column)):
        if not column.table:
            continue
        parts = [part.name for part in column.parts]
        lowered = [part.lower() for part in parts]
        sources = _source_names(column)
        if len(parts) == 2 and lowered[0] in sources:
            continue  # table.column
        if len(parts) == 4 and lowered[2] in sources:  # catalog.schema.table.column
            column.replace(exp.column(parts[3], table=parts[2]))
            continue
        if lowered[0] in sources:  # table.column.field...
            base: exp.Expr = exp.column(parts[1], table=parts[0])
            fields = parts[2:]
        else:  # column.field...
            base = exp.column(parts[0])
            fields = parts[1:]
        for name in fields:
            base = exp.Dot(this=base, expression=exp.to_identifier(name))
        column.replace(base)


def _check_fields(tree: exp.Expr) -> None:
    """Every field read (`m.metric_name`, `(x).f`, a lambda variable's `v.f`) is a field of the metric aggregates.

    PostgreSQL reads `(x).f`, when x has no field f, as the call f(x), whatever the type of x: `('server_version')
    .current_setting` reads a setting and `('SELECT ...').ts_stat` runs any query as the reader role, past every
    grant and view. Only the composite type of aggregated_metrics has fields; `alias.column` of a FROM item (a
    row, never a scalar) is a column, not a field, and stays a Column.
    """
    for dot in tree.find_all(exp.Dot):
        name = dot.expression.name if isinstance(dot.expression, exp.Identifier) else ""
        if name.lower() not in STRUCT_FIELDS:
            known = ", ".join(sorted(STRUCT_FIELDS))
            raise InvalidParameter(
                f"'{name}' is not a field: only the fields of aggregated_metrics ({known}) can be read with '.'."
            )


def _fold_table_names(tree: exp.Expr) -> None:
    """Table aliases and the qualifiers that name them in lower case: Databricks compares names case-insensitively,
    PostgreSQL a quoted one as written (`` `a`.run_id ... AS `A` `` failed there). Neither is ever a result's name."""
    for alias in tree.find_all(exp.TableAlias):
        name = alias.args.get("this")
        if isinstance(name, exp.Identifier) and name.quoted and name.name != name.name.lower():
            alias.set("this", exp.to_identifier(name.name.lower(), quoted=True))
    for column in tree.find_all(exp.Column):
        qualifier = column.args.get("table")
        if isinstance(qualifier, exp.Identifier) and qualifier.quoted and qualifier.name != qualifier.name.lower():
            column.set("table", exp.to_identifier(qualifier.name.lower(), quoted=True))


# -- what PostgreSQL's planner copies ---------------------------------------------------------------------------

# Expression nodes one SELECT may hold once every subquery and CTE it reads is pulled up into it (each reference to a
# column copied as that column's expression), before the sources that make it larger are fenced. PostgreSQL's planner
# used some 180 bytes of a backend per node so counted (v + v + v + v nested nine deep: 1.6 million, 280 MiB), so
# this is ~2 MiB of a plan; a query as written holds a few hundred nodes, the documented ones a few dozen each.
EXPANDED_NODES_PER_SELECT = 10_000
# All the SELECTs of a statement together, fences placed: past it every subquery and CTE is fenced, and what is left to
# the planner is the statement as written (at most MAX_STATEMENT_CHARS of text, views at most MAX_RELATIONS).
EXPANDED_NODES_PER_STATEMENT = 100_000


@dataclass
class _Outputs:
    """A query's output columns, each as large as the expression a reference to it is replaced by: the largest, all."""

    largest: int
    total: int
    names: frozenset[str] | None = None  # the columns' names, where known (_ReadEstimate)


_PLAIN = _Outputs(1, 1)


def expanded_nodes(tree: exp.Expr) -> int:
    """The expression nodes of a statement with every subquery and CTE not fenced by an OFFSET or LIMIT pulled up."""
    return _ExpansionEstimate(sys.maxsize).run(tree.copy())


def _is_fenced(query: exp.Expr) -> bool:
    """PostgreSQL pulls no subquery with an OFFSET or LIMIT up (nor a MATERIALIZED CTE)."""
    return bool(query.args.get("offset") or query.args.get("limit"))


def _fence_expansion(tree: exp.Expr) -> None:
    """Fence with `OFFSET 0` the subqueries and CTEs whose pull-up would make the planner copy an expression too often.

    PostgreSQL pulls a plain subquery (and a CTE read once) up into the query around it, replacing each reference to
    one of its columns by a copy of that column's expression: `SELECT v + v + v + v AS v FROM (...)` nested n deep
    plans 4^n nodes, before anything runs and past work_mem and the statement timeout (ten deep: 1.1 GB of one
    backend; twelve: ~16 GB, and the kernel kills the database). A subquery with an OFFSET is never pulled up, so its
    columns are computed once. The size is estimated here as if every subquery and CTE were pulled up (views are
    fenced already, substitute()); a SELECT past EXPANDED_NODES_PER_SELECT gets its largest sources fenced until it is
    within, and a statement past EXPANDED_NODES_PER_STATEMENT all of them. Queries below the bounds are unchanged.
    """
    if _ExpansionEstimate(EXPANDED_NODES_PER_SELECT).run(tree) > EXPANDED_NODES_PER_STATEMENT:
        _ExpansionEstimate(0).run(tree)


class _ExpansionEstimate:
    def __init__(self, per_select: int) -> None:
        self.per_select = per_select
        self.total = 0
        self.ctes: dict[str, tuple[exp.CTE, _Outputs]] = {}
        self.queries: dict[int, _Outputs] = {}

    def run(self, tree: exp.Expr) -> int:
        if isinstance(tree, exp.Query):
            self.query(tree, [])
        return self.total

    def query(self, query: exp.Query, scopes: list[dict[str, _Outputs]]) -> _Outputs:
        known = self.queries.get(id(query))
        if known is not None:
            return known
        with_ = query.args.get("with_")
        if with_ is not None:
            for cte in with_.expressions:
                self.ctes[cte.alias_or_name.lower()] = (cte, self.query(cte.this, scopes))
        if isinstance(query, exp.SetOperation):
            left = self.query(query.left, scopes)
            right = self.query(query.right, scopes)
            # A UNION ALL pulled up reads each branch's expression in its place.
            outputs = _Outputs(left.largest + right.largest, left.total + right.total)
        elif isinstance(query, exp.Select):
            outputs = self.select(query, scopes)
        elif isinstance(query, exp.Subquery):
            outputs = self.query(query.this, scopes)
        else:
            outputs = _PLAIN
        self.queries[id(query)] = outputs
        return outputs

    def select(self, select: exp.Select, scopes: list[dict[str, _Outputs]]) -> _Outputs:
        sources: dict[str, _Outputs] = {}
        fences: dict[str, Callable[[], None]] = {}
        own: list[exp.Expr] = []
        items = [select.args.get("from_"), *(select.args.get("joins") or [])]
        for item in items:
            if item is None:
                continue
            source = item.this
            name = source.alias_or_name.lower()
            if isinstance(source, exp.Subquery) and isinstance(source.this, exp.Query):
                outputs = self.query(source.this, scopes)
                sources[name] = _PLAIN if _is_fenced(source.this) else outputs
                fences[name] = functools.partial(self._fence_subquery, source)
            elif isinstance(source, exp.Table) and is_cte_reference(source) and source.name.lower() in self.ctes:
                cte, outputs = self.ctes[source.name.lower()]
                sources[name] = _PLAIN if _is_fenced(cte.this) else outputs
                fences[name] = functools.partial(self._fence_cte, cte)
            else:
                sources[name] = _PLAIN
                own.append(source)
            own.extend(child for key, child in item.args.items() if key != "this" and isinstance(child, exp.Expr))
        own.extend(
            child
            for key, value in select.args.items()
            if key not in ("from_", "joins", "with_")
            for child in (value if isinstance(value, list) else [value])
            if isinstance(child, exp.Expr)
        )
        inner = [*scopes, sources]
        size, largest = self._size(select, own, inner)
        for name in sorted(sources, key=lambda name: sources[name].largest, reverse=True):
            if size <= self.per_select or sources[name].largest <= 1:
                break
            fences[name]()
            sources[name] = _PLAIN
            size, largest = self._size(select, own, inner)
        self.total += size
        return _Outputs(largest, max(1, size))

    def _size(self, select: exp.Select, own: list[exp.Expr], scopes: list[dict[str, _Outputs]]) -> tuple[int, int]:
        """The SELECT's nodes, references expanded, and its largest output column."""
        largest = 1
        size = 0
        items = {id(item) for item in select.expressions}
        for node in own:
            nodes = self._nodes(node, scopes)
            size += nodes
            if id(node) in items:
                largest = max(largest, nodes)
        return size, largest

    def _nodes(self, root: exp.Expr, scopes: list[dict[str, _Outputs]]) -> int:
        count = 0
        stack = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, exp.Query):
                self.query(node, scopes)  # counted as a statement of its own; here it is one value
                count += 1
            elif isinstance(node, exp.Column):
                count += self._reference(node, scopes).largest
            elif isinstance(node, exp.Star) and isinstance(node.parent, exp.Select):
                count += sum(source.total for source in scopes[-1].values()) if scopes else 1
            else:
                count += 1
                stack.extend(node.iter_expressions())
        return count

    @staticmethod
    def _reference(column: exp.Column, scopes: list[dict[str, _Outputs]]) -> _Outputs:
        if isinstance(column.this, exp.Star):
            table = column.table.lower()
            for scope in reversed(scopes):
                if table in scope:
                    return _Outputs(scope[table].total, scope[table].total)
            return _PLAIN
        if column.table:
            table = column.table.lower()
            for scope in reversed(scopes):
                if table in scope:
                    return scope[table]
            return _PLAIN
        for scope in reversed(scopes):
            if scope:
                return _Outputs(max(source.largest for source in scope.values()), 1)
        return _PLAIN

    @staticmethod
    def _fence_subquery(subquery: exp.Subquery) -> None:
        subquery.set("this", fence(subquery.this))

    @staticmethod
    def _fence_cte(cte: exp.CTE) -> None:
        cte.set("this", fence(cte.this))


class _ReadEstimate(_ExpansionEstimate):
    """_ExpansionEstimate counting column references alone: the places where a row's stored values are read."""

    def select(self, select: exp.Select, scopes: list[dict[str, _Outputs]]) -> _Outputs:
        source = select.args.get("from_")
        if source is not None and isinstance(source.this, exp.Table) and source.this.db == PG_SCHEMA:
            # A system table's subquery (substitute()): its columns pass the stored values through, read where the
            # statement refers to them.
            return _Outputs(1, len(select.expressions), frozenset(item.alias_or_name for item in select.expressions))
        outputs = super().select(select, scopes)
        if any(isinstance(item, exp.Star) or isinstance(item.this, exp.Star) for item in select.expressions):
            return outputs  # names not known here: a reference to it by name counts as its whole row
        return _Outputs(
            outputs.largest, outputs.total, frozenset(item.alias_or_name.lower() for item in select.expressions)
        )

    def _read(self, column: exp.Column, scopes: list[dict[str, _Outputs]]) -> int:
        """The reads of one column reference: a column of a FROM item as large as its expression, and a FROM item
        named alone (`CAST(x AS STRING)`) or with a function's name (`x.to_jsonb`), its whole row, every column."""
        if isinstance(column.this, exp.Star):
            return self._reference(column, scopes).total
        name, table = column.name.lower(), column.table.lower()
        for scope in reversed(scopes):
            if table:
                if table in scope:
                    source = scope[table]
                    return source.largest if source.names is not None and name in source.names else source.total
                continue
            if not scope:
                continue
            if any(source.names is None or name in source.names for source in scope.values()):
                whole = scope[name].total if name in scope and scope[name].names is None else 0
                return max(whole, *(source.largest for source in scope.values()))
            if name in scope:
                return scope[name].total
        return 1

    def _nodes(self, root: exp.Expr, scopes: list[dict[str, _Outputs]]) -> int:
        count = 0
        stack = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, exp.Query):
                self.query(node, scopes)
            elif isinstance(node, exp.Column):
                count += self._read(node, scopes)
            elif isinstance(node, exp.Star) and isinstance(node.parent, exp.Select):
                count += sum(source.total for source in scopes[-1].values()) if scopes else 1
            else:
                stack.extend(node.iter_expressions())
        return count


# -- the size of the values a statement builds ------------------------------------------------------------------


class Bounded(exp.Expression):
    """A value at most the sum of its inputs (`||`, concat_ws, array(...)), checked once built: `sql_bounded`."""

    arg_types = {"this": True, "what": True, "limit": True}


class GuardedReplace(exp.Expression):
    """replace(), refused before it builds a result past the limit: `sql_replace`."""

    arg_types = {"this": True, "expression": True, "replacement": True, "limit": True}


class GuardedRegexpReplace(exp.Expression):
    """regexp_replace() (every match from `position` on), refused before it builds past the limit."""

    arg_types = {"this": True, "expression": True, "replacement": True, "position": True, "limit": True}


class Stored(exp.Expression):
    """A stored value of a run (tags, params, aggregated_metrics) as a system table's subquery reads it, its size
    checked first: `sql_stored` (migration 0047)."""

    arg_types = {"this": True, "what": True, "limit": True}


class Counted(exp.Expression):
    """An element collected into an array (collect_list, transform()), added to its place's running total first."""

    arg_types = {"this": True, "what": True, "site": True, "limit": True}


def value_limit(tree: exp.Expr) -> int:
    """The bytes each place of the statement that builds, copies or reads a value may hold: VALUE_BUDGET_BYTES shared.

    Every function and `||` counts once for each of its arguments but literals: PostgreSQL keeps every value one row's
    expressions build until the row is done, and a function may hold all of its (bounded) arguments and its
    result at once, so `length(lower(v)) + length(lower(v)) + ...` holds one copy per call. Every reference to a
    column counts once more, as PostgreSQL will run it (stored_reads()): a reference to a run's tags decompresses
    them there, and keeps that copy until the row is done too.
    """
    places = stored_reads(tree)
    for node in tree.walk():
        if isinstance(node, (exp.Func, exp.DPipe)):
            # A literal argument is part of the statement's text, no larger than it, and not a copy.
            values = sum(1 for child in node.iter_expressions() if not isinstance(child, (exp.Literal, exp.Null)))
            places += max(1, values)
    return max(1, VALUE_BUDGET_BYTES // max(1, places))


def stored_reads(tree: exp.Expr) -> int:
    """The column references of a statement as PostgreSQL runs it: each subquery and CTE not fenced pulled up, so a
    reference to one of its columns is as many as that column's expression holds (`SELECT t['a'] || t['b'] AS u
    FROM (SELECT tags AS t ...)` read twice for each reference to u)."""
    return _ReadEstimate(sys.maxsize).run(tree)


def _guard_values(tree: exp.Expr) -> None:
    """Every place that can build a value larger than its inputs goes through a function of migration 0044."""
    limit = value_limit(tree)
    sites = 0

    def counted(node: exp.Expr, what: str) -> exp.Expr:
        nonlocal sites
        sites += 1
        return Counted(
            this=node,
            what=exp.Literal.string(what),
            site=exp.Literal.string(f"fedgate.sql_built_{sites}"),
            limit=exp.Literal.number(limit),
        )

    for node in list(tree.find_all(exp.Concat, exp.DPipe, exp.Array, exp.Replace, exp.RegexpReplace)):
        if isinstance(node, exp.Replace):
            replacement = node.args.get("replacement") or exp.Literal.string("")
            node.replace(
                GuardedReplace(
                    this=node.this, expression=node.expression, replacement=replacement, limit=exp.Literal.number(limit)
                )
            )
        elif isinstance(node, exp.RegexpReplace):
            if node.args.get("occurrence") or node.args.get("modifiers"):
                raise InvalidParameter("regexp_replace() takes a string, a pattern, a replacement and a position.")
            node.replace(
                GuardedRegexpReplace(
                    this=node.this,
                    expression=node.expression,
                    replacement=node.args.get("replacement") or exp.Literal.string(""),
                    position=node.args.get("position") or exp.Literal.number(1),
                    limit=exp.Literal.number(limit),
                )
            )
        elif all(isinstance(part, (exp.Literal, exp.Null)) for part in node.iter_expressions()):
            continue  # of literals alone, a value is no larger than the statement's text
        elif type(node) is exp.Concat and len(node.expressions) > 1:
            # a || b || c with each step checked: unchecked, the chain would hold every partial result at once.
            chain = node.expressions[0]
            for following in node.expressions[1:]:
                step = exp.DPipe(this=chain, expression=following, safe=True)
                chain = Bounded(this=step, what=exp.Literal.string("concat()"), limit=exp.Literal.number(limit))
            node.replace(chain)
        else:
            what = {exp.DPipe: "||", exp.ConcatWs: "concat_ws()", exp.Array: "array()"}.get(type(node), "concat()")
            wrapper = Bounded(what=exp.Literal.string(what), limit=exp.Literal.number(limit))
            node.replace(wrapper)
            wrapper.set("this", node)
    for aggregate in list(tree.find_all(exp.ArrayAgg)):
        _count_collected(aggregate, lambda value: counted(value, "collect_list()"))
    _guard_stored(tree, limit)
    for transform in list(tree.find_all(exp.Transform)):
        function = transform.expression
        if isinstance(function, exp.Lambda):
            body = function.this
            function.set("this", counted(body.copy(), "transform()"))


def _guard_stored(tree: exp.Expr, limit: int) -> None:
    """Each system table's subquery reads the stored values of a run (`tags`, `params`, `aggregated_metrics`)
    through `sql_stored`, which refuses one larger than `limit` before anything copies it.

    The subquery is pulled up into the statement, so every reference to such a column runs the check: each of them
    decompresses (or builds) at most `limit` bytes, and value_limit() gave every reference its share.
    """
    for table in list(tree.find_all(exp.Table)):
        select = table.parent.parent if isinstance(table.parent, exp.From) else None
        if table.db != PG_SCHEMA or table.args.get("catalog") or not isinstance(select, exp.Select):
            continue
        items: list[exp.Expr] = []
        for item in select.expressions:
            if isinstance(item, exp.Column) and not item.table and item.name in STORED_VALUE_COLUMNS:
                what = exp.Literal.string(item.name)
                item = exp.alias_(Stored(this=item, what=what, limit=exp.Literal.number(limit)), item.name)
            items.append(item)
        select.set("expressions", items)


def _count_collected(aggregate: exp.ArrayAgg, counted: Callable[[exp.Expr], exp.Expr]) -> None:
    """collect_list(x): `ARRAY_AGG(sql_counted(x)) FILTER (WHERE x IS NOT NULL)`, x counted once per row kept.

    sqlglot writes Databricks' exclusion of NULLs as a FILTER on the aggregate's argument, which would count
    each element twice; the filter is written here on x itself.
    """
    holder: exp.Expr = aggregate
    value = aggregate.this
    if isinstance(value, exp.Order):
        holder, value = value, value.this
    if isinstance(value, exp.Distinct):
        holder, value = value, value.expressions[0] if value.expressions else None
    if value is None:
        return
    if aggregate.args.get("nulls_excluded"):
        aggregate.set("nulls_excluded", None)
        kept = exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null()))
        parent = aggregate.parent
        if isinstance(parent, exp.Filter):
            where = parent.expression
            where.set("this", exp.and_(where.this, kept))
        else:
            filtered = exp.Filter(this=None, expression=exp.Where(this=kept))
            aggregate.replace(filtered)
            filtered.set("this", aggregate)
    guarded = counted(value.copy())
    if isinstance(holder, exp.Distinct):
        holder.set("expressions", [guarded])
    else:
        holder.set("this", guarded)


class EntryField(exp.Expression):
    """One column of `explode(map)` in a SELECT list: `(JSONB_EACH_TEXT(map)).key` or `.value`."""

    arg_types = {"this": True, "field": True}


class LateralExplode(exp.Expression):
    """`LATERAL VIEW [OUTER] explode(x) t AS ...` as a PostgreSQL lateral join."""

    arg_types = {"this": True, "table": True, "columns": True, "map": False, "outer": False}


def _lateral_views(tree: exp.Expr) -> None:
    for select in list(tree.find_all(exp.Select)):
        laterals = select.args.get("laterals") or []
        if not laterals:
            continue
        joins = list(select.args.get("joins") or [])
        for lateral in laterals:
            explode = lateral.this
            alias = lateral.args.get("alias")
            table = alias.name if alias is not None and alias.name else "_lateral"
            columns = [column.name for column in alias.columns] if alias is not None else []
            is_map = _kind(explode.this) == "map"
            columns = columns or (["key", "value"] if is_map else ["col"])
            if len(columns) != (2 if is_map else 1):
                wanted = "two names (key, value)" if is_map else "one name"
                raise InvalidParameter(f"LATERAL VIEW explode() of this value takes {wanted} after AS.")
            joins.append(
                LateralExplode(
                    this=explode.this.copy(),
                    table=exp.to_identifier(table),
                    columns=[exp.to_identifier(column) for column in columns],
                    map=is_map,
                    outer=bool(lateral.args.get("outer")),
                )
            )
        select.set("laterals", None)
        select.set("joins", joins)


def _select_list_explodes(tree: exp.Expr) -> None:
    for select in list(tree.find_all(exp.Select)):
        if not any(isinstance(_unaliased(item), exp.Explode) for item in select.expressions):
            continue
        items: list[exp.Expr] = []
        for item in select.expressions:
            explode = _unaliased(item)
            if not isinstance(explode, exp.Explode):
                items.append(item)
                continue
            names = [alias.name for alias in item.expressions] if isinstance(item, exp.Aliases) else []
            if isinstance(item, exp.Alias):
                names = [item.alias]
            if _kind(explode.this) == "map":
                names = names or ["key", "value"]
                if len(names) != 2:
                    raise InvalidParameter("explode() of a map gives two columns: name them AS (key, value).")
                for field, name in zip(("key", "value"), names, strict=True):
                    entry = EntryField(this=explode.this.copy(), field=exp.to_identifier(field))
                    items.append(exp.alias_(entry, name))
            else:
                if len(names) > 1:
                    raise InvalidParameter("explode() of an array gives one column.")
                items.append(exp.alias_(exp.Unnest(expressions=[explode.this.copy()]), names[0] if names else "col"))
        select.set("expressions", items)


def _unaliased(item: exp.Expr) -> exp.Expr:
    return item.this if isinstance(item, (exp.Alias, exp.Aliases)) else item


# -- what kind of value an expression is, where PostgreSQL needs to know --------------------------------------


def _kind(node: exp.Expr | None) -> str | None:
    """ "map", "array", "double", "decimal" or None (unknown or anything else)."""
    if node is None:
        return None
    if isinstance(node, exp.Column):
        name = node.name.lower()
        if name in MAP_COLUMNS:
            return "map"
        if name in ARRAY_COLUMNS:
            return "array"
        return "double" if name in DOUBLE_COLUMNS else None
    if isinstance(node, exp.Dot):
        return "double" if node.name.lower() in DOUBLE_COLUMNS else None
    if isinstance(node, (exp.ArrayFilter, exp.Array, exp.ArrayAgg, exp.MapKeys, exp.Transform)):
        return "array"
    if isinstance(node, exp.Literal):
        return "decimal" if node.is_number and "." in node.name and "e" not in node.name.lower() else None
    if isinstance(node, exp.Cast):
        to = node.to.this
        if to in (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
            return "double"
        return "decimal" if to == exp.DataType.Type.DECIMAL else None
    if isinstance(node, (exp.PercentileCont, exp.Median, exp.Div, exp.Stddev, exp.StddevSamp, exp.StddevPop)):
        return "double"
    if isinstance(node, (exp.Variance, exp.VariancePop)):
        return "double"
    if isinstance(node, (exp.Avg, rollup.WeightedAvg)):
        return "decimal" if _kind(node.this) == "decimal" else "double"
    if isinstance(node, rollup.WeightedSum):
        return _kind(node.this)
    if isinstance(node, exp.Case):
        first = node.args.get("ifs") or []
        return _kind(first[0].args.get("true")) if first else _kind(node.args.get("default"))
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
        kinds = {_kind(node.this), _kind(node.expression)}
        return "double" if "double" in kinds else ("decimal" if "decimal" in kinds else None)
    if isinstance(node, (Bounded, Counted, Stored)):
        return _kind(node.this)
    if isinstance(node, (exp.Paren, exp.Window, exp.WithinGroup, exp.Sum, exp.Min, exp.Max, exp.Abs, exp.Neg)):
        return _kind(node.this)
    if isinstance(node, (exp.Coalesce, exp.Greatest, exp.Least, exp.FirstValue, exp.LastValue, exp.Lag, exp.Lead)):
        return _kind(node.this)
    return None


# -- renderings ----------------------------------------------------------------------------------------------


def _is_map_access(node: exp.Bracket) -> bool:
    key = node.expressions[0]
    if isinstance(key, exp.Literal):
        return key.is_string
    if isinstance(key, exp.Cast) and isinstance(key.this, exp.Parameter):
        return True  # a STRING parameter
    return _kind(node.this) == "map"


def _bracket(self: PostgresGenerator, node: exp.Bracket) -> str:
    if _is_map_access(node):
        key = node.expressions[0]
        key_sql = self.sql(key) if isinstance(key, exp.Literal) else f"CAST({self.sql(key)} AS TEXT)"
        return f"({self.sql(node, 'this')} ->> {key_sql})"
    copy = node.copy()
    if not isinstance(copy.this, (exp.Column, exp.Identifier, exp.Paren)):
        copy.set("this", exp.paren(copy.this, copy=False))
    return str(PostgresGenerator.bracket_sql(self, copy))


def _dot(self: PostgresGenerator, node: exp.Dot) -> str:
    field = self.sql(node, "expression")
    if isinstance(node.this, exp.Identifier):
        return f"{self.sql(node, 'this')}.{field}"  # a lambda variable: a FROM alias of UNNEST, see _filter
    return f"({self.sql(node, 'this')}).{field}"


def _lambda(self: PostgresGenerator, node: exp.Expr) -> tuple[str, str, str]:
    function = node.expression
    assert isinstance(function, exp.Lambda)
    return self.sql(node, "this"), self.sql(function.expressions[0]), self.sql(function, "this")


def _filter(self: PostgresGenerator, node: exp.ArrayFilter) -> str:
    # `UNNEST(a) AS x`: x is the element whether it is a scalar or a struct (then x.field is a column).
    array, variable, body = _lambda(self, node)
    return f"ARRAY(SELECT {variable} FROM UNNEST({array}) AS {variable} WHERE {body})"


def _transform(self: PostgresGenerator, node: exp.Transform) -> str:
    array, variable, body = _lambda(self, node)
    return f"ARRAY(SELECT {body} FROM UNNEST({array}) AS {variable})"


def _exists(self: PostgresGenerator, node: exp.Exists) -> str:
    if not isinstance(node.expression, exp.Lambda):
        return str(PostgresGenerator.exists_sql(self, node))
    array, variable, body = _lambda(self, node)
    return f"EXISTS(SELECT 1 FROM UNNEST({array}) AS {variable} WHERE {body})"


def _size(self: PostgresGenerator, node: exp.ArraySize) -> str:
    value = self.sql(node, "this")
    if _kind(node.this) == "map":
        return f"CARDINALITY(ARRAY(SELECT JSONB_OBJECT_KEYS({value})))"
    return f"CARDINALITY({value})"


def _map_keys(self: PostgresGenerator, node: exp.MapKeys) -> str:
    return f"ARRAY(SELECT JSONB_OBJECT_KEYS({self.sql(node, 'this')}))"


def _anonymous(self: PostgresGenerator, node: exp.Anonymous) -> str:
    if str(node.name).lower() == "map_values":
        return f"ARRAY(SELECT _entry.value FROM JSONB_EACH_TEXT({self.sql(node.expressions[0])}) AS _entry)"
    return str(PostgresGenerator.anonymous_sql(self, node))


def _entry_field(self: PostgresGenerator, node: EntryField) -> str:
    return f"(JSONB_EACH_TEXT({self.sql(node, 'this')})).{self.sql(node, 'field')}"


def _lateral_explode(self: PostgresGenerator, node: LateralExplode) -> str:
    join = "LEFT JOIN LATERAL" if node.args.get("outer") else "CROSS JOIN LATERAL"
    value = self.sql(node, "this")
    table = self.sql(node, "table")
    columns = [self.sql(column) for column in node.args["columns"]]
    if node.args.get("map"):
        source = f"JSONB_EACH_TEXT({value}) AS {table}({columns[0]}, {columns[1]})"
    else:
        # Through a subquery: a column alias list on UNNEST of structs would rename the struct's fields.
        source = f"(SELECT _element AS {columns[0]} FROM UNNEST({value}) AS _element) AS {table}"
    on = " ON TRUE" if node.args.get("outer") else ""
    return f"{self.seg(join)} {source}{on}"


def _round(self: PostgresGenerator, node: exp.Round) -> str:
    # PostgreSQL rounds only numerics to a number of digits; Databricks rounds a double half up and keeps it double.
    digits = self.sql(node, "decimals") or "0"
    rounded = f"ROUND(CAST({self.sql(node, 'this')} AS NUMERIC), {digits})"
    return f"CAST({rounded} AS DOUBLE PRECISION)" if _kind(node.this) == "double" else rounded


def _avg(self: PostgresGenerator, node: exp.Avg) -> str:
    # Databricks averages integers to a double; PostgreSQL would answer a numeric with 16 decimals.
    if isinstance(node.this, exp.Distinct) or _kind(node.this) == "decimal":
        return str(PostgresGenerator.function_fallback_sql(self, node))
    return f"AVG(CAST({self.sql(node, 'this')} AS DOUBLE PRECISION))"


def _part(unit: str) -> Callable[[PostgresGenerator, exp.Func], str]:
    def render(self: PostgresGenerator, node: exp.Func) -> str:
        return f"CAST(FLOOR(EXTRACT({unit} FROM {self.sql(node, 'this')})) AS INTEGER)"

    return render


def _is_nan(self: PostgresGenerator, node: exp.IsNan) -> str:
    return f"(CAST({self.sql(node, 'this')} AS DOUBLE PRECISION) = CAST('NaN' AS DOUBLE PRECISION))"


def _timestampdiff(self: PostgresGenerator, node: exp.TimestampDiff) -> str:
    unit = (node.text("unit") or "DAY").upper().removesuffix("S")
    return timestampdiff_sql(unit, self.sql(node, "expression"), self.sql(node, "this"))


def _datediff(self: PostgresGenerator, node: exp.DateDiff) -> str:
    unit = (node.text("unit") or "DAY").upper().removesuffix("S")
    start, end = self.sql(node, "expression"), self.sql(node, "this")
    if unit == "DAY":  # datediff(end, start): calendar days between the two dates
        return f"(CAST({end} AS DATE) - CAST({start} AS DATE))"
    return timestampdiff_sql(unit, start, end)


def timestampdiff_sql(unit: str, start: str, end: str) -> str:
    """Databricks' TIMESTAMPDIFF: whole units from start to end, truncated towards zero, in UTC.

    Time units count exact elapsed time. Date units follow Java's `LocalDateTime.until`: the end date
    steps back (or forward) a day when its time of day has not yet reached the start's, then days are
    counted, or months as (year*12 + month)*32 + day differences divided by 32.
    """
    if unit in _SECONDS_PER_UNIT:
        # The epoch of the interval between the two: exactly the difference of their epochs (both count
        # microseconds; the difference of two timestamps has no months), but immutable where EXTRACT from a
        # timestamptz is not, so an index can hold it (ix_runs_length, migration 0032: the longest runs).
        seconds = f"EXTRACT(EPOCH FROM (CAST({end} AS TIMESTAMPTZ) - CAST({start} AS TIMESTAMPTZ)))"
        return f"CAST(TRUNC({seconds} / {_SECONDS_PER_UNIT[unit]}) AS BIGINT)"
    if unit not in ("DAY", "WEEK", *_MONTHS_PER_UNIT):
        raise InvalidParameter(f"TIMESTAMPDIFF does not know the unit {unit}.")
    start_at = f"(CAST({start} AS TIMESTAMPTZ) AT TIME ZONE 'UTC')"
    end_at = f"(CAST({end} AS TIMESTAMPTZ) AT TIME ZONE 'UTC')"
    start_day, end_day = f"CAST({start_at} AS DATE)", f"CAST({end_at} AS DATE)"
    start_time, end_time = f"CAST({start_at} AS TIME)", f"CAST({end_at} AS TIME)"
    last_day = (
        f"(CASE WHEN {end_day} > {start_day} AND {end_time} < {start_time} THEN {end_day} - 1"
        f" WHEN {end_day} < {start_day} AND {end_time} > {start_time} THEN {end_day} + 1"
        f" ELSE {end_day} END)"
    )
    if unit == "DAY":
        return f"CAST({last_day} - {start_day} AS BIGINT)"
    if unit == "WEEK":
        return f"CAST(({last_day} - {start_day}) / 7 AS BIGINT)"

    def packed(day: str) -> str:
        return (
            f"((CAST(EXTRACT(YEAR FROM {day}) AS BIGINT) * 12 + CAST(EXTRACT(MONTH FROM {day}) AS BIGINT)) * 32"
            f" + CAST(EXTRACT(DAY FROM {day}) AS BIGINT))"
        )

    # PostgreSQL's integer division truncates towards zero, as Java's does.
    return f"(({packed(last_day)} - {packed(start_day)}) / 32 / {_MONTHS_PER_UNIT[unit]})"


def _bounded(self: PostgresGenerator, node: Bounded) -> str:
    what, limit = self.sql(node, "what"), self.sql(node, "limit")
    return f"{_GUARDS}.sql_bounded({self.sql(node, 'this')}, {what}, {limit})"


def _guarded_replace(self: PostgresGenerator, node: GuardedReplace) -> str:
    arguments = ", ".join(self.sql(node, key) for key in ("this", "expression", "replacement", "limit"))
    return f"{_GUARDS}.sql_replace({arguments})"


def _guarded_regexp_replace(self: PostgresGenerator, node: GuardedRegexpReplace) -> str:
    arguments = ", ".join(self.sql(node, key) for key in ("this", "expression", "replacement"))
    position = f"CAST({self.sql(node, 'position')} AS INTEGER)"
    return f"{_GUARDS}.sql_regexp_replace({arguments}, {position}, {self.sql(node, 'limit')})"


def _stored(self: PostgresGenerator, node: Stored) -> str:
    arguments = ", ".join(self.sql(node, key) for key in ("this", "what", "limit"))
    return f"{_GUARDS}.sql_stored({arguments})"


def _counted(self: PostgresGenerator, node: Counted) -> str:
    arguments = ", ".join(self.sql(node, key) for key in ("this", "what", "site", "limit"))
    return f"{_GUARDS}.sql_counted({arguments})"


class _Generator(PostgresGenerator):
    TRANSFORMS = {
        **PostgresGenerator.TRANSFORMS,
        exp.Bracket: _bracket,
        exp.Dot: _dot,
        exp.ArrayFilter: _filter,
        exp.Transform: _transform,
        exp.Exists: _exists,
        exp.ArraySize: _size,
        exp.MapKeys: _map_keys,
        exp.Anonymous: _anonymous,
        exp.Round: _round,
        exp.Avg: _avg,
        exp.Year: _part("YEAR"),
        exp.Month: _part("MONTH"),
        exp.Day: _part("DAY"),
        exp.Hour: _part("HOUR"),
        exp.Minute: _part("MINUTE"),
        exp.Second: _part("SECOND"),
        exp.IsNan: _is_nan,
        exp.TimestampDiff: _timestampdiff,
        exp.DateDiff: _datediff,
        EntryField: _entry_field,
        Bounded: _bounded,
        GuardedReplace: _guarded_replace,
        GuardedRegexpReplace: _guarded_regexp_replace,
        Counted: _counted,
        Stored: _stored,
        LateralExplode: _lateral_explode,
        rollup.WeightedCount: lambda self, node: rollup.render_count(self.sql, node),
        rollup.WeightedSum: lambda self, node: rollup.render_sum(self.sql, node),
        rollup.WeightedAvg: lambda self, node: rollup.render_avg(self.sql, node),
    }


class FedgatePostgres(Postgres):
    """PostgreSQL as the gateway writes it for statements over the system tables."""

    Generator = _Generator


class _Renderer:
    def __init__(self) -> None:
        self._dialect = FedgatePostgres()

    def generate(self, tree: exp.Expr, *, copy: bool) -> str:
        # Comments are dropped: user text is never carried into the SQL except as quoted literals and identifiers.
        return self._dialect.generate(tree, copy=copy, comments=False)


_GENERATOR = _Renderer()
