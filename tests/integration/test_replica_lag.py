"""A replica answers right after a change made through another replica, before that change's NOTIFY reaches
it: what a caller names or was just granted is refused, or "not found", only by the stored policy (one query
when the replica is not behind). The changes are written as another replica writes them, less the NOTIFY
(tests/support/elsewhere.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Stack
from tests.support.elsewhere import made_elsewhere
from tests.support.identity import Admin

pytestmark = pytest.mark.integration


def test_a_principal_made_on_another_replica_can_be_named_here_at_once(stack: Stack) -> None:
    """An admin makes a user, a service principal or a group through one replica and names it through another
    (a balancer sends each call elsewhere) before the news arrives there: a token on the user's behalf, a grant
    to it in the permissions API and in Unity Catalog's. "No such principal" is answered only once the replica's
    policy is the stored one (each call failed before: 400 "Name the owner", 404 "No service principal named")."""
    admin = Admin.of(stack).http()
    scim = f"{stack.url}/api/2.0/preview/scim/v2"
    for by in ("user_name", "owner_id"):
        person = f"named-{uuid.uuid4().hex[:8]}@example.com"
        person_id = made_elsewhere(stack.database_url, "user", person, admin=False)
        owner = {"user_name": person} if by == "user_name" else {"owner_id": str(person_id)}
        minted = admin.post(f"{stack.url}/api/2.0/token-management/on-behalf-of/tokens", json=owner, timeout=60)
        assert minted.status_code == 200 and minted.json()["token_info"]["owner_id"] == person_id, (by, minted.text)

    robot = str(uuid.uuid4())
    robot_id = made_elsewhere(stack.database_url, "service_principal", robot, admin=False)
    acl = {"access_control_list": [{"service_principal_name": robot, "permission_level": "CAN_READ"}]}
    granted = admin.patch(f"{stack.url}/api/2.0/permissions/workspaces/team-b", json=acl, timeout=60)
    assert granted.status_code == 200, granted.text
    assert robot in granted.text

    group = f"named-group-{uuid.uuid4().hex[:8]}"
    group_id = made_elsewhere(stack.database_url, "group", group, admin=False)
    change = {"changes": [{"principal": group, "add": ["USE_CATALOG"]}]}
    uc = admin.patch(f"{stack.url}/api/2.1/unity-catalog/permissions/catalog/system", json=change, timeout=60)
    assert uc.status_code == 200, uc.text
    assert group in uc.text

    for path in (f"ServicePrincipals/{robot_id}", f"Groups/{group_id}"):  # their grants go with them
        assert admin.delete(f"{scim}/{path}", timeout=60).status_code == 204
