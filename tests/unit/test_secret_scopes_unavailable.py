"""A workspace whose vault is not available answers the secrets API 503 with Retry-After and a clear message."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from gateway.authz.decide import Authorizer
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.secrets.service import SecretScopes, VaultUnreachable, scope_object

LINK = WorkspaceLink("team-a", 1001, "workspace", "a", "a", None)
ADMIN = Principal("admin", "bootstrap", account_admin=True)


def scopes(vaults: dict[str, Any]) -> SecretScopes:
    none = cast(Any, None)  # nothing below reaches the database or the policy before the vault is chosen
    return SecretScopes(none, none, Authorizer(none), none, vaults)


async def test_the_built_in_vault_without_its_keys_is_503_naming_the_setting() -> None:
    with pytest.raises(VaultUnreachable) as refused:
        await scopes({}).create_scope(ADMIN, LINK, "db-creds", None)
    assert refused.value.status == 503 and refused.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert refused.value.headers["Retry-After"] == "5"
    assert "FEDGATE_VAULT_KEYS" in refused.value.message


async def test_a_configured_vault_that_is_not_built_is_503_naming_it() -> None:
    with pytest.raises(VaultUnreachable, match="'bao' is not available"):
        await scopes({}).create_scope(ADMIN, replace(LINK, vault="bao"), "db-creds", None)


def test_scope_objects_carry_the_workspace_domain_the_grant_moves_rename() -> None:
    import re

    obj = scope_object(1001, "db.creds-1")
    assert obj == "secret_scope:w1001/db.creds-1"
    assert re.sub(r"^([a-z_]+):w1001(/|$)", r"\1:w7\2", obj) == "secret_scope:w7/db.creds-1"  # authz/moves.py
