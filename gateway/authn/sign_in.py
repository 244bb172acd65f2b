"""Browser sign-in with the identity provider: the OAuth 2.0 authorization code flow with PKCE (Authlib).

1. `start`: a random `state`, `nonce` and PKCE `code_verifier` are kept server-side as a sign-in attempt
   (authn/sessions.py) under a fresh id the browser holds in a short-lived cookie; the browser is sent to
   the provider's authorization endpoint with the S256 code challenge.
2. `finish`: the provider sends the browser back with `code` and `state`. The attempt of the browser's
   cookie is used up (once only, within ten minutes), its state must match, the code is exchanged at the
   token endpoint with the verifier (and the client secret, when the client has one), and the ID token is
   checked (authn/oidc.py: signature, issuer, audience = the client, `azp` = the client when present or when
   other audiences are named, expiry, nonce). The person is named
   by the same claim rules as for the provider's access tokens.
3. Sign-out at the provider: its `end_session_endpoint` (RP-initiated logout), when it publishes one.

Every endpoint is taken from the discovery document under the JWKS's rule (authn/oidc.py, `endpoint_allowed`):
https under an https issuer, loopback only under a plain-http one.

Neither the code nor any token reaches the page: the browser sees only the redirects and, in the end, the
gateway's own session cookie.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import aiohttp
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from gateway.authn.oidc import OidcIdentity, OidcVerifier, endpoint_allowed
from gateway.authn.sessions import SignInAttempt
from gateway.core.errors import Unauthenticated

log = logging.getLogger(__name__)
CALLBACK_PATH = "/fedgate/sign-in/callback"
_UNREACHABLE = "The identity provider could not be reached to finish the sign-in; try again."


class ProviderSignIn:
    """The gateway as an OpenID Connect client of the configured provider."""

    def __init__(self, verifier: OidcVerifier, client_id: str, client_secret: str, scopes: str) -> None:
        self.verifier = verifier
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def start(self, origin: str, next_path: str) -> tuple[SignInAttempt, str]:
        """A new attempt, and the provider's URL to send the browser to."""
        attempt = SignInAttempt(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            next_path=next_path,
        )
        endpoint = await self._endpoint("authorization_endpoint")
        url = prepare_grant_uri(
            endpoint,
            self.client_id,
            "code",
            redirect_uri=origin + CALLBACK_PATH,
            scope=self.scopes,
            state=attempt.state,
            nonce=attempt.nonce,
            code_challenge=create_s256_code_challenge(attempt.code_verifier),
            code_challenge_method="S256",
        )
        return attempt, url

    async def finish(self, origin: str, attempt: SignInAttempt, code: str, state: str) -> OidcIdentity:
        if not secrets.compare_digest(state.encode(), attempt.state.encode()):
            raise Unauthenticated("The identity provider's answer does not belong to this sign-in (state).")
        endpoint = await self._endpoint("token_endpoint")
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=origin + CALLBACK_PATH,
            code_verifier=attempt.code_verifier,
            client_id=self.client_id,
        )
        auth = aiohttp.BasicAuth(self.client_id, self.client_secret) if self.client_secret else None
        answer = await self._post(endpoint, body, auth)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthenticated("The identity provider sent no ID token; is 'openid' among oidc.scopes?")
        return await self.verifier.verify_id_token(id_token, self.client_id, attempt.nonce)

    async def sign_out_url(self, after: str) -> str | None:
        """The provider's RP-initiated logout URL, or None when it publishes no end_session_endpoint.

        It names the client, not the ID token (`id_token_hint`): no token is ever put in a URL."""
        try:
            metadata = await self.verifier.metadata()
        except Unauthenticated:
            return None
        endpoint = metadata.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint_allowed(self.verifier.settings.issuer, endpoint):
            return None
        params = [("client_id", self.client_id), ("post_logout_redirect_uri", after)]
        return str(add_params_to_uri(endpoint, params))

    async def _endpoint(self, name: str) -> str:
        metadata = await self.verifier.metadata()
        endpoint = metadata.get(name)
        if not isinstance(endpoint, str) or not endpoint_allowed(self.verifier.settings.issuer, endpoint):
            # Plain http under an https issuer would hand the code, the verifier and the client secret (token
            # endpoint), or the person's sign-in (authorization endpoint), to anyone on the path.
            log.warning("OIDC discovery has no usable %s (https is required under an https issuer)", name)
            raise Unauthenticated(f"The identity provider publishes no usable {name}.")
        return endpoint

    async def _post(self, url: str, body: str, auth: aiohttp.BasicAuth | None) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        try:
            async with self._session.post(url, data=body, headers=headers, auth=auth) as response:
                document = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("OIDC token request failed: %s", type(exc).__name__)
            raise Unauthenticated(_UNREACHABLE) from None
        if status != 200 or not isinstance(document, dict):
            error = document.get("error") if isinstance(document, dict) else None
            log.warning("OIDC token endpoint answered %s (%s)", status, error)
            raise Unauthenticated("The identity provider refused the sign-in; try again.")
        return document
