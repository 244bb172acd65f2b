"""OIDC: the JWKS comes over https under an https issuer, and ID tokens are not access tokens.

A real https issuer (a TLS server with a certificate made here, whose discovery document points at a
JWKS) and the real local issuer's keys and tokens; the verifier fetches over aiohttp, trusting that
certificate the way a deployment trusts its IdP's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.authn.oidc import OidcVerifier
from gateway.authn.sign_in import ProviderSignIn
from gateway.core.config import OidcSettings
from gateway.core.errors import Unauthenticated
from tests.support.oidc import OidcIssuer


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def keys() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture
def https_issuer(tmp_path: Path) -> Iterator[OidcIssuer]:
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    issuer = OidcIssuer(tls=context).start()
    issuer.cert = cert  # type: ignore[attr-defined]
    yield issuer
    issuer.stop()


@pytest.fixture
async def https_verifier(https_issuer: OidcIssuer) -> AsyncIterator[OidcVerifier]:
    trust = ssl.create_default_context(cafile=str(https_issuer.cert))  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as session:

        async def fetch_json(url: str) -> dict[str, Any]:
            async with session.get(url, ssl=trust) as response:
                response.raise_for_status()
                document: dict[str, Any] = await response.json(content_type=None)
                return document

        yield OidcVerifier(OidcSettings(issuer=https_issuer.url, audience="fedgate"), fetch_json=fetch_json)


def token_for(keys: OidcIssuer, iss: str, **options: Any) -> str:
    extra = {"iss": iss, "email_verified": True, **options.pop("extra_claims", {})}
    return keys.token("s", email="user@example.com", extra_claims=extra, **options)


async def test_the_jwks_of_an_https_issuer_must_come_over_https(
    keys: OidcIssuer, https_issuer: OidcIssuer, https_verifier: OidcVerifier
) -> None:
    # Plain http under an https issuer: anyone on the path could hand out keys of their own.
    https_issuer.jwks_uri = f"{keys.url}/jwks"
    with pytest.raises(Unauthenticated, match="could not be reached"):
        await https_verifier.verify(token_for(https_issuer, https_issuer.url))
    assert keys.jwks_requests == 0
    # Its own keys over https are fine (another host would be too: IdPs often serve keys elsewhere).
    https_issuer.jwks_uri = None
    identity = await https_verifier.verify(token_for(https_issuer, https_issuer.url))
    assert identity.username == "user@example.com" and https_issuer.jwks_requests == 1


@pytest.fixture
async def verifier(keys: OidcIssuer) -> AsyncIterator[OidcVerifier]:
    verifier = OidcVerifier(OidcSettings(issuer=keys.url, audience="fedgate"))
    yield verifier
    await verifier.close()


@pytest.mark.parametrize(
    ("extra", "header"),
    [
        ({"nonce": "n-0S6_WzA2Mj"}, {}),
        ({"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}, {}),
        ({"c_hash": "LDktKdoQak3Pk0cnXxCltA"}, {}),
        ({}, {"typ": "id_token"}),
        ({}, {"typ": "logout+jwt"}),
    ],
)
async def test_an_id_token_is_not_an_access_token(
    keys: OidcIssuer, verifier: OidcVerifier, extra: dict[str, Any], header: dict[str, Any]
) -> None:
    token = token_for(keys, keys.url, extra_claims=extra, header=header)
    with pytest.raises(Unauthenticated, match="not an access token") as excinfo:
        await verifier.verify(token)
    assert token not in str(excinfo.value)


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "JWT", "jwt", None])
async def test_access_token_types_pass(keys: OidcIssuer, verifier: OidcVerifier, typ: str | None) -> None:
    token = token_for(keys, keys.url, header={"typ": typ} if typ else {})
    assert (await verifier.verify(token)).username == "user@example.com"


async def test_an_https_issuers_sign_in_endpoints_must_be_https(
    keys: OidcIssuer, https_issuer: OidcIssuer, https_verifier: OidcVerifier
) -> None:
    """The token endpoint receives the code, the PKCE verifier and the client secret; the authorization and
    end-session endpoints, the person's browser. Under an https issuer a discovery document naming plain http
    for one of them would hand those to anyone on the path: the sign-in is refused instead, and nothing is sent."""
    keys.register("ui", "https://gateway.example/fedgate/sign-in/callback", "ui-secret")
    sign_in = ProviderSignIn(https_verifier, "ui", "ui-secret", "openid email")
    try:
        https_issuer.endpoints = {"token_endpoint": f"{keys.url}/token"}
        attempt, url = await sign_in.start("https://gateway.example", "/")
        assert url.startswith(https_issuer.url + "/authorize?")
        with pytest.raises(Unauthenticated, match="publishes no usable token_endpoint"):
            await sign_in.finish("https://gateway.example", attempt, "a-code", attempt.state)
        assert keys.token_requests == []
        https_issuer.endpoints = {
            "authorization_endpoint": f"{keys.url}/authorize",
            "end_session_endpoint": f"{keys.url}/logout",
        }
        https_verifier._fetched_at = -float("inf")  # read the discovery document anew
        with pytest.raises(Unauthenticated, match="publishes no usable authorization_endpoint"):
            await sign_in.start("https://gateway.example", "/")
        assert await sign_in.sign_out_url("https://gateway.example/fedgate/sign-in") is None
        # Its own endpoints over https are used.
        https_issuer.endpoints = {}
        https_verifier._fetched_at = -float("inf")
        assert (await sign_in.sign_out_url("https://gateway.example/")) == (
            f"{https_issuer.url}/logout?client_id=ui&post_logout_redirect_uri=https%3A%2F%2Fgateway.example%2F"
        )
    finally:
        await sign_in.close()
