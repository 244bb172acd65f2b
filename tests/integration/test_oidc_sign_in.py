"""OIDC access tokens from a real local issuer, end to end through a gateway process configured for it."""

from __future__ import annotations

import base64
import json
import uuid

import mlflow
import pytest
import requests

from gateway.devstack import GatewayProcess
from tests.conftest import Stack
from tests.support.identity import Admin
from tests.support.oidc import OIDC_AUDIENCE as AUDIENCE
from tests.support.oidc import OidcIssuer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def team(stack: Stack) -> str:
    """A gateway group that may read workspace team-b; identity-provider groups of that name count."""
    name, admin = f"oidc-team-{uuid.uuid4().hex[:6]}", Admin.of(stack)
    admin.group(name)
    admin.grant("workspaces/team-b", "CAN_READ", group=name)
    return name


def search(gateway: GatewayProcess, token: str, workspace: str = "team-b") -> requests.Response:
    return requests.post(
        f"{gateway.url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 10},
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace},
        timeout=30,
    )


def test_idp_users_are_provisioned_and_idp_groups_grant_access(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, team: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"Dana.{uuid.uuid4().hex[:6]}@Example.com"
    # A string groups claim is one group, not a list of characters.
    verified = {"email_verified": True}
    token = issuer.token("dana-sub", audience=AUDIENCE, email=email, groups=team, extra_claims=verified)
    me = requests.get(
        f"{oidc_gateway.url}/api/2.0/preview/scim/v2/Me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert me.status_code == 200, me.text
    assert me.json()["userName"] == email.casefold()
    assert search(oidc_gateway, token).status_code == 200
    # The stock client with the IdP's access token as MLFLOW_TRACKING_TOKEN.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", oidc_gateway.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    mlflow.set_tracking_uri(oidc_gateway.url)
    mlflow.set_workspace("team-b")
    try:
        assert isinstance(mlflow.search_experiments(), list)
    finally:
        mlflow.set_workspace(None)
    # Without the group the same user sees nothing of team-b, as if it did not exist.
    plain = issuer.token("dana-sub", audience=AUDIENCE, email=email, extra_claims=verified)
    hidden = search(oidc_gateway, plain)
    assert hidden.status_code == 404 and hidden.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def b64(document: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def test_forged_expired_and_misaddressed_tokens_are_refused(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, team: str
) -> None:
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "mallory", "exp": 4102444800, "groups": [team]}
    forged = [
        f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': issuer.kid})}.{b64(claims)}.",
        issuer.token("mallory", audience="someone-else", groups=[team]),
        issuer.token("mallory", audience=AUDIENCE, groups=[team], expires_in=-600),
        issuer.token("mallory", audience=AUDIENCE, groups=[team], header={"kid": "unknown-kid"}),
    ]
    for token in forged:
        response = search(oidc_gateway, token)
        assert response.status_code == 401, (token[:20], response.text)
        assert response.json()["error_code"] == "UNAUTHENTICATED"
        assert token not in response.text


def me(gateway: GatewayProcess, token: str) -> requests.Response:
    return requests.get(
        f"{gateway.url}/api/2.0/preview/scim/v2/Me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_an_unverified_or_missing_email_cannot_claim_an_existing_account(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, stack: Stack
) -> None:
    boss = f"boss.{uuid.uuid4().hex[:6]}@example.com"
    created = stack.http().post(
        f"{stack.url}/api/2.0/preview/scim/v2/Users", json={"userName": boss, "roles": [{"value": "account_admin"}]}
    )
    assert created.status_code == 201, created.text
    # People choose their preferred_username (and some IdPs their sub); neither names anyone here.
    claims = [
        {"email": "mallory@evil.example", "email_verified": False, "preferred_username": boss},
        {"preferred_username": boss},
        {"email": boss},  # the provider does not say it verified the address
        {"email": boss, "email_verified": "true"},  # nor is a string a verification
    ]
    for extra in claims:
        response = me(oidc_gateway, issuer.token(boss, audience=AUDIENCE, extra_claims=extra))
        assert response.status_code == 401, (extra, response.text)
        assert response.json()["error_code"] == "UNAUTHENTICATED"
    verified = me(oidc_gateway, issuer.token("b", audience=AUDIENCE, email=boss, extra_claims={"email_verified": True}))
    assert verified.status_code == 200 and verified.json()["userName"] == boss


def test_oidc_user_names_follow_the_user_name_rules(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, team: str, stack: Stack
) -> None:
    # The bootstrap admin's view-owner marker, a group's name, a SQL identifier breaking out: none is a user.
    for email in ("bootstrap,admin", team, "x`@example.com", "eve@example.com,admin"):
        token = issuer.token("u", audience=AUDIENCE, email=email, extra_claims={"email_verified": True})
        response = me(oidc_gateway, token)
        assert response.status_code == 401, (email, response.text)
        assert "not a valid user name" in response.json()["message"]
    users = stack.http().get(f"{stack.url}/api/2.0/preview/scim/v2/Users").json()["Resources"]
    assert not {u["userName"] for u in users} & {"bootstrap,admin", team, "x`@example.com"}


def test_id_tokens_are_not_access_tokens(oidc_gateway: GatewayProcess, issuer: OidcIssuer) -> None:
    email = f"id.{uuid.uuid4().hex[:6]}@example.com"
    good = {"email_verified": True}
    ok = me(
        oidc_gateway, issuer.token("s", audience=AUDIENCE, email=email, extra_claims=good, header={"typ": "at+jwt"})
    )
    assert ok.status_code == 200, ok.text
    id_tokens = [
        issuer.token("s", audience=AUDIENCE, email=email, extra_claims={**good, "nonce": "n-0S6_WzA2Mj"}),
        issuer.token("s", audience=AUDIENCE, email=email, extra_claims={**good, "at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}),
        issuer.token("s", audience=AUDIENCE, email=email, extra_claims=good, header={"typ": "id_token"}),
        issuer.token("s", audience=AUDIENCE, email=email, extra_claims=good, header={"typ": "logout+jwt"}),
    ]
    for token in id_tokens:
        response = me(oidc_gateway, token)
        assert response.status_code == 401, response.text
        assert "not an access token" in response.json()["message"]


def test_a_token_minted_with_an_oidc_token_expires_with_it(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, stack: Stack
) -> None:
    known = f"minter.{uuid.uuid4().hex[:6]}@example.com"  # a returning user, known to every replica
    assert stack.http().post(f"{stack.url}/api/2.0/preview/scim/v2/Users", json={"userName": known}).status_code == 201
    fresh = f"first.{uuid.uuid4().hex[:6]}@example.com"  # and one signing in for the first time
    for email in (known, fresh):
        token = issuer.token("m", audience=AUDIENCE, email=email, expires_in=120, extra_claims={"email_verified": True})
        exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["exp"]
        created = requests.post(
            f"{oidc_gateway.url}/api/2.0/token/create",
            json={"comment": "from the IdP", "lifetime_seconds": 90 * 24 * 3600},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert created.status_code == 200, (email, created.text)
        expiry = created.json()["token_info"]["expiry_time"]
        assert expiry != -1 and expiry <= exp * 1000, (email, expiry, exp)
