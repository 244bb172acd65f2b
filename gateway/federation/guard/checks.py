"""The checks rules are made of: one object at a time, against the grants on it or on its experiment.

A caller who may not read an object gets the store's own not-found answer for it (404
RESOURCE_DOES_NOT_EXIST, exactly as a missing object); one who may read but not change it gets 403
PERMISSION_DENIED (`Authorizer.require`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping

from gateway.authz.decide import Authorizer
from gateway.authz.levels import RANK, Level, experiment_object, model_object, workspace_object
from gateway.core.errors import InvalidParameter, PermissionDenied, ResourceNotFound
from gateway.core.reserved import PROMOTIONS_EXPERIMENT
from gateway.federation.guard.lookups import trace_experiment
from gateway.federation.guard.ports import JobRecords, Lookups, Ownership, ProtectedFiles, Protection, Undo
from gateway.federation.guard.request import Request

EXPERIMENT_ID_RE = re.compile(r"^[0-9]{1,19}\Z")
RUN_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")

# The store's own not-found messages, so a hidden object reads exactly like a missing one.
MISSING = {
    "run": "Run with id={id} not found",
    "logged_model": "Logged model with ID '{id}' not found.",
    "trace": "Trace with ID {id} is not found.",
    "issue": "Issue with ID '{id}' not found",
    "label_schema": "Label schema with id '{id}' not found.",
    "review_queue": "Review queue with id '{id}' not found.",
}

# How many of one call's trace ids are asked of the store at once. A trace's experiment is never kept
# (lookups.py, UNCACHED_KINDS): a call naming 100 traces makes 100 reads, which one after another took 100 round
# trips. Asked together, at most this many at a time, so one call does not take a store's whole pool.
TRACE_LOOKUPS_AT_ONCE = 8
# The distinct traces one call may name. Each is one read of the store before the call is sent (the store itself
# reads a job's or a deletion's traces in one query), so the number was the caller's choice up to the body limit: a
# job start naming 2 million short ids (32 MB) made the gateway hold 2 million pending reads and send them all.
MAX_TRACES_PER_CALL = 10_000

# The store's answers for a call's trace ids, asked up front (`Checks.trace_experiments`): an experiment id, None
# (no such trace), or what asking raised, raised only when the trace is judged.
TraceAnswers = Mapping[str, "str | BaseException | None"]


class Checks:
    """The guard's collaborators, and the checks of single objects every rule function is written with."""

    def __init__(
        self,
        authorizer: Authorizer,
        lookups: Lookups,
        ownership: Ownership,
        undo: Undo,
        jobs: JobRecords | None = None,
        protection: Protection | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.lookups = lookups
        self.ownership = ownership  # owners of new objects, registered-model ids
        self.undo = undo  # compensates a creation whose owner could not be recorded
        self.jobs = jobs  # the store jobs the gateway started (None: none is recorded, none is shown)
        self.protection = protection  # the files of protected model versions (None: none is protected)

    def require_workspace(self, request: Request, wanted: str) -> None:
        """`wanted` on the whole workspace (404 for a principal who holds nothing in it)."""
        link = request.link
        self.authorizer.require_workspace(request.principal, link.workspace_id, link.name, wanted)

    async def require_experiment(self, request: Request, experiment_id: str, wanted: str) -> None:
        if not EXPERIMENT_ID_RE.match(experiment_id):
            raise ResourceNotFound(f"No Experiment with id={experiment_id} exists")
        obj = experiment_object(request.link.workspace_id, experiment_id)
        self.authorizer.require(
            request.principal, request.link.workspace_id, obj, wanted, f"No Experiment with id={experiment_id} exists"
        )
        await self._changes_promotions(request, experiment_id, wanted)

    async def require_run(self, request: Request, run_id: str, wanted: str) -> None:
        if not RUN_ID_RE.match(run_id):
            raise ResourceNotFound(MISSING["run"].format(id=run_id))
        await self._require_in_experiment(request, "run", run_id, wanted)

    async def require_logged_model(self, request: Request, model_id: str, wanted: str) -> None:
        await self._require_in_experiment(request, "logged_model", model_id, wanted)

    async def require_trace(
        self, request: Request, trace_id: str, wanted: str, answers: TraceAnswers | None = None
    ) -> str:
        """`wanted` on the trace's experiment, which is returned; `answers` (`trace_experiments`) holds the store's
        answer when it was asked up front."""
        if answers is None:
            experiment_id = await self._trace_experiment(request, trace_id)
        else:
            experiment_id = answered(answers, trace_id)
        return await self._require_found(request, "trace", trace_id, experiment_id, wanted)

    async def require_traces(self, request: Request, trace_ids: list[str], wanted: str) -> None:
        """`wanted` on each trace's experiment. The store is asked of all of them together, then each is judged in
        order: the refusal is the one asking one after another gave (the first trace refused, or the first whose
        read failed)."""
        answers = await self.trace_experiments(request, trace_ids)
        for trace_id in trace_ids:
            await self.require_trace(request, trace_id, wanted, answers)

    async def trace_experiments(
        self, request: Request, trace_ids: Iterable[str]
    ) -> dict[str, str | BaseException | None]:
        """The experiment of each distinct trace id, asked of the store at most TRACE_LOOKUPS_AT_ONCE at a time;
        what a read raised is kept in its place (`answered` raises it), so no answer decides before its turn."""
        distinct = list(dict.fromkeys(trace_ids))
        if len(distinct) > MAX_TRACES_PER_CALL:
            raise InvalidParameter(
                f"This call names {len(distinct):,} traces; one call may name at most {MAX_TRACES_PER_CALL:,}. "
                "Split it into several calls."
            )
        bound = asyncio.Semaphore(TRACE_LOOKUPS_AT_ONCE)

        async def one(trace_id: str) -> str | None:
            async with bound:
                return await self._trace_experiment(request, trace_id)

        found = await asyncio.gather(*(one(trace_id) for trace_id in distinct), return_exceptions=True)
        return dict(zip(distinct, found, strict=True))

    async def _trace_experiment(self, request: Request, trace_id: str) -> str | None:
        """The experiment of a trace, read from its store at every call; the answer is kept for the call's checks
        after the guard (`Request.traces`), which read it there instead of asking the store again."""
        answer = await self.lookups.trace(request.link, trace_id)
        if answer is not None:
            request.traces[trace_id] = answer
        return trace_experiment(answer)

    async def require_in_experiment(self, request: Request, kind: str, object_id: str, wanted: str) -> None:
        """An issue, label schema or review queue (`kind` of MISSING), through the experiment it belongs to."""
        await self._require_in_experiment(request, kind, object_id, wanted)

    async def _require_in_experiment(self, request: Request, kind: str, object_id: str, wanted: str) -> None:
        """A run, logged model, trace, issue, label schema or review queue is governed by the grants on the
        experiment it belongs to."""
        experiment_id = await self.lookups.experiment_of(request.link, kind, object_id)
        await self._require_found(request, kind, object_id, experiment_id, wanted)

    async def _require_found(
        self, request: Request, kind: str, object_id: str, experiment_id: str | None, wanted: str
    ) -> str:
        """`wanted` on the experiment the store answered for the object (None: it has no such object)."""
        missing = MISSING[kind].format(id=object_id)
        if experiment_id is None:
            raise ResourceNotFound(missing)
        obj = experiment_object(request.link.workspace_id, experiment_id)
        self.authorizer.require(request.principal, request.link.workspace_id, obj, wanted, missing)
        await self._changes_promotions(request, experiment_id, wanted)
        return experiment_id

    async def _changes_promotions(self, request: Request, experiment_id: str, wanted: str) -> None:
        """The promotions experiment is written by promotions (gateway/registry/promotion.py), and through the
        gateway by the workspace's managers alone, whatever else one holds on it or the workspace: a promotion's
        copy is its logged model there, whose files its versions serve. Before, anyone who could edit the
        workspace's experiments (CAN_EDIT on the workspace) wrote there: logged models of their own named and
        tagged for a coming promotion, and files over a copy's."""
        if RANK[wanted] < RANK[Level.CAN_EDIT]:
            return
        principal, workspace_id = request.principal, request.link.workspace_id
        if self.authorizer.allows(principal, workspace_id, workspace_object(workspace_id), Level.CAN_MANAGE):
            return
        if await self.lookups.promotions_experiment(request.link, experiment_id):
            raise PermissionDenied(
                f"The experiment '{PROMOTIONS_EXPERIMENT}' holds the copies promotions made; only promotions and "
                f"the managers of workspace '{request.link.name}' change it or what is in it."
            )

    def require_files(self, request: Request, found: Iterable[ProtectedFiles]) -> None:
        """An artifact write that would change the files of protected model versions (`found`) needs, on each
        version's registered model, the level a change of the version needs: 403 naming the model and version.

        A version's files stay in its source run's or logged model's artifact folder; without this, anyone who may
        edit the experiment replaced what Production serves, bypassing the registry's levels and its workflow."""
        principal, workspace_id = request.principal, request.link.workspace_id
        for files in found:
            obj = model_object(workspace_id, files.model_id)
            if not self.authorizer.allows(principal, workspace_id, obj, files.level):
                raise PermissionDenied(
                    f"Version {files.version} of registered model '{files.name}' {files.why}, and its files lie "
                    f"here: writing or deleting them needs {files.level} on the registered model."
                )

    async def require_model(self, request: Request, name: str, wanted: str) -> None:
        """A registered model, by name, through the gateway's immutable id of it."""
        missing = f"Registered Model with name={name} not found"
        model_id = await self.ownership.model_id(request.link, name, adopt=True)
        if model_id is None:
            raise ResourceNotFound(missing)
        obj = model_object(request.link.workspace_id, model_id)
        self.authorizer.require(request.principal, request.link.workspace_id, obj, wanted, missing)


def answered(answers: TraceAnswers, trace_id: str) -> str | None:
    """The store's answer for a trace asked up front; what asking raised is raised now, at the trace's turn."""
    answer = answers[trace_id]
    if isinstance(answer, BaseException):
        raise answer
    return answer
