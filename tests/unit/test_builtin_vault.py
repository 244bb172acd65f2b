"""The built-in vault on a migrated database (the session's embedded PostgreSQL): the `Vault` port, and key
rotation, online, resumable, and correct beside concurrent puts, also when the rotating process is SIGKILLed."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import textwrap
import time

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.ports import SecretInfo, Vault, VaultDenied, VaultUnavailable
from gateway.core.sealing import KEYS_ENV, Keyring, TamperedValue, VaultKey
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.pools import plain_dsn
from gateway.secrets.builtin import BuiltinVault, Rotation

OLD, NEW = os.urandom(32), os.urandom(32)
LOCATION = "w1001/db-creds"


def keyring(*kids: str, active: str) -> Keyring:
    material = {"old": OLD, "new": NEW}
    return Keyring([VaultKey(kid, material[kid]) for kid in kids], active)


def entries(*kids: str, active: str) -> str:
    material = {"old": OLD, "new": NEW}
    return " ".join([f"active={active}", *(f"{kid}:{base64.b64encode(material[kid]).decode()}" for kid in kids)])


def vault(engine: AsyncEngine, ring: Keyring) -> BuiltinVault:
    return BuiltinVault(make_sessionmaker(engine), ring)


async def rows(database: str) -> dict[tuple[str, str], asyncpg.Record]:
    connection = await asyncpg.connect(plain_dsn(database))
    try:
        found = await connection.fetch("SELECT * FROM vault_values")
    finally:
        await connection.close()
    return {(row["location"], row["key"]): row for row in found}


async def test_the_vault_keeps_values_sealed_and_answers_the_port(engine: AsyncEngine, database: str) -> None:
    store: Vault = vault(engine, keyring("old", active="old"))
    assert store.name == "builtin" and not store.read_only
    assert await store.get(LOCATION, "password") is None
    await store.put(LOCATION, "password", b"s3cr3t-value")
    await store.put(LOCATION, "user", b"alice")
    await store.put("w1002/db-creds", "password", b"other-workspace")
    assert await store.get(LOCATION, "password") == b"s3cr3t-value"
    assert await store.get_many(LOCATION, ["user", "password", "missing"]) == {
        "user": b"alice",
        "password": b"s3cr3t-value",
        "missing": None,
    }
    assert await store.get_many(LOCATION, []) == {}

    stored = await rows(database)
    assert b"s3cr3t-value" not in stored[(LOCATION, "password")]["ciphertext"]
    assert stored[(LOCATION, "password")]["kid"] == "old"

    before = await store.list(LOCATION)
    assert [info.key for info in before] == ["password", "user"]
    assert all(isinstance(info, SecretInfo) and abs(info.updated_ms - time.time() * 1000) < 60_000 for info in before)
    await asyncio.sleep(0.01)
    await store.put(LOCATION, "user", b"bob")
    after = {info.key: info.updated_ms for info in await store.list(LOCATION)}
    assert after["user"] > before[1].updated_ms
    assert await store.get(LOCATION, "user") == b"bob"

    assert await store.delete(LOCATION, "user") is True
    assert await store.delete(LOCATION, "user") is False
    await store.drop(LOCATION)
    assert await store.list(LOCATION) == []
    assert await store.get("w1002/db-creds", "password") == b"other-workspace"
    assert "1 value(s), active key 'old'" in await store.check()
    assert "other-workspace" not in repr(store) and OLD.hex() not in repr(store)
    await store.close()


async def test_a_ciphertext_copied_to_another_secret_does_not_open(engine: AsyncEngine, database: str) -> None:
    store = vault(engine, keyring("old", active="old"))
    await store.put(LOCATION, "password", b"s3cr3t-value")
    await store.put("w1002/db-creds", "password", b"other")
    connection = await asyncpg.connect(plain_dsn(database))
    try:
        await connection.execute(
            "UPDATE vault_values AS t SET nonce = s.nonce, ciphertext = s.ciphertext FROM vault_values AS s "
            "WHERE t.location = 'w1002/db-creds' AND s.location = $1",
            LOCATION,
        )
    finally:
        await connection.close()
    with pytest.raises(TamperedValue) as raised:
        await store.get("w1002/db-creds", "password")
    assert "s3cr3t" not in str(raised.value)


async def test_check_names_key_ids_that_are_not_configured(engine: AsyncEngine) -> None:
    await vault(engine, keyring("old", active="old")).put(LOCATION, "password", b"v")
    with pytest.raises(VaultDenied, match=r"not configured: 'old' \(1 value\(s\)\)"):
        await vault(engine, keyring("new", active="new")).check()
    assert "1 still under older keys" in await vault(engine, keyring("old", "new", active="new")).check()


async def test_a_database_that_does_not_answer_is_unavailable() -> None:
    engine = make_engine("postgresql://nobody@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(VaultUnavailable, match="did not answer"):
            await vault(engine, keyring("old", active="old")).get(LOCATION, "password")
    finally:
        await engine.dispose()


async def put_many(store: BuiltinVault, count: int) -> dict[tuple[str, str], bytes]:
    values = {(f"w{1000 + i % 3}/scope", f"key-{i:04d}"): f"value {i}".encode() for i in range(count)}
    for (location, key), value in values.items():
        await store.put(location, key, value)
    return values


async def assert_all_readable_under_new_only(engine: AsyncEngine, values: dict[tuple[str, str], bytes]) -> None:
    only_new = vault(engine, keyring("new", active="new"))
    for (location, key), value in values.items():
        assert await only_new.get(location, key) == value
    assert "active key 'new'" in await only_new.check()


async def test_rotation_reseals_everything_in_batches_and_keeps_update_times(
    engine: AsyncEngine, database: str
) -> None:
    values = await put_many(vault(engine, keyring("old", active="old")), 25)
    times = {place: row["updated_at"] for place, row in (await rows(database)).items()}
    rotating = vault(engine, keyring("old", "new", active="new"))
    seen: list[int] = []

    async def on_batch(progress: Rotation) -> None:
        seen.append(progress.rotated)

    result = await rotating.rotate(batch_size=10, on_batch=on_batch)
    assert (result.rotated, result.batches, result.changed, result.unreadable) == (25, 3, 0, 0)
    assert seen == [10, 20, 25]
    assert result.done and result.remaining == {}
    assert "25 value(s) re-encrypted under 'new'" in result.summary()
    after = await rows(database)
    assert {row["kid"] for row in after.values()} == {"new"}
    assert {place: row["updated_at"] for place, row in after.items()} == times
    await assert_all_readable_under_new_only(engine, values)

    again = await rotating.rotate(batch_size=10)
    assert (again.rotated, again.batches, again.remaining) == (0, 0, {})


async def test_rotation_never_overwrites_a_value_put_meanwhile(engine: AsyncEngine) -> None:
    await put_many(vault(engine, keyring("old", active="old")), 4)
    rotating = vault(engine, keyring("old", "new", active="new"))
    # Another replica, still on the old active key, puts while the rotation holds its (now stale) read.
    other_replica = vault(engine, keyring("old", "new", active="old"))
    stale = await rotating._next_batch(("", ""), 10)
    assert len(stale) == 4
    await other_replica.put("w1000/scope", "key-0000", b"newer value")
    await other_replica.delete("w1001/scope", "key-0001")
    resealed = await rotating._reseal(stale)
    assert (resealed.rotated, resealed.changed) == (2, 2)
    assert await rotating.get("w1000/scope", "key-0000") == b"newer value"
    assert await rotating.get("w1001/scope", "key-0001") is None

    # The value put under the old key is what remains, and a second run takes it up.
    result = await rotating.rotate()
    assert result.remaining == {} and result.rotated == 1
    assert await vault(engine, keyring("new", active="new")).get("w1000/scope", "key-0000") == b"newer value"


async def test_rotation_skips_and_reports_values_it_cannot_open(engine: AsyncEngine) -> None:
    await vault(engine, keyring("old", active="old")).put(LOCATION, "lost", b"v")
    await vault(engine, keyring("new", active="new")).put(LOCATION, "fine", b"w")
    result = await vault(engine, keyring("new", active="new")).rotate()
    assert (result.rotated, result.unreadable, result.remaining) == (0, 1, {"old": 1})
    assert not result.done


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from gateway.db.engine import make_engine, make_sessionmaker
    from gateway.secrets.builtin import BuiltinVault
    from gateway.core.sealing import Keyring

    async def main() -> None:
        engine = make_engine(sys.argv[1], pool_size=1)
        vault = BuiltinVault(make_sessionmaker(engine), Keyring.from_environment())

        async def on_batch(progress) -> None:
            print("batch", progress.batches, progress.rotated, flush=True)

        await vault.rotate(batch_size=5, pause_seconds=0.05, on_batch=on_batch)
        print("finished", flush=True)

    asyncio.run(main())
    """
)


async def test_a_rotation_killed_half_way_loses_nothing_and_resumes(engine: AsyncEngine, database: str) -> None:
    values = await put_many(vault(engine, keyring("old", active="old")), 300)
    env = {**os.environ, KEYS_ENV: entries("old", "new", active="new")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        lines: list[str] = []
        while len(lines) < 4:  # four batches committed, the rotation goes on
            line = await asyncio.to_thread(child.stdout.readline)
            assert line.startswith("batch"), (line, child.stderr.read() if child.stderr else "")
            lines.append(line)
        child.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(child.wait, 10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # Cut short: some values are under the new key, the others still under the old one, none lost.
    by_kid: dict[str, int] = {}
    for row in (await rows(database)).values():
        by_kid[row["kid"]] = by_kid.get(row["kid"], 0) + 1
    assert by_kid["new"] >= 20 and by_kid["old"] > 0 and sum(by_kid.values()) == len(values)
    both = vault(engine, keyring("old", "new", active="new"))
    assert await both.get_many("w1000/scope", [k for (loc, k) in values if loc == "w1000/scope"]) == {
        k: v for (loc, k), v in values.items() if loc == "w1000/scope"
    }

    result = await both.rotate(batch_size=50)
    assert result.done
    assert result.rotated == by_kid["old"]
    await assert_all_readable_under_new_only(engine, values)
