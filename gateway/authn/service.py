"""Turn an Authorization header into a Principal: bearer tokens and basic auth with a token as password."""

from __future__ import annotations

import base64
import binascii
import hmac

from gateway.authn.principal import Principal
from gateway.errors import Unauthenticated

BOOTSTRAP_ADMIN = Principal(name="admin", kind="bootstrap", account_admin=True)
MIN_ADMIN_TOKEN_LENGTH = 16


class Authenticator:
    """Accepts the bootstrap account-admin token, as `Bearer` or as the basic-auth password.

    There is no anonymous access: a request without valid credentials is refused.
    """

    def __init__(self, admin_token: str) -> None:
        if len(admin_token) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"FEDGATE_ADMIN_TOKEN must be set to a random string of at least {MIN_ADMIN_TOKEN_LENGTH} characters"
            )
        self._admin_token = admin_token.encode()

    def authenticate(self, authorization: str | None) -> Principal:
        token = self._credential(authorization)
        if token is not None and hmac.compare_digest(token.encode(), self._admin_token):
            return BOOTSTRAP_ADMIN
        raise Unauthenticated()

    @staticmethod
    def _credential(authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            return value or None
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            _, sep, password = decoded.partition(":")
            return password if sep else None
        return None
