"""OIDC bearer tokens against a real local issuer over HTTP: good tokens pass, forged and stale ones do not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.authn.oidc import OidcIdentity, OidcVerifier
from gateway.config import OidcSettings
from gateway.devstack import OidcIssuer, free_port
from gateway.errors import Unauthenticated


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
    token = issuer.token("u-42", email="  Alice@Example.COM ", groups=["ml-team", " admins ", "", 7])
    identity = await verifier.verify(token)
    assert identity == OidcIdentity(
        username="alice@example.com", groups=frozenset({"ml-team", "admins"}), subject="u-42"
    )
    await verifier.verify(issuer.token("u-43"))
    assert issuer.jwks_requests == 1  # cached


async def test_a_string_groups_claim_is_one_group(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    identity = await verifier.verify(issuer.token("u1", email="a@b.c", groups="ml-team"))
    assert identity.groups == frozenset({"ml-team"})
    identity = await verifier.verify(issuer.token("u1", email="a@b.c", groups={"not": "a list"}))
    assert identity.groups == frozenset()


async def test_username_falls_back_to_preferred_username_then_sub(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    token = issuer.token("Sub-1", extra_claims={"preferred_username": "Bob"})
    assert (await verifier.verify(token)).username == "bob"
    assert (await verifier.verify(issuer.token("Sub-1"))).username == "sub-1"
    unverified = issuer.token("Sub-1", email="boss@corp.example", extra_claims={"email_verified": False})
    assert (await verifier.verify(unverified)).username == "sub-1"
    await rejected(verifier, issuer.token("u1", email="x" * 256), "no usable username")


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
    await verifier.verify(issuer.token("u1", expires_in=-30))
    # A list audience passes when it names this gateway.
    await verifier.verify(issuer.token("u1", extra_claims={"aud": ["other", "fedgate"]}))


async def test_a_different_key_with_the_same_kid_is_rejected(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    forger = RSAKey.generate_key(2048)
    token = jwt.encode({"alg": "RS256", "kid": issuer.kid}, claims(issuer), forger)
    await rejected(verifier, token, "signature is not valid")


async def test_a_token_without_kid_needs_a_single_published_key(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    token = jwt.encode({"alg": "RS256"}, claims(issuer, email="a@b.c"), issuer.key)
    assert (await verifier.verify(token)).username == "a@b.c"


async def test_unknown_kid_refetches_once_per_window(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    await verifier.verify(issuer.token("u1"))
    assert issuer.jwks_requests == 1
    await rejected(verifier, issuer.token("u1", header={"kid": "nope"}), "does not publish")
    assert issuer.jwks_requests == 2
    await rejected(verifier, issuer.token("u1", header={"kid": "nope-2"}), "does not publish")
    assert issuer.jwks_requests == 2


async def test_a_rotated_key_is_picked_up_with_one_refetch(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    await verifier.verify(issuer.token("u1"))
    old = issuer.token("u1")
    issuer.rotate()
    assert issuer.kid != "k1"
    assert (await verifier.verify(issuer.token("u2"))).subject == "u2"
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
