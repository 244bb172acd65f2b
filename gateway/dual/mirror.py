"""Applying a dual workspace's writes to the central store: ids translated, writes coalesced, replay idempotent.

Replaying an entry twice changes nothing: runs are found again by their provenance tag before one is
created, experiments by name, repeated metric points are dropped by the store, params carry the same
value, tags and artifacts are overwritten with the same content. Objects the central store has not
seen yet (an experiment created before the workspace became dual, say) are copied on first use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.numbers import is_number, whole
from gateway.core.ports import Store, StoreTimedOut, StoreUnreachable
from gateway.core.reserved import (
    SOURCE_EXPERIMENT_TAG,
    SOURCE_MODEL_TAG,
    SOURCE_RUN_TAG,
    SOURCE_VERSION_TAG,
    SOURCE_WORKSPACE_TAG,
    provenance_tag,
)
from gateway.core.route_table import (
    ARTIFACT_DELETE,
    ARTIFACT_UPLOAD,
    EXPERIMENTS_CREATE,
    EXPERIMENTS_DELETE_TAG,
    EXPERIMENTS_SET_TAG,
    EXPERIMENTS_UPDATE,
    LOGGED_MODELS_CREATE,
    LOGGED_MODELS_DELETE,
    LOGGED_MODELS_DELETE_TAG,
    MODEL_VERSIONS_CREATE,
    MODEL_VERSIONS_DELETE_TAG,
    MODEL_VERSIONS_SET_TAG,
    REGISTERED_MODELS_CREATE,
    REGISTERED_MODELS_DELETE_TAG,
    REGISTERED_MODELS_RENAME,
    REGISTERED_MODELS_SET_TAG,
    RUNS_CREATE,
    RUNS_DELETE,
    RUNS_DELETE_TAG,
    RUNS_LOG_BATCH,
    RUNS_LOG_INPUTS,
    RUNS_LOG_METRIC,
    RUNS_LOG_MODEL,
    RUNS_LOG_PARAMETER,
    RUNS_OUTPUTS,
    RUNS_RESTORE,
    RUNS_SET_TAG,
    RUNS_UPDATE,
    UI_UPLOAD_ARTIFACT,
    Resource,
    Trait,
    declared,
    having,
)
from gateway.db.locks import LockClass, autocommit_connection, held
from gateway.db.models import IdMapRow, OutboxRow
from gateway.dual.outbox import Applied
from gateway.federation.guard.provenance import TAG_ROUTES
from gateway.federation.schemas import started_run
from gateway.federation.store_answers import FeatureNotServed, known_failure
from gateway.stores.client import Refused, StoreClient, Transient, central_store, own_store

log = logging.getLogger(__name__)

# MLflow's log-batch limits.
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ITEMS = 1000, 100, 100, 1000
# Route names as the outbox stores them, by the traits of the route table.
BATCHED = frozenset(spec.name for spec in having(Trait.BATCHED))
# Registry writes: `name` (and `version`) are translated; the HTTP method is the route's.
REGISTRY_ROUTES = frozenset(
    spec.name for spec in having(Trait.MIRRORED) if spec.resource in (Resource.REGISTERED_MODEL, Resource.MODEL_VERSION)
)
# Every registry write of a workspace is applied in one order, as the store took them. Registered models are
# copied by name, and a name moves: ordered per name (a rename under its new one), a model created under a renamed
# model's old name could be applied before the rename, find the renamed model's copy under that name and take it for
# its own, and its creator's tags, versions, aliases and deletion were applied to the other model's central copy.
REGISTRY_KEY = "registry"
REGISTERED_MODELS_UPDATE = declared("PATCH /mlflow/registered-models/update")  # its description
MODEL_VERSIONS_UPDATE = declared("PATCH /mlflow/model-versions/update")  # its description
# Registry writes applied as the workspace store holds the model or version when the entry is applied
# (`_as_own_registry`); a version's among them.
VERSION_AS_STORE = frozenset(
    spec.name for spec in (MODEL_VERSIONS_SET_TAG, MODEL_VERSIONS_DELETE_TAG, MODEL_VERSIONS_UPDATE)
)
REGISTRY_AS_STORE = VERSION_AS_STORE | frozenset(
    spec.name for spec in (REGISTERED_MODELS_SET_TAG, REGISTERED_MODELS_DELETE_TAG, REGISTERED_MODELS_UPDATE)
)
SEARCH_PAGE = 1000  # model versions per page of a search of a store (matched on the model's name here)
# Writes of a dual workspace that are mirrored, by route.
MIRRORED_ROUTES = frozenset(spec.name for spec in having(Trait.MIRRORED))
# Routes whose store creates a run outside runs/create (the prompt lab, jobs): the run is copied from the store.
STARTS_RUN_ROUTES = frozenset(spec.name for spec in having(Trait.STARTS_RUN))
# Experiment writes MLflow makes to active experiments only.
ACTIVE_EXPERIMENT_EDITS = frozenset(
    spec.name for spec in (EXPERIMENTS_UPDATE, EXPERIMENTS_SET_TAG, EXPERIMENTS_DELETE_TAG)
)
# A run's deletion and restoration: the writes MLflow makes to deleted runs too.
RUN_LIFECYCLE = frozenset(spec.name for spec in (RUNS_DELETE, RUNS_RESTORE))
LOG_BATCH_PATH = "/api/2.0/mlflow/runs/log-batch"
RUN_SET_TAG_PATH = "/api/2.0/mlflow/runs/set-tag"
RUN_DELETE_TAG_PATH = "/api/2.0/mlflow/runs/delete-tag"
EXPERIMENT_SET_TAG_PATH = "/api/2.0/mlflow/experiments/set-experiment-tag"
EXPERIMENT_DELETE_TAG_PATH = "/api/2.0/mlflow/experiments/delete-experiment-tag"
# The artifact proxy's listing: asked only to tell whether the workspace store serves artifacts at all.
ARTIFACT_LIST = declared("GET /mlflow-artifacts/artifacts")
# A logged model's finalization (`MlflowClient.finalize_logged_model`), and the statuses it leaves as the store
# answers them (READY; FAILED is LOGGED_MODEL_UPLOAD_FAILED).
LOGGED_MODELS_FINALIZE = declared("PATCH /mlflow/logged-models/{model_id:str}")
FINAL_STATUSES = frozenset({"LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"})


def finalization(link: WorkspaceLink, model_id: str, status: str) -> dict[str, Any]:
    """The outbox entry (its columns) that finalizes the central copy of the workspace's logged model `model_id` with
    `status`, as the client's `PATCH .../logged-models/{model_id}` would have queued it, ordered under the model."""
    request = {"model_id": model_id, "status": status}
    return {
        "workspace_id": link.workspace_id,
        "order_key": order_key(link.workspace_id, LOGGED_MODELS_FINALIZE.name, request, {}, None, model_id),
        "route": LOGGED_MODELS_FINALIZE.name,
        "payload": {"request": request, "response": {}, "path_params": {"model_id": model_id}},
    }


def order_key(
    workspace_id: int,
    route: str,
    request: Mapping[str, Any],
    response: Mapping[str, Any],
    run_id: str | None,
    model_id: str | None = None,
) -> str | None:
    """The key whose entries must be applied in order: the run, logged model, experiment or the registry.

    Scoped by workspace: stores number experiments alike and workspaces may name models alike, and
    one workspace's entry waiting out a back-off must not hold up another's.
    """
    key = _object_key(route, request, response, run_id, model_id)
    return f"{workspace_id}/{key}" if key else None


def _object_key(
    route: str, request: Mapping[str, Any], response: Mapping[str, Any], run_id: str | None, model_id: str | None
) -> str | None:
    if route in REGISTRY_ROUTES:
        return REGISTRY_KEY
    if route == LOGGED_MODELS_CREATE.name:
        created = ((response.get("model") or {}).get("info") or {}).get("model_id")
        return f"logged_model:{created}" if created else None
    if model_id:
        return f"logged_model:{model_id}"
    if route == RUNS_CREATE.name:
        run = (response.get("run") or {}).get("info") or {}
        return f"run:{run.get('run_id')}" if run.get("run_id") else None
    if route in STARTS_RUN_ROUTES:
        started = started_run(request, response)
        return f"run:{started[0]}" if started else None
    if route == EXPERIMENTS_CREATE.name:
        return f"experiment:{response['experiment_id']}" if response.get("experiment_id") else None
    if run_id or request.get("run_id") or request.get("run_uuid"):
        return f"run:{run_id or request.get('run_id') or request.get('run_uuid')}"
    if request.get("experiment_id"):
        return f"experiment:{request['experiment_id']}"
    return None


class _Batch:
    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.rows = 0

    def full_for(self, metrics: int, params: int, tags: int) -> bool:
        return (
            len(self.metrics) + metrics > MAX_METRICS
            or len(self.params) + params > MAX_PARAMS
            or len(self.tags) + tags > MAX_TAGS
            or len(self.metrics) + len(self.params) + len(self.tags) + metrics + params + tags > MAX_ITEMS
        )

    def add(self, route: str, request: Mapping[str, Any]) -> None:
        if route == RUNS_LOG_BATCH.name:
            metrics = list(request.get("metrics") or [])
            params = list(request.get("params") or [])
            tags = list(request.get("tags") or [])
        elif route == RUNS_LOG_METRIC.name:
            metrics, params, tags = [request], [], []
        elif route == RUNS_LOG_PARAMETER.name:
            metrics, params, tags = [], [request], []
        else:
            metrics, params, tags = [], [], [request]
        self.metrics.extend({k: m[k] for k in ("key", "value", "timestamp", "step") if k in m} for m in metrics)
        for param in params:
            self.params.setdefault(str(param["key"]), str(param.get("value", "")))
        for tag in tags:
            if not provenance_tag(tag["key"]):  # queued before the gateway refused them: the relay's own
                self.tags[str(tag["key"])] = str(tag.get("value", ""))
        self.rows += 1

    @staticmethod
    def size_of(route: str, request: Mapping[str, Any]) -> tuple[int, int, int]:
        if route == RUNS_LOG_BATCH.name:
            return len(request.get("metrics") or []), len(request.get("params") or []), len(request.get("tags") or [])
        return (
            int(route == RUNS_LOG_METRIC.name),
            int(route == RUNS_LOG_PARAMETER.name),
            int(route == RUNS_SET_TAG.name),
        )

    def body(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "metrics": self.metrics,
            "params": [{"key": k, "value": v} for k, v in self.params.items()],
            "tags": [{"key": k, "value": v} for k, v in self.tags.items()],
        }


@dataclass(frozen=True, slots=True)
class Coalesced:
    """Consecutive metric, param and tag writes of one run, sent as one log-batch."""

    run_id: str  # the workspace's run id
    batch: _Batch

    @property
    def rows(self) -> int:
        return self.batch.rows


def plan(rows: Sequence[OutboxRow]) -> list[Coalesced | OutboxRow]:
    """The calls that apply one key's entries, in the entries' order.

    Consecutive metric, param and tag writes of the same run are coalesced into one log-batch while
    MLflow's limits allow; any other entry is sent alone, after the batch before it. Each step covers
    whole entries, so a failed step leaves the entries from its first one on to be retried.
    """
    steps: list[Coalesced | OutboxRow] = []
    batch: Coalesced | None = None
    for row in rows:
        request = row.payload.get("request") or {}
        if row.route not in BATCHED:
            batch = None
            steps.append(row)
            continue
        run_id = str(request.get("run_id") or request.get("run_uuid") or "")
        if batch is None or run_id != batch.run_id or batch.batch.full_for(*_Batch.size_of(row.route, request)):
            batch = Coalesced(run_id, _Batch())
            steps.append(batch)
        batch.batch.add(row.route, request)
    return steps


class Mirror:
    def __init__(
        self, links: LinkTable, stores: Mapping[str, Store], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.links = links
        self.stores = stores
        self._sessionmaker = sessionmaker

    async def reachable(self, workspace_id: int) -> bool:
        """Whether both stores a dual workspace's entries need answer their health checks: the central store
        (written) and the workspace's own (read for the copies). Asking only the central one, an outage of
        the workspace's store made the relay retry its entries every second instead of backing off."""
        link = self.links.by_id(workspace_id)
        if link is None or link.mirror is None:
            return True
        try:
            return await self._copies(link).ping() == 200 and await self._own(link).ping() == 200
        except Transient:
            return False

    async def apply(self, rows: Sequence[OutboxRow]) -> Applied:
        """Apply one key's entries in order; stop at the first failure."""
        if not rows:
            return Applied(0)
        link = self.links.by_id(rows[0].workspace_id)
        if link is None and self.links.withheld_id(rows[0].workspace_id):
            # Withheld until an admin resolves its namespace conflict: the entries wait, they are not refused.
            return Applied(0, Transient(f"workspace {rows[0].workspace_id} shares a store namespace; not relayed"))
        if link is None or link.mirror is None:
            return Applied(0, Refused(f"workspace {rows[0].workspace_id} is no longer linked in dual mode"))
        done = 0
        try:
            for step in plan(rows):
                if isinstance(step, Coalesced):
                    await self._flush(link, step.run_id, step.batch)
                    done += step.rows
                else:
                    await self._apply_one(link, step)
                    done += 1
        except (Transient, Refused) as exc:
            return Applied(done, exc)
        except (KeyError, TypeError, ValueError) as exc:
            # A store answered in a shape MLflow never sends (or not JSON): counted towards a dead letter.
            return Applied(done, Refused(f"unexpected answer from a store: {type(exc).__name__}: {exc}"[:500]))
        return Applied(done)

    async def _flush(self, link: WorkspaceLink, primary_run: str, batch: _Batch) -> None:
        run_id, _ = await self.central_run(link, primary_run)
        gone: list[str] = []
        if batch.tags and (own := await self._own_run_tags(link, primary_run)) is not None:
            # The run's tags as the workspace store holds them now, not as the entries carried them (`_own_run_tags`).
            for key in list(batch.tags):
                if key in own:
                    batch.tags[key] = own[key]
                else:
                    del batch.tags[key]
                    gone.append(key)
        body = batch.body(run_id)
        if body["metrics"] or body["params"] or body["tags"]:
            await self._to_run(link, primary_run, run_id, lambda: self._central(link, "POST", LOG_BATCH_PATH, body))
        for key in gone:
            await self._delete_run_tag(link, primary_run, run_id, key)

    async def _own_run_tags(self, link: WorkspaceLink, primary_run: str) -> dict[str, str] | None:
        """A run's tags as the workspace store holds them now; None when it cannot tell (down, failing, no such run).

        Tag writes of one run are applied centrally in the order their entries were committed, and that need not be
        the order the workspace store took them: two clients setting (or one deleting) a tag at once are answered
        in one order, and their entries are queued by the gateway's replicas as each answer comes back. Applied as
        queued, the central copy kept the value the store replaced (or a tag it had deleted, or lacked one it had),
        for good, and a deletion queued before the setting it raced was refused centrally (no such tag) until it was
        a dead letter. So a tag write is applied as the store's value of each key it names, read when the entry is
        applied: whatever order the entries come in, the last one applied for a key leaves the store's final value.
        When the store cannot tell, the entry's own values are applied (as before), so an outage of the workspace
        store does not hold back the central copy that failover reads serve."""
        try:
            found = await self._own(link).get("/api/2.0/mlflow/runs/get", {"run_id": primary_run})
        except (Transient, Refused):
            return None
        return _tag_values((found["run"].get("data") or {}).get("tags"))

    async def _run_tag_deletion(self, link: WorkspaceLink, request: Mapping[str, Any]) -> None:
        """A run's tag deletion: the key is deleted from the central copy, or, if the workspace store holds the key
        again now (a setting that raced the deletion was queued before it), given the store's value
        (`_own_run_tags`). No such tag centrally is done: what the deletion wanted (a replay, or a setting queued
        after it has not been applied yet)."""
        primary_run, key = str(request["run_id"]), str(request["key"])
        central_run, _ = await self.central_run(link, primary_run)
        own = await self._own_run_tags(link, primary_run)
        if own is not None and key in own:
            body = {"run_id": central_run, "key": key, "value": own[key]}
            await self._to_run(
                link, primary_run, central_run, lambda: self._central(link, "POST", RUN_SET_TAG_PATH, body)
            )
            return
        await self._delete_run_tag(link, primary_run, central_run, key)

    async def _delete_run_tag(self, link: WorkspaceLink, primary_run: str, central_run: str, key: str) -> None:
        async def delete() -> None:
            try:
                await self._central(link, "POST", RUN_DELETE_TAG_PATH, {"run_id": central_run, "key": key})
            except Refused as exc:
                if not exc.not_found:
                    raise

        await self._to_run(link, primary_run, central_run, delete)

    async def _to_run(
        self, link: WorkspaceLink, primary_run: str, central_run: str, write: Callable[[], Awaitable[Any]]
    ) -> None:
        """A write to the central copy of a run. MLflow writes to active runs only: a log, tag or rename of a deleted
        one is its 400 (five times, then a dead letter, the write lost). When the write fails and the copy is
        deleted where the workspace store's run was not (deleted through the gateway, then restored in the workspace
        store around it), the copy is restored for the write and deleted again if the workspace store's run is
        deleted now (deleted again around the gateway since; a deletion through it is an entry of its own)."""
        try:
            await write()
            return
        except (Transient, Refused):
            found = await self._central_find(link, "/api/2.0/mlflow/runs/get", {"run_id": central_run})
            if found is None or found["run"]["info"].get("lifecycle_stage") != "deleted":
                raise
        await self._central(link, "POST", "/api/2.0/mlflow/runs/restore", {"run_id": central_run})
        try:
            await write()
        finally:
            own = await self._maybe(self._own(link), "/api/2.0/mlflow/runs/get", {"run_id": primary_run})
            if own is None or own["run"]["info"].get("lifecycle_stage") == "deleted":
                await self._central(link, "POST", "/api/2.0/mlflow/runs/delete", {"run_id": central_run})

    async def _apply_one(self, link: WorkspaceLink, row: OutboxRow) -> None:
        route = row.route
        request: dict[str, Any] = dict(row.payload.get("request") or {})
        response: dict[str, Any] = row.payload.get("response") or {}
        # The relay's provenance tags are its own (the guard refuses them to callers): one an entry queued before
        # that carries is left out, so it never makes one copy pass for another's (`_without_provenance`).
        if route in TAG_ROUTES and provenance_tag(request.get("key")):
            return
        if isinstance(request.get("tags"), list):
            request["tags"] = _without_provenance(request["tags"])
        if route == EXPERIMENTS_CREATE.name:
            await self._copy_experiment(link, str(response["experiment_id"]), request)
            return
        if route == RUNS_DELETE_TAG.name:
            await self._run_tag_deletion(link, request)
            return
        if route == RUNS_CREATE.name:
            info = response["run"]["info"]
            await self._copy_run(link, str(info["run_id"]), request, info)
            return
        if route == ARTIFACT_UPLOAD.name:
            await self._copy_artifact(link, str(row.payload["path"]))
            return
        if route == ARTIFACT_DELETE.name:
            await self._delete_artifact(link, str(row.payload["path"]))
            return
        if route == UI_UPLOAD_ARTIFACT.name:
            await self._copy_run_file(link, str(row.payload["run_id"]), str(row.payload["path"]))
            return
        if route in STARTS_RUN_ROUTES:
            started = started_run(request, response)
            if started is not None:
                await self.copy_started_run(link, started[0])
            return
        if route == LOGGED_MODELS_CREATE.name:
            await self._copy_logged_model(link, str(response["model"]["info"]["model_id"]), request)
            return
        if route in REGISTRY_ROUTES:
            await self._apply_registry(link, route, request, response)
            return
        method, template = route.split(" ", 1)
        in_path = row.payload.get("path_params") or {}
        model_id = in_path.get("model_id")
        if route in (LOGGED_MODELS_DELETE.name, LOGGED_MODELS_DELETE_TAG.name):
            await self._logged_model_deletion(link, route, str(model_id), in_path.get("tag_key"))
            return
        if model_id:
            central_model, _ = await self.central_logged_model(link, str(model_id))
            template = template.replace("{model_id:str}", quote(central_model, safe=""))
            if "model_id" in request:
                request["model_id"] = central_model
        path = "/api/2.0" + template
        primary_experiment = str(request["experiment_id"]) if "experiment_id" in request else None
        if primary_experiment is not None:
            request["experiment_id"] = await self.central_experiment(link, primary_experiment)
        primary_run = central_run = None
        for field in ("run_id", "run_uuid"):
            if field in request:
                primary_run = str(request[field])
                central_run, _ = await self.central_run(link, primary_run)
                request[field] = central_run
        if route in (RUNS_LOG_INPUTS.name, RUNS_OUTPUTS.name) and request.get("models"):
            request["models"] = [
                {**item, "model_id": (await self.central_logged_model(link, str(item["model_id"])))[0]}
                for item in request["models"]
            ]
        if route == RUNS_LOG_MODEL.name and central_run is not None:
            request["model_json"] = _central_model_json(request.get("model_json"), central_run)
        if route in ACTIVE_EXPERIMENT_EDITS and primary_experiment is not None:
            path, request = await self._as_own_experiment(link, primary_experiment, route, path, request)
        if route == RUNS_UPDATE.name and primary_run is not None:
            request = await self._as_own_run_update(link, primary_run, request)
        if route == EXPERIMENTS_UPDATE.name and request.get("new_name"):
            request["new_name"] = link.mirror_prefix + str(request["new_name"])
        if primary_run is not None and central_run is not None and route not in RUN_LIFECYCLE:
            await self._to_run(link, primary_run, central_run, lambda: self._central(link, method, path, request))
            return
        try:
            await self._central(link, method, path, request)
        except (Transient, Refused) as exc:
            if isinstance(exc, Refused) and path == EXPERIMENT_DELETE_TAG_PATH and exc.not_found:
                return  # no such tag: what the deletion wanted (a replay, or a setting queued after it not applied yet)
            if route not in ACTIVE_EXPERIMENT_EDITS or primary_experiment is None:
                raise
            if not await self._copy_deleted(link, str(request["experiment_id"])):
                raise
            # MLflow renames and tags active experiments only (a deleted one's rename is its 500 INVALID_STATE, which
            # read as an outage was retried for ever; a tag its 400): the copy is deleted where the workspace
            # store's experiment was not (restored there around the gateway). The copy is made level with the
            # workspace store's experiment as it is now, which this write is part of, or was followed by.
            if not await self.repair_experiment(link, primary_experiment):
                raise

    async def _as_own_run_update(
        self, link: WorkspaceLink, primary_run: str, request: dict[str, Any]
    ) -> dict[str, Any]:
        """A run's `runs/update` as the workspace store's run is now: each of its status, end time and name the entry
        names takes the value the store holds. As for a run's tags (`_own_run_tags`), two updates made at once are
        queued in the order their answers came back, not the order the store took them, and applied as queued the
        central copy kept a status, end time or name the store had replaced. The entry is applied as it came when
        the workspace store cannot tell."""
        try:
            found = await self._own(link).get("/api/2.0/mlflow/runs/get", {"run_id": primary_run})
        except (Transient, Refused):
            return request
        info = (found.get("run") or {}).get("info") or {}
        held = {field: info.get(field) for field in ("status", "end_time", "run_name") if field in request}
        return {**request, **{field: value for field, value in held.items() if value not in (None, "")}}

    async def _as_own_experiment(
        self, link: WorkspaceLink, primary_experiment: str, route: str, path: str, request: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """An experiment's rename, or the setting or deletion of one of its tags, as the workspace store's experiment
        is now: its name, or the value it holds for the key (deleted when it holds none). As for a run's tags
        (`_own_run_tags`), two such writes made at once are queued in the order their answers came back, not the
        order the store took them, and applied as queued the central copy kept a name or value the store had
        replaced. The entry is applied as it came when the workspace store cannot tell."""
        try:
            found = await self._own(link).get("/api/2.0/mlflow/experiments/get", {"experiment_id": primary_experiment})
        except (Transient, Refused):
            return path, request
        experiment = found.get("experiment") or {}
        if route == EXPERIMENTS_UPDATE.name:
            return path, {**request, "new_name": experiment["name"]} if request.get("new_name") else request
        key = str(request["key"])
        tags = _tag_values(experiment.get("tags"))
        central_id = request["experiment_id"]
        if key in tags:
            return EXPERIMENT_SET_TAG_PATH, {"experiment_id": central_id, "key": key, "value": tags[key]}
        return EXPERIMENT_DELETE_TAG_PATH, {"experiment_id": central_id, "key": key}

    # -- logged models and the registry -------------------------------------------------------------

    async def _logged_model_deletion(
        self, link: WorkspaceLink, route: str, primary_id: str, tag_key: str | None
    ) -> None:
        """A logged model's deletion, or the deletion of one of its tags (its key in the path), on its central copy.

        A model without a copy has nothing to delete there: its creation's entry, ordered before under the model's
        key, made one if it was queued; one made before the workspace became dual was never copied, and is not copied
        now only to be deleted (nor can it be: the workspace store no longer answers for a deleted model). Not found
        is done: MLflow refuses to delete a tag that is not there, or a model already deleted (a replay after a
        dropped answer). A provenance tag's deletion queued before the gateway refused it is the relay's own."""
        if route == LOGGED_MODELS_DELETE_TAG.name and (tag_key is None or provenance_tag(tag_key)):
            return
        if route == LOGGED_MODELS_DELETE.name:
            mapped = await self._mapped(link, "logged_model", primary_id)
            if mapped is None:
                return
            central_id = mapped.central_id
        else:
            central_id, _ = await self.central_logged_model(link, primary_id)
        path = f"/api/2.0/mlflow/logged-models/{quote(central_id, safe='')}"
        if route == LOGGED_MODELS_DELETE_TAG.name:
            path += f"/tags/{quote(str(tag_key), safe='')}"
        try:
            await self._central(link, "DELETE", path, {})
        except Refused as exc:
            if not exc.not_found:
                raise

    async def central_logged_model(self, link: WorkspaceLink, primary_id: str) -> tuple[str, str]:
        """(central model id, central artifact root) of a logged model, copying it on first use."""
        mapped = await self._mapped(link, "logged_model", primary_id)
        if mapped is not None:
            return mapped.central_id, mapped.central_artifact_uri
        path = f"/api/2.0/mlflow/logged-models/{quote(primary_id, safe='')}"
        found = await self._source(link, path, {}, f"logged model {primary_id}")
        info = found["model"]["info"]
        request: dict[str, Any] = {
            k: info.get(k) for k in ("experiment_id", "name", "model_type", "source_run_id") if info.get(k)
        }
        # Its tags and params as the workspace store has them now, in the call that creates the copy: its creation's
        # entry (which carries them) was never queued (made before the workspace became dual) or was lost, and the
        # copy made from the bare fields had none of them (nothing later copies a tag or param not written again).
        tags = [
            {"key": str(t["key"]), "value": str(t.get("value") or "")}
            for t in info.get("tags") or []
            if t.get("key") and not provenance_tag(t.get("key"))
        ]
        params = [
            {"key": str(p["key"]), "value": str(p.get("value") or "")}
            for p in (found["model"].get("data") or {}).get("params") or []
            if p.get("key")
        ]
        if tags:
            request["tags"] = tags
        if params:
            request["params"] = params
        return await self._copy_logged_model(link, primary_id, request, str(info.get("status") or ""))

    async def _create_logged_model(
        self, link: WorkspaceLink, primary_id: str, request: Mapping[str, Any], status: str = ""
    ) -> tuple[str, str]:
        """The central copy of a logged model, found by its provenance tag or created (PENDING: the store creates
        every logged model so). `status` is the workspace store's status of a model copied on first use: READY or
        FAILED there (finalized before the copy, by a call whose entry was never queued), the copy's finalization
        is queued under the model's key with the id map's row, so it follows the model's pending files, if any,
        and is applied however the relay ends."""
        mapped = await self._mapped(link, "logged_model", primary_id)
        if mapped is not None:
            return mapped.central_id, mapped.central_artifact_uri
        experiment_id = await self.central_experiment(link, str(request["experiment_id"]))
        search = {"experiment_ids": [experiment_id], "filter": f"tags.`{SOURCE_MODEL_TAG}` = '{primary_id}'"}
        existing = (await self._central(link, "POST", "/api/2.0/mlflow/logged-models/search", search)).get("models")
        if existing:
            info = existing[0]["info"]
        else:
            body: dict[str, Any] = {**request, "experiment_id": experiment_id}
            if body.get("source_run_id"):
                body["source_run_id"], _ = await self.central_run(link, str(body["source_run_id"]))
            body["tags"] = [*(request.get("tags") or []), {"key": SOURCE_MODEL_TAG, "value": primary_id}]
            info = (await self._central(link, "POST", "/api/2.0/mlflow/logged-models", body))["model"]["info"]
        central_id, uri = str(info["model_id"]), str(info.get("artifact_uri", ""))
        finalize = None
        if status in FINAL_STATUSES and info.get("status") != status:
            finalize = finalization(link, primary_id, status)
        await self._remember(link, "logged_model", primary_id, central_id, uri, then=finalize)
        return central_id, uri

    async def _central_version(self, link: WorkspaceLink, name: str, version: str) -> str:
        mapped = await self._mapped(link, "model_version", f"{name}/{version}")
        if mapped is None:
            raise Refused(f"version {version} of model {name} has no central copy yet")
        return mapped.central_id

    async def _apply_registry(
        self, link: WorkspaceLink, route: str, request: dict[str, Any], response: Mapping[str, Any]
    ) -> None:
        method, template = route.split(" ", 1)
        primary_name = str(request.get("name", ""))
        body = dict(request)
        body["name"] = link.mirror_prefix + primary_name
        if route == REGISTERED_MODELS_RENAME.name:
            body["new_name"] = link.mirror_prefix + str(request["new_name"])
        if route == REGISTERED_MODELS_CREATE.name:
            try:
                await self._central(link, method, "/api/2.0" + template, body)
            except Refused as exc:
                if not exc.already_exists:  # created by an earlier attempt: done
                    raise
            return
        if route == MODEL_VERSIONS_CREATE.name:
            await self._copy_version(link, primary_name, body, response)
            return
        path = "/api/2.0" + template
        if route in REGISTRY_AS_STORE:
            method, path, body = await self._as_own_registry(link, route, primary_name, request, method, path, body)
        if "version" in body:
            body["version"] = await self._central_version(link, primary_name, str(body["version"]))
        await self._central(link, method, path, body)

    async def _as_own_registry(
        self,
        link: WorkspaceLink,
        route: str,
        primary_name: str,
        request: Mapping[str, Any],
        method: str,
        path: str,
        body: dict[str, Any],
    ) -> tuple[str, str, dict[str, Any]]:
        """The setting or deletion of a registered model's or model version's tag, or of its description, as the
        workspace store holds it now: the key set to the value held there (deleted when it holds none), the
        description set to the store's. As for a run's tags (`_own_run_tags`), two such writes made at once are
        queued in the order their answers came back, not the order the store took them, and applied as queued the
        central copy kept a value or description the store had replaced, or a tag it had deleted, for good. The
        entry is applied as it came when the workspace store cannot tell (down, failing, no such model: renamed or
        deleted since, which entries queued after this one apply)."""
        version = str(request["version"]) if route in VERSION_AS_STORE else None
        try:
            if version is None:
                found = await self._own(link).get("/api/2.0/mlflow/registered-models/get", {"name": primary_name})
                held = found.get("registered_model") or {}
            else:
                query = {"name": primary_name, "version": version}
                found = await self._own(link).get("/api/2.0/mlflow/model-versions/get", query)
                held = found.get("model_version") or {}
        except (Transient, Refused):
            return method, path, body
        if route in (REGISTERED_MODELS_UPDATE.name, MODEL_VERSIONS_UPDATE.name):
            return method, path, {**body, "description": str(held.get("description") or "")}
        kind = "registered-models" if version is None else "model-versions"
        target: dict[str, Any] = {k: body[k] for k in ("name", "version") if k in body}
        key = str(request["key"])
        tags = _tag_values(held.get("tags"))
        if key in tags:
            return "POST", f"/api/2.0/mlflow/{kind}/set-tag", {**target, "key": key, "value": tags[key]}
        return "DELETE", f"/api/2.0/mlflow/{kind}/delete-tag", {**target, "key": key}

    async def _create_version(
        self, link: WorkspaceLink, primary_name: str, body: dict[str, Any], response: Mapping[str, Any]
    ) -> None:
        version = str((response.get("model_version") or {}).get("version", ""))
        if await self._mapped(link, "model_version", f"{primary_name}/{version}") is not None:
            return
        existing = await self._central_copy_of_version(link, str(body["name"]), version)
        if existing is not None:
            central_version = existing
        else:
            if body.get("run_id"):
                body["run_id"], _ = await self.central_run(link, str(body["run_id"]))
            if body.get("model_id"):
                body["model_id"], _ = await self.central_logged_model(link, str(body["model_id"]))
            body["source"] = await self._central_source(link, str(body.get("source", "")))
            body["tags"] = [*(body.get("tags") or []), {"key": SOURCE_VERSION_TAG, "value": version}]
            body.pop("run_link", None)
            path = "/api/2.0/mlflow/model-versions/create"
            try:
                created = await self._central(link, "POST", path, body)
            except Refused as exc:
                # Refused for want of the registered model (its creation was never queued): made, then the version.
                if not exc.not_found:
                    raise
                made_at = (response.get("model_version") or {}).get("creation_timestamp")
                if not await self._central_registered_model(link, primary_name, made_at):
                    raise
                created = await self._central(link, "POST", path, body)
            central_version = str(created["model_version"]["version"])
        await self._remember(link, "model_version", f"{primary_name}/{version}", central_version)

    async def _central_registered_model(self, link: WorkspaceLink, primary_name: str, version_made_at: Any) -> bool:
        """Create the central copy of registered model `primary_name` if the central store has none: True when it
        was missing (and is made now), False when it was there.

        Its creation's entry is missing when the store made the model and the entry was never committed (a gateway
        killed between the two, a promotion whose entry failed: its retry finds the model there and creates none)
        or when it was made before the workspace became dual. Its versions' entries were then refused by the central
        store for want of the model and became dead letters. It is made with its description and tags as the
        workspace store has them now (the registry's later entries, applied after this one, set what changed since);
        a model the workspace store no longer holds under the name (or holds one made after the version, so another
        model given the name since a rename) is made by name alone: the rename's or deletion's entry follows. A
        creation entry applied later finds it made (already exists: done)."""
        central_name = link.mirror_prefix + primary_name
        get = "/api/2.0/mlflow/registered-models/get"
        if await self._central_find(link, get, {"name": central_name}) is not None:
            return False
        body: dict[str, Any] = {"name": central_name}
        found = await self._maybe(self._own(link), get, {"name": primary_name})
        model = (found or {}).get("registered_model") or {}
        made_at, version_at = whole(model.get("creation_timestamp")), whole(version_made_at)
        if made_at is not None and version_at is not None and made_at > version_at:
            model = {}  # made after the version: not the model the version was made in
        if model.get("description"):
            body["description"] = str(model["description"])
        tags = [
            {"key": str(t["key"]), "value": str(t.get("value") or "")} for t in _without_provenance(model.get("tags"))
        ]
        if tags:
            body["tags"] = tags
        try:
            await self._central(link, "POST", "/api/2.0/mlflow/registered-models/create", body)
        except Refused as exc:
            if not exc.already_exists:
                raise
        return True

    async def _central_copy_of_version(self, link: WorkspaceLink, central_name: str, version: str) -> str | None:
        """The central version an earlier attempt copied from `version` of the model named `central_name`, if any.

        Searched by the source-version tag alone (the store's own version number) and matched on the name here: the
        name is the user's, and MLflow's filter grammar has no escape for a name holding both quotes (or ending in a
        backslash). Written into the filter, a quote in it made the search fail, so the model's versions became dead
        letters, and a crafted name could end the string and find another model's version, taken for the copy."""
        if not is_number(version):
            raise Refused(f"the workspace store answered {version!r} as a model version number")
        search = {"filter": f"tags.`{SOURCE_VERSION_TAG}` = '{version}'", "max_results": str(SEARCH_PAGE)}
        path = "/api/2.0/mlflow/model-versions/search"
        # A refusal of any page is raised (the entry is tried again), never taken for "no copy": a search that
        # finds nothing answers an empty page, and creating the version after a refused page made a second copy.
        async for found in self._copies(link).items("GET", path, search, "model_versions"):
            if found.get("name") == central_name:
                return str(found["version"])
        return None

    async def _central_source(self, link: WorkspaceLink, source: str) -> str:
        """A version's source, pointing at the central copies of the run or logged model it names."""
        if source.startswith("models:/m-"):
            model_id, _, rest = source[len("models:/") :].partition("/")
            central_model, _ = await self.central_logged_model(link, model_id)
            return f"models:/{central_model}" + (f"/{rest}" if rest else "")
        if source.startswith("runs:/"):
            run_id, _, rest = source[len("runs:/") :].partition("/")
            central_run, _ = await self.central_run(link, run_id)
            return f"runs:/{central_run}/{rest}"
        if source.startswith("mlflow-artifacts:/"):
            parts = [p for p in source[len("mlflow-artifacts:") :].split("/") if p]
            if parts and parts[0] == "workspaces":
                parts = parts[2:]
            if len(parts) >= 3 and parts[2] == "artifacts":
                _, root = await self.central_run(link, parts[1])
                return "/".join([root, *parts[3:]])
            if len(parts) >= 4 and parts[1] == "models":
                _, root = await self.central_logged_model(link, parts[2])
                return "/".join([root, *parts[4:]])
        raise Refused(f"the source {source!r} cannot be translated to the central store")

    # -- copies are made once: one process at a time per object, the others then find it mapped --------

    @contextlib.asynccontextmanager
    async def _exclusive(self, link: WorkspaceLink, kind: str, primary_id: str) -> AsyncIterator[None]:
        """An advisory lock on (workspace, kind, id), across every gateway process, while the copy is made.

        Without it a relay and a reconciler (or two relays) could both miss the provenance tag and
        both create a copy. A session-level lock on a connection of its own, in autocommit mode: no
        transaction is held open across the calls to the stores that find or create the copy, and
        the lock is released when the block ends, however it ends.
        """
        key = f"{link.workspace_id}:{kind}:{primary_id}"
        async with (
            autocommit_connection(self._sessionmaker) as connection,
            held(connection, LockClass.MIRROR_OBJECT, key, wait=math.inf),
        ):
            yield

    async def _copy_experiment(self, link: WorkspaceLink, primary_id: str, request: Mapping[str, Any]) -> str:
        mapped = await self._mapped(link, "experiment", primary_id)
        if mapped is not None:
            return mapped.central_id
        async with self._exclusive(link, "experiment", primary_id):
            return await self._create_experiment(link, primary_id, request)

    async def _copy_run(
        self, link: WorkspaceLink, primary_id: str, request: Mapping[str, Any], info: Mapping[str, Any]
    ) -> tuple[str, str]:
        mapped = await self._mapped(link, "run", primary_id)
        if mapped is not None:
            return mapped.central_id, mapped.central_artifact_uri
        async with self._exclusive(link, "run", primary_id):
            return await self._create_run(link, primary_id, request, info)

    async def _copy_logged_model(
        self, link: WorkspaceLink, primary_id: str, request: Mapping[str, Any], status: str = ""
    ) -> tuple[str, str]:
        mapped = await self._mapped(link, "logged_model", primary_id)
        if mapped is not None:
            return mapped.central_id, mapped.central_artifact_uri
        async with self._exclusive(link, "logged_model", primary_id):
            return await self._create_logged_model(link, primary_id, request, status)

    async def _copy_version(
        self, link: WorkspaceLink, primary_name: str, body: dict[str, Any], response: Mapping[str, Any]
    ) -> None:
        version = str((response.get("model_version") or {}).get("version", ""))
        async with self._exclusive(link, "model_version", f"{primary_name}/{version}"):
            await self._create_version(link, primary_name, body, response)

    # -- id translation ---------------------------------------------------------------------------------

    async def _mapped(self, link: WorkspaceLink, kind: str, primary_id: str) -> IdMapRow | None:
        async with self._sessionmaker() as session:
            result = await session.execute(
                select(IdMapRow).where(
                    IdMapRow.workspace_id == link.workspace_id,
                    IdMapRow.kind == kind,
                    IdMapRow.primary_id == primary_id,
                )
            )
            return result.scalar_one_or_none()

    async def _remember(
        self,
        link: WorkspaceLink,
        kind: str,
        primary_id: str,
        central_id: str,
        uri: str = "",
        *,
        then: dict[str, Any] | None = None,
    ) -> None:
        """The copy's row of the id map, and `then` (an outbox entry's columns) queued in the same transaction: a
        copy once remembered is never made again, so what it still needs must be queued with the row or never."""
        async with self._sessionmaker() as session, session.begin():
            if then is not None:
                await session.execute(insert(OutboxRow).values(**then))
            await session.execute(
                insert(IdMapRow)
                .values(
                    workspace_id=link.workspace_id,
                    kind=kind,
                    primary_id=primary_id,
                    central_id=central_id,
                    central_artifact_uri=uri,
                )
                .on_conflict_do_nothing()
            )

    async def central_experiment(self, link: WorkspaceLink, primary_id: str) -> str:
        mapped = await self._mapped(link, "experiment", primary_id)
        if mapped is not None:
            return mapped.central_id
        found = await self._source(
            link, "/api/2.0/mlflow/experiments/get", {"experiment_id": primary_id}, f"experiment {primary_id}"
        )
        experiment = found["experiment"]
        tags = [
            t for t in _without_provenance(experiment.get("tags")) if not str(t.get("key", "")).startswith("mlflow.")
        ]
        return await self._copy_experiment(link, primary_id, {"name": experiment["name"], "tags": tags})

    async def _create_experiment(self, link: WorkspaceLink, primary_id: str, request: Mapping[str, Any]) -> str:
        mapped = await self._mapped(link, "experiment", primary_id)
        if mapped is not None:
            return mapped.central_id
        name = link.mirror_prefix + str(request["name"])
        by_name = "/api/2.0/mlflow/experiments/get-by-name"
        found = await self._central_find(link, by_name, {"experiment_name": name})
        if found is not None:
            central_id = _copy_of(found["experiment"], primary_id)
        else:
            tags = [
                *(request.get("tags") or []),
                {"key": SOURCE_EXPERIMENT_TAG, "value": primary_id},
                {"key": SOURCE_WORKSPACE_TAG, "value": link.name},
            ]
            try:
                created = await self._central(
                    link, "POST", "/api/2.0/mlflow/experiments/create", {"name": name, "tags": tags}
                )
                central_id = str(created["experiment_id"])
            except Refused as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                # Another relay created it a moment ago.
                found = await self._central_find(link, by_name, {"experiment_name": name})
                if found is None:
                    raise
                central_id = _copy_of(found["experiment"], primary_id)
        await self._remember(link, "experiment", primary_id, central_id)
        return central_id

    async def central_run(self, link: WorkspaceLink, primary_id: str) -> tuple[str, str]:
        """(central run id, central artifact root) of a primary run, copying the run on first use."""
        mapped = await self._mapped(link, "run", primary_id)
        if mapped is not None:
            return mapped.central_id, mapped.central_artifact_uri
        found = await self._source(link, "/api/2.0/mlflow/runs/get", {"run_id": primary_id}, f"run {primary_id}")
        info = found["run"]["info"]
        tags = [t for t in (found["run"].get("data") or {}).get("tags") or []]
        request = {"experiment_id": info["experiment_id"], "start_time": info.get("start_time"),
                   "run_name": info.get("run_name"), "user_id": info.get("user_id"), "tags": tags}  # fmt: skip
        return await self._copy_run(link, primary_id, request, info)

    async def _create_run(
        self, link: WorkspaceLink, primary_id: str, request: Mapping[str, Any], info: Mapping[str, Any]
    ) -> tuple[str, str]:
        mapped = await self._mapped(link, "run", primary_id)
        if mapped is not None:
            return mapped.central_id, mapped.central_artifact_uri
        experiment_id = await self.central_experiment(link, str(request.get("experiment_id") or info["experiment_id"]))
        # Created before, by a relay that died before recording it? Its provenance tag finds it.
        search = {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`{SOURCE_RUN_TAG}` = '{primary_id}'",
            "run_view_type": "ALL",
            "max_results": 1,
        }
        existing = (await self._central(link, "POST", "/api/2.0/mlflow/runs/search", search)).get("runs") or []
        if existing:
            run_info = existing[0]["info"]
        else:
            tags = _without_provenance(request.get("tags"))
            tags += [{"key": SOURCE_RUN_TAG, "value": primary_id}, {"key": SOURCE_WORKSPACE_TAG, "value": link.name}]
            body = {
                "experiment_id": experiment_id,
                "start_time": request.get("start_time") or info.get("start_time"),
                "run_name": request.get("run_name") or info.get("run_name"),
                "user_id": request.get("user_id") or info.get("user_id"),
                "tags": tags,
            }
            created = await self._central(
                link, "POST", "/api/2.0/mlflow/runs/create", {k: v for k, v in body.items() if v is not None}
            )
            run_info = created["run"]["info"]
        central_id, uri = str(run_info["run_id"]), str(run_info.get("artifact_uri", ""))
        await self._remember(link, "run", primary_id, central_id, uri)
        return central_id, uri

    async def copy_started_run(self, link: WorkspaceLink, primary_id: str) -> None:
        """A run the store created by itself (the prompt lab's, a job's): copied with its tags, params, status and
        artifacts as the workspace store has them now. What the job writes into it later reaches the central copy
        through the reconciler, as any write made to the workspace store around the gateway."""
        central_id, _ = await self.central_run(link, primary_id)
        found = await self._source(link, "/api/2.0/mlflow/runs/get", {"run_id": primary_id}, f"run {primary_id}")
        info, data = found["run"]["info"], found["run"].get("data") or {}
        params = [{"key": p["key"], "value": p.get("value", "")} for p in data.get("params") or []]
        tags = [{"key": t["key"], "value": t.get("value", "")} for t in _without_provenance(data.get("tags"))]
        for start in range(0, max(len(params), len(tags)), MAX_PARAMS):
            batch = {"run_id": central_id, "params": params[start : start + MAX_PARAMS]}
            batch["tags"] = tags[start : start + MAX_TAGS]
            await self._central(link, "POST", "/api/2.0/mlflow/runs/log-batch", batch)
        if info.get("status") not in (None, "RUNNING"):
            update = {"run_id": central_id, "status": info["status"]}
            if info.get("end_time"):
                update["end_time"] = info["end_time"]
            await self._central(link, "POST", "/api/2.0/mlflow/runs/update", update)
        await self.copy_missing_artifacts(link, primary_id)

    # -- artifacts ----------------------------------------------------------------------------------

    async def _central_artifact_path(
        self, link: WorkspaceLink, upstream_path: str, *, file: bool = False
    ) -> str | None:
        """Where the central copy keeps the file or folder `upstream_path` of the workspace store's artifact proxy:
        under the central copy of the run or logged model the path names; None for a path that names neither (or,
        with `file`, that names no file inside its artifacts)."""
        owner = _artifact_owner(upstream_path)
        if owner is None or (file and not owner[2]):
            return None
        kind, primary_id, inside = owner
        if kind == "run":
            _, central_uri = await self.central_run(link, primary_id)
        else:
            _, central_uri = await self.central_logged_model(link, primary_id)
        relative = "/".join(inside)
        return "/".join(part for part in (central_uri.removeprefix("mlflow-artifacts:").strip("/"), relative) if part)

    async def _delete_artifact(self, link: WorkspaceLink, upstream_path: str) -> None:
        """Delete in the central copy the file or folder deleted through the workspace store's artifact proxy. Not found
        is done (a replay, or a file whose upload's entry copied nothing: deleted before it was applied)."""
        target = await self._central_artifact_path(link, upstream_path)
        if target is None:
            return
        central = self._copies(link)
        answer = await central.send("DELETE", "/api/2.0/mlflow-artifacts/artifacts/" + quote(target), idempotent=True)
        if answer.status == 404:
            answer.release()
            return
        await central.document(answer)

    async def _copy_artifact(self, link: WorkspaceLink, upstream_path: str) -> None:
        """Stream one artifact from the workspace store to the central store, never holding it whole."""
        target = await self._central_artifact_path(link, upstream_path, file=True)
        if target is None:
            return
        source = await self._own(link).send(
            "GET", "/api/2.0/mlflow-artifacts/artifacts/" + quote(upstream_path), idempotent=True
        )
        if source.status != 200:
            source.release()
            if source.status == 404:
                return  # deleted since: nothing to copy
            raise Transient(f"workspace store answered {source.status} for an artifact", status=source.status)
        central = self._copies(link)
        try:
            answer = await central.send(
                "PUT",
                "/api/2.0/mlflow-artifacts/artifacts/" + quote(target),
                headers=[("content-type", "application/octet-stream")],
                body=source.iter_chunks(),
            )
        except Transient:
            source.release()
            raise
        await central.document(answer)

    async def _copy_run_file(self, link: WorkspaceLink, primary_run: str, path: str) -> None:
        """Copy one file of a run, named by its path inside the run's artifacts (the UI's upload button)."""
        try:
            root = await self._primary_artifact_root(link, primary_run)
        except Refused as exc:
            if exc.not_found:
                return  # the run is gone from the workspace store: nothing to copy
            raise
        await self._copy_artifact(link, f"{root}/{path}")

    # -- for the reconciler ---------------------------------------------------------------------------

    async def copy_missing_artifacts(self, link: WorkspaceLink, primary_run: str) -> int:
        """Copy the run's files the central copy lacks (by path and size); the number copied."""
        try:
            mine = await self._files(self._own(link), primary_run)
        except Transient as exc:
            # A store started with --no-serve-artifacts answers 500 for the files of a run at an `mlflow-artifacts:`
            # location (it cannot resolve what it does not serve). It holds none the gateway could have written (its
            # uploads answer 501) nor any it could copy: nothing to copy. Raised, that failed every reconcile pass
            # of the workspace at its first run, and every recovery of a write to a run was retried for good.
            if exc.status == 500 and not await self._serves_artifacts(link):
                return 0
            raise
        if not mine:
            return 0
        central_run, _ = await self.central_run(link, primary_run)
        theirs = await self._files(self._copies(link), central_run)
        missing = [path for path, size in mine.items() if theirs.get(path) != size]
        root = await self._primary_artifact_root(link, primary_run)
        for path in missing:
            await self._copy_artifact(link, f"{root}/{path}")
        return len(missing)

    async def _serves_artifacts(self, link: WorkspaceLink) -> bool:
        """Whether the workspace store serves artifacts: False only when its artifact proxy answers MLflow's own 503
        of a server started with --no-serve-artifacts (federation/store_answers.py), matched exactly."""
        answer = await self._own(link).send("GET", "/api/2.0" + ARTIFACT_LIST.path, idempotent=True)
        if answer.status >= 500:
            try:
                body = await answer.read()
            except (StoreUnreachable, StoreTimedOut) as exc:
                raise Transient(f"the workspace store dropped its answer: {exc}") from exc
            return not isinstance(known_failure(ARTIFACT_LIST, answer.status, body, link.name), FeatureNotServed)
        answer.release()
        return True

    async def _primary_artifact_root(self, link: WorkspaceLink, run_id: str) -> str:
        found = await self._own(link).get("/api/2.0/mlflow/runs/get", {"run_id": run_id})
        return str(found["run"]["info"]["artifact_uri"]).removeprefix("mlflow-artifacts:").lstrip("/")

    @staticmethod
    async def _files(store: StoreClient, run_id: str) -> dict[str, int]:
        """path → size of every file of a run (`artifacts/list` is served for proxied artifacts too)."""
        files: dict[str, int] = {}
        folders = [""]
        while folders:
            folder = folders.pop()
            query = {"run_id": run_id, **({"path": folder} if folder else {})}
            try:
                page = await store.get("/api/2.0/mlflow/artifacts/list", query)
            except Refused:
                return files
            for item in page.get("files") or []:
                if item.get("is_dir"):
                    folders.append(item["path"])
                else:
                    files[item["path"]] = int(item.get("file_size") or 0)
        return files

    # -- calls ----------------------------------------------------------------------------------------

    def _own(self, link: WorkspaceLink) -> StoreClient:
        return own_store(self.stores, link)

    def _copies(self, link: WorkspaceLink) -> StoreClient:
        return central_store(self.stores, link)

    async def _central(self, link: WorkspaceLink, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A write to the central copies; every mirrored write is safe to repeat (resent after a dropped connection)."""
        return await self._copies(link).call(method, path, body, idempotent=True)

    async def _central_find(self, link: WorkspaceLink, path: str, query: Mapping[str, str]) -> dict[str, Any] | None:
        """A read of the central store that may find nothing: None only when it answers not found (404 or
        RESOURCE_DOES_NOT_EXIST). Any other refusal is raised, as an outage is (`Transient`): the entry is tried
        again. Taken for "not found", a refusal (a 403 of a proxy, a 400) had the copy made a second time."""
        return await self._maybe(self._copies(link), path, query)

    async def _source(self, link: WorkspaceLink, path: str, query: Mapping[str, str], what: str) -> dict[str, Any]:
        """A read of what is to be copied from the workspace store; a refusal names the object."""
        try:
            return await self._own(link).get(path, query)
        except Refused as exc:
            raise Refused(
                f"{what} cannot be read from the workspace store ({exc.status})",
                status=exc.status,
                error_code=exc.error_code,
                message=exc.message,
            ) from exc

    async def _copy_deleted(self, link: WorkspaceLink, central_id: str) -> bool:
        found = await self._central_find(link, "/api/2.0/mlflow/experiments/get", {"experiment_id": central_id})
        return found is not None and found["experiment"].get("lifecycle_stage") == "deleted"

    # -- recovery of writes of unknown outcome (dual/recovery.py): the central copy made level with the store --

    async def repair_experiment(self, link: WorkspaceLink, primary_id: str) -> bool:
        """Copy, name, tags and life cycle of one experiment as the workspace store has them; False if it has none."""
        found = await self._maybe(self._own(link), "/api/2.0/mlflow/experiments/get", {"experiment_id": primary_id})
        if found is None:
            return False
        experiment = found["experiment"]
        central_id = await self.central_experiment(link, primary_id)
        central = self._copies(link)
        copy = (await central.get("/api/2.0/mlflow/experiments/get", {"experiment_id": central_id}))["experiment"]
        name = link.mirror_prefix + str(experiment["name"])
        mine = _own_tags(experiment.get("tags"))
        theirs = _own_tags(copy.get("tags"))
        if copy.get("lifecycle_stage") == "deleted" and (copy.get("name") != name or mine != theirs):
            # MLflow renames and tags active experiments only: restored first, deleted again below if it is so here.
            await self._central(link, "POST", "/api/2.0/mlflow/experiments/restore", {"experiment_id": central_id})
            copy = {**copy, "lifecycle_stage": "active"}
        if copy.get("name") != name:
            await self._central(link, "POST", "/api/2.0/mlflow/experiments/update",
                                {"experiment_id": central_id, "new_name": name})  # fmt: skip
        for key, value in mine.items():
            if theirs.get(key) != value:
                await self._central(link, "POST", "/api/2.0/mlflow/experiments/set-experiment-tag",
                                    {"experiment_id": central_id, "key": key, "value": value})  # fmt: skip
        for key in theirs.keys() - mine.keys():
            await self._central(link, "POST", "/api/2.0/mlflow/experiments/delete-experiment-tag",
                                {"experiment_id": central_id, "key": key})  # fmt: skip
        if copy.get("lifecycle_stage") != experiment.get("lifecycle_stage"):
            action = "delete" if experiment.get("lifecycle_stage") == "deleted" else "restore"
            await self._central(link, "POST", f"/api/2.0/mlflow/experiments/{action}", {"experiment_id": central_id})
        return True

    async def experiment_named(self, link: WorkspaceLink, name: str) -> str | None:
        """The workspace store's id of the experiment called `name`, if it has one."""
        found = await self._maybe(self._own(link), "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": name})
        return str(found["experiment"]["experiment_id"]) if found is not None else None

    async def repair_logged_model(self, link: WorkspaceLink, primary_id: str) -> bool:
        """Copy, tags, params, status and life of one logged model as the workspace store has them: False if the store
        has none (never made, or deleted: its central copy, if any, is deleted too)."""
        path = f"/api/2.0/mlflow/logged-models/{quote(primary_id, safe='')}"
        found = await self._maybe(self._own(link), path, {})
        if found is None:
            await self._logged_model_deletion(link, LOGGED_MODELS_DELETE.name, primary_id, None)
            return False
        model = found["model"]
        central_id, _ = await self.central_logged_model(link, primary_id)
        central_path = f"/api/2.0/mlflow/logged-models/{quote(central_id, safe='')}"
        copy = (await self._copies(link).get(central_path, {}))["model"]
        mine = _own_tags((model.get("data") or {}).get("tags") or model["info"].get("tags"))
        theirs = _own_tags((copy.get("data") or {}).get("tags") or copy["info"].get("tags"))
        missing = [{"key": k, "value": v} for k, v in mine.items() if theirs.get(k) != v]
        if missing:
            await self._central(link, "PATCH", f"{central_path}/tags", {"model_id": central_id, "tags": missing})
        for key in sorted(theirs.keys() - mine.keys()):  # deleted in the workspace store
            await self._logged_model_deletion(link, LOGGED_MODELS_DELETE_TAG.name, primary_id, key)
        params = {p["key"]: p.get("value") for p in (model.get("data") or {}).get("params") or []}
        have = {p["key"] for p in (copy.get("data") or {}).get("params") or []}
        if params.keys() - have:
            body = [{"key": k, "value": v} for k, v in params.items() if k not in have]
            await self._central(link, "POST", f"{central_path}/params", {"model_id": central_id, "params": body})
        status = model["info"].get("status")
        if status and status != copy["info"].get("status") and status != "LOGGED_MODEL_PENDING":
            await self._central(link, "PATCH", central_path, {"model_id": central_id, "status": status})
        return True

    async def repair_registered_model(self, link: WorkspaceLink, name: str) -> None:
        """The central registered model of `name` as the workspace store has it: created or deleted, its
        description, tags, versions (copied) and aliases."""
        central_name = link.mirror_prefix + name
        model = await self._maybe(self._own(link), "/api/2.0/mlflow/registered-models/get", {"name": name})
        copy = await self._central_find(link, "/api/2.0/mlflow/registered-models/get", {"name": central_name})
        if model is None:
            if copy is not None:  # deleted (or renamed) in the workspace store
                await self._central(link, "DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": central_name})
            return
        mine = model["registered_model"]
        if copy is None:
            try:
                await self._central(link, "POST", "/api/2.0/mlflow/registered-models/create", {"name": central_name})
            except Refused as exc:
                if not exc.already_exists:
                    raise
            copy = await self._central_find(link, "/api/2.0/mlflow/registered-models/get", {"name": central_name})
        theirs = (copy or {}).get("registered_model") or {}
        if (mine.get("description") or "") != (theirs.get("description") or ""):
            await self._central(link, "PATCH", "/api/2.0/mlflow/registered-models/update",
                                {"name": central_name, "description": mine.get("description") or ""})  # fmt: skip
        tags, have = _own_tags(mine.get("tags")), _own_tags(theirs.get("tags"))
        for key, value in tags.items():
            if have.get(key) != value:
                await self._central(link, "POST", "/api/2.0/mlflow/registered-models/set-tag",
                                    {"name": central_name, "key": key, "value": value})  # fmt: skip
        for version in await self._own_versions(link, name):
            number = str(version["version"])
            body = {k: version[k] for k in ("source", "run_id", "description", "model_id") if version.get(k)}
            body["name"] = central_name
            body["tags"] = [t for t in version.get("tags") or [] if not str(t.get("key", "")).startswith("fedgate.")]
            await self._copy_version(link, name, body, {"model_version": {"version": number}})
        for alias in mine.get("aliases") or []:
            aliased = await self._central_version(link, name, str(alias["version"]))
            body = {"name": central_name, "alias": alias["alias"], "version": aliased}
            await self._central(link, "POST", "/api/2.0/mlflow/registered-models/alias", body)

    async def _own_versions(self, link: WorkspaceLink, name: str) -> list[dict[str, Any]]:
        """The versions of model `name` in the workspace store: listed and matched on the name here, which is the
        user's and never written into a filter (see `_central_copy_of_version`); a crafted name could otherwise have
        another model's versions copied into this one's central copy."""
        search = {"max_results": str(SEARCH_PAGE)}
        path = "/api/2.0/mlflow/model-versions/search"
        return [
            dict(v) async for v in self._own(link).items("GET", path, search, "model_versions") if v.get("name") == name
        ]

    async def _maybe(self, store: StoreClient, path: str, query: Mapping[str, str]) -> dict[str, Any] | None:
        """A read that may find nothing: None for a 404 (or RESOURCE_DOES_NOT_EXIST), the answer otherwise."""
        try:
            return await store.get(path, query)
        except Refused as exc:
            if exc.not_found:
                return None
            raise


def _tag_values(tags: Any) -> dict[str, str]:
    """A store answer's list of tags (`[{"key": ..., "value": ...}]`, absent when none) as key to value."""
    return {str(t["key"]): str(t.get("value") or "") for t in tags or [] if isinstance(t, Mapping) and "key" in t}


def _copy_of(experiment: Mapping[str, Any], primary_id: str) -> str:
    """The id of a central experiment found by name, if it is the copy of `primary_id` (or of no experiment).

    Names move between experiments: one renamed and another given its old name are written in the workspace's
    store in that order, but their entries are ordered under each experiment and may be applied the other way
    round. Before, the newcomer's copy was found by name in the renamed experiment's copy, so one editor's runs,
    tags and renames were applied to another's central experiment, which failover then served them. Refused
    (tried again later, once the pending rename has freed the name)."""
    tags = {t.get("key"): t.get("value") for t in experiment.get("tags") or [] if isinstance(t, Mapping)}
    source = tags.get(SOURCE_EXPERIMENT_TAG)
    if source is not None and str(source) != primary_id:
        raise Refused(
            f"the central experiment named as experiment {primary_id} is the copy of experiment {source}; tried "
            "again once it is renamed"
        )
    return str(experiment["experiment_id"])


def _central_model_json(model_json: Any, central_run: str) -> Any:
    """The model document of `runs/log-model` (kept in the run's `mlflow.log-model.history` tag) as the central copy's:
    the run it names is the central copy of the run (the store refuses a document without one)."""
    try:
        model = json.loads(model_json) if isinstance(model_json, str) else None
    except ValueError:
        model = None
    if not isinstance(model, dict):
        return model_json  # the workspace store accepted it as it is: sent so
    model["run_id"] = central_run
    return json.dumps(model)


def central_model_history(value: Any, central_run: str) -> Any:
    """A run's `mlflow.log-model.history` tag (a list of the model documents `runs/log-model` recorded) as the central
    copy's: each names the central copy of the run, as the relay applies `runs/log-model` (`_central_model_json`).
    A value that is no such list is the store's as it is."""
    try:
        history = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        history = None
    if not isinstance(history, list):
        return value
    return json.dumps([{**entry, "run_id": central_run} if isinstance(entry, dict) else entry for entry in history])


def _artifact_owner(upstream_path: str) -> tuple[str, str, list[str]] | None:
    """The object a path of the workspace store's artifact proxy lies in: ("run", run id, the segments inside its
    artifacts) for `<exp>/<run>/artifacts/...`, ("logged_model", model id, ...) for `<exp>/models/<m-id>/artifacts/...`
    (either under `workspaces/<name>/`); None for a path in neither."""
    parts = upstream_path.split("/")
    if parts[0] == "workspaces":
        parts = parts[2:]
    if len(parts) >= 3 and parts[2] == "artifacts":
        return "run", parts[1], parts[3:]
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        return "logged_model", parts[2], parts[4:]
    return None


def _without_provenance(tags: Any) -> list[Any]:
    """A list of tags without any of the relay's provenance tags (`provenance_tag`, in any spelling a store may match):
    a copy's are written by the relay alone. Tags set on a workspace's objects before the gateway refused them to
    callers (or around the gateway) would otherwise be copied onto the central copy, where the relay's search takes
    them for its own, or collide with the ones it writes."""
    return [t for t in tags or [] if not (isinstance(t, Mapping) and provenance_tag(t.get("key")))]


def _own_tags(tags: Any) -> dict[str, str]:
    """Tags as a mapping, without MLflow's own (`mlflow.`) and the gateway's provenance tags (`fedgate.`)."""
    items = tags.items() if isinstance(tags, Mapping) else ((t.get("key"), t.get("value")) for t in tags or [])
    return {str(k): str(v or "") for k, v in items if k and not str(k).startswith(("mlflow.", "fedgate."))}
