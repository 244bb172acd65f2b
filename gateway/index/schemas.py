"""Request and response bodies of the index's own API (/api/2.0/fedgate/index): account admins."""

from __future__ import annotations

from typing import Any

import msgspec


class IndexStatus(msgspec.Struct, kw_only=True):
    workspaces: list[dict[str, Any]]  # per workspace: sync state, lag and progress of its last pass


class SyncRequest(msgspec.Struct, kw_only=True):
    workspace: str = ""  # required: a workspace name
    full: bool = False  # a full pass, not only what changed since the last one
    wait: bool = False  # answer when the pass is over (queued behind one already running)


class SyncAnswer(msgspec.Struct, kw_only=True):
    sync: dict[str, Any]  # {"workspace", "state"} and, for a waited-for pass, its counts
