"""How the Run API keeps Azure ML's metrics and properties in MLflow objects, and reads them back.

One definition, read by the client (`run.py`) and by the gateway's recursive metrics (the account index):
only the standard library, no I/O.

- A number (`log`, `log_list`, a table's number column, a summary of a JSON-shaped metric) is an MLflow
  metric point, so it charts, searches and indexes like any metric. `log` and `log_list` points of one
  name are steps 0, 1, 2, ... in the order they were logged; a table's cells are at step = row.
- Anything more than numbers is described by one tag per metric, `fedgate.metric.<name>`, whose value is
  a small JSON document (`Kind`): its type, text values (strings logged with `log`, text lists, text
  columns of tables), a table's rows and columns, the artifacts of images and JSON-shaped metrics, and the
  summary metrics it owns (`<name>.<summary>`). A metric without the tag is a plain number metric.
- A property is a tag `fedgate.property.<name>`; the gateway refuses any change or deletion of one.

`decode` turns a run's tags and metric histories into what Azure ML's `run.get_metrics()` answers: a value
when a name holds one, a list when it holds several, a table as `{column: [values]}`, an image or a
JSON-shaped metric as the `runs:/<run_id>/<path>` URI of its artifact (a list if logged more than once).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

METRIC_TAG = "fedgate.metric."  # + the Azure ML metric name: its Kind, as JSON
PROPERTY_TAG = "fedgate.property."  # + the property name: its value (add-only, enforced by the gateway)
PARENT_TAG = "mlflow.parentRunId"
MAX_TAG_VALUE = 8000  # MLflow's limit on a tag's value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)

SCALAR, LIST, TABLE, IMAGE = "scalar", "list", "table", "image"
SCHEMA_TYPES = ("confusion_matrix", "accuracy_table", "predictions", "residuals")
KINDS = (SCALAR, LIST, TABLE, IMAGE, *SCHEMA_TYPES)
NUMBER, TEXT = "number", "text"

Points = Sequence[tuple[int, float]]  # (step, value) in the order MLflow keeps them: by step, then time
# The table cells one read makes, over all its tables (and runs, for the recursive read): a table's answer has a
# cell for every row and column, and its number of rows is what its tag says, text any writer of the run's tags
# chooses. `{"type": "table", "rows": 100000000, "columns": {...}}` made the reader allocate 800 MB per column. At the
# 5,000,000 this was, one read of one run's table held 78 MiB and 0.45 s of the worker's event loop (one column: 80 MiB,
# 0.67 s; benchmarks/run_metrics.py --table-cells), from one tag any writer of a run sets; at 1,000,000, as many as the
# metric values one read carries (MAX_POINTS, gateway/index/run_metrics.py), 15 MiB and 0.09 s.
MAX_TABLE_CELLS = 1_000_000


class TooManyCells(ValueError):
    """The tables of a read have more cells than one read makes (MAX_TABLE_CELLS)."""


class Cells:
    """What is left of one read's table cells."""

    def __init__(self, limit: int = MAX_TABLE_CELLS) -> None:
        self.limit = limit
        self.left = limit

    def take(self, name: str, count: int) -> None:
        if count > self.left:
            raise TooManyCells(
                f"Table {name!r} has {count:,} cells (its rows times its columns), and one read makes at most "
                f"{self.limit:,} table cells."
            )
        self.left -= count


def kind_tag(name: str) -> str:
    return METRIC_TAG + name


def table_metric(table: str, column: str) -> str:
    """The MLflow metric of a table's number column (the name Azure ML's migration guide uses)."""
    return f"{table}.{column}"


def summary_metric(name: str, summary: str) -> str:
    return f"{name}.{summary}"


def parse_kind(value: str) -> dict[str, Any] | None:
    """A `fedgate.metric.*` tag's document; None for one this module cannot read (left out of `decode`)."""
    try:
        kind = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(kind, dict) or kind.get("type") not in KINDS or not _well_formed(kind):
        return None
    return kind


def _well_formed(kind: Mapping[str, Any]) -> bool:
    """Whether a document has the shape this module writes. Tags are any writer's text (the stock client's, a
    script's): a document of another shape is left out as unreadable, where reading it raised (a 500 of the
    recursive read for every reader of the run's tree)."""
    if kind["type"] in (SCALAR, LIST):
        return isinstance(kind.get("text", []), list)
    if kind["type"] == TABLE:
        rows, columns, text = kind.get("rows", 0), kind.get("columns", {}), kind.get("text", {})
        return (
            type(rows) is int
            and rows >= 0
            and isinstance(columns, dict)
            and all(isinstance(c, str) and t in (NUMBER, TEXT) for c, t in columns.items())
            and isinstance(text, dict)
            and all(isinstance(cells, list) for cells in text.values())
        )
    return all(isinstance(kind.get(field, []), list) for field in ("paths", "summary"))


def dump_kind(name: str, kind: Mapping[str, Any]) -> str:
    """The tag value of `kind`; ValueError naming the metric when it is longer than a tag may be."""
    text = json.dumps(kind, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if len(text) > MAX_TAG_VALUE:
        raise ValueError(
            f"Metric {name!r}: its text values and description need {len(text)} characters, more than the "
            f"{MAX_TAG_VALUE} an MLflow tag holds. Log long text as a file (upload_file) or numbers instead."
        )
    return text


def owned_metrics(name: str, kind: Mapping[str, Any]) -> set[str]:
    """The MLflow metrics a kind stands for besides its own name (table columns, summaries)."""
    owned: set[str] = set()
    if kind.get("type") == TABLE:
        columns = kind.get("columns") or {}
        owned.update(table_metric(name, c) for c, t in columns.items() if t == NUMBER)
    for summary in kind.get("summary") or ():
        owned.add(summary_metric(name, str(summary)))
    return owned


def artifact_uri(run_id: str, path: str) -> str:
    return f"runs:/{run_id}/{path}"


def decode(
    run_id: str, tags: Mapping[str, str], histories: Mapping[str, Points], budget: Cells | None = None
) -> dict[str, Any]:
    """Azure ML's `get_metrics()` of one run, from its tags and the points of each of its metrics. Its tables
    take their cells from `budget` (a read of several runs shares one), TooManyCells beyond."""
    budget = budget if budget is not None else Cells()
    kinds: dict[str, dict[str, Any]] = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG) and (kind := parse_kind(value)) is not None:
            kinds[key[len(METRIC_TAG) :]] = kind
    owned: set[str] = set(kinds)
    for name, kind in kinds.items():
        owned |= owned_metrics(name, kind)
    result: dict[str, Any] = {}
    for name, kind in sorted(kinds.items()):
        value = _decoded(run_id, name, kind, histories, budget)
        if value is not None:
            result[name] = value
    for metric, points in sorted(histories.items()):
        if metric not in owned and points:
            result[metric] = _one_or_all([value for _, value in points])
    return result


def _decoded(run_id: str, name: str, kind: Mapping[str, Any], histories: Mapping[str, Points], budget: Cells) -> Any:
    kind_type = kind["type"]
    if kind_type == SCALAR:
        values = list(kind["text"]) if "text" in kind else [v for _, v in histories.get(name, ())]
        return _one_or_all(values) if values else None
    if kind_type == LIST:
        return list(kind["text"]) if "text" in kind else [v for _, v in histories.get(name, ())]
    if kind_type == TABLE:
        return _table(name, kind, histories, budget)
    paths = [str(p) for p in kind.get("paths") or ()]
    return _one_or_all([artifact_uri(run_id, p) for p in paths]) if paths else None


def _table(name: str, kind: Mapping[str, Any], histories: Mapping[str, Points], budget: Cells) -> dict[str, list[Any]]:
    rows = int(kind.get("rows") or 0)
    text = kind.get("text") or {}
    budget.take(name, rows * len(kind.get("columns") or {}))
    table: dict[str, list[Any]] = {}
    for column, column_type in (kind.get("columns") or {}).items():
        cells: list[Any] = [None] * rows
        if column_type == NUMBER:
            for step, value in histories.get(table_metric(name, column), ()):
                if 0 <= step < rows:
                    cells[step] = value
        else:
            for row, value in enumerate((text.get(column) or [])[:rows]):
                cells[row] = value
        table[column] = cells
    return table


def _one_or_all(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


# -- numbers as JSON carries them -------------------------------------------------------------------------

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def json_number(value: float) -> float | str:
    """A metric value as MLflow's REST API writes it: NaN and the infinities as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def json_safe(value: Any) -> Any:
    """A decoded metric with its non-finite numbers spelled as strings (for a JSON answer)."""
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, list):
        return value if _finite_numbers(value) else [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def _finite_numbers(values: list[Any]) -> bool:
    """Whether `values` are all finite numbers, so that JSON carries them as they are: their exact sum is finite
    (one pass in C, where a history of a million points took 0.4 s one by one). Anything else (text, None, NaN,
    an infinity, a sum past the largest float) is False, and the caller looks at each."""
    try:
        return math.isfinite(math.fsum(values))
    except (TypeError, ValueError, OverflowError):
        return False


def from_json(value: Any) -> Any:
    """The inverse of `json_safe`. (A text value spelled exactly "NaN" or "Infinity" reads as a number.)"""
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    return value


def properties_of(tags: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = tags.items() if isinstance(tags, Mapping) else tags
    return {k[len(PROPERTY_TAG) :]: v for k, v in items if k.startswith(PROPERTY_TAG)}
