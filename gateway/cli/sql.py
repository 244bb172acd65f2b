"""`fedgate sql "SELECT ..."`: run a statement through the gateway's SQL API and print the rows as a table.

The token is `$FEDGATE_TOKEN` if set, else `$FEDGATE_ADMIN_TOKEN`; the gateway is `--url` (or `$FEDGATE_URL`).
A statement still running when the request's wait ends is polled until it finishes; Ctrl-C cancels it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from gateway.cli.client import CommandError, admin_call, table

STATEMENTS = "/api/2.0/sql/statements"
PARAM_RE = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<type>[A-Za-z_]+(?:\(\d+,\s*\d+\))?))?=(?P<value>.*)$", re.S
)
DONE = ("SUCCEEDED", "FAILED", "CANCELED", "CLOSED")
POLL_SECONDS = 0.5


def parameter(text: str) -> dict[str, str]:
    """`name=value` or `name:TYPE=value` as a statement parameter."""
    match = PARAM_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE or NAME:TYPE=VALUE")
    return {"name": match["name"], "value": match["value"], "type": (match["type"] or "STRING").upper()}


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    # Less than the HTTP client's own 30 s timeout; a longer statement is polled.
    body: dict[str, Any] = {"statement": args.statement, "wait_timeout": "20s", "on_wait_timeout": "CONTINUE"}
    if args.param:
        body["parameters"] = list(args.param)
    for key in ("catalog", "schema", "row_limit"):
        value = getattr(args, key, None)
        if value is not None:
            body[key] = value
    return body


def cmd_sql(args: argparse.Namespace) -> int:
    return wait_and_show(args, admin_call(args, "POST", STATEMENTS, request_body(args)))


def wait_and_show(args: argparse.Namespace, answer: Any) -> int:
    """Poll a statement the API answered with until it ends (Ctrl-C cancels it), then print every chunk's rows."""
    statement_id = str(answer["statement_id"])
    try:
        while answer["status"]["state"] not in DONE:
            time.sleep(POLL_SECONDS)
            answer = admin_call(args, "GET", f"{STATEMENTS}/{statement_id}")
    except KeyboardInterrupt:
        admin_call(args, "POST", f"{STATEMENTS}/{statement_id}/cancel", {})
        print(f"cancelled statement {statement_id}", file=sys.stderr)
        return 130
    status = answer["status"]
    if status["state"] != "SUCCEEDED":
        error = status.get("error") or {}
        raise CommandError(f"statement {status['state'].lower()}: {error.get('message', 'no reason given')}")
    manifest = answer.get("manifest") or {}
    data = list((answer.get("result") or {}).get("data_array") or [])
    for index in range(1, int(manifest.get("total_chunk_count") or 1)):
        chunk = admin_call(args, "GET", f"{STATEMENTS}/{statement_id}/result/chunks/{index}")
        data.extend(chunk.get("data_array") or [])
    columns = [column["name"] for column in (manifest.get("schema") or {}).get("columns") or []]
    if args.json:
        print(json.dumps({"statement_id": statement_id, "columns": columns, "rows": data}, indent=2))
        return 0
    show(columns, data, truncated=bool(manifest.get("truncated")))
    return 0


def show(columns: list[str], data: list[list[str | None]], *, truncated: bool = False) -> None:
    if not columns:
        print("OK")
        return
    table(columns, [["NULL" if value is None else value for value in row] for row in data])
    note = " (truncated: the result was longer than the row limit)" if truncated else ""
    print(f"({len(data)} row{'' if len(data) == 1 else 's'}){note}")


def add_sql_command(commands: Any, url: str) -> None:
    """Register `fedgate sql` on `fedgate`'s sub-command parsers; `url` is the default gateway."""
    parser = commands.add_parser(
        "sql",
        help="run SQL over system.mlflow (SELECT, SHOW GRANTS, GRANT, REVOKE, CREATE/DROP VIEW)",
        description="Run one statement through the gateway's SQL statement API and print the result.",
        epilog='example: fedgate sql "SELECT run_name, status FROM system.mlflow.runs_latest '
        'WHERE run_id = :run_id" --param run_id=0a1b...',
    )
    parser.add_argument("statement", help="the statement (Databricks SQL)")
    parser.add_argument(
        "--param",
        action="append",
        type=parameter,
        metavar="NAME[:TYPE]=VALUE",
        help="a value for the marker :NAME (type STRING unless given, e.g. n:INT=5); repeatable",
    )
    parser.add_argument("--catalog", help="the catalog one-part and two-part table names are in")
    parser.add_argument("--schema", help="the schema one-part table names are in")
    parser.add_argument("--row-limit", type=int, dest="row_limit", help="at most this many rows")
    parser.add_argument("--json", action="store_true", help="print columns and rows as JSON")
    parser.add_argument("--url", default=url, help="the gateway (default: $FEDGATE_URL or %(default)s)")
    parser.set_defaults(func=cmd_sql)
