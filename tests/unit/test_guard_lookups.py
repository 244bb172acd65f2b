"""What the guard asks of a store to judge a call (is this the promotions experiment, what stage is this version in):
an answer that cannot tell refuses the call, never lets it through as a "no"."""

from __future__ import annotations

import pytest

from gateway.core.errors import StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.federation.guard.lookups import PROMOTIONS_SECONDS, StoreLookups

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
