"""OIDC bearer tokens: discovery, a cached JWKS with a rate-limited refetch on an unknown kid, and claim checks.

Only asymmetric algorithms are accepted and only public asymmetric keys are taken from the JWKS, so neither
`alg: none` nor an HMAC signed with the provider's public key can pass. The JWKS is fetched over https
whenever the issuer is https (an http `jwks_uri` would let anyone on the path substitute the keys); a
plain-http issuer, which configuration allows only on loopback, may publish its JWKS on loopback only. The
same rule holds for the endpoints of browser sign-in (`endpoint_allowed`, authn/sign_in.py).

Only access tokens are accepted: a `typ` header (when present) other than `at+jwt` (RFC 9068) or `JWT` is
refused, and so is a token carrying a claim only ID tokens carry (`nonce`, `at_hash`, `c_hash`, `s_hash`):
an ID token is proof of a sign-in at some client, not a credential for this API.

The user is named by the configured claim and nothing else: with `email`, only when the provider asserts
`email_verified: true`. There is no fall-back to `preferred_username` or `sub` (a name people may choose
would share the e-mail name space and could claim an existing account). The name must be a valid user
name (`gateway.principals.names`: an e-mail address), case-folded once.

Every failure is `Unauthenticated` with a reason safe to show the caller; the token itself is never logged
or echoed.

Browser sign-in (authn/sign_in.py) reads the provider's endpoints from the same discovery document and has
ID tokens checked here too (`verify_id_token`): the same keys, algorithms and claim rules, but the audience
is the gateway's OIDC client and the nonce must be the one of the sign-in. The authorized party (`azp`) must
be that client whenever the claim is present, and must be present when the ID token names any other audience
too (OIDC Core §3.1.3.7). Access tokens are held to their own rule (RFC 9068 §4): `aud` must contain the
gateway's audience; other audiences may be listed, and `azp`, when present, names whichever client asked for
the token (a CLI, a notebook), so it is not compared with the UI's client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet

from gateway.core.config import LOOPBACK_HOSTS, OidcSettings, check_oidc
from gateway.core.errors import Unauthenticated
from gateway.principals.names import canonical, valid

log = logging.getLogger(__name__)

FetchJson = Callable[[str], Awaitable[dict[str, Any]]]
MAX_TOKEN_CHARS = 16 * 1024
# While the provider cannot be reached, keys fetched within this long are still used (it may have rotated one
# out meanwhile, but a provider that is down rotates nothing); older ones are not.
JWKS_STALE_SECONDS = 3600
# `typ` headers of access tokens (RFC 9068 §2.1; plain `JWT` from providers that predate it), compared
# case-insensitively with an optional `application/` prefix (RFC 7515 §4.1.9).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "jwt"})
# Claims that only ID tokens carry (OpenID Connect Core §2, §3.3.2.11): a token with one is an ID token.
ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash")
_PUBLIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
_UNREACHABLE = "The identity provider could not be reached to verify the token."
_MALFORMED = "The OIDC token is malformed."
_BAD_ALG = "The OIDC token is signed with an algorithm this gateway does not accept."
_UNKNOWN_KEY = "The OIDC token is signed with a key the identity provider does not publish."
_NOT_ACCESS_TOKEN = "The OIDC token is not an access token (an ID token or another kind of JWT); send an access token."
_CLAIM_REASONS = {
    "iss": "The OIDC token was issued by a different identity provider (issuer).",
    "aud": "The OIDC token was not issued for this gateway (audience).",
    "nbf": "The OIDC token is not valid yet.",
    "iat": "The OIDC token was issued in the future.",
}


@dataclass(frozen=True)
class OidcIdentity:
    username: str
    groups: frozenset[str]
    subject: str
    expires_at: datetime | None = None  # the token's `exp`


class OidcVerifier:
    """Verifies bearer tokens of one issuer for one audience; one instance per process, safe for concurrent use."""

    def __init__(self, settings: OidcSettings, fetch_json: FetchJson | None = None) -> None:
        check_oidc(settings)  # ConfigError is a ValueError
        if not settings.enabled:
            raise ValueError("oidc.issuer: OIDC is not configured")
        self.settings = settings
        self._algorithms = list(settings.algorithms)
        self._fetch_json = fetch_json or self._aiohttp_json
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = -float("inf")  # monotonic time of the last JWKS fetch
        self._refetched_at = -float("inf")  # ... and of the last one forced by an unknown kid
        self._failed_at = -float("inf")  # ... and of the last one that failed
        self._jwks_uri: str | None = None
        self._metadata: dict[str, Any] = {}  # the discovery document

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, token: str) -> OidcIdentity:
        header = _header(token)
        if not _is_access_token_type(header.get("typ", "JWT")):
            raise Unauthenticated(_NOT_ACCESS_TOKEN)
        keys = await self._keys_for(header)
        claims = self._decode(token, keys, self.settings.audience)
        if any(name in claims for name in ID_TOKEN_CLAIMS):
            raise Unauthenticated(_NOT_ACCESS_TOKEN)
        return _identity(claims, self.settings)

    async def verify_id_token(self, token: str, client_id: str, nonce: str) -> OidcIdentity:
        """An ID token the provider's token endpoint gave the gateway's client at sign-in (OIDC Core §3.1.3.7)."""
        header = _header(token)
        typ = header.get("typ", "JWT")
        if not isinstance(typ, str) or typ.lower() not in ("jwt", "application/jwt", "id_token+jwt"):
            raise Unauthenticated("The identity provider's ID token has an unexpected type.")
        keys = await self._keys_for(header)
        claims = self._decode(token, keys, client_id)
        _check_authorized_party(claims, client_id)
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
            raise Unauthenticated("The ID token does not answer this sign-in (nonce).")
        return _identity(claims, self.settings)

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched with the keys, cached as long)."""
        await self._current_keys()
        return self._metadata

    async def _keys_for(self, header: dict[str, Any]) -> KeySet:
        started = time.monotonic()
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Unauthenticated(_BAD_ALG)
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated(_MALFORMED)
        keys = await self._current_keys()
        if not _has_key(keys, kid) and self._fetched_at < started:
            keys = await self._refetch_for(kid)
        if not _has_key(keys, kid):
            raise Unauthenticated(_UNKNOWN_KEY)
        return keys

    def _decode(self, token: str, keys: KeySet, audience: str) -> dict[str, Any]:
        registry = jwt.JWTClaimsRegistry(
            leeway=self.settings.leeway_seconds,
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            claims = jwt.decode(token, keys, algorithms=self._algorithms).claims
            registry.validate(claims)
        except ExpiredTokenError:
            raise Unauthenticated("The OIDC token has expired.") from None
        except MissingClaimError as exc:
            raise Unauthenticated(f"The OIDC token lacks required claims: {exc.claim}.") from None
        except ClaimError as exc:
            reason = _CLAIM_REASONS.get(exc.claim, f"The OIDC token has an invalid '{exc.claim}' claim.")
            raise Unauthenticated(reason) from None
        except BadSignatureError:
            raise Unauthenticated("The OIDC token signature is not valid.") from None
        except UnsupportedAlgorithmError:
            raise Unauthenticated(_BAD_ALG) from None
        except InvalidKeyIdError:
            raise Unauthenticated(_UNKNOWN_KEY) from None
        except (JoseError, ValueError, TypeError, KeyError, RecursionError):
            raise Unauthenticated(_MALFORMED) from None
        return claims

    async def _current_keys(self) -> KeySet:
        """The cached JWKS, fetched (once, for all waiting requests) when missing or older than the cache time.

        When the fetch fails, the keys held are used on (up to `JWKS_STALE_SECONDS` after they were fetched) and
        the provider is not asked again before `jwks_min_refetch_seconds`: otherwise every request, an anonymous
        caller's made-up token too, would queue behind another attempt to reach a provider that is down, and
        every token would be refused though the keys to check it were at hand. Without such keys every request
        tries the provider, as before.
        """
        if self._keys is not None and time.monotonic() - self._fetched_at < self.settings.jwks_cache_seconds:
            return self._keys
        async with self._lock:
            now = time.monotonic()
            if self._keys is not None and now - self._fetched_at < self.settings.jwks_cache_seconds:
                return self._keys
            # With keys to fall back on, a provider that just failed is left alone for a while; without, each
            # request tries it (nothing else could check the token).
            if not self._usable_stale_keys() or now - self._failed_at >= self.settings.jwks_min_refetch_seconds:
                try:
                    await self._fetch_keys(discover=True)
                except Unauthenticated:
                    self._failed_at = time.monotonic()
                    if not self._usable_stale_keys():
                        raise
                    log.warning("OIDC keys could not be refreshed; the keys fetched before are used meanwhile")
                else:
                    assert self._keys is not None
                    return self._keys
            if not self._usable_stale_keys():
                raise Unauthenticated(_UNREACHABLE)
            assert self._keys is not None
            return self._keys

    def _usable_stale_keys(self) -> bool:
        return self._keys is not None and time.monotonic() - self._fetched_at < JWKS_STALE_SECONDS

    async def _refetch_for(self, kid: str | None) -> KeySet:
        """One JWKS refetch for an unknown kid, at most once per `jwks_min_refetch_seconds` across all requests."""
        async with self._lock:
            assert self._keys is not None
            now = time.monotonic()
            if not _has_key(self._keys, kid) and now - self._refetched_at >= self.settings.jwks_min_refetch_seconds:
                self._refetched_at = now
                await self._fetch_keys(discover=False)
            return self._keys

    async def _fetch_keys(self, *, discover: bool) -> None:
        if discover or self._jwks_uri is None:
            issuer = self.settings.issuer
            doc = await self._fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
            if doc.get("issuer") != issuer:
                log.warning("OIDC discovery at %s names issuer %r, not the configured one", issuer, doc.get("issuer"))
                raise Unauthenticated("The identity provider's discovery document names a different issuer.")
            jwks_uri = doc.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not endpoint_allowed(issuer, jwks_uri):
                log.warning(
                    "OIDC discovery at %s has no usable jwks_uri (https is required under an https issuer)", issuer
                )
                raise Unauthenticated(_UNREACHABLE)
            self._jwks_uri = jwks_uri
            self._metadata = doc
        jwks = await self._fetch(self._jwks_uri)
        raw = jwks.get("keys")
        public = [k for k in raw if _is_public_signing_key(k)] if isinstance(raw, list) else []
        try:
            self._keys = KeySet.import_key_set({"keys": public})
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            log.warning("OIDC JWKS at %s has no usable signing key: %s", self._jwks_uri, type(exc).__name__)
            raise Unauthenticated(_UNREACHABLE) from None
        self._fetched_at = time.monotonic()

    async def _fetch(self, url: str) -> dict[str, Any]:
        try:
            doc = await self._fetch_json(url)
        except Exception as exc:
            log.warning("OIDC fetch of %s failed: %s: %s", url, type(exc).__name__, exc)
            raise Unauthenticated(_UNREACHABLE) from None
        if not isinstance(doc, dict):
            log.warning("OIDC fetch of %s did not return a JSON object", url)
            raise Unauthenticated(_UNREACHABLE)
        return doc

    async def _aiohttp_json(self, url: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with self._session.get(url, headers={"Accept": "application/json"}) as response:
            response.raise_for_status()
            doc: dict[str, Any] = await response.json(content_type=None)
            return doc


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key; the signature check is joserfc's."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise Unauthenticated(_MALFORMED)
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        # RecursionError: a header nested some thousand levels deep (Python's parser has no error of its own for
        # that), which anyone may send; a 500 before, not charged to the address's anonymous-denial budget.
        raise Unauthenticated(_MALFORMED) from None
    if not isinstance(header, dict):
        raise Unauthenticated(_MALFORMED)
    return header


def _is_public_signing_key(key: object) -> bool:
    return isinstance(key, dict) and key.get("kty") in _PUBLIC_KEY_TYPES and key.get("use", "sig") == "sig"


def _has_key(keys: KeySet, kid: str | None) -> bool:
    """A token without a kid is only accepted when the provider publishes exactly one key."""
    if kid is None:
        return len(keys.keys) == 1
    return any(key.kid == kid for key in keys.keys)


def _is_access_token_type(typ: object) -> bool:
    if not isinstance(typ, str):
        return False
    typ = typ.strip().lower()
    return typ.removeprefix("application/") in ACCESS_TOKEN_TYPES


def endpoint_allowed(issuer: str, endpoint: str) -> bool:
    """Whether the gateway (or a browser it sends) may use an endpoint of the discovery document: https under an
    https issuer; under a plain-http (loopback) issuer, http(s) on loopback only. No credentials or fragment."""
    try:
        issuer_url, url = urlsplit(issuer), urlsplit(endpoint)
        host = url.hostname
    except ValueError:
        return False
    if not host or url.username is not None or url.password is not None or url.fragment:
        return False
    if url.scheme == "https":
        return True
    return url.scheme == "http" and issuer_url.scheme == "http" and host in LOOPBACK_HOSTS


def _check_authorized_party(claims: dict[str, Any], client_id: str) -> None:
    """OIDC Core §3.1.3.7, held strictly: an `azp` claim, when there is one (`null` too), must be the client; an
    ID token naming any audience besides the client must carry that `azp`. Otherwise a token the provider issued
    to another client, which merely lists this one among its audiences, would sign a person in here."""
    if "azp" in claims:
        if claims["azp"] != client_id:
            raise Unauthenticated("The ID token was issued to another client (azp).")
        return
    audience = claims.get("aud")
    if isinstance(audience, list) and any(one != client_id for one in audience):
        raise Unauthenticated("The ID token names several audiences but not this client as its authorized party (azp).")


def _identity(claims: dict[str, Any], settings: OidcSettings) -> OidcIdentity:
    claim = settings.username_claim
    value = claims.get(claim)
    if not isinstance(value, str) or not value.strip():
        raise Unauthenticated(f"The OIDC token carries no '{claim}' claim to name the user.")
    if claim == "email" and claims.get("email_verified") is not True:
        # An address the provider has not verified is not an identity, and nothing else stands in for it.
        raise Unauthenticated("The OIDC token's e-mail address is not verified by the identity provider.")
    username = canonical("user", value)
    if not valid("user", username):
        raise Unauthenticated(f"The OIDC token's '{claim}' claim is not a valid user name (an e-mail address).")
    raw = claims.get(settings.groups_claim)
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    # A group counts under its exact name (ASCII spaces around it trimmed, as for every name), never under a
    # name Unicode spaces or case-folding would make of it.
    groups = frozenset(canonical("group", g) for g in items if isinstance(g, str) and canonical("group", g))
    return OidcIdentity(username=username, groups=groups, subject=str(claims["sub"]), expires_at=_expiry(claims))


def _expiry(claims: dict[str, Any]) -> datetime:
    """The token's `exp` (checked present and numeric by the claims registry) as an aware datetime."""
    exp = claims.get("exp")
    try:
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise TypeError
        return datetime.fromtimestamp(exp, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise Unauthenticated("The OIDC token has an invalid 'exp' claim.") from None
