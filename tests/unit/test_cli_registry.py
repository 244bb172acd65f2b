"""`fedgate registry` builds the right calls and shows what it gets."""

from __future__ import annotations

import argparse

import pytest

from gateway.cli import plan_for
from gateway.cli.client import Call
from gateway.cli.registry import show_activities, show_requests

ACTIVITIES = "/api/2.0/mlflow/activities/list"
REQUESTS = "/api/2.0/mlflow/transition-requests/list"


def test_registry_commands_plan_their_calls() -> None:
    assert plan_for(["registry", "activities", "churn", "--workspace", "team-a"]) == [
        Call("GET", ACTIVITIES, query={"name": "churn"}, workspace="team-a")
    ]
    assert plan_for(["registry", "activities", "churn", "3", "--workspace", "team-a", "--limit", "5"]) == [
        Call("GET", ACTIVITIES, query={"name": "churn", "version": "3", "max_results": "5"}, workspace="team-a")
    ]
    assert plan_for(["registry", "activities", "churn", "--workspace", "w", "--page-token", "41"]) == [
        Call("GET", ACTIVITIES, query={"name": "churn", "page_token": "41"}, workspace="w")
    ]
    assert plan_for(["registry", "requests", "churn", "3", "--workspace", "team-a"]) == [
        Call("GET", REQUESTS, query={"name": "churn", "version": "3"}, workspace="team-a")
    ]


def test_the_workspace_defaults_to_mlflows_own_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-b")
    assert plan_for(["registry", "requests", "churn", "1"])[0].workspace == "team-b"


def test_the_activity_log_prints_newest_first_with_who_and_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    log = [
        {"id": "9", "version": "1", "activity_type": "SYSTEM_TRANSITION", "user_id": "pat@x.com",
         "from_stage": "Production", "to_stage": "Archived", "creation_timestamp": 1_700_000_060_000,
         "last_updated_timestamp": 1_700_000_060_000, "system_comment": "Archived because version 2 moved"},
        {"id": "8", "version": "2", "activity_type": "APPROVED_REQUEST", "user_id": "pat@x.com",
         "from_stage": "None", "to_stage": "Production", "creation_timestamp": 1_700_000_000_000,
         "last_updated_timestamp": 1_700_000_000_000, "comment": "ship it"},
    ]  # fmt: skip
    show_activities(argparse.Namespace(), {"activities": log, "next_page_token": "8"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["WHEN", "VERSION", "ACTIVITY", "BY", "FROM", "TO", "COMMENT"]
    assert lines[1].split()[:8] == [
        "2023-11-14", "22:14:20", "UTC", "1", "SYSTEM_TRANSITION", "pat@x.com", "Production", "Archived"
    ]  # fmt: skip
    assert lines[1].endswith("Archived because version 2 moved") and lines[2].endswith("ship it")
    assert lines[3] == "more: --page-token 8"


def test_open_requests_print_what_the_caller_may_do(capsys: pytest.CaptureFixture[str]) -> None:
    request = {"id": "3", "activity_type": "REQUESTED_TRANSITION", "user_id": "ann@x.com", "from_stage": "Staging",
               "to_stage": "Production", "creation_timestamp": 1_700_000_000_000, "comment": "ready",
               "available_actions": ["APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST"]}  # fmt: skip
    show_requests(argparse.Namespace(name="churn", version="3"), {"requests": [request]})
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[3:] == ["ann@x.com", "Staging", "Production", "ready", "approve,", "reject"]
    show_requests(argparse.Namespace(name="churn", version="3"), {"requests": []})
    assert capsys.readouterr().out == "no open requests for version 3 of churn\n"
