"""Dual mode's after-write hook: a dual workspace's accepted write goes to the outbox before the client
hears it succeeded, for the relay (outbox.py) to apply to the central store through the mirror.

The entry is committed durably, on its own, as one autocommitted INSERT on the pool "outbox"
(federation/bookkeeping.py); failing that, the call answers 503 and the client repeats the write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import msgspec

from gateway.core.errors import StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.paths import artifact_model_id, artifact_run_id, rewrite_artifact_workspace
from gateway.core.route_table import UI_UPLOAD_ARTIFACT, RouteSpec
from gateway.db.errors import database_unreachable
from gateway.dual.mirror import order_key
from gateway.federation.bookkeeping import Bookkeeping
from gateway.federation.hooks import AcceptedWrite

log = logging.getLogger(__name__)

INSERT_OUTBOX = "INSERT INTO outbox (workspace_id, order_key, route, payload) VALUES ($1, $2, $3, $4::jsonb)"
# Request fields an entry may be ordered by (mirror.py's `order_key`).
ORDER_FIELDS = ("run_id", "run_uuid", "experiment_id", "name", "new_name")
# Path parameters a mirrored write's entry keeps (mirror.py puts them back into the route's path).
PATH_FIELDS = ("model_id", "tag_key")


@dataclass(slots=True)
class OutboxEntry:
    order_key: str
    route: str
    # {"request", "response"[, "path_params"]}, {"path"} or {"run_id", "path"} (the UI's upload). `path_params`: the
    # logged model's id and, for the deletion of one of its tags, the tag's key (`tag_key`), which travel in the path.
    payload: bytes


class OutboxCapture:
    """Routes with the MIRRORED trait, in workspaces linked in dual mode."""

    def __init__(
        self, bookkeeping: Bookkeeping, *, flush_before_answer: bool = True, queued: Callable[[], None] = lambda: None
    ) -> None:
        self._bookkeeping = bookkeeping
        self._queued = queued  # told of each entry committed: this process's relay takes it up at once
        # False: the outbox too uses asynchronous commit. A PostgreSQL (not gateway) crash can then lose the
        # last fraction of a second of entries; the reconciler copies those writes from the workspace store.
        self._settings = {} if flush_before_answer else {"synchronous_commit": "off"}

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return link.mirror is not None and spec.mirrored

    def needs_answer(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.creates  # the relay needs the ids of what was created

    async def record(self, write: AcceptedWrite) -> None:
        """Raises StoreUnavailable when the entry could not be committed (the client must repeat the call)."""
        entry = outbox_entry(write)
        if entry is None:
            return
        try:
            pool = await self._bookkeeping.pool("outbox", self._settings)
            await pool.execute(
                INSERT_OUTBOX, write.link.workspace_id, entry.order_key, entry.route, entry.payload.decode()
            )
        except Exception as exc:
            # The database down is an outage the client is told of (503, repeat the call), not a fault of the code.
            (log.warning if database_unreachable(exc) else log.error)(
                "outbox write failed",
                extra={"ws": write.link.name, "route": entry.route, "error": type(exc).__name__},
            )
            raise StoreUnavailable(
                "The workspace store accepted the write but it could not be queued for the central store; "
                "repeat the call."
            ) from exc
        self._queued()


def outbox_entry(write: AcceptedWrite) -> OutboxEntry | None:
    """The entry of one accepted write; None when there is nothing the central store keeps or nothing to
    order it by.

    The client's body is stored as it came (it was parsed once already): no re-encoding here.
    """
    name = write.spec.name
    link = write.link
    model_id = write.path_params.get("model_id")
    run_id = None
    fields: dict[str, Any] = {}
    response: dict[str, Any] = {}
    if write.artifact_path is not None:
        run_id, model_id = artifact_run_id(write.artifact_path), artifact_model_id(write.artifact_path)
        if run_id is None and model_id is None:
            return None  # neither a run's nor a logged model's artifact: nothing the central store keeps
        upstream_path = rewrite_artifact_workspace(write.artifact_path, link.name, link.upstream_workspace)
        document = msgspec.json.encode({"path": upstream_path})
    elif write.spec == UI_UPLOAD_ARTIFACT:
        # The UI's upload button names the run and the file's path inside its artifacts in the query (the
        # forwarder reads the run's id from there); the relay reads the run's artifact root from the workspace
        # store and copies the file from there.
        run_id = write.ids.run_uuid if write.ids is not None else None
        path = (parse_qs(write.query).get("path") or [""])[0]
        if not run_id or not path:
            log.warning("dual write not mirrored: no run or path in the query", extra={"route": name})
            return None
        document = msgspec.json.encode({"run_id": run_id, "path": path})
    else:
        request = write.request if write.request[:1] == b"{" else b"{}"
        answer = write.response if write.spec.creates and write.response[:1] == b"{" else b"{}"
        response = msgspec.json.decode(answer)
        in_path = {k: str(v) for k, v in write.path_params.items() if k in PATH_FIELDS and v is not None}
        extra = b',"path_params":' + msgspec.json.encode(in_path) if in_path else b""
        document = b'{"request":' + request + b',"response":' + answer + extra + b"}"
        ids = write.ids
        fields = {f: v for f in ORDER_FIELDS if (v := getattr(ids, f, None))} if ids is not None else {}
    key = order_key(link.workspace_id, name, fields, response, run_id, str(model_id) if model_id else None)
    if key is None:
        log.warning("dual write not mirrored: nothing to order it by", extra={"route": name})
        return None
    return OutboxEntry(key, name, document)
