"""`fedgate alerts`: SQL alerts over the system tables (list, create, run, history, delete).

The token is `$FEDGATE_TOKEN` if set, else `$FEDGATE_ADMIN_TOKEN`; the gateway is `--url` (or `$FEDGATE_URL`). The
alert's query runs with its owner's grants: the principal of the token that creates it. A webhook's secret is
read from the environment variable `--webhook-secret-env` names, never from the command line.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from gateway.alerts.condition import parse_written
from gateway.cli.client import Call, CommandError, group, leaf, print_text, table

ALERTS = "/api/2.0/sql/alerts"


def _condition(value: str) -> dict[str, Any]:
    try:
        return parse_written(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def plan_list(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", ALERTS, query={"page_size": "200"})]


def show_list(args: argparse.Namespace, answer: Any) -> None:
    alerts = answer.get("results") or []
    if not alerts:
        print("no alerts")
        return
    table(
        ("ID", "NAME", "STATE", "LAST EVALUATED", "NEXT RUN", "SCHEDULE", "OWNER"),
        (
            (
                a.get("id"),
                a.get("display_name"),
                a.get("evaluation_state") or a.get("state"),
                a.get("last_evaluated_at"),
                a.get("next_run_time"),
                (a.get("schedule") or {}).get("quartz_cron_schedule"),
                a.get("owner_user_name"),
            )
            for a in alerts
        ),
    )


def plan_create(args: argparse.Namespace) -> list[Call]:
    if (args.query is None) == (args.query_id is None):
        raise CommandError("give the alert's query: --query TEXT or --query-id ID")
    condition = dict(args.condition)
    if args.empty_result_state:
        condition["empty_result_state"] = args.empty_result_state
    alert: dict[str, Any] = {"display_name": args.name, "condition": condition}
    if args.query is not None:
        alert["query_text"] = args.query
    else:
        alert["query_id"] = args.query_id
    if args.schedule:
        alert["schedule"] = {"quartz_cron_schedule": args.schedule, "timezone_id": args.timezone}
    subscriptions: list[dict[str, Any]] = [{"user_email": address} for address in args.email or []]
    for url in args.webhook or []:
        webhook: dict[str, Any] = {"url": url}
        if args.webhook_secret_env:
            secret = os.environ.get(args.webhook_secret_env, "")
            if not secret:
                raise CommandError(f"the environment variable {args.webhook_secret_env} is not set")
            webhook["secret"] = secret
        subscriptions.append({"webhook": webhook})
    if subscriptions:
        alert["subscriptions"] = subscriptions
    if args.notify_on_ok:
        alert["notify_on_ok"] = True
    if args.retrigger_seconds:
        alert["seconds_to_retrigger"] = args.retrigger_seconds
    return [Call("POST", ALERTS, body={"alert": alert})]


def plan_run(args: argparse.Namespace) -> list[Call]:
    return [Call("POST", f"{ALERTS}/{args.id}/run")]


def show_evaluation(args: argparse.Namespace, answer: Any) -> None:
    show_history(args, {"evaluations": [answer]})


def plan_history(args: argparse.Namespace) -> list[Call]:
    query = {"page_size": str(args.limit)} if args.limit else None
    return [Call("GET", f"{ALERTS}/{args.id}/history", query=query)]


def show_history(args: argparse.Namespace, answer: Any) -> None:
    evaluations = answer.get("evaluations") or []
    if not evaluations:
        print("not evaluated yet")
        return
    table(
        ("STARTED", "TRIGGER", "STATE", "VALUE", "ROWS", "NOTIFIED", "CONDITION / ERROR"),
        (
            (
                e.get("started_at"),
                e.get("trigger"),
                e.get("state"),
                e.get("value"),
                e.get("row_count"),
                e.get("notifications"),
                e.get("error_message") or e.get("condition"),
            )
            for e in evaluations
        ),
    )


def plan_delete(args: argparse.Namespace) -> list[Call]:
    return [Call("DELETE", f"{ALERTS}/{args.id}")]


def add_alerts_commands(commands: Any, url: str) -> None:
    epilog = (
        "examples:\n"
        "  fedgate alerts create --name 'low experiment reliability' \\\n"
        '      --query "$(cat success_ratio.sql)" --condition "MIN(success_ratio) < 0.9" \\\n'
        "      --schedule '0 0/15 * * * ?' --webhook https://hooks.example.com/mlflow/alerts \\\n"
        "      --webhook-secret-env ALERT_SECRET --email oncall@example.com\n"
        "  fedgate alerts list\n"
        "  fedgate alerts run 6f1c...\n"
        "  fedgate alerts history 6f1c... --limit 20\n"
        "the REST API is /api/2.0/sql/alerts (docs/console.md, Alerts)"
    )
    actions = group(commands, "alerts", "SQL alerts over the system tables", url, epilog)
    leaf(actions, "list", "your alerts (every alert for account admins)", plan_list, show_list, as_json=True)
    create = leaf(
        actions, "create", "create an alert: its query runs with your grants", plan_create,
        print_text("created alert {answer[id]}"), as_json=True, epilog=epilog,
    )  # fmt: skip
    create.add_argument("--name", required=True, help="the alert's display name")
    create.add_argument("--query", help="the SELECT to run (system.mlflow tables)")
    create.add_argument("--query-id", help="a saved query's id instead of --query")
    create.add_argument(
        "--condition", required=True, type=_condition, help="e.g. 'MIN(success_ratio) < 0.9', \"status = 'FAILED'\""
    )
    create.add_argument("--empty-result-state", choices=("UNKNOWN", "OK", "TRIGGERED"), help="state of an empty result")
    create.add_argument("--schedule", help="a Quartz cron expression, e.g. '0 0/15 * * * ?' (none: run on demand)")
    create.add_argument("--timezone", default="UTC", help="the schedule's IANA time zone (default UTC)")
    create.add_argument("--webhook", action="append", metavar="URL", help="POST a signed notification here")
    create.add_argument("--webhook-secret-env", metavar="VAR", help="the environment variable holding the HMAC secret")
    create.add_argument("--email", action="append", metavar="ADDRESS", help="send an e-mail here")
    create.add_argument("--notify-on-ok", action="store_true", help="notify too when the alert returns to OK")
    create.add_argument("--retrigger-seconds", type=int, help="notify again while TRIGGERED, at most this often")
    run = leaf(actions, "run", "evaluate an alert now (as its owner)", plan_run, show_evaluation, as_json=True)
    run.add_argument("id")
    history = leaf(actions, "history", "an alert's evaluations, newest first", plan_history, show_history, as_json=True)
    history.add_argument("id")
    history.add_argument("--limit", type=int, metavar="N", help="at most N evaluations (1-200; default 100)")
    remove = leaf(
        actions, "delete", "delete an alert and its history", plan_delete, print_text("deleted alert {args.id}")
    )
    remove.add_argument("id")
