"""Azure ML's JSON-shaped metrics: checked before anything is logged, and summed up as a few numbers.

`log_confusion_matrix`, `log_accuracy_table`, `log_predictions` and `log_residuals` take a dict (or its JSON
text) `{"schema_type": ..., "schema_version": ..., "data": {...}}` in the shapes Azure ML documents:

- confusion_matrix: `class_labels` (C distinct labels) and `matrix`, C rows of C counts (actual x predicted).
- accuracy_table: `class_labels` (C), `probability_thresholds` (M, in [0, 1], ascending),
  `percentile_thresholds` (P, in [0, 1], ascending), `probability_tables` (C x M x [TP, FP, TN, FN]) and
  `percentile_tables` (C x P x 4), counts of whole samples with Azure ML's invariants: TP + FP + TN + FN is
  the same number of samples N in every row of every class, and TP + FN (and TN + FP) is the same at every
  threshold of one class.
- predictions: `bin_averages`, `bin_errors`, `bin_counts` (K each) and `bin_edges` (K + 1, ascending).
- residuals: `bin_edges` (K + 1, ascending) and `bin_counts` (K): one more edge than counts.

A value that breaks a rule raises `MetricShapeError` naming the metric, where (`data.matrix[2]`) and the rule.
`summarize` gives the numbers logged beside the JSON artifact as `<name>.<summary>` metrics.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from gateway.client.encoding import SCHEMA_TYPES

KEYS = {
    "confusion_matrix": ("class_labels", "matrix"),
    "accuracy_table": (
        "class_labels",
        "probability_thresholds",
        "percentile_thresholds",
        "probability_tables",
        "percentile_tables",
    ),
    "predictions": ("bin_averages", "bin_errors", "bin_counts", "bin_edges"),
    "residuals": ("bin_edges", "bin_counts"),
}


class MetricShapeError(ValueError):
    """A JSON-shaped metric that is not in the shape Azure ML documents for its schema_type."""


def checked(name: str, schema_type: str, value: Any) -> dict[str, Any]:
    """`value` (a dict or its JSON text) as a dict, after every rule of `schema_type` held."""
    where = f"{schema_type.replace('_', ' ')} {name!r}"

    def fail(path: str, rule: str) -> MetricShapeError:
        return MetricShapeError(f"The {where} is refused: {path} {rule}.")

    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise MetricShapeError(f"The {where} is refused: it is not valid JSON ({exc}).") from None
    if not isinstance(value, Mapping):
        raise fail("the value", f"must be a dict (or its JSON text), not {type(value).__name__}")
    extra = sorted(set(value) - {"schema_type", "schema_version", "data"})
    if extra:
        raise fail("the value", f"has keys {extra}; it has exactly schema_type, schema_version and data")
    if value.get("schema_type") != schema_type:
        raise fail("schema_type", f"must be {schema_type!r}, not {value.get('schema_type')!r}")
    version = value.get("schema_version")
    if not isinstance(version, str) or not version.strip():
        raise fail("schema_version", "must be a version string, such as 'v1'")
    data = value.get("data")
    if not isinstance(data, Mapping):
        raise fail("data", "must be a dict")
    wanted = KEYS[schema_type]
    missing = [k for k in wanted if k not in data]
    unknown = sorted(set(data) - set(wanted))
    if missing or unknown:
        said = f"lacks {missing}" if missing else f"has unknown keys {unknown}"
        raise fail("data", f"{said}; a {schema_type} has {list(wanted)}")
    CHECKS[schema_type](data, fail)
    copy: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))  # a plain copy, as it will be stored
    return copy


Fail = Callable[[str, str], MetricShapeError]


def _numbers(values: Any, path: str, fail: Fail, *, count: bool = False, whole: bool = False) -> list[float]:
    if not isinstance(values, list):
        raise fail(path, "must be a list")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise fail(f"{path}[{i}]", f"must be a finite number, not {v!r}")
        if count and v < 0:
            raise fail(f"{path}[{i}]", f"is a count and cannot be negative ({v!r})")
        if whole and v != int(v):
            raise fail(f"{path}[{i}]", f"is a count of samples and must be a whole number ({v!r})")
    return [float(v) for v in values]


def _labels(values: Any, path: str, fail: Fail) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise fail(path, "must be a non-empty list of class labels")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise fail(f"{path}[{i}]", f"must be a class label (a string), not {v!r}")
    if len({str(v) for v in values}) != len(values):
        raise fail(path, "must name each class once")
    return list(values)


def _ascending(values: list[float], path: str, fail: Fail, *, strictly: bool, unit: bool) -> None:
    for i, (a, b) in enumerate(itertools.pairwise(values)):
        if b < a or (strictly and b == a):
            raise fail(f"{path}[{i + 1}]", f"must be {'greater than' if strictly else 'at least'} {path}[{i}]")
    if unit:
        for i, v in enumerate(values):
            if not 0 <= v <= 1:
                raise fail(f"{path}[{i}]", f"is a threshold and must be between 0 and 1 ({v!r})")


def _confusion_matrix(data: Mapping[str, Any], fail: Fail) -> None:
    labels = _labels(data["class_labels"], "data.class_labels", fail)
    matrix = data["matrix"]
    if not isinstance(matrix, list):
        raise fail("data.matrix", "must be a list of rows")
    if len(matrix) != len(labels):
        raise fail("data.matrix", f"has {len(matrix)} rows for {len(labels)} class labels: it must be square, C x C")
    for i, row in enumerate(matrix):
        cells = _numbers(row, f"data.matrix[{i}]", fail, count=True)
        if len(cells) != len(labels):
            raise fail(f"data.matrix[{i}]", f"has {len(cells)} cells for {len(labels)} class labels (C x C)")


def _accuracy_table(data: Mapping[str, Any], fail: Fail) -> None:
    labels = _labels(data["class_labels"], "data.class_labels", fail)
    samples: float | None = None
    per_class: dict[int, tuple[float, float]] = {}
    for kind in ("probability", "percentile"):
        thresholds_path, tables_path = f"data.{kind}_thresholds", f"data.{kind}_tables"
        thresholds = _numbers(data[f"{kind}_thresholds"], thresholds_path, fail)
        if not thresholds:
            raise fail(thresholds_path, "must name at least one threshold")
        _ascending(thresholds, thresholds_path, fail, strictly=False, unit=True)
        tables = data[f"{kind}_tables"]
        if not isinstance(tables, list) or len(tables) != len(labels):
            got = len(tables) if isinstance(tables, list) else type(tables).__name__
            raise fail(tables_path, f"must hold one table per class label ({len(labels)}), got {got}")
        for c, table in enumerate(tables):
            path = f"{tables_path}[{c}]"
            if not isinstance(table, list) or len(table) != len(thresholds):
                got = len(table) if isinstance(table, list) else type(table).__name__
                raise fail(
                    path,
                    f"must hold one [TP, FP, TN, FN] row per threshold of {thresholds_path} "
                    f"({len(thresholds)}), got {got}",
                )
            for m, row in enumerate(table):
                cells = _numbers(row, f"{path}[{m}]", fail, count=True, whole=True)
                if len(cells) != 4:
                    raise fail(f"{path}[{m}]", f"must be [TP, FP, TN, FN], 4 counts, not {len(cells)}")
                tp, fp, tn, fn = cells
                total = tp + fp + tn + fn
                if samples is None:
                    samples = total
                elif total != samples:
                    raise fail(
                        f"{path}[{m}]",
                        f"sums to {total:g} samples where the table's other rows sum to {samples:g}: "
                        "TP + FP + TN + FN must be the number of samples N in every row",
                    )
                positives, negatives = tp + fn, tn + fp
                seen = per_class.setdefault(c, (positives, negatives))
                if seen[0] != positives:
                    raise fail(
                        f"{path}[{m}]",
                        f"has TP + FN = {positives:g} where other rows of class {labels[c]!r} have {seen[0]:g}: "
                        "a class has as many positive samples at every threshold",
                    )
                if seen[1] != negatives:
                    raise fail(
                        f"{path}[{m}]",
                        f"has TN + FP = {negatives:g} where other rows of class {labels[c]!r} have {seen[1]:g}: "
                        "a class has as many negative samples at every threshold",
                    )


def _bins(data: Mapping[str, Any], fail: Fail, series: tuple[str, ...]) -> None:
    edges = _numbers(data["bin_edges"], "data.bin_edges", fail)
    _ascending(edges, "data.bin_edges", fail, strictly=True, unit=False)
    counts = _numbers(data["bin_counts"], "data.bin_counts", fail, count=True)
    if len(edges) != len(counts) + 1:
        raise fail(
            "data.bin_edges",
            f"has {len(edges)} edges for {len(counts)} bin counts: there is one more edge than counts",
        )
    for key in series:
        values = _numbers(data[key], f"data.{key}", fail, count=key == "bin_errors")
        if len(values) != len(counts):
            raise fail(f"data.{key}", f"has {len(values)} values for {len(counts)} bins (one per bin)")


CHECKS: dict[str, Callable[[Mapping[str, Any], Fail], None]] = {
    "confusion_matrix": _confusion_matrix,
    "accuracy_table": _accuracy_table,
    "predictions": lambda data, fail: _bins(data, fail, ("bin_averages", "bin_errors")),
    "residuals": lambda data, fail: _bins(data, fail, ()),
}
assert set(CHECKS) == set(SCHEMA_TYPES) == set(KEYS)


# -- summaries ------------------------------------------------------------------------------------------


def summarize(schema_type: str, value: Mapping[str, Any]) -> dict[str, float]:
    """The numbers logged beside a checked value, as metrics `<name>.<summary>`."""
    data = value["data"]
    if schema_type == "confusion_matrix":
        matrix = data["matrix"]
        total = float(sum(sum(row) for row in matrix))
        correct = float(sum(matrix[i][i] for i in range(len(matrix))))
        summary = {"samples": total}
        if total > 0:
            summary["accuracy"] = correct / total
        return summary
    if schema_type == "accuracy_table":
        tables = data["probability_tables"]
        samples = float(sum(tables[0][0]))
        aucs = [auc for table in tables if (auc := _roc_auc(table)) is not None]
        summary = {"samples": samples}
        if aucs:
            summary["auc_macro"] = sum(aucs) / len(aucs)
        return summary
    counts = [float(c) for c in data["bin_counts"]]
    summary = {"samples": sum(counts)}
    if schema_type == "residuals" and sum(counts) > 0:
        edges = data["bin_edges"]
        middles = [(edges[i] + edges[i + 1]) / 2 for i in range(len(counts))]
        summary["mean"] = sum(m * c for m, c in zip(middles, counts, strict=True)) / sum(counts)
    return summary


def _roc_auc(table: list[list[float]]) -> float | None:
    """The area under one class's ROC curve through its thresholds' (FPR, TPR) points (trapezoids)."""
    tp, fp, tn, fn = table[0]
    positives, negatives = tp + fn, tn + fp
    if positives == 0 or negatives == 0:
        return None
    points = sorted({(0.0, 0.0), (1.0, 1.0), *((r[1] / negatives, r[0] / positives) for r in table)})
    return sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in itertools.pairwise(points))
