"""The bootstrap admin token, as bearer and as basic-auth password; malformed credentials never get in."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


def scope(method: str, authorization: str, **headers: str) -> dict[str, object]:
    raw = [(b"authorization", authorization.encode()), (b"host", b"gateway.example:5000")]
    raw += [(name.lower().replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "method": method, "headers": raw, "scheme": "http", "path": "/api/2.0/mlflow/x"}


async def passes(request: dict[str, object]) -> bool:
    from gateway.authn.browser import BrowserOrigin
    from gateway.authn.middleware import AuthenticationMiddleware
    from gateway.core.errors import PermissionDenied

    reached: list[object] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append(scope)

    middleware = AuthenticationMiddleware(app, authenticator(), browser=BrowserOrigin())  # type: ignore[arg-type]
    try:
        await middleware(request, None, None)  # type: ignore[arg-type]
    except PermissionDenied:
        return False
    return bool(reached)


async def test_a_write_with_basic_credentials_a_browser_says_came_from_another_site_is_refused() -> None:
    """A browser sends Basic credentials it was once given with every request, another site's forms too."""
    credentials = basic("token", TOKEN)
    assert await passes(scope("POST", credentials))  # a client: neither Sec-Fetch-Site nor Origin
    assert await passes(scope("POST", credentials, Sec_Fetch_Site="same-origin"))
    assert await passes(scope("POST", credentials, Origin="http://gateway.example:5000"))
    assert await passes(scope("GET", credentials, Sec_Fetch_Site="cross-site"))  # a read gives the other site nothing
    assert not await passes(scope("POST", credentials, Sec_Fetch_Site="cross-site"))
    assert not await passes(scope("DELETE", credentials, Sec_Fetch_Site="same-site"))
    assert not await passes(scope("POST", credentials, Origin="http://attacker.example"))
    assert not await passes(scope("POST", credentials, Origin="null"))
    # A Bearer header is never added by a browser, and another site's page can set it only through CORS.
    assert await passes(scope("POST", f"Bearer {TOKEN}", Sec_Fetch_Site="cross-site"))


WHITE = st.sampled_from(["", " ", "  ", "\t", "\xa0", "\x85", "\x1c", "\r\n "])


@settings(max_examples=400, deadline=None)
@given(
    before=WHITE,
    scheme=st.sampled_from(["Basic", "basic", "BASIC", "bAsIc", "Bearer", "bearer", "Basics", "Basi", "Token"]),
    between=st.sampled_from([" ", "  ", "\t", "\xa0", " \t ", ""]),
    after=WHITE,
    encoded=st.booleans(),
)
async def test_whatever_authenticates_as_basic_is_held_to_the_browser_rule(
    before: str, scheme: str, between: str, after: str, encoded: bool
) -> None:
    """One reading of the header: credentials that authenticate by their Basic encoding are refused on a
    cross-site write (a browser adds them by itself), and a bare token that authenticates is not."""
    value = base64.b64encode(f"anyone:{TOKEN}".encode()).decode() if encoded else TOKEN
    header = f"{before}{scheme}{between}{value}{after}"
    try:
        await authenticator().authenticate(header)
    except Unauthenticated:
        return  # refused before any rule of the browser's applies
    raw = [(b"authorization", header.encode("latin-1")), (b"host", b"gateway.example:5000")]
    request = {"type": "http", "method": "POST", "headers": [*raw, (b"sec-fetch-site", b"cross-site")]}
    assert await passes({**request, "scheme": "http", "path": "/api/2.0/mlflow/x"}) is not encoded, header


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(["__Host-fedgate_session", "__Host-fedgate_sign_in", "fedgate_session"]),
    before=st.text(st.characters(min_codepoint=0, max_codepoint=255, exclude_characters=";="), max_size=3),
    after=st.text(st.characters(min_codepoint=0, max_codepoint=255, exclude_characters=";="), max_size=3),
)
def test_a_cookie_is_read_only_under_its_exact_name(name: str, before: str, after: str) -> None:
    """The browser sends a cookie's name byte for byte (spaces and tabs around it aside). A name with any other
    byte around the gateway's is another cookie: `\\x85__Host-fedgate_session`, which a plain-http sibling host
    can set since it does not start with `__Host-`, is never read as the gateway's `__Host-` cookie."""
    from gateway.authn.browser import cookie_values

    sent = f"{before}{name}{after}"
    scope = {"headers": [(b"cookie", f"other=1; {sent}=planted; last=2".encode("latin-1"))]}
    exact = sent.strip(" \t") == name
    assert cookie_values(scope, name) == (["planted"] if exact else []), repr(sent)
