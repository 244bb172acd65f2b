"""What the guard asks of a store to judge a call (is this the promotions experiment, what stage is this version in):
an answer that cannot tell refuses the call, never lets it through as a "no"."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from gateway.authz.decide import Authorizer
from gateway.authz.live import LivePolicy
from gateway.core.errors import ResourceNotFound, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.federation.guard import Guard
from gateway.federation.guard.checks import TRACE_LOOKUPS_AT_ONCE
from gateway.federation.guard.lookups import PROMOTIONS_SECONDS, StoreLookups
from tests.unit.test_guard_rules import EDITOR, POLICY, Call, FakeJobs, FakeRecords, decide, judge

LINK = WorkspaceLink(
    name="team-a", workspace_id=1, mode="workspace", store="a", configured_store="a", upstream_workspace=None
)


def store_answering(status: int, body: bytes) -> StoreLookups:
    """Lookups over a store that answers every read with `status` and `body` (what a store or a proxy in front of
    it can send)."""

    async def fetch(link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        return status, body

    async def no_run(run_id: str, workspace: str) -> str | None:
        return None

    return StoreLookups(fetch, no_run)


@pytest.mark.parametrize(
    ("name", "found"),
    [("fedgate-promotions", True), (" Fedgate-Promotions", True), ("fedgate-promotions-2", False), ("x", False)],
)
async def test_the_stores_name_of_the_experiment_decides(name: str, found: bool) -> None:
    body = b'{"experiment": {"experiment_id": "7", "name": "%s"}}' % name.encode()
    assert await store_answering(200, body).promotions_experiment(LINK, "7") is found


@pytest.mark.parametrize("status", [400, 404])
async def test_an_experiment_the_store_refuses_is_not_the_promotions_experiment(status: int) -> None:
    """MLflow's refusal of the read (no such experiment) refuses the write too: nothing to protect."""
    body = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No Experiment with id=7 exists"}'
    assert await store_answering(status, body).promotions_experiment(LINK, "7") is False


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'),
        (503, b"<html>Service Unavailable</html>"),
        (200, b"<html>Sign in</html>"),
        (200, b"[]"),
        (302, b""),
    ],
)
async def test_an_answer_that_cannot_tell_refuses_the_write_rather_than_letting_it_through(
    status: int, body: bytes
) -> None:
    """Before, any answer but 200 counted as "not the promotions experiment" (a store's 500 let a write into it
    unjudged) or as no stage (a Production version's transition judged as a stageless one's), and a 200 that
    was not JSON failed the call with a 500."""
    with pytest.raises(StoreUnavailable):
        await store_answering(status, body).promotions_experiment(LINK, "7")
    with pytest.raises(StoreUnavailable):
        await store_answering(status, body).stage_of(LINK, "model", "1")


async def test_a_versions_stage_is_the_stores() -> None:
    body = b'{"model_version": {"name": "model", "version": "1", "current_stage": "Production"}}'
    assert await store_answering(200, body).stage_of(LINK, "model", "1") == "Production"
    missing = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such version"}'
    assert await store_answering(404, missing).stage_of(LINK, "model", "1") == ""


async def test_a_page_answered_200_for_an_objects_experiment_is_no_answer() -> None:
    """A proxy's sign-in page answered 200 to the read of a run's experiment failed the call with a 500."""
    with pytest.raises(StoreUnavailable):
        await store_answering(200, b"<html>Sign in</html>").experiment_of(LINK, "run", "a" * 32)
    found = b'{"run": {"info": {"experiment_id": "7"}}}'
    assert await store_answering(200, found).experiment_of(LINK, "run", "a" * 32) == "7"
    missing = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}'
    assert await store_answering(404, missing).experiment_of(LINK, "run", "b" * 32) is None


class RenamedStore:
    """A store whose experiment 7 is named `name`, which a test changes (a rename through another replica, say)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reads = 0

    async def fetch(self, link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        self.reads += 1
        return 200, b'{"experiment": {"experiment_id": "7", "name": "%s"}}' % self.name.encode()


async def no_run_directory(run_id: str, workspace: str) -> str | None:
    return None


async def test_a_rename_to_or_from_the_promotions_name_is_seen_once_the_answer_is_due() -> None:
    """The answer was kept until the process ended: after the promotions experiment was renamed away every write to
    it by a workspace editor stayed refused, and an experiment renamed to the name stayed writable."""
    store, now = RenamedStore("fedgate-promotions"), [100.0]
    lookups = StoreLookups(store.fetch, no_run_directory, clock=lambda: now[0])
    assert await lookups.promotions_experiment(LINK, "7") is True
    store.name = "old-promotions"
    now[0] += PROMOTIONS_SECONDS - 1
    assert await lookups.promotions_experiment(LINK, "7") is True  # kept: one read of the store so far
    assert store.reads == 1
    now[0] += 1
    assert await lookups.promotions_experiment(LINK, "7") is False
    store.name = "FEDGATE-PROMOTIONS"
    now[0] += PROMOTIONS_SECONDS
    assert await lookups.promotions_experiment(LINK, "7") is True
    assert store.reads == 3


async def test_a_rename_through_this_replica_is_asked_again_at_once() -> None:
    store = RenamedStore("fedgate-promotions")
    lookups = StoreLookups(store.fetch, no_run_directory, clock=lambda: 0.0)
    assert await lookups.promotions_experiment(LINK, "7") is True
    store.name = "old-promotions"
    other = WorkspaceLink(
        name="team-b", workspace_id=2, mode="workspace", store="b", configured_store="b", upstream_workspace=None
    )
    lookups.forget_experiment(other, "7")  # experiment 7 of another workspace: this one's answer is kept
    assert await lookups.promotions_experiment(LINK, "7") is True
    lookups.forget_experiment(LINK, "7")
    assert await lookups.promotions_experiment(LINK, "7") is False


class MovingStore:
    """A store whose trace `tr-1` (and run, logged model) lie in `experiment`, which a test changes: the trace deleted
    and its id given to a new trace elsewhere, or moved by a v3 start naming it."""

    def __init__(self) -> None:
        self.experiment = "7"
        self.reads = 0

    async def fetch(self, link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        self.reads += 1
        e = self.experiment.encode()
        if "/traces/" in path:
            location = b'{"mlflow_experiment": {"experiment_id": "%s"}}' % e
            return 200, b'{"trace": {"trace_info": {"trace_location": %s}}}' % location
        if "/logged-models/" in path:
            return 200, b'{"model": {"info": {"experiment_id": "%s"}}}' % e
        return 200, b'{"run": {"info": {"experiment_id": "%s"}}}' % e


async def test_a_traces_experiment_is_the_stores_at_each_call() -> None:
    """A trace's id is the client's and a v3 start moves a trace: the first answer was kept, and whoever could read
    the id's first experiment read (and moved) the trace that had the id later, in an experiment hidden from them."""
    store = MovingStore()
    lookups = StoreLookups(store.fetch, no_run_directory)
    assert await lookups.experiment_of(LINK, "trace", "tr-1") == "7"
    store.experiment = "8"
    assert await lookups.experiment_of(LINK, "trace", "tr-1") == "8"
    # Ids the store makes up and never moves are asked once.
    assert await lookups.experiment_of(LINK, "run", "a" * 32) == "8"
    assert await lookups.experiment_of(LINK, "logged_model", "m-1") == "8"
    store.experiment, reads = "9", store.reads
    assert await lookups.experiment_of(LINK, "run", "a" * 32) == "8"
    assert await lookups.experiment_of(LINK, "logged_model", "m-1") == "8"
    assert store.reads == reads


class TracesStore:
    """A store of traces (`tr-<n>` and `ok-*` in experiment 1, `theirs-*` in experiment 3, `other-*` in 2, any other id
    missing; `broken-*` answered with a proxy's page) that counts its reads and how many run at once."""

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()
        self.running = 0
        self.most = 0

    async def fetch(self, link: WorkspaceLink, path: str, query: str) -> tuple[int, bytes]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            for _ in range(3):  # a read waits on the network: others may start meanwhile
                await asyncio.sleep(0)
            if path == "/api/2.0/mlflow/experiments/get":
                return 200, b'{"experiment": {"experiment_id": "1", "name": "mine"}}'
            trace_id = path.rsplit("/", 1)[-1]
            self.reads[trace_id] += 1
            experiment = next((e for p, e in EXPERIMENT_OF.items() if trace_id.startswith(p)), None)
            if trace_id.startswith("broken-"):
                return 200, b"<html>a proxy's page</html>"
            if experiment is None:
                return 404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}'
            location = b'{"mlflow_experiment": {"experiment_id": "%s"}}' % experiment.encode()
            return 200, b'{"trace": {"trace_info": {"trace_location": %s}}}' % location
        finally:
            self.running -= 1


EXPERIMENT_OF = {"tr-": "1", "ok-": "1", "theirs-": "3", "other-": "2"}


def guard_over(store: TracesStore) -> Guard:
    """The real guard, authorizer and lookups, over `store`: the editor of experiment 1 (a reader of 2) calls."""
    policy = LivePolicy(None, views=None)  # type: ignore[arg-type]  # never reloads: the snapshot is set here
    policy.snapshot = POLICY

    async def undo(link: WorkspaceLink, kind: str, object_id: str) -> None:
        pass

    return Guard(Authorizer(policy), StoreLookups(store.fetch, no_run_directory), FakeRecords(), undo, FakeJobs())


# Calls naming several traces, one for each way the guard reads them: the route's own ids (batch get), the ids below
# the body's top level (deletion) and a job's parameters (a scorer run on traces).
MANY_TRACES: dict[str, Callable[[list[str]], Call]] = {
    "batch get": lambda ids: Call("GET /mlflow/traces/batchGet", 3, query="&".join(f"trace_ids={t}" for t in ids)),
    "deletion": lambda ids: Call(
        "POST /mlflow/traces/delete-traces", 3, body={"experiment_id": "1", "request_ids": ids}
    ),
    "scorer job": lambda ids: Call(
        "POST /mlflow/scorer/invoke", 3, body={"experiment_id": "1", "serialized_scorer": judge(), "trace_ids": ids}
    ),
}


@pytest.mark.parametrize("call", MANY_TRACES.values(), ids=MANY_TRACES.keys())
async def test_the_traces_of_a_call_are_asked_together_each_once(call: Callable[[list[str]], Call]) -> None:
    """A trace's experiment is asked at every call (above): one read per trace id, one after another, made a call
    naming 100 traces take 100 round trips. They are asked together, a few at a time, each id once."""
    ids = [f"tr-{n}" for n in range(20)]
    store = TracesStore()
    await decide(guard_over(store), EDITOR, call(ids + ids[::-1]))
    assert store.reads == dict.fromkeys(ids, 1)
    assert 1 < store.most <= TRACE_LOOKUPS_AT_ONCE


@pytest.mark.parametrize("call", MANY_TRACES.values(), ids=MANY_TRACES.keys())
async def test_traces_asked_together_are_judged_in_order(call: Callable[[list[str]], Call]) -> None:
    """Asked together, a call's traces are still judged in the order it names them: the refusal is the one asking one
    after another gave, whichever answer came first."""
    store = TracesStore()
    guard = guard_over(store)
    named = ["ok-1", "ok-2", "gone-1", "theirs-1", "broken-1", "gone-2", "ok-3"]
    with pytest.raises(ResourceNotFound, match=r"^Trace with ID gone-1 is not found\.$"):
        await decide(guard, EDITOR, call(named))
    assert set(store.reads) == set(named) and store.most > 1  # all asked, together
    with pytest.raises(ResourceNotFound, match=r"^Trace with ID theirs-1 is not found\.$"):
        await decide(guard, EDITOR, call(["ok-1", "theirs-1", "broken-1", "gone-1"]))
    with pytest.raises(StoreUnavailable):
        await decide(guard, EDITOR, call(["ok-1", "broken-1", "theirs-1", "gone-1"]))
