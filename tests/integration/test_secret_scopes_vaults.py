"""Secret scopes over the other vaults, through the stock databricks-sdk against a real gateway process of its own
(a fresh database): the whole scope life cycle on a workspace whose vault is a real OpenBao dev server, and a
workspace backed by Azure Key Vault (the local contract server of tests/support/keyvault.py), where a put is the
clear read-only refusal while listing and reading work.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import requests

from adapters.vaults.azure_keyvault import keyvault_name
from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack
from tests.databases import migrated_database
from tests.support.bao import BaoServer
from tests.support.identity import Admin, Person, unique
from tests.support.keyvault import KeyVaultServer

pytestmark = pytest.mark.integration

BAO_TEAM, BAO_ID = "bao-team", "2001"
KV_TEAM, KV_ID = "kv-team", "2002"
TENANT = "00000000-aaaa-4bbb-8ccc-000000000011"
CLIENT = "11111111-aaaa-4bbb-8ccc-000000000012"
CLIENT_SECRET = "kv-client-secret-never-shown-4d2"
BAO_POLICY = """
path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "delete", "list"] }}
"""
T = TypeVar("T")


class Loop:
    """An event loop on a thread of its own: the Key Vault stand-in must answer while the sync tests wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass(frozen=True)
class Vaulted:
    gateway: GatewayProcess
    bao: BaoServer
    prefix: str  # where the bao-team scopes live in OpenBao: secret/<prefix>/w2001/<scope>/<key>
    keyvault: KeyVaultServer
    owner: Person  # CAN_USE on both workspaces

    @property
    def url(self) -> str:
        return self.gateway.url


@pytest.fixture(scope="module")
def vaulted(stack: Stack, bao: BaoServer) -> Iterator[Vaulted]:
    prefix = f"scopes{uuid.uuid4().hex[:8]}"
    bao.ok("PUT", f"sys/policies/acl/p-{prefix}", {"policy": BAO_POLICY.format(prefix=prefix)})
    token = bao.ok("POST", "auth/token/create", {"policies": [f"p-{prefix}"], "ttl": "2h"})["auth"]["client_token"]
    # Each workspace in an upstream workspace of its own on the central store: nothing shows in other tests' stores.
    upstream = {name: f"{name}-{prefix}" for name in (BAO_TEAM, KV_TEAM)}
    for name in upstream.values():
        made = requests.post(
            f"{stack.stores['central'].url}/api/3.0/mlflow/workspaces", json={"name": name}, timeout=30
        )
        assert made.status_code == 201, made.text
    loop = Loop()
    keyvault = loop.run(lambda: KeyVaultServer(TENANT, CLIENT, CLIENT_SECRET).start())
    database = migrated_database(stack.database_url, "scope_vaults")
    url = loop.run(database.__aenter__)
    config = stack.workdir / f"fedgate-{prefix}.toml"
    config.write_text(
        f"""
[account]
id = "7001"
[database]
url = "{url}"
[stores.central]
url = "{stack.stores["central"].url}"
workspaces = true
[vaults.bao]
kind = "openbao"
address = "{bao.address}"
prefix = "{prefix}"
auth = {{ method = "token", token_env = "SCOPES_BAO_TOKEN" }}
[vaults.kv]
kind = "azure-keyvault"
vault_url = "{keyvault.url}"
authority_host = "{keyvault.url}"
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret_env = "SCOPES_KV_SECRET"
[[workspaces]]
name = "{BAO_TEAM}"
id = "{BAO_ID}"
store = "central"
upstream_workspace = "{upstream[BAO_TEAM]}"
vault = "bao"
[[workspaces]]
name = "{KV_TEAM}"
id = "{KV_ID}"
store = "central"
upstream_workspace = "{upstream[KV_TEAM]}"
vault = "kv"
"""
    )
    env = {**GATEWAY_ENV, "SCOPES_BAO_TOKEN": token, "SCOPES_KV_SECRET": CLIENT_SECRET}
    gateway = GatewayProcess(config, env).start()
    try:
        admin = Admin(gateway.url)
        owner = admin.person(f"{unique('vault-owner')}@example.com")
        for workspace in (BAO_TEAM, KV_TEAM):
            admin.grant(f"workspaces/{workspace}", "CAN_USE", user=owner.name)
        yield Vaulted(gateway, bao, prefix, keyvault, owner)
    finally:
        gateway.stop()
        loop.run(lambda: database.__aexit__(None, None, None))
        loop.run(keyvault.stop)
        loop.close()


def secrets_api(vaulted: Vaulted, token: str, workspace_id: str) -> Any:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=vaulted.url, token=token, workspace_id=workspace_id).secrets


def running_run(vaulted: Vaulted, workspace_id: str) -> str:
    """A RUNNING run of the workspace, made by the account admin (who may edit it and holds MANAGE on scopes)."""
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Databricks-Workspace-Id": workspace_id})
    created = http.post(f"{vaulted.url}/api/2.0/mlflow/experiments/create", json={"name": unique("v")}, timeout=60)
    assert created.status_code == 200, created.text
    run = http.post(
        f"{vaulted.url}/api/2.0/mlflow/runs/create", json={"experiment_id": created.json()["experiment_id"]}, timeout=60
    )
    assert run.status_code == 200, run.text
    return str(run.json()["run"]["info"]["run_id"])


def read_many(vaulted: Vaulted, workspace_id: str, scope: str, keys: list[str], run_id: str) -> dict[str, Any]:
    answer = requests.post(
        f"{vaulted.url}/api/2.0/secrets/get-many",
        json={"scope": scope, "keys": keys, "run_id": run_id},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Databricks-Workspace-Id": workspace_id},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    return {k: base64.b64decode(v) if v is not None else None for k, v in answer.json()["values"].items()}


def test_the_scope_life_cycle_through_the_databricks_sdk_on_an_openbao_workspace(vaulted: Vaulted) -> None:
    from databricks.sdk.errors import NotFound, ResourceAlreadyExists
    from databricks.sdk.service.workspace import AclPermission, ScopeBackendType

    admin = Admin(vaulted.url)
    reader = admin.person(f"{unique('bao-reader')}@example.com")
    admin.grant(f"workspaces/{BAO_TEAM}", "CAN_USE", user=reader.name)
    owner = secrets_api(vaulted, vaulted.owner.token, BAO_ID)
    scope = unique("bao-creds")
    password, blob = f"pw-{uuid.uuid4().hex}", b"\x00\xff-" + uuid.uuid4().bytes

    owner.create_scope(scope)
    with pytest.raises(ResourceAlreadyExists):
        owner.create_scope(scope)
    assert {s.name: s.backend_type for s in owner.list_scopes()}[scope] == ScopeBackendType.DATABRICKS
    owner.put_secret(scope, "db-password", string_value=password)
    owner.put_secret(scope, "blob", bytes_value=base64.b64encode(blob).decode())
    listed = {s.key: s.last_updated_timestamp for s in owner.list_secrets(scope)}
    assert set(listed) == {"db-password", "blob"} and all((t or 0) > 1_700_000_000_000 for t in listed.values())

    # The values are in OpenBao, one KV v2 secret per key under the workspace's location.
    stored = vaulted.bao.api("GET", f"secret/data/{vaulted.prefix}/w{BAO_ID}/{scope}/db-password")
    assert stored.status_code == 200 and base64.b64decode(stored.json()["data"]["data"]["value"]) == password.encode()

    owner.put_acl(scope, reader.name, AclPermission.READ)
    assert owner.get_acl(scope, reader.name).permission == AclPermission.READ
    assert {a.principal: a.permission for a in owner.list_acls(scope)} == {
        vaulted.owner.name: AclPermission.MANAGE,
        reader.name: AclPermission.READ,
    }
    as_reader = secrets_api(vaulted, reader.token, BAO_ID)
    assert {s.key for s in as_reader.list_secrets(scope)} == {"db-password", "blob"}

    run_id = running_run(vaulted, BAO_ID)
    values = read_many(vaulted, BAO_ID, scope, ["db-password", "blob", "absent"], run_id)
    assert values == {"db-password": password.encode(), "blob": blob, "absent": None}

    owner.delete_secret(scope, "blob")
    assert {s.key for s in owner.list_secrets(scope)} == {"db-password"}
    owner.delete_acl(scope, reader.name)
    with pytest.raises(NotFound):
        as_reader.list_secrets(scope)
    owner.delete_scope(scope)
    assert scope not in {s.name for s in owner.list_scopes()}
    # Its values left OpenBao with it.
    gone = vaulted.bao.api("LIST", f"secret/metadata/{vaulted.prefix}/w{BAO_ID}/{scope}")
    assert gone.status_code == 404, gone.text


def test_contract_a_key_vault_workspace_lists_and_reads_but_refuses_puts_clearly(vaulted: Vaulted) -> None:
    from databricks.sdk.errors import InvalidParameterValue
    from databricks.sdk.service.workspace import AclPermission, ScopeBackendType

    owner = secrets_api(vaulted, vaulted.owner.token, KV_ID)
    scope = unique("kv-creds")
    # A workspace admin creates a Key Vault-backed scope (below: nobody else may) and may hand it to its owner.
    secrets_api(vaulted, ADMIN_TOKEN, KV_ID).create_scope(scope, initial_manage_principal=vaulted.owner.name)
    assert {s.name: s.backend_type for s in owner.list_scopes()}[scope] == ScopeBackendType.AZURE_KEYVAULT
    # Values are set in Azure (here: the contract server), under the adapter's deterministic names.
    location = f"w{KV_ID}/{scope}"
    vaulted.keyvault.set(keyvault_name(location, "db-password"), "kv-pw-value")
    vaulted.keyvault.set(keyvault_name(location, "api_key"), "kv-api-value")

    assert {s.key for s in owner.list_secrets(scope)} == {"db-password", "api_key"}
    run_id = running_run(vaulted, KV_ID)
    values = read_many(vaulted, KV_ID, scope, ["db-password", "api_key", "absent"], run_id)
    assert values == {"db-password": b"kv-pw-value", "api_key": b"kv-api-value", "absent": None}

    for attempt in (
        lambda: owner.put_secret(scope, "db-password", string_value="overwrite"),
        lambda: owner.put_secret(scope, "new-key", bytes_value=base64.b64encode(b"x").decode()),
        lambda: owner.delete_secret(scope, "api_key"),
    ):
        with pytest.raises(InvalidParameterValue, match="Azure Key Vault and is read-only through the gateway"):
            attempt()
    assert vaulted.keyvault.secrets[keyvault_name(location, "db-password").lower()].value == "kv-pw-value"
    assert {s.key for s in owner.list_secrets(scope)} == {"db-password", "api_key"}

    # ACLs are the gateway's own, whatever the vault: they work as on any scope.
    admin = Admin(vaulted.url)
    reader = admin.person(f"{unique('kv-reader')}@example.com")
    admin.grant(f"workspaces/{KV_TEAM}", "CAN_USE", user=reader.name)
    owner.put_acl(scope, reader.name, AclPermission.READ)
    assert {s.key for s in secrets_api(vaulted, reader.token, KV_ID).list_secrets(scope)} == {"db-password", "api_key"}
    # Deleting the scope leaves the values in Azure to its operator.
    owner.delete_scope(scope)
    assert scope not in {s.name for s in owner.list_scopes()}
    assert keyvault_name(location, "api_key").lower() in vaulted.keyvault.secrets


def test_only_workspace_admins_create_scopes_over_a_read_only_key_vault(vaulted: Vaulted) -> None:
    """Creating a scope would claim the values Azure holds under the scope's name: those an operator set before
    the scope was made, and those of a deleted scope, which stay in Azure. A workspace user (CAN_USE) who could
    create it would read them all, so only workspace admins create scopes of a read-only vault."""
    from databricks.sdk.errors import NotFound, PermissionDenied
    from databricks.sdk.service.workspace import AclPermission

    admin = Admin(vaulted.url)
    manager = admin.person(f"{unique('kv-manager')}@example.com")
    admin.grant(f"workspaces/{KV_TEAM}", "CAN_MANAGE", user=manager.name)
    user = secrets_api(vaulted, vaulted.owner.token, KV_ID)  # CAN_USE on the workspace only

    # The operator sets a scope's values in Azure first, then has the scope made; and a scope deleted through
    # the gateway leaves its values in Azure.
    waiting, deleted = unique("kv-prod"), unique("kv-old")
    for scope in (waiting, deleted):
        vaulted.keyvault.set(keyvault_name(f"w{KV_ID}/{scope}", "password"), f"value-of-{scope}")
    as_manager = secrets_api(vaulted, manager.token, KV_ID)
    as_manager.create_scope(deleted)
    as_manager.delete_scope(deleted)

    for scope in (waiting, deleted):
        with pytest.raises(PermissionDenied, match="read-only"):
            user.create_scope(scope)
        with pytest.raises(NotFound):
            user.list_secrets(scope)
        with pytest.raises(PermissionDenied, match="read-only"):
            user.create_scope(scope, initial_manage_principal="users")
    assert not {s.name for s in user.list_scopes()} & {waiting, deleted}
    assert not {s.name for s in as_manager.list_scopes()} & {waiting, deleted}

    # A workspace admin creates it and decides who reads it.
    as_manager.create_scope(waiting)
    assert {s.key for s in as_manager.list_secrets(waiting)} == {"password"}
    with pytest.raises(NotFound):
        user.list_secrets(waiting)
    as_manager.put_acl(waiting, vaulted.owner.name, AclPermission.READ)
    assert {s.key for s in user.list_secrets(waiting)} == {"password"}
    as_manager.delete_scope(waiting)

    # Scopes of a vault the gateway writes are still any workspace user's to create.
    bao_user = secrets_api(vaulted, vaulted.owner.token, BAO_ID)
    mine = unique("bao-mine")
    bao_user.create_scope(mine)
    bao_user.delete_scope(mine)


def test_a_workspace_linked_under_an_unlinked_workspaces_id_finds_none_of_its_values_in_openbao(
    vaulted: Vaulted, stack: Stack
) -> None:
    """Unlinking leaves an external vault's values where they are, and an operator may link another workspace under
    the freed id (ids given automatically are never reused, but one given explicitly may be). A user of the new
    workspace who creates a scope of the old one's name must find it empty, not read the old workspace's secrets."""
    base = "/api/3.0/mlflow/workspaces"
    admin = Admin(vaulted.url)
    names = {side: unique(f"{side}-ws") for side in ("old", "new")}
    for name in names.values():
        made = requests.post(f"{stack.stores['central'].url}{base}", json={"name": name}, timeout=30)
        assert made.status_code == 201, made.text

    def link(name: str, workspace_id: str | None = None) -> str:
        body = {"name": name, "store": "central", "upstream_workspace": name, "vault": "bao"}
        if workspace_id is not None:
            body["workspace_id"] = workspace_id
        answer = requests.post(
            f"{vaulted.url}{base}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["workspace"]["workspace_id"])

    old_id = link(names["old"])
    victim = admin.person(f"{unique('old-team')}@example.com")
    admin.grant(f"workspaces/{names['old']}", "CAN_USE", user=victim.name)
    password = f"old-team-pw-{uuid.uuid4().hex}"
    as_victim = secrets_api(vaulted, victim.token, old_id)
    as_victim.create_scope("db-creds")
    as_victim.put_secret("db-creds", "password", string_value=password)

    gone = requests.delete(f"{vaulted.url}{base}/{names['old']}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert gone.status_code == 204, gone.text
    # What docs/secrets.md says: the values stay in OpenBao, for its operator.
    left = vaulted.bao.api("GET", f"secret/data/{vaulted.prefix}/w{old_id}/db-creds/password")
    assert left.status_code == 200 and base64.b64decode(left.json()["data"]["data"]["value"]) == password.encode()

    new_id = link(names["new"], workspace_id=old_id)
    assert new_id == old_id  # the freed id, given explicitly
    attacker = admin.person(f"{unique('new-team')}@example.com")
    admin.grant(f"workspaces/{names['new']}", "CAN_USE", user=attacker.name)
    as_attacker = secrets_api(vaulted, attacker.token, new_id)
    as_attacker.create_scope("db-creds")
    assert [s.key for s in as_attacker.list_secrets("db-creds")] == []
    run_id = running_run(vaulted, new_id)
    assert read_many(vaulted, new_id, "db-creds", ["password"], run_id) == {"password": None}
    # The new scope starts empty in OpenBao too, and is the new workspace's to fill.
    cleared = vaulted.bao.api("GET", f"secret/data/{vaulted.prefix}/w{old_id}/db-creds/password")
    assert cleared.status_code == 404, cleared.text
    as_attacker.put_secret("db-creds", "password", string_value="new-team-value")
    assert read_many(vaulted, new_id, "db-creds", ["password"], run_id) == {"password": b"new-team-value"}


def test_a_name_the_vault_cannot_hold_leaves_the_runs_writes_checked_and_working(vaulted: Vaulted) -> None:
    """A read names secrets no vault holds or this vault cannot: `..` (a path segment OpenBao would resolve,
    refused by the gateway's one rule for every vault), a name too long for Key Vault. The read is refused (400),
    the Key Vault one after the run has been noted as reading it; the leak guard, which looks up every secret a
    run read on each of its writes, must find nothing under such a name rather than fail every later write of the
    run (it answered 500 to each param, tag and metric of the run from then on), and must still refuse a write
    that holds a real value."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    admin_api = {BAO_ID: secrets_api(vaulted, ADMIN_TOKEN, BAO_ID), KV_ID: secrets_api(vaulted, ADMIN_TOKEN, KV_ID)}
    cases = {BAO_ID: "..", KV_ID: "k" * 128}
    for workspace_id, unstorable in cases.items():
        scope = unique("odd-names")
        admin_api[workspace_id].create_scope(scope)
        value = f"real-value-{uuid.uuid4().hex}"
        if workspace_id == BAO_ID:
            admin_api[workspace_id].put_secret(scope, "password", string_value=value)
        else:
            vaulted.keyvault.set(keyvault_name(f"w{workspace_id}/{scope}", "password"), value)
        run_id = running_run(vaulted, workspace_id)
        http = {**headers, "X-Databricks-Workspace-Id": workspace_id}
        refused = requests.post(
            f"{vaulted.url}/api/2.0/secrets/get",
            json={"scope": scope, "key": unstorable, "run_id": run_id},
            headers=http,
            timeout=60,
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"

        def log_param(param: str, text: str, run_id: str = run_id, http: dict[str, str] = http) -> requests.Response:
            return requests.post(
                f"{vaulted.url}/api/2.0/mlflow/runs/log-parameter",
                json={"run_id": run_id, "key": param, "value": text},
                headers=http,
                timeout=60,
            )

        clean = log_param("lr", "0.1")
        assert clean.status_code == 200, (workspace_id, clean.status_code, clean.text)
        assert read_many(vaulted, workspace_id, scope, ["password"], run_id) == {"password": value.encode()}
        leaked = log_param("dsn", f"postgresql://etl:{value}@db")
        assert leaked.status_code == 400, leaked.text
        assert "contains the value of secret password" in leaked.json()["message"]
        assert log_param("epochs", "3").status_code == 200
