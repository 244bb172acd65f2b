"""`fedgate users|service-principals|groups|tokens|permissions|grants|audit`: the access-control API from a shell.

Every command is two pure halves and one shared executor: a *plan* turns the parsed arguments into the HTTP
calls to make (a list of `Call`), a *show* function prints the last answer; `run` sends the calls in between.
The token is `$FEDGATE_TOKEN` if set, else `$FEDGATE_ADMIN_TOKEN`; the gateway is `--url` (or `$FEDGATE_URL`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from gateway.cli.client import Call, Plan, Show, group, leaf, print_text, run, table

SCIM = "/api/2.0/preview/scim/v2"
TOKENS = "/api/2.0/token"
TOKEN_MANAGEMENT = "/api/2.0/token-management"
PERMISSIONS = "/api/2.0/permissions"
UNITY_CATALOG = "/api/2.1/unity-catalog"
AUDIT = "/api/2.0/fedgate/audit-log"
MODEL_LOOKUP = "/api/2.0/mlflow/databricks/registered-models/get"
ADMIN_ROLE = "account_admin"
OBJECT_KINDS = {"experiment": "experiments", "registered-model": "registered-models", "workspace": "workspaces"}
ACL_FIELDS = (("user_name", "user"), ("group_name", "group"), ("service_principal_name", "service principal"))
SECURABLES = ("catalog", "schema", "table")
MODEL_ID_RE = re.compile(r"[0-9a-f]{32}")


def _when(milliseconds: Any) -> str:
    if not isinstance(milliseconds, int) or milliseconds < 0:
        return "never"
    return datetime.fromtimestamp(milliseconds / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _times(token_info: dict[str, Any]) -> tuple[str, str]:
    return _when(token_info.get("creation_time")), _when(token_info.get("expiry_time"))


def _names(refs: Any) -> list[str]:
    return [str(ref.get("display") or ref.get("value")) for ref in refs or []]


def _is_admin(resource: dict[str, Any]) -> bool:
    return any(role.get("value") == ADMIN_ROLE for role in resource.get("roles") or [])


def _query(**values: object) -> dict[str, str] | None:
    kept = {key: str(value) for key, value in values.items() if value is not None}
    return kept or None


def _segment(value: str) -> str:
    return quote(str(value), safe="")


# -- users, service principals, groups (SCIM) -------------------------------------------------------------------


def _scim_list(resource: str) -> Plan:
    return lambda args: [Call("GET", f"{SCIM}/{resource}", query=_query(filter=args.filter))]


def _scim_one(method: str, resource: str, body: dict[str, Any] | None = None) -> Plan:
    return lambda args: [Call(method, f"{SCIM}/{resource}/{_segment(args.id)}", body)]


def _active(active: bool) -> dict[str, Any]:
    return {"Operations": [{"op": "replace", "value": {"active": active}}]}


def plan_user_create(args: argparse.Namespace) -> list[Call]:
    body: dict[str, Any] = {"userName": args.name}
    if args.display_name:
        body["displayName"] = args.display_name
    if args.admin:
        body["roles"] = [{"value": ADMIN_ROLE}]
    return [Call("POST", f"{SCIM}/Users", body)]


def show_users(args: argparse.Namespace, answer: Any) -> None:
    table(
        ("ID", "USER NAME", "DISPLAY NAME", "ACTIVE", "ADMIN", "GROUPS"),
        (
            (u["id"], u.get("userName"), u.get("displayName"), u.get("active"), _is_admin(u), _names(u.get("groups")))
            for u in answer.get("Resources", [])
        ),
    )


def show_principal(args: argparse.Namespace, answer: Any) -> None:
    rows: list[tuple[str, object]] = [("id", answer.get("id"))]
    for key, label in (("userName", "user name"), ("applicationId", "application id"), ("displayName", "name")):
        if key in answer:
            rows.append((label, answer[key]))
    if "active" in answer:
        rows += [("active", answer["active"]), ("account admin", _is_admin(answer))]
    if "members" in answer:
        rows.append(("members", [f"{m.get('display')} ({m.get('value')})" for m in answer["members"]]))
    rows.append(("groups", [f"{g.get('display')} ({g.get('value')})" for g in answer.get("groups") or []]))
    table(None, ((f"{label}:", value) for label, value in rows))


def plan_sp_create(args: argparse.Namespace) -> list[Call]:
    return [Call("POST", f"{SCIM}/ServicePrincipals", {"displayName": args.display_name})]


def show_service_principals(args: argparse.Namespace, answer: Any) -> None:
    table(
        ("ID", "APPLICATION ID", "DISPLAY NAME", "ACTIVE", "ADMIN", "GROUPS"),
        (
            (
                p["id"],
                p.get("applicationId"),
                p.get("displayName"),
                p.get("active"),
                _is_admin(p),
                _names(p.get("groups")),
            )
            for p in answer.get("Resources", [])
        ),
    )


def plan_group_create(args: argparse.Namespace) -> list[Call]:
    members = [{"value": str(member)} for member in args.member or []]
    return [Call("POST", f"{SCIM}/Groups", {"displayName": args.name, "members": members})]


def plan_group_member(args: argparse.Namespace) -> list[Call]:
    if args.action == "add-member":
        operation = {"op": "add", "path": "members", "value": [{"value": str(args.member_id)}]}
    else:
        operation = {"op": "remove", "path": f'members[value eq "{args.member_id}"]'}
    return [Call("PATCH", f"{SCIM}/Groups/{_segment(args.group_id)}", {"Operations": [operation]})]


def show_groups(args: argparse.Namespace, answer: Any) -> None:
    table(
        ("ID", "NAME", "MEMBERS", "GROUPS"),
        (
            (g["id"], g.get("displayName"), _names(g.get("members")), _names(g.get("groups")))
            for g in answer["Resources"]
        ),
    )


def show_group_members(args: argparse.Namespace, answer: Any) -> None:
    done = "added" if args.action == "add-member" else "removed"
    print(f"{done} {args.member_id}; group {answer.get('displayName')} ({answer.get('id')}) members:")
    table(("ID", "NAME"), ((m.get("value"), m.get("display")) for m in answer.get("members") or []))


# -- tokens -----------------------------------------------------------------------------------------------------


def plan_token_create(args: argparse.Namespace) -> list[Call]:
    body: dict[str, Any] = {}
    if args.comment is not None:
        body["comment"] = args.comment
    if args.lifetime_seconds is not None:
        body["lifetime_seconds"] = args.lifetime_seconds
    if args.for_user:
        return [Call("POST", f"{TOKEN_MANAGEMENT}/on-behalf-of/tokens", {"user_name": args.for_user, **body})]
    if args.for_sp:
        return [Call("POST", f"{TOKEN_MANAGEMENT}/on-behalf-of/tokens", {"application_id": args.for_sp, **body})]
    return [Call("POST", f"{TOKENS}/create", body)]


def show_token_created(args: argparse.Namespace, answer: Any) -> None:
    info = answer.get("token_info") or {}
    owner = info.get("owner_name") or args.for_user or args.for_sp or "you"
    print(answer["token_value"])
    print(
        f"token {info.get('token_id')} for {owner}, expires {_when(info.get('expiry_time'))}. "
        "This is the only time its value is shown: store it now.",
        file=sys.stderr,
    )


def plan_token_list(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", f"{TOKEN_MANAGEMENT}/tokens" if args.all else f"{TOKENS}/list")]


def _creator(info: dict[str, Any]) -> str:
    """Who made a token: a name, or the id of a principal deleted since (the listing names nobody then)."""
    return str(info.get("created_by_username") or f"(deleted, id {info.get('created_by_id')})")


def show_tokens(args: argparse.Namespace, answer: Any) -> None:
    infos = answer.get("token_infos") or []
    if args.all:
        table(
            ("TOKEN ID", "OWNER", "CREATED BY", "CREATED", "EXPIRES", "COMMENT"),
            ((t["token_id"], t.get("owner_name"), _creator(t), *_times(t), t.get("comment")) for t in infos),
        )
        return
    table(
        ("TOKEN ID", "CREATED", "EXPIRES", "COMMENT"),
        ((t["token_id"], *_times(t), t.get("comment")) for t in infos),
    )


def plan_token_revoke(args: argparse.Namespace) -> list[Call]:
    if args.any:
        return [Call("DELETE", f"{TOKEN_MANAGEMENT}/tokens/{_segment(args.token_id)}")]
    return [Call("POST", f"{TOKENS}/delete", {"token_id": args.token_id})]


# -- object permissions -----------------------------------------------------------------------------------------


def _acl_entry(text: str) -> tuple[str, str]:
    name, equals, level = text.rpartition("=")
    if not equals or not name.strip() or not level.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=LEVEL (e.g. ml-team=CAN_READ), got {text!r}")
    return name.strip(), level.strip().upper()


def _acl(args: argparse.Namespace) -> list[dict[str, str]]:
    entries = []
    for option, key in (("user", "user_name"), ("group", "group_name"), ("sp", "service_principal_name")):
        for name, level in getattr(args, option, None) or []:
            entries.append({key: name, "permission_level": level})
    return entries


def plan_permissions(args: argparse.Namespace) -> list[Call]:
    method = {"get": "GET", "set": "PUT", "update": "PATCH"}[args.action]
    acl = _acl(args)
    body = None if args.action == "get" else {"access_control_list": acl}
    if args.action == "update" and not acl:
        raise ValueError("permissions update needs at least one --user, --group or --sp NAME=LEVEL")

    def on(object_id: str) -> list[Call]:
        path = f"{PERMISSIONS}/{OBJECT_KINDS[args.kind]}/{_segment(object_id)}"
        return [Call(method, path, body, workspace=None if args.kind == "workspace" else args.workspace)]

    if args.kind != "registered-model" or MODEL_ID_RE.fullmatch(args.id):
        return on(args.id)

    def on_model(answer: Any) -> list[Call]:
        return on(answer["registered_model_databricks"]["id"])

    # A model name: look its id up first (grants are keyed by the id, which survives renames).
    return [Call("GET", MODEL_LOOKUP, query={"name": args.id}, workspace=args.workspace, then=on_model)]


def show_permissions(args: argparse.Namespace, answer: Any) -> None:
    print(f"{answer.get('object_type')} {answer.get('object_id')}")
    rows = []
    for entry in answer.get("access_control_list") or []:
        key, kind = next(((k, kind) for k, kind in ACL_FIELDS if k in entry), ("", "?"))
        for permission in entry.get("all_permissions") or []:
            inherited = permission.get("inherited_from_object") if permission.get("inherited") else ""
            rows.append((entry.get(key), kind, permission.get("permission_level"), inherited))
    table(("PRINCIPAL", "TYPE", "PERMISSION", "INHERITED FROM"), rows)


# -- Unity Catalog grants ---------------------------------------------------------------------------------------


def plan_grants(args: argparse.Namespace) -> list[Call]:
    target = f"{args.securable}/{_segment(args.full_name)}"
    if args.action in ("show", "effective"):
        path = f"{UNITY_CATALOG}/{'permissions' if args.action == 'show' else 'effective-permissions'}/{target}"
        return [Call("GET", path, query=_query(principal=args.principal))]
    privileges = sorted({p.strip().upper() for text in args.privilege for p in text.split(",") if p.strip()})
    change = {"principal": args.principal, "add" if args.action == "add" else "remove": privileges}
    return [Call("PATCH", f"{UNITY_CATALOG}/permissions/{target}", {"changes": [change]})]


def show_grants(args: argparse.Namespace, answer: Any) -> None:
    assignments = answer.get("privilege_assignments") or []
    if args.action != "effective":
        table(("PRINCIPAL", "PRIVILEGES"), ((a.get("principal"), a.get("privileges")) for a in assignments))
        return
    rows = []
    for assignment in assignments:
        for item in assignment.get("privileges") or []:
            source = item.get("inherited_from_type") and f"{item['inherited_from_type']} {item['inherited_from_name']}"
            via = item.get("inherited_from_principal")
            rows.append((assignment.get("principal"), item.get("privilege"), source or "", via or ""))
    table(("PRINCIPAL", "PRIVILEGE", "INHERITED FROM", "VIA GROUP"), rows)


# -- audit log --------------------------------------------------------------------------------------------------


def plan_audit(args: argparse.Namespace) -> list[Call]:
    query = _query(
        actor=args.actor, action=args.action, outcome=args.outcome, max_results=args.limit, page_token=args.page_token
    )
    return [Call("GET", AUDIT, query=query)]


def show_audit(args: argparse.Namespace, answer: Any) -> None:
    table(
        ("ID", "TIME", "ACTOR", "ACTION", "OUTCOME", "TARGET"),
        (
            (e.get("id"), e.get("time"), e.get("actor"), e.get("action"), e.get("outcome"), e.get("target"))
            for e in answer.get("entries") or []
        ),
    )
    if answer.get("next_page_token"):
        print(f"more: --page-token {answer['next_page_token']}", file=sys.stderr)


# -- the parser -------------------------------------------------------------------------------------------------


def _scim_group(commands: Any, url: str, command: str, resource: str, noun: str, show_list: Show, text: str) -> Any:
    """`fedgate COMMAND list|show|delete`, shared by users, service principals and groups."""
    actions = group(commands, command, text, url)
    listing = leaf(actions, "list", f"every {noun}", _scim_list(resource), show_list, as_json=True)
    listing.add_argument("--filter", help='SCIM filter: ATTRIBUTE eq|ne|co|sw "VALUE", e.g. \'userName eq "ann"\'')
    for action, method, show in (
        ("show", "GET", show_principal),
        ("delete", "DELETE", print_text(f"deleted {noun} {{args.id}}")),
    ):
        parser = leaf(
            actions, action, f"{action} a {noun}", _scim_one(method, resource), show, as_json=action == "show"
        )
        parser.add_argument("id", help=f"the {noun}'s id (see `fedgate {command} list`)")
    return actions


def _add_users(commands: Any, url: str) -> None:
    users = _scim_group(
        commands, url, "users", "Users", "user", show_users, "list, create, show, disable, enable, delete users"
    )
    created = print_text("created user {answer[userName]} (id {answer[id]})")
    create = leaf(users, "create", "create a user", plan_user_create, created)
    create.add_argument("name", help="the user name (usually an e-mail address)")
    create.add_argument("--display-name")
    create.add_argument("--admin", action="store_true", help="make the user an account admin")
    for action, active, text in (
        ("disable", False, "disable a user (their tokens stop working)"),
        ("enable", True, "enable a disabled user"),
    ):
        done = print_text(f"{action}d user {{answer[userName]}} (id {{args.id}})")
        leaf(users, action, text, _scim_one("PATCH", "Users", _active(active)), done).add_argument("id")


def _add_service_principals(commands: Any, url: str) -> None:
    text = "list, create, show, delete service principals"
    sps = _scim_group(
        commands, url, "service-principals", "ServicePrincipals", "service principal", show_service_principals, text
    )
    created = print_text(
        "created service principal {answer[displayName]} (id {answer[id]}): application id {answer[applicationId]}"
    )
    leaf(sps, "create", "create a service principal", plan_sp_create, created).add_argument("display_name")


def _add_groups(commands: Any, url: str) -> None:
    text = "list, create, show, delete groups; add and remove members"
    groups = _scim_group(commands, url, "groups", "Groups", "group", show_groups, text)
    created = print_text("created group {answer[displayName]} (id {answer[id]})")
    create = leaf(groups, "create", "create a group", plan_group_create, created)
    create.add_argument("name")
    create.add_argument("--member", action="append", metavar="ID", help="a member's id (user, SP or group); repeatable")
    for action, text in (("add-member", "add a member"), ("remove-member", "remove a member")):
        member = leaf(groups, action, text, plan_group_member, show_group_members)
        member.add_argument("group_id")
        member.add_argument("member_id", help="the id of a user, service principal or group")


def _add_tokens(commands: Any, url: str) -> None:
    tokens = group(commands, "tokens", "create, list and revoke personal access tokens", url)
    create = leaf(
        tokens,
        "create",
        "create a token for yourself ($FEDGATE_TOKEN) or, as an admin, for a user or service principal",
        plan_token_create,
        show_token_created,
        as_json=True,
    )
    create.add_argument("--comment")
    create.add_argument(
        "--lifetime-seconds", type=int, metavar="N", help="default: the gateway's tokens.default_lifetime_seconds"
    )
    owner = create.add_mutually_exclusive_group()
    owner.add_argument("--for-user", metavar="NAME", help="admin: issue the token for this user")
    owner.add_argument("--for-sp", metavar="APP_ID", help="admin: issue it for this service principal")
    listing = leaf(tokens, "list", "your tokens (values are never shown)", plan_token_list, show_tokens, as_json=True)
    listing.add_argument("--all", action="store_true", help="admin: every principal's tokens")
    revoke = leaf(tokens, "revoke", "revoke a token", plan_token_revoke, print_text("revoked token {args.token_id}"))
    revoke.add_argument("token_id")
    revoke.add_argument("--any", action="store_true", help="admin: revoke a token that someone else owns")


def _add_permissions(commands: Any, url: str) -> None:
    epilog = (
        "examples:\n"
        "  fedgate permissions get experiment 123 --workspace team-a\n"
        "  fedgate permissions update workspace team-a --group ml-team=CAN_USE\n"
        "  fedgate permissions set registered-model my-model --workspace team-a --user ann@x.com=CAN_MANAGE\n"
        "levels: experiments CAN_READ, CAN_EDIT, CAN_MANAGE; registered models also\n"
        "  CAN_MANAGE_STAGING_VERSIONS, CAN_MANAGE_PRODUCTION_VERSIONS; workspaces also CAN_USE (may enter)"
    )
    actions = group(commands, "permissions", "object permissions of experiments, models and workspaces", url, epilog)
    for action, text in (
        ("get", "the access control list of an object"),
        ("set", "replace an object's direct grants with the given ones (none given: remove them all)"),
        ("update", "add or change grants, keeping the others"),
    ):
        parser = leaf(actions, action, text, plan_permissions, show_permissions, as_json=True, epilog=epilog)
        parser.add_argument("kind", choices=list(OBJECT_KINDS), metavar="|".join(OBJECT_KINDS))
        parser.add_argument("id", help="experiment id, registered model id or name, or workspace name", metavar="ID")
        parser.add_argument(
            "--workspace",
            default=os.environ.get("MLFLOW_WORKSPACE"),
            help="the workspace of an experiment or model (default: $MLFLOW_WORKSPACE)",
        )
        if action == "get":
            continue
        for option, who in (("--user", "NAME"), ("--group", "NAME"), ("--sp", "APP_ID")):
            parser.add_argument(option, action="append", type=_acl_entry, metavar=f"{who}=LEVEL", help="repeatable")


def _add_grants(commands: Any, url: str) -> None:
    epilog = (
        "examples:\n"
        "  fedgate grants show catalog system\n"
        "  fedgate grants effective table system.mlflow.runs_latest --principal ann@x.com\n"
        "  fedgate grants add schema system.mlflow --principal ml-analysts --privilege USE_SCHEMA,SELECT\n"
        "  fedgate grants revoke catalog system --principal ml-analysts --privilege USE_CATALOG\n"
        "privileges: USE_CATALOG, USE_SCHEMA, SELECT, MANAGE; reading a table needs all three of\n"
        "  USE_CATALOG on the catalog, USE_SCHEMA on the schema and SELECT (granted on any of the three)"
    )
    actions = group(commands, "grants", "Unity Catalog privileges on the system catalog", url, epilog)
    for action, text in (
        ("show", "the privileges granted directly on a securable"),
        ("effective", "every privilege that applies, with where it is inherited from"),
        ("add", "grant privileges to a principal"),
        ("revoke", "take privileges away from a principal"),
    ):
        shows = action in ("show", "effective")
        parser = leaf(actions, action, text, plan_grants, show_grants, as_json=shows, epilog=epilog)
        parser.add_argument("securable", choices=SECURABLES, metavar="catalog|schema|table")
        parser.add_argument("full_name", metavar="FULL_NAME", help="system, system.mlflow or system.mlflow.TABLE")
        changes = action in ("add", "revoke")
        who = "" if changes else "; show: only this principal's grants, effective: what applies to them"
        parser.add_argument("--principal", required=changes, help=f"user name, group name or application id{who}")
        if changes:
            parser.add_argument(
                "--privilege", action="append", required=True, help="e.g. USE_CATALOG; repeat or separate with commas"
            )


def _add_audit(commands: Any, url: str) -> None:
    audit = commands.add_parser(
        "audit", help="the audit log (account admins)", description="the audit log, oldest first (account admins)"
    )
    audit.add_argument("--url", default=url, help="the gateway (default: $FEDGATE_URL or %(default)s)")
    audit.add_argument("--actor", help="a principal's name")
    audit.add_argument("--action", help="e.g. request.denied, permissions.update, grant.owner")
    audit.add_argument("--outcome", help="e.g. ok or denied")
    audit.add_argument("--limit", type=int, default=100, metavar="N", help="at most N entries (1-1000; %(default)s)")
    audit.add_argument("--page-token", help="continue where the previous page ended")
    audit.add_argument("--json", action="store_true", help="print the raw JSON answer")
    audit.set_defaults(func=run, plan=plan_audit, show=show_audit)


def add_access_commands(commands: Any, url: str) -> None:
    """Register the access-control commands on `fedgate`'s sub-command parsers; `url` is the default gateway."""
    _add_users(commands, url)
    _add_service_principals(commands, url)
    _add_groups(commands, url)
    _add_tokens(commands, url)
    _add_permissions(commands, url)
    _add_grants(commands, url)
    _add_audit(commands, url)
