"""Request and response bodies of the workspaces API (MLflow 3 shape, plus the link fields)."""

from __future__ import annotations

from typing import Any

import msgspec


class Workspace(msgspec.Struct, omit_defaults=True, kw_only=True):
    name: str
    description: str = ""
    default_artifact_root: str = ""
    # fedgate's link fields; the MLflow client ignores fields it does not know.
    workspace_id: str = ""
    mode: str = ""
    store: str = ""
    upstream_workspace: str = ""


class WorkspaceResponse(msgspec.Struct):
    workspace: Workspace


class WorkspaceList(msgspec.Struct, omit_defaults=True):
    workspaces: list[Workspace] = msgspec.field(default_factory=list)


class WorkspaceChanges(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    description: str | None = None
    default_artifact_root: str | None = None
    trace_archival_config: dict[str, Any] | None = None
    workspace_id: str | int | None = None
    store: str | None = None
    mode: str | None = None
    upstream_workspace: str | None = None


class WorkspaceCreate(WorkspaceChanges, kw_only=True):
    name: str
