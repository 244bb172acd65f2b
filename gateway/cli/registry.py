"""`fedgate registry`: a registered model's activity log, and a version's open stage transition requests.

The token is `$FEDGATE_TOKEN` if set, else `$FEDGATE_ADMIN_TOKEN`; the gateway is `--url` (or `$FEDGATE_URL`);
the workspace `--workspace` (or `$MLFLOW_WORKSPACE`). What a caller may not read answers as missing.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

from gateway.cli.client import Call, group, leaf, table

ACTIVITIES = "/api/2.0/mlflow/activities/list"
REQUESTS = "/api/2.0/mlflow/transition-requests/list"


def _when(milliseconds: Any) -> str:
    if not isinstance(milliseconds, int):
        return ""
    return datetime.fromtimestamp(milliseconds / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def plan_activities(args: argparse.Namespace) -> list[Call]:
    query = {"name": args.name}
    if args.version:
        query["version"] = args.version
    if args.limit:
        query["max_results"] = str(args.limit)
    if args.page_token:
        query["page_token"] = args.page_token
    return [Call("GET", ACTIVITIES, query=query, workspace=args.workspace)]


def show_activities(args: argparse.Namespace, answer: Any) -> None:
    """Newest first, as the gateway answers: when, which version, what, who, from and to which stage."""
    table(
        ("WHEN", "VERSION", "ACTIVITY", "BY", "FROM", "TO", "COMMENT"),
        (
            (
                _when(a.get("creation_timestamp")),
                a.get("version"),
                a.get("activity_type"),
                a.get("user_id"),
                a.get("from_stage"),
                a.get("to_stage"),
                a.get("comment") or a.get("system_comment"),
            )
            for a in answer.get("activities") or []
        ),
    )
    if answer.get("next_page_token"):
        print(f"more: --page-token {answer['next_page_token']}")


def plan_requests(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", REQUESTS, query={"name": args.name, "version": args.version}, workspace=args.workspace)]


def show_requests(args: argparse.Namespace, answer: Any) -> None:
    """Open requests, newest first, with what the caller may do with each."""
    requests = answer.get("requests") or []
    if not requests:
        print(f"no open requests for version {args.version} of {args.name}")
        return
    table(
        ("REQUESTED", "BY", "FROM", "TO", "COMMENT", "YOU MAY"),
        (
            (
                _when(r.get("creation_timestamp")),
                r.get("user_id"),
                r.get("from_stage"),
                r.get("to_stage"),
                r.get("comment"),
                [action.split("_", 1)[0].lower() for action in r.get("available_actions") or []],
            )
            for r in requests
        ),
    )


def add_registry_commands(commands: Any, url: str) -> None:
    epilog = (
        "examples:\n"
        "  fedgate registry activities churn-model --workspace team-a\n"
        "  fedgate registry activities churn-model 3 --workspace team-a --json\n"
        "  fedgate registry requests churn-model 3 --workspace team-a\n"
        "requests, approvals and comments are made with databricks-sdk's w.model_registry (docs/registry.md)"
    )
    actions = group(commands, "registry", "the registry workflow: activity logs and open requests", url, epilog)
    activities = leaf(
        actions, "activities", "a model's activity log, newest first", plan_activities, show_activities,
        as_json=True, epilog=epilog,
    )  # fmt: skip
    activities.add_argument("name", help="the registered model's name")
    activities.add_argument("version", nargs="?", help="only this version's activities")
    activities.add_argument("--limit", type=int, metavar="N", help="at most N activities (1-1000; default 100)")
    activities.add_argument("--page-token", help="continue where the previous page ended")
    requests = leaf(
        actions, "requests", "a version's open transition requests", plan_requests, show_requests,
        as_json=True, epilog=epilog,
    )  # fmt: skip
    requests.add_argument("name", help="the registered model's name")
    requests.add_argument("version")
    for parser in (activities, requests):
        parser.add_argument(
            "--workspace",
            default=os.environ.get("MLFLOW_WORKSPACE"),
            help="the model's workspace (default: $MLFLOW_WORKSPACE, else the gateway's default workspace)",
        )
