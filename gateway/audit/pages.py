"""Page tokens of the audit log for readers of a part of it: the row they stop at, sealed, so its id is not read.

Audit rows are numbered by one sequence for the whole account. A workspace admin reads the rows about its
workspaces (the access console); had its page tokens been the ids, as the account admins' API's are, the gaps between
them would tell it how much happened in workspaces it may not see. A token here is the id encrypted and
authenticated (AES-256-GCM, a fresh nonce each time) under a key derived from the deployment's token hashing key
(`gateway_secrets`, one for every replica), so it pages on any replica and says nothing; one that was not made
here, or was changed, does not open. The key changes only with that secret, which would end every page token
anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PURPOSE = b"fedgate audit page tokens v1"
_NONCE_BYTES = 12
_ID_BYTES = 8
_TOKEN_BYTES = _NONCE_BYTES + _ID_BYTES + 16  # the nonce, the id, GCM's tag


class PageTokenInvalid(ValueError):
    """The token is not one `AuditPageTokens.seal` made with this deployment's key."""


class AuditPageTokens:
    def __init__(self, secret: Callable[[], bytes]) -> None:
        self._secret = secret  # the deployment's token hashing key (loaded at start-up)
        self._cipher: tuple[bytes, AESGCM] | None = None

    def _aead(self) -> AESGCM:
        secret = self._secret()
        if self._cipher is None or self._cipher[0] != secret:
            key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()
            self._cipher = (secret, AESGCM(key))
        return self._cipher[1]

    def seal(self, row_id: int) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead().encrypt(nonce, row_id.to_bytes(_ID_BYTES, "big"), _PURPOSE)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, token: str) -> int:
        """The id sealed in `token`; PageTokenInvalid for anything else."""
        if len(token) != (_TOKEN_BYTES * 4 + 2) // 3 or not token.isascii():
            raise PageTokenInvalid()
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            plain = self._aead().decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _PURPOSE)
        except (binascii.Error, ValueError, InvalidTag):
            raise PageTokenInvalid() from None
        return int.from_bytes(plain, "big")
