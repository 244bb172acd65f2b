"""The access-control commands against a running gateway, run in-process as `fedgate ...`."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from gateway.cli import main
from tests.conftest import ADMIN_TOKEN, Stack

pytestmark = pytest.mark.integration


def test_users_groups_tokens_and_workspace_permissions_from_the_command_line(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDGATE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("FEDGATE_TOKEN", raising=False)
    suffix = uuid.uuid4().hex[:8]
    user, group = f"cli-{suffix}@example.com", f"cli-team-{suffix}"

    def fedgate(*argv: str) -> tuple[str, str]:
        assert main([*argv, "--url", stack.url]) == 0, capsys.readouterr().err
        captured = capsys.readouterr()
        return captured.out, captured.err

    out, _ = fedgate("users", "create", user, "--display-name", "CLI User")
    user_id = re.fullmatch(rf"created user {re.escape(user)} \(id (\d+)\)\n", out).group(1)  # type: ignore[union-attr]
    out, _ = fedgate("groups", "create", group, "--member", user_id)
    group_id = re.fullmatch(rf"created group {group} \(id (\d+)\)\n", out).group(1)  # type: ignore[union-attr]
    shown = json.loads(fedgate("groups", "show", group_id, "--json")[0])
    assert [m["value"] for m in shown["members"]] == [user_id]
    listed, _ = fedgate("users", "list", "--filter", f'userName eq "{user}"')
    assert listed.splitlines()[0].split()[:3] == ["ID", "USER", "NAME"]
    assert user_id in listed and group in listed  # the user's row names its group

    token, note = fedgate("tokens", "create", "--for-user", user, "--comment", "from the cli")
    token_value = token.strip()
    token_id = re.search(r"token (\S+) for ", note).group(1)  # type: ignore[union-attr]
    assert "only time" in note and token_value not in note

    granted, _ = fedgate("permissions", "update", "workspace", "team-a", "--group", f"{group}=CAN_USE")
    assert re.search(rf"^{group}\s+group\s+CAN_USE\s*$", granted, re.MULTILINE), granted

    everyone, _ = fedgate("tokens", "list", "--all")
    row = next(line for line in everyone.splitlines() if line.startswith(token_id))
    assert user in row and "from the cli" in row and token_value not in everyone
    # The token works: as the user (FEDGATE_TOKEN wins over the admin token) it lists itself.
    monkeypatch.setenv("FEDGATE_TOKEN", token_value)
    own = json.loads(fedgate("tokens", "list", "--json")[0])
    assert [t["token_id"] for t in own["token_infos"]] == [token_id]
    monkeypatch.delenv("FEDGATE_TOKEN")

    assert fedgate("tokens", "revoke", token_id, "--any")[0] == f"revoked token {token_id}\n"
    remaining = json.loads(fedgate("tokens", "list", "--all", "--json")[0])
    assert token_id not in {t["token_id"] for t in remaining["token_infos"]}
    monkeypatch.setenv("FEDGATE_TOKEN", token_value)
    assert main(["tokens", "list", "--url", stack.url]) == 1
    assert "(401)" in capsys.readouterr().err
