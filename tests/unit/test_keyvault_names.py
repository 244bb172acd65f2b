"""The mapping of (location, key) to Azure Key Vault secret names: readable, injective also under Key
Vault's case-insensitivity, within its character rules, refusing what does not fit."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adapters.vaults.azure_keyvault import keyvault_name, location_key
from gateway.core.ports import VaultNameRefused

KEYVAULT_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
PART_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

parts = st.text(alphabet=PART_CHARS, min_size=1, max_size=128)
# Short parts (and the characters that need escapes, often) so most pairs fit in 127 characters.
short_parts = st.text(alphabet=st.sampled_from(PART_CHARS) | st.sampled_from("-_.A"), min_size=1, max_size=17)
workspace_ids = st.integers(min_value=0, max_value=10**19 - 1).map(str)
locations = st.builds(lambda ws, scope: f"w{ws}/{scope}", workspace_ids, short_parts | parts)
pairs = st.tuples(locations, short_parts | parts)


@pytest.mark.parametrize(
    ("location", "key", "name"),
    [
        ("w1001/db-creds", "password", "w1001-db-creds--password"),
        ("w1001/ci", "DB_PASSWORD", "w1001-ci---9db-0password"),
        ("w1001/ci", "API-KEY", "w1001-ci---9api-key"),
        ("w7/app", "myKey", "w7-app--my-9k-9ey"),
        ("w7/app", "tls.crt", "w7-app--tls-1crt"),
        ("w7/app", "a-1", "w7-app--a-21"),
        ("w7/app", "a-", "w7-app--a-2"),
        ("w7/-x", "k", "w7--x--k"),
        ("w7/x", "-", "w7-x---2"),
        ("w7/X", "a-B", "w7--9x--a-2-9b"),
    ],
)
def test_documented_examples_map_and_read_back(location: str, key: str, name: str) -> None:
    assert keyvault_name(location, key) == name
    assert location_key(name) == (location, key)
    assert location_key(name.upper()) == (location, key), "Key Vault names are case-insensitive"


def test_keys_differing_in_case_only_get_names_differing_in_more_than_case() -> None:
    names = {keyvault_name("w1/s", key).lower() for key in ("password", "Password", "PASSWORD", "passworD")}
    assert len(names) == 4


@pytest.mark.parametrize(
    ("location", "key", "reason"),
    [
        ("w1/s", "k" * 128, "at most 127"),
        ("w1/" + "s" * 100, "k" * 30, "at most 127"),
        ("w1/s", "A_" * 40, "at most 127"),  # 80 characters, 161 once escaped
        ("1001/s", "k", "w<id>/<scope>"),
        ("wx/s", "k", "w<id>/<scope>"),
        ("w1/s/t", "k", "w<id>/<scope>"),
        ("w1/" + "s" * 129, "k", "w<id>/<scope>"),
        ("w1/s", "", "secret key"),
        ("w1/s", "a b", "secret key"),
        ("w1/s", "k" * 129, "secret key"),
        ("w1/s", "ключ", "secret key"),
    ],
)
def test_what_does_not_fit_is_refused_with_the_reason(location: str, key: str, reason: str) -> None:
    with pytest.raises(VaultNameRefused, match=re.escape(reason)):
        keyvault_name(location, key)


@pytest.mark.parametrize(
    "name",
    [
        "w1-s--pass-9-9word",  # a stray pair of shifts
        "w1-s--key-9",  # a trailing shift
        "w1-s--a-2b",  # `a-b` is spelled with a plain hyphen
        "w1-s--a--b",  # a second separator
        "w1-s-key",  # no separator
        "w1---k",  # an empty scope
        "w1-s--",  # an empty key
        "w1-s--a-5",  # no such escape
        "x1-s--k",
        "w-s--k",
        "unrelated-secret",
        "w1-s--k_",  # not a Key Vault name at all
        "w1-s--" + "k" * 122,  # 128 characters
    ],
)
def test_names_that_are_no_exact_encoding_belong_to_no_scope(name: str) -> None:
    assert location_key(name) is None


@settings(max_examples=2000, deadline=None)
@given(pairs)
def test_every_name_is_a_valid_key_vault_name_that_reads_back(pair: tuple[str, str]) -> None:
    location, key = pair
    try:
        name = keyvault_name(location, key)
    except VaultNameRefused as refused:
        assert "at most 127" in str(refused)
        return
    assert KEYVAULT_NAME.fullmatch(name)
    assert name == name.lower()
    assert location_key(name) == (location, key)
    assert location_key(name.upper()) == (location, key)


@settings(max_examples=1000, deadline=None)
@given(pairs, pairs)
def test_the_mapping_is_injective_under_key_vault_case_insensitivity(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    assume(first != second)
    try:
        one, other = keyvault_name(*first), keyvault_name(*second)
    except VaultNameRefused:
        return
    assert one.lower() != other.lower()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["w1/s", "w1/S", "w1/s-", "w12/s", "w1/s_t"]), short_parts), max_size=40))
def test_near_pairs_never_share_a_name(pairs_: list[tuple[str, str]]) -> None:
    distinct = set(pairs_)
    assert len({keyvault_name(*pair).lower() for pair in distinct}) == len(distinct)


@settings(max_examples=500, deadline=None)
@given(workspace_ids, short_parts, short_parts)
def test_short_scopes_and_keys_always_fit(workspace: str, scope: str, key: str) -> None:
    # Each character takes at most three (a shift and the letter): 19 digits + 2 * 17 * 3 + 4 <= 127.
    assert len(keyvault_name(f"w{workspace}/{scope}", key)) <= 127


@settings(max_examples=2000, deadline=None)
@given(
    st.from_regex(r"[0-9a-zA-Z-]{1,127}", fullmatch=True)
    | st.from_regex(r"w1-[0-9a-z-]{1,40}--[0-9a-z-]{1,40}", fullmatch=True)
)
def test_any_vault_name_reads_back_only_as_the_pair_that_maps_to_it(name: str) -> None:
    pair = location_key(name)
    if pair is not None:
        assert keyvault_name(*pair) == name.lower()
