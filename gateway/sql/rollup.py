"""Aggregates over `runs_latest` answered from run counts, when that gives exactly the same answer.

A query block that reads `runs_latest` alone, uses no column of it but `account_id`, `workspace_id`,
`experiment_id` and `status`, and aggregates, depends only on how many runs have each combination of those
four values. `system_mlflow.runs_latest_counts` (migration 0019) holds these combinations with their counts,
kept exact by triggers on the index; a thousand times fewer rows than runs. The block then reads the counts,
and each aggregate becomes its weighted form (`COUNT(*)` the sum of the counts, say).

A block that also uses `created_by` or the start day reads `system_mlflow.runs_latest_rollup` (migration
0032): the counts per workspace, experiment, creator, status and UTC day of start, with the earliest and
latest start of each. Of `start_time` it may use only what the day answers exactly (statements run with
TimeZone UTC): `date(start_time)` (or `to_date`, `CAST(... AS DATE)`), `start_time IS [NOT] NULL`,
`COUNT(start_time)`, `start_time >= d` and `start_time < d` for a date `d` that reads no column (a date
literal, a DATE parameter, `current_date()`), and `MIN`/`MAX(start_time)` (the extremes of the rows').

Between the block and `runs_latest` there may be views that only filter: `SELECT * FROM ... WHERE ...`
(a dynamic view of some workspaces, say), each using only those columns too; they then filter the counts.

Only aggregates whose weighted form is provably identical are rewritten: value, type and scale.

- `COUNT(*)`, `COUNT(x)`: the sum of the counts (of the rows where `x` is not null), as a bigint;
- `SUM(x)`, `AVG(x)` where every value `x` can take is a numeric literal (or null), as in
  `AVG(CASE WHEN status = 'FINISHED' THEN 1.0 ELSE 0.0 END)`: numeric sums are exact, and so are double
  sums of small integers; an average is the same sum divided by the same count, as PostgreSQL divides;
- `MIN`, `MAX`, `bool_or`/`bool_and` and any `DISTINCT` aggregate do not depend on how often a value occurs
  and stay as they are.

Anything else (another aggregate, a window, a FILTER, a subquery, a join, a column outside those, a view
that does more than filter, no aggregation at all) leaves the block as it was: the rewrite is an
optimisation, never a change of meaning.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlglot import exp

from gateway.core.numbers import whole
from gateway.sql.catalog import PG_SCHEMA, SYSTEM_COLUMNS

RUNS_VIEW = "runs_latest"
COUNTS_VIEW = "runs_latest_counts"
ROLLUP_VIEW = "runs_latest_rollup"
COUNTED_COLUMNS = ("account_id", "workspace_id", "experiment_id", "status")
ROLLED_UP_COLUMNS = (*COUNTED_COLUMNS, "created_by")
START = "start_time"
WEIGHT = "_runs"
DAY = "_day"
FIRST_START = "_first_start"
LAST_START = "_last_start"
HIDDEN = frozenset({WEIGHT, DAY, FIRST_START, LAST_START})
# Integers a double sums exactly however many runs there are (2**53 / 2**20 runs is far beyond any account).
_MAX_EXACT_INTEGER = 2**20
_ORDER_INSENSITIVE = (exp.Min, exp.Max, exp.LogicalOr, exp.LogicalAnd)
_NOT_ROW_LEVEL = (exp.Window, exp.Filter, exp.Lambda, exp.Subquery, exp.Select, exp.Unnest, exp.Explode, exp.Lateral)
# `start_time <op> day` is `day of start_time <op> day` for these (start_time on the left; mirrored on the right).
_DAY_EXACT_LEFT = (exp.GTE, exp.LT)
_DAY_EXACT_RIGHT = (exp.LTE, exp.GT)
# Parts of a view's SELECT that only filter; anything else set makes it more than a filter (but `OFFSET 0`, the
# fence every view gets, transpile.fence, which skips no row and keeps the filter below the reader's conditions).
_FILTER_PARTS = frozenset({"expressions", "from_", "where"})

Kind = Callable[[exp.Expr | None], str | None]


class WeightedCount(exp.Expression):
    """COUNT(*) (no `this`) or COUNT(this) over counted rows."""

    arg_types = {"this": False}


class WeightedSum(exp.Expression):
    """SUM(this) over counted rows; `numeric`: the sum is a numeric (else a bigint, of integers)."""

    arg_types = {"this": True, "numeric": True}


class WeightedAvg(exp.Expression):
    """AVG(this) over counted rows; `numeric`: PostgreSQL averages numerics (else doubles, of integers)."""

    arg_types = {"this": True, "numeric": True}


def counts_source() -> exp.Select:
    columns: list[exp.Expr] = [exp.column(column) for column in COUNTED_COLUMNS]
    columns.append(exp.alias_(exp.column("runs"), WEIGHT))
    return exp.select(*columns).from_(exp.table_(COUNTS_VIEW, db=PG_SCHEMA))


def rollup_source() -> exp.Select:
    columns: list[exp.Expr] = [exp.column(column) for column in ROLLED_UP_COLUMNS]
    for column, name in (("day", DAY), ("first_start", FIRST_START), ("last_start", LAST_START), ("runs", WEIGHT)):
        columns.append(exp.alias_(exp.column(column), name))
    return exp.select(*columns).from_(exp.table_(ROLLUP_VIEW, db=PG_SCHEMA))


def _runs_source() -> exp.Select:
    """What transpile.system_source makes of `system.mlflow.runs_latest`."""
    columns = [exp.column(column) for column in SYSTEM_COLUMNS[RUNS_VIEW]]
    return exp.select(*columns).from_(exp.table_(RUNS_VIEW, db=PG_SCHEMA))


_RUNS_SOURCE = _runs_source()


@dataclass
class _Plan:
    """What a block and the filtering views under it need: their `start_time` uses, their aggregates."""

    rollup: bool = False  # uses a column or form only the rollup has
    columns: list[tuple[exp.Expr, str]] = field(default_factory=list)  # node -> the rollup column it becomes
    aggregates: list[exp.AggFunc] = field(default_factory=list)


def use_counts(tree: exp.Expr, kind: Kind) -> None:
    """Rewrite, in place, every query block of `tree` that counts can answer exactly (see the module)."""
    for select in list(tree.find_all(exp.Select)):
        chain = _chain(select)
        if chain is None:
            continue
        plan = _Plan()
        if not _aggregates(select, chain[0], plan, kind):
            continue
        if not all(_filters(view.this, source, plan) for view, source in itertools.pairwise(chain)):
            continue
        # Columns first: a weighted aggregate copies its argument, which must read the rollup's columns.
        for node, column in plan.columns:
            table = node.table if isinstance(node, exp.Column) else _column_of(node).table
            node.replace(exp.column(column, table=table or None))
        for aggregate in plan.aggregates:
            weighted = _weighted(aggregate, kind)
            if isinstance(weighted, exp.Expression):
                aggregate.replace(weighted)
        chain[-1].set("this", rollup_source() if plan.rollup else counts_source())


def _chain(select: exp.Select) -> list[exp.Subquery] | None:
    """The FROM subqueries from `select` down to `runs_latest`, through views that only filter; else None."""
    chain: list[exp.Subquery] = []
    block = select
    while True:
        if block.args.get("joins") or block.args.get("laterals"):
            return None
        from_ = block.args.get("from_")
        item = from_.this if from_ is not None else None
        if not isinstance(item, exp.Subquery):
            return None
        chain.append(item)
        if item.this == _RUNS_SOURCE:
            return chain
        inner = item.this
        if not isinstance(inner, exp.Select) or not _only_filters(inner):
            return None
        block = inner


def _only_filters(select: exp.Select) -> bool:
    if any(value for key, value in select.args.items() if key not in _FILTER_PARTS and key != "offset"):
        return False
    offset = select.args.get("offset")
    if offset is not None and not is_fence(offset):
        return False
    items = select.expressions
    return len(items) == 1 and isinstance(items[0], exp.Star)


def is_fence(offset: exp.Expr) -> bool:
    """`OFFSET 0`, the fence transpile.fence puts on every view (it skips no row)."""
    value = offset.expression if isinstance(offset, exp.Offset) else None
    return isinstance(value, exp.Literal) and value.is_int and int(value.name) == 0


def _column_of(node: exp.Expr) -> exp.Column:
    column = node.find(exp.Column)
    assert column is not None
    return column


def _aggregates(select: exp.Select, source: exp.Subquery, plan: _Plan, kind: Kind) -> bool:
    """Whether the aggregating block `select` can read counts; its uses and aggregates go into `plan`."""
    names = {item.alias.lower() for item in select.expressions if isinstance(item, exp.Alias)}
    # An output name that is also a column of runs_latest would resolve to that column in GROUP BY.
    outputs = names - set(SYSTEM_COLUMNS[RUNS_VIEW])
    aggregating = select.args.get("group") is not None
    for node in select.walk(prune=lambda n: n is source):
        if node is source or node is select:
            continue
        if not _row_level(node, source, plan, outputs):
            return False
        if isinstance(node, exp.AggFunc):
            aggregating = True
            if _inside_aggregate(node, select) or _weighted(node, kind) is False:
                return False
            plan.aggregates.append(node)
    return aggregating


def _filters(select: exp.Select, source: exp.Subquery, plan: _Plan) -> bool:
    """Whether the view block `select` (SELECT * ... WHERE) filters only on what counts hold."""
    star = select.expressions[0]
    for node in select.walk(prune=lambda n: n is source):
        if node is source or node is select or node is star:
            continue
        if isinstance(node, exp.AggFunc) or not _row_level(node, source, plan, set()):
            return False
    return True


def _row_level(node: exp.Expr, source: exp.Subquery, plan: _Plan, outputs: set[str]) -> bool:
    """Whether `node` is something counts answer; a use of start_time the rollup answers is noted in `plan`."""
    if isinstance(node, _NOT_ROW_LEVEL):
        return False
    if isinstance(node, exp.Identifier) and node.name.lower() in HIDDEN:
        return False
    if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
        return False
    if not isinstance(node, exp.Column):
        return True
    if isinstance(node.this, exp.Star):
        return False
    name = node.name.lower()
    if node.table:
        if node.table.lower() != source.alias_or_name.lower():
            return False
    elif name not in ROLLED_UP_COLUMNS and name != START:
        return name in outputs
    if name in COUNTED_COLUMNS:
        return True
    plan.rollup = True
    if name in ROLLED_UP_COLUMNS:
        return True
    if name != START:
        return False
    use = _start_use(node)
    if use is None:
        return False
    plan.columns.append(use)
    return True


def _start_use(column: exp.Column) -> tuple[exp.Expr, str] | None:
    """The node a use of `start_time` is and the rollup column it becomes; None: the day does not answer it."""
    parent = column.parent
    if isinstance(parent, exp.TsOrDsToDate) or (
        type(parent) is exp.Cast and parent.to.this == exp.DataType.Type.DATE and parent.this is column
    ):
        return parent, DAY
    if isinstance(parent, exp.Is) and parent.this is column and isinstance(parent.expression, exp.Null):
        return column, DAY
    if type(parent) is exp.Count:
        return column, DAY
    if type(parent) is exp.Max and parent.this is column:
        return column, LAST_START
    if type(parent) is exp.Min and parent.this is column:
        return column, FIRST_START
    if isinstance(parent, _DAY_EXACT_LEFT) and parent.this is column and _a_date(parent.expression):
        return column, DAY
    if isinstance(parent, _DAY_EXACT_RIGHT) and parent.expression is column and _a_date(parent.this):
        return column, DAY
    return None


def _a_date(node: exp.Expr) -> bool:
    """A date that reads no column: a date literal, a DATE parameter, current_date()."""
    if isinstance(node, exp.CurrentDate):
        return True
    return (
        type(node) is exp.Cast
        and node.to.this == exp.DataType.Type.DATE
        and node.find(exp.Column, exp.Select, exp.AggFunc) is None
    )


def _inside_aggregate(node: exp.Expr, select: exp.Select) -> bool:
    parent = node.parent
    while parent is not None and parent is not select:
        if isinstance(parent, exp.AggFunc):
            return True
        parent = parent.parent
    return False


def _weighted(node: exp.AggFunc, kind: Kind) -> exp.Expression | Literal[False] | None:
    """The weighted form of an aggregate; None: it stays as it is; False: it has none."""
    argument = node.this
    if isinstance(argument, exp.Distinct) or isinstance(node, _ORDER_INSENSITIVE):
        return None
    if type(node) is exp.Count:
        if isinstance(argument, exp.Star) or argument is None:
            return WeightedCount()
        if any(isinstance(n, (exp.Tuple, exp.Array, exp.Struct, exp.Map, exp.Dot)) for n in argument.walk()):
            return False
        return WeightedCount(this=argument.copy())
    if type(node) not in (exp.Sum, exp.Avg) or argument is None:
        return False
    values = _literal_values(argument)
    if values is None or not any(v != "null" for v in values):
        return False
    has_decimal = "decimal" in values
    if type(node) is exp.Sum:
        return WeightedSum(this=argument.copy(), numeric=has_decimal)
    # transpile renders AVG of a decimal-kinded value as PostgreSQL's numeric AVG, anything else over doubles.
    if kind(argument) == "decimal":
        return WeightedAvg(this=argument.copy(), numeric=True)
    if has_decimal:
        return False  # doubles of decimal fractions do not sum exactly
    return WeightedAvg(this=argument.copy(), numeric=False)


def _literal_values(node: exp.Expr) -> list[str] | None:
    """ "int", "decimal" or "null" for every value `node` can take, when each is a literal; else None."""
    if isinstance(node, exp.Paren):
        return _literal_values(node.this)
    if isinstance(node, exp.Case):
        branches = [branch.args.get("true") for branch in node.args.get("ifs") or []]
        default = node.args.get("default")
        outcomes: list[str] = [] if default is not None else ["null"]
        for branch in [*branches, default] if default is not None else branches:
            found = _literal_values(branch) if branch is not None else None
            if found is None:
                return None
            outcomes.extend(found)
        return outcomes
    if isinstance(node, exp.If):
        results: list[str] = []
        for value in (node.args.get("true"), node.args.get("false")):
            found = _literal_values(value) if value is not None else ["null"]
            if found is None:
                return None
            results.extend(found)
        return results
    if isinstance(node, exp.Null):
        return ["null"]
    number = node.this if isinstance(node, exp.Neg) else node
    if not isinstance(number, exp.Literal) or not number.is_number:
        return None
    text = number.name
    if "e" in text.lower():
        return None
    if "." in text:
        return ["decimal"]
    number = whole(text)  # `int` refuses more than 4,300 digits: such a literal is no exact int here
    return ["int"] if number is not None and number < _MAX_EXACT_INTEGER else None


# -- renderings (registered by transpile.py's generator) ------------------------------------------------------


def render_count(sql: Callable[[exp.Expr], str], node: WeightedCount) -> str:
    argument = node.this
    counted = WEIGHT if argument is None else f"CASE WHEN ({sql(argument)}) IS NOT NULL THEN {WEIGHT} END"
    return f"CAST(COALESCE(SUM({counted}), 0) AS BIGINT)"


def render_sum(sql: Callable[[exp.Expr], str], node: WeightedSum) -> str:
    total = f"SUM(({sql(node.this)}) * {WEIGHT})"
    return total if node.args["numeric"] else f"CAST({total} AS BIGINT)"


def render_avg(sql: Callable[[exp.Expr], str], node: WeightedAvg) -> str:
    value = sql(node.this)
    runs = f"SUM(CASE WHEN ({value}) IS NOT NULL THEN {WEIGHT} END)"
    if node.args["numeric"]:
        return f"(SUM(({value}) * {WEIGHT}) / {runs})"
    return f"(SUM(CAST(({value}) AS DOUBLE PRECISION) * {WEIGHT}) / CAST({runs} AS DOUBLE PRECISION))"
