"""What the gateway advertises in `server-info`: workspaces always, the rest as the linked store supports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.core.links import WorkspaceLink
from gateway.core.ports import Store, StoreTimedOut, StoreUnreachable

CACHE_SECONDS = 60.0
# The client gives server-info 3 s and no retry; never spend all of it waiting on a store.
PROBE_TIMEOUT_SECONDS = 1.5
STORE_FLAGS = (
    "store_type",
    "multipart_uploads_enabled",
    "multipart_downloads_enabled",
    "presigned_upload_run_id_supported",
    "presigned_upload_model_id_supported",
    "trace_archival_enabled",
)
BASE_INFO: dict[str, Any] = {
    "store_type": None,
    "workspaces_enabled": True,
    "trace_archival_enabled": False,
    "multipart_uploads_enabled": False,
    "multipart_downloads_enabled": False,
    "artifact_serving_enabled": True,
    "presigned_upload_run_id_supported": False,
    "presigned_upload_model_id_supported": False,
    "features_enabled": {"gateway": False},
    "artifacts_presigned_only": False,
}


class StoreCapabilities:
    def __init__(self, stores: Mapping[str, Store]) -> None:
        self.stores = stores
        self._cache: dict[tuple[str, str | None], tuple[float, dict[str, Any]]] = {}

    async def server_info(self, link: WorkspaceLink | None) -> dict[str, Any]:
        info = dict(BASE_INFO)
        if link is not None:
            store_info = await self._store_info(link)
            info.update({key: store_info[key] for key in STORE_FLAGS if key in store_info})
        return info

    async def _store_info(self, link: WorkspaceLink) -> dict[str, Any]:
        key = (link.store, link.upstream_workspace)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        info: dict[str, Any] = {}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                response = await self.stores[link.store].request(
                    "GET", "/api/3.0/mlflow/server-info", workspace=link.upstream_workspace, idempotent=True
                )
                body = await response.read()
            if response.status == 200:
                decoded = msgspec.json.decode(body)
                info = decoded if isinstance(decoded, dict) else {}
        except (StoreUnreachable, StoreTimedOut, TimeoutError, msgspec.DecodeError):
            # Advertise only what works everywhere; try the store again on the next probe.
            return info
        self._cache[key] = (now, info)
        return info
