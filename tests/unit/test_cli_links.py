"""`fedgate links` builds the right calls."""

from __future__ import annotations

from gateway.cli_access import Call, plan_for


def test_links_commands_plan_their_calls() -> None:
    assert plan_for(["links", "status"]) == [Call("GET", "/api/2.0/fedgate/links")]
    assert plan_for(["links", "dead-letters", "lab"]) == [Call("GET", "/api/2.0/fedgate/links/lab/dead-letters")]
    assert plan_for(["links", "retry", "lab", "--id", "7"]) == [
        Call("POST", "/api/2.0/fedgate/links/lab/dead-letters/retry", {"id": 7})
    ]
    assert plan_for(["links", "reconcile", "--workspace", "lab"]) == [
        Call("POST", "/api/2.0/fedgate/links/lab/reconcile", {"all": False})
    ]
