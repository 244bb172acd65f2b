"""`fedgate secrets create-scope|delete-scope|list-scopes|put|delete|list|put-acl|get-acl|list-acls|delete-acl`.

The secret-scopes API (docs/secrets.md) from a shell, with the plan + show pattern of gateway/cli/client.py. A
value is never taken from the command line, where `ps` and the shell history would show it: `put` reads it from
standard input (a hidden prompt on a terminal; piped bytes exactly as they come) or from `--value-file`, and
sends it base64-encoded as `bytes_value`, so any bytes arrive unchanged. No command prints a value.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.client import Call, leaf, print_text, table

SECRETS = "/api/2.0/secrets"
PERMISSIONS = ("READ", "WRITE", "MANAGE")


def _scope_call(method: str, path: str, args: argparse.Namespace, **body: Any) -> list[Call]:
    if method == "GET":
        return [Call(method, f"{SECRETS}/{path}", query={"scope": args.scope, **body}, workspace=args.workspace)]
    return [Call(method, f"{SECRETS}/{path}", {"scope": args.scope, **body}, workspace=args.workspace)]


def plan_create_scope(args: argparse.Namespace) -> list[Call]:
    body = {"initial_manage_principal": args.initial_manage_principal} if args.initial_manage_principal else {}
    return _scope_call("POST", "scopes/create", args, **body)


def plan_delete_scope(args: argparse.Namespace) -> list[Call]:
    return _scope_call("POST", "scopes/delete", args)


def plan_list_scopes(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", f"{SECRETS}/scopes/list", workspace=args.workspace)]


def plan_put(args: argparse.Namespace) -> list[Call]:
    value = read_value(args.value_file)
    return _scope_call("POST", "put", args, key=args.key, bytes_value=base64.b64encode(value).decode("ascii"))


def plan_delete(args: argparse.Namespace) -> list[Call]:
    return _scope_call("POST", "delete", args, key=args.key)


def plan_list(args: argparse.Namespace) -> list[Call]:
    return _scope_call("GET", "list", args)


def plan_put_acl(args: argparse.Namespace) -> list[Call]:
    return _scope_call("POST", "acls/put", args, principal=args.principal, permission=args.permission)


def plan_get_acl(args: argparse.Namespace) -> list[Call]:
    return _scope_call("GET", "acls/get", args, principal=args.principal)


def plan_list_acls(args: argparse.Namespace) -> list[Call]:
    return _scope_call("GET", "acls/list", args)


def plan_delete_acl(args: argparse.Namespace) -> list[Call]:
    return _scope_call("POST", "acls/delete", args, principal=args.principal)


def read_value(value_file: str | None) -> bytes:
    """The value to store: the file's bytes, else standard input's (a prompt that does not echo on a terminal)."""
    if value_file is not None:
        return Path(value_file).read_bytes()
    if sys.stdin.isatty():
        return getpass.getpass("value (not shown): ").encode()
    return sys.stdin.buffer.read()


def _when(milliseconds: Any) -> str:
    if not isinstance(milliseconds, int) or milliseconds <= 0:
        return ""
    return datetime.fromtimestamp(milliseconds / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def show_scopes(args: argparse.Namespace, answer: Any) -> None:
    table(("SCOPE", "BACKEND"), ((s.get("name"), s.get("backend_type")) for s in (answer or {}).get("scopes") or []))


def show_secrets(args: argparse.Namespace, answer: Any) -> None:
    rows = ((s.get("key"), _when(s.get("last_updated_timestamp"))) for s in (answer or {}).get("secrets") or [])
    table(("KEY", "LAST UPDATED"), rows)


def show_acls(args: argparse.Namespace, answer: Any) -> None:
    """`list-acls` answers `{items: [...]}`, `get-acl` one item."""
    items = ((answer or {}).get("items") or []) if args.action == "list-acls" else [answer]
    table(("PRINCIPAL", "PERMISSION"), ((i.get("principal"), i.get("permission")) for i in items))


def _permission(text: str) -> str:
    upper = text.strip().upper()
    if upper not in PERMISSIONS:
        raise argparse.ArgumentTypeError(f"expected READ, WRITE or MANAGE, got {text!r}")
    return upper


class _RefuseValueOnCommandLine(argparse.Action):
    """`--string-value` / `--bytes-value` of the Databricks CLI: refused, since argv is visible to every user."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        parser.error(
            f"{option} is not accepted: a value on the command line shows in `ps` and the shell history. "
            "Pipe it on standard input (or type it at the prompt), or use --value-file PATH."
        )


def add_secret_scope_commands(actions: Any) -> None:
    """Register the secret-scope commands beside `fedgate secrets new-key` and `rotate-key`."""
    epilog = (
        "examples:\n"
        "  fedgate secrets create-scope db-creds --workspace team-a\n"
        "  fedgate secrets put db-creds password --workspace team-a < password.txt\n"
        "  fedgate secrets put-acl db-creds ml-engineers READ --workspace team-a\n"
        "  fedgate secrets list db-creds --workspace team-a\n"
        "permissions: READ < WRITE < MANAGE (the creator of a scope gets MANAGE)"
    )

    def command(name: str, text: str, plan: Any, show: Any, *, as_json: bool = False) -> argparse.ArgumentParser:
        parser = leaf(actions, name, text, plan, show, as_json=as_json, epilog=epilog)
        parser.add_argument(
            "--workspace",
            default=os.environ.get("MLFLOW_WORKSPACE"),
            help="the workspace of the scope (default: $MLFLOW_WORKSPACE, else the gateway's default workspace)",
        )
        if name != "list-scopes":
            parser.add_argument("scope", help="the scope's name: letters, digits, '.', '_' or '-' (at most 128)")
        return parser

    create = command(
        "create-scope",
        "create a secret scope (you get MANAGE on it)",
        plan_create_scope,
        print_text("created scope {args.scope}"),
    )
    create.add_argument(
        "--initial-manage-principal",
        metavar="PRINCIPAL",
        help="also give MANAGE to this user, group or service principal ('users': every user of the workspace)",
    )
    command(
        "delete-scope",
        "delete a scope with its secrets and ACL (MANAGE)",
        plan_delete_scope,
        print_text("deleted scope {args.scope} with its secrets and ACL"),
    )
    command("list-scopes", "the scopes you hold a permission on", plan_list_scopes, show_scopes, as_json=True)

    put = command(
        "put",
        "set a secret (WRITE); the value comes from standard input or --value-file, never from the command line",
        plan_put,
        print_text("set secret {args.key} in scope {args.scope}"),
    )
    put.add_argument("key", help="the secret's name: letters, digits, '.', '_' or '-' (at most 128)")
    put.add_argument("--value-file", metavar="PATH", help="read the value from this file, byte for byte")
    for refused in ("--string-value", "--bytes-value"):
        put.add_argument(refused, action=_RefuseValueOnCommandLine, help=argparse.SUPPRESS)
    delete = command(
        "delete",
        "delete a secret (WRITE)",
        plan_delete,
        print_text("deleted secret {args.key} from scope {args.scope}"),
    )
    delete.add_argument("key")
    command(
        "list",
        "the secrets of a scope: names and update times, never values (READ)",
        plan_list,
        show_secrets,
        as_json=True,
    )

    put_acl = command(
        "put-acl",
        "give a user, group or service principal READ, WRITE or MANAGE on a scope, replacing its entry (MANAGE)",
        plan_put_acl,
        print_text("{args.principal} has {args.permission} on scope {args.scope}"),
    )
    put_acl.add_argument("principal", help="a user name, group name or service principal's application id")
    put_acl.add_argument("permission", type=_permission, metavar="READ|WRITE|MANAGE")
    get_acl = command("get-acl", "a principal's entry in a scope's ACL (MANAGE)", plan_get_acl, show_acls, as_json=True)
    get_acl.add_argument("principal")
    command("list-acls", "the ACL of a scope (MANAGE)", plan_list_acls, show_acls, as_json=True)
    delete_acl = command(
        "delete-acl",
        "remove a principal's entry from a scope's ACL (MANAGE)",
        plan_delete_acl,
        print_text("removed the entry of {args.principal} from scope {args.scope}"),
    )
    delete_acl.add_argument("principal")
