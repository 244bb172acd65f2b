"""The built-in vault's envelope: AES-256-GCM, one fresh nonce per value, the secret's place bound to it.

Used by the built-in vault (gateway/secrets/builtin.py: its values in `vault_values`) and by the secrets the
gateway keeps to use itself, the webhook secrets of registry webhooks and SQL alerts (gateway/delivery/secrets.py:
one column or JSON field each, in `Sealed.to_text`'s form): one set of keys, one rotation.

Sealing a value encrypts it under the keyring's active key with a fresh random 96-bit nonce, and binds
the secret's location and key as associated data: a ciphertext copied to another row (another scope,
another key, another workspace) fails authentication instead of decrypting. Each sealed value carries
the id of the key that sealed it, so keys can be rotated while old values stay readable.

Keys: from the environment or a file, never from fedgate.toml.

    FEDGATE_VAULT_KEYS       the entries themselves
    FEDGATE_VAULT_KEYS_FILE  the path of a file holding them (for a mounted secret); not both

The entries are separated by white space, commas or new lines; `#` starts a comment that runs to the
end of its line:

    # fedgate vault keys (made-up values: generate your own)
    active=k2026b
    k2026a:q1Yv0hN6bq5yI5m0y8M1f0bJ3n3Vv3C1S0mQm3oXb3E=
    k2026b:3s8xq2F0f7u6l8v0D9mQyq7b1fT0e4eWkq6H8rA0t5Q=

- `<id>:<base64>`: a key. The id is 1 to 32 of `A-Z a-z 0-9 _ . -`; the value is exactly 32 random
  bytes in base64 (standard or URL-safe alphabet, padding optional), e.g. `openssl rand -base64 32`
  or `new_key_entry(id)`. Ids are unique.
- `active=<id>`: the key new values are sealed under; exactly once, naming one of the keys.

Rotation: add a new key and make it active (every replica), keep the old ones, run the rotation
(`BuiltinVault.rotate`, `fedgate secrets rotate-key`) until it reports no value left under another
key, then remove the old keys. A value whose key is no longer configured cannot be read.

Key material never appears in a message, a log line or a repr: errors name the key id and the source
(`FEDGATE_VAULT_KEYS`, or the file's path) only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.config import VAULT_KEYS_ENV, VAULT_KEYS_FILE_ENV, ConfigError

KEYS_ENV = VAULT_KEYS_ENV  # not a setting: load_settings leaves both alone
KEYS_FILE_ENV = VAULT_KEYS_FILE_ENV
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, GCM's own size
# At most 32 characters: 32 bytes in base64 are longer, so a key written where its id belongs is never a valid
# id, and only valid ids are ever shown in a message.
_KID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_KID_RULE = "1 to 32 of A-Z a-z 0-9 _ . -"
_SEPARATORS = re.compile(r"[\s,]+")
_AAD_PREFIX = b"fedgate-vault-v1"
TEXT_PREFIX = "fgv1"  # a sealed value as one text (Sealed.to_text)


class SealError(Exception):
    """A stored value cannot be opened. The message names the secret and the key id, never a value."""


class UnknownKeyId(SealError):
    """The value was sealed under a key id that is not configured (removed before rotation finished)."""


class TamperedValue(SealError):
    """Authentication failed: the ciphertext, nonce or place was changed, or the key under that id is another one."""


@dataclass(frozen=True, slots=True)
class VaultKey:
    """One data key: its id and its 32 bytes. The bytes never show in a repr."""

    kid: str
    material: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"VaultKey(kid={self.kid!r})"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A value as stored: the key id, the nonce and the ciphertext (with GCM's tag at its end)."""

    kid: str
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Sealed(kid={self.kid!r}, {len(self.ciphertext)} bytes)"

    def to_text(self) -> str:
        """One text value for a column or a JSON field: `fgv1:<key id>:<nonce>:<ciphertext>` (URL-safe base64)."""
        return ":".join((TEXT_PREFIX, self.kid, _b64(self.nonce), _b64(self.ciphertext)))

    @classmethod
    def from_text(cls, text: str, what: str) -> Sealed:
        """The value `to_text` wrote, or TamperedValue naming `what` (never the text: it may be a plain secret)."""
        parts = text.split(":")
        if len(parts) != 4 or parts[0] != TEXT_PREFIX or not _KID.fullmatch(parts[1]):
            raise TamperedValue(f"{what} is not a sealed value")
        try:
            nonce, ciphertext = (base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in parts[2:])
        except (binascii.Error, ValueError):
            raise TamperedValue(f"{what} is not a sealed value") from None
        if len(nonce) != NONCE_BYTES:
            raise TamperedValue(f"{what} is not a sealed value")
        return cls(parts[1], nonce, ciphertext)


def associated_data(location: str, key: str) -> bytes:
    """What binds a ciphertext to its place: both names, length-prefixed so no two places share it."""
    parts = [part.encode() for part in (location, key)]
    return _AAD_PREFIX + b"".join(len(part).to_bytes(4, "big") + part for part in parts)


class Keyring:
    """The configured keys by id, and which one seals new values."""

    __slots__ = ("_ciphers", "active")

    def __init__(self, keys: Iterable[VaultKey], active: str, source: str = "keys") -> None:
        ciphers: dict[str, AESGCM] = {}
        for vault_key in keys:
            if not _KID.fullmatch(vault_key.kid):
                raise ConfigError(f"{source}: a key id is not {_KID_RULE}")
            if len(vault_key.material) != KEY_BYTES:
                raise ConfigError(
                    f"{source}: key {vault_key.kid!r} is {len(vault_key.material)} bytes, an AES-256 key is {KEY_BYTES}"
                )
            if vault_key.kid in ciphers:
                raise ConfigError(f"{source}: key id {vault_key.kid!r} is given twice")
            ciphers[vault_key.kid] = AESGCM(vault_key.material)
        if not ciphers:
            raise ConfigError(f"{source}: no key")
        if active not in ciphers:
            shown = repr(active) if _KID.fullmatch(active) else "(an invalid id)"
            raise ConfigError(f"{source}: the active key {shown} is not among the keys ({', '.join(sorted(ciphers))})")
        self._ciphers = ciphers
        self.active = active

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._ciphers))

    def __contains__(self, kid: object) -> bool:
        return kid in self._ciphers

    def __repr__(self) -> str:
        return f"Keyring(active={self.active!r}, ids={list(self.ids)!r})"

    # -- sealing --------------------------------------------------------------------------------------------

    def seal(self, location: str, key: str, value: bytes) -> Sealed:
        """The value encrypted under the active key, a fresh nonce, bound to (location, key)."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self.active].encrypt(nonce, value, associated_data(location, key))
        return Sealed(self.active, nonce, ciphertext)

    def open(self, location: str, key: str, sealed: Sealed) -> bytes:
        """The value, or SealError naming the secret and its key id."""
        cipher = self._ciphers.get(sealed.kid)
        if cipher is None:
            raise UnknownKeyId(
                f"secret {key!r} of {location!r} is sealed under key id {sealed.kid!r}, which is not configured"
            )
        try:
            return cipher.decrypt(sealed.nonce, sealed.ciphertext, associated_data(location, key))
        except InvalidTag:
            raise TamperedValue(
                f"secret {key!r} of {location!r} does not authenticate under key id {sealed.kid!r} "
                "(changed or moved in the database, or that id now names another key)"
            ) from None

    # -- loading --------------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """Entries as the module's docstring describes them; `source` names where they came from in errors."""
        keys: list[VaultKey] = []
        active: list[str] = []
        stripped = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        for number, entry in enumerate((e for e in _SEPARATORS.split(stripped) if e), start=1):
            if entry.startswith("active="):
                active.append(entry.removeprefix("active="))
                continue
            kid, colon, encoded = entry.partition(":")
            if not colon:
                # Never echo the entry: it may be a key pasted without its id.
                raise ConfigError(f"{source}: entry {number} is neither `<id>:<base64 key>` nor `active=<id>`")
            keys.append(VaultKey(kid, _decode(encoded, number, source)))
        if not active:
            raise ConfigError(f"{source}: no `active=<id>` names the key that seals new values")
        if len(active) > 1:
            raise ConfigError(f"{source}: `active=` is given {len(active)} times")
        return cls(keys, active[0], source)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        """From FEDGATE_VAULT_KEYS, or the file FEDGATE_VAULT_KEYS_FILE names."""
        env = os.environ if environ is None else environ
        inline, path = env.get(KEYS_ENV, ""), env.get(KEYS_FILE_ENV, "")
        if inline and path:
            raise ConfigError(f"set {KEYS_ENV} or {KEYS_FILE_ENV}, not both")
        if inline:
            return cls.parse(inline, KEYS_ENV)
        if path:
            return cls.from_file(path)
        raise ConfigError(f"the built-in vault needs its keys: set {KEYS_ENV} or {KEYS_FILE_ENV}")

    @classmethod
    def from_file(cls, path: str | Path) -> Keyring:
        source = f"{KEYS_FILE_ENV} {str(path)!r}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot be read ({type(exc).__name__})") from None
        return cls.parse(text, source)


def _decode(encoded: str, number: int, source: str) -> bytes:
    text = encoded.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{source}: the key of entry {number} is not valid base64") from None


def new_key_entry(kid: str) -> str:
    """A fresh `<id>:<base64>` entry of 32 random bytes, for an operator to add to the keys."""
    if not _KID.fullmatch(kid):
        raise ConfigError(f"a key id is {_KID_RULE}")
    return f"{kid}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
