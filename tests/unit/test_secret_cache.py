"""The optional cache of vault values (`[secrets] cache_seconds`), around the built-in vault on a migrated
database of the session's embedded PostgreSQL: off by default, values kept at most their time, this
replica's changes seen at once and another replica's within that time, bounded, and emptied by a failure.

"Another replica" is a second `BuiltinVault` on the same database, as a second gateway process would be.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import build_vaults
from gateway.core.config import ConfigError, Settings, load_settings
from gateway.core.ports import Vault, VaultUnavailable
from gateway.core.sealing import Keyring, TamperedValue, VaultKey
from gateway.db.engine import make_sessionmaker
from gateway.db.pools import plain_dsn
from gateway.secrets.builtin import BuiltinVault
from gateway.secrets.cache import CachedVault

KEY = os.urandom(32)
LOCATION = "w1001/db-creds"
TTL = 30.0


class Clock:
    """The cache's notion of now, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def builtin(engine: AsyncEngine) -> BuiltinVault:
    return BuiltinVault(make_sessionmaker(engine), Keyring([VaultKey("k1", KEY)], "k1"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cached(engine: AsyncEngine, clock: Clock) -> CachedVault:
    return CachedVault(builtin(engine), TTL, clock=clock)


@pytest.fixture
def other(engine: AsyncEngine) -> BuiltinVault:
    """Another replica's view of the same vault: its changes do not reach this replica's cache."""
    return builtin(engine)


async def execute(database: str, statement: str, *args: object) -> None:
    connection = await asyncpg.connect(plain_dsn(database))
    try:
        await connection.execute(statement, *args)
    finally:
        await connection.close()


def reads(result: str) -> float:
    labels = {"vault": "builtin", "result": result}
    return REGISTRY.get_sample_value("fedgate_secret_cache_reads_total", labels) or 0.0


def test_the_cache_is_off_unless_configured_and_its_bounds_are_checked(tmp_path: Path) -> None:
    assert Settings().secrets.cache_seconds == 0
    config = tmp_path / "fedgate.toml"
    config.write_text("[secrets]\ncache_seconds = 30\ncache_max_entries = 50\n")
    loaded = load_settings(config, environ={})
    assert (loaded.secrets.cache_seconds, loaded.secrets.cache_max_entries) == (30, 50)
    assert load_settings(config, environ={"FEDGATE_SECRETS_CACHE_SECONDS": "0"}).secrets.cache_seconds == 0
    for bad in ("-1", "301", "nan", "inf"):
        with pytest.raises(ConfigError, match=r"secrets\.cache_seconds: must be between 0 \(no cache\) and 300"):
            load_settings(config, environ={"FEDGATE_SECRETS_CACHE_SECONDS": bad})
    config.write_text("[secrets]\ncache_seconds = 30\ncache_max_entries = 0\n")
    with pytest.raises(ConfigError, match=r"secrets\.cache_max_entries"):
        load_settings(config, environ={})


async def test_the_composition_root_wraps_every_vault_only_when_the_cache_is_on(engine: AsyncEngine) -> None:
    environ = {"FEDGATE_VAULT_KEYS": "active=k1 k1:" + base64.b64encode(KEY).decode()}
    plain = build_vaults(Settings(), make_sessionmaker(engine), environ)
    assert isinstance(plain["builtin"], BuiltinVault)
    settings = Settings()
    settings.secrets.cache_seconds = 5
    settings.secrets.cache_max_entries = 7
    wrapped = build_vaults(settings, make_sessionmaker(engine), environ)
    vault = wrapped["builtin"]
    assert isinstance(vault, CachedVault) and isinstance(vault.inner, BuiltinVault)
    assert (vault.name, vault.read_only, vault.ttl_seconds, vault.max_entries) == ("builtin", False, 5, 7)
    assert "values cached for 5s per replica" in await vault.check()


async def test_values_are_served_from_memory_for_at_most_their_time(
    cached: CachedVault, other: BuiltinVault, clock: Clock
) -> None:
    port: Vault = cached
    await port.put(LOCATION, "password", b"first")
    hits, misses = reads("hit"), reads("miss")
    assert await port.get(LOCATION, "password") == b"first"  # asked the vault, kept
    await other.put(LOCATION, "password", b"second")  # another replica changes it
    clock.now += TTL - 0.1
    assert await port.get(LOCATION, "password") == b"first"
    assert await port.get_many(LOCATION, ["password"]) == {"password": b"first"}
    assert (reads("hit") - hits, reads("miss") - misses) == (2, 1)
    clock.now += 0.1  # its time is up: asked again
    assert await port.get(LOCATION, "password") == b"second"


async def test_a_missing_value_is_cached_as_missing_for_the_same_time(
    cached: CachedVault, other: BuiltinVault, clock: Clock
) -> None:
    assert await cached.get_many(LOCATION, ["api-key"]) == {"api-key": None}
    await other.put(LOCATION, "api-key", b"made-elsewhere")
    assert await cached.get(LOCATION, "api-key") is None
    clock.now += TTL
    assert await cached.get(LOCATION, "api-key") == b"made-elsewhere"


async def test_get_many_asks_the_vault_only_for_what_it_does_not_hold(cached: CachedVault, other: BuiltinVault) -> None:
    await other.put(LOCATION, "a", b"a1")
    await other.put(LOCATION, "b", b"b1")
    assert await cached.get(LOCATION, "a") == b"a1"
    await other.put(LOCATION, "a", b"a2")
    await other.put(LOCATION, "b", b"b2")
    # `a` from memory, `b` and `c` from the vault; a key named twice is answered once.
    assert await cached.get_many(LOCATION, ["a", "b", "c", "a"]) == {"a": b"a1", "b": b"b2", "c": None}
    assert len(cached) == 3


async def test_this_replicas_changes_are_seen_at_once(cached: CachedVault, other: BuiltinVault) -> None:
    await other.put(LOCATION, "k", b"v1")
    await other.put("w1001/kept", "k", b"kept")
    assert await cached.get_many(LOCATION, ["k"]) == {"k": b"v1"}
    assert await cached.get("w1001/kept", "k") == b"kept"
    await cached.put(LOCATION, "k", b"v2")
    assert await cached.get(LOCATION, "k") == b"v2"
    assert await cached.delete(LOCATION, "k") is True
    assert await cached.get(LOCATION, "k") is None
    await cached.put(LOCATION, "k", b"v3")
    assert await cached.get(LOCATION, "k") == b"v3"
    await cached.drop(LOCATION)  # the scope is deleted: none of its values stay
    assert await cached.get_many(LOCATION, ["k"]) == {"k": None}
    await other.put("w1001/kept", "k", b"changed")
    assert await cached.get("w1001/kept", "k") == b"kept"  # another scope's value is kept
    assert [info.key for info in await cached.list("w1001/kept")] == ["k"]  # listings are never cached


class SlowAnswers:
    """The built-in vault, whose reads answer only when the test lets them (`release`), what they read before."""

    def __init__(self, inner: BuiltinVault) -> None:
        self.inner = inner
        self.name, self.read_only = inner.name, inner.read_only
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    async def get(self, location: str, key: str) -> bytes | None:
        value = await self.inner.get(location, key)
        self.read_done.set()
        await self.release.wait()
        return value

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_read_in_flight_during_a_change_here_is_not_kept(engine: AsyncEngine, clock: Clock) -> None:
    slow = SlowAnswers(builtin(engine))
    cached = CachedVault(slow, TTL, clock=clock)  # type: ignore[arg-type]
    await cached.put(LOCATION, "k", b"old")
    read = asyncio.create_task(cached.get(LOCATION, "k"))
    await slow.read_done.wait()  # the vault has answered "old", the answer is on its way
    await cached.put(LOCATION, "k", b"new")
    slow.release.set()
    assert await read == b"old"  # answered as read, but not kept: the put came after the read began
    assert len(cached) == 0
    assert await cached.get(LOCATION, "k") == b"new"


async def test_the_cache_holds_at_most_its_bounds_least_recently_used_out(
    engine: AsyncEngine, other: BuiltinVault, clock: Clock
) -> None:
    small = CachedVault(builtin(engine), TTL, max_entries=2, clock=clock)
    for key in ("a", "b", "c"):
        await other.put(LOCATION, key, b"1")
    assert await small.get(LOCATION, "a") == b"1"
    assert await small.get(LOCATION, "b") == b"1"
    assert await small.get(LOCATION, "a") == b"1"  # `a` used last: `b` goes first
    assert await small.get(LOCATION, "c") == b"1"
    for key in ("a", "b", "c"):
        await other.put(LOCATION, key, b"2")
    assert len(small) == 2
    assert await small.get_many(LOCATION, ["a", "c"]) == {"a": b"1", "c": b"1"}
    assert await small.get(LOCATION, "b") == b"2"

    by_size = CachedVault(builtin(engine), TTL, max_bytes=2800, clock=clock)
    await other.put(LOCATION, "big", b"x" * 4000)  # larger than the whole cache: never kept
    await other.put(LOCATION, "mid", b"x" * 1500)
    await other.put(LOCATION, "mid2", b"y" * 1000)
    assert await by_size.get_many(LOCATION, ["big", "mid", "mid2"]) == {
        "big": b"x" * 4000,
        "mid": b"x" * 1500,
        "mid2": b"y" * 1000,
    }
    assert len(by_size) == 1  # 1,500 + 1,000 bytes and 200 each of overhead exceed 2,800: `mid` went
    await other.put(LOCATION, "mid2", b"z")
    assert await by_size.get(LOCATION, "mid2") == b"y" * 1000


async def test_a_vault_that_fails_loses_what_was_cached_of_it(
    cached: CachedVault, other: BuiltinVault, database: str, engine: AsyncEngine
) -> None:
    await other.put(LOCATION, "kept", b"v1")
    await other.put(LOCATION, "tampered", b"t")
    assert await cached.get(LOCATION, "kept") == b"v1"
    await other.put(LOCATION, "kept", b"v2")
    # A value that no longer opens: the vault fails the read, and nothing cached of it is served any more.
    await execute(database, "UPDATE vault_values SET nonce = $1 WHERE key = 'tampered'", os.urandom(12))
    with pytest.raises(TamperedValue):
        await cached.get_many(LOCATION, ["kept", "tampered"])
    assert len(cached) == 0
    assert await cached.get(LOCATION, "kept") == b"v2"

    # The database stops answering: the cached value is not served meanwhile, once the failure was seen.
    name = urlsplit(database).path.lstrip("/")
    server = urlunsplit(urlsplit(database)._replace(path="/postgres"))
    await execute(server, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        await engine.dispose()  # this replica's connections go; new ones are refused
        # (The built-in vault reports a database refusing connections as SQLAlchemy's DBAPIError, one that
        # does not answer at all as VaultUnavailable: either is a failure of the vault here.)
        with pytest.raises((VaultUnavailable, DBAPIError)):
            await cached.get(LOCATION, "not-cached")
        with pytest.raises((VaultUnavailable, DBAPIError)):
            await cached.get(LOCATION, "kept")
    finally:
        await execute(server, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert await cached.get(LOCATION, "kept") == b"v2"


def test_no_value_is_in_the_repr(engine: AsyncEngine) -> None:
    vault = CachedVault(builtin(engine), TTL)
    vault._keep(LOCATION, "k", b"repr-secret-9f2c")
    assert "repr-secret-9f2c" not in repr(vault) and KEY.hex() not in repr(vault)
    assert "entries=1" in repr(vault)
    with pytest.raises(ValueError):
        CachedVault(builtin(engine), 0)


async def test_a_name_the_vault_refuses_does_not_empty_the_cache() -> None:
    """A name the gateway accepts but a vault cannot hold (here too long for Key Vault, against the contract server
    of tests/support/keyvault.py) is refused before the vault is asked: the vault did not fail, so what is cached
    of it stays. (It emptied the cache, so a run that once asked for such a name emptied it at each of its writes,
    the leak guard looking that name up again every time.)"""
    from adapters.vaults.azure_keyvault import AzureKeyVault, KeyVaultSettings, keyvault_name
    from gateway.core.ports import VaultNameRefused
    from tests.support.keyvault import KeyVaultServer

    server = await KeyVaultServer("tenant", "client", "client-secret").start()
    settings = KeyVaultSettings(
        vault_url=server.url,
        tenant_id="tenant",
        client_id="client",
        client_secret="client-secret",
        authority_host=server.url,
    )
    cached = CachedVault(AzureKeyVault("kv", settings), ttl_seconds=300)
    try:
        server.set(keyvault_name("w1/db", "password"), "cached-value")
        assert await cached.get("w1/db", "password") == b"cached-value"
        for refused in (cached.get("w1/db", "k" * 128), cached.get_many("w1/db", ["password", "k" * 128])):
            with pytest.raises(VaultNameRefused):
                await refused
        asked = len(server.calls)
        assert await cached.get_many("w1/db", ["password"]) == {"password": b"cached-value"}
        assert len(server.calls) == asked  # from memory
    finally:
        await cached.close()
        await server.stop()
