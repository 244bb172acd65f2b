"""`fedgate queries`: saved SQL queries (list, show, create, run, share, delete) over `/api/2.0/sql/queries`.

The token is `$FEDGATE_TOKEN` if set, else `$FEDGATE_ADMIN_TOKEN`; the gateway is `--url` (or `$FEDGATE_URL`).
`run` runs the query's text with the grants of the token's principal (never the owner's), waits for it, and
prints the rows as `fedgate sql` does; Ctrl-C cancels the statement.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from gateway.cli.client import Call, CommandError, admin_call, group, leaf, print_text, table
from gateway.cli.sql import parameter, wait_and_show

QUERIES = "/api/2.0/sql/queries"
PERMISSIONS = "/api/2.0/permissions/queries"
PRINCIPAL_FIELDS = {"user": "user_name", "group": "group_name", "service-principal": "service_principal_name"}


def _path(query_id: str) -> str:
    return f"{QUERIES}/{quote(query_id, safe='')}"


def plan_list(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", QUERIES, query={"page_size": "1000"})]


def show_list(args: argparse.Namespace, answer: Any) -> None:
    queries = answer.get("results") or []
    if not queries:
        print("no queries")
        return
    table(
        ("ID", "NAME", "OWNER", "YOUR LEVEL", "UPDATED"),
        (
            (
                q.get("id"),
                q.get("display_name"),
                q.get("owner_user_name"),
                q.get("permission_level"),
                q.get("update_time"),
            )
            for q in queries
        ),
    )


def plan_show(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", _path(args.id))]


def show_query(args: argparse.Namespace, answer: Any) -> None:
    for key in ("id", "display_name", "owner_user_name", "permission_level", "create_time", "update_time"):
        print(f"{key}: {answer.get(key)}")
    if answer.get("description"):
        print(f"description: {answer['description']}")
    print()
    print(answer.get("query_text", ""))


def plan_create(args: argparse.Namespace) -> list[Call]:
    text = sys.stdin.read() if args.text == "-" else args.text
    query: dict[str, Any] = {"display_name": args.name, "query_text": text}
    if args.description:
        query["description"] = args.description
    for key in ("catalog", "schema"):
        if getattr(args, key):
            query[key] = getattr(args, key)
    return [Call("POST", QUERIES, body={"query": query})]


def plan_share(args: argparse.Namespace) -> list[Call]:
    entries = []
    for item in args.entry:
        kind, _, rest = item.partition(":")
        name, _, level = rest.rpartition("=")
        if kind not in PRINCIPAL_FIELDS or not name or not level:
            raise CommandError(f"{item!r} is not KIND:NAME=LEVEL (KIND user, group or service-principal)")
        entries.append({PRINCIPAL_FIELDS[kind]: name, "permission_level": level.upper()})
    method = "PUT" if args.replace else "PATCH"
    return [Call(method, f"{PERMISSIONS}/{quote(args.id, safe='')}", body={"access_control_list": entries})]


def show_acl(args: argparse.Namespace, answer: Any) -> None:
    rows = []
    for entry in answer.get("access_control_list") or []:
        for field, kind in (("user_name", "user"), ("group_name", "group"), ("service_principal_name", "sp")):
            if entry.get(field):
                levels = [p.get("permission_level") for p in entry.get("all_permissions") or []]
                rows.append((kind, entry[field], levels))
    table(("KIND", "NAME", "LEVEL"), rows)


def plan_delete(args: argparse.Namespace) -> list[Call]:
    return [Call("DELETE", _path(args.id))]


def cmd_run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"wait_timeout": "20s", "on_wait_timeout": "CONTINUE"}
    if args.param:
        body["parameters"] = list(args.param)
    if args.row_limit is not None:
        body["row_limit"] = args.row_limit
    answer = admin_call(args, "POST", f"{_path(args.id)}/run", body)
    return wait_and_show(args, answer)


def add_queries_commands(commands: Any, url: str) -> None:
    epilog = (
        "examples:\n"
        "  fedgate queries create --name 'runs per status' --text \"$(cat runs.sql)\"\n"
        "  fedgate queries share 6f1c... group:analysts=CAN_RUN user:ann@example.com=CAN_MANAGE\n"
        "  fedgate queries run 6f1c... --param day:DATE=2024-06-27\n"
        "the REST API is /api/2.0/sql/queries (docs/sql.md, Saved queries)"
    )
    actions = group(commands, "queries", "saved SQL queries over the system tables", url, epilog)
    leaf(actions, "list", "the queries you can see", plan_list, show_list, as_json=True)
    show = leaf(actions, "show", "a query's text and details", plan_show, show_query, as_json=True)
    show.add_argument("id")
    create = leaf(
        actions, "create", "save a query (yours; private until shared)", plan_create,
        print_text("created query {answer[id]}"), as_json=True, epilog=epilog,
    )  # fmt: skip
    create.add_argument("--name", required=True, help="the query's display name")
    create.add_argument("--text", required=True, help="the statement (Databricks SQL); '-' reads it from stdin")
    create.add_argument("--description")
    create.add_argument("--catalog", help="the catalog one-part and two-part table names are in")
    create.add_argument("--schema", help="the schema one-part table names are in")
    share = leaf(
        actions, "share", "give principals CAN_VIEW, CAN_RUN or CAN_MANAGE", plan_share, show_acl, as_json=True
    )
    share.add_argument("id")
    share.add_argument("entry", nargs="*", metavar="KIND:NAME=LEVEL", help="e.g. group:analysts=CAN_RUN")
    share.add_argument("--replace", action="store_true", help="these entries replace every grant (none: unshare)")
    remove = leaf(
        actions, "delete", "delete a query and its grants", plan_delete, print_text("deleted query {args.id}")
    )
    remove.add_argument("id")
    run = actions.add_parser(
        "run",
        help="run a query with your own grants and print the rows",
        description="Run a saved query (CAN_RUN) as yourself: your grants and dynamic views apply.",
    )
    run.add_argument("id")
    run.add_argument("--param", action="append", type=parameter, metavar="NAME[:TYPE]=VALUE", help="repeatable")
    run.add_argument("--row-limit", type=int, dest="row_limit", help="at most this many rows")
    run.add_argument("--json", action="store_true", help="print columns and rows as JSON")
    run.add_argument("--url", default=argparse.SUPPRESS, help="the gateway (also accepted before ACTION)")
    run.set_defaults(func=cmd_run)
