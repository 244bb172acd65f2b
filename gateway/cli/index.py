"""`fedgate index`: the account-wide index's sync state per workspace, and syncing a workspace."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.client import Call, group, leaf, table

INDEX = "/api/2.0/fedgate/index"


def plan_status(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", f"{INDEX}/status")]


def show_status(args: argparse.Namespace, answer: Any) -> None:
    rows = []
    for ws in answer.get("workspaces") or []:
        lag = ws.get("lag_seconds")
        position = ws.get("position") or {}
        progress = f"experiment {position.get('experiment', '-')}" if ws["state"] == "running" else ""
        rows.append(
            (
                ws["workspace"],
                ws["state"],
                ws["runs_indexed"],
                ws["runs_seen_last_pass"],
                ws["points_added_last_pass"],
                ws["runs_pending"],
                f"{lag:.0f}s" if lag is not None else "never",
                progress or str(ws.get("last_error") or "")[:60],
            )
        )
    table(("WORKSPACE", "STATE", "RUNS", "SEEN", "POINTS ADDED", "PENDING", "LAG", "NOTE"), rows)


def plan_sync(args: argparse.Namespace) -> list[Call]:
    return [Call("POST", f"{INDEX}/sync", {"workspace": args.workspace, "full": args.full, "wait": args.wait})]


def show_sync(args: argparse.Namespace, answer: Any) -> None:
    sync = answer.get("sync") or {}
    details = ", ".join(f"{k} {v}" for k, v in sync.items() if k not in ("workspace", "state"))
    print(f"{sync.get('workspace')}: {sync.get('state')}" + (f" ({details})" if details else ""))


def add_index_commands(commands: Any, url: str) -> None:
    actions = group(commands, "index", "the account-wide index: sync state, sync a workspace (account admins)", url)
    leaf(actions, "status", "sync state, lag and progress per workspace", plan_status, show_status, as_json=True)
    sync = leaf(actions, "sync", "bring a workspace's store into the index", plan_sync, show_sync, as_json=True)
    sync.add_argument("--workspace", required=True)
    sync.add_argument("--full", action="store_true", help="every run, not only recent and running ones")
    sync.add_argument("--wait", action="store_true", help="wait for the pass to finish and show its figures")
