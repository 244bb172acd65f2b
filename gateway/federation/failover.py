"""Reads of a dual workspace served from the central copy while the workspace's own store is down.

Ids in the request are translated to the central copies' ids (the id map), the call goes to the
central store, and ids in the answer are translated back, so the client sees what it would have
seen from its own store. The answer says so: `X-Fedgate-Served-By: central`. Writes are not failed
over: they answer 503 with Retry-After, and the client's retry lands once the store is back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.models import IdMapRow
from gateway.errors import ResourceNotFound, StoreUnavailable
from gateway.federation.mirror import SOURCE_EXPERIMENT_TAG, SOURCE_RUN_TAG, SOURCE_WORKSPACE_TAG
from gateway.federation.route_table import RouteSpec
from gateway.ports import Store, StoreResponse, StoreTimedOut, StoreUnreachable
from gateway.workspaces.links import WorkspaceLink

SERVED_BY = "X-Fedgate-Served-By"
PROVENANCE_TAGS = frozenset({SOURCE_RUN_TAG, SOURCE_WORKSPACE_TAG, SOURCE_EXPERIMENT_TAG})
FAILOVER_ROUTES = frozenset(
    {
        "GET /mlflow/experiments/get",
        "GET /mlflow/experiments/get-by-name",
        "POST /mlflow/experiments/search",
        "GET /mlflow/experiments/search",
        "GET /mlflow/runs/get",
        "POST /mlflow/runs/search",
        "GET /mlflow/metrics/get-history",
        "GET /mlflow-artifacts/artifacts",
        "GET /mlflow-artifacts/artifacts/{artifact_path:path}",
    }
)
ID_FIELDS = {"experiment_id": "experiment", "run_id": "run", "run_uuid": "run"}


class IdTranslator:
    """Both directions of one workspace's id map."""

    def __init__(self, session: AsyncSession, link: WorkspaceLink) -> None:
        self.session = session
        self.link = link

    async def to_central(self, kind: str, primary_id: str) -> IdMapRow:
        result = await self.session.execute(
            select(IdMapRow).where(
                IdMapRow.workspace_id == self.link.workspace_id,
                IdMapRow.kind == kind,
                IdMapRow.primary_id == primary_id,
            )
        )
        row = result.scalar_one_or_none()
        if row is None:
            raise StoreUnavailable(
                f"The store of workspace '{self.link.name}' is unreachable and the central store has no copy "
                f"of {kind} {primary_id} yet; try again shortly."
            )
        return row

    async def to_primary(self, kind: str, central_ids: set[str]) -> dict[str, str]:
        if not central_ids:
            return {}
        result = await self.session.execute(
            select(IdMapRow.central_id, IdMapRow.primary_id).where(
                IdMapRow.workspace_id == self.link.workspace_id,
                IdMapRow.kind == kind,
                IdMapRow.central_id.in_(central_ids),
            )
        )
        return {central: primary for central, primary in result.all()}


class Failover:
    def __init__(self, stores: Mapping[str, Store], sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.stores = stores
        self._sessionmaker = sessionmaker

    @staticmethod
    def serves(spec: RouteSpec, link: WorkspaceLink) -> bool:
        return link.mirror is not None and spec.name in FAILOVER_ROUTES

    async def request(
        self,
        spec: RouteSpec,
        link: WorkspaceLink,
        path: str,
        query: str,
        body: bytes | None,
        artifact_path: str | None,
    ) -> tuple[StoreResponse, Any]:
        """Send the read to the central store; (response, function translating its JSON body back)."""
        async with self._sessionmaker() as session:
            ids = IdTranslator(session, link)
            params = parse_qsl(query, keep_blank_values=True)
            translated = []
            for name, value in params:
                if name in ID_FIELDS:
                    value = (await ids.to_central(ID_FIELDS[name], value)).central_id
                elif name == "path" and artifact_path is not None:
                    value = await self._artifact_path(ids, value)
                elif name == "experiment_name":
                    value = link.mirror_prefix + value
                translated.append((name, value))
            query = urlencode(translated)
            if body and body[:1] == b"{":
                document = msgspec.json.decode(body)
                for name, kind in ID_FIELDS.items():
                    if name in document:
                        document[name] = (await ids.to_central(kind, str(document[name]))).central_id
                if "experiment_ids" in document:
                    document["experiment_ids"] = [
                        (await ids.to_central("experiment", str(e))).central_id for e in document["experiment_ids"]
                    ]
                body = msgspec.json.encode(document)
            if "{artifact_path:path}" in spec.path and artifact_path is not None:
                central_path = await self._artifact_path(ids, artifact_path)
                path = "/api/2.0/mlflow-artifacts/artifacts/" + quote(central_path)
        store = self.stores[link.mirror or ""]
        try:
            response = await store.request(
                spec.method,
                path,
                query=query,
                headers=[("content-type", "application/json")] if body else [],
                body=body,
                workspace=link.mirror_workspace,
                idempotent=True,
            )
        except (StoreUnreachable, StoreTimedOut) as exc:
            raise StoreUnavailable(
                f"Neither the store of workspace '{link.name}' nor the central store can be reached."
            ) from exc
        return response, lambda raw: self.translate_back(link, raw)

    async def _artifact_path(self, ids: IdTranslator, client_path: str) -> str:
        """`[workspaces/<ws>/]<exp>/<run>/artifacts/<rest>` → the same file under the central run's root."""
        parts = [p for p in client_path.split("/") if p]
        if parts and parts[0] == "workspaces":
            parts = parts[2:]
        if len(parts) < 3 or parts[2] != "artifacts":
            raise ResourceNotFound("Only run artifacts are served from the central copy while the store is down.")
        row = await ids.to_central("run", parts[1])
        root = row.central_artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        return "/".join([root, *parts[3:]])

    async def translate_back(self, link: WorkspaceLink, raw: bytes) -> bytes:
        if raw[:1] != b"{":
            return raw
        document = msgspec.json.decode(raw)
        found: dict[str, set[str]] = {"experiment": set(), "run": set()}
        _collect(document, found)
        async with self._sessionmaker() as session:
            ids = IdTranslator(session, link)
            maps = {kind: await ids.to_primary(kind, values) for kind, values in found.items()}
        return msgspec.json.encode(_rewrite(document, maps, link))


def _collect(node: Any, found: dict[str, set[str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_FIELDS and isinstance(value, str):
                found[ID_FIELDS[key]].add(value)
            else:
                _collect(value, found)
    elif isinstance(node, list):
        for item in node:
            _collect(item, found)


def _rewrite(node: Any, maps: dict[str, dict[str, str]], link: WorkspaceLink, key: str = "") -> Any:
    if isinstance(node, dict):
        result = {k: _rewrite(v, maps, link, k) for k, v in node.items()}
        if "run_id" in result and "experiment_id" in result and "artifact_uri" in result:
            prefix = f"workspaces/{link.name}/" if link.upstream_workspace else ""
            run_dir = f"{result['experiment_id']}/{result['run_id']}"
            result["artifact_uri"] = f"mlflow-artifacts:/{prefix}{run_dir}/artifacts"
        is_experiment = key == "experiment" or ("experiment_id" in result and "artifact_location" in result)
        if is_experiment and isinstance(result.get("name"), str):
            result["name"] = result["name"].removeprefix(link.mirror_prefix)
        return result
    if isinstance(node, list):
        kept = [item for item in node if not (isinstance(item, dict) and item.get("key") in PROVENANCE_TAGS)]
        return [_rewrite(item, maps, link, key) for item in kept]
    if isinstance(node, str) and key in ID_FIELDS:
        return maps[ID_FIELDS[key]].get(node, node)
    return node
