"""What the guard asks of the rest of the gateway: the store side (`Lookups`) and the database side (`Ownership`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal


class Lookups(Protocol):
    """Where the objects a call names live in the workspace's store."""

    async def experiment_of(self, link: WorkspaceLink, kind: str, object_id: str) -> str | None:
        """The id of the experiment holding a run, logged model, trace, issue, label schema or review queue
        (`kind`: "run", "logged_model", "trace", "issue", "label_schema", "review_queue"); None when the store has
        no such object in this workspace."""
        ...

    async def trace(self, link: WorkspaceLink, trace_id: str) -> dict[str, Any] | None:
        """The store's answer for a trace (`GET /api/3.0/mlflow/traces/{id}`: its info, location and metadata),
        read at every call, never kept; None when the store has no such trace."""
        ...

    async def stage_of(self, link: WorkspaceLink, name: str, version: str) -> str:
        """The current stage of a registered model's version ("Production", ...); "" when unknown."""
        ...

    async def holds_assessment(self, link: WorkspaceLink, trace_id: str, assessment_id: str) -> bool:
        """Whether the store holds the assessment on that trace (asked at every call, never kept)."""
        ...

    async def holds_dataset(self, link: WorkspaceLink, dataset_id: str) -> bool:
        """Whether the store holds the evaluation dataset (asked at every call, never kept)."""
        ...

    async def promotions_experiment(self, link: WorkspaceLink, experiment_id: str) -> bool:
        """Whether the experiment is the one promotions copy model versions into (gateway/core/reserved.py)."""
        ...

    def forget_experiment(self, link: WorkspaceLink, experiment_id: str) -> None:
        """The experiment is being renamed: what was learnt of its name (`promotions_experiment`) is asked again."""
        ...


class Ownership(Protocol):
    """The gateway's own records of registered models and of who created what (AccessService implements it)."""

    async def model_id(self, link: WorkspaceLink, name: str, *, adopt: bool) -> str | None:
        """The gateway's immutable id of a registered model; with `adopt`, one the store has but the gateway
        never saw gets an id now. None: no such model."""
        ...

    async def model_names(self, link: WorkspaceLink, model_ids: set[str]) -> list[str]:
        """The current names of these registered models (ids without a model are left out)."""
        ...

    async def record_owner(self, principal: Principal, link: WorkspaceLink, kind: str, created: str) -> None:
        """Grant CAN_MANAGE on a new experiment (its id) or registered model (its name) to its creator;
        in effect (policy reloaded) when it returns."""
        ...

    async def model_changed(self, link: WorkspaceLink, action: str, name: str, new_name: str | None) -> None:
        """A registered model was renamed (`action` "rename") or deleted ("delete"): its id follows the name,
        or is forgotten with its grants."""
        ...


@dataclass(frozen=True, slots=True)
class ProtectedFiles:
    """A protected model version whose files an artifact write would change, and the level on its registered model
    (the gateway's id of it) that the write needs (`authz/levels.py`, `files_level`)."""

    model_id: str
    name: str
    version: str
    level: str
    why: str  # "is in Production", "holds the alias 'champion'", ...


class Protection(Protocol):
    """The files of protected model versions (gateway/registry/sources.py): where they lie, and their news."""

    async def at_path(self, link: WorkspaceLink, path: str) -> list[ProtectedFiles]:
        """The protected versions whose files lie at, under or above this artifact path (canonical, without a
        `workspaces/<name>/` prefix): a write or deletion there changes them."""
        ...

    async def in_object(self, link: WorkspaceLink, object_id: str, object_path: str) -> list[ProtectedFiles]:
        """The same for a path within a run's or logged model's artifact folder (`artifacts/<path>`)."""
        ...

    async def version_experiment(self, link: WorkspaceLink, name: str, version: str) -> str | None:
        """The experiment a registered model's version's files lie in (its run's or logged model's); None when the
        store has no such version or its files lie outside every experiment."""
        ...

    async def changed(self, link: WorkspaceLink, model_id: str, name: str) -> None:
        """A registry write the store accepted may have moved a stage or an alias of the model (or deleted or renamed
        it): its protected versions are read again. Never raises: what cannot be read is read at the next write."""
        ...


# Removes an object (kind, id) the store created but whose owner could not be recorded.
Undo = Callable[[WorkspaceLink, str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Need:
    """One check a job's start passed: `level` on an experiment (its id), a registered model (its name) or the
    workspace ("" as id). Cancelling the job asks it again; reading or listing it, at CAN_READ at most."""

    kind: str  # "experiment" | "model" | "workspace"
    object_id: str
    level: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job the gateway started, as recorded from the store's answer."""

    job_id: str
    job_name: str
    needs: tuple[Need, ...]
    created_by: str


class JobRecords(Protocol):
    """The gateway's records of the store jobs it started (federation/jobs.py)."""

    async def record(self, link: WorkspaceLink, jobs: list[JobRecord], run_id: str | None) -> None:
        """Record jobs just started in this workspace; in effect when it returns."""
        ...

    async def find(self, link: WorkspaceLink, job_ids: list[str]) -> dict[str, JobRecord]:
        """The records of these jobs in this workspace (ids never recorded are left out)."""
        ...
