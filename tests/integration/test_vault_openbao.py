"""The OpenBao / Vault KV v2 adapter against a real `bao server -dev`: values, listings, logins, refusals."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from adapters.vaults.openbao import AppRoleAuth, OpenBaoAuth, OpenBaoSettings, OpenBaoVault, TokenAuth
from gateway.core.ports import VaultDenied, VaultUnavailable
from gateway.devstack import free_port
from tests.support.bao import BaoIngress, BaoServer
from tests.support.waiting import settled

pytestmark = pytest.mark.integration

BINARY = bytes(range(256)) + b"\x00\xff\xfe"
SECRET = b"s3cr3t-value-that-must-never-leak-7f3a"

POLICY = """
path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "delete", "list"] }}
"""


@pytest.fixture
def prefix(bao: BaoServer) -> Iterator[str]:
    """A prefix of its own per test, and a policy `p-<prefix>` granting what the adapter needs on it."""
    name = f"t{uuid.uuid4().hex[:10]}"
    bao.ok("PUT", f"sys/policies/acl/p-{name}", {"policy": POLICY.format(prefix=name)})
    yield name


def make(bao: BaoServer, prefix: str, auth: OpenBaoAuth, **settings: object) -> OpenBaoVault:
    return OpenBaoVault("bao", OpenBaoSettings(address=bao.address, auth=auth, prefix=prefix, **settings))  # type: ignore[arg-type]


def child_token(bao: BaoServer, policies: list[str], **extra: object) -> str:
    created = bao.ok("POST", "auth/token/create", {"policies": policies, "no_default_policy": False, **extra})
    return str(created["auth"]["client_token"])


@pytest.fixture
async def vault(bao: BaoServer, prefix: str) -> AsyncIterator[OpenBaoVault]:
    """The adapter with a token limited to the test's prefix (not the root token)."""
    opened = make(bao, prefix, TokenAuth(child_token(bao, [f"p-{prefix}"], ttl="1h")))
    yield opened
    await opened.close()


def assert_clean(exc: BaseException, *secrets: str | bytes) -> None:
    """No secret in the message, the repr, or anything chained to the exception."""
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            for secret in secrets:
                needle = secret.decode("latin-1") if isinstance(secret, bytes) else secret
                assert needle not in text, f"{type(seen).__name__} carries a secret"
                if isinstance(secret, bytes):
                    assert base64.b64encode(secret).decode() not in text
        seen = seen.__cause__ or seen.__context__


async def test_binary_values_round_trip_through_put_get_list_delete_drop(
    vault: OpenBaoVault, bao: BaoServer, prefix: str
) -> None:
    before = int(time.time() * 1000) - 2000
    await vault.put("w1/db", "binary", BINARY)
    await vault.put("w1/db", "empty", b"")
    await vault.put("w1/db", "text", b"hello")
    await vault.put("w1/other", "kept", SECRET)

    assert await vault.get("w1/db", "binary") == BINARY
    assert await vault.get("w1/db", "empty") == b""
    assert await vault.get("w1/db", "nope") is None
    assert await vault.get("w1/missing-scope", "nope") is None
    assert await vault.get_many("w1/db", ["text", "nope", "binary", "text"]) == {
        "text": b"hello",
        "nope": None,
        "binary": BINARY,
    }

    # Stored as one KV v2 secret per key, base64 in "value".
    stored = bao.ok("GET", f"secret/data/{prefix}/w1/db/binary")["data"]["data"]
    assert stored == {"value": base64.b64encode(BINARY).decode(), "encoding": "base64"}

    listed = await vault.list("w1/db")
    assert [info.key for info in listed] == ["binary", "empty", "text"]
    after = int(time.time() * 1000) + 2000
    assert all(before <= info.updated_ms <= after for info in listed)
    assert await vault.list("w1/missing-scope") == []

    first = {info.key: info.updated_ms for info in listed}["text"]
    await asyncio.sleep(0.01)
    await vault.put("w1/db", "text", b"hello again")
    assert await vault.get("w1/db", "text") == b"hello again"
    assert {info.key: info.updated_ms for info in await vault.list("w1/db")}["text"] > first

    assert await vault.delete("w1/db", "text") is True
    assert await vault.delete("w1/db", "text") is False
    assert await vault.get("w1/db", "text") is None
    # Every version is gone, not only the current one.
    assert bao.api("GET", f"secret/metadata/{prefix}/w1/db/text").status_code == 404

    await vault.drop("w1/db")
    assert await vault.list("w1/db") == []
    assert await vault.get_many("w1/db", ["binary", "empty"]) == {"binary": None, "empty": None}
    assert await vault.get("w1/other", "kept") == SECRET


async def test_a_secret_written_by_hand_reads_as_text_and_a_soft_deleted_one_as_missing(
    vault: OpenBaoVault, bao: BaoServer, prefix: str
) -> None:
    bao.ok("POST", f"secret/data/{prefix}/w1/ops/by-hand", {"data": {"value": "plain-text"}})
    assert await vault.get("w1/ops", "by-hand") == b"plain-text"
    await vault.put("w1/ops", "gone", b"x")
    bao.ok("DELETE", f"secret/data/{prefix}/w1/ops/gone")  # `bao kv delete`: the latest version only
    assert await vault.get("w1/ops", "gone") is None
    assert [info.key for info in await vault.list("w1/ops")] == ["by-hand"]


async def test_check_describes_the_vault_on_one_line_without_the_token(bao: BaoServer, prefix: str) -> None:
    token = child_token(bao, [f"p-{prefix}"], ttl="1h")
    vault = make(bao, prefix, TokenAuth(token))
    try:
        line = await vault.check()
    finally:
        await vault.close()
    assert "\n" not in line and token not in line
    assert bao.address in line and "kv v2" in line and f"prefix {prefix}/" in line and f"p-{prefix}" in line


async def test_a_mount_that_does_not_exist_is_a_failure_not_a_missing_secret(bao: BaoServer, prefix: str) -> None:
    vault = make(bao, prefix, TokenAuth(bao.root_token), mount="no-such-mount")
    try:
        with pytest.raises(VaultUnavailable, match="no mount"):
            await vault.get("w1/db", "k")
        with pytest.raises(VaultUnavailable, match="no mount"):
            await vault.put("w1/db", "k", SECRET)
    finally:
        await vault.close()


async def test_namespace_is_sent_and_without_one_the_root_namespace_is_used(bao: BaoServer, prefix: str) -> None:
    namespace = f"ns{prefix}"
    bao.ok("POST", f"sys/namespaces/{namespace}")
    bao.ok("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, namespace=namespace)
    inside = make(bao, prefix, TokenAuth(bao.root_token), namespace=namespace)
    outside = make(bao, prefix, TokenAuth(bao.root_token))
    try:
        await inside.put("w1/db", "k", b"in the namespace")
        assert await inside.get("w1/db", "k") == b"in the namespace"
        assert await outside.get("w1/db", "k") is None
        assert f"namespace {namespace}" in await inside.check()
        assert "namespace" not in await outside.check()
    finally:
        await inside.close()
        await outside.close()


async def test_a_token_without_rights_is_denied_and_no_error_carries_a_value_or_token(
    bao: BaoServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = child_token(bao, ["default"], ttl="1h")
    vault = make(bao, prefix, TokenAuth(token))
    try:
        calls = [
            vault.put("w1/db", "k", SECRET),
            vault.get("w1/db", "k"),
            vault.get_many("w1/db", ["k", "j"]),
            vault.list("w1/db"),
            vault.delete("w1/db", "k"),
            vault.drop("w1/db"),
            vault.check(),
        ]
        for call in calls:
            with pytest.raises(VaultDenied) as caught:
                await call
            assert "403" in str(caught.value)
            assert_clean(caught.value, SECRET, token)
    finally:
        await vault.close()
    assert_logs_clean(caplog, SECRET, token)


async def test_an_unreachable_address_is_unavailable_after_bounded_retries(bao: BaoServer, prefix: str) -> None:
    vault = OpenBaoVault(
        "gone",
        OpenBaoSettings(
            address=f"http://127.0.0.1:{free_port()}",
            auth=TokenAuth("some-token-value"),
            prefix=prefix,
            attempts=3,
            backoff_seconds=0.01,
            connect_timeout_seconds=1,
        ),
    )
    started = time.monotonic()
    try:
        for call in (vault.put("w1/db", "k", SECRET), vault.get("w1/db", "k"), vault.list("w1/db"), vault.check()):
            with pytest.raises(VaultUnavailable, match="unreachable") as caught:
                await call
            assert_clean(caught.value, SECRET, "some-token-value")
    finally:
        await vault.close()
    assert time.monotonic() - started < 10


async def test_a_stopped_server_is_unavailable(
    bao: BaoServer, prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.support.bao import start_bao

    other = start_bao(tmp_path_factory.mktemp("bao-stopped"))
    vault = OpenBaoVault(
        "stopped",
        OpenBaoSettings(address=other.address, auth=TokenAuth(other.root_token), attempts=2, backoff_seconds=0.01),
    )
    try:
        await vault.put("w1/db", "k", SECRET)
        other.stop()
        with pytest.raises(VaultUnavailable) as caught:
            await vault.get("w1/db", "k")
        assert_clean(caught.value, SECRET, other.root_token)
    finally:
        other.stop()
        await vault.close()


def approle(bao: BaoServer, prefix: str, **role: object) -> tuple[str, str]:
    """AppRole enabled once through the HTTP API, a role of the test's policy; its role id and a secret id."""
    if "approle/" not in bao.ok("GET", "sys/auth")["data"]:
        bao.ok("POST", "sys/auth/approle", {"type": "approle"})
    bao.ok("POST", f"auth/approle/role/r-{prefix}", {"token_policies": [f"p-{prefix}"], **role})
    role_id = bao.ok("GET", f"auth/approle/role/r-{prefix}/role-id")["data"]["role_id"]
    secret_id = bao.ok("POST", f"auth/approle/role/r-{prefix}/secret-id")["data"]["secret_id"]
    return str(role_id), str(secret_id)


async def test_approle_logs_in_and_logs_in_again_after_its_token_is_revoked(
    bao: BaoServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    role_id, secret_id = approle(bao, prefix, token_ttl="1h")
    vault = make(bao, prefix, AppRoleAuth(role_id=role_id, secret_id=secret_id))
    try:
        await vault.put("w1/db", "k", SECRET)
        assert await vault.get("w1/db", "k") == SECRET
        assert vault._lease is not None
        first = vault._lease.token

        # Every token AppRole gave out is revoked: the next call is refused once, logs in again, succeeds.
        bao.ok("PUT", "sys/leases/revoke-prefix/auth/approle/login")
        assert bao.api("GET", "auth/token/lookup-self", token=first).status_code == 403
        assert await vault.get("w1/db", "k") == SECRET
        assert vault._lease.token != first
        assert [info.key for info in await vault.list("w1/db")] == ["k"]
        assert "token approle" in await vault.check()
    finally:
        await vault.close()
    assert_logs_clean(caplog, SECRET, secret_id, first)


async def test_approle_with_a_wrong_secret_id_is_denied_without_naming_it(bao: BaoServer, prefix: str) -> None:
    role_id, _ = approle(bao, prefix)
    wrong = "0d5a7e5e-wrong-secret-id-4c1b"
    vault = make(bao, prefix, AppRoleAuth(role_id=role_id, secret_id=wrong))
    try:
        with pytest.raises(VaultDenied, match="AppRole") as caught:
            await vault.get("w1/db", "k")
        assert_clean(caught.value, wrong)
        assert wrong not in repr(vault.settings)
    finally:
        await vault.close()


async def test_a_renewable_token_is_renewed_before_its_lease_runs_out(bao: BaoServer, prefix: str) -> None:
    # An 8 s lease renewed after a fifth of it: a renewal may come 6 s late on a loaded machine and still be in
    # time. The test waits for the renewal itself, then until the first lease is surely over.
    token = child_token(bao, [f"p-{prefix}"], ttl="8s", renewable=True)
    first_lease_over = time.monotonic() + 8 + 1
    vault = make(bao, prefix, TokenAuth(token), renew_at=0.2)
    try:
        await vault.put("w1/db", "k", b"v")
        first = vault._lease
        assert first is not None and first.renewable and first.ttl > 0
        await settled(
            lambda: (
                vault._lease is not first and vault._lease is not None and vault._lease.generation == first.generation
            ),
            "the token renewed in the background (the same token, a new lease)",
        )
        await asyncio.sleep(max(0.0, first_lease_over - time.monotonic()))  # only renewals kept the token alive
        assert await vault.get("w1/db", "k") == b"v"
        assert bao.api("GET", "auth/token/lookup-self", token=token).status_code == 200
    finally:
        await vault.close()


async def test_an_approle_token_at_its_max_ttl_is_replaced_by_a_new_login(bao: BaoServer, prefix: str) -> None:
    role_id, secret_id = approle(bao, prefix, token_ttl="2s", token_max_ttl="3s")
    vault = make(bao, prefix, AppRoleAuth(role_id=role_id, secret_id=secret_id))
    try:
        await vault.put("w1/db", "k", b"v")
        assert vault._lease is not None
        first = vault._lease.generation
        # No call is made meanwhile: a new login can only come from the background, not from a refusal.
        await settled(
            lambda: vault._lease is not None and vault._lease.generation > first, "a new login in the background"
        )
        assert await vault.get("w1/db", "k") == b"v"
    finally:
        await vault.close()


def test_a_renewal_share_outside_the_lease_is_refused() -> None:
    for share in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="renew_at"):
            OpenBaoSettings(address="http://127.0.0.1:9", auth=TokenAuth("t"), renew_at=share)


def assert_logs_clean(caplog: pytest.LogCaptureFixture, *secrets: str | bytes) -> None:
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in secrets:
        needle = secret.decode("latin-1") if isinstance(secret, bytes) else secret
        assert needle not in text


async def test_a_404_that_is_not_the_vaults_is_a_failure_not_a_missing_secret(
    bao: BaoServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An ingress in front of OpenBao whose route to it is gone answers every path with its default backend's HTML
    404. Read as "no such secret", a run's read would be told the secret does not exist, the leak guard would not
    look for the values the run read, and a scope's drop (on its creation and deletion) would find nothing to remove
    and leave the values there: each is a vault that did not answer."""
    caplog.set_level(logging.DEBUG)
    token = child_token(bao, [f"p-{prefix}"], ttl="1h")
    ingress = await BaoIngress(bao.address).start()
    vault = OpenBaoVault("bao", OpenBaoSettings(address=ingress.url, auth=TokenAuth(token), prefix=prefix, attempts=1))
    try:
        await vault.put("w1/db", "password", SECRET)
        assert await vault.get("w1/db", "password") == SECRET
        ingress.route_gone()
        calls = {
            "get": lambda: vault.get("w1/db", "password"),
            "get_many": lambda: vault.get_many("w1/db", ["password", "user"]),
            "list": lambda: vault.list("w1/db"),
            "delete": lambda: vault.delete("w1/db", "password"),
            "drop": lambda: vault.drop("w1/db"),
        }
        for name, call in calls.items():
            with pytest.raises(VaultUnavailable, match="404") as caught:
                await call()
            assert_clean(caught.value, SECRET, token)
            assert "<html" not in str(caught.value), name
        ingress.route_gone(False)
        # Nothing was removed meanwhile; the vault's own 404s still mean missing.
        assert await vault.get_many("w1/db", ["password", "user"]) == {"password": SECRET, "user": None}
        assert [info.key for info in await vault.list("w1/db")] == ["password"]
        assert await vault.list("w1/none") == []
        assert await vault.delete("w1/db", "user") is False
        assert await vault.delete("w1/db", "password") is True
        assert await vault.get("w1/db", "password") is None
    finally:
        await vault.close()
        await ingress.stop()
    assert_logs_clean(caplog, SECRET, token)
