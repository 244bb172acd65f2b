"""Subscribers' secrets at rest: sealed under the built-in vault's keys, opened only to sign a delivery.

A webhook's HMAC secret (and a registry webhook's Authorization value) must be read back to sign each
delivery, so it cannot be hashed; it is kept sealed as the built-in vault keeps its values
(gateway/core/sealing.py: AES-256-GCM under the active key of FEDGATE_VAULT_KEYS or its file, a fresh nonce,
the key's id beside it), in the feature's own column or JSON field, in `Sealed.to_text`'s one-text form. The
value is bound to its place (`place`: the row, e.g. `registry_webhook:<id>`; `field`: which of its secrets), so
a sealed value copied to another row or field does not open. `fedgate secrets rotate-key` re-seals them under
the active key with the vault's values (`Resealed`).

A gateway started without the vault keys keeps no such secret: saving one is refused (400, naming
FEDGATE_VAULT_KEYS), and a stored one cannot be opened (the delivery is retried, never sent unsigned).
Messages name the place and the key id, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.core.errors import InvalidParameter
from gateway.core.sealing import KEYS_ENV, Keyring, Sealed, SealError


class SubscriberSecrets:
    """Seals and opens subscribers' secrets with the vault's keyring (None: the gateway has no vault keys)."""

    def __init__(self, keyring: Keyring | None) -> None:
        self._keyring = keyring

    def __repr__(self) -> str:
        return f"SubscriberSecrets({self._keyring!r})"

    def seal(self, place: str, field: str, value: str) -> str:
        """The value sealed under the active key, as one text; 400 when the gateway has no vault keys."""
        if self._keyring is None:
            raise InvalidParameter(
                "This gateway cannot keep a webhook's secret: it was started without the built-in vault's keys "
                f"({KEYS_ENV}), which keep such values encrypted. Leave the secret out, or ask the operator for them."
            )
        return self._keyring.seal(place, field, value.encode()).to_text()

    def open(self, place: str, field: str, stored: str) -> str:
        """The value; SealError (naming the place and key id only) when it cannot be opened."""
        sealed = Sealed.from_text(stored, f"{field!r} of {place!r}")
        if self._keyring is None:
            raise SealError(f"{field!r} of {place!r} is sealed and this gateway has no vault keys ({KEYS_ENV})")
        return self._keyring.open(place, field, sealed).decode()

    def reseal(self, place: str, field: str, stored: str) -> str | None:
        """The value sealed again under the active key, or None when it already is (rotation)."""
        if self._keyring is None:
            raise SealError(f"there are no vault keys ({KEYS_ENV}) to re-seal {field!r} of {place!r} with")
        if Sealed.from_text(stored, f"{field!r} of {place!r}").kid == self._keyring.active:
            return None
        return self.seal(place, field, self.open(place, field, stored))

    @staticmethod
    def unopened(stored: str, exc: SealError) -> str:
        """Why a stored value did not open, for a delivery's `last_error` and the log: the failure's kind and the
        key id only (the place may name a URL, which may carry a token of its own)."""
        kid = SubscriberSecrets.key_id(stored)
        return f"the webhook's secret cannot be opened ({type(exc).__name__}{f', key id {kid!r}' if kid else ''})"

    @staticmethod
    def key_id(stored: str) -> str:
        """The id of the key a stored value is sealed under ("" when it is not a sealed value)."""
        try:
            return Sealed.from_text(stored, "a value").kid
        except SealError:
            return ""


@dataclass(slots=True)
class Resealed:
    """What re-sealing one feature's secrets did: re-sealed under the active key, unreadable, left under others."""

    rotated: int = 0
    unreadable: int = 0
    remaining: dict[str, int] = field(default_factory=dict)

    def count(self, kid: str) -> None:
        self.remaining[kid] = self.remaining.get(kid, 0) + 1
