"""`Lookups` answered by the workspace's store (and the run directory), cached."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from gateway.core.bounded import BoundedCache
from gateway.core.errors import StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.reserved import promotions_experiment

# Objects whose experiment the store may change, whose answers are never kept: a trace. Its id is the client's
# (`tr-<hex of the OTel trace id>`): once deleted it may be given to a new trace in another experiment, and a v3
# start naming an existing trace moves it (and its spans) into the experiment the call names. Kept, the first
# answer let whoever could read or change the id's first experiment read and move the trace that has it now.
# Runs, logged models, issues, label schemas and review queues get ids the store makes up and never move.
UNCACHED_KINDS = frozenset({"trace"})

# How long a store's answer to "is this the promotions experiment?" is kept. The experiment can be renamed to or from
# that name (by an account admin, or a workspace manager) through another replica: this replica asks again this
# often. A rename through this replica is forgotten at once (`forget_experiment`).
PROMOTIONS_SECONDS = 30.0


class StoreLookups:
    """Which experiment a run, logged model, trace, issue, label schema or review queue belongs to: asked of the
    store once, then cached (a trace's is asked every time: `UNCACHED_KINDS`).

    `fetch(link, path, query)` reads from the workspace's store; `run_experiment(run_id, workspace)` is the
    run directory, asked first for runs. Only found objects are cached (a missing one may be created
    meanwhile), at most `size` of them. Whether an experiment is the promotions experiment is a matter of its
    name, which can change: that answer is kept PROMOTIONS_SECONDS (`clock`: monotonic seconds).
    """

    def __init__(
        self,
        fetch: Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]],
        run_experiment: Callable[[str, str], Awaitable[str | None]],
        size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._run_experiment = run_experiment
        # Both aged from when they were kept.
        self._cache: BoundedCache[tuple[int, str, str], str] = BoundedCache(size)
        self._promotions: BoundedCache[tuple[int, str], tuple[bool, float]] = BoundedCache(size)  # answer, kept until
        self._clock = clock

    async def experiment_of(self, link: WorkspaceLink, kind: str, object_id: str) -> str | None:
        key = (link.workspace_id, kind, object_id)
        if (cached := self._cache.peek(key)) is not None:
            return cached
        experiment = None
        if kind == "run":
            experiment = await self._run_experiment(object_id, link.name)
        if experiment is None:
            experiment = await self._ask_store(link, kind, object_id)
        if experiment is not None and kind not in UNCACHED_KINDS:
            self._cache.put(key, experiment)
        return experiment

    async def promotions_experiment(self, link: WorkspaceLink, experiment_id: str) -> bool:
        """Asked of the store, then kept PROMOTIONS_SECONDS: through the gateway no experiment is renamed to or
        from the promotions experiment's name but by a workspace manager (from) or an account admin, rarely."""
        key = (link.workspace_id, experiment_id)
        now = self._clock()
        if (kept := self._promotions.peek(key)) is not None and now < kept[1]:
            return kept[0]
        query = urlencode({"experiment_id": experiment_id})
        answer = _read(link, *await self._fetch(link, "/api/2.0/mlflow/experiments/get", query))
        if answer is None:
            return False  # no such experiment (or none this store shows): the call fails at the store
        name = (answer.get("experiment") or {}).get("name")
        found = promotions_experiment(name)
        self._promotions.put(key, (found, now + PROMOTIONS_SECONDS))
        return found

    def forget_experiment(self, link: WorkspaceLink, experiment_id: str) -> None:
        """A rename of the experiment is under way: whether it is the promotions experiment is asked again."""
        self._promotions.pop((link.workspace_id, experiment_id))

    async def trace(self, link: WorkspaceLink, trace_id: str) -> dict[str, Any] | None:
        status, body = await self._fetch(link, f"/api/3.0/mlflow/traces/{quote(trace_id, safe='')}", "")
        return _read(link, status, body) if status == 200 else None

    async def stage_of(self, link: WorkspaceLink, name: str, version: str) -> str:
        query = urlencode({"name": name, "version": version})
        answer = _read(link, *await self._fetch(link, "/api/2.0/mlflow/model-versions/get", query))
        if answer is None:
            return ""  # no such version: the call fails at the store
        return str((answer.get("model_version") or {}).get("current_stage", ""))

    async def holds_assessment(self, link: WorkspaceLink, trace_id: str, assessment_id: str) -> bool:
        """Whether the store holds the assessment on that trace: asked at every call (a trace's assessments come
        and go, and move with it)."""
        path = f"/api/3.0/mlflow/traces/{quote(trace_id, safe='')}/assessments/{quote(assessment_id, safe='')}"
        answer = _read(link, *await self._fetch(link, path, ""))
        return answer is not None

    async def holds_dataset(self, link: WorkspaceLink, dataset_id: str) -> bool:
        """Whether the store holds the evaluation dataset: asked at every call (a dataset is deleted and made)."""
        answer = _read(link, *await self._fetch(link, f"/api/3.0/mlflow/datasets/{quote(dataset_id, safe='')}", ""))
        return answer is not None

    async def _ask_store(self, link: WorkspaceLink, kind: str, object_id: str) -> str | None:
        quoted = quote(object_id, safe="")
        if kind == "run":
            status, body = await self._fetch(link, "/api/2.0/mlflow/runs/get", f"run_id={quoted}")
            path: tuple[str, ...] = ("run", "info", "experiment_id")
        elif kind == "logged_model":
            status, body = await self._fetch(link, f"/api/2.0/mlflow/logged-models/{quoted}", "")
            path = ("model", "info", "experiment_id")
        elif kind == "trace":
            return trace_experiment(await self.trace(link, object_id))
        elif kind == "issue":
            status, body = await self._fetch(link, f"/api/3.0/mlflow/issues/{quoted}", "")
            path = ("issue", "experiment_id")
        elif kind == "label_schema":
            status, body = await self._fetch(link, "/api/3.0/mlflow/label-schemas/get", f"schema_id={quoted}")
            path = ("label_schema", "experiment_id")
        elif kind == "review_queue":
            status, body = await self._fetch(link, "/api/3.0/mlflow/review-queues/get", f"queue_id={quoted}")
            path = ("review_queue", "experiment_id")
        else:
            raise LookupError(f"no lookup of the experiment of a {kind}")
        if status != 200:
            return None
        node: Any = _read(link, status, body)
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return str(node) if node is not None else None


def trace_experiment(answer: dict[str, Any] | None) -> str | None:
    """The experiment holding a trace, from the store's answer for it (`Lookups.trace`); None for no trace."""
    node: Any = answer
    for key in ("trace", "trace_info", "trace_location", "mlflow_experiment", "experiment_id"):
        node = node.get(key) if isinstance(node, dict) else None
    return str(node) if node is not None else None


def _read(link: WorkspaceLink, status: int, body: bytes) -> dict[str, Any] | None:
    """A store's answer to one of the guard's reads: the JSON object of a 200, None for MLflow's refusal (4xx: no
    such object). Anything else (a 5xx, a redirect, a proxy's page answered 200) cannot tell, and a check that
    read it as "no" would let a call through unjudged: 503, as for a store that cannot be reached."""
    if 400 <= status < 500:
        return None
    answer: object = None
    if status == 200:
        with contextlib.suppress(msgspec.DecodeError):
            answer = msgspec.json.decode(body)
    if not isinstance(answer, dict):
        raise StoreUnavailable(f"The store of workspace '{link.name}' could not be read; try again shortly.")
    return answer
