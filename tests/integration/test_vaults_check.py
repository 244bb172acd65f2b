"""`fedgate vaults check`: every configured vault reachable and the gateway authorised, one line each.

Against a real OpenBao dev server, the built-in vault on the session's embedded PostgreSQL, and an
OpenBao address nobody listens on.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.devstack import free_port
from tests.databases import migrated_database
from tests.support.bao import BaoServer

pytestmark = pytest.mark.integration

KEYS = f"active=k1 k1:{base64.b64encode(os.urandom(32)).decode()}"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_url, "vaults_check") as url:
        yield url


def check(config: Path, bao: BaoServer) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDGATE_VAULT_KEYS": KEYS, "BAO_CHECK_TOKEN": bao.root_token}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "vaults", "check", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_each_vault_is_reported_and_one_that_does_not_answer_fails_the_check(
    database: str, bao: BaoServer, tmp_path: Path
) -> None:
    reachable = f"""
[database]
url = "{database}"
[vaults.bao]
kind = "openbao"
address = "{bao.address}"
auth = {{ method = "token", token_env = "BAO_CHECK_TOKEN" }}
"""
    config = tmp_path / "fedgate.toml"
    config.write_text(reachable)
    good = check(config, bao)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = {line.split()[0]: line.split() for line in good.stdout.splitlines()[1:]}
    assert lines["builtin"][1:3] == ["builtin", "ok"]
    assert lines["bao"][1:3] == ["openbao", "ok"]

    down = f"""
[vaults.down]
kind = "openbao"
address = "http://127.0.0.1:{free_port()}"
timeout_seconds = 2
auth = {{ method = "token", token_env = "BAO_CHECK_TOKEN" }}
"""
    config.write_text(reachable + down)
    bad = check(config, bao)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    failed = next(line for line in bad.stdout.splitlines() if line.startswith("down"))
    assert "FAILED" in failed and "VaultUnavailable" in failed
    for output in (good.stdout, good.stderr, bad.stdout, bad.stderr):
        assert bao.root_token not in output and KEYS.split(":")[1] not in output


def test_a_missing_credential_names_the_setting(bao: BaoServer, tmp_path: Path) -> None:
    config = tmp_path / "fedgate.toml"
    config.write_text(
        f'[vaults.bao]\nkind = "openbao"\naddress = "{bao.address}"\n'
        'auth = { method = "token", token_env = "NOT_SET_ANYWHERE" }\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGATE_VAULT")}
    refused = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "vaults", "check", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "vaults.bao.auth: environment variable NOT_SET_ANYWHERE is not set" in refused.stderr
