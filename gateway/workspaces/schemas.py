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
    # Secret scopes (docs/secrets.md): the vault of new scopes (absent: the built-in one), and the scope a
    # run's read uses when it names none (absent: none).
    vault: str = ""
    default_secret_scope: str = ""


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
    vault: str | None = None  # a vault under [vaults], or "builtin" ("": the built-in vault)
    default_secret_scope: str | None = None  # a scope name ("": none)


class WorkspaceCreate(WorkspaceChanges, kw_only=True):
    name: str


# -- the links API (/api/2.0/fedgate/links): account admins ----------------------------------------------


class LinkStatus(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A link's mode, stores and outbox; `conflict` only for a withheld link, `reconcile` once a pass ran."""

    workspace: str
    workspace_id: str
    mode: str
    store: str
    central_store: str  # "" unless dual
    pending: int
    oldest_pending_seconds: float
    replayed_per_second: float
    dead_letters: int
    conflict: str | None = None  # why the link is withheld (it shares a store namespace with another)
    reconcile: dict[str, Any] | None = None  # the last reconcile pass: state, counts, resume point


class LinksStatus(msgspec.Struct, kw_only=True):
    links: list[LinkStatus]


class ReconcileRequest(msgspec.Struct, kw_only=True):
    all: bool = False  # also copy the history (backfill), not only recent runs


class ReconcileStarted(msgspec.Struct, kw_only=True):
    reconcile: dict[str, Any]


class DeadLetter(msgspec.Struct, kw_only=True):
    id: int
    route: str
    order_key: str
    attempts: int
    last_error: str
    created_at: str  # ISO 8601
    payload: dict[str, Any]


class DeadLetters(msgspec.Struct, kw_only=True):
    dead_letters: list[DeadLetter]


class RetryRequest(msgspec.Struct, kw_only=True):
    id: int | str | None = None  # one dead letter; none: every dead letter of the workspace


class Requeued(msgspec.Struct, kw_only=True):
    requeued: int


class DiscardRequest(msgspec.Struct, kw_only=True):
    id: int | str | None = None  # one dead letter
    all: bool = False  # every dead letter of the workspace; one of the two is required


class Discarded(msgspec.Struct, kw_only=True):
    discarded: int
    ids: list[int]  # the dead letters deleted
