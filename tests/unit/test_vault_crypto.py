"""The built-in vault's envelope: AES-256-GCM bound to the secret's place, and the keys it is given."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.core.config import ConfigError
from gateway.core.sealing import (
    KEYS_ENV,
    KEYS_FILE_ENV,
    NONCE_BYTES,
    Keyring,
    Sealed,
    TamperedValue,
    UnknownKeyId,
    VaultKey,
    associated_data,
    new_key_entry,
)

K1 = os.urandom(32)
K2 = os.urandom(32)
VALUE = b"hunter2-but-longer"


def b64(material: bytes) -> str:
    return base64.b64encode(material).decode()


def ring(active: str = "k1") -> Keyring:
    return Keyring([VaultKey("k1", K1), VaultKey("k2", K2)], active)


def test_a_value_round_trips_under_the_active_key() -> None:
    keyring = ring()
    sealed = keyring.seal("w1001/db", "password", VALUE)
    assert sealed.kid == "k1"
    assert len(sealed.nonce) == NONCE_BYTES
    assert VALUE not in sealed.ciphertext
    assert keyring.open("w1001/db", "password", sealed) == VALUE


def test_every_seal_draws_a_fresh_nonce() -> None:
    keyring = ring()
    first, second = (keyring.seal("w1001/db", "password", VALUE) for _ in range(2))
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_old_values_open_after_the_active_key_changes() -> None:
    sealed = ring("k1").seal("w1001/db", "password", VALUE)
    assert ring("k2").open("w1001/db", "password", sealed) == VALUE
    assert ring("k2").seal("w1001/db", "password", VALUE).kid == "k2"


@pytest.mark.parametrize(
    ("location", "key"),
    [("w1001/db", "user"), ("w1001/other", "password"), ("w1002/db", "password"), ("w1001/dbp", "assword")],
)
def test_a_ciphertext_moved_to_another_place_does_not_open(location: str, key: str) -> None:
    keyring = ring()
    sealed = keyring.seal("w1001/db", "password", VALUE)
    with pytest.raises(TamperedValue) as raised:
        keyring.open(location, key, sealed)
    assert "hunter2" not in str(raised.value)


def test_the_associated_data_tells_every_split_of_the_names_apart() -> None:
    assert associated_data("w1/ab", "c") != associated_data("w1/a", "bc")


def test_a_changed_ciphertext_or_nonce_does_not_open() -> None:
    keyring = ring()
    sealed = keyring.seal("w1001/db", "password", VALUE)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    for tampered in (
        replace(sealed, ciphertext=flipped),
        replace(sealed, ciphertext=sealed.ciphertext[:-1]),
        replace(sealed, nonce=os.urandom(NONCE_BYTES)),
        replace(sealed, kid="k2"),  # another key under the id
    ):
        with pytest.raises(TamperedValue):
            keyring.open("w1001/db", "password", tampered)


def test_a_value_under_a_key_id_no_longer_configured_names_the_id() -> None:
    sealed = ring().seal("w1001/db", "password", VALUE)
    with pytest.raises(UnknownKeyId, match=r"'k1'.*not configured"):
        Keyring([VaultKey("k2", K2)], "k2").open("w1001/db", "password", sealed)


def test_reprs_never_show_key_material_or_values() -> None:
    keyring = ring()
    sealed = keyring.seal("w1001/db", "password", VALUE)
    shown = repr(keyring) + repr(sealed) + repr(VaultKey("k1", K1)) + str(sealed)
    for secret in (K1, sealed.ciphertext, sealed.nonce):
        assert secret.hex() not in shown
        assert b64(secret) not in shown
        assert repr(secret) not in shown
    assert "k1" in shown


# -- the keys -------------------------------------------------------------------------------------------------


def test_entries_parse_with_comments_commas_and_both_base64_alphabets() -> None:
    text = f"""
    # the vault's keys
    active=k2   # rotated in December
    k1:{base64.urlsafe_b64encode(K1).decode().rstrip("=")}, k2:{b64(K2)}
    """
    keyring = Keyring.parse(text, "test")
    assert keyring.active == "k2"
    assert keyring.ids == ("k1", "k2")
    sealed = Keyring([VaultKey("k1", K1)], "k1").seal("w1/s", "k", VALUE)
    assert keyring.open("w1/s", "k", sealed) == VALUE


def test_a_generated_entry_is_a_valid_key() -> None:
    keyring = Keyring.parse(f"active=new {new_key_entry('new')}", "test")
    assert keyring.open("w1/s", "k", keyring.seal("w1/s", "k", VALUE)) == VALUE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"active=k1 k1:{b64(K1[:16])}", r"key 'k1' is 16 bytes, an AES-256 key is 32"),
        (f"active=k1 k1:{b64(K1 + b'x')}", r"key 'k1' is 33 bytes"),
        (f"active=k1 k1:{b64(K1)} k1:{b64(K2)}", r"key id 'k1' is given twice"),
        (f"k1:{b64(K1)}", r"no `active=<id>`"),
        (f"active=k3 k1:{b64(K1)} k2:{b64(K2)}", r"the active key 'k3' is not among the keys \(k1, k2\)"),
        (f"active=k1 active=k1 k1:{b64(K1)}", r"`active=` is given 2 times"),
        ("active=k1", r"no key"),
        (f"active=k1 k1:{b64(K1)[:-2]}!!", r"the key of entry 2 is not valid base64"),
        (f"active=k1 {b64(K1)}", r"entry 2 is neither"),
        (f"active=k1 k/1:{b64(K1)}", r"a key id is not 1 to 32"),
    ],
)
def test_keys_that_are_wrong_are_refused_without_showing_them(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Keyring.parse(text, KEYS_ENV)
    shown = str(raised.value)
    assert shown.startswith(KEYS_ENV)
    for material in (K1, K2):
        assert b64(material)[:12] not in shown


def test_a_key_written_where_its_id_belongs_is_never_shown() -> None:
    material = base64.urlsafe_b64encode(K1).decode().rstrip("=")  # 43 characters of the id alphabet
    with pytest.raises(ConfigError) as raised:
        Keyring.parse(f"active=k1 {material}:k1", KEYS_ENV)
    assert material not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        Keyring.parse(f"active={material} k1:{b64(K1)}", KEYS_ENV)
    assert material not in str(raised.value)


def test_keys_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    entries = f"active=k1\nk1:{b64(K1)}\n"
    assert Keyring.from_environment({KEYS_ENV: entries}).ids == ("k1",)
    path = tmp_path / "vault.keys"
    path.write_text(entries)
    assert Keyring.from_environment({KEYS_FILE_ENV: str(path)}).active == "k1"
    with pytest.raises(ConfigError, match="not both"):
        Keyring.from_environment({KEYS_ENV: entries, KEYS_FILE_ENV: str(path)})
    with pytest.raises(ConfigError, match=f"set {KEYS_ENV} or {KEYS_FILE_ENV}"):
        Keyring.from_environment({})
    with pytest.raises(ConfigError, match=r"cannot be read \(FileNotFoundError\)"):
        Keyring.from_environment({KEYS_FILE_ENV: str(tmp_path / "missing")})
    path.write_text(f"active=k1\nk1:{b64(K1[:31])}\n")
    with pytest.raises(ConfigError, match=f"{KEYS_FILE_ENV} '{path}': key 'k1' is 31 bytes"):
        Keyring.from_environment({KEYS_FILE_ENV: str(path)})


def test_a_sealed_value_is_a_plain_value_object() -> None:
    sealed = Sealed("k1", b"n" * 12, b"c" * 20)
    assert sealed == Sealed("k1", b"n" * 12, b"c" * 20)
    assert repr(sealed) == "Sealed(kid='k1', 20 bytes)"
