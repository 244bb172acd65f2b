"""`fedgate secrets new-key` and `fedgate secrets rotate-key`: the operator's commands for the built-in vault's keys,
run as a subprocess against a migrated database (the session's embedded PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text as sql

from gateway.core.sealing import KEYS_ENV, Keyring
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.delivery.secrets import SubscriberSecrets
from gateway.secrets.builtin import BuiltinVault

LOCATION = "w1001/db-creds"


def fedgate(*args: str, keys: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, KEYS_ENV: keys}
    command = [sys.executable, "-m", "gateway.cli", "secrets", *args]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


async def test_new_keys_then_a_rotation_that_leaves_nothing_under_the_old_key(database: str, tmp_path: Path) -> None:
    old = fedgate("new-key", "k2026", keys="")
    new = fedgate("new-key", "k2027", keys="")
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    assert old.stdout.startswith("k2026:") and old.stdout != new.stdout
    assert fedgate("new-key", "bad id!", keys="").returncode == 2

    engine = make_engine(database, pool_size=2)
    try:
        before = BuiltinVault(make_sessionmaker(engine), Keyring.parse(f"active=k2026 {old.stdout}", "test"))
        for number in range(7):
            await before.put(LOCATION, f"key-{number}", f"value-{number}".encode())
        # Webhook secrets are sealed with the same keys, and rotated with the vault's values.
        sealed = SubscriberSecrets(Keyring.parse(f"active=k2026 {old.stdout}", "test"))
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.execute(
                sql(
                    "INSERT INTO registry_webhooks "
                    '(id, workspace_id, events, url, secret, "authorization", created_by) '
                    "VALUES ('w1', 1, '[]', 'https://h/w', :secret, :authorization, 'x')"
                ),
                {
                    "secret": sealed.seal("registry_webhook:w1", "secret", "value-hook"),
                    "authorization": sealed.seal("registry_webhook:w1", "authorization", "value-auth"),
                },
            )
            subscriptions = [
                {
                    "webhook": {
                        "url": "https://h/a",
                        "secret": sealed.seal("sql_alert:a1", "webhook:https://h/a", "value-alert"),
                    }
                }
            ]
            await session.execute(
                sql(
                    "INSERT INTO sql_alerts (id, display_name, owner_name, query_text, condition, subscriptions) "
                    "VALUES ('a1', 'a', 'o', 'SELECT 1 AS x', '{}'::jsonb, CAST(:subscriptions AS jsonb))"
                ),
                {"subscriptions": json.dumps(subscriptions)},
            )

        config = tmp_path / "fedgate.toml"
        config.write_text(f'[database]\nurl = "{database}"\n')
        both = f"active=k2027 {old.stdout.strip()} {new.stdout.strip()}"
        rotated = fedgate("rotate-key", "--batch-size", "3", keys=both, config=config)
        assert rotated.returncode == 0, rotated.stderr
        assert "7 value(s) re-encrypted under 'k2027' in 3 batch(es)" in rotated.stdout
        assert "remaining: none" in rotated.stdout
        assert (
            "2 registry webhook secret(s) re-encrypted under 'k2027', 0 unreadable; remaining: none" in rotated.stdout
        )
        assert "1 SQL alert secret(s) re-encrypted under 'k2027', 0 unreadable; remaining: none" in rotated.stdout
        for text in (rotated.stdout, rotated.stderr):
            assert "value-" not in text and old.stdout.split(":")[1].strip() not in text

        after = BuiltinVault(make_sessionmaker(engine), Keyring.parse(f"active=k2027 {new.stdout}", "test"))
        assert await after.get_many(LOCATION, [f"key-{n}" for n in range(7)]) == {
            f"key-{n}": f"value-{n}".encode() for n in range(7)
        }
        only_new = SubscriberSecrets(Keyring.parse(f"active=k2027 {new.stdout}", "test"))
        async with make_sessionmaker(engine)() as session:
            hook = (await session.execute(sql('SELECT secret, "authorization" FROM registry_webhooks'))).one()
            alert = (await session.execute(sql("SELECT subscriptions FROM sql_alerts"))).scalar_one()
        assert only_new.open("registry_webhook:w1", "secret", hook.secret) == "value-hook"
        assert only_new.open("registry_webhook:w1", "authorization", hook.authorization) == "value-auth"
        assert only_new.open("sql_alert:a1", "webhook:https://h/a", alert[0]["webhook"]["secret"]) == "value-alert"
    finally:
        await engine.dispose()


def test_rotation_without_keys_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "fedgate.toml"
    config.write_text('[database]\nurl = "postgresql://127.0.0.1:1/none"\n')
    refused = fedgate("rotate-key", keys="", config=config)
    assert refused.returncode == 2
    assert f"the built-in vault needs its keys: set {KEYS_ENV}" in refused.stderr
