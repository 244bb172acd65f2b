"""Metric points written through to the index without PostgreSQL sorting them: chunks and aggregates built here.

`LOG_METRICS` (writer.py) hands PostgreSQL the points as JSON and lets it chunk them by metric and take
each metric's latest point, minimum and maximum: three sorts of the batch's points in SQL, most of the
statement's cost. `read_points` does that work once in Python, from the same body, and gives the chunk
rows in PostgreSQL's binary COPY format and one aggregate per metric; `PointWriter` writes the rows of
calls that arrive while a write is under way with one COPY and one upsert (`UPSERT_LATEST`), in one
transaction sent as one message (`batch_statement`), each caller waiting for the commit of the batch it is in.

The index is the same either way (tests/unit/test_index_points.py holds the two to each other).
PostgreSQL reads a JSON number through `numeric` (so -0 becomes 0, and a literal `numeric` or `float8`
refuses fails the statement) and a string with `float8`'s own parser; `read_points` takes a body only when
it can tell that every point reads the same here: a string key without NUL, a value that is a number or
one of "NaN", "Infinity", "-Infinity", integer (or absent) step and timestamp within range, no numeric
literal with 99 digits in a row, no exponent below -99 in a body with a zero. Any other body (None) is
left to the statement, which answers it as before, error included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from operator import attrgetter, itemgetter
from typing import Annotated, NamedTuple

import asyncpg
import msgspec

from gateway.federation.mlflow_requests import ClientPoint
from gateway.index.writer import MERGE_METRIC_AGGREGATES

log = logging.getLogger(__name__)

CHUNK_POINTS = 300  # as LOG_METRICS: three arrays of 300 eight-byte values keep a row inside one page
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1
# 'epoch'::timestamptz + ms * interval '1 millisecond' is exact and in range well inside this (years 1716 to 2223):
# the interval's microseconds are a float8 product, exact below 2**53.
MAX_MS = 8_000_000_000_000
EPOCH_2000_US = 946_684_800_000_000  # PostgreSQL's timestamps count microseconds from 2000-01-01 UTC
SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
INT8_OID, FLOAT8_OID, TIMESTAMPTZ_OID = 20, 701, 1184
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
COPY_COLUMNS = ("run_key", "metric_name", "metric_steps", "metric_times", "metric_values")
HOLD_SECONDS = 0.05  # the point writer keeps its connection this long after the last batch, for the next one
MAX_BATCH_POINTS = 100_000  # one COPY carries at most this many points (the calls' rows are never split)


class _Point(msgspec.Struct, gc=False):
    key: str
    value: float | str
    timestamp: int = 0  # null is left to the statement
    step: int = 0


_DECODER = msgspec.json.Decoder(list[_Point])
_VALUE, _STEP, _TIME = (attrgetter(name) for name in ("value", "step", "timestamp"))


def _shape_table() -> bytes:
    """Digits, plus signs and points become "0", an exponent's letter "e", a minus sign stays, anything else " "."""
    table = bytearray(b" " * 256)
    for c in b"0123456789.+":
        table[c] = ord("0")
    table[ord("e")] = table[ord("E")] = ord("e")
    table[ord("-")] = ord("-")
    return bytes(table)


_SHAPE = _shape_table()
_LONG_NUMBER = b"0" * 99  # 99 digits in a row: a literal PostgreSQL's numeric may refuse
# A negative exponent of three digits or more: the only way a literal without 99 digits in a row reads as zero without
# being zero (too small for float8, which the statement refuses).
_LONG_EXPONENT = b"e-000"


class Aggregate(NamedTuple):
    """One metric's figures over some points, as `ix_metric_latest` keeps them (the latest ranks NaN as 0)."""

    latest_step: int
    latest_ms: int
    latest_value: float
    low: float  # over non-NaN values; +Infinity when there are none
    high: float  # -Infinity when there are none
    has_nan: bool
    points: int


MAX_DOUBLE = 1.7976931348623157e308


def _rank(value: float) -> float:
    """How MLflow's SQL stores rank a value among points of one step and timestamp: as they keep it, NaN as 0 and
    ±Infinity as ±max double (writer.py's RANK_NEW and RANK_OLD)."""
    return 0.0 if value != value else min(max(value, -MAX_DOUBLE), MAX_DOUBLE)


def merge(old: Aggregate, new: Aggregate) -> Aggregate:
    """Both: what `UPSERT_LATEST` makes of a row `old` and a row `new` (the latest kept on a full tie)."""
    newer = (new.latest_step, new.latest_ms, _rank(new.latest_value)) > (
        old.latest_step,
        old.latest_ms,
        _rank(old.latest_value),
    )
    latest = new if newer else old
    return Aggregate(
        latest.latest_step,
        latest.latest_ms,
        latest.latest_value,
        min(old.low, new.low),
        max(old.high, new.high),
        old.has_nan or new.has_nan,
        old.points + new.points,
    )


@dataclass(frozen=True, slots=True)
class PointRows:
    """One call's points for the run `run_key`: its `ix_metrics` chunk rows (binary COPY tuples) and aggregates."""

    run_key: int
    copy: bytes
    aggregates: dict[str, Aggregate]
    points: int


def read_points(run_key: int, body: bytes) -> PointRows | None:
    """The chunk rows and aggregates of a JSON array of MLflow metrics; None: leave the body to the statement."""
    try:
        points = _DECODER.decode(body)
    except msgspec.MsgspecError:
        return None
    if not points:
        return None
    shape = body.translate(_SHAPE)
    if _LONG_NUMBER in shape:
        return None
    by_name: dict[str, list[_Point]] = {}  # each metric's points, in the order sent
    for point in points:
        if (same := by_name.get(point.key)) is None:
            by_name[point.key] = [point]
        else:
            same.append(point)
    columns: dict[str, tuple[list[int], list[int], list[float]]] = {}
    for name, group in by_name.items():
        values: list[float] = list(map(_VALUE, group))  # numbers, and strings until checked below
        steps: list[int] = list(map(_STEP, group))
        times: list[int] = list(map(_TIME, group))
        if min(steps) < INT8_MIN or max(steps) > INT8_MAX or min(times) < -MAX_MS or max(times) > MAX_MS:
            return None
        try:
            sum(values)
        except TypeError:  # a string among them
            try:
                values = [v if isinstance(v, float) else SPECIAL[v] for v in values]
            except KeyError:
                return None
        if 0.0 in values:
            # A number too small for float8 reads as zero here and fails the statement: left to it. Through
            # numeric, -0 is 0.
            if (b"e-" in body or b"E-" in body) and _LONG_EXPONENT in shape:
                return None
            values = [v + 0.0 for v in values]
        columns[name] = (steps, times, values)
    return _rows(run_key, columns, len(points))


_KEY, _VALUE_OF, _STEP_OF, _TIME_OF = (itemgetter(name) for name in ("key", "value", "step", "timestamp"))
# What read_points' decoder takes, checked by msgspec on each column at once: no bool for a number, a string for a
# name, int8's range for steps and the range above for timestamps; ints as floats, as that decoder reads them.
_NAMES = list[str]
_STEPS = list[Annotated[int, msgspec.Meta(ge=INT8_MIN, le=INT8_MAX)]]
_TIMES = list[Annotated[int, msgspec.Meta(ge=-MAX_MS, le=MAX_MS)]]
_NUMBERS = list[float]
_TINY = 1e-98  # a number below this beside a zero is left to read_points (its literal may have an exponent of -100)
_HUGE = 1e98  # a number of this size may have been sent with 99 digits: left to read_points too


def read_metrics(run_key: int, metrics: object) -> PointRows | None:
    """`read_points` of the points of a canonical request body already decoded (`metrics`: its metrics array),
    in the shape MLflow's clients send: every point exactly `key`, `value`, `timestamp` and `step`, a number
    for a value. The same rows, read column by column from the document instead of decoded again
    (tests/unit/test_index_points.py holds the two to each other); None for any other shape, and wherever
    `read_points` might leave the body to the statement: read it with `read_points` then.

    The canonical encoding holds no literal the document does not (msgspec writes a float in at most 17
    digits and an exponent), so what `read_points` looks for in the body's text is read from the values here:
    a long run of digits only from an integer of 99 digits or a name of 99 characters, an exponent of -100
    only from a number below 1e-99 or a name with "e-" in it.
    """
    if type(metrics) is not list or not metrics:
        return None
    try:
        keys = msgspec.convert(list(map(_KEY, metrics)), _NAMES)
        steps = msgspec.convert(list(map(_STEP_OF, metrics)), _STEPS)
        times = msgspec.convert(list(map(_TIME_OF, metrics)), _TIMES)
        floats = msgspec.convert(list(map(_VALUE_OF, metrics)), _NUMBERS)  # a string (NaN) is refused
    except (KeyError, TypeError, msgspec.ValidationError):
        return None
    # No key but these four: no other text whose digits read_points would look at.
    if sum(map(len, metrics)) != 4 * len(keys):
        return None
    return _read_columns(run_key, keys, steps, times, floats)


def read_client_points(run_key: int, points: Sequence[ClientPoint]) -> PointRows | None:
    """`read_metrics` of points the partial-read check already converted (`ClientPoint`: exactly the four fields, a
    string name, a finite number for a value, steps and timestamps within int8), from the same document: the same
    rows (tests/unit/test_index_points.py), each field read as an attribute, with no conversion or check of its own
    but the timestamps' range. None where `read_metrics` would give None."""
    if not points:
        return None
    keys = [point.key for point in points]
    steps = [point.step for point in points]
    times = [point.timestamp for point in points]
    floats = [point.value for point in points]
    return _read_columns(run_key, keys, steps, times, floats, times_checked=False)


def _read_columns(
    run_key: int,
    keys: list[str],
    steps: list[int],
    times: list[int],
    floats: list[float],
    times_checked: bool = True,
) -> PointRows | None:
    """`read_metrics` past its columns: each point's name, step (int8), timestamp (within MAX_MS unless not
    `times_checked`) and value (a number)."""
    count = len(keys)
    # The same metrics in the same order, step after step (as a client logging a dict per step sends them), or
    # each metric's points where they are.
    try:
        period = keys.index(keys[0], 1)
    except ValueError:
        period = count
    names = keys[:period]
    repeated = count % period == 0 and keys == names * (count // period) and len(set(names)) == period
    where: dict[str, list[int]] = {}
    if not repeated:
        where = {name: [] for name in keys}
        for at, name in enumerate(keys):
            where[name].append(at)
        names = list(where)
    if any(len(name) >= len(_LONG_NUMBER) for name in names):
        return None
    if 0.0 in floats:
        if any(0.0 < abs(v) < _TINY for v in floats) or any("e-" in name or "E-" in name for name in names):
            return None
        floats = [v + 0.0 for v in floats]  # through numeric, -0 is 0
    if steps.count(steps[0]) == count and times.count(times[0]) == count:  # one step and one timestamp throughout
        if not (times_checked or -MAX_MS <= times[0] <= MAX_MS):
            return None
        if repeated:
            values = {name: floats[at::period] for at, name in enumerate(names)} if period > 1 else {names[0]: floats}
        else:
            values = {name: list(map(floats.__getitem__, indexes)) for name, indexes in where.items()}
        extremes = {name: (min(column), max(column)) for name, column in values.items()}
        if max(high for _, high in extremes.values()) >= _HUGE or min(low for low, _ in extremes.values()) <= -_HUGE:
            return None
        return _uniform_rows(run_key, steps[0], times[0], values, extremes, count)
    if max(floats) >= _HUGE or min(floats) <= -_HUGE:
        return None
    if not times_checked and (min(times) < -MAX_MS or max(times) > MAX_MS):
        return None
    columns: dict[str, tuple[list[int], list[int], list[float]]] = {}
    if repeated and period == 1:
        columns[names[0]] = (steps, times, floats)
    elif repeated:
        for at, name in enumerate(names):
            columns[name] = (steps[at::period], times[at::period], floats[at::period])
    else:
        for name, indexes in where.items():
            columns[name] = (
                list(map(steps.__getitem__, indexes)),
                list(map(times.__getitem__, indexes)),
                list(map(floats.__getitem__, indexes)),
            )
    return _rows(run_key, columns, count)


def _uniform_rows(
    run_key: int,
    step: int,
    ms: int,
    columns: dict[str, list[float]],
    extremes: dict[str, tuple[float, float]],
    points: int,
) -> PointRows | None:
    """`_rows` of a call whose points all have one step and one timestamp, from each metric's values (finite numbers,
    as read_metrics reads them) and their minimum and maximum: each metric's latest point is its greatest value,
    and every chunk's steps and timestamps are one element repeated."""
    rows: list[bytes] = []
    aggregates: dict[str, Aggregate] = {}
    head = struct.pack(">hiq", 5, 8, run_key)
    step_element, time_element = _element(step, "q"), _element(ms * 1000 - EPOCH_2000_US, "q")
    fixed: dict[int, bytes] = {}  # the steps and timestamps fields of a chunk of so many points
    for name in sorted(columns):
        values = columns[name]
        if (name_field := _name_field(name)) is None:
            return None
        low, high = extremes[name]
        aggregates[name] = Aggregate(step, ms, high, low, high, False, len(values))
        for at in range(0, len(values), CHUNK_POINTS):
            chunk = values[at : at + CHUNK_POINTS] if len(values) > CHUNK_POINTS else values
            size = len(chunk)
            if (both := fixed.get(size)) is None:
                both = fixed[size] = _fixed_array(step_element, size, INT8_OID) + _fixed_array(
                    time_element, size, TIMESTAMPTZ_OID
                )
            rows.append(head)
            rows.append(name_field)
            rows.append(both)
            rows.append(_varied_array(chunk, FLOAT8_OID, "d"))
    return PointRows(run_key, b"".join(rows), aggregates, points)


def _rows(run_key: int, columns: dict[str, tuple[list[int], list[int], list[float]]], points: int) -> PointRows | None:
    """Each metric's chunk rows (by name) and aggregate, from its steps, timestamps and values in the order sent."""
    rows: list[bytes] = []
    aggregates: dict[str, Aggregate] = {}
    head = struct.pack(">hiq", 5, 8, run_key)
    for name in sorted(columns):
        steps, times, values = columns[name]
        if (name_field := _name_field(name)) is None:
            return None
        aggregates[name] = _aggregate(steps, times, values)
        if times.count(times[0]) == len(times):
            micros = [times[0] * 1000 - EPOCH_2000_US] * len(times)
        else:
            micros = [t * 1000 - EPOCH_2000_US for t in times]
        for at in range(0, len(values), CHUNK_POINTS):
            end = at + CHUNK_POINTS
            rows.append(head)
            rows.append(name_field)
            rows.append(_array(steps[at:end], INT8_OID, "q"))
            rows.append(_array(micros[at:end], TIMESTAMPTZ_OID, "q"))
            rows.append(_array(values[at:end], FLOAT8_OID, "d"))
    return PointRows(run_key, b"".join(rows), aggregates, points)


def _name_field(name: str) -> bytes | None:
    """A metric name as a COPY field (its length, then its UTF-8), or None for a name the statement must answer:
    one holding NUL (text refuses it) or a lone surrogate (not UTF-8)."""
    if "\x00" in name:
        return None
    try:
        raw_name = name.encode()
    except UnicodeEncodeError:
        return None
    return struct.pack(">i", len(raw_name)) + raw_name


def _aggregate(steps: Sequence[int], times: Sequence[int], values: Sequence[float]) -> Aggregate:
    """One metric's latest point (greatest step, then timestamp, then value), minimum, maximum, NaN, count."""
    total = sum(values)
    has_nan = total != total and any(v != v for v in values)  # (inf - inf is NaN too)
    numbers = [v for v in values if v == v] if has_nan else values
    top = max(steps)
    if (tied := steps.count(top)) == 1:
        at = steps.index(top)
        latest_ms, latest_value = times[at], values[at]
    else:
        if tied == len(steps):
            tied_times, tied_values = times, values
        else:
            tied_times = [t for t, step in zip(times, steps, strict=True) if step == top]
            tied_values = [v for v, step in zip(values, steps, strict=True) if step == top]
        latest_ms = max(tied_times)
        if tied_times.count(latest_ms) != len(tied_times):
            tied_values = [v for v, t in zip(tied_values, tied_times, strict=True) if t == latest_ms]
        latest_value = max(tied_values, key=_rank)  # the first of equals, as MLflow keeps the first
    return Aggregate(
        top,
        latest_ms,
        latest_value,
        min(numbers) if numbers else math.inf,
        max(numbers) if numbers else -math.inf,
        has_nan,
        len(values),
    )


@cache
def _element_format(code: str) -> struct.Struct:
    return struct.Struct(">i" + code)


def _element(value: float, code: str) -> bytes:
    return _element_format(code).pack(8, value)


@cache
def _array_format(count: int, code: str) -> struct.Struct:
    """A field holding a one-dimensional array of `count` eight-byte elements, in PostgreSQL's binary format."""
    return struct.Struct(">iiiiii" + ("i" + code) * count)


def _array(items: Sequence[float], oid: int, code: str) -> bytes:
    count = len(items)
    if items.count(items[0]) == count:  # one value throughout (a call's step or timestamp, often)
        return _fixed_array(_element(items[0], code), count, oid)
    return _varied_array(items, oid, code)


def _fixed_array(element: bytes, count: int, oid: int) -> bytes:
    """The array of `count` times one packed element (`_element`)."""
    return _array_format(0, "q").pack(20 + 12 * count, 1, 0, oid, count, 1) + element * count


def _varied_array(items: Sequence[float], oid: int, code: str) -> bytes:
    count = len(items)
    interleaved: list[float] = [8] * (2 * count)  # each element: its length, then its value
    interleaved[1::2] = items
    return _array_format(count, code).pack(20 + 12 * count, 1, 0, oid, count, 1, *interleaved)


# The aggregates of a batch, one row per run and metric, merged as LOG_METRICS merges them, in the same order
# (run, then metric name, so that concurrent batches take their row locks in one order); the runs touched after,
# those not touched in the last TOUCH_SECONDS: a touch is an update that is not HOT (`update_time` is indexed,
# with eleven other indexes of ix_runs), which a run logged batch after batch paid on every batch.
TOUCH_SECONDS = 1
UPSERT_LATEST = f"""
WITH touched AS (
    UPDATE ix_runs SET update_time = now()
    WHERE run_key = ANY($1::int8[]) AND update_time < now() - interval '{TOUCH_SECONDS} second'
)
INSERT INTO ix_metric_latest AS t
    (run_key, metric_name, latest_value, latest_step, latest_time, min_value, max_value, has_nan, points)
SELECT k, n, v, s, 'epoch'::timestamptz + ms * interval '1 millisecond', lo, hi, nan, c
FROM unnest($2::int8[], $3::text[], $4::float8[], $5::int8[], $6::int8[], $7::float8[], $8::float8[],
            $9::bool[], $10::int8[]) AS u(k, n, v, s, ms, lo, hi, nan, c)
ORDER BY k, n
{MERGE_METRIC_AGGREGATES}"""  # noqa: S608 (constants)


class PointsRefused(Exception):
    """PostgreSQL refused a batch before its commit: nothing of it was written, and each call may be written alone."""


# The batch goes to PostgreSQL as one simple-query message, the COPY of its chunk rows followed by the upsert of its
# aggregates (a statement prepared once per connection, its arguments as literals): PostgreSQL runs the statements
# of one such message as one transaction, so nothing of a refused batch stays, and the batch costs one round trip
# where BEGIN, the COPY, the upsert and COMMIT took four (asyncpg sends a COPY's data without waiting for the
# server's go-ahead).
UPSERT_PREPARED = f"fedgate_ix_latest_{zlib.crc32(UPSERT_LATEST.encode()):08x}"  # another text, another name
PREPARE_UPSERT = (
    f"PREPARE {UPSERT_PREPARED} (int8[], int8[], text[], float8[], int8[], int8[], float8[], float8[], bool[], int8[])"
    f" AS {UPSERT_LATEST}"
)
COPY_ROWS = f"COPY ix_metrics ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT binary)"


def literal_floats(values: Sequence[float]) -> str:
    """An array literal of float8s, each exact (repr round-trips through PostgreSQL's float8 input)."""
    text = ",".join(map(repr, values))
    if "n" in text:  # nan or inf (no finite number's repr has an n): spelled as PostgreSQL spells them
        text = ",".join(map(_float_text, values))
    return "'{" + text + "}'"


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def literal_integers(values: Iterable[int]) -> str:
    return "'{" + ",".join(map(str, values)) + "}'"


def literal_texts(values: Iterable[str]) -> str:
    """An array literal of strings (any but NUL): each element double-quoted with its backslashes and double quotes
    escaped for the array's parser, the whole in an escape string literal with its backslashes and quotes escaped,
    which reads the same whatever `standard_conforming_strings` says."""
    array = "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
    return "E'" + array.replace("\\", "\\\\").replace("'", "''") + "'"


def batch_statement(calls: Sequence[PointRows]) -> str:
    """The COPY of `calls`' chunk rows and the upsert of their aggregates, merged per run and metric (as the upsert
    would merge them) and in run and name order (concurrent batches take their row locks in one order)."""
    merged: dict[tuple[int, str], Aggregate] = {}
    for call in calls:
        for name, figures in call.aggregates.items():
            key = (call.run_key, name)
            merged[key] = merge(merged[key], figures) if key in merged else figures
    keys = sorted(merged)
    rows = [merged[key] for key in keys]
    arguments = (
        literal_integers(sorted({call.run_key for call in calls})),
        literal_integers([run_key for run_key, _ in keys]),
        literal_texts([name for _, name in keys]),
        literal_floats([a.latest_value for a in rows]),
        literal_integers([a.latest_step for a in rows]),
        literal_integers([a.latest_ms for a in rows]),
        literal_floats([a.low for a in rows]),
        literal_floats([a.high for a in rows]),
        "'{" + ",".join("t" if a.has_nan else "f" for a in rows) + "}'",
        literal_integers([a.points for a in rows]),
    )
    return f"{COPY_ROWS};\nEXECUTE {UPSERT_PREPARED} ({', '.join(arguments)})"


async def write_rows(conn: asyncpg.Connection, calls: list[PointRows]) -> None:
    """The chunk rows and aggregates of `calls` in one transaction on `conn` (PointsRefused: PostgreSQL refused it,
    and nothing of it was written; any other error leaves the outcome unknown)."""
    data = bytearray(COPY_HEADER)
    for call in calls:
        data += call.copy
    data += COPY_TRAILER
    statement = batch_statement(calls)
    try:
        try:
            # A COPY in a message of several statements: asyncpg's public copy_to_table builds its own statement.
            await conn._copy_in(statement, data, None)
        except asyncpg.InvalidSQLStatementNameError:  # the upsert not prepared on this connection yet: nothing written
            await conn.execute(PREPARE_UPSERT)
            await conn._copy_in(statement, data, None)
    except (asyncpg.PostgresError, asyncpg.DataError) as exc:  # refused by the server (the whole message rolled back)
        raise PointsRefused(str(exc)) from exc


class PointWriter:
    """Writes calls' `PointRows`: the calls that arrive while a batch is being written go together in the next one.

    `write` returns once the batch holding the call committed; PointsRefused when PostgreSQL refused that batch
    (the caller may write its points alone); any other error leaves the outcome unknown.
    """

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]], max_points: int = MAX_BATCH_POINTS) -> None:
        self._pool = pool  # the pool "derived" (asynchronous commit)
        self._max_points = max_points
        self._pending: list[tuple[PointRows, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        self._writing: asyncio.Task[None] | None = None
        self.calls = self.batches = 0  # written so far

    async def write(self, rows: PointRows) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._arrived.set()
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_pending())
        await future

    async def _write_pending(self) -> None:
        """Batches, one after the other, for as long as calls keep coming (no pause of HOLD_SECONDS), on one
        connection: a burst costs one connection reset (when the connection goes back to the pool), not one per
        batch."""
        while self._pending:
            try:
                pool = await self._pool()
                conn = await pool.acquire()
            except Exception as exc:
                self._fail(self._take(), exc)
                continue
            batch: list[tuple[PointRows, asyncio.Future[None]]] = []
            try:
                while self._pending or await self._another_call():
                    batch = self._take()
                    try:
                        await write_rows(conn, [rows for rows, _ in batch])
                    except Exception as exc:
                        self._fail(batch, exc)
                        if not isinstance(exc, PointsRefused):
                            break  # the connection may be broken: the next batch takes another
                        continue
                    self.calls += len(batch)
                    self.batches += 1
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
            except BaseException:  # cancelled (shutting down): the outcome is unknown
                self._fail([*batch, *self._pending], ConnectionError("the index's point writer stopped"))
                self._pending = []
                raise
            finally:
                await pool.release(conn)

    async def _another_call(self) -> bool:
        """Whether a call arrives within HOLD_SECONDS."""
        self._arrived.clear()
        try:
            async with asyncio.timeout(HOLD_SECONDS):
                await self._arrived.wait()
        except TimeoutError:
            return bool(self._pending)
        return True

    def _take(self) -> list[tuple[PointRows, asyncio.Future[None]]]:
        """The calls of the next batch: all waiting, up to `max_points` points (at least one call)."""
        size, taken = 0, 0
        for rows, _ in self._pending:
            if taken and size + rows.points > self._max_points:
                break
            size += rows.points
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return batch

    @staticmethod
    def _fail(batch: list[tuple[PointRows, asyncio.Future[None]]], exc: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)
