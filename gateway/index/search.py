"""Account-wide search over the index: MLflow's runs and experiments search as PostgreSQL queries.

Semantics follow MLflow's SqlAlchemyStore: metrics compare their latest value numerically (a NaN
matches only `!=`), params and tags compare as strings (LIKE is case-sensitive, ILIKE is not), a
run without the compared key never matches, and ordering puts NaN after every number and missing
keys last in both directions; the default order is `start_time DESC, run_id`. What the caller may
read arrives as a `Visibility` and becomes part of the WHERE clause; nothing is filtered afterwards.
Every value is a bound parameter. Pages are keyset pages: the token carries the sort key of the
last row, so a page costs the same however deep it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gateway.core.errors import GatewayError, InvalidParameter
from gateway.core.numbers import whole
from gateway.db.tables import ix_experiments, ix_metric_latest, ix_runs
from gateway.index.filters import Comparison, Entity, Op, OrderKey

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAN: ColumnElement[float] = sa.literal_column("'NaN'::float8", sa.Float(precision=53))
# MLflow's SQL stores keep ±inf as ±max double; answering the same keeps account-wide results equal to
# what each workspace shows.
MAX_DOUBLE = 1.7976931348623157e308
MAX_RESULTS_LIMIT = 50_000
DEFAULT_MAX_RESULTS = 1000
USER_TAG = "mlflow.user"
DATASET_CONTEXT_TAG = "mlflow.data.context"
QUERY_CANCELED = "57014"  # PostgreSQL's query_canceled: the statement timeout
ACCOUNT_EXPERIMENT_ID_RE = re.compile(r"^([0-9]{1,18})-([A-Za-z0-9][\w\-]{0,63})\Z")


class ViewType(StrEnum):
    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"


VIEW_NUMBERS = {"1": ViewType.ACTIVE_ONLY, "2": ViewType.DELETED_ONLY, "3": ViewType.ALL}


def view_type(value: str | int | None) -> ViewType:
    """A view type as the proto JSON (name) or a query string (name or number) carries it."""
    if value is None or value == "":
        return ViewType.ACTIVE_ONLY
    text = str(value).upper()
    found = VIEW_NUMBERS.get(text) or next((v for v in ViewType if v.value == text), None)
    if found is None:
        raise InvalidParameter(f"Invalid view type {value!r}; use ACTIVE_ONLY, DELETED_ONLY or ALL.")
    return found


def max_results(value: int | str | None) -> int:
    if value is None or value == "":
        return DEFAULT_MAX_RESULTS
    number = value if isinstance(value, int) and not isinstance(value, bool) else whole(value)
    if number is None:
        raise InvalidParameter(f"Invalid value {str(value)[:40]!r} for max_results.")
    if not 0 < number <= MAX_RESULTS_LIMIT:
        raise InvalidParameter(
            f"Invalid value {number} for parameter 'max_results' supplied. It must be at most "
            f"{MAX_RESULTS_LIMIT} and greater than 0."
        )
    return number


# -- account-form experiment ids --------------------------------------------------------------------


def account_experiment_id(workspace_id: int, experiment_id: str) -> str:
    return f"{workspace_id}-{experiment_id}"


def parse_account_experiment_id(text: str) -> tuple[int, str]:
    """`1001-3` → (1001, "3"). Workspace stores reuse ids, so the account scope always names both."""
    match = ACCOUNT_EXPERIMENT_ID_RE.match(text.strip())
    if match is None:
        raise InvalidParameter(
            f"Invalid experiment id {text!r} in the account scope: ids look like '<workspace_id>-<experiment_id>', "
            "e.g. '1001-3', as account-scope searches return them."
        )
    return int(match.group(1)), match.group(2)


# -- visibility -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visibility:
    """What a caller may read: every experiment of some workspaces, and single experiments of others."""

    workspaces: frozenset[int] = frozenset()
    experiments: frozenset[tuple[int, str]] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.workspaces and not self.experiments


def _pairs_select(pairs: Sequence[tuple[int, str]]) -> sa.Select[Any]:
    """(workspace_id, experiment_id) pairs as two bound arrays, unnested: two parameters however many."""
    pairs = sorted(pairs)
    unnested = sa.func.unnest(
        sa.literal([w for w, _ in pairs], ARRAY(sa.BigInteger)), sa.literal([e for _, e in pairs], ARRAY(sa.Text))
    ).table_valued(sa.column("w", sa.BigInteger), sa.column("e", sa.Text))
    # `unnest(a, b) AS pairs(w, e)`: a multi-argument unnest names its columns only through the alias.
    pairs_table = unnested.render_derived(name="pairs")
    return sa.select(pairs_table.c.w, pairs_table.c.e)


def visible(
    workspace_id: ColumnElement[Any], experiment_id: ColumnElement[Any], seen: Visibility
) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if seen.workspaces:
        parts.append(workspace_id == sa.any_(sa.literal(sorted(seen.workspaces), ARRAY(sa.BigInteger))))
    if seen.experiments:
        parts.append(sa.tuple_(workspace_id, experiment_id).in_(_pairs_select(list(seen.experiments))))
    return sa.or_(*parts) if parts else sa.false()


def in_experiments(
    workspace_id: ColumnElement[Any], experiment_id: ColumnElement[Any], pairs: Sequence[tuple[int, str]]
) -> ColumnElement[bool]:
    """Rows of these (workspace_id, experiment_id) experiments, one `experiment_id = ANY(...)` per workspace.

    A test the planner can check per row without a join (so an index that drives the order, by start
    time or by a metric, keeps its order) and can also turn into index conditions.
    """
    by_workspace: dict[int, list[str]] = {}
    for w, e in sorted(set(pairs)):
        by_workspace.setdefault(w, []).append(e)
    return sa.or_(
        sa.false(),
        *(
            sa.and_(workspace_id == w, experiment_id == sa.any_(sa.literal(ids, ARRAY(sa.Text))))
            for w, ids in by_workspace.items()
        ),
    )


# -- comparisons ------------------------------------------------------------------------------------


def _compare(expr: ColumnElement[Any], op: Op, value: Any) -> ColumnElement[bool]:
    test: ColumnElement[bool]
    if op is Op.EQ:
        test = expr == value
    elif op is Op.NE:
        test = expr != value
    elif op is Op.LT:
        test = expr < value
    elif op is Op.LE:
        test = expr <= value
    elif op is Op.GT:
        test = expr > value
    elif op is Op.GE:
        test = expr >= value
    elif op is Op.LIKE:
        test = expr.like(_pattern(value))
    elif op is Op.ILIKE:
        test = expr.ilike(_pattern(value))
    elif op is Op.IN:
        test = expr == sa.any_(sa.literal(list(value), ARRAY(sa.Text)))
    elif op is Op.NOT_IN:
        test = sa.not_(expr == sa.any_(sa.literal(list(value), ARRAY(sa.Text))))
    else:
        raise InvalidParameter(f"Comparator {op.value!r} is not valid here.")
    return test


def _pattern(value: Any) -> Any:
    """A LIKE pattern PostgreSQL can match against any value: not one that ends in its escape character.

    PostgreSQL fails on such a pattern only when a value it reads matches all of it before the backslash: the
    filter answered 500 INTERNAL_ERROR or 200 by the rows, and which rows are read before the caller's visibility
    test (one more condition of the same WHERE) is the planner's choice, so the answer could depend on rows the
    caller may not read. It is refused before anything runs, whatever the rows.
    """
    text = str(value)
    if (len(text) - len(text.rstrip("\\"))) % 2:
        raise InvalidParameter(
            f"Invalid LIKE pattern {text[:64]!r}: it ends in the escape character '\\'; write '\\\\' for a backslash."
        )
    return value


def ms_to_time(value: int | float, what: str) -> datetime:
    try:
        return EPOCH + timedelta(milliseconds=value)
    except (OverflowError, ValueError):
        raise InvalidParameter(f"Invalid value {value!r} for {what}: out of range.") from None


def time_to_ms(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // timedelta(milliseconds=1)


def _map_comparison(column: ColumnElement[Any], c: Comparison) -> ColumnElement[bool]:
    """A param or tag: a run without the key matches only IS NULL, as MLflow's inner joins have it."""
    present: ColumnElement[bool] = column.has_key(c.key)
    if c.op is Op.IS_NULL:
        return sa.not_(present)
    if c.op is Op.IS_NOT_NULL:
        return present
    if c.op is Op.EQ:
        # Containment is what the GIN (jsonb_path_ops) index answers.
        contained: ColumnElement[bool] = column.contains({c.key: c.value})
        return contained
    return _compare(column[c.key].astext, c.op, c.value)


def run_user_id() -> ColumnElement[Any]:
    """MLflow's user_id: the client fills it from the `mlflow.user` tag, or "unknown"."""
    return sa.func.coalesce(ix_runs.c.tags[USER_TAG].astext, sa.literal("unknown"))


RUN_ATTRIBUTE_COLUMNS: dict[str, ColumnElement[Any]] = {
    "run_id": ix_runs.c.run_id,
    "run_name": ix_runs.c.run_name,  # the index keeps it equal to the `mlflow.runName` tag, as MLflow does
    "status": ix_runs.c.status,
    "start_time": ix_runs.c.start_time,
    "end_time": ix_runs.c.end_time,
}


def run_condition(c: Comparison) -> ColumnElement[bool]:
    r = ix_runs.c
    if c.entity is Entity.METRIC:
        m = ix_metric_latest.alias("mf")
        value_test = _compare(m.c.latest_value, c.op, float(c.value))  # type: ignore[arg-type]
        # NaN is not comparable: only `!=` holds for it (PostgreSQL would rank it above every number).
        if c.op is not Op.NE:
            value_test = sa.and_(value_test, m.c.latest_value != NAN)
        return sa.exists(sa.select(sa.literal(1)).where(m.c.run_key == r.run_key, m.c.metric_name == c.key, value_test))
    if c.entity is Entity.PARAM:
        return _map_comparison(r.params, c)
    if c.entity is Entity.TAG:
        return _map_comparison(r.tags, c)
    if c.entity is Entity.DATASET:
        d = sa.func.jsonb_array_elements(r.datasets).table_valued(sa.column("value", JSONB)).render_derived(name="d")
        if c.key == "context":
            field: ColumnElement[Any] = sa.func.nullif(d.c.value["context"].astext, "")
        else:
            field = d.c.value[c.key].astext
        return sa.exists(sa.select(sa.literal(1)).select_from(d).where(_compare(field, c.op, c.value)))
    if c.key == "user_id":
        if c.op is Op.EQ and c.value != "unknown":
            # The same test, in the form the GIN index on tags answers.
            return _map_comparison(r.tags, Comparison(Entity.TAG, USER_TAG, Op.EQ, c.value))
        return _compare(run_user_id(), c.op, c.value)
    if c.key in ("start_time", "end_time"):
        return _compare(RUN_ATTRIBUTE_COLUMNS[c.key], c.op, ms_to_time(c.value, c.key))  # type: ignore[arg-type]
    if c.key == "artifact_uri":
        raise InvalidParameter(
            "artifact_uri cannot be searched in the account scope (the index does not keep it); "
            "search it in a workspace."
        )
    return _compare(RUN_ATTRIBUTE_COLUMNS[c.key], c.op, c.value)


def experiment_condition(c: Comparison) -> ColumnElement[bool]:
    e = ix_experiments.c
    if c.entity is Entity.TAG:
        return _map_comparison(e.tags, c)
    if c.key == "name":
        return _compare(e.name, c.op, c.value)
    if c.key in ("creation_time", "last_update_time"):
        column = e.create_time if c.key == "creation_time" else e.update_time
        return _compare(column, c.op, ms_to_time(c.value, c.key))  # type: ignore[arg-type]
    test: ColumnElement[bool]
    if c.op in (Op.IN, Op.NOT_IN):
        assert isinstance(c.value, tuple)
        pairs = [parse_account_experiment_id(v) for v in c.value]
        test = sa.tuple_(e.workspace_id, e.experiment_id).in_(_pairs_select(pairs))
    else:
        workspace_id, experiment_id = parse_account_experiment_id(str(c.value))
        test = sa.and_(e.workspace_id == workspace_id, e.experiment_id == experiment_id)
    return sa.not_(test) if c.op in (Op.NE, Op.NOT_IN) else test


def lifecycle(delete_time: ColumnElement[Any], view: ViewType) -> ColumnElement[bool]:
    if view is ViewType.ACTIVE_ONLY:
        return delete_time.is_(None)
    if view is ViewType.DELETED_ONLY:
        return delete_time.is_not(None)
    return sa.true()


# -- ordering and keyset pages ----------------------------------------------------------------------


class KeyKind(StrEnum):
    INT = "int"
    FLOAT = "float"
    TEXT = "text"
    TIME = "time"


@dataclass(frozen=True, slots=True)
class SortTerm:
    expr: ColumnElement[Any]
    descending: bool
    nulls_last: bool
    kind: KeyKind
    nullable: bool = True  # False spares the keyset predicate its IS NULL branches

    def clause(self) -> ColumnElement[Any]:
        ordered = self.expr.desc() if self.descending else self.expr.asc()
        return ordered.nulls_last() if self.nulls_last else ordered.nulls_first()


def _text_key(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    # Byte order, as the workspace stores (SQLite) compare strings: the same order whatever the database locale.
    return expr.collate("C")


def after(terms: Sequence[SortTerm], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after the row whose sort key is `values`, for any mix of directions and NULLs."""
    alternatives: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for term, value in zip(terms, values, strict=True):
        if value is None:
            later: ColumnElement[bool] = sa.false() if term.nulls_last else term.expr.is_not(None)
            same = term.expr.is_(None)
        else:
            beyond = term.expr < value if term.descending else term.expr > value
            later = sa.or_(beyond, term.expr.is_(None)) if term.nulls_last and term.nullable else beyond
            same = term.expr == value
        alternatives.append(sa.and_(*equal, later))
        equal.append(same)
    condition = sa.or_(*alternatives)
    first, start = terms[0], values[0]
    if start is not None and not (first.nulls_last and first.nullable):
        # Redundant but sargable: lets the index on the leading key start at the cursor.
        bound = first.expr <= start if first.descending else first.expr >= start
        condition = sa.and_(bound, condition)
    return condition


def _encode_key(kind: KeyKind, value: Any) -> Any:
    if value is None:
        return None
    if kind is KeyKind.FLOAT:
        return float(value).hex()  # exact, and infinities survive JSON
    if kind is KeyKind.TIME:
        return (value - EPOCH) // timedelta(microseconds=1)
    return value


def _decode_key(kind: KeyKind, value: Any) -> Any:
    if value is None:
        return None
    if kind is KeyKind.INT and type(value) is int:
        return value
    if kind is KeyKind.TEXT and isinstance(value, str):
        return value
    if kind is KeyKind.FLOAT and isinstance(value, str):
        return float.fromhex(value)
    if kind is KeyKind.TIME and type(value) is int:
        return EPOCH + timedelta(microseconds=value)
    raise ValueError(value)


class _Token(msgspec.Struct):
    v: int
    h: str
    k: list[Any]


def search_shape(*parts: Any) -> str:
    """What a page token is bound to: the same filter, order and scope on every page."""
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:16]


def encode_page_token(shape: str, terms: Sequence[SortTerm], values: Sequence[Any]) -> str:
    document = _Token(1, shape, [_encode_key(t.kind, v) for t, v in zip(terms, values, strict=True)])
    return base64.urlsafe_b64encode(msgspec.json.encode(document)).decode().rstrip("=")


def decode_page_token(token: str | None, shape: str, terms: Sequence[SortTerm]) -> list[Any] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = msgspec.json.decode(raw, type=_Token)
        if document.v != 1 or len(document.k) != len(terms):
            raise ValueError(token)
        values = [_decode_key(t.kind, v) for t, v in zip(terms, document.k, strict=True)]
    except (ValueError, binascii.Error, msgspec.DecodeError, OverflowError):
        raise InvalidParameter(f"Invalid page token {token[:64]!r}.") from None
    if document.h != shape:
        raise InvalidParameter(
            "The page token belongs to a different search (filter, order, view or experiments changed); "
            "start again without it."
        )
    return values


# -- runs -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Statements to run in turn until `limit` rows are found; together they are the search in its order."""

    statements: list[sa.Select[Any]]
    terms: list[SortTerm]


class MetricRank(IntEnum):
    """Where a run falls when ordered by a metric: its rank is the first sort key, always ascending."""

    NUMBER = 0
    NAN = 1
    MISSING = 2


def run_sort_terms(order: Sequence[OrderKey]) -> tuple[list[SortTerm], list[tuple[str, Any]]]:
    """The sort terms of an order_by, and the latest-metric tables to join for them (alias, name)."""
    r = ix_runs.c
    terms: list[SortTerm] = []
    joins: list[tuple[str, Any]] = []
    ordered_by_start = False
    for index, key in enumerate(order):
        descending = not key.ascending
        if key.entity is Entity.METRIC:
            alias = ix_metric_latest.alias(f"o{index}")
            joins.append((key.key, alias))
            value = alias.c.latest_value
            # Numbers in the asked direction, then NaN, then runs without the metric.
            rank = sa.case(
                (value.is_(None), sa.literal_column(str(int(MetricRank.MISSING)))),
                (value == NAN, sa.literal_column(str(int(MetricRank.NAN)))),
                else_=sa.literal_column(str(int(MetricRank.NUMBER))),
            )
            terms.append(SortTerm(rank, False, True, KeyKind.INT, nullable=False))
            terms.append(SortTerm(sa.func.nullif(value, NAN), descending, True, KeyKind.FLOAT))
        elif key.entity in (Entity.PARAM, Entity.TAG):
            column = r.params if key.entity is Entity.PARAM else r.tags
            terms.append(SortTerm(_text_key(column[key.key].astext), descending, True, KeyKind.TEXT))
        elif key.key == "start_time":
            # PostgreSQL's own NULL placement, so the (start_time DESC, run_id) indexes serve the order.
            terms.append(SortTerm(r.start_time, descending, not descending, KeyKind.TIME))
            ordered_by_start = True
        elif key.key == "end_time":
            terms.append(SortTerm(r.end_time, descending, True, KeyKind.TIME))
        elif key.key == "run_id":
            terms.append(SortTerm(r.run_id, descending, True, KeyKind.TEXT, nullable=False))
        elif key.key == "user_id":
            terms.append(SortTerm(_text_key(run_user_id()), descending, True, KeyKind.TEXT, nullable=False))
        elif key.key in ("run_name", "status"):
            text_key = _text_key(RUN_ATTRIBUTE_COLUMNS[key.key])
            terms.append(SortTerm(text_key, descending, True, KeyKind.TEXT, nullable=False))
        else:
            raise InvalidParameter(f"Ordering by {key.key!r} is not supported in the account scope.")
    if not ordered_by_start:
        terms.append(SortTerm(r.start_time, True, False, KeyKind.TIME))
    # Run ids are unique: the last term makes the order total, which keyset pages need.
    terms.append(SortTerm(r.run_id, False, True, KeyKind.TEXT, nullable=False))
    return terms, joins


def _run_select(
    source: Any,
    conditions: Sequence[ColumnElement[bool]],
    keys: Sequence[ColumnElement[Any]],
    terms: Sequence[SortTerm],
    limit: int,
) -> sa.Select[Any]:
    """The runs of `source` that meet `conditions`, in the order of `terms`, with the page's sort key as k0..kn."""
    r = ix_runs.c
    return (
        sa.select(
            r.run_key,
            r.run_id,
            r.workspace_id,
            r.experiment_id,
            r.run_name,
            r.status,
            r.start_time,
            r.end_time,
            r.delete_time,
            r.params,
            r.tags,
            r.datasets,
            run_user_id().label("user_id"),
            *(key.label(f"k{i}") for i, key in enumerate(keys)),
        )
        .select_from(source)
        .where(*conditions)
        .order_by(*(term.clause() for term in terms))
        .limit(limit)
    )


def _metric_led_selects(
    terms: list[SortTerm],
    joins: list[tuple[str, Any]],
    conditions: list[ColumnElement[bool]],
    comparisons: Sequence[Comparison],
    limit: int,
    cursor: Sequence[Any] | None,
) -> list[sa.Select[Any]]:
    """An order led by a metric, as one statement per rank: numbers, then NaN, then runs without the metric.

    Within the numbers the order is the metric's own, which the (metric_name, latest_value) index
    yields: the planner can walk it and test each run's visibility and filters until the page is
    full, instead of sorting every matching run by a CASE. Ranks the filter rules out are not asked.
    """
    r = ix_runs.c
    name, lead = joins[0]
    value = lead.c.latest_value
    rest, rest_keys = terms[2:], [t.expr for t in terms[2:]]
    joined: Any = ix_runs.join(lead, sa.and_(lead.c.run_key == r.run_key, lead.c.metric_name == name))
    unjoined: Any = ix_runs
    for metric_name, alias in joins[1:]:
        on = sa.and_(alias.c.run_key == r.run_key, alias.c.metric_name == metric_name)
        joined, unjoined = joined.outerjoin(alias, on), unjoined.outerjoin(alias, on)
    same_metric = [c for c in comparisons if c.entity is Entity.METRIC and c.key == name]
    try:
        start = MetricRank(cursor[0]) if cursor is not None else MetricRank.NUMBER
    except ValueError:
        raise InvalidParameter("Invalid page token.") from None
    selects: list[sa.Select[Any]] = []
    for rank in MetricRank:
        if rank < start:
            continue
        if rank is MetricRank.NAN and any(c.op is not Op.NE for c in same_metric):
            continue  # only `!=` holds for NaN
        if rank is MetricRank.MISSING and same_metric:
            continue  # a run without the compared metric never matches
        rank_key: ColumnElement[Any] = sa.literal_column(str(int(rank)))
        if rank is MetricRank.NUMBER:
            # NOT NULL, and NULLs placed as PostgreSQL places them, so a scan of the index gives this order;
            # `< NaN` (NaN sorts above every number) is a range of that index.
            number = SortTerm(value, terms[1].descending, not terms[1].descending, KeyKind.FLOAT, nullable=False)
            branch_terms, keys = [number, *rest], [rank_key, value, *rest_keys]
            source, test = joined, value < NAN
        else:
            branch_terms, keys = rest, [rank_key, sa.null(), *rest_keys]
            if rank is MetricRank.NAN:
                source, test = joined, value == NAN
            else:
                m = ix_metric_latest.alias("om")
                has = sa.exists(sa.select(sa.literal(1)).where(m.c.run_key == r.run_key, m.c.metric_name == name))
                source, test = unjoined, sa.not_(has)
        where = [*conditions, test]
        if cursor is not None and rank == start:
            where.append(after(branch_terms, cursor[1:] if rank is MetricRank.NUMBER else cursor[2:]))
        selects.append(_run_select(source, where, keys, branch_terms, limit))
    return selects


def build_run_query(
    experiments: Sequence[tuple[int, str]],
    comparisons: Sequence[Comparison],
    order: Sequence[OrderKey],
    view: ViewType,
    limit: int,
    cursor: Sequence[Any] | None,
) -> RunQuery:
    r = ix_runs.c
    terms, joins = run_sort_terms(order)
    conditions = [
        in_experiments(r.workspace_id, r.experiment_id, experiments),
        lifecycle(r.delete_time, view),
        *(run_condition(c) for c in comparisons),
    ]
    if order and order[0].entity is Entity.METRIC:
        return RunQuery(_metric_led_selects(terms, joins, conditions, comparisons, limit, cursor), terms)
    source: Any = ix_runs
    for metric_name, alias in joins:
        source = source.outerjoin(alias, sa.and_(alias.c.run_key == r.run_key, alias.c.metric_name == metric_name))
    if cursor is not None:
        conditions.append(after(terms, cursor))
    return RunQuery([_run_select(source, conditions, [t.expr for t in terms], terms, limit)], terms)


def latest_metrics_query(run_keys: Sequence[int]) -> sa.Select[Any]:
    m = ix_metric_latest.c
    return (
        sa.select(m.run_key, m.metric_name, m.latest_value, m.latest_step, m.latest_time)
        .where(m.run_key == sa.any_(sa.literal(list(run_keys), ARRAY(sa.BigInteger))))
        .order_by(m.run_key, m.metric_name)
    )


# -- experiments ------------------------------------------------------------------------------------


def experiment_sort_terms(order: Sequence[OrderKey]) -> list[SortTerm]:
    e = ix_experiments.c
    keys = list(order) or [
        OrderKey(Entity.ATTRIBUTE, "creation_time", False),
        OrderKey(Entity.ATTRIBUTE, "experiment_id", True),
    ]
    if not any(k.key == "experiment_id" for k in keys):
        keys.append(OrderKey(Entity.ATTRIBUTE, "experiment_id", False))  # MLflow's tie-breaker
    terms: list[SortTerm] = []
    for key in keys:
        descending = not key.ascending
        if key.key == "name":
            terms.append(SortTerm(_text_key(e.name), descending, True, KeyKind.TEXT, nullable=False))
        elif key.key == "creation_time":
            terms.append(SortTerm(e.create_time, descending, True, KeyKind.TIME, nullable=False))
        elif key.key == "last_update_time":
            terms.append(SortTerm(e.update_time, descending, True, KeyKind.TIME, nullable=False))
        else:
            # Workspace, then the store's id in numeric order ("9" before "10"), as the stores order them.
            terms.append(SortTerm(e.workspace_id, descending, True, KeyKind.INT, nullable=False))
            terms.append(SortTerm(sa.func.length(e.experiment_id), descending, True, KeyKind.INT, nullable=False))
            terms.append(SortTerm(_text_key(e.experiment_id), descending, True, KeyKind.TEXT, nullable=False))
    return terms


@dataclass(frozen=True, slots=True)
class ExperimentQuery:
    statement: sa.Select[Any]
    terms: list[SortTerm]


def build_experiment_query(
    seen: Visibility,
    comparisons: Sequence[Comparison],
    order: Sequence[OrderKey],
    view: ViewType,
    limit: int,
    cursor: Sequence[Any] | None,
) -> ExperimentQuery:
    e = ix_experiments.c
    terms = experiment_sort_terms(order)
    conditions = [
        visible(e.workspace_id, e.experiment_id, seen),
        lifecycle(e.delete_time, view),
        *(experiment_condition(c) for c in comparisons),
    ]
    if cursor is not None:
        conditions.append(after(terms, cursor))
    statement = (
        sa.select(
            e.workspace_id,
            e.experiment_id,
            e.name,
            e.create_time,
            e.update_time,
            e.delete_time,
            e.tags,
            *(term.expr.label(f"k{i}") for i, term in enumerate(terms)),
        )
        .where(*conditions)
        .order_by(*(term.clause() for term in terms))
        .limit(limit)
    )
    return ExperimentQuery(statement, terms)


def experiments_named_query(seen: Visibility, name: str) -> sa.Select[Any]:
    e = ix_experiments.c
    return (
        sa.select(e.workspace_id, e.experiment_id, e.delete_time)
        .where(e.name == name, visible(e.workspace_id, e.experiment_id, seen))
        .order_by(e.workspace_id, e.experiment_id)
        .limit(50)
    )


def run_location_query(run_id: str) -> sa.Select[Any]:
    r = ix_runs.c
    return sa.select(r.workspace_id, r.experiment_id).where(r.run_id == run_id)


# -- answers in MLflow's shape ----------------------------------------------------------------------


class KeyValue(msgspec.Struct):
    key: str
    value: str


class MetricOut(msgspec.Struct):
    key: str
    value: float | str
    timestamp: int
    step: int


class RunInfoOut(msgspec.Struct, omit_defaults=True):
    run_id: str
    run_uuid: str
    run_name: str
    experiment_id: str
    user_id: str
    status: str
    lifecycle_stage: str
    start_time: int | None = None
    end_time: int | None = None


class RunDataOut(msgspec.Struct, omit_defaults=True):
    metrics: list[MetricOut] = []
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class DatasetOut(msgspec.Struct, omit_defaults=True):
    name: str
    digest: str
    source_type: str = ""
    source: str = ""


class DatasetInputOut(msgspec.Struct, omit_defaults=True):
    dataset: DatasetOut
    tags: list[KeyValue] = []


class RunInputsOut(msgspec.Struct, omit_defaults=True):
    dataset_inputs: list[DatasetInputOut] = []


class RunOut(msgspec.Struct):
    info: RunInfoOut
    data: RunDataOut
    inputs: RunInputsOut


class SearchRunsOut(msgspec.Struct, omit_defaults=True):
    runs: list[RunOut] = []
    next_page_token: str | None = None


class ExperimentOut(msgspec.Struct, omit_defaults=True):
    experiment_id: str
    name: str
    lifecycle_stage: str
    last_update_time: int
    creation_time: int
    tags: list[KeyValue] = []
    workspace: str = ""


class SearchExperimentsOut(msgspec.Struct, omit_defaults=True):
    experiments: list[ExperimentOut] = []
    next_page_token: str | None = None


def metric_value(value: float) -> float | str:
    """Proto JSON spells non-finite doubles as strings; infinities are clamped as MLflow's SQL stores do."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return MAX_DOUBLE if value > 0 else -MAX_DOUBLE
    return value


def _pairs_out(document: Any) -> list[KeyValue]:
    items = document.items() if isinstance(document, dict) else []
    return [KeyValue(str(k), "" if v is None else str(v)) for k, v in sorted(items)]


def _dataset_inputs(document: Any) -> list[DatasetInputOut]:
    found: dict[tuple[str, str, str], DatasetInputOut] = {}
    for item in document if isinstance(document, list) else []:
        if not isinstance(item, dict):
            continue
        name, digest = str(item.get("name") or ""), str(item.get("digest") or "")
        context = str(item.get("context") or "")
        tags = [KeyValue(DATASET_CONTEXT_TAG, context)] if context else []
        dataset = DatasetOut(name, digest, str(item.get("source_type") or ""), str(item.get("source") or ""))
        # Logging the same dataset again is one input in MLflow, not two.
        found.setdefault((name, digest, context), DatasetInputOut(dataset, tags))
    return list(found.values())


def run_out(row: Mapping[str, Any], metrics: Sequence[Mapping[str, Any]]) -> RunOut:
    info = RunInfoOut(
        run_id=row["run_id"],
        run_uuid=row["run_id"],
        run_name=row["run_name"] or "",
        experiment_id=account_experiment_id(row["workspace_id"], row["experiment_id"]),
        user_id=row["user_id"],
        status=row["status"],
        lifecycle_stage="deleted" if row["delete_time"] is not None else "active",
        start_time=time_to_ms(row["start_time"]),
        end_time=time_to_ms(row["end_time"]),
    )
    data = RunDataOut(
        metrics=[
            MetricOut(
                m["metric_name"], metric_value(m["latest_value"]), time_to_ms(m["latest_time"]) or 0, m["latest_step"]
            )
            for m in metrics
        ],
        params=_pairs_out(row["params"]),
        tags=_pairs_out(row["tags"]),
    )
    return RunOut(info, data, RunInputsOut(_dataset_inputs(row["datasets"])))


def experiment_out(row: Mapping[str, Any], workspace: str) -> ExperimentOut:
    return ExperimentOut(
        experiment_id=account_experiment_id(row["workspace_id"], row["experiment_id"]),
        name=row["name"],
        lifecycle_stage="deleted" if row["delete_time"] is not None else "active",
        last_update_time=time_to_ms(row["update_time"]) or 0,
        creation_time=time_to_ms(row["create_time"]) or 0,
        tags=_pairs_out(row["tags"]),
        workspace=workspace,
    )


# -- running them -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSearch:
    experiments: Sequence[tuple[int, str]]  # asked for and readable
    comparisons: Sequence[Comparison]
    order: Sequence[OrderKey]
    view: ViewType
    max_results: int
    page_token: str | None
    shape: str


@dataclass(frozen=True, slots=True)
class ExperimentSearch:
    visibility: Visibility
    comparisons: Sequence[Comparison]
    order: Sequence[OrderKey]
    view: ViewType
    max_results: int
    page_token: str | None
    shape: str


class SearchTimedOut(GatewayError):
    """A search PostgreSQL cancelled at the account scope's statement timeout."""

    error_code = "DEADLINE_EXCEEDED"
    status = 504


class IndexSearch:
    """Runs the account scope's queries on one session (read-only; the unit of work owns it).

    Each search runs under a statement timeout of its own (`server.account_search_timeout_seconds`): one that
    takes longer is cancelled by PostgreSQL and answers 504 DEADLINE_EXCEEDED, instead of holding a
    connection of the gateway's pool for as long as it runs.
    """

    def __init__(self, session: AsyncSession, timeout_seconds: float = 10.0) -> None:
        self.session = session
        self.timeout_ms = max(1, round(timeout_seconds * 1000))

    async def _limit(self) -> None:
        await self.session.execute(sa.text(f"SET LOCAL statement_timeout = {int(self.timeout_ms)}"))

    async def _plan_each_search(self) -> None:
        # The driver prepares statements and PostgreSQL switches a statement to one generic plan after five
        # runs. How selective a filter or a caller's visibility is decides the right plan (walk an ordered
        # index, or collect the matches and sort them), and a generic plan cannot see it: one such plan
        # took seconds where the planned one takes milliseconds. Planning costs about a millisecond.
        await self.session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))

    async def _rows(self, statement: sa.Select[Any]) -> Sequence[Mapping[str, Any]]:
        try:
            rows: Sequence[Mapping[str, Any]] = (await self.session.execute(statement)).mappings().all()
        except DBAPIError as exc:
            if _sqlstate(exc) == QUERY_CANCELED:
                seconds = self.timeout_ms / 1000
                raise SearchTimedOut(
                    f"The search took longer than {seconds:g} s and was stopped; narrow it (fewer experiments, "
                    "a more selective filter) or search a workspace."
                ) from None
            raise
        return rows

    async def runs(self, search: RunSearch) -> SearchRunsOut:
        terms, _ = run_sort_terms(search.order)
        cursor = decode_page_token(search.page_token, search.shape, terms)
        if not search.experiments:
            return SearchRunsOut()
        query = build_run_query(
            search.experiments, search.comparisons, search.order, search.view, search.max_results + 1, cursor
        )
        await self._limit()
        await self._plan_each_search()
        rows: list[Mapping[str, Any]] = []
        for statement in query.statements:
            rows.extend(await self._rows(statement))
            if len(rows) > search.max_results:
                break
        page, more = rows[: search.max_results], len(rows) > search.max_results
        by_run: dict[int, list[Mapping[str, Any]]] = {row["run_key"]: [] for row in page}
        if by_run:
            for metric in await self._rows(latest_metrics_query(list(by_run))):
                by_run[metric["run_key"]].append(metric)
        token = None
        if more:
            last = page[-1]
            token = encode_page_token(search.shape, query.terms, [last[f"k{i}"] for i in range(len(query.terms))])
        return SearchRunsOut([run_out(row, by_run[row["run_key"]]) for row in page], token)

    async def experiments(self, search: ExperimentSearch, names: Mapping[int, str]) -> SearchExperimentsOut:
        terms = experiment_sort_terms(search.order)
        cursor = decode_page_token(search.page_token, search.shape, terms)
        if search.visibility.empty:
            return SearchExperimentsOut()
        query = build_experiment_query(
            search.visibility, search.comparisons, search.order, search.view, search.max_results + 1, cursor
        )
        await self._limit()
        rows = await self._rows(query.statement)
        page, more = rows[: search.max_results], len(rows) > search.max_results
        token = None
        if more:
            last = page[-1]
            token = encode_page_token(search.shape, query.terms, [last[f"k{i}"] for i in range(len(query.terms))])
        return SearchExperimentsOut([experiment_out(row, names.get(row["workspace_id"], "")) for row in page], token)

    async def experiments_named(self, seen: Visibility, name: str) -> list[tuple[int, str, bool]]:
        """(workspace id, experiment id, deleted) of every readable experiment with this name."""
        if seen.empty:
            return []
        rows = (await self.session.execute(experiments_named_query(seen, name))).all()
        return [(row[0], row[1], row[2] is not None) for row in rows]

    async def run_location(self, run_id: str) -> tuple[int, str] | None:
        row = (await self.session.execute(run_location_query(run_id))).first()
        return (row[0], row[1]) if row is not None else None


def _sqlstate(exc: BaseException | None) -> str | None:
    """PostgreSQL's error code of a failure, raised by asyncpg directly or wrapped by SQLAlchemy."""
    while exc is not None:
        if (code := getattr(exc, "sqlstate", None)) is not None:
            return str(code)
        exc = getattr(exc, "orig", None) or exc.__cause__
    return None


async def experiment_names(session: AsyncSession, workspace_id: int, experiment_ids: Sequence[str]) -> dict[str, str]:
    """The indexed names of a workspace's experiments, by id (an experiment the index has not seen is absent)."""
    if not experiment_ids:
        return {}
    e = ix_experiments.c
    result = await session.execute(
        sa.select(e.experiment_id, e.name).where(
            e.workspace_id == workspace_id, e.experiment_id.in_(sorted(set(experiment_ids)))
        )
    )
    return {str(experiment_id): str(name) for experiment_id, name in result.all()}
