"""Personal access tokens: 256 random bits, shown once, stored as a keyed hash.

A fast keyed hash (HMAC-SHA256) is the right tool for random tokens: there is nothing to brute-force,
and a memory-hard password hash would put tens of milliseconds on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "fgt_"


def new_token() -> tuple[str, str]:
    """(token id, token value). The id is public; the value is returned once and never stored."""
    return secrets.token_hex(16), TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(key: bytes, token: str) -> bytes:
    return hmac.new(key, token.encode(), hashlib.sha256).digest()
