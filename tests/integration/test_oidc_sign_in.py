"""OIDC access tokens from a real local issuer, end to end through a gateway process configured for it."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests

from gateway.devstack import GatewayProcess, OidcIssuer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack

pytestmark = pytest.mark.integration
AUDIENCE = "fedgate-tests"


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def oidc_gateway(stack: Stack, issuer: OidcIssuer, workdir: Path) -> Iterator[GatewayProcess]:
    env = {**GATEWAY_ENV, "FEDGATE_OIDC_ISSUER": issuer.url, "FEDGATE_OIDC_AUDIENCE": AUDIENCE}
    gateway = GatewayProcess(workdir / "fedgate.toml", env).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def team(stack: Stack) -> str:
    """A gateway group that may read workspace team-b; identity-provider groups of that name count."""
    name = f"oidc-team-{uuid.uuid4().hex[:6]}"
    admin = stack.http(token=ADMIN_TOKEN)
    created = admin.post(f"{stack.url}/api/2.0/preview/scim/v2/Groups", json={"displayName": name})
    assert created.status_code == 201, created.text
    granted = admin.patch(
        f"{stack.url}/api/2.0/permissions/workspaces/team-b",
        json={"access_control_list": [{"group_name": name, "permission_level": "CAN_READ"}]},
    )
    assert granted.status_code == 200, granted.text
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
    token = issuer.token("dana-sub", audience=AUDIENCE, email=email, groups=team)
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
    plain = issuer.token("dana-sub", audience=AUDIENCE, email=email)
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
