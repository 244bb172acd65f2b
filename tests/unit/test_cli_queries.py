"""`fedgate queries`: the calls each command line makes (the saved queries and permissions APIs)."""

from __future__ import annotations

import pytest

from gateway.cli import plan_for
from gateway.cli.client import Call, CommandError


def test_share_names_each_principal_by_its_kind_and_patches_unless_replacing() -> None:
    entries = ["group:analysts=can_run", "user:ann@example.com=CAN_MANAGE", "service-principal:etl-bot=CAN_VIEW"]
    acl = [
        {"group_name": "analysts", "permission_level": "CAN_RUN"},
        {"user_name": "ann@example.com", "permission_level": "CAN_MANAGE"},
        {"service_principal_name": "etl-bot", "permission_level": "CAN_VIEW"},
    ]
    path = "/api/2.0/permissions/queries/q%2F1"
    assert plan_for(["queries", "share", "q/1", *entries]) == [Call("PATCH", path, {"access_control_list": acl})]
    assert plan_for(["queries", "share", "q/1", "--replace"]) == [Call("PUT", path, {"access_control_list": []})]


@pytest.mark.parametrize("entry", ["analysts=CAN_RUN", "team:analysts=CAN_RUN", "group:analysts", "group:=CAN_RUN"])
def test_share_refuses_an_entry_that_is_not_kind_name_level(entry: str) -> None:
    with pytest.raises(CommandError, match="is not KIND:NAME=LEVEL"):
        plan_for(["queries", "share", "q1", entry])


def test_create_list_show_and_delete() -> None:
    body = {"query": {"display_name": "runs", "query_text": "SELECT 1", "catalog": "system"}}
    assert plan_for(["queries", "create", "--name", "runs", "--text", "SELECT 1", "--catalog", "system"]) == [
        Call("POST", "/api/2.0/sql/queries", body)
    ]
    assert plan_for(["queries", "list"]) == [Call("GET", "/api/2.0/sql/queries", query={"page_size": "1000"})]
    assert plan_for(["queries", "show", "a b"]) == [Call("GET", "/api/2.0/sql/queries/a%20b")]
    assert plan_for(["queries", "delete", "q1"]) == [Call("DELETE", "/api/2.0/sql/queries/q1")]
