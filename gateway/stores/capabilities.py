"""What the gateway advertises in `server-info`: workspaces always, the rest as the linked store supports."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.core.links import WorkspaceLink
from gateway.core.ports import Store
from gateway.stores.client import Refused, StoreClient, Transient

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
        store = StoreClient(self.stores[link.store], link.upstream_workspace, timeout_seconds=PROBE_TIMEOUT_SECONDS)
        try:
            info = await store.get("/api/3.0/mlflow/server-info")
        except Refused:
            info = {}  # a store without server-info: what works everywhere, until the cache expires
        except (Transient, ValueError):
            # Unreachable, failing, slow or not JSON: advertise only what works everywhere; ask again next time.
            return {}
        self._cache[key] = (now, info)
        return info
