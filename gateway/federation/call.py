"""One forwarded call as the pipeline carries it, and what it answers."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.principal import Principal
from gateway.core.route_table import RouteSpec
from gateway.core.workspace_headers import WorkspaceHeaders

# The workspace name of the read-only account-wide scope (served by gateway/index/account.py).
ACCOUNT_SCOPE = "account"


@dataclass(slots=True)
class ForwardCall:
    spec: RouteSpec
    principal: Principal
    workspace: WorkspaceHeaders  # what X-MLFLOW-WORKSPACE and X-Databricks-Workspace-Id say
    path_params: Mapping[str, Any]
    query: str
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterable[bytes] | None
    request_id: str


@dataclass(slots=True)
class ForwardResult:
    status: int
    headers: dict[str, str]
    workspace: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
