"""Aggregates over `runs_latest` answered from run counts, when that gives exactly the same answer.

A query block that reads `runs_latest` alone, uses no column of it but `account_id`, `workspace_id`,
`experiment_id` and `status`, and aggregates, depends only on how many runs have each combination of those
four values. `system_mlflow.runs_latest_counts` (migration 0019) holds these combinations with their counts,
kept exact by triggers on the index; a thousand times fewer rows than runs. The block then reads the counts,
and each aggregate becomes its weighted form (`COUNT(*)` the sum of the counts, say).

Only aggregates whose weighted form is provably identical are rewritten: value, type and scale.

- `COUNT(*)`, `COUNT(x)`: the sum of the counts (of the rows where `x` is not null), as a bigint;
- `SUM(x)`, `AVG(x)` where every value `x` can take is a numeric literal (or null), as in
  `AVG(CASE WHEN status = 'FINISHED' THEN 1.0 ELSE 0.0 END)`: numeric sums are exact, and so are double
  sums of small integers; an average is the same sum divided by the same count, as PostgreSQL divides;
- `MIN`, `MAX`, `bool_or`/`bool_and` and any `DISTINCT` aggregate do not depend on how often a value occurs
  and stay as they are.

Anything else (another aggregate, a window, a FILTER, a subquery, a join, a column outside the four, no
aggregation at all) leaves the block as it was: the rewrite is an optimisation, never a change of meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from sqlglot import exp

from gateway.sql.catalog import PG_SCHEMA, SYSTEM_COLUMNS

RUNS_VIEW = "runs_latest"
COUNTS_VIEW = "runs_latest_counts"
COUNTED_COLUMNS = ("account_id", "workspace_id", "experiment_id", "status")
WEIGHT = "_runs"
# Integers a double sums exactly however many runs there are (2**53 / 2**20 runs is far beyond any account).
_MAX_EXACT_INTEGER = 2**20
_ORDER_INSENSITIVE = (exp.Min, exp.Max, exp.LogicalOr, exp.LogicalAnd)
_NOT_ROW_LEVEL = (exp.Window, exp.Filter, exp.Lambda, exp.Subquery, exp.Select, exp.Unnest, exp.Explode, exp.Lateral)

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


def _runs_source() -> exp.Select:
    """What transpile.system_source makes of `system.mlflow.runs_latest`."""
    columns = [exp.column(column) for column in SYSTEM_COLUMNS[RUNS_VIEW]]
    return exp.select(*columns).from_(exp.table_(RUNS_VIEW, db=PG_SCHEMA))


_RUNS_SOURCE = _runs_source()


def use_counts(tree: exp.Expr, kind: Kind) -> None:
    """Rewrite, in place, every query block of `tree` that counts can answer exactly (see the module)."""
    for select in list(tree.find_all(exp.Select)):
        source = _single_runs_source(select)
        if source is None:
            continue
        aggregates = _rewritable(select, source, kind)
        if aggregates is None:
            continue
        for node, weighted in aggregates:
            node.replace(weighted)
        source.set("this", counts_source())


def _single_runs_source(select: exp.Select) -> exp.Subquery | None:
    if select.args.get("joins") or select.args.get("laterals"):
        return None
    from_ = select.args.get("from_")
    item = from_.this if from_ is not None else None
    if isinstance(item, exp.Subquery) and item.this == _RUNS_SOURCE:
        return item
    return None


def _rewritable(select: exp.Select, source: exp.Subquery, kind: Kind) -> list[tuple[exp.Expr, exp.Expression]] | None:
    """The aggregates to replace and their weighted forms; None when the block must stay as it is."""
    alias = source.alias_or_name.lower()
    names = {item.alias.lower() for item in select.expressions if isinstance(item, exp.Alias)}
    # An output name that is also a column of runs_latest would resolve to that column in GROUP BY.
    outputs = names - set(SYSTEM_COLUMNS[RUNS_VIEW])
    aggregates: list[tuple[exp.Expr, exp.Expression]] = []
    aggregating = select.args.get("group") is not None
    for node in select.walk(prune=lambda n: n is source):
        if node is source or node is select:
            continue
        if isinstance(node, _NOT_ROW_LEVEL):
            return None
        if isinstance(node, exp.Identifier) and node.name.lower() == WEIGHT:
            return None
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            return None
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                return None
            name = node.name.lower()
            if node.table:
                if node.table.lower() != alias or name not in COUNTED_COLUMNS:
                    return None
            elif name not in COUNTED_COLUMNS and name not in outputs:
                return None
        if isinstance(node, exp.AggFunc):
            aggregating = True
            if _inside_aggregate(node, select):
                return None
            weighted = _weighted(node, kind)
            if weighted is False:
                return None
            if weighted is not None:
                aggregates.append((node, weighted))
    return aggregates if aggregating else None


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
    return ["int"] if abs(int(text)) < _MAX_EXACT_INTEGER else None


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
