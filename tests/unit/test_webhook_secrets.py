"""Webhook secrets at rest (gateway/delivery/secrets.py, migration 0030): sealed with the built-in vault's keys,
bound to their place, opened only with those keys; the migration seals what an older release stored as given,
refuses to run without the keys when there is something to seal, and the tables refuse a plain value after it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from gateway.core.errors import InvalidParameter
from gateway.core.sealing import KEYS_ENV, Keyring, SealError, TamperedValue, UnknownKeyId, new_key_entry
from gateway.db.migrate import upgrade
from gateway.delivery.secrets import SubscriberSecrets
from tests.databases import migrated_database, sql

OLD, NEW = new_key_entry("old"), new_key_entry("new")
PLAIN = "whsec-" + uuid.uuid4().hex
TOKEN = "Bearer " + uuid.uuid4().hex


def keyring(active: str, *entries: str) -> Keyring:
    return Keyring.parse(" ".join((f"active={active}", *entries)), "test keys")


def test_a_sealed_secret_opens_only_in_its_place_and_never_shows_its_value() -> None:
    secrets = SubscriberSecrets(keyring("old", OLD))
    stored = secrets.seal("registry_webhook:a", "secret", PLAIN)
    assert stored.startswith("fgv1:old:") and PLAIN not in stored
    assert secrets.seal("registry_webhook:a", "secret", PLAIN) != stored  # a fresh nonce each time
    assert secrets.open("registry_webhook:a", "secret", stored) == PLAIN
    for place, field in (("registry_webhook:b", "secret"), ("registry_webhook:a", "authorization")):
        with pytest.raises(TamperedValue) as moved:
            secrets.open(place, field, stored)
        assert PLAIN not in str(moved.value) and stored not in str(moved.value)
    with pytest.raises(TamperedValue) as plain:
        secrets.open("registry_webhook:a", "secret", PLAIN)
    assert PLAIN not in str(plain.value)
    with pytest.raises(UnknownKeyId, match="'old'"):
        SubscriberSecrets(keyring("new", NEW)).open("registry_webhook:a", "secret", stored)


def test_without_vault_keys_a_secret_is_refused_not_kept_and_a_sealed_one_does_not_open() -> None:
    none = SubscriberSecrets(None)
    with pytest.raises(InvalidParameter, match=KEYS_ENV) as refused:
        none.seal("sql_alert:x", "webhook:https://h/x", PLAIN)
    assert PLAIN not in refused.value.message
    stored = SubscriberSecrets(keyring("old", OLD)).seal("sql_alert:x", "webhook:https://h/x", PLAIN)
    with pytest.raises(SealError, match=KEYS_ENV) as unopened:
        none.open("sql_alert:x", "webhook:https://h/x", stored)
    # What a delivery records and logs names the failure and the key id, never the place (a URL may carry a token).
    said = SubscriberSecrets.unopened(stored, unopened.value)
    assert said == "the webhook's secret cannot be opened (SealError, key id 'old')"


def test_resealing_moves_a_secret_to_the_active_key() -> None:
    old = SubscriberSecrets(keyring("old", OLD))
    stored = old.seal("registry_webhook:a", "secret", PLAIN)
    both = SubscriberSecrets(keyring("new", OLD, NEW))
    again = both.reseal("registry_webhook:a", "secret", stored)
    assert again is not None and SubscriberSecrets.key_id(again) == "new"
    assert both.reseal("registry_webhook:a", "secret", again) is None
    assert SubscriberSecrets(keyring("new", NEW)).open("registry_webhook:a", "secret", again) == PLAIN


# -- the migration ---------------------------------------------------------------------------------------------


@pytest.fixture
def vault_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEYS_ENV, f"active=old {OLD}")
    monkeypatch.delenv("FEDGATE_VAULT_KEYS_FILE", raising=False)
    yield


@pytest.fixture
async def at_0029(database_url: str) -> AsyncIterator[str]:
    """A database migrated to 0029 holding a registry webhook and an alert whose secrets are stored as given."""
    async with migrated_database(database_url, "sealing", "0029") as url:
        await sql(
            url,
            'INSERT INTO registry_webhooks (id, workspace_id, events, url, secret, "authorization", created_by) '
            "VALUES ('w1', 1, '[\"COMMENT_CREATED\"]', 'https://h/a', $1, $2, 'x'), "
            "('w2', 1, '[\"COMMENT_CREATED\"]', 'https://h/b', NULL, NULL, 'x')",
            PLAIN,
            TOKEN,
        )
        subscriptions = [{"webhook": {"url": "https://h/alert", "secret": PLAIN}}, {"user_email": "a@b.example"}]
        await sql(
            url,
            "INSERT INTO sql_alerts (id, display_name, owner_name, query_text, condition, subscriptions) "
            "VALUES ('a1', 'a', 'o', 'SELECT 1 AS x', '{}'::jsonb, $1::jsonb)",
            json.dumps(subscriptions),
        )
        yield url


async def test_the_migration_seals_stored_secrets_and_the_tables_refuse_plain_ones(
    at_0029: str, vault_keys: None
) -> None:
    await asyncio.to_thread(upgrade, at_0029, "0030")
    secrets = SubscriberSecrets(keyring("old", OLD))
    rows = {row["id"]: row for row in await sql(at_0029, 'SELECT id, secret, "authorization" FROM registry_webhooks')}
    assert (rows["w2"]["secret"], rows["w2"]["authorization"]) == (None, None)
    assert PLAIN not in rows["w1"]["secret"] and TOKEN not in rows["w1"]["authorization"]
    assert secrets.open("registry_webhook:w1", "secret", rows["w1"]["secret"]) == PLAIN
    assert secrets.open("registry_webhook:w1", "authorization", rows["w1"]["authorization"]) == TOKEN
    [alert] = await sql(at_0029, "SELECT subscriptions::text AS s FROM sql_alerts WHERE id = 'a1'")
    assert PLAIN not in alert["s"]
    webhook, email = json.loads(alert["s"])
    assert email == {"user_email": "a@b.example"}
    assert secrets.open("sql_alert:a1", "webhook:https://h/alert", webhook["webhook"]["secret"]) == PLAIN

    with pytest.raises(asyncpg.CheckViolationError):
        await sql(at_0029, "UPDATE registry_webhooks SET secret = $1 WHERE id = 'w2'", PLAIN)
    with pytest.raises(asyncpg.CheckViolationError):
        await sql(at_0029, "UPDATE registry_webhooks SET \"authorization\" = $1 WHERE id = 'w2'", TOKEN)
    with pytest.raises(asyncpg.CheckViolationError):
        await sql(
            at_0029,
            "UPDATE sql_alerts SET subscriptions = $1::jsonb WHERE id = 'a1'",
            json.dumps([{"webhook": {"url": "https://h/alert", "secret": PLAIN}}]),
        )

    # Downgraded (with the same keys), the values are as they were given.
    await asyncio.to_thread(downgrade, at_0029, "0029")
    [w1] = await sql(at_0029, "SELECT secret, \"authorization\" FROM registry_webhooks WHERE id = 'w1'")
    assert (w1["secret"], w1["authorization"]) == (PLAIN, TOKEN)
    [alert] = await sql(at_0029, "SELECT subscriptions FROM sql_alerts WHERE id = 'a1'")
    assert json.loads(alert["subscriptions"])[0]["webhook"]["secret"] == PLAIN


async def test_the_migration_stops_without_the_keys_when_there_is_a_secret_to_seal(
    at_0029: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv("FEDGATE_VAULT_KEYS_FILE", raising=False)
    with pytest.raises(RuntimeError) as stopped:
        await asyncio.to_thread(upgrade, at_0029, "0030")
    assert KEYS_ENV in str(stopped.value) and PLAIN not in str(stopped.value) and TOKEN not in str(stopped.value)
    [w1] = await sql(at_0029, "SELECT secret FROM registry_webhooks WHERE id = 'w1'")
    assert w1["secret"] == PLAIN  # nothing half done: the revision's one transaction rolled back
    [(revision,)] = await sql(at_0029, "SELECT version_num FROM alembic_version")
    assert revision == "0029"


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    from gateway.db.migrate import alembic_config

    command.downgrade(alembic_config(url), revision)
