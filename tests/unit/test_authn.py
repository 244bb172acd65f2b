"""The bootstrap admin token, as bearer and as basic-auth password; nothing else gets in."""

from __future__ import annotations

import base64

import pytest

from gateway.authn.service import BOOTSTRAP_ADMIN, Authenticator
from gateway.errors import Unauthenticated

TOKEN = "a-very-random-admin-token"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer  {TOKEN} ", basic("anyone", TOKEN)])
def test_admin_token_authenticates(header: str) -> None:
    assert Authenticator(TOKEN).authenticate(header) == BOOTSTRAP_ADMIN


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", f"Bearer {TOKEN}x", f"Token {TOKEN}", basic(TOKEN, ""), "Basic !!!", basic("u", "x")],
)
def test_anything_else_is_refused(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        Authenticator(TOKEN).authenticate(header)


def test_a_weak_or_missing_admin_token_stops_start_up() -> None:
    with pytest.raises(ValueError, match="FEDGATE_ADMIN_TOKEN"):
        Authenticator("")
    with pytest.raises(ValueError):
        Authenticator("short")
