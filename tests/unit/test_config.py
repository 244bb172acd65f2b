"""Settings: TOML decoded with msgspec, FEDGATE_* overrides, and start-up errors that name the key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.config import BearerAuth, ConfigError, OpenBaoVaultSettings, VaultAppRole, load_settings

BASE = """
[account]
id = "7001"
[server]
port = 8080
[stores.team-a-store]
url = "http://127.0.0.1:5001"
auth = { kind = "none" }
[stores.central]
url = "http://127.0.0.1:5003"
[central]
store = "central"
[[workspaces]]
name = "team-a"
id = "1001"
store = "team-a-store"
mode = "workspace"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fedgate.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, BASE), environ={"FEDGATE_ADMIN_TOKEN": "t" * 20})
    assert settings.account.id == "7001"
    assert settings.stores["team-a-store"].url == "http://127.0.0.1:5001"
    assert settings.workspaces[0].name == "team-a" and settings.workspaces[0].mode == "workspace"
    assert settings.admin_token == "t" * 20
    assert settings.database.url == "" and settings.database.data_dir == ".fedgate"


def test_environment_overrides_every_key(tmp_path: Path) -> None:
    env = {
        "FEDGATE_SERVER_PORT": "9090",
        "FEDGATE_DATABASE__URL": "postgresql://db/fedgate",
        "FEDGATE_STORES__TEAM_A_STORE__URL": "http://127.0.0.1:6001",
        "FEDGATE_STORES__TEAM_A_STORE__AUTH__KIND": "bearer",
        "FEDGATE_STORES__TEAM_A_STORE__AUTH__TOKEN_ENV": "TEAM_A_TOKEN",
        "FEDGATE_WORKSPACES__0__ID": "2001",
    }
    settings = load_settings(write(tmp_path, BASE), environ=env)
    assert settings.server.port == 9090
    assert settings.database.url == "postgresql://db/fedgate"
    store = settings.stores["team-a-store"]
    assert store.url == "http://127.0.0.1:6001"
    assert isinstance(store.auth, BearerAuth) and store.auth.token_env == "TEAM_A_TOKEN"
    assert settings.workspaces[0].id == "2001"


def test_config_file_from_fedgate_config(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    assert load_settings(environ={"FEDGATE_CONFIG": str(path)}).account.id == "7001"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("[server]\nport = 8080", "[server]\nport = 8080\nprot = 1"), "prot"),
        (("port = 8080", 'port = "high"'), "server.port"),
        (('auth = { kind = "none" }', 'auth = { kind = "kerberos" }'), "stores.team-a-store.auth"),
        (('mode = "workspace"', 'mode = "mirror"'), "workspaces[0].mode"),
        (('name = "team-a"', 'name = "account"'), "workspaces[0].name"),
        (('name = "team-a"', 'name = "Team_A"'), "workspaces[0].name"),
        (('store = "team-a-store"\nmode', 'store = "nope"\nmode'), "workspaces[0].store"),
        # A dual workspace mirrors its own store into the central one: it cannot be the central one.
        (('store = "team-a-store"\nmode = "workspace"', 'store = "central"\nmode = "dual"'), "workspaces[0].store"),
        (('id = "1001"', 'id = "abc"'), "workspaces[0].id"),
        (('store = "central"', 'store = "missing"'), "central.store"),
        (('url = "http://127.0.0.1:5001"', 'url = "ftp://x"'), "stores.team-a-store.url"),
        (("port = 8080", "port = 8080\nrequest_head_seconds = 0"), "server.request_head_seconds"),
        (("port = 8080", "port = 8080\nrequest_body_seconds = -1"), "server.request_body_seconds"),
        (("port = 8080", "port = 8080\nmax_request_head_bytes = 100"), "server.max_request_head_bytes"),
        (
            ("port = 8080", "port = 8080\nrequest_body_min_bytes_per_second = 0"),
            "server.request_body_min_bytes_per_second",
        ),
    ],
)
def test_bad_settings_are_rejected_naming_the_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    text = BASE.replace(change[0], change[1], 1)
    assert text != BASE
    with pytest.raises(ConfigError) as excinfo:
        load_settings(write(tmp_path, text), environ={})
    assert key in str(excinfo.value)


def test_unknown_environment_setting_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FEDGATE_SERVR_PORT"):
        load_settings(write(tmp_path, BASE), environ={"FEDGATE_SERVR_PORT": "1"})
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings(write(tmp_path, BASE), environ={"FEDGATE_SERVER_PROT": "1"})


def test_the_clients_own_variables_do_not_stop_the_server(tmp_path: Path) -> None:
    """A shell set up for the `fedgate` commands and runs (FEDGATE_URL, FEDGATE_TOKEN, FEDGATE_SECRET_SCOPE) may
    also start a gateway: before, each was an unknown setting and start-up stopped."""
    client = {"FEDGATE_URL": "http://127.0.0.1:8080", "FEDGATE_TOKEN": "fgt_x", "FEDGATE_SECRET_SCOPE": "team"}
    settings = load_settings(write(tmp_path, BASE), environ=client)
    assert settings.server.port == load_settings(write(tmp_path, BASE), environ={}).server.port


def test_secrets_named_by_the_config_are_not_settings(tmp_path: Path) -> None:
    text = BASE.replace('auth = { kind = "none" }', 'auth = { kind = "bearer", token_env = "FEDGATE_TEAM_A_TOKEN" }')
    settings = load_settings(write(tmp_path, text), environ={"FEDGATE_TEAM_A_TOKEN": "secret"})
    assert isinstance(settings.stores["team-a-store"].auth, BearerAuth)


def test_admin_token_is_never_read_from_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FEDGATE_ADMIN_TOKEN"):
        load_settings(write(tmp_path, 'admin_token = "x"\n' + BASE), environ={})


def test_duplicate_workspaces_are_rejected(tmp_path: Path) -> None:
    twice = BASE + '[[workspaces]]\nname = "team-a"\nid = "1002"\nstore = "team-a-store"\n'
    with pytest.raises(ConfigError, match="declared twice"):
        load_settings(write(tmp_path, twice), environ={})
    same_id = BASE + '[[workspaces]]\nname = "team-b"\nid = "1001"\nstore = "team-a-store"\n'
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(write(tmp_path, same_id), environ={})


def test_oidc_settings_from_the_environment(tmp_path: Path) -> None:
    assert not load_settings(write(tmp_path, BASE), environ={}).oidc.enabled
    env = {"FEDGATE_OIDC_ISSUER": "https://idp.example/realms/ml", "FEDGATE_OIDC_AUDIENCE": "fedgate"}
    oidc = load_settings(write(tmp_path, BASE), environ=env).oidc
    assert oidc.enabled and oidc.issuer == "https://idp.example/realms/ml" and oidc.audience == "fedgate"
    assert oidc.username_claim == "email" and oidc.leeway_seconds == 60 and "HS256" not in oidc.algorithms
    local = load_settings(
        write(tmp_path, BASE + '[oidc]\nissuer = "http://127.0.0.1:9000/"\naudience = "x"\n'), environ={}
    )
    assert local.oidc.issuer == "http://127.0.0.1:9000/"


@pytest.mark.parametrize(
    ("oidc", "message"),
    [
        ('issuer = "https://idp.example"', "oidc.audience"),
        ('issuer = "http://idp.example"\naudience = "fedgate"', "oidc.issuer"),
        ('issuer = "http://localhost.evil.example"\naudience = "fedgate"', "oidc.issuer"),
        ('issuer = "https://idp.example"\naudience = "fedgate"\nalgorithms = ["HS256"]', "oidc.algorithms"),
        ('issuer = "https://idp.example"\naudience = "fedgate"\nclient_id = "fedgate"', "oidc.client_id"),
        ('issuer = "https://idp.example"\naudience = "fedgate"\nleeway_seconds = 301', "oidc.leeway_seconds"),
    ],
)
def test_bad_oidc_settings_are_rejected(tmp_path: Path, oidc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, f"{BASE}[oidc]\n{oidc}\n"), environ={})


def test_browser_sign_in_s_client_may_not_be_the_api_s_audience(tmp_path: Path) -> None:
    """ID tokens are addressed to the client: were it the API's audience too, an ID token would pass an access
    token's audience check, told apart only by claims a provider need not send."""
    oidc = BASE + '[oidc]\nissuer = "https://idp.example"\naudience = "fedgate"\n'
    apart = load_settings(write(tmp_path, oidc + 'client_id = "fedgate-ui"\n'), environ={})
    assert apart.oidc.browser_sign_in and apart.oidc.client_id != apart.oidc.audience
    with pytest.raises(ConfigError, match=re.escape("oidc.client_id: may not be oidc.audience")):
        load_settings(write(tmp_path, oidc), environ={"FEDGATE_OIDC_CLIENT_ID": "fedgate"})
    # At start-up: `fedgate serve` stops (exit 2) naming the key, before it reaches for a database.
    config = write(
        tmp_path,
        oidc
        + 'client_id = "fedgate"\n'
        + '[database]\nurl = "postgresql://fedgate@127.0.0.1:9/fedgate"\nconnect_timeout_seconds = 1\n',
    )
    started = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        env={**os.environ, "FEDGATE_ADMIN_TOKEN": "a-strong-admin-token-" + "x" * 24},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert "oidc.client_id: may not be oidc.audience" in started.stderr, started.stderr


VAULTS = """
[vaults.builtin]
kind = "builtin"
[vaults.bao]
kind = "openbao"
address = "https://bao.example.com:8200"
namespace = "ml"
auth = { method = "approle", role_id = "fedgate", secret_id_file = "/run/secrets/bao-secret-id" }
[vaults.kv]
kind = "azure-keyvault"
vault_url = "https://ml-secrets.vault.azure.net"
tenant_id = "00000000-0000-0000-0000-000000000001"
client_id = "00000000-0000-0000-0000-000000000002"
client_secret_env = "KV_CLIENT_SECRET"
"""


def test_vaults_are_declared_by_kind_and_chosen_per_workspace(tmp_path: Path) -> None:
    text = BASE.replace('mode = "workspace"\n', 'mode = "workspace"\nvault = "bao"\n') + VAULTS
    settings = load_settings(
        write(tmp_path, text), environ={"FEDGATE_VAULT_KEYS": "active=a a:x", "KV_CLIENT_SECRET": "s"}
    )
    assert settings.workspaces[0].vault == "bao"
    assert [type(v).__name__ for v in settings.vaults.values()] == [
        "BuiltinVaultSettings",
        "OpenBaoVaultSettings",
        "AzureKeyVaultSettings",
    ]
    bao = settings.vaults["bao"]
    assert isinstance(bao, OpenBaoVaultSettings) and isinstance(bao.auth, VaultAppRole)
    assert (bao.mount, bao.prefix, bao.auth.mount) == ("secret", "fedgate", "approle")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('vault = "bao"', 'vault = "nowhere"'), "workspaces[0].vault: no vault named 'nowhere'"),
        (('"https://bao.example.com:8200"', '"bao.example.com"'), "vaults.bao.address: must be an http(s) URL"),
        (('secret_id_file = "/run/secrets/bao-secret-id"', 'mount = "approle"'), "approle auth needs secret_id_env"),
        (('"https://ml-secrets.vault.azure.net"', '"http://ml-secrets.vault.azure.net"'), "vaults.kv.vault_url"),
        (('client_secret_env = "KV_CLIENT_SECRET"', ""), "vaults.kv: needs client_secret_env or client_secret_file"),
        (("[vaults.builtin]", "[vaults.mine]"), "vaults.mine: the built-in vault is the one named 'builtin'"),
        (('kind = "openbao"', 'kind = "hsm"'), "invalid setting"),
    ],
)
def test_bad_vaults_are_refused_naming_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = BASE.replace('mode = "workspace"\n', 'mode = "workspace"\nvault = "bao"\n') + VAULTS
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(write(tmp_path, text.replace(*change)), environ={})


def test_the_vault_keys_are_credentials_not_setting_overrides(tmp_path: Path) -> None:
    environ = {"FEDGATE_VAULT_KEYS": "active=k k:AAAA", "FEDGATE_VAULT_KEYS_FILE": "/nowhere"}
    assert load_settings(write(tmp_path, BASE), environ=environ).vaults == {}


def test_outbound_destinations_from_the_file_and_the_environment(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, BASE), environ={}).outbound.allowed_destinations == []
    listed = BASE + '[outbound]\nallowed_destinations = ["https://hooks.example.com/mlflow/", "api.openai.com"]\n'
    settings = load_settings(write(tmp_path, listed), environ={})
    assert settings.outbound.allowed_destinations == ["https://hooks.example.com/mlflow/", "api.openai.com"]
    env = {"FEDGATE_OUTBOUND_ALLOWED_DESTINATIONS": "api.openai.com, https://hooks.example.com:8443/x"}
    from_env = load_settings(write(tmp_path, BASE), environ=env)
    assert from_env.outbound.allowed_destinations == ["api.openai.com", "https://hooks.example.com:8443/x"]


@pytest.mark.parametrize("entry", ["http://allowed@evil.com", "ftp://files.example.com", "http://127.1/", "a.com:0"])
def test_a_bad_outbound_destination_stops_start_up_naming_it(tmp_path: Path, entry: str) -> None:
    text = BASE + f'[outbound]\nallowed_destinations = ["api.openai.com", "{entry}"]\n'
    with pytest.raises(ConfigError, match=re.escape("outbound.allowed_destinations[1]")):
        load_settings(write(tmp_path, text), environ={})


def test_alert_recipients_from_the_file_and_the_environment(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, BASE), environ={}).alerts.allowed_recipients == []
    listed = BASE + '[alerts]\nallowed_recipients = ["oncall@example.com", "@lists.example.com"]\n'
    settings = load_settings(write(tmp_path, listed), environ={})
    assert settings.alerts.allowed_recipients == ["oncall@example.com", "@lists.example.com"]
    env = {"FEDGATE_ALERTS_ALLOWED_RECIPIENTS": "oncall@example.com, @lists.example.com"}
    from_env = load_settings(write(tmp_path, BASE), environ=env)
    assert from_env.alerts.allowed_recipients == ["oncall@example.com", "@lists.example.com"]


@pytest.mark.parametrize("entry", ["example.com", "@localhost", "a@b", "*@example.com,x", "@@example.com", "x y@a.b"])
def test_a_bad_alert_recipient_stops_start_up_naming_it(tmp_path: Path, entry: str) -> None:
    text = BASE + f'[alerts]\nallowed_recipients = ["oncall@example.com", "{entry}"]\n'
    with pytest.raises(ConfigError, match=re.escape("alerts.allowed_recipients[1]")):
        load_settings(write(tmp_path, text), environ={})
