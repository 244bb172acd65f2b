"""The bootstrap admin token, as bearer and as basic-auth password; malformed credentials never get in."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.authn.service import BOOTSTRAP_ADMIN, Authenticator, check_admin_token
from gateway.authz.live import LivePolicy
from gateway.core.errors import Unauthenticated
from gateway.db.engine import make_engine, make_sessionmaker

TOKEN = "a-very-random-admin-token"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def no_views(session: AsyncSession) -> list[str]:
    return []


def authenticator() -> Authenticator:
    # Nothing listens on this database: none of these cases may need it.
    sessionmaker = make_sessionmaker(make_engine("postgresql://127.0.0.1:9/none"))
    return Authenticator(TOKEN, LivePolicy(sessionmaker, views=no_views), sessionmaker)


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer  {TOKEN} ", basic("anyone", TOKEN)])
async def test_admin_token_authenticates(header: str) -> None:
    assert await authenticator().authenticate(header) == BOOTSTRAP_ADMIN


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", f"Bearer {TOKEN}x", f"Token {TOKEN}", basic(TOKEN, ""), "Basic !!!", basic("u", "x")],
)
async def test_anything_else_is_refused(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        await authenticator().authenticate(header)


def test_a_weak_or_missing_admin_token_stops_start_up() -> None:
    with pytest.raises(ValueError, match="FEDGATE_ADMIN_TOKEN"):
        check_admin_token("")
    with pytest.raises(ValueError):
        check_admin_token("short")
