"""The account scope's search grammar and SQL: parsed like MLflow parses it, bound (never pasted) into SQL."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow.entities import Run, RunData, RunInfo, RunInputs
from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils
from sqlalchemy.dialects import postgresql

from gateway.core.errors import InvalidParameter
from gateway.index.account import _int_param
from gateway.index.filters import (
    Comparison,
    Entity,
    Op,
    OrderKey,
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_run_filter,
    parse_run_order_by,
)
from gateway.index.search import (
    KeyKind,
    SortTerm,
    ViewType,
    Visibility,
    build_experiment_query,
    build_run_query,
    decode_page_token,
    encode_page_token,
    experiment_sort_terms,
    max_results,
    metric_value,
    parse_account_experiment_id,
    run_sort_terms,
    search_shape,
    view_type,
)

# -- the parser, by example --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "metrics.accuracy > 0.9 and params.optimizer = 'adam'",
            [
                Comparison(Entity.METRIC, "accuracy", Op.GT, 0.9),
                Comparison(Entity.PARAM, "optimizer", Op.EQ, "adam"),
            ],
        ),
        ("tags.`mlflow.runName` = 'x'", [Comparison(Entity.TAG, "mlflow.runName", Op.EQ, "x")]),
        ('tags."mlflow.runName" = "x"', [Comparison(Entity.TAG, "mlflow.runName", Op.EQ, "x")]),
        ("tags.mlflow.runName LIKE 'x%'", [Comparison(Entity.TAG, "mlflow.runName", Op.LIKE, "x%")]),
        ("attributes.`Run name` = 'r'", [Comparison(Entity.ATTRIBUTE, "run_name", Op.EQ, "r")]),
        ("created >= 5", [Comparison(Entity.ATTRIBUTE, "start_time", Op.GE, 5)]),
        ("run.end_time < 1.5", [Comparison(Entity.ATTRIBUTE, "end_time", Op.LT, 1.5)]),
        ("run_id not in ('a', 'b',)", [Comparison(Entity.ATTRIBUTE, "run_id", Op.NOT_IN, ("a", "b"))]),
        ("params.x is not null", [Comparison(Entity.PARAM, "x", Op.IS_NOT_NULL, None)]),
        ("metrics.loss>-1.5e3", [Comparison(Entity.METRIC, "loss", Op.GT, -1500.0)]),
        ("datasets.context IN ('train')", [Comparison(Entity.DATASET, "context", Op.IN, ("train",))]),
        ("metrics.`val-loss` <= .5", [Comparison(Entity.METRIC, "val-loss", Op.LE, 0.5)]),
        ("tags.x = 'it''s'", [Comparison(Entity.TAG, "x", Op.EQ, "it''s")]),  # verbatim, as MLflow
        ("", []),
    ],
)
def test_run_filters_parse_into_the_typed_ast(text: str, expected: list[Comparison]) -> None:
    assert parse_run_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("metrics.a = 1 OR metrics.b = 2", "OR"),
        ("metrics.a-b > 1", "'-b'"),
        ("metrics.x > 1and params.y = 'a'", "'1and'"),
        ("metrics.x = '1'", "'1'"),
        ("metrics.x IS NULL", "metric 'x'"),
        ("params.x = 1", "'1'"),
        ("params.x = a", "'a'"),
        ("status IN ('a')", "'status'"),
        ("lifecycle_stage = 'active'", "'lifecycle_stage'"),
        ("TAGS.x = 'a'", "'TAGS'"),
        ("metrics.x <> 1", "'<>'"),
        ("params.x NOT LIKE 'a'", "NOT LIKE"),
        ("run_id IN ()", "non-empty"),
        ("tags.x = 'a' 'b'", "\"'b'\""),
        ("(params.x = 'a')", "'('"),
        ("datasets.source = 'a'", "'source'"),
        ("params.x = 'a' AND", "at the end"),
        ("start_time = '5'", "'5'"),
    ],
)
def test_bad_filters_are_invalid_parameters_naming_the_token(text: str, named: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        parse_run_filter(text)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert named in raised.value.message


def test_experiment_filters_follow_the_experiment_grammar() -> None:
    assert parse_experiment_filter("name LIKE 'a%' and tags.t IS NULL and experiment_id IN ('1001-3')") == [
        Comparison(Entity.ATTRIBUTE, "name", Op.LIKE, "a%"),
        Comparison(Entity.TAG, "t", Op.IS_NULL, None),
        Comparison(Entity.ATTRIBUTE, "experiment_id", Op.IN, ("1001-3",)),
    ]
    assert parse_experiment_filter("attribute.creation_time > 5") == [
        Comparison(Entity.ATTRIBUTE, "creation_time", Op.GT, 5)
    ]
    for bad in (
        "creation_time > 1.5",
        "attributes.name = 'x'",
        "name IN ('a')",
        "experiment_id > '1'",
        "params.x = 'a'",
    ):
        with pytest.raises(InvalidParameter):
            parse_experiment_filter(bad)


def test_order_by_parses_direction_aliases_and_refuses_duplicates() -> None:
    assert parse_run_order_by(["metrics.`my metric` DESC", "created", "params.x asc", "tags.t desc"]) == [
        OrderKey(Entity.METRIC, "my metric", False),
        OrderKey(Entity.ATTRIBUTE, "start_time", True),
        OrderKey(Entity.PARAM, "x", True),
        OrderKey(Entity.TAG, "t", False),
    ]
    for bad in (["metrics.a", "metric.a DESC"], ["start_time NULLS LAST"], ["datasets.name"], ["Run name"]):
        with pytest.raises(InvalidParameter):
            parse_run_order_by(bad)
    assert parse_experiment_order_by(["name DESC"]) == [OrderKey(Entity.ATTRIBUTE, "name", False)]
    with pytest.raises(InvalidParameter):
        parse_experiment_order_by(["tags.t"])


# -- the parser agrees with MLflow's own ---------------------------------------------------------------

SAFE = st.text(alphabet='abcXYZ019 _%-.:/"', max_size=8)
SIMPLE_KEY = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
QUOTED_KEY = st.text(alphabet="abc .-/:", min_size=1, max_size=8).map(lambda k: f"`{k}`")
DOTTED_KEY = st.lists(SIMPLE_KEY, min_size=2, max_size=3).map(".".join)
KEY = st.one_of(SIMPLE_KEY, QUOTED_KEY, DOTTED_KEY)
NUMBER = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: f"{f:.4f}"),
    st.sampled_from([".5", "5.", "1e3", "-2.5E-3", "0"]),
)
STRING = st.one_of(
    SAFE.map(lambda s: "'" + s.replace('"', "") + "'"), SAFE.map(lambda s: '"' + s.replace('"', "") + '"')
)
STRINGS = st.lists(SAFE.map(lambda s: "'" + s.replace('"', "") + "'"), min_size=1, max_size=3).map(
    lambda items: "(" + ", ".join(items) + ")"
)
OPERATOR = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "LIKE", "ilike", "IN", "NOT IN", "IS NULL", "IS NOT NULL"])
PREFIX = st.sampled_from(
    ["metrics.", "metric.", "params.", "param.", "parameters.", "tags.", "tag.", "datasets.", "dataset."]
)
ATTRIBUTE = st.sampled_from(
    ["run_id", "run_name", "status", "user_id", "start_time", "end_time", "created", "`Run name`", "artifact_uri"]
)
ATTRIBUTE_PREFIX = st.sampled_from(["", "attributes.", "attribute.", "attr.", "run."])


@st.composite
def clauses(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        identifier = draw(ATTRIBUTE_PREFIX) + draw(ATTRIBUTE)
    else:
        prefix = draw(PREFIX)
        key = draw(st.sampled_from(["name", "digest", "context", "source"])) if "dataset" in prefix else draw(KEY)
        identifier = prefix + key
    op = draw(OPERATOR)
    if op.startswith("IS"):
        return f"{identifier} {op}"
    value = draw(STRINGS if "IN" in op else st.one_of(NUMBER, STRING))
    return f"{identifier} {op} {value}"


def _mlflow_accepts(text: str) -> list[dict[str, Any]] | None:
    """MLflow's parse plus the comparator checks its stores make while building the query."""
    run = Run(RunInfo("r", "0", "u", "RUNNING", 0, None, "active", run_name="n"), RunData(), RunInputs([]))
    try:
        parsed = SearchUtils.parse_search_filter(text)
        for clause in parsed:  # each one: `filter` stops at the first clause a run fails
            SearchUtils._does_run_match_clause(run, clause)
    except MlflowException:
        return None
    return parsed


def _normalized(parsed: list[dict[str, Any]]) -> list[tuple[str, str, str, Any]]:
    kinds = {"metric": "metric", "parameter": "param", "tag": "tag", "attribute": "attribute", "dataset": "dataset"}
    found = []
    for item in parsed:
        kind, key, op, value = kinds[item["type"]], item["key"], item["comparator"].upper(), item["value"]
        if kind == "attribute":
            key = SearchUtils.translate_key_alias(key)
        if kind == "metric":
            value = float(value)
        found.append((kind, key, op, value))
    return found


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(clauses(), min_size=1, max_size=3).map(" AND ".join))
@example("tags.`a.b` = 'x'")
@example("metrics.x > 1e3 and params.y ilike '%a_'")
@example("metrics.a = 0 AND metrics.as = 0")  # a keyword as a part of a key: MLflow refuses it
@example("metrics.`as` = 0 AND tags.x.from = 'y'")
def test_the_parser_accepts_and_reads_exactly_what_mlflow_does(text: str) -> None:
    theirs = _mlflow_accepts(text)
    try:
        ours = parse_run_filter(text)
    except InvalidParameter:
        assert theirs is None, f"MLflow accepts {text!r} as {theirs}"
        return
    assert theirs is not None, f"MLflow refuses {text!r}, we read {ours}"
    assert [(c.entity.value, c.key, c.op.value, c.value) for c in ours] == _normalized(theirs)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(PREFIX.filter(lambda p: "dataset" not in p), st.sampled_from(["", "attributes."])),
    # MLflow strips the whole clause after unquoting it, eating a quoted key's edge spaces: not compared.
    st.one_of(KEY, ATTRIBUTE).filter(lambda k: k.strip("`") == k.strip("`").strip()),
    st.sampled_from(["", " ASC", " DESC", " asc", " desc"]),
)
# `as` inside a key is a name to MLflow's order_by parser, refused only as its last part with no direction.
@example(prefix="metrics.", key="as.a", direction="")
@example(prefix="tags.", key="a.as", direction=" DESC")
@example(prefix="tags.", key="a.as", direction="")
def test_order_by_agrees_with_mlflow(prefix: str, key: str, direction: str) -> None:
    text = prefix + key + direction
    try:
        theirs: tuple[str, str, bool] | None = SearchUtils.parse_order_by_for_search_runs(text)
    except MlflowException:
        theirs = None
    try:
        [ours] = parse_run_order_by([text])
    except InvalidParameter:
        assert theirs is None, text
        return
    assert theirs is not None, text
    kinds = {"metric": "metric", "parameter": "param", "tag": "tag", "attribute": "attribute"}
    their_key = SearchUtils.translate_key_alias(theirs[1]) if theirs[0] == "attribute" else theirs[1]
    assert (ours.entity.value, ours.key, ours.ascending) == (kinds[theirs[0]], their_key, theirs[2])


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["name", "experiment_id", "creation_time", "last_update_time", "tags.t", "tag.`a b`"]),
    st.sampled_from(["=", "!=", "<", ">=", "LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"]),
    st.one_of(STRING, st.sampled_from(["5", "1.5", "'1001-3'"])),
    STRINGS,
)
def test_experiment_filters_are_refused_where_mlflow_refuses_them(
    identifier: str, op: str, value: str, values: str
) -> None:
    right = "" if op.startswith("IS") else f" {values if 'IN' in op else value}"
    text = f"{identifier} {op}{right}"
    try:
        parsed = SearchExperimentsUtils.parse_search_filter(text)
        from mlflow.store.tracking.sqlalchemy_store import _get_search_experiments_filter_clauses

        # The SQL store's own checks; experiment ids are in the account form here, so skip its int check.
        _get_search_experiments_filter_clauses([p for p in parsed if p["key"] != "experiment_id"], "sqlite")
        theirs_ok = not any(
            p["key"] == "experiment_id" and p["comparator"] not in ("=", "!=", "IN", "NOT IN") for p in parsed
        )
    except MlflowException:
        theirs_ok = False
    try:
        parse_experiment_filter(text)
        ours_ok = True
    except InvalidParameter:
        ours_ok = False
    assert ours_ok == theirs_ok, text


# -- the SQL: values are bound, never pasted ---------------------------------------------------------


def _compiled(statement: Any) -> tuple[str, dict[str, Any]]:
    compiled = statement.compile(dialect=postgresql.asyncpg.dialect())
    return str(compiled), dict(compiled.params)


HOSTILE = st.text(min_size=1, max_size=20).filter(lambda s: "'" not in s and '"' not in s and s.strip())


@settings(max_examples=100, deadline=None)
@given(HOSTILE, HOSTILE)
def test_filter_values_and_keys_only_travel_as_parameters(value: str, key: str) -> None:
    # The marker ends in a letter: a LIKE pattern ending in one escape character is refused before any SQL.
    marker, key = f"zq{value}q", f"kq{key}"
    comparisons = [
        Comparison(Entity.PARAM, key, Op.EQ, marker),
        Comparison(Entity.TAG, key, Op.LIKE, marker),
        Comparison(Entity.ATTRIBUTE, "run_name", Op.ILIKE, marker),
        Comparison(Entity.DATASET, "name", Op.IN, (marker,)),
        Comparison(Entity.METRIC, key, Op.GT, 1.0),
    ]
    query = build_run_query(
        [(1001, "1")], comparisons, [OrderKey(Entity.TAG, key, False)], ViewType.ALL, 10, None
    ).statements[0]
    sql, params = _compiled(query)
    assert marker not in sql
    assert key not in sql
    assert any(marker in str(v) for v in params.values())


def test_visibility_is_part_of_the_where_clause() -> None:
    seen = Visibility(frozenset({1001}), frozenset({(1002, "4"), (1002, "9")}))
    sql, params = _compiled(build_experiment_query(seen, [], [], ViewType.ACTIVE_ONLY, 5, None).statement)
    assert "ix_experiments.workspace_id = ANY" in sql
    assert "unnest" in sql
    assert [1001] in params.values() and [1002, 1002] in params.values() and ["4", "9"] in params.values()
    nothing, _ = _compiled(build_experiment_query(Visibility(), [], [], ViewType.ACTIVE_ONLY, 5, None).statement)
    assert "false" in nothing.lower()


def test_default_run_order_is_start_time_desc_then_run_id_for_the_index() -> None:
    sql, _ = _compiled(build_run_query([(1, "1")], [], [], ViewType.ACTIVE_ONLY, 5, None).statements[0])
    assert sql.rstrip().split("ORDER BY")[1].split("LIMIT")[0].strip() == (
        "ix_runs.start_time DESC NULLS FIRST, ix_runs.run_id ASC NULLS LAST"
    )


def test_metric_comparisons_never_match_nan_except_not_equal() -> None:
    gt, _ = _compiled(
        build_run_query([(1, "1")], parse_run_filter("metrics.a > 1"), [], ViewType.ALL, 5, None).statements[0]
    )
    ne, _ = _compiled(
        build_run_query([(1, "1")], parse_run_filter("metrics.a != 1"), [], ViewType.ALL, 5, None).statements[0]
    )
    assert "'NaN'::float8" in gt.split("WHERE", 1)[1]
    assert "'NaN'::float8" not in ne.split("WHERE", 1)[1]


# -- page tokens -------------------------------------------------------------------------------------

VALUES_BY_KIND = {
    KeyKind.INT: st.integers(-(2**62), 2**62),
    KeyKind.FLOAT: st.floats(allow_nan=False),
    KeyKind.TEXT: st.text(max_size=30),
    KeyKind.TIME: st.integers(0, 10**15).map(lambda us: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)),
}


@given(
    st.lists(st.sampled_from(list(KeyKind)), min_size=1, max_size=5).flatmap(
        lambda kinds: st.tuples(st.just(kinds), st.tuples(*(st.one_of(st.none(), VALUES_BY_KIND[k]) for k in kinds)))
    )
)
def test_page_tokens_carry_every_sort_key_exactly(drawn: tuple[list[KeyKind], tuple[Any, ...]]) -> None:
    kinds, values = drawn
    terms = [SortTerm(None, False, True, kind) for kind in kinds]  # type: ignore[arg-type]
    shape = search_shape("runs", "f", [], "ALL")
    token = encode_page_token(shape, terms, list(values))
    assert token.isascii() and "=" not in token
    decoded = decode_page_token(token, shape, terms)
    assert decoded == list(values)


@pytest.mark.parametrize("token", ["not-base64!!", "e30", "eyJ2IjoxLCJoIjoiYSIsImsiOlsxXX0", "YWJj"])
def test_bad_page_tokens_are_invalid_parameters(token: str) -> None:
    terms, _ = run_sort_terms([])
    with pytest.raises(InvalidParameter) as raised:
        decode_page_token(token, "shape", terms)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_token_from_another_search_is_refused() -> None:
    terms = experiment_sort_terms([])
    token = encode_page_token("one", terms, [datetime.now(UTC), 1, 1, "3"])
    assert decode_page_token(token, "one", terms) is not None
    with pytest.raises(InvalidParameter, match="different search"):
        decode_page_token(token, "two", terms)


# -- small conversions -------------------------------------------------------------------------------


def test_account_experiment_ids_name_workspace_and_experiment() -> None:
    assert parse_account_experiment_id("1001-3") == (1001, "3")
    for bad in ("3", "1001", "-3", "abc-3", "1001-", "1001-3 OR 1=1"):
        with pytest.raises(InvalidParameter, match="workspace_id"):
            parse_account_experiment_id(bad)


def test_non_finite_metric_values_are_written_as_the_stores_write_them() -> None:
    assert metric_value(math.nan) == "NaN"
    assert metric_value(math.inf) == 1.7976931348623157e308
    assert metric_value(-math.inf) == -1.7976931348623157e308
    assert metric_value(0.25) == 0.25


def test_view_types_and_max_results_are_checked() -> None:
    assert view_type(None) is ViewType.ACTIVE_ONLY
    assert view_type("deleted_only") is ViewType.DELETED_ONLY
    assert view_type(3) is ViewType.ALL
    assert max_results(None) == 1000
    for bad in (0, 50_001, "x"):
        with pytest.raises(InvalidParameter):
            max_results(bad)
    assert max_results("12") == 12 == max_results(12)
    # `int` takes these; a client's number is ASCII digits only (gateway/core/numbers.py).
    for bad in ("\uff11\uff12", "\u0661\u0662", " 12", "12 ", "1_0", "+12", "-1", "9" * 5000):
        with pytest.raises(InvalidParameter):
            max_results(bad)


@pytest.mark.parametrize(
    "text", ["metrics.x > " + "9" * 5000, "attributes.start_time > -" + "1" * 4301, "creation_time < " + "2" * 9000]
)
def test_a_number_longer_than_int_reads_is_an_invalid_parameter(text: str) -> None:
    parse = parse_experiment_filter if text.startswith("creation") else parse_run_filter
    with pytest.raises(InvalidParameter, match="too many digits"):
        parse(text)


@pytest.mark.parametrize("raw", ["\uff11\uff12", "\u0661\u0662", " 12", "1_0", "+12", "-1", "²", "9" * 5000])
def test_a_query_number_is_ascii_digits_only(raw: str) -> None:
    with pytest.raises(InvalidParameter, match="max_results"):
        _int_param({"max_results": [raw]}, "max_results")
    assert _int_param({"max_results": ["12"]}, "max_results") == 12
    assert _int_param({}, "max_results") is None
    with pytest.raises(InvalidParameter):
        view_type("SOME")
