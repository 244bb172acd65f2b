"""OIDC bearer tokens against a real local issuer over HTTP: good tokens pass, forged and stale ones do not."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.authn.oidc import OidcIdentity, OidcVerifier
from gateway.core.config import OidcSettings
from gateway.core.errors import Unauthenticated
from gateway.devstack import free_port
from tests.support.oidc import OidcIssuer


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture
async def verifier(issuer: OidcIssuer) -> AsyncIterator[OidcVerifier]:
    verifier = OidcVerifier(OidcSettings(issuer=issuer.url, audience="fedgate"))
    yield verifier
    await verifier.close()


def signed(issuer: OidcIssuer, subject: str, **options: Any) -> str:
    """A token that names a user: a verified e-mail address (unless the test sets its own)."""
    extra = {"email_verified": True, **options.pop("extra_claims", {})}
    options.setdefault("email", f"{subject}@example.com")
    return issuer.token(subject, extra_claims=extra, **options)


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(issuer: OidcIssuer, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer.url, "sub": "u1", "aud": "fedgate", "iat": now, "exp": now + 300, **extra}


async def rejected(verifier: OidcVerifier, token: str, reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason) as excinfo:
        await verifier.verify(token)
    assert not token or token not in str(excinfo.value)


async def test_valid_token_gives_the_identity(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    token = signed(issuer, "u-42", email="  Alice@Example.COM ", groups=["ml-team", " admins ", "", 7])
    identity = await verifier.verify(token)
    exp = jwt.decode(token, issuer.key).claims["exp"]
    assert identity == OidcIdentity(
        username="alice@example.com",
        groups=frozenset({"ml-team", "admins"}),
        subject="u-42",
        expires_at=datetime.fromtimestamp(exp, UTC),
    )
    await verifier.verify(signed(issuer, "u-43"))
    assert issuer.jwks_requests == 1  # cached


async def test_a_string_groups_claim_is_one_group(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    identity = await verifier.verify(signed(issuer, "u1", email="a@b.c", groups="ml-team"))
    assert identity.groups == frozenset({"ml-team"})
    identity = await verifier.verify(signed(issuer, "u1", email="a@b.c", groups={"not": "a list"}))
    assert identity.groups == frozenset()


async def test_only_a_verified_email_names_the_user(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    """No fall-back to preferred_username or sub: names people choose would share the e-mail name space."""
    assert (await verifier.verify(signed(issuer, "s", email="Bob@Example.com"))).username == "bob@example.com"
    for extra in ({"preferred_username": "bob@example.com"}, {"email_verified": False}, {}):
        await rejected(verifier, issuer.token("bob@example.com", extra_claims=extra), "'email' claim")
    for verified in (False, None, "true", 1):
        token = issuer.token("s", email="bob@example.com", extra_claims={"email_verified": verified})
        await rejected(verifier, token, "not verified")
    await rejected(verifier, signed(issuer, "u1", email="x" * 260 + "@b.c"), "not a valid user name")


async def test_alg_none_is_rejected(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    token = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{b64(claims(issuer))}."
    await rejected(verifier, token, "algorithm")


async def test_hs256_signed_with_the_public_key_is_rejected(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    secret = issuer.key.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'})}.{b64(claims(issuer))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    await rejected(verifier, f"{signing_input}.{b64(signature)}", "algorithm")


def test_symmetric_algorithms_are_a_configuration_error(issuer: OidcIssuer) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        OidcVerifier(OidcSettings(issuer=issuer.url, audience="fedgate", algorithms=["RS256", "HS256"]))
    with pytest.raises(ValueError, match="audience"):
        OidcVerifier(OidcSettings(issuer=issuer.url))


async def test_claims_are_checked(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    await rejected(verifier, issuer.token("u1", expires_in=-120), "has expired")
    await rejected(verifier, issuer.token("u1", audience="someone-else"), r"\(audience\)")
    await rejected(verifier, issuer.token("u1", extra_claims={"iss": "https://evil.example"}), r"\(issuer\)")
    await rejected(verifier, issuer.token("u1", extra_claims={"nbf": int(time.time()) + 600}), "not valid yet")
    no_exp = claims(issuer)
    del no_exp["exp"]
    await rejected(verifier, jwt.encode({"alg": "RS256", "kid": issuer.kid}, no_exp, issuer.key), "exp")
    # Inside the leeway an expired token still passes.
    await verifier.verify(signed(issuer, "u1", expires_in=-30))
    # A list audience passes when it names this gateway.
    await verifier.verify(signed(issuer, "u1", extra_claims={"aud": ["other", "fedgate"]}))


async def test_a_different_key_with_the_same_kid_is_rejected(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    forger = RSAKey.generate_key(2048)
    token = jwt.encode({"alg": "RS256", "kid": issuer.kid}, claims(issuer), forger)
    await rejected(verifier, token, "signature is not valid")


async def test_a_token_without_kid_needs_a_single_published_key(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    token = jwt.encode({"alg": "RS256"}, claims(issuer, email="a@b.c", email_verified=True), issuer.key)
    assert (await verifier.verify(token)).username == "a@b.c"


async def test_unknown_kid_refetches_once_per_window(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    await verifier.verify(signed(issuer, "u1"))
    assert issuer.jwks_requests == 1
    await rejected(verifier, issuer.token("u1", header={"kid": "nope"}), "does not publish")
    assert issuer.jwks_requests == 2
    await rejected(verifier, issuer.token("u1", header={"kid": "nope-2"}), "does not publish")
    assert issuer.jwks_requests == 2


async def test_a_rotated_key_is_picked_up_with_one_refetch(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    await verifier.verify(signed(issuer, "u1"))
    old = issuer.token("u1")
    issuer.rotate()
    assert issuer.kid != "k1"
    assert (await verifier.verify(signed(issuer, "u2"))).subject == "u2"
    assert issuer.jwks_requests == 2
    await rejected(verifier, old, "does not publish")  # dropped from the JWKS; the window holds off a refetch
    assert issuer.jwks_requests == 2


async def test_discovery_must_name_the_configured_issuer(issuer: OidcIssuer) -> None:
    verifier = OidcVerifier(OidcSettings(issuer=issuer.url + "/", audience="fedgate"))
    try:
        await rejected(verifier, issuer.token("u1"), "different issuer")
        assert issuer.jwks_requests == 0
    finally:
        await verifier.close()


async def test_an_unreachable_provider_is_reported_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    verifier = OidcVerifier(OidcSettings(issuer=f"http://127.0.0.1:{free_port()}", audience="fedgate"))
    token = f"{b64({'alg': 'RS256', 'kid': 'k1'})}.{b64({'sub': 'u1'})}.c2ln"
    try:
        await rejected(verifier, token, "could not be reached")
    finally:
        await verifier.close()
    assert "OIDC fetch" in caplog.text and token not in caplog.text


async def test_malformed_tokens_are_rejected(verifier: OidcVerifier) -> None:
    for token in ("", "abc", "a.b.c", "a.b.c.d", f"{b64(b'[1]')}.e30.", "x" * 20000):
        await rejected(verifier, token, "malformed")


async def test_keys_at_hand_are_used_while_the_provider_is_down(issuer: OidcIssuer) -> None:
    """Once the cache time is up and the provider cannot be reached, the keys fetched before still check tokens
    (for a bounded time), rather than every token being refused and every request trying the provider again."""
    asked: list[str] = []

    async def fetch(url: str) -> dict[str, Any]:
        asked.append(url)
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            answer.raise_for_status()
            document: dict[str, Any] = await answer.json(content_type=None)
            return document

    settings = OidcSettings(issuer=issuer.url, audience="fedgate", jwks_cache_seconds=1)
    verifier = OidcVerifier(settings, fetch_json=fetch)
    token = signed(issuer, "u1")
    try:
        assert (await verifier.verify(token)).username == "u1@example.com"
        issuer.stop()
        await asyncio.sleep(1.1)  # the cached keys are older than the cache time now
        assert (await verifier.verify(token)).username == "u1@example.com"
        tried = len(asked)
        for _ in range(5):
            assert (await verifier.verify(token)).username == "u1@example.com"
        assert len(asked) == tried  # not asked again before jwks_min_refetch_seconds
    finally:
        await verifier.close()


async def test_keys_named_in_the_token_header_are_never_used(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    """A `jwk`, `jku` or `x5u` header names a key of the token's own choosing: only the provider's keys count."""
    mallory = RSAKey.generate_key(2048, parameters={"kid": issuer.kid})
    body = claims(issuer, email="u1@example.com", email_verified=True)
    for header in (
        {"jwk": mallory.as_dict(private=False)},
        {"jku": f"http://127.0.0.1:{free_port()}/jwks"},
        {"x5u": f"http://127.0.0.1:{free_port()}/cert.pem"},
    ):
        token = jwt.encode({"alg": "RS256", "kid": issuer.kid, **header}, body, mallory, algorithms=["RS256"])
        with pytest.raises(Unauthenticated):
            await verifier.verify(token)


async def test_an_id_token_of_an_unexpected_type_is_refused_not_an_error(
    issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    """The sign-in callback's ID token: a `typ` header that is not a JWT type, or not a string, is refused."""
    body = claims(issuer, aud="client", nonce="n1", email="u1@example.com", email_verified=True)
    assert (await verifier.verify_id_token(jwt.encode({"alg": "RS256", "kid": issuer.kid}, body, issuer.key),
                                           "client", "n1")).username == "u1@example.com"  # fmt: skip
    for typ in (1, ["JWT"], {"a": 1}, None, "at+jwt"):
        # Signed by hand: joserfc refuses to write a `typ` that is not a string, a provider's library may not.
        signing_input = f"{b64({'alg': 'RS256', 'kid': issuer.kid, 'typ': typ})}.{b64(body)}"
        signature = issuer.key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{b64(signature)}"
        with pytest.raises(Unauthenticated, match="unexpected type"):
            await verifier.verify_id_token(token, "client", "n1")


async def test_an_id_token_for_several_audiences_needs_this_client_as_its_authorized_party(
    issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    """OIDC Core §3.1.3.7, strictly: an ID token that also names another audience signs in only with
    `azp` = this client; an `azp` that is present (null too) must be this client whatever the audience."""
    person = {"nonce": "n1", "email": "u1@example.com", "email_verified": True}

    async def sign_in(**extra: Any) -> OidcIdentity:
        return await verifier.verify_id_token(issuer.sign(claims(issuer, **person, **extra)), "client", "n1")

    for refused in (
        {"aud": ["client", "another-client"]},
        {"aud": ["another-client", "client"]},
        {"aud": ["client", "fedgate"]},  # the gateway's own API audience is another audience too
        {"aud": ["client", "another-client"], "azp": "another-client"},
        {"aud": ["client", "another-client"], "azp": None},
        {"aud": ["client", "another-client"], "azp": ["client"]},
        {"aud": "client", "azp": None},
        {"aud": "client", "azp": "another-client"},
    ):
        with pytest.raises(Unauthenticated, match=r"\(azp\)"):
            await sign_in(**refused)
    for accepted in (
        {"aud": "client"},
        {"aud": ["client"]},
        {"aud": ["client", "client"]},
        {"aud": "client", "azp": "client"},
        {"aud": ["client", "another-client"], "azp": "client"},
    ):
        assert (await sign_in(**accepted)).username == "u1@example.com", accepted
