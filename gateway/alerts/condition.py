"""An alert's condition over a query's result: one column, aggregated over the rows, compared with a threshold.

Pure functions, no I/O. The result is what the SQL service answers (`data_array`: strings or null, doubles as
Java prints them), so numbers are parsed from those strings. `MIN(success_ratio) < 0.9` is the column
`success_ratio`, the aggregation `MIN`, the operator `LESS_THAN` and the threshold `0.9`.

- Aggregations (Databricks' AlertV2 names, plus `FIRST`): none or `FIRST` takes the first row's value (the
  legacy alerts' behaviour); `MIN`, `MAX`, `AVG`, `SUM`, `MEDIAN`, `STDDEV` (sample) of the non-null values,
  as numbers; `COUNT` of the non-null values, `COUNT_DISTINCT` of the distinct ones. Nulls are skipped as SQL
  skips them; no value left gives null.
- Thresholds: a `double_value` compares numerically, a `string_value` as text, a `bool_value` as `true` /
  `false`; `IS_NULL` needs no threshold. A comparison with a null value is false: the alert is OK.
- An empty result is `empty_result_state` (UNKNOWN unless set), whatever the condition says.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

OPERATORS = (
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL",
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL",
    "EQUAL",
    "NOT_EQUAL",
    "IS_NULL",
)
SYMBOLS = {
    "GREATER_THAN": ">",
    "GREATER_THAN_OR_EQUAL": ">=",
    "LESS_THAN": "<",
    "LESS_THAN_OR_EQUAL": "<=",
    "EQUAL": "=",
    "NOT_EQUAL": "!=",
    "IS_NULL": "IS NULL",
}
AGGREGATIONS = ("FIRST", "MIN", "MAX", "AVG", "SUM", "COUNT", "COUNT_DISTINCT", "MEDIAN", "STDDEV")
NUMERIC_AGGREGATIONS = frozenset({"MIN", "MAX", "AVG", "SUM", "MEDIAN", "STDDEV"})
RESULT_STATES = ("UNKNOWN", "OK", "TRIGGERED")


class ConditionError(ValueError):
    """The result cannot be judged by the condition (a missing column, a value that is not a number)."""


@dataclass(frozen=True, slots=True)
class Threshold:
    kind: str  # "double" | "string" | "bool" | "none" (IS_NULL)
    value: float | str | bool | None


@dataclass(frozen=True, slots=True)
class Condition:
    column: str
    aggregation: str | None  # None: the first row's value
    op: str
    threshold: Threshold
    empty_result_state: str = "UNKNOWN"

    def describe(self) -> str:
        """`MIN(success_ratio) < 0.9`"""
        subject = f"{self.aggregation}({self.column})" if self.aggregation else self.column
        if self.op == "IS_NULL":
            return f"{subject} IS NULL"
        value = self.threshold.value
        shown = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
        return f"{subject} {SYMBOLS[self.op]} {shown}"


@dataclass(frozen=True, slots=True)
class Judgement:
    state: str  # OK | TRIGGERED | UNKNOWN (an empty result judged so)
    value: str | None  # the aggregated value, as text (None: null, or an empty result)
    row_count: int


def judge(condition: Condition, columns: Sequence[str], rows: Sequence[Sequence[str | None]]) -> Judgement:
    """The alert's state for a result: `columns` names, `rows` values as the SQL service writes them."""
    index = _column(condition.column, columns)
    if not rows:
        return Judgement(condition.empty_result_state, None, 0)
    value = aggregate(condition.aggregation, [row[index] for row in rows])
    return Judgement("TRIGGERED" if _holds(condition, value) else "OK", value, len(rows))


def aggregate(aggregation: str | None, values: Sequence[str | None]) -> str | None:
    """The column's values aggregated, as text (numbers as Python prints them); None for null."""
    if aggregation in (None, "FIRST"):
        return values[0] if values else None
    present = [value for value in values if value is not None]
    if aggregation == "COUNT":
        return str(len(present))
    if aggregation == "COUNT_DISTINCT":
        return str(len(set(present)))
    numbers = [_number(value) for value in present]
    if not numbers:
        return None
    if aggregation == "MIN":
        result = min(numbers)
    elif aggregation == "MAX":
        result = max(numbers)
    elif aggregation == "SUM":
        result = math.fsum(numbers)
    elif aggregation == "AVG":
        result = math.fsum(numbers) / len(numbers)
    elif aggregation == "MEDIAN":
        result = statistics.median(numbers)
    elif aggregation == "STDDEV":
        if len(numbers) < 2:
            return None
        result = statistics.stdev(numbers)
    else:
        raise ConditionError(f"Unknown aggregation {aggregation}.")
    return _text(result)


def _holds(condition: Condition, value: str | None) -> bool:
    if condition.op == "IS_NULL":
        return value is None
    if value is None:
        return False
    threshold = condition.threshold
    compared: tuple[float, float] | tuple[str, str]
    if threshold.kind == "double":
        assert isinstance(threshold.value, float)
        compared = (_number(value), threshold.value)
    elif threshold.kind == "bool":
        compared = (value.strip().lower(), "true" if threshold.value else "false")
    else:
        compared = (value, str(threshold.value))
    left, right = compared
    if condition.op == "EQUAL":
        return left == right
    if condition.op == "NOT_EQUAL":
        return left != right
    if condition.op == "GREATER_THAN":
        return left > right  # type: ignore[operator]
    if condition.op == "GREATER_THAN_OR_EQUAL":
        return left >= right  # type: ignore[operator]
    if condition.op == "LESS_THAN":
        return left < right  # type: ignore[operator]
    if condition.op == "LESS_THAN_OR_EQUAL":
        return left <= right  # type: ignore[operator]
    raise ConditionError(f"Unknown operator {condition.op}.")


def _column(name: str, columns: Sequence[str]) -> int:
    if name in columns:
        return list(columns).index(name)
    folded = [column.casefold() for column in columns]
    if folded.count(name.casefold()) == 1:
        return folded.index(name.casefold())
    shown = ", ".join(columns[:20]) or "none"
    raise ConditionError(f"The query's result has no column '{name}' (its columns: {shown}).")


def _number(value: str) -> float:
    """A value of the result as a number: the SQL service writes doubles as Java prints them (`1.0E20`, `NaN`)."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        raise ConditionError(f"The value '{text[:40]}' is not a number; compare it with a string threshold.") from None


def _text(number: float) -> str:
    return repr(float(number))


_WRITTEN = re.compile(
    r"^\s*(?:(?P<agg>[A-Za-z_]+)\s*\(\s*(?P<inner>[^()]+?)\s*\)|(?P<bare>[^\s<>=!()]+))\s*"
    r"(?:(?P<isnull>IS\s+NULL)|(?P<op>>=|<=|!=|<>|==|=|>|<)\s*(?P<value>.+?))\s*\Z",
    re.IGNORECASE,
)
_WRITTEN_OPS = {
    ">": "GREATER_THAN",
    ">=": "GREATER_THAN_OR_EQUAL",
    "<": "LESS_THAN",
    "<=": "LESS_THAN_OR_EQUAL",
    "=": "EQUAL",
    "==": "EQUAL",
    "!=": "NOT_EQUAL",
    "<>": "NOT_EQUAL",
}


def parse_written(text: str) -> dict[str, object]:
    """`MIN(success_ratio) < 0.9` as the API's condition (op, operand, threshold); ValueError when it is not one.

    The value is a number (double_value), `true`/`false` (bool_value) or a quoted string (string_value).
    """
    match = _WRITTEN.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a condition like MIN(success_ratio) < 0.9 or status = 'FAILED'")
    column: dict[str, object] = {"name": (match["inner"] or match["bare"]).strip('`" ')}
    if match["agg"]:
        aggregation = match["agg"].upper()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {match['agg']}; use one of {', '.join(AGGREGATIONS)}")
        column["aggregation"] = aggregation
    condition: dict[str, object] = {"operand": {"column": column}}
    if match["isnull"]:
        condition["op"] = "IS_NULL"
        return condition
    condition["op"] = _WRITTEN_OPS[match["op"]]
    raw = match["value"].strip()
    value: dict[str, object]
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        value = {"string_value": raw[1:-1]}
    elif raw.lower() in ("true", "false"):
        value = {"bool_value": raw.lower() == "true"}
    else:
        try:
            value = {"double_value": float(raw)}
        except ValueError:
            raise ValueError(f"the threshold {raw} is not a number, true/false or a quoted string") from None
    condition["threshold"] = {"value": value}
    return condition
