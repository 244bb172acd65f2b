"""`fedgate links`: the state of every workspace link, dead letters, and reconciling dual workspaces."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.client import Call, group, leaf, print_text, table

LINKS = "/api/2.0/fedgate/links"


def plan_status(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", LINKS)]


def show_status(args: argparse.Namespace, answer: Any) -> None:
    rows = []
    for link in answer.get("links") or []:
        reconcile = link.get("reconcile") or {}
        progress = (
            f"{reconcile.get('scope')} {reconcile.get('state')}: {reconcile.get('experiments', 0)} experiments, "
            f"{reconcile.get('runs_checked', 0)} runs checked, {reconcile.get('runs_repaired', 0)} repaired"
            + (f" (resumed {reconcile['resumed']}x)" if reconcile.get("resumed") else "")
            if reconcile
            else ""
        )
        rows.append(
            (
                link["workspace"],
                link["mode"],
                link["store"],
                link.get("central_store") or "-",
                link["pending"],
                f"{link['oldest_pending_seconds']:.0f}s",
                f"{link['replayed_per_second']:.1f}/s",
                link["dead_letters"],
                progress,
            )
        )
    table(("WORKSPACE", "MODE", "STORE", "CENTRAL", "PENDING", "OLDEST", "REPLAY", "DEAD", "RECONCILE"), rows)
    # Links that overlap another one's store namespace are withheld until an admin relinks or unlinks one.
    for link in answer.get("links") or []:
        if link.get("conflict"):
            print(f"not served: {link['workspace']}: {link['conflict']}")


def plan_dead_letters(args: argparse.Namespace) -> list[Call]:
    return [Call("GET", f"{LINKS}/{args.workspace}/dead-letters")]


def show_dead_letters(args: argparse.Namespace, answer: Any) -> None:
    table(
        ("ID", "ROUTE", "KEY", "ATTEMPTS", "LAST ERROR"),
        (
            (d["id"], d["route"], d["order_key"], d["attempts"], str(d["last_error"])[:100])
            for d in answer.get("dead_letters") or []
        ),
    )


def plan_retry(args: argparse.Namespace) -> list[Call]:
    return [Call("POST", f"{LINKS}/{args.workspace}/dead-letters/retry", {"id": args.id} if args.id else {})]


def plan_discard(args: argparse.Namespace) -> list[Call]:
    body = {"id": args.id} if args.id is not None else {"all": True}
    return [Call("POST", f"{LINKS}/{args.workspace}/dead-letters/discard", body)]


def plan_reconcile(args: argparse.Namespace) -> list[Call]:
    return [Call("POST", f"{LINKS}/{args.workspace}/reconcile", {"all": args.all})]


def add_links_commands(commands: Any, url: str) -> None:
    actions = group(commands, "links", "workspace links: status, dead letters, reconcile (account admins)", url)
    leaf(actions, "status", "mode, stores and outbox of every link", plan_status, show_status, as_json=True)
    dead = leaf(actions, "dead-letters", "entries the central store refused", plan_dead_letters,
                 show_dead_letters, as_json=True)  # fmt: skip
    dead.add_argument("workspace")
    retry = leaf(actions, "retry", "queue dead letters again", plan_retry, print_text("requeued {answer[requeued]}"))
    retry.add_argument("workspace")
    retry.add_argument("--id", type=int, help="only this dead letter")
    discard = leaf(
        actions,
        "discard",
        "delete dead letters for good: their writes never reach the central store (audited)",
        plan_discard,
        print_text("discarded {answer[discarded]}"),
    )
    discard.add_argument("workspace")
    which = discard.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, help="only this dead letter")
    which.add_argument("--all", action="store_true", help="every dead letter of the workspace")
    reconcile = leaf(
        actions,
        "reconcile",
        "compare a dual workspace's runs with their central copies and repair (in the background)",
        plan_reconcile,
        print_text("reconcile of {args.workspace} started; see `fedgate links status`"),
    )
    reconcile.add_argument("--workspace", required=True)
    reconcile.add_argument("--all", action="store_true", help="every run, not only recent ones (backfill)")
