"""Personal access tokens never outlive the credential that created them, and always expire."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from gateway.devstack import GatewayProcess
from gateway.principals.tokens import TOKEN_PREFIX
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.elsewhere import made_elsewhere
from tests.support.identity import Admin
from tests.support.oidc import OIDC_AUDIENCE, OidcIssuer

pytestmark = pytest.mark.integration
DEFAULT_LIFETIME = 90 * 24 * 3600  # tokens.default_lifetime_seconds
MAX_LIFETIME = 730 * 24 * 3600  # tokens.max_lifetime_seconds


def call(stack: Stack, path: str, body: dict[str, Any], token: str = ADMIN_TOKEN) -> requests.Response:
    return requests.post(f"{stack.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_a_token_never_outlives_the_token_that_created_it(stack: Stack) -> None:
    name = f"minter-{uuid.uuid4().hex[:8]}@example.com"
    Admin.of(stack).user(name)
    before = time.time()
    # A token with five minutes left ...
    parent = call(stack, "/api/2.0/token-management/on-behalf-of/tokens", {"user_name": name, "lifetime_seconds": 300})
    assert parent.status_code == 200, parent.text
    parent_expiry = parent.json()["token_info"]["expiry_time"]
    assert before * 1000 + 299_000 <= parent_expiry <= time.time() * 1000 + 301_000
    token = parent.json()["token_value"]
    # ... mints tokens that expire with it, whatever they ask for (nothing, -1, a year).
    for asked in ({}, {"lifetime_seconds": -1}, {"lifetime_seconds": 365 * 24 * 3600}):
        child = call(stack, "/api/2.0/token/create", {"comment": "child", **asked}, token=token)
        assert child.status_code == 200, child.text
        expiry = child.json()["token_info"]["expiry_time"]
        assert expiry != -1 and expiry <= parent_expiry, (asked, expiry, parent_expiry)
    # A lifetime shorter than what is left is kept as asked.
    short = call(stack, "/api/2.0/token/create", {"lifetime_seconds": 60}, token=token).json()["token_info"]
    assert short["expiry_time"] <= time.time() * 1000 + 61_000


def test_lifetimes_have_a_default_and_a_maximum(stack: Stack) -> None:
    name = f"lifetimes-{uuid.uuid4().hex[:8]}@example.com"
    Admin.of(stack).user(name)
    # The bootstrap admin's credential does not expire: the settings alone decide.
    issued = call(stack, "/api/2.0/token-management/on-behalf-of/tokens", {"user_name": name})
    assert issued.status_code == 200, issued.text
    expiry = issued.json()["token_info"]["expiry_time"]
    assert abs(expiry - (time.time() + DEFAULT_LIFETIME) * 1000) < 60_000
    too_long = call(
        stack,
        "/api/2.0/token-management/on-behalf-of/tokens",
        {"user_name": name, "lifetime_seconds": MAX_LIFETIME + 1},
    )
    assert too_long.status_code == 400 and too_long.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_the_token_list_does_not_name_the_bootstrap_admin_for_a_deleted_creator(
    stack: Stack, oidc_gateway: GatewayProcess, issuer: OidcIssuer
) -> None:
    """A token an account admin made (with the identity provider's access token: a token made with a token
    goes with it) stays when the admin is deleted, and is listed with its creator's id and no name, never as
    the bootstrap admin's ("admin", which names tokens the bootstrap admin made)."""
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    made = requests.post(
        f"{stack.url}/api/2.0/preview/scim/v2/Users",
        json={"userName": boss, "roles": [{"value": "account_admin"}]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert made.status_code == 201, made.text
    boss_id = int(made.json()["id"])
    boss_credential = issuer.token(
        "boss", audience=OIDC_AUDIENCE, email=boss, expires_in=3600, extra_claims={"email_verified": True}
    )
    person = f"made-for-{uuid.uuid4().hex[:8]}@example.com"
    Admin.of(stack).user(person)
    on_behalf = "/api/2.0/token-management/on-behalf-of/tokens"
    by_boss = requests.post(
        f"{oidc_gateway.url}{on_behalf}",
        json={"user_name": person},
        headers={"Authorization": f"Bearer {boss_credential}"},
        timeout=60,
    )
    assert by_boss.status_code == 200, by_boss.text
    by_bootstrap = call(stack, on_behalf, {"user_name": person})
    assert by_bootstrap.status_code == 200, by_bootstrap.text
    gone = Admin.of(stack).http().delete(f"{stack.url}/api/2.0/preview/scim/v2/Users/{boss_id}", timeout=60)
    assert gone.status_code == 204, gone.text

    listed = Admin.of(stack).http().get(f"{stack.url}/api/2.0/token-management/tokens", timeout=60)
    assert listed.status_code == 200, listed.text
    infos = {info["token_id"]: info for info in listed.json()["token_infos"]}
    deleted_creator = infos[by_boss.json()["token_info"]["token_id"]]
    assert (deleted_creator["created_by_id"], deleted_creator["created_by_username"]) == (boss_id, None)
    bootstrap = infos[by_bootstrap.json()["token_info"]["token_id"]]
    assert (bootstrap["created_by_id"], bootstrap["created_by_username"]) == (0, "admin")
    one = (
        Admin.of(stack)
        .http()
        .get(f"{stack.url}/api/2.0/token-management/tokens/{deleted_creator['token_id']}", timeout=60)
    )
    assert one.status_code == 200 and one.json()["token_info"]["created_by_username"] is None, one.text


def admins_only_list(url: str, credential: str) -> requests.Response:
    return requests.get(
        f"{url}/api/2.0/token-management/tokens", headers={"Authorization": f"Bearer {credential}"}, timeout=60
    )


def test_an_account_admin_this_replica_has_not_heard_of_yet_is_an_admin_at_once(
    stack: Stack, oidc_gateway: GatewayProcess, issuer: OidcIssuer
) -> None:
    """An admin made on another replica signs in here, with the identity provider's token or a token of the
    gateway's, before the news arrives: the replica brings its policy up to the stored one, and the role and
    groups come from that, not from the stale policy that did not know them (the first call answered 403 "Only
    account admins" with an identity provider's token, and 401 "disabled or deleted" with a gateway token)."""
    person = f"unheard-{uuid.uuid4().hex[:8]}@example.com"
    made_elsewhere(stack.database_url, "user", person)
    credential = issuer.token(
        "unheard", audience=OIDC_AUDIENCE, email=person, expires_in=3600, extra_claims={"email_verified": True}
    )
    by_person = admins_only_list(oidc_gateway.url, credential)
    assert by_person.status_code == 200, by_person.text

    robot, token = str(uuid.uuid4()), f"{TOKEN_PREFIX}{uuid.uuid4().hex}"
    made_elsewhere(stack.database_url, "service_principal", robot, token)
    by_robot = admins_only_list(stack.url, token)
    assert by_robot.status_code == 200, by_robot.text


def test_numbers_in_other_digits_or_too_long_are_refused_not_failed(stack: Stack) -> None:
    """A lifetime, an owner id or a group member id must be ASCII digits: `²` passes str.isdigit() but not
    int(), and a 5,000-digit number is past what int() reads; both answered 500 before."""
    person = f"digits-{uuid.uuid4().hex[:8]}@example.com"
    Admin.of(stack).user(person)
    on_behalf = "/api/2.0/token-management/on-behalf-of/tokens"
    for asked in ("²", "-²", "--5", "1" * 5000, "\uff11\uff12"):
        answer = call(stack, on_behalf, {"user_name": person, "lifetime_seconds": asked})
        assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", answer.text
        answer = call(stack, on_behalf, {"owner_id": asked})
        assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", answer.text
        group = call(
            stack,
            "/api/2.0/preview/scim/v2/Groups",
            {"displayName": f"digits-{uuid.uuid4().hex[:8]}", "members": [{"value": asked}]},
        )
        assert group.status_code == 400 and group.json()["error_code"] == "INVALID_PARAMETER_VALUE", group.text
    group_id = Admin.of(stack).group(f"digits-{uuid.uuid4().hex[:8]}")
    for member in ("1" * 5000, "1" * 19, "\uff11\uff12"):
        patched = (
            Admin.of(stack)
            .http()
            .patch(
                f"{stack.url}/api/2.0/preview/scim/v2/Groups/{group_id}",
                json={"Operations": [{"op": "remove", "path": f'members[value eq "{member}"]'}]},
                timeout=60,
            )
        )
        assert patched.status_code == 400 and patched.json()["error_code"] == "INVALID_PARAMETER_VALUE", patched.text
    # Spelt in ASCII, as ever: a string lifetime and -1 (the default) are taken.
    assert call(stack, on_behalf, {"user_name": person, "lifetime_seconds": "600"}).status_code == 200
    assert call(stack, on_behalf, {"user_name": person, "lifetime_seconds": "-1"}).status_code == 200
