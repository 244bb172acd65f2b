"""Result rows as Databricks answers them: column types by Databricks name, every value a string (or null).

Doubles print as Java prints them ("0.5", "1.0", "1.0E20", "NaN", "Infinity"), timestamps as ISO-8601 UTC with
milliseconds, maps, arrays and structs as compact JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from gateway.sql.schemas import ChunkInfo, ColumnInfo

CHUNK_ROWS = 1000  # rows per result chunk

# PostgreSQL type name → (Databricks type_name, type_text).
SCALAR_TYPES: dict[str, tuple[str, str]] = {
    "text": ("STRING", "STRING"),
    "varchar": ("STRING", "STRING"),
    "bpchar": ("STRING", "STRING"),
    "name": ("STRING", "STRING"),
    "char": ("STRING", "STRING"),
    "int2": ("SHORT", "SMALLINT"),
    "int4": ("INT", "INT"),
    "int8": ("LONG", "BIGINT"),
    "float4": ("FLOAT", "FLOAT"),
    "float8": ("DOUBLE", "DOUBLE"),
    "numeric": ("DECIMAL", "DECIMAL(38,18)"),
    "bool": ("BOOLEAN", "BOOLEAN"),
    "date": ("DATE", "DATE"),
    "timestamptz": ("TIMESTAMP", "TIMESTAMP"),
    "timestamp": ("TIMESTAMP", "TIMESTAMP_NTZ"),
    "interval": ("INTERVAL", "INTERVAL"),
    # jsonb only ever holds the map<string,string> columns params and tags
    "jsonb": ("MAP", "MAP<STRING, STRING>"),
    "json": ("MAP", "MAP<STRING, STRING>"),
}
METRIC_AGGREGATE = "STRUCT<metric_name: STRING, latest_value: DOUBLE, max_value: DOUBLE, min_value: DOUBLE>"


@dataclass(frozen=True)
class PgColumn:
    name: str
    type_name: str  # PostgreSQL's, e.g. float8, _text, metric_aggregate
    kind: str  # scalar | array | composite


def column_info(position: int, column: PgColumn) -> ColumnInfo:
    type_name, type_text = databricks_type(column)
    return ColumnInfo(name=column.name, position=position, type_name=type_name, type_text=type_text)


def databricks_type(column: PgColumn) -> tuple[str, str]:
    name = column.type_name.removesuffix("[]")
    is_array = column.kind == "array" or column.type_name.endswith("[]") or name.startswith("_")
    name = name.removeprefix("_") if is_array else name
    if name == "metric_aggregate":
        element = ("STRUCT", METRIC_AGGREGATE)
    else:
        element = SCALAR_TYPES.get(name, ("STRING", "STRING"))
    if is_array:
        return "ARRAY", f"ARRAY<{element[1]}>"
    return element


def cell(value: Any) -> str | None:
    """One value as the string Databricks puts in `data_array`."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time | timedelta):
        return str(value)
    return json.dumps(_json_value(value), separators=(",", ":"), ensure_ascii=False)


def rows(records: Sequence[Sequence[Any]], columns: Sequence[PgColumn]) -> list[list[str | None]]:
    """Records as `data_array` rows; jsonb arrives as text and is re-written compactly, as Databricks writes maps."""
    maps = {index for index, column in enumerate(columns) if column.type_name in ("jsonb", "json")}
    return [
        [
            _compact_json(value) if index in maps and isinstance(value, str) else cell(value)
            for index, value in enumerate(record)
        ]
        for record in records
    ]


def chunks(total: int) -> list[ChunkInfo]:
    """Chunk boundaries of a result of `total` rows; an empty result still has one (empty) chunk."""
    if total == 0:
        return [ChunkInfo(chunk_index=0, row_offset=0, row_count=0)]
    return [
        ChunkInfo(chunk_index=index, row_offset=offset, row_count=min(CHUNK_ROWS, total - offset))
        for index, offset in enumerate(range(0, total, CHUNK_ROWS))
    ]


def java_double(value: float) -> str:
    """A double as Java's Double.toString writes it, which is what Databricks answers."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    text = repr(value)  # the shortest digits that read back as the same double, as Java picks them
    if 1e-3 <= abs(value) < 1e7:
        return text  # plain notation in this range, always with a '.'
    shortest = Decimal(text)
    digits = "".join(map(str, shortest.as_tuple().digits)).rstrip("0") or "0"
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{shortest.adjusted()}"


def timestamp(value: datetime) -> str:
    moment = value.astimezone(UTC) if value.tzinfo is not None else value
    # The year in four digits, as Databricks writes it (strftime writes year 99 as "99").
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _decimal(value: Decimal) -> str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    return format(value, "f")


def _json_value(value: Any) -> Any:
    """Nested values (arrays, structs) for JSON text: numbers stay numbers, non-finite doubles become strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else java_double(value)
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else _decimal(value)
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [_json_value(item) for item in value]
    return str(value)


def _compact_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text
