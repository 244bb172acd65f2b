"""`fedgate links` builds the right calls and shows what it gets."""

from __future__ import annotations

import argparse

import pytest

from gateway.cli import plan_for
from gateway.cli.client import Call
from gateway.cli.links import show_status


def test_links_commands_plan_their_calls() -> None:
    assert plan_for(["links", "status"]) == [Call("GET", "/api/2.0/fedgate/links")]
    assert plan_for(["links", "dead-letters", "lab"]) == [Call("GET", "/api/2.0/fedgate/links/lab/dead-letters")]
    assert plan_for(["links", "retry", "lab", "--id", "7"]) == [
        Call("POST", "/api/2.0/fedgate/links/lab/dead-letters/retry", {"id": 7})
    ]
    assert plan_for(["links", "discard", "lab", "--id", "7"]) == [
        Call("POST", "/api/2.0/fedgate/links/lab/dead-letters/discard", {"id": 7})
    ]
    assert plan_for(["links", "discard", "lab", "--all"]) == [
        Call("POST", "/api/2.0/fedgate/links/lab/dead-letters/discard", {"all": True})
    ]
    assert plan_for(["links", "reconcile", "--workspace", "lab"]) == [
        Call("POST", "/api/2.0/fedgate/links/lab/reconcile", {"all": False})
    ]


@pytest.mark.parametrize("argv", [[], ["--id", "7", "--all"]], ids=["neither", "both"])
def test_discarding_dead_letters_names_one_or_says_all(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        plan_for(["links", "discard", "lab", *argv])
    assert "--id" in capsys.readouterr().err


def test_links_status_shows_a_backfills_progress(capsys: pytest.CaptureFixture[str]) -> None:
    link = {"workspace": "lab", "mode": "dual", "store": "a", "central_store": "central", "pending": 3,
            "oldest_pending_seconds": 4.2, "replayed_per_second": 1.5, "dead_letters": 0}  # fmt: skip
    reconcile = {"scope": "all", "state": "running", "experiments": 12, "runs_checked": 340, "runs_repaired": 9}
    links = [
        link,
        {**link, "workspace": "lab2", "reconcile": reconcile},
        {**link, "workspace": "lab3", "reconcile": {**reconcile, "resumed": 2}},
    ]
    show_status(argparse.Namespace(), {"links": links})
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:5] == ["lab", "dual", "a", "central", "3"] and "running" not in lines[1]
    assert lines[2].endswith("all running: 12 experiments, 340 runs checked, 9 repaired")
    assert lines[3].endswith("9 repaired (resumed 2x)")


def test_links_status_names_the_links_it_does_not_serve(capsys: pytest.CaptureFixture[str]) -> None:
    link = {"workspace": "north", "mode": "central", "store": "central", "central_store": "", "pending": 0,
            "oldest_pending_seconds": 0.0, "replayed_per_second": 0.0, "dead_letters": 0}  # fmt: skip
    reason = "Workspace 'south' already uses store 'central'"
    show_status(argparse.Namespace(), {"links": [link, {**link, "workspace": "south", "conflict": reason}]})
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"not served: south: {reason}"
    assert not any(line.startswith("not served: north") for line in lines)
