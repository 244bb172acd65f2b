"""A workspace's vault and default secret scope, declared in fedgate.toml or set over the admin API.

Real SQL on a migrated database (the session's embedded PostgreSQL); the stores are addresses nobody
listens on (linking warns and goes on). The link carries both settings; the vault must be configured and
the scope a scope name; another vault for a workspace that has scopes is refused with 409.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.core.config import ConfigError, load_settings
from gateway.core.errors import InvalidParameter, InvalidState
from gateway.core.links import LinkTable
from gateway.core.ports import StoreResponse, StoreUnreachable
from gateway.secrets.moves import SecretMoves
from gateway.workspaces.schemas import WorkspaceChanges, WorkspaceCreate
from gateway.workspaces.service import WorkspaceService

CONFIG = """
[account]
id = "7001"
[stores.a]
url = "http://127.0.0.1:1"
[stores.b]
url = "http://127.0.0.1:2"
[stores.c]
url = "http://127.0.0.1:4"
[vaults.bao]
kind = "openbao"
address = "http://127.0.0.1:3"
auth = { method = "token", token_env = "BAO_TOKEN" }
[[workspaces]]
name = "declared"
id = "1001"
store = "a"
vault = "bao"
default_secret_scope = "team-creds"
"""


class UnreachableStore:
    workspaces_enabled = False

    def __init__(self, name: str) -> None:
        self.name = name

    async def request(self, method: str, path: str, **_: Any) -> StoreResponse:
        raise StoreUnreachable(path)

    async def close(self) -> None:
        return None


def workspace_service(config: str, tmp_path: Path) -> WorkspaceService:
    path = tmp_path / "fedgate.toml"
    path.write_text(config)
    stores = {name: UnreachableStore(name) for name in ("a", "b", "c")}
    return WorkspaceService(load_settings(path, environ={}), stores, LinkTable(), (SecretMoves(),))  # type: ignore[dict-item]


@pytest.fixture
async def service(tmp_path: Path, sessionmaker: async_sessionmaker[AsyncSession]) -> WorkspaceService:
    service = workspace_service(CONFIG, tmp_path)
    async with sessionmaker() as session, session.begin():
        await service.seed_from_config(session)
    async with sessionmaker() as session:
        await service.reload(session)
    return service


async def add_scope(engine: AsyncEngine, workspace_id: int, name: str, vault: str) -> None:
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO secret_scopes (workspace_id, name, vault, location) VALUES ($1, $2, $3, $4)",
            workspace_id,
            name,
            vault,
            f"w{workspace_id}/{name}",
        )
    finally:
        await conn.close()


async def test_a_declared_workspace_carries_its_vault_and_default_scope(service: WorkspaceService) -> None:
    link = service.links.get("declared")
    assert link is not None and (link.vault, link.default_secret_scope) == ("bao", "team-creds")
    shown = service.get("declared")
    assert (shown.vault, shown.default_secret_scope) == ("bao", "team-creds")


async def test_a_workspace_linked_over_the_api_chooses_them_too(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created, _ = await service.create(
        sessionmaker, WorkspaceCreate(name="linked", store="b", vault="bao", default_secret_scope="db.creds-1")
    )
    assert (created.vault, created.default_secret_scope) == ("bao", "db.creds-1")
    async with sessionmaker() as session:
        await service.reload(session)  # what a replica does on the change's NOTIFY
    link = service.links.get("linked")
    assert link is not None and (link.vault, link.default_secret_scope) == ("bao", "db.creds-1")

    # "builtin" names the default vault and "" clears the scope: both are left out of the answer then.
    changed, _ = await service.update(
        sessionmaker, "linked", WorkspaceChanges(vault="builtin", default_secret_scope="")
    )
    assert (changed.vault, changed.default_secret_scope) == ("", "")
    async with sessionmaker() as session:
        await service.reload(session)
    link = service.links.get("linked")
    assert link is not None and (link.vault, link.default_secret_scope) == ("", "")
    plain, _ = await service.create(sessionmaker, WorkspaceCreate(name="plain", store="c"))
    assert (plain.vault, plain.default_secret_scope) == ("", "")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vault": "nowhere"}, "vault: no vault named 'nowhere' (see [vaults]; configured: bao, builtin)"),
        ({"default_secret_scope": "bad scope"}, "default_secret_scope: 'bad scope' is not a valid scope name"),
        ({"default_secret_scope": "a/b"}, "default_secret_scope: 'a/b' is not a valid scope name"),
        ({"default_secret_scope": "x" * 129}, "is not a valid scope name"),
        ({"default_secret_scope": "creds\n"}, "is not a valid scope name"),
    ],
)
async def test_a_vault_that_is_not_configured_or_a_bad_scope_name_is_400(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession], changes: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidParameter) as refused:
        await service.create(sessionmaker, WorkspaceCreate(name="refused", store="b", **changes))  # type: ignore[arg-type]
    assert message in refused.value.message
    assert service.links.get("refused") is None
    await service.create(sessionmaker, WorkspaceCreate(name="kept", store="b"))
    with pytest.raises(InvalidParameter) as again:
        await service.update(sessionmaker, "kept", WorkspaceChanges(**changes))  # type: ignore[arg-type]
    assert message in again.value.message


async def test_another_vault_is_409_while_the_workspace_has_scopes(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await service.create(sessionmaker, WorkspaceCreate(name="holder", store="b", workspace_id="2001"))
    await add_scope(engine, 2001, "db-creds", "builtin")

    with pytest.raises(InvalidState) as refused:
        await service.update(sessionmaker, "holder", WorkspaceChanges(vault="bao"))
    assert refused.value.status == 409
    assert "1 secret scope(s) whose values live in vault 'builtin'" in refused.value.message
    assert "with vault 'bao' they would stay behind" in refused.value.message
    async with sessionmaker() as session:
        await service.reload(session)
    assert service.get("holder").vault == ""  # the built-in one
    # Naming the vault it has is no change; the default scope changes freely.
    same, _ = await service.update(
        sessionmaker, "holder", WorkspaceChanges(vault="builtin", default_secret_scope="db-creds")
    )
    assert (same.vault, same.default_secret_scope) == ("", "db-creds")

    # Without scopes, the vault changes.
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(url)
    await conn.execute("DELETE FROM secret_scopes WHERE workspace_id = 2001")
    await conn.close()
    moved, _ = await service.update(sessionmaker, "holder", WorkspaceChanges(vault="bao"))
    assert moved.vault == "bao"


async def test_the_config_file_cannot_move_a_declared_workspace_with_scopes_to_another_vault(
    service: WorkspaceService, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, tmp_path: Path
) -> None:
    await add_scope(engine, 1001, "team-creds", "bao")
    moved = workspace_service(CONFIG.replace('vault = "bao"\n', ""), tmp_path)
    with pytest.raises(ConfigError, match=r"1 secret scope.* in vault 'bao'; with vault 'builtin'"):
        async with sessionmaker() as session, session.begin():
            await moved.seed_from_config(session)
    # Its default scope still changes from the file.
    rescoped = workspace_service(CONFIG.replace('"team-creds"', '"other-creds"'), tmp_path)
    async with sessionmaker() as session, session.begin():
        await rescoped.seed_from_config(session)
    async with sessionmaker() as session:
        await rescoped.reload(session)
    link = rescoped.links.get("declared")
    assert link is not None and (link.vault, link.default_secret_scope) == ("bao", "other-creds")


def test_the_config_file_checks_both_settings(tmp_path: Path) -> None:
    path = tmp_path / "fedgate.toml"
    path.write_text(CONFIG.replace('default_secret_scope = "team-creds"', 'default_secret_scope = "team creds"'))
    with pytest.raises(ConfigError, match=r"workspaces\[0\].default_secret_scope: 'team creds' is not a valid"):
        load_settings(path, environ={})
    path.write_text(CONFIG.replace('vault = "bao"', 'vault = "kv"'))
    with pytest.raises(ConfigError, match=r"workspaces\[0\].vault: no vault named 'kv'"):
        load_settings(path, environ={})
