"""Contract tests of the Azure Key Vault adapter against a local server implementing the documented subset
of the Key Vault secrets REST API (7.4) and the Entra ID token endpoint (tests/support/keyvault.py).

They prove the adapter speaks the contract as documented (token grant, secret bundles, paged lists,
401/403/404/429/5xx as the services answer them); they do not reach Azure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from adapters.vaults.azure_keyvault import AzureKeyVault, KeyVaultSettings, keyvault_name
from gateway.core.ports import SecretInfo, VaultDenied, VaultNameRefused, VaultReadOnly, VaultUnavailable
from gateway.devstack import LOOPBACK, free_port
from tests.support.keyvault import SCOPE, KeyVaultServer

pytestmark = pytest.mark.integration

TENANT = "00000000-aaaa-4bbb-8ccc-000000000001"
CLIENT = "11111111-aaaa-4bbb-8ccc-000000000002"
CLIENT_SECRET = "client-secret-Zq8~never-shown"
LOCATION = "w1001/db-creds"
VALUE = "s3cr3t-value-that-must-not-leak"


def settings_for(url: str, *, client_secret: str = CLIENT_SECRET, **overrides: float) -> KeyVaultSettings:
    return KeyVaultSettings(
        vault_url=url,
        tenant_id=TENANT,
        client_id=CLIENT,
        client_secret=client_secret,
        authority_host=url,
        attempts=int(overrides.pop("attempts", 4)),
        retry_seconds=overrides.pop("retry_seconds", 2.0),
        backoff_seconds=overrides.pop("backoff_seconds", 0.02),
        timeout_seconds=5.0,
        connect_timeout_seconds=1.0,
    )


@pytest.fixture
async def keyvault() -> AsyncIterator[KeyVaultServer]:
    server = await KeyVaultServer(TENANT, CLIENT, CLIENT_SECRET, page_size=3).start()
    yield server
    await server.stop()


@pytest.fixture
async def vault(keyvault: KeyVaultServer) -> AsyncIterator[AzureKeyVault]:
    adapter = AzureKeyVault("kv", settings_for(keyvault.url))
    yield adapter
    await adapter.close()


async def test_contract_get_get_many_and_list_across_pages(keyvault: KeyVaultServer, vault: AzureKeyVault) -> None:
    keys = ["password", "user", "DB_PASSWORD", "tls.crt", "api-key", "myKey", "k-1", "x"]
    for number, key in enumerate(keys):
        keyvault.set(keyvault_name(LOCATION, key), f"{VALUE}-{key}", updated=1_700_000_000 + number)
    # Secrets of other scopes and workspaces, of nobody, disabled ones: never part of this scope.
    keyvault.set(keyvault_name("w1001/other", "password"), "other")
    keyvault.set(keyvault_name("w1002/db-creds", "password"), "other-workspace")
    keyvault.set("unrelated-azure-secret", "unrelated")
    keyvault.set(keyvault_name(LOCATION, "disabled"), "off", enabled=False)
    assert len(keyvault.secrets) >= 4 * keyvault.page_size  # four pages at least

    assert await vault.get(LOCATION, "password") == f"{VALUE}-password".encode()
    assert await vault.get(LOCATION, "DB_PASSWORD") == f"{VALUE}-DB_PASSWORD".encode()
    assert await vault.get(LOCATION, "missing") is None
    assert await vault.get(LOCATION, "disabled") is None
    assert await vault.get("w1001/other", "user") is None

    many = await vault.get_many(LOCATION, ["tls.crt", "myKey", "missing", "disabled", "tls.crt"])
    assert many == {
        "tls.crt": f"{VALUE}-tls.crt".encode(),
        "myKey": f"{VALUE}-myKey".encode(),
        "missing": None,
        "disabled": None,
    }

    listed = await vault.list(LOCATION)
    assert listed == sorted(
        (SecretInfo(key, (1_700_000_000 + number) * 1000) for number, key in enumerate(keys)), key=lambda s: s.key
    )
    # Every page was read, each with the api version; values are never part of a list answer.
    pages = [call for call in keyvault.calls if call.startswith("/secrets?")]
    assert len(pages) == -(-len(keyvault.secrets) // keyvault.page_size)
    assert all("api-version=7.4" in call for call in pages)
    assert await vault.list("w1001/empty") == []


async def test_contract_names_are_case_insensitive_in_the_vault(keyvault: KeyVaultServer, vault: AzureKeyVault) -> None:
    keyvault.set(keyvault_name(LOCATION, "password").upper(), VALUE, updated=1_700_000_123)
    assert await vault.get(LOCATION, "password") == VALUE.encode()
    assert await vault.list(LOCATION) == [SecretInfo("password", 1_700_000_123_000)]
    # `Password` is another secret: its name differs by a shift, not by case only.
    assert keyvault_name(LOCATION, "Password").lower() != keyvault_name(LOCATION, "password")
    assert await vault.get(LOCATION, "Password") is None


async def test_contract_lookalike_long_and_malformed_names_are_refused_or_ignored(
    keyvault: KeyVaultServer, vault: AzureKeyVault
) -> None:
    # Names that read back as a pair of this scope but are not its exact encoding belong to no scope.
    keyvault.set("w1001-db-creds--pass-9-9word", "lookalike")
    keyvault.set("w1001-db-creds--password-9", "lookalike")
    keyvault.set("w1001-db-creds--a-2b", "lookalike")  # `a-b` is spelled `a-b`
    keyvault.set("w1001-db-creds--x--y", "two separators")
    assert await vault.list(LOCATION) == []

    calls = len(keyvault.calls)
    with pytest.raises(VaultNameRefused, match="at most 127"):
        await vault.get(LOCATION, "k" * 120)
    with pytest.raises(VaultNameRefused, match="at most 127"):
        await vault.get_many(LOCATION, ["short", "a_" * 40])  # escapes make it too long
    with pytest.raises(VaultNameRefused, match="w<id>/<scope>"):
        await vault.get("workspace-1/db", "password")
    with pytest.raises(VaultNameRefused, match="w<id>/<scope>"):
        await vault.list("w1001/bad scope")
    with pytest.raises(VaultNameRefused):
        await vault.get(LOCATION, "bad/key")
    assert len(keyvault.calls) == calls, "a refused name never reaches the vault"


async def test_contract_vault_is_read_only_through_fedgate(keyvault: KeyVaultServer, vault: AzureKeyVault) -> None:
    assert vault.read_only is True
    for attempt in (
        vault.put(LOCATION, "password", VALUE.encode()),
        vault.delete(LOCATION, "password"),
        vault.drop(LOCATION),
    ):
        with pytest.raises(VaultReadOnly) as refused:
            await attempt
        message = str(refused.value)
        assert "values of a Key Vault-backed scope are managed in Azure Key Vault" in message
        assert keyvault.url in message and VALUE not in message
    with pytest.raises(VaultReadOnly, match="set the secret w1001-db-creds--password"):
        await vault.put(LOCATION, "password", b"x")
    with pytest.raises(VaultReadOnly, match="delete the secrets named w1001-db-creds--\\*"):
        await vault.drop(LOCATION)
    with pytest.raises(VaultReadOnly):  # read-only first, whatever the name
        await vault.put(LOCATION, "k" * 128, b"x")
    assert keyvault.calls == [] and keyvault.token_requests == []


async def test_contract_token_is_cached_and_fetched_again_after_the_vault_expires_it(
    keyvault: KeyVaultServer, vault: AzureKeyVault
) -> None:
    keyvault.set(keyvault_name(LOCATION, "password"), VALUE)
    for _ in range(3):
        assert await vault.get(LOCATION, "password") == VALUE.encode()
    await vault.get_many(LOCATION, ["password", "a", "b", "c"])
    assert len(keyvault.token_requests) == 1
    grant = keyvault.token_requests[0]
    assert grant["grant_type"] == "client_credentials" and grant["scope"] == SCOPE
    assert grant["client_id"] == CLIENT and grant["client_secret"] == CLIENT_SECRET

    keyvault.expire_tokens()  # the vault answers 401 to the cached token
    assert await vault.get(LOCATION, "password") == VALUE.encode()
    assert len(keyvault.token_requests) == 2
    assert await vault.list(LOCATION) == [
        SecretInfo("password", keyvault.secrets["w1001-db-creds--password"].updated * 1000)
    ]
    assert len(keyvault.token_requests) == 2

    # A short-lived token is not used up to its last second: fetched again before it expires.
    keyvault.token_lifetime = 2
    keyvault.expire_tokens()
    await vault.get(LOCATION, "password")
    await vault.get(LOCATION, "password")
    assert len(keyvault.token_requests) == 3
    await asyncio.sleep(1.1)
    await vault.get(LOCATION, "password")
    assert len(keyvault.token_requests) == 4


async def test_contract_forbidden_and_refused_credentials_are_vault_denied(keyvault: KeyVaultServer) -> None:
    keyvault.deny = True
    adapter = AzureKeyVault("kv", settings_for(keyvault.url))
    try:
        with pytest.raises(VaultDenied, match="403 Forbidden"):
            await adapter.get(LOCATION, "password")
        with pytest.raises(VaultDenied):
            await adapter.list(LOCATION)
        with pytest.raises(VaultDenied):
            await adapter.check()
    finally:
        await adapter.close()

    keyvault.deny = False
    wrong = AzureKeyVault("kv", settings_for(keyvault.url, client_secret="a-wrong-client-secret"))
    try:
        with pytest.raises(VaultDenied, match="invalid_client") as denied:
            await wrong.get(LOCATION, "password")
    finally:
        await wrong.close()
    assert "a-wrong-client-secret" not in str(denied.value) and "AADSTS" not in str(denied.value)


async def test_contract_server_down_is_vault_unavailable_after_bounded_retries() -> None:
    url = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    adapter = AzureKeyVault("kv", settings_for(url, attempts=3, retry_seconds=1.0))
    started = time.monotonic()
    try:
        with pytest.raises(VaultUnavailable, match="unreachable") as down:
            await adapter.get(LOCATION, "password")
        with pytest.raises(VaultUnavailable):
            await adapter.check()
    finally:
        await adapter.close()
    assert "after 3 attempts" in str(down.value)
    assert time.monotonic() - started < 3.0


async def test_contract_5xx_and_429_are_retried_within_the_bound(
    keyvault: KeyVaultServer, vault: AzureKeyVault
) -> None:
    keyvault.set(keyvault_name(LOCATION, "password"), VALUE)
    keyvault.fail_next = [503, 500]
    assert await vault.get(LOCATION, "password") == VALUE.encode()

    keyvault.throttle = [0.3]
    started = time.monotonic()
    assert await vault.get(LOCATION, "password") == VALUE.encode()
    assert time.monotonic() - started >= 0.3, "Retry-After is honoured"

    keyvault.fail_next = [503] * 10
    with pytest.raises(VaultUnavailable, match="503"):
        await vault.get(LOCATION, "password")
    keyvault.fail_next = []

    keyvault.throttle = [30]  # beyond the retry bound: no half-minute wait inside a request
    started = time.monotonic()
    with pytest.raises(VaultUnavailable, match="429"):
        await vault.get(LOCATION, "password")
    assert time.monotonic() - started < 1.0


async def test_contract_a_404_that_is_not_key_vaults_is_a_failure_not_a_missing_secret(
    keyvault: KeyVaultServer, vault: AzureKeyVault
) -> None:
    """Only Key Vault's own 404 (`SecretNotFound`) means missing: a proxy's or an ingress's page of HTML (the vault's
    route gone) or another service's JSON read as missing would keep the value out of the leak guard's sight."""
    keyvault.set(keyvault_name(LOCATION, "password"), VALUE)
    page = "<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1><hr>nginx</body></html>"
    for body in (page, {"message": "Resource not found"}, {"error": {"code": "NotFound", "message": "no route"}}):
        keyvault.failure_body = body
        keyvault.fail_next = [404]
        with pytest.raises(VaultUnavailable, match="404"):
            await vault.get(LOCATION, "password")
        keyvault.fail_next = [404]
        with pytest.raises(VaultUnavailable, match="404"):
            await vault.get_many(LOCATION, ["password"])
    assert await vault.get(LOCATION, "password") == VALUE.encode()
    assert await vault.get(LOCATION, "missing") is None  # the vault's own 404


async def test_contract_a_bundle_of_another_secret_is_a_failure_not_its_value(
    keyvault: KeyVaultServer, vault: AzureKeyVault
) -> None:
    """A cache or proxy in front of the vault that answers a read with another secret's bundle (of another scope or
    workspace) must not hand that value to the reader: the bundle's id names the secret it holds."""
    mine, theirs = keyvault_name(LOCATION, "password"), keyvault_name("w1002/db-creds", "password")
    keyvault.set(mine, VALUE)
    keyvault.set(theirs, "other-workspace-password")
    keyvault.mixed_up = {mine: theirs}
    with pytest.raises(VaultUnavailable, match="another secret") as caught:
        await vault.get(LOCATION, "password")
    assert "other-workspace-password" not in str(caught.value)
    with pytest.raises(VaultUnavailable, match="another secret"):
        await vault.get_many(LOCATION, ["password"])
    keyvault.mixed_up = {}
    assert await vault.get(LOCATION, "password") == VALUE.encode()
    keyvault.set(mine.upper(), VALUE)  # the same secret in other case: Key Vault's names are case-insensitive
    assert await vault.get(LOCATION, "password") == VALUE.encode()


async def test_contract_list_follows_next_links_only_on_the_vault_origin(
    keyvault: KeyVaultServer, vault: AzureKeyVault
) -> None:
    for key in "abcdefg":
        keyvault.set(keyvault_name(LOCATION, key), VALUE)
    keyvault.next_link_base = f"http://{LOOPBACK}:{free_port()}"  # another host: the token must not go there
    with pytest.raises(VaultUnavailable, match="outside"):
        await vault.list(LOCATION)
    assert len([call for call in keyvault.calls if call.startswith("/secrets?")]) == 1


async def test_contract_check_describes_the_vault_in_one_line(keyvault: KeyVaultServer, vault: AzureKeyVault) -> None:
    description = await vault.check()
    assert "\n" not in description and keyvault.url in description and CLIENT in description
    assert [call for call in keyvault.calls if call.startswith("/secrets?")]
    assert CLIENT_SECRET not in description


async def test_contract_a_value_token_or_client_secret_is_never_in_messages_or_logs(
    keyvault: KeyVaultServer, vault: AzureKeyVault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keyvault.set(keyvault_name(LOCATION, "password"), VALUE)
    assert await vault.get(LOCATION, "password") == VALUE.encode()
    token = next(iter(keyvault.tokens))
    # A misbehaving vault that echoes the value in its error answers.
    keyvault.failure_body = {"error": {"code": VALUE, "message": f"value {VALUE} token {token}"}}
    messages: list[str] = []
    keyvault.fail_next = [500] * 10
    with pytest.raises(VaultUnavailable) as unavailable:
        await vault.get(LOCATION, "password")
    messages.append(str(unavailable.value))
    keyvault.fail_next = [400]
    with pytest.raises(VaultUnavailable) as bad:
        await vault.list(LOCATION)
    messages.append(str(bad.value))
    with pytest.raises(VaultReadOnly) as read_only:
        await vault.put(LOCATION, "password", VALUE.encode())
    messages.append(str(read_only.value))
    messages.append(repr(vault))
    messages.append(repr(vault.settings))
    logged = caplog.text + "\n".join(messages)
    assert "500" in logged
    for secret in (VALUE, token, CLIENT_SECRET):
        assert secret not in logged
