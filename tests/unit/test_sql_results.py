"""Result values and types in Databricks' words, request checks, and the `fedgate sql` command's own logic."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.cli import build_parser
from gateway.cli.sql import parameter, request_body, show
from gateway.core.errors import InvalidParameter
from gateway.sql.results import CHUNK_ROWS, PgColumn, cell, chunks, databricks_type, java_double, rows
from gateway.sql.schemas import StatementParameter
from gateway.sql.service import _parameters, _wait_seconds


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5, "0.5"),
        (1.0, "1.0"),
        (-2.0, "-2.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e20, "1.0E20"),
        (12345678.0, "1.2345678E7"),
        (1e-5, "1.0E-5"),
        (-2.5e-10, "-2.5E-10"),
        (0.001, "0.001"),
        (9999999.0, "9999999.0"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_doubles_print_as_java_prints_them(value: float, text: str) -> None:
    assert java_double(value) == text


def test_cells_are_strings_or_null() -> None:
    assert cell(None) is None
    assert cell(True) == "true"
    assert cell(42) == "42"
    assert cell(Decimal("0.50000")) == "0.50000"
    assert cell(Decimal("NaN")) == "NaN"
    assert cell(date(2024, 6, 27)) == "2024-06-27"
    assert cell(datetime(2024, 6, 27, 0, 58, 57, tzinfo=UTC)) == "2024-06-27T00:58:57.000Z"
    east = timezone(timedelta(hours=2))
    assert cell(datetime(2024, 6, 27, 2, 58, 57, 123999, tzinfo=east)) == "2024-06-27T00:58:57.123Z"
    assert cell(["a", None]) == '["a",null]'
    assert cell([{"metric_name": "m", "max_value": float("nan")}]) == '[{"metric_name":"m","max_value":"NaN"}]'


def test_maps_are_rewritten_as_compact_json() -> None:
    columns = [PgColumn("params", "jsonb", "scalar"), PgColumn("name", "text", "scalar")]
    assert rows([('{"lr": "0.1"}', '{"not": "a map"}')], columns) == [['{"lr":"0.1"}', '{"not": "a map"}']]


def test_types_carry_their_databricks_names() -> None:
    assert databricks_type(PgColumn("x", "float8", "scalar")) == ("DOUBLE", "DOUBLE")
    assert databricks_type(PgColumn("x", "int8", "scalar")) == ("LONG", "BIGINT")
    assert databricks_type(PgColumn("x", "timestamptz", "scalar")) == ("TIMESTAMP", "TIMESTAMP")
    assert databricks_type(PgColumn("x", "jsonb", "scalar")) == ("MAP", "MAP<STRING, STRING>")
    assert databricks_type(PgColumn("x", "text[]", "array")) == ("ARRAY", "ARRAY<STRING>")
    kind, text = databricks_type(PgColumn("x", "metric_aggregate[]", "array"))
    assert (kind, text.split("<")[1]) == ("ARRAY", "STRUCT")
    assert databricks_type(PgColumn("x", "metric_aggregate", "composite"))[0] == "STRUCT"


def test_results_are_cut_into_chunks() -> None:
    assert [(c.chunk_index, c.row_offset, c.row_count) for c in chunks(0)] == [(0, 0, 0)]
    assert [(c.row_offset, c.row_count) for c in chunks(CHUNK_ROWS * 2 + 1)] == [
        (0, CHUNK_ROWS),
        (CHUNK_ROWS, CHUNK_ROWS),
        (2 * CHUNK_ROWS, 1),
    ]


def test_wait_timeout_is_zero_or_five_to_fifty_seconds() -> None:
    assert _wait_seconds("0s") == 0
    assert _wait_seconds("5s") == 5
    assert _wait_seconds("50s") == 50
    for bad in ("4s", "51s", "10", "1m", "-5s", ""):
        with pytest.raises(InvalidParameter):
            _wait_seconds(bad)


def test_parameters_must_match_the_markers_and_name_a_known_type() -> None:
    types, values = _parameters(
        [StatementParameter(name="run_id", value="x"), StatementParameter(name="n", value="5", type="int")],
        ["run_id", "n"],
    )
    assert types == {"run_id": "TEXT", "n": "INTEGER"}
    assert values == {"run_id": "x", "n": "5"}
    assert _parameters([StatementParameter(name="d", value="1.5", type="DECIMAL(10,2)")], ["d"])[0] == {
        "d": "NUMERIC(10, 2)"
    }
    cases = [
        ([StatementParameter(name="run_id", value="x")], [], "no parameter marker :run_id"),
        ([], ["run_id"], "No value was given for the parameter :run_id"),
        ([StatementParameter(name="a", value="1"), StatementParameter(name="a", value="2")], ["a"], "given twice"),
        ([StatementParameter(name="a", value="1", type="BINARY")], ["a"], "has type 'BINARY'"),
        ([StatementParameter(name="a", value="1", type="INT; DROP")], ["a"], "has type"),
    ]
    for given, used, says in cases:
        with pytest.raises(InvalidParameter) as excinfo:
            _parameters(given, used)
        assert says in excinfo.value.message


def test_cli_parameters_and_request_body() -> None:
    assert parameter("run_id=abc") == {"name": "run_id", "value": "abc", "type": "STRING"}
    assert parameter("n:int=5") == {"name": "n", "value": "5", "type": "INT"}
    assert parameter("s=a=b") == {"name": "s", "value": "a=b", "type": "STRING"}
    with pytest.raises(argparse.ArgumentTypeError):
        parameter("no value")
    args = build_parser().parse_args(
        ["sql", "SELECT :a", "--param", "a=1", "--catalog", "system", "--schema", "mlflow", "--row-limit", "5"]
    )
    assert request_body(args) == {
        "statement": "SELECT :a",
        "wait_timeout": "20s",
        "on_wait_timeout": "CONTINUE",
        "parameters": [{"name": "a", "value": "1", "type": "STRING"}],
        "catalog": "system",
        "schema": "mlflow",
        "row_limit": 5,
    }


def test_cli_prints_an_aligned_table(capsys: pytest.CaptureFixture[str]) -> None:
    show(["run_name", "minutes"], [["first", "31"], ["a longer name", None]], truncated=True)
    assert capsys.readouterr().out.splitlines() == [
        "run_name       minutes",
        "first          31",
        "a longer name  NULL",
        "(2 rows) (truncated: the result was longer than the row limit)",
    ]
    show([], [])
    assert capsys.readouterr().out == "OK\n"
