"""A gateway of a test module's own: `fedgate serve` on an empty database of its own, with the module's config.

Tests that need settings or workspaces the session's stack does not have (a store without stages, a dual
workspace, quick webhook retries, a garbage store) start a gateway of their own. It gets an empty database
on the session's embedded PostgreSQL (`tests.databases.empty_database`: the gateway migrates it as it
starts, and it is dropped afterwards) and a TOML file: the module's text after a `[database]` table naming
that database (so the text has no `[database]` table of its own).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.devstack import GatewayProcess
from tests.conftest import GATEWAY_ENV
from tests.databases import empty_database


@dataclass(frozen=True)
class OwnConfig:
    path: Path  # the TOML file gateways of the module start with
    database_url: str  # the module's own database, which that file names


@contextmanager
def own_config(server_url: str, path: Path, toml: str, *, prefix: str) -> Iterator[OwnConfig]:
    """An empty database on the server at `server_url` (its name starts with `prefix`) and the file `path`: a
    `[database]` table naming it, then `toml`. For a module that starts its gateways itself (several, later)."""
    assert "[database]" not in toml, "the database is the module's own: its [database] table is written here"
    with empty_database(server_url, prefix) as url:
        path.write_text(f'[database]\nurl = "{url}"\n{toml}')
        yield OwnConfig(path, url)


@dataclass(frozen=True)
class OwnGateway:
    process: GatewayProcess
    config: OwnConfig


@contextmanager
def own_gateway(
    server_url: str,
    path: Path,
    toml: str,
    *,
    prefix: str,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> Iterator[OwnGateway]:
    """A gateway started on its own empty database (`own_config`) with the tests' environment (`GATEWAY_ENV`, and
    `env` over it); stopped, and its database dropped, afterwards."""
    with own_config(server_url, path, toml, prefix=prefix) as config:
        process = GatewayProcess(config.path, {**GATEWAY_ENV, **(env or {})}, log_path=log_path).start(timeout=timeout)
        try:
            yield OwnGateway(process, config)
        finally:
            process.stop()
