"""Azure ML's JSON-shaped metrics (gateway/client/shapes.py): the documented shapes pass, broken ones are refused
with a message naming the metric, the place and the rule, and the summaries are what the data says.

Accuracy tables are generated from scores and labels the way Azure ML computes them (one class against the rest
at each threshold), so every invariant holds by construction; a single changed count must then be refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.client.shapes import MetricShapeError, checked, summarize

# The shapes of Azure ML's documentation (the SDK v1 migration guide; the R SDK's reference for residuals).
CONFUSION_MATRIX = (
    '{"schema_type": "confusion_matrix", "schema_version": "v1", "data": {"class_labels": '
    '["0", "1", "2", "3"], "matrix": [[3, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]]}}'
)
PREDICTIONS = (
    '{"schema_type": "predictions", "schema_version": "v1", "data": {"bin_averages": [0.25,'
    ' 0.75], "bin_errors": [0.013, 0.042], "bin_counts": [56, 34], "bin_edges": [0.0, 0.5, 1.0]}}'
)
RESIDUALS = {
    "schema_type": "residuals",
    "schema_version": "v1",
    "data": {"bin_edges": [50, 100, 200, 300, 350], "bin_counts": [0.88, 20, 30, 50.99]},
}
# 3 classes, 5 thresholds, 200 samples: the shape of the SDK reference's accuracy table.
ACCURACY_TABLE = {
    "schema_type": "accuracy_table",
    "schema_version": "v1",
    "data": {
        "probability_tables": [
            [[82, 118, 0, 0], [75, 31, 87, 7], [66, 9, 109, 16], [46, 2, 116, 36], [0, 0, 118, 82]],
            [[60, 140, 0, 0], [56, 20, 120, 4], [47, 4, 136, 13], [28, 0, 140, 32], [0, 0, 140, 60]],
            [[58, 142, 0, 0], [53, 29, 113, 5], [40, 10, 132, 18], [24, 1, 141, 34], [0, 0, 142, 58]],
        ],
        "percentile_tables": [
            [[82, 118, 0, 0], [82, 67, 51, 0], [75, 26, 92, 7], [48, 3, 115, 34], [3, 0, 118, 79]],
            [[60, 140, 0, 0], [60, 89, 51, 0], [60, 41, 99, 0], [46, 5, 135, 14], [3, 0, 140, 57]],
            [[58, 142, 0, 0], [56, 93, 49, 2], [54, 47, 95, 4], [41, 10, 132, 17], [3, 0, 142, 55]],
        ],
        "probability_thresholds": [0.0, 0.25, 0.5, 0.75, 1.0],
        "percentile_thresholds": [0.0, 0.01, 0.24, 0.98, 1.0],
        "class_labels": ["0", "1", "2"],
    },
}
# The migration guide's own examples that break Azure ML's documented invariants.
GUIDE_ACCURACY_TABLE = (
    '{"schema_type": "accuracy_table", "schema_version": "v1", "data": {"probability_tables": '
    "[[[114311, 385689, 0, 0], [0, 0, 385689, 114311]], [[67998, 432002, 0, 0], [0, 0, "
    '432002, 67998]]], "percentile_tables": [[[114311, 385689, 0, 0], [1, 0, 385689, '
    '114310]], [[67998, 432002, 0, 0], [1, 0, 432002, 67997]]], "class_labels": ["0", "1"], '
    '"probability_thresholds": [0.52], "percentile_thresholds": [0.09]}}'
)
GUIDE_RESIDUALS = (
    '{"schema_type": "residuals", "schema_version": "v1", "data": {"bin_edges": [100, 200, 300], '
    '"bin_counts": [0.88, 20, 30, 50.99]}}'
)


def refused(schema_type: str, value: Any, *fragments: str) -> str:
    with pytest.raises(MetricShapeError) as error:
        checked("m", schema_type, value)
    message = str(error.value)
    assert message.startswith(f"The {schema_type.replace('_', ' ')} 'm' is refused: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_documented_shapes_pass_as_dicts_or_json_text() -> None:
    assert checked("cm", "confusion_matrix", CONFUSION_MATRIX) == json.loads(CONFUSION_MATRIX)
    assert checked("cm", "confusion_matrix", json.loads(CONFUSION_MATRIX)) == json.loads(CONFUSION_MATRIX)
    assert checked("p", "predictions", PREDICTIONS)["data"]["bin_counts"] == [56, 34]
    assert checked("r", "residuals", RESIDUALS) == RESIDUALS
    assert checked("a", "accuracy_table", json.dumps(ACCURACY_TABLE)) == ACCURACY_TABLE


def test_the_summaries_are_what_the_data_says() -> None:
    assert summarize("confusion_matrix", json.loads(CONFUSION_MATRIX)) == {"samples": 8.0, "accuracy": 6 / 8}
    assert summarize("predictions", json.loads(PREDICTIONS)) == {"samples": 90.0}
    residuals = summarize("residuals", RESIDUALS)
    middles, counts = [75, 150, 250, 325], [0.88, 20, 30, 50.99]
    assert residuals["samples"] == pytest.approx(sum(counts))
    assert residuals["mean"] == pytest.approx(sum(m * c for m, c in zip(middles, counts, strict=True)) / sum(counts))
    table = summarize("accuracy_table", ACCURACY_TABLE)
    assert table["samples"] == 200.0 and 0.5 < table["auc_macro"] <= 1.0


def test_the_migration_guides_inconsistent_examples_are_refused_saying_why() -> None:
    refused(
        "accuracy_table",
        GUIDE_ACCURACY_TABLE,
        "data.probability_tables[0]",
        "one [TP, FP, TN, FN] row per threshold of data.probability_thresholds (1), got 2",
    )
    refused("residuals", GUIDE_RESIDUALS, "data.bin_edges has 3 edges for 4 bin counts", "one more edge than counts")


@pytest.mark.parametrize(
    ("schema_type", "value", "fragments"),
    [
        ("confusion_matrix", "{not json", ("not valid JSON",)),
        ("confusion_matrix", [1, 2], ("must be a dict",)),
        ("confusion_matrix", {**json.loads(CONFUSION_MATRIX), "schema_type": "residuals"}, ("schema_type must be",)),
        ("confusion_matrix", {**json.loads(CONFUSION_MATRIX), "schema_version": ""}, ("schema_version",)),
        ("confusion_matrix", {**json.loads(CONFUSION_MATRIX), "extra": 1}, ("has keys ['extra']",)),
        (
            "confusion_matrix",
            {"schema_type": "confusion_matrix", "schema_version": "v1", "data": {"class_labels": ["a"]}},
            ("data lacks ['matrix']",),
        ),
        (
            "confusion_matrix",
            {
                "schema_type": "confusion_matrix",
                "schema_version": "v1",
                "data": {"class_labels": ["a", "a"], "matrix": [[1, 0], [0, 1]]},
            },
            ("data.class_labels must name each class once",),
        ),
        (
            "confusion_matrix",
            {
                "schema_type": "confusion_matrix",
                "schema_version": "v1",
                "data": {"class_labels": ["a", "b"], "matrix": [[1, 0]]},
            },
            ("has 1 rows for 2 class labels", "square"),
        ),
        (
            "confusion_matrix",
            {
                "schema_type": "confusion_matrix",
                "schema_version": "v1",
                "data": {"class_labels": ["a", "b"], "matrix": [[1, 0], [0, -1]]},
            },
            ("data.matrix[1][1]", "cannot be negative"),
        ),
        (
            "confusion_matrix",
            {
                "schema_type": "confusion_matrix",
                "schema_version": "v1",
                "data": {"class_labels": ["a", "b"], "matrix": [[1, True], [0, 1]]},
            },
            ("data.matrix[0][1] must be a finite number",),
        ),
        (
            "predictions",
            {
                "schema_type": "predictions",
                "schema_version": "v1",
                "data": {**json.loads(PREDICTIONS)["data"], "bin_errors": [0.1]},
            },
            ("data.bin_errors has 1 values for 2 bins",),
        ),
        (
            "predictions",
            {
                "schema_type": "predictions",
                "schema_version": "v1",
                "data": {**json.loads(PREDICTIONS)["data"], "bin_edges": [0.0, 0.5, 0.5]},
            },
            ("data.bin_edges[2] must be greater than data.bin_edges[1]",),
        ),
    ],
)
def test_a_broken_shape_is_refused_naming_the_place_and_the_rule(
    schema_type: str, value: Any, fragments: tuple[str, ...]
) -> None:
    refused(schema_type, value, *fragments)


# -- generated shapes ------------------------------------------------------------------------------------


@st.composite
def confusion_matrices(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(1, 6))
    labels = draw(st.lists(st.text(min_size=1, max_size=8), min_size=size, max_size=size, unique=True))
    matrix = draw(st.lists(st.lists(st.integers(0, 1000), min_size=size, max_size=size), min_size=size, max_size=size))
    return {
        "schema_type": "confusion_matrix",
        "schema_version": "v1",
        "data": {"class_labels": labels, "matrix": matrix},
    }


@given(confusion_matrices())
def test_every_square_matrix_of_counts_passes_and_sums_up(value: dict[str, Any]) -> None:
    assert checked("m", "confusion_matrix", value) == value
    matrix = value["data"]["matrix"]
    total = sum(map(sum, matrix))
    summary = summarize("confusion_matrix", value)
    assert summary["samples"] == total
    if total:
        assert summary["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(len(matrix))) / total)


@given(confusion_matrices(), st.data())
def test_a_matrix_that_is_not_square_is_refused(value: dict[str, Any], data: st.DataObject) -> None:
    matrix = value["data"]["matrix"]
    row = data.draw(st.integers(0, len(matrix) - 1))
    matrix[row] = [*matrix[row], 1]
    refused("confusion_matrix", value, f"data.matrix[{row}] has {len(matrix[row])} cells")


@st.composite
def accuracy_tables(draw: st.DrawFn) -> dict[str, Any]:
    """The table of scored samples: for each class (one against the rest) and threshold, [TP, FP, TN, FN]."""
    classes = draw(st.integers(1, 4))
    samples = draw(
        st.lists(
            st.tuples(st.integers(0, classes - 1), st.lists(st.floats(0, 1), min_size=classes, max_size=classes)),
            min_size=1,
            max_size=40,
        )
    )
    thresholds = sorted(draw(st.lists(st.floats(0, 1), min_size=1, max_size=6)))
    percentiles = sorted(draw(st.lists(st.floats(0, 1), min_size=1, max_size=6)))

    def table(cut_points: list[float]) -> list[list[list[int]]]:
        tables = []
        for c in range(classes):
            rows = []
            for t in cut_points:
                tp = sum(1 for label, scores in samples if scores[c] >= t and label == c)
                fp = sum(1 for label, scores in samples if scores[c] >= t and label != c)
                fn = sum(1 for label, scores in samples if scores[c] < t and label == c)
                tn = len(samples) - tp - fp - fn
                rows.append([tp, fp, tn, fn])
            tables.append(rows)
        return tables

    return {
        "schema_type": "accuracy_table",
        "schema_version": "v1",
        "data": {
            "class_labels": [str(c) for c in range(classes)],
            "probability_thresholds": thresholds,
            "percentile_thresholds": percentiles,
            "probability_tables": table(thresholds),
            "percentile_tables": table(percentiles),
        },
    }


@given(accuracy_tables())
def test_every_table_computed_from_scored_samples_passes(value: dict[str, Any]) -> None:
    assert checked("m", "accuracy_table", value) == value
    summary = summarize("accuracy_table", value)
    assert summary["samples"] == sum(value["data"]["probability_tables"][0][0])
    assert 0 <= summary.get("auc_macro", 0) <= 1


@given(accuracy_tables(), st.data())
def test_one_changed_count_breaks_an_invariant_and_is_refused(value: dict[str, Any], data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["probability_tables", "percentile_tables"]))
    tables = value["data"][kind]
    c = data.draw(st.integers(0, len(tables) - 1))
    m = data.draw(st.integers(0, len(tables[c]) - 1))
    cell = data.draw(st.integers(0, 3))
    tables[c][m][cell] += 1
    message = refused("accuracy_table", value)
    assert "must be the number of samples N" in message or "at every threshold" in message


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=8, unique=True), st.data())
def test_bins_have_one_more_edge_than_counts(edges: list[float], data: st.DataObject) -> None:
    edges.sort()
    counts = data.draw(st.lists(st.integers(0, 100), min_size=len(edges) - 1, max_size=len(edges) - 1))
    value = {"schema_type": "residuals", "schema_version": "v1", "data": {"bin_edges": edges, "bin_counts": counts}}
    if counts:
        assert checked("m", "residuals", value) == value
    wrong = data.draw(st.integers(0, 10).filter(lambda n: n != len(edges) - 1))
    value["data"]["bin_counts"] = [1] * wrong
    refused("residuals", value, f"has {len(edges)} edges for {wrong} bin counts")
