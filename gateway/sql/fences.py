"""A dynamic view's fence, narrowed: what of the reader's cannot fail runs inside it, beside the view's own filter.

Every dynamic view is read as a fenced subquery (`OFFSET 0`, transpile.fence), so that no expression of the reader's
sees a row the view hides: PostgreSQL flattens a plain subquery and runs the cheaper condition first, and a reader's
`CAST(run_name AS BOOLEAN)` then failed on a hidden run, naming it (and a condition that fails or not is a yes/no
question about a hidden row). The fence also kept every condition, order and limit of the reader's away from the
tables' indexes: the console's longest-runs dashboard through a view of three workspaces read all their runs.

PostgreSQL's own answer is the `security_barrier` view, which lets through only conditions built of leakproof
functions. A dynamic view cannot be one: it is expanded into each statement with the caller's identity evaluated
(current_user(), group membership), and statements run read-only as a role that creates nothing; nor would
PostgreSQL give such a view the reader's ORDER BY and LIMIT. So the transpiler applies the rule itself, narrower
than PostgreSQL's: a condition of the reader's on a fenced view moves inside the fence only when it is made of

- the view's columns that trace, through views that only filter or pick columns, to a column of a system table whose
  value is no expression that can fail on a row (COMPARABLE: not the stored values, which are read through a size
  check, not a concatenation or an arithmetic; `workspace_id` is a bigint as text, which cannot fail),
- compared by an operator whose function PostgreSQL marks leakproof for that type (LEAKPROOF; `texteq`, `int8lt`,
  `timestamptz_ge`, ..., tested against pg_proc), with a string literal or a STRING parameter (text, no cast of a
  value) or another such column of the same type; `IN` a list of those; `IS [NOT] NULL` of such a column; TRUE and
  FALSE (an identity function's answer); and AND, OR, NOT of those.

Nothing else: no cast, function, COLLATE, subquery, arithmetic, `||`, LIKE, a number or date compared with a column
of another type (`timestamptz_ge_date` can fail), a parameter of another type (its text is cast to that type as the
row is read). A condition that does not qualify stays outside, as before; a SELECT with an outer join moves nothing
(a condition on a view on its nullable side, moved, would keep the row null-extended instead of dropping it).

When the reader's SELECT reads only that view, every condition of it moved, with no grouping, aggregate, window,
DISTINCT, OFFSET or set-returning function, its ORDER BY and LIMIT go inside too (and stay outside): the order is
computed inside only on the rows the view's filter and the moved conditions let through, as it was outside, and
the first rows of an index of the order (`ix_runs_workspace_length`) answer it.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from gateway.sql.catalog import PG_SCHEMA, SYSTEM_COLUMNS
from gateway.sql.statements import is_cte_reference

# The meta key transpile.substitute marks a view's fence with. No text can set it: sqlglot reads `sqlglot.meta`
# comments into keys without spaces.
FENCE = "fedgate view fence"

# System columns a moved condition may compare, with their PostgreSQL types; each is a column of the index, a
# bigint written as text, or current_setting(..., true) in the system view: none can fail on a row.
COMPARABLE: Mapping[str, Mapping[str, str]] = {
    "runs_latest": {
        "account_id": "text",
        "update_time": "timestamptz",
        "delete_time": "timestamptz",
        "workspace_id": "text",
        "run_id": "text",
        "experiment_id": "text",
        "created_by": "text",
        "start_time": "timestamptz",
        "end_time": "timestamptz",
        "run_name": "text",
        "status": "text",
    },
    "run_metrics_history": {
        "account_id": "text",
        "insert_time": "timestamptz",
        "workspace_id": "text",
        "experiment_id": "text",
        "run_id": "text",
        "metric_name": "text",
        "metric_time": "timestamptz",
        "metric_step": "bigint",
        "metric_value": "double precision",
    },
    "experiments_latest": {
        "account_id": "text",
        "update_time": "timestamptz",
        "delete_time": "timestamptz",
        "workspace_id": "text",
        "name": "text",
        "create_time": "timestamptz",
    },
}
_ORDERING = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)
# The comparisons whose functions are leakproof for two values of a type (tests/unit/test_sql_fences.py checks
# pg_proc.proleakproof for each). Text only compares for (in)equality: text_lt and its kin are leakproof only in
# recent PostgreSQL releases.
LEAKPROOF: Mapping[str, tuple[type[exp.Expr], ...]] = {
    "text": (exp.EQ, exp.NEQ),
    "bigint": _ORDERING,
    "double precision": _ORDERING,
    "timestamptz": _ORDERING,
}
# What an ORDER BY moved inside may not hold: anything that makes the SELECT's rows other than its source's rows.
_NOT_ROW_LEVEL = (exp.AggFunc, exp.Window, exp.WithinGroup, exp.Filter, exp.Query, exp.Explode, exp.Unnest)
# Outputs of a view: each column's name, the name of the column of the view's own source it is, and its type where a
# moved condition may compare it (None: only read).
Outputs = dict[str, tuple[str, str | None]]


def mark(view: exp.Query) -> exp.Query:
    view.meta[FENCE] = True
    return view


def narrow(tree: exp.Expr) -> None:
    """Move into each view's fence the reader's conditions (and order and limit) that can run on any row."""
    # Innermost first: a view of a view is narrowed by its own filter before the reader's conditions reach it.
    for select in reversed(list(tree.find_all(exp.Select))):
        _narrow_select(select)


def _narrow_select(select: exp.Select) -> None:
    from_ = select.args.get("from_")
    joins = select.args.get("joins") or []
    if from_ is None or select.args.get("laterals"):
        return
    if any(not isinstance(join, exp.Join) or not _inner(join) for join in joins):
        return  # a view may be on the nullable side; LATERAL explodes too
    items = [from_.this, *(join.this for join in joins)]
    for source in items:
        if not (isinstance(source, exp.Subquery) and isinstance(source.this, exp.Select)):
            continue
        view = source.this
        if not view.meta.get(FENCE) or not _plain_fence(view):
            continue
        outputs = _outputs(view)
        if outputs is None:
            continue
        _move(select, source, outputs, alone=len(items) == 1)


def _inner(join: exp.Join) -> bool:
    return not join.side and (join.kind or "INNER").upper() in ("INNER", "CROSS")


def _plain_fence(view: exp.Select) -> bool:
    """A view's SELECT carrying the fence itself (transpile.fence): `OFFSET 0`, no LIMIT."""
    offset = view.args.get("offset")
    value = offset.expression if isinstance(offset, exp.Offset) else None
    return isinstance(value, exp.Literal) and value.is_int and int(value.name) == 0 and view.args.get("limit") is None


def _outputs(select: exp.Select) -> Outputs | None:
    """The output columns of a view that only filters or picks columns, down to a system table, or None."""
    for key, value in select.args.items():
        if value and key not in ("expressions", "from_", "where", "offset"):
            return None
    if select.args.get("offset") is not None and not _plain_fence(select):
        return None
    from_ = select.args.get("from_")
    if from_ is None:
        return None
    source = from_.this
    if isinstance(source, exp.Table):
        # A system table's subquery (transpile.system_source): its columns, as named.
        if source.db != PG_SCHEMA or source.name not in SYSTEM_COLUMNS or is_cte_reference(source):
            return None
        types = COMPARABLE.get(source.name, {})
        outputs: Outputs = {}
        for item in select.expressions:
            if not isinstance(item, exp.Column) or item.table or item.name not in SYSTEM_COLUMNS[source.name]:
                return None
            outputs[item.name] = (item.name, types.get(item.name))
        return outputs
    if not (isinstance(source, exp.Subquery) and isinstance(source.this, exp.Select)):
        return None
    below = _outputs(source.this)
    if below is None or not source.alias:
        return None
    alias = source.alias_or_name.lower()
    outputs = {}
    for item in select.expressions:
        named: dict[str | None, tuple[str, str | None]]
        if isinstance(item, exp.Star):
            named = {name: (name, kind) for name, (_, kind) in below.items()}
        elif isinstance(item, exp.Column) or (isinstance(item, exp.Alias) and isinstance(item.this, exp.Column)):
            column = item if isinstance(item, exp.Column) else item.this
            name = _name(column)
            if name is None or name not in below or column.table.lower() not in ("", alias):
                return None
            named = {_name(item) if isinstance(item, exp.Column) else _alias(item): (name, below[name][1])}
        else:
            return None
        for output, column_and_kind in named.items():
            if output is None or output in outputs:
                return None  # two columns of one name: a reference to it is ambiguous
            outputs[output] = column_and_kind
    return outputs


def _name(column: exp.Expr) -> str | None:
    """A column's name as PostgreSQL resolves it (unquoted: lower case), or None for `t.*` and the like."""
    if not isinstance(column, exp.Column) or not isinstance(column.this, exp.Identifier):
        return None
    if column.args.get("db") or column.args.get("catalog"):
        return None
    identifier = column.this
    return identifier.name if identifier.quoted else identifier.name.lower()


def _alias(item: exp.Alias) -> str:
    identifier = item.args["alias"]
    return str(identifier.name) if identifier.quoted else str(identifier.name).lower()


class _Scope:
    """The view's columns as the reader's SELECT names them: `alias.column`, or `column` if it reads the view alone."""

    def __init__(self, source: exp.Subquery, outputs: Outputs, alone: bool) -> None:
        self.alias = source.alias_or_name.lower()
        self.outputs = outputs
        self.alone = alone

    def column(self, node: exp.Expr) -> str | None:
        """The name of the view's column `node` is, or None."""
        name = _name(node)
        if name is None or name not in self.outputs:
            return None
        assert isinstance(node, exp.Column)
        table = node.table.lower()
        if table == self.alias or (not table and self.alone):
            return name
        return None

    def comparable(self, node: exp.Expr) -> str | None:
        """The type of the view's column `node` is, where a moved condition may compare it."""
        name = self.column(node)
        return self.outputs[name][1] if name is not None else None


def _leakproof(node: exp.Expr, scope: _Scope) -> bool:
    """A condition that cannot fail on any row: see the module's docstring."""
    if isinstance(node, exp.Paren):
        return _leakproof(node.this, scope)
    if isinstance(node, (exp.And, exp.Or)):
        return _leakproof(node.this, scope) and _leakproof(node.expression, scope)
    if isinstance(node, exp.Not):
        return _leakproof(node.this, scope)
    if isinstance(node, exp.Boolean):
        return True
    if isinstance(node, exp.Is):
        return isinstance(node.expression, exp.Null) and scope.comparable(node.this) is not None
    if isinstance(node, exp.In):
        kind = scope.comparable(node.this)
        if kind is None or any(node.args.get(key) for key in ("query", "unnest", "field")):
            return False
        values = node.expressions
        return bool(values) and all(_same_type(value, kind, exp.EQ, scope) for value in values)
    if type(node) in _ORDERING:
        left, right = node.this, node.expression
        kind = scope.comparable(left)
        if kind is not None:
            return _same_type(right, kind, type(node), scope)
        kind = scope.comparable(right)
        return kind is not None and _same_type(left, kind, type(node), scope)
    return False


def _same_type(value: exp.Expr, kind: str, operator: type[exp.Expr], scope: _Scope) -> bool:
    """`value` compared by `operator` with a column of type `kind` runs a leakproof function of two `kind`s."""
    if operator not in LEAKPROOF.get(kind, ()):
        return False
    if scope.comparable(value) == kind:
        return True
    if kind != "text":
        return False
    if isinstance(value, exp.Literal):
        return value.is_string
    # A STRING parameter: bound as text and cast to text (transpile._bind_parameters), no conversion.
    return (
        isinstance(value, exp.Cast)
        and isinstance(value.this, exp.Parameter)
        and value.to.is_type(exp.DataType.Type.TEXT)
        and not value.to.expressions
    )


def _conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    if node is None:
        return []
    if isinstance(node, exp.And):
        return [*_conjuncts(node.this), *_conjuncts(node.expression)]
    return [node]


def _move(select: exp.Select, source: exp.Subquery, outputs: Outputs, *, alone: bool) -> None:
    """The conditions (and order and limit) of `select` that may run on any row, into the view `source` reads, which
    stays fenced: they join the view's own WHERE (and its ORDER BY and LIMIT), naming its source's columns."""
    scope = _Scope(source, outputs, alone)
    where = select.args.get("where")
    conjuncts = _conjuncts(where.this if where is not None else None)
    moved = [c for c in conjuncts if _references(c, scope) and _leakproof(c, scope)]
    order = _inner_order(select, scope) if alone and len(moved) == len(conjuncts) else None
    if not moved and order is None:
        return
    view = source.this
    own = view.args.get("where")
    if moved:
        conditions = [own.this] if own is not None else []
        conditions += [_inside(condition, scope, view) for condition in moved]
        view.set("where", exp.Where(this=exp.and_(*conditions, copy=False)))
    if order is not None:
        view.set("order", exp.Order(expressions=[_inside(term, scope, view) for term in order]))
        view.set("limit", select.args["limit"].copy())
    rest = [c for c in conjuncts if all(c is not m for m in moved)]
    select.set("where", exp.Where(this=exp.and_(*rest, copy=False)) if rest else None)


def _references(node: exp.Expr, scope: _Scope) -> bool:
    return any(scope.column(column) is not None for column in node.find_all(exp.Column))


def _inside(node: exp.Expr, scope: _Scope, view: exp.Select) -> exp.Expr:
    """A copy of `node` naming the view's columns as the view's own SELECT does: its source's columns, qualified."""
    source = view.args["from_"].this
    copy = node.copy()
    for column in list(copy.find_all(exp.Column)):
        name = scope.column(column)
        if name is not None:
            inner = exp.to_identifier(scope.outputs[name][0], quoted=True)
            column.replace(exp.column(inner, table=source.args["alias"].this.copy()))
    return copy


def _inner_order(select: exp.Select, scope: _Scope) -> list[exp.Ordered] | None:
    """The SELECT's ORDER BY as the wrapper's (its terms over the view's columns), where its LIMIT may go inside."""
    order = select.args.get("order")
    limit = select.args.get("limit")
    if order is None or not isinstance(limit, exp.Limit) or select.args.get("offset") is not None:
        return None
    value = limit.expression
    if not (isinstance(value, exp.Literal) and value.is_int) or limit.args.get("offset") is not None:
        return None
    for key, arg in select.args.items():
        if arg and key not in ("expressions", "from_", "where", "order", "limit", "with_"):
            return None
    items = select.expressions
    for node in (node for root in [*items, *order.expressions] for node in root.walk()):
        # The transpiler's own nodes (explode() as a set-returning function, ...) are not row-level either.
        if isinstance(node, _NOT_ROW_LEVEL) or not type(node).__module__.startswith("sqlglot."):
            return None
    named = {_alias(item): item.this for item in items if isinstance(item, exp.Alias)}
    terms: list[exp.Ordered] = []
    for term in order.expressions:
        if not isinstance(term, exp.Ordered):
            return None
        expression = _resolved(term.this, items, named)
        if expression is None:
            return None
        columns = list(expression.find_all(exp.Column))
        if isinstance(expression, exp.Column):
            columns = [expression]
        if any(scope.column(column) is None for column in columns):
            return None  # a name of another scope, or no column of the view's
        inner = term.copy()
        inner.set("this", expression.copy())
        terms.append(inner)
    return terms


def _resolved(term: exp.Expr, items: list[exp.Expr], named: Mapping[str, exp.Expr]) -> exp.Expr | None:
    """An ORDER BY term as the expression it sorts by: an output's name or position is that output's expression."""
    if isinstance(term, exp.Literal) and term.is_int:
        if any(isinstance(item, exp.Star) for item in items):
            return None
        position = int(term.name)
        if not 1 <= position <= len(items):
            return None
        item = items[position - 1]
        return item.this if isinstance(item, exp.Alias) else item
    if isinstance(term, exp.Column) and not term.table:
        name = _name(term)
        if name is not None and name in named:
            return named[name]
    return term
