"""The request pipeline without servers: which workspace a call resolves to, and which hooks hear of it.

The forwarder runs over in-test stand-ins of its ports: a `Store` that records what it was sent, a run
directory as a dict, a guard that allows everything (or answers a given `Plan`), and hooks that note
what they were asked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from gateway.core.errors import GatewayError, InvalidParameter, InvalidState, ResourceNotFound, StoreUnavailable
from gateway.core.links import LinkTable, Namespace, WorkspaceLink
from gateway.core.ports import StoreResponse, StoreUnreachable
from gateway.core.principal import Principal
from gateway.core.route_table import (
    ARTIFACT_UPLOAD,
    EXPERIMENTS_CREATE,
    EXPERIMENTS_GET,
    MODEL_VERSIONS_TRANSITION_STAGE,
    RUNS_CREATE,
    RUNS_GET,
    RUNS_LOG_BATCH,
    RUNS_OUTPUTS,
    UI_UPLOAD_ARTIFACT,
    RouteSpec,
    declared,
)
from gateway.core.workspace_headers import WorkspaceHeaders
from gateway.dual.capture import OutboxCapture, outbox_entry
from gateway.dual.failover import SERVED_BY, FailoverSender
from gateway.federation.bookkeeping import Bookkeeping, RunRoutes, started_run_of
from gateway.federation.call import ACCOUNT_SCOPE, ForwardCall, ForwardResult
from gateway.federation.canonical import CanonicalBody
from gateway.federation.guard import Plan
from gateway.federation.hooks import AcceptedWrite, Outgoing, PendingCall, Sent
from gateway.federation.intents import intent_detail
from gateway.federation.routes import _serve
from gateway.federation.service import Forwarder, StoreSender, scan_headers
from gateway.index.write_through import IndexWriteThrough
from gateway.index.writer import IndexWriter

RUN_A = "a" * 32
RUN_B = "b" * 32
RUN_UNKNOWN = "c" * 32
USER = Principal("alice", "user", id=7)
DOWNLOAD = declared("GET /mlflow-artifacts/artifacts/{artifact_path:path}")


def link(name: str, workspace_id: int, *, store: str = "s", mirror: str | None = None, **kw: Any) -> WorkspaceLink:
    return WorkspaceLink(name, workspace_id, "dual" if mirror else "workspace", store, store, name, mirror=mirror, **kw)


DEFAULT = link("default", 1000)
TEAM_A = link("team-a", 1001)
TEAM_B = link("team-b", 1002)
DUAL = link("team-d", 1004, mirror="central")
# Two links sharing one store namespace: both are withheld (409) until one is relinked.
SHARED = Namespace("http://shared", None)
CLASH_1 = link("clash-1", 1005, namespaces=(SHARED,))
CLASH_2 = link("clash-2", 1006, namespaces=(SHARED,))


# -- stand-ins of the ports ----------------------------------------------------------------------------


@dataclass
class Answer:
    """A store's answer; `content_length` None is an answer of unknown size (streamed unless needed)."""

    status: int = 200
    body: bytes = b"{}"
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    content_length: int | None = None
    read_whole: bool = False

    async def read(self) -> bytes:
        self.read_whole = True
        return self.body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield self.body

    def release(self) -> None:
        return None


@dataclass
class Sentinel:
    method: str
    path: str
    query: str
    workspace: str | None
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


class RecordingStore:
    """The core `Store` port: answers `answer` and remembers every request."""

    name = "s"
    workspaces_enabled = True

    def __init__(self, answer: Answer | None = None, *, down: bool = False) -> None:
        self.answer = answer or Answer()
        self.down = down
        self.sent: list[Sentinel] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        body: Any = None,
        workspace: str | None = None,
        idempotent: bool = False,
    ) -> StoreResponse:
        if self.down:
            raise StoreUnreachable("connection refused")
        self.sent.append(Sentinel(method, path, query, workspace, body, list(headers)))
        return self.answer

    async def close(self) -> None:
        return None


class Runs:
    """The run directory as a dict: run id → workspace."""

    def __init__(self, homes: Mapping[str, str]) -> None:
        self.homes = dict(homes)
        self.asked: list[str] = []

    async def workspace_of(self, run_id: str) -> str | None:
        self.asked.append(run_id)
        return self.homes.get(run_id)


class AllowAll:
    """A guard that refuses nothing; `plan` is what it answers. `hidden`: workspaces the caller may not see."""

    def __init__(self, plan: Plan | None = None, hidden: frozenset[str] = frozenset()) -> None:
        self.plan = plan or Plan()
        self.hidden = hidden
        self.checked: list[tuple[str, str]] = []
        self.found: list[bytes] = []
        self.catch_ups = 0

    async def check(
        self,
        spec: RouteSpec,
        principal: Principal,
        link: WorkspaceLink,
        body: CanonicalBody | None,
        query: str,
        artifact_path: str | None,
        path_params: dict[str, Any],
        headers: list[tuple[str, str]],
        traces: dict[str, dict[str, Any]] | None = None,
    ) -> Plan:
        self.checked.append((spec.name, link.name))
        return self.plan

    async def check_found_experiment(self, principal: Principal, link: WorkspaceLink, answer: bytes) -> None:
        self.found.append(answer)

    async def missing_after_failure(
        self, spec: RouteSpec, link: WorkspaceLink, path_params: Mapping[str, Any]
    ) -> GatewayError | None:
        return None

    def enters(self, principal: Principal, link: WorkspaceLink) -> bool:
        return link.name not in self.hidden

    async def caught_up(self, principal: Principal) -> Principal | None:
        self.catch_ups += 1
        return None  # its policy is the stored one


class Behind(AllowAll):
    """A guard whose policy has not heard yet of the grants that let the caller see `hidden` (made through
    another replica): catching up with the stored policy brings them."""

    async def caught_up(self, principal: Principal) -> Principal | None:
        self.catch_ups += 1
        self.hidden = frozenset()
        return principal


class NotingHook:
    """An after-write hook for `routes` (all routes when None) that notes what it was asked."""

    def __init__(self, name: str, routes: set[RouteSpec] | None = None, *, answer: bool = False) -> None:
        self.name = name
        self.routes = routes
        self.answer = answer
        self.asked_answer: list[str] = []
        self.recorded: list[AcceptedWrite] = []

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return self.routes is None or spec in self.routes

    def needs_answer(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        self.asked_answer.append(spec.name)
        return self.answer

    async def record(self, write: AcceptedWrite) -> None:
        self.recorded.append(write)


def links(*served: WorkspaceLink) -> LinkTable:
    table = LinkTable()
    table.replace(served)
    return table


def forwarder(
    *served: WorkspaceLink,
    store: RecordingStore | None = None,
    runs: Mapping[str, str] | None = None,
    guard: AllowAll | None = None,
    hooks: Sequence[Any] = (),
) -> Forwarder:
    stores = {"s": store or RecordingStore(), "central": RecordingStore()}
    return Forwarder(
        links(*served),
        Runs(runs or {}),
        guard or AllowAll(),
        StoreSender(stores),
        hooks,
    )


def call(
    spec: RouteSpec,
    *,
    header: str | None = None,
    workspace_id: int | None = None,
    body: dict[str, Any] | None = None,
    query: str = "",
    path_params: Mapping[str, Any] | None = None,
) -> ForwardCall:
    return ForwardCall(
        spec=spec,
        principal=USER,
        workspace=WorkspaceHeaders(name=header, workspace_id=workspace_id),
        path_params=path_params or {},
        query=query,
        headers=[("content-type", "application/json")],
        body=json.dumps(body).encode() if body is not None else None,
        request_id="req-1",
    )


def log_batch(run_id: str, **kw: Any) -> ForwardCall:
    return call(RUNS_LOG_BATCH, body={"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 1}]}, **kw)


def artifact(path: str, *, header: str | None = None) -> ForwardCall:
    return call(DOWNLOAD, header=header, path_params={"artifact_path": path})


# -- resolution: header → artifact path → run id → default ---------------------------------------------


async def test_the_header_names_the_workspace_even_when_the_run_lives_elsewhere() -> None:
    store = RecordingStore()
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B, store=store, runs={RUN_A: "team-a"})
    result = await fw.forward(log_batch(RUN_A, header="team-b"))
    assert result.workspace == "team-b"
    assert [s.workspace for s in store.sent] == ["team-b"]
    assert fw.runs.asked == []  # type: ignore[attr-defined]


async def test_an_artifact_path_names_the_workspace_before_the_run_does() -> None:
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B, runs={RUN_A: "team-a"})
    result = await fw.forward(artifact(f"workspaces/team-b/1/{RUN_A}/artifacts/x.txt"))
    assert result.workspace == "team-b"
    # The header wins over the run a path names (a path naming another workspace is refused).
    assert (await fw.forward(artifact(f"1/{RUN_A}/artifacts/x", header="team-b"))).workspace == "team-b"
    with pytest.raises(InvalidParameter, match="does not match the active workspace"):
        await fw.forward(artifact(f"workspaces/team-b/1/{RUN_A}/artifacts/x", header="team-a"))


async def test_without_header_or_path_the_run_names_the_workspace() -> None:
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B, runs={RUN_A: "team-a", RUN_B: "team-b"})
    assert (await fw.forward(log_batch(RUN_A))).workspace == "team-a"
    assert (await fw.forward(call(RUNS_GET, query=f"run_id={RUN_B}"))).workspace == "team-b"
    assert (await fw.forward(artifact(f"1/{RUN_B}/artifacts/model.pkl"))).workspace == "team-b"


async def test_an_unknown_run_or_no_run_falls_back_to_default() -> None:
    fw = forwarder(DEFAULT, TEAM_A, runs={RUN_A: "team-a"})
    assert (await fw.forward(log_batch(RUN_UNKNOWN))).workspace == "default"
    assert (await fw.forward(call(EXPERIMENTS_GET, query="experiment_id=1"))).workspace == "default"
    # Something that is no run id is never looked up.
    await fw.forward(call(RUNS_GET, query="run_id=not-a-run"))
    assert fw.runs.asked == [RUN_UNKNOWN]  # type: ignore[attr-defined]


async def test_a_run_of_a_workspace_no_longer_linked_falls_back_to_default() -> None:
    fw = forwarder(DEFAULT, TEAM_A, runs={RUN_B: "team-b"})
    assert (await fw.forward(log_batch(RUN_B))).workspace == "default"


async def test_without_a_default_workspace_the_call_must_name_one() -> None:
    fw = forwarder(TEAM_A)
    with pytest.raises(InvalidParameter, match="No workspace selected"):
        await fw.forward(call(EXPERIMENTS_GET, query="experiment_id=1"))


async def test_withheld_links_answer_409_however_they_are_named() -> None:
    fw = forwarder(DEFAULT, CLASH_1, CLASH_2, runs={RUN_A: "clash-1"})
    with pytest.raises(InvalidState):
        await fw.forward(log_batch(RUN_B, header="clash-2"))
    with pytest.raises(InvalidState):
        await fw.forward(artifact(f"workspaces/clash-1/1/{RUN_B}/artifacts/x"))
    with pytest.raises(InvalidState):
        await fw.forward(log_batch(RUN_A))


@pytest.mark.parametrize("name", ["Team_A", "team a", "../team-a", "-team", "%2e%2e"])
async def test_invalid_workspace_names_are_refused(name: str) -> None:
    fw = forwarder(DEFAULT, TEAM_A)
    with pytest.raises(InvalidParameter, match="Invalid workspace name"):
        await fw.forward(log_batch(RUN_A, header=name))


async def test_an_unknown_workspace_is_not_found() -> None:
    with pytest.raises(ResourceNotFound, match="Workspace 'team-z' not found"):
        await forwarder(DEFAULT, TEAM_A).forward(log_batch(RUN_A, header="team-z"))


async def test_the_account_scope_is_no_workspace_the_forwarder_sends_to() -> None:
    fw = forwarder(DEFAULT, TEAM_A)
    with pytest.raises(InvalidParameter, match="'account' scope is read-only"):
        await fw.forward(artifact(f"workspaces/account/1/{RUN_A}/artifacts/x"))
    with pytest.raises(InvalidParameter, match="'account' scope is read-only"):
        await fw.forward(log_batch(RUN_A, header=ACCOUNT_SCOPE))


async def test_the_account_scope_is_chosen_at_the_edge() -> None:
    served: list[ForwardCall] = []

    class Account:
        async def serve(self, call: ForwardCall) -> ForwardResult:
            served.append(call)
            return ForwardResult(200, {}, ACCOUNT_SCOPE, body=b"{}")

    store = RecordingStore()
    fw = forwarder(DEFAULT, TEAM_A, store=store)
    result = await _serve(call(RUNS_GET, header=ACCOUNT_SCOPE, query=f"run_id={RUN_A}"), fw, {ACCOUNT_SCOPE: Account()})
    assert result.workspace == ACCOUNT_SCOPE and len(served) == 1 and store.sent == []
    # Other names go to the forwarder; without an account scope, `account` is refused at the edge.
    assert (await _serve(log_batch(RUN_A, header="team-a"), fw, {ACCOUNT_SCOPE: Account()})).workspace == "team-a"
    with pytest.raises(InvalidParameter, match="does not serve the 'account' scope"):
        await _serve(log_batch(RUN_A, header=ACCOUNT_SCOPE), fw, {})


async def test_the_workspace_id_header_names_the_workspace_and_neither_header_reaches_the_store() -> None:
    store = RecordingStore()
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B, store=store, runs={RUN_A: "team-a"})
    raw = [
        (b"x-databricks-workspace-id", b"1002"),
        (b"content-type", b"application/json"),
        (b"x-mlflow-workspace", b"team-b"),
        (b"user-agent", b"databricks-sdk-py/0.16"),
    ]
    workspace, headers = scan_headers(raw)
    assert workspace == WorkspaceHeaders(name="team-b", workspace_id=1002)
    sent = log_batch(RUN_A)
    sent.workspace, sent.headers = workspace, headers
    assert (await _serve(sent, fw, {})).workspace == "team-b"
    # By id alone, too; the run's own workspace does not matter once a header names one.
    assert (await fw.forward(log_batch(RUN_A, workspace_id=1002))).workspace == "team-b"
    assert [s.workspace for s in store.sent] == ["team-b", "team-b"]
    forwarded = {name for s in store.sent for name, _ in s.headers}
    assert forwarded.isdisjoint({"x-databricks-workspace-id", "x-mlflow-workspace"})
    assert "user-agent" in forwarded


async def test_a_traceparent_never_reaches_the_store() -> None:
    """The store's AI gateway opens a span under the trace a `traceparent` names, and spans are filed under that
    trace wherever it lives: a caller could name a trace of an experiment it may not see."""
    store = RecordingStore()
    fw = forwarder(DEFAULT, TEAM_A, store=store, runs={RUN_A: "team-a"})
    raw = [
        (b"content-type", b"application/json"),
        (b"traceparent", b"00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"),
        (b"Traceparent", b"00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"),
        (b"tracestate", b"k=v"),
        (b"user-agent", b"mlflow-python-client/3.17.2"),
    ]
    sent = log_batch(RUN_A)
    sent.workspace, sent.headers = scan_headers(raw)
    await fw.forward(sent)
    forwarded = {name.lower() for s in store.sent for name, _ in s.headers}
    assert forwarded.isdisjoint({"traceparent", "tracestate"}) and "user-agent" in forwarded


async def test_a_refusal_stands_only_once_the_policy_is_the_stored_one() -> None:
    """A grant made through another replica moments ago: the refusal of a replica that has not heard of it yet is
    decided again once its policy caught up, and the call goes through (it answered 404 before). A replica that
    is not behind refuses after that one look; an object that does not exist costs none."""
    behind = Behind(hidden=frozenset({"team-b"}))
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B, guard=behind)
    answer = await fw.forward(log_batch(RUN_A, header="team-b"))
    assert answer.status == 200 and behind.catch_ups == 1
    assert [workspace for _, workspace in behind.checked] == ["team-b"]

    up_to_date = AllowAll(hidden=frozenset({"team-b"}))
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B, guard=up_to_date)
    with pytest.raises(ResourceNotFound, match="Workspace 'team-b' not found") as refused:
        await fw.forward(log_batch(RUN_A, header="team-b"))
    assert refused.value.denied and up_to_date.catch_ups == 1
    with pytest.raises(ResourceNotFound, match="Workspace 'nowhere' not found") as missing:
        await fw.forward(log_batch(RUN_A, header="nowhere"))
    assert not missing.value.denied and up_to_date.catch_ups == 1


async def test_an_unknown_id_and_an_id_the_caller_may_not_see_answer_alike() -> None:
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B, guard=AllowAll(hidden=frozenset({"team-b"})))
    with pytest.raises(ResourceNotFound) as unknown:
        await fw.forward(log_batch(RUN_A, workspace_id=9999))
    with pytest.raises(ResourceNotFound) as unseen:
        await fw.forward(log_batch(RUN_A, workspace_id=1002))
    assert unknown.value.message == "Workspace with id 9999 not found"
    assert unseen.value.message == "Workspace with id 1002 not found" and unseen.value.denied
    # Both headers: agreeing is decided only for a workspace the caller sees, so no name is told apart.
    with pytest.raises(ResourceNotFound, match="Workspace with id 1002 not found"):
        await fw.forward(log_batch(RUN_A, header="team-a", workspace_id=1002))
    with pytest.raises(ResourceNotFound, match="Workspace 'team-b' not found"):
        await fw.forward(log_batch(RUN_A, header="team-b"))


async def test_two_headers_naming_different_workspaces_are_refused() -> None:
    fw = forwarder(DEFAULT, TEAM_A, TEAM_B)
    for name in ("team-a", "team-z", "Not A Name"):
        with pytest.raises(InvalidParameter, match="X-Databricks-Workspace-Id names workspace id 1002"):
            await fw.forward(log_batch(RUN_A, header=name, workspace_id=1002))
    assert (await fw.forward(log_batch(RUN_A, header="team-b", workspace_id=1002))).workspace == "team-b"


async def test_an_id_with_the_account_scope_is_refused_at_the_edge() -> None:
    class Account:
        async def serve(self, call: ForwardCall) -> ForwardResult:
            raise AssertionError("the account scope must not serve a call naming a workspace id")

    fw = forwarder(DEFAULT, TEAM_A)
    with pytest.raises(InvalidParameter, match="names the 'account' scope"):
        await _serve(call(RUNS_GET, header=ACCOUNT_SCOPE, workspace_id=1001), fw, {ACCOUNT_SCOPE: Account()})
    with pytest.raises(InvalidParameter):
        await _serve(call(RUNS_GET, header=ACCOUNT_SCOPE, workspace_id=1001), fw, {})


async def test_a_withheld_workspace_answers_409_by_id_too() -> None:
    fw = forwarder(DEFAULT, CLASH_1, CLASH_2)
    with pytest.raises(InvalidState):
        await fw.forward(log_batch(RUN_A, workspace_id=1005))


async def test_a_route_a_feature_serves_is_chosen_at_the_edge_after_the_scopes() -> None:
    """MLflow's transition-stage is served by the registry workflow, which calls the forwarder back itself."""
    served: list[ForwardCall] = []

    class Feature:
        async def serve(self, call: ForwardCall) -> ForwardResult:
            served.append(call)
            return ForwardResult(200, {}, "team-a", body=b"{}")

    store = RecordingStore()
    fw = forwarder(DEFAULT, TEAM_A, store=store)
    stage = call(MODEL_VERSIONS_TRANSITION_STAGE, header="team-a", body={"name": "m", "version": "1", "stage": "None"})
    assert (await _serve(stage, fw, {}, Feature())).workspace == "team-a"
    assert served == [stage] and store.sent == []
    # Without the feature the route is forwarded as any other; the account scope still refuses it first.
    await _serve(call(MODEL_VERSIONS_TRANSITION_STAGE, header="team-a", body={"name": "m"}), fw, {})
    assert len(store.sent) == 1
    with pytest.raises(InvalidParameter, match="does not serve the 'account' scope"):
        await _serve(call(MODEL_VERSIONS_TRANSITION_STAGE, header=ACCOUNT_SCOPE, body={"name": "m"}), fw, {}, Feature())
    assert len(served) == 1


# -- after-write hooks ----------------------------------------------------------------------------------


async def test_only_wanting_hooks_are_asked_and_told() -> None:
    runs_only = NotingHook("runs", {RUNS_CREATE}, answer=True)
    batches = NotingHook("batches", {RUNS_LOG_BATCH})
    fw = forwarder(DEFAULT, TEAM_A, hooks=[runs_only, batches])
    await fw.forward(log_batch(RUN_A, header="team-a"))
    assert runs_only.asked_answer == [] and runs_only.recorded == []
    assert batches.asked_answer == [RUNS_LOG_BATCH.name]
    (write,) = batches.recorded
    assert (write.spec, write.link, write.principal) == (RUNS_LOG_BATCH, TEAM_A, "alice")
    assert msgspec.json.decode(write.request)["run_id"] == RUN_A
    assert write.ids is not None and write.ids.run_id == RUN_A


async def test_the_answer_is_read_whole_only_when_a_wanting_hook_needs_it() -> None:
    # An answer of unknown size is streamed to the client unless something needs it.
    store = RecordingStore(Answer(body=b'{"run": {"info": {"run_id": "r"}}}'))
    nobody = NotingHook("nobody", {RUNS_CREATE})
    fw = forwarder(DEFAULT, TEAM_A, store=store, hooks=[nobody])
    streamed = await fw.forward(call(RUNS_CREATE, header="team-a", body={"experiment_id": "1"}))
    assert streamed.stream is not None and not store.answer.read_whole
    assert nobody.recorded[0].response == b""

    store = RecordingStore(Answer(body=b'{"run": {"info": {"run_id": "r"}}}'))
    needs = NotingHook("needs", {RUNS_CREATE}, answer=True)
    not_wanting = NotingHook("other", {RUNS_LOG_BATCH}, answer=True)
    fw = forwarder(DEFAULT, TEAM_A, store=store, hooks=[not_wanting, needs])
    read = await fw.forward(call(RUNS_CREATE, header="team-a", body={"experiment_id": "1"}))
    assert read.stream is None and read.body == store.answer.body
    assert needs.recorded[0].response == store.answer.body
    assert not_wanting.asked_answer == []


async def test_a_refused_write_reaches_no_hook_and_is_not_read_for_one() -> None:
    store = RecordingStore(Answer(status=400, body=b'{"error_code": "INVALID_PARAMETER_VALUE"}'))
    hook = NotingHook("h", answer=True)
    result = await forwarder(DEFAULT, TEAM_A, store=store, hooks=[hook]).forward(log_batch(RUN_A, header="team-a"))
    assert result.status == 400 and result.stream is not None
    assert hook.recorded == []


async def test_an_answer_of_the_guard_reaches_neither_store_nor_hooks() -> None:
    store = RecordingStore()
    hook = NotingHook("h")
    fw = forwarder(DEFAULT, TEAM_A, store=store, guard=AllowAll(Plan(answer=b"{}")), hooks=[hook])
    result = await fw.forward(log_batch(RUN_A, header="team-a"))
    assert result.body == b"{}" and store.sent == [] and hook.recorded == []


async def test_hooks_record_concurrently_and_a_failing_one_fails_the_call() -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    class Waiting(NotingHook):
        async def record(self, write: AcceptedWrite) -> None:
            started.append(self.name)
            if len(started) == 2:
                both_started.set()
            await both_started.wait()  # never set if the hooks ran one after the other
            await super().record(write)

    first, second = Waiting("first"), Waiting("second")
    fw = forwarder(DEFAULT, TEAM_A, hooks=[first, second])
    await asyncio.wait_for(fw.forward(log_batch(RUN_A, header="team-a")), timeout=5)
    assert len(first.recorded) == len(second.recorded) == 1

    class Failing(NotingHook):
        async def record(self, write: AcceptedWrite) -> None:
            raise StoreUnavailable("could not be queued")

    slow = Waiting("slow")
    started.clear()
    both_started.set()
    with pytest.raises(StoreUnavailable, match="could not be queued"):
        await forwarder(DEFAULT, TEAM_A, hooks=[Failing("f"), slow]).forward(log_batch(RUN_A, header="team-a"))
    await asyncio.sleep(0)
    assert len(slow.recorded) == 1  # the others still finish


# -- before-send checks ---------------------------------------------------------------------------------


class Refusing:
    """A before-send check of the routes that carry run text: notes what it saw, refuses what holds `word`."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[PendingCall] = []

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.run_text

    async def check(self, call: PendingCall) -> None:
        self.seen.append(call)
        if self.word.encode() in call.body.encoded:
            raise InvalidParameter("refused before sending")


async def test_a_before_send_check_sees_the_canonical_body_and_its_refusal_sends_nothing() -> None:
    store = RecordingStore()
    hook = NotingHook("h")
    check = Refusing("hunter2")
    fw = Forwarder(links(DEFAULT, TEAM_A), Runs({}), AllowAll(), StoreSender({"s": store}), [hook], before_send=[check])
    # An escaped key and odd spacing: the check reads the document the store would get, re-encoded.
    raw = b'{"run_\u0069d": "%s",  "params": [{"key": "k", "value": "hunter2"}]}' % RUN_A.encode()
    team_a = WorkspaceHeaders(name="team-a")
    batch = ForwardCall(RUNS_LOG_BATCH, USER, team_a, {}, "", [("content-type", "application/json")], raw, "req-9")
    with pytest.raises(InvalidParameter, match="refused before sending"):
        await fw.forward(batch)
    assert store.sent == [] and hook.recorded == []
    (seen,) = check.seen
    assert (seen.spec, seen.link, seen.principal, seen.request_id) == (RUNS_LOG_BATCH, TEAM_A, USER, "req-9")
    assert seen.body.ids.run_id == RUN_A and seen.body.document["params"] == [{"key": "k", "value": "hunter2"}]

    # A clean write is sent as it was checked; routes the check does not want are not shown to it.
    await fw.forward(log_batch(RUN_A, header="team-a"))
    assert len(store.sent) == 1 and store.sent[0].body == check.seen[-1].body.encoded
    await fw.forward(call(RUNS_CREATE, header="team-a", body={"experiment_id": "1", "run_name": "hunter2"}))
    assert len(check.seen) == 2 and len(store.sent) == 2


class Holding:
    """A before-send check that holds a lock until the send step is over; notes when it was let go."""

    def __init__(self, store: RecordingStore, events: list[str], name: str, refuse: bool = False) -> None:
        self.store, self.events, self.name, self.refuse = store, events, name, refuse

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.run_tags

    async def check(self, call: PendingCall) -> Holding | None:
        if self.refuse:
            raise InvalidParameter(f"{self.name} refuses")
        self.events.append(f"{self.name} held")
        return self

    async def release(self) -> None:
        self.events.append(f"{self.name} released after {len(self.store.sent)} sent")


async def test_what_a_before_send_check_holds_is_let_go_once_the_store_answered_or_failed() -> None:
    events: list[str] = []
    store = RecordingStore()
    first, second = Holding(store, events, "first"), Holding(store, events, "second")
    fw = Forwarder(links(DEFAULT, TEAM_A), Runs({}), AllowAll(), StoreSender({"s": store}), before_send=[first, second])
    await fw.forward(log_batch(RUN_A, header="team-a"))
    assert events == ["first held", "second held", "second released after 1 sent", "first released after 1 sent"]

    # The store does not answer: released all the same, and the client hears of the failure.
    events.clear()
    store.down = True
    with pytest.raises(StoreUnavailable):
        await fw.forward(log_batch(RUN_A, header="team-a"))
    assert events == ["first held", "second held", "second released after 1 sent", "first released after 1 sent"]

    # A later check refuses: what an earlier one holds is let go, nothing is sent.
    events.clear()
    store.down = False
    refusing = Holding(store, events, "third", refuse=True)
    fw = Forwarder(
        links(DEFAULT, TEAM_A), Runs({}), AllowAll(), StoreSender({"s": store}), before_send=[first, refusing]
    )
    with pytest.raises(InvalidParameter, match="third refuses"):
        await fw.forward(log_batch(RUN_A, header="team-a"))
    assert events == ["first held", "first released after 1 sent"] and len(store.sent) == 1
    # Routes the checks do not want hold nothing.
    events.clear()
    await fw.forward(call(RUNS_CREATE, header="team-a", body={"experiment_id": "1"}))
    assert events == []


async def test_the_features_hooks_want_what_the_route_table_says() -> None:
    async def no_pool(name: str, settings: Mapping[str, str] | None = None, /) -> Any:
        raise AssertionError("no database in this test")

    bookkeeping = Bookkeeping(no_pool)
    outbox = OutboxCapture(bookkeeping)
    index = IndexWriteThrough(IndexWriter(), bookkeeping, locator=None)  # type: ignore[arg-type]
    run_routes = RunRoutes(bookkeeping, runs=None)  # type: ignore[arg-type]
    assert outbox.wants(RUNS_LOG_BATCH, DUAL) and not outbox.wants(RUNS_LOG_BATCH, TEAM_A)
    assert not outbox.wants(RUNS_GET, DUAL)
    assert outbox.needs_answer(RUNS_CREATE, DUAL) and not outbox.needs_answer(RUNS_LOG_BATCH, DUAL)
    assert index.wants(RUNS_LOG_BATCH, TEAM_A) and not index.wants(RUNS_OUTPUTS, TEAM_A)
    assert index.needs_answer(EXPERIMENTS_CREATE, TEAM_A) and not index.needs_answer(RUNS_LOG_BATCH, TEAM_A)
    assert run_routes.wants(RUNS_CREATE, TEAM_A) and not run_routes.wants(RUNS_LOG_BATCH, TEAM_A)


async def test_outbox_entries_keep_the_clients_body_and_are_ordered_by_object() -> None:
    body = b'{"run_id": "' + RUN_A.encode() + b'", "metrics": []}'
    ids = msgspec.json.decode(body, type=_Ids)
    write = AcceptedWrite(RUNS_LOG_BATCH, DUAL, "alice", body, b"", ids, {}, None)  # type: ignore[arg-type]
    entry = outbox_entry(write)
    assert entry is not None
    assert entry.order_key == f"1004/run:{RUN_A}" and entry.route == RUNS_LOG_BATCH.name
    assert entry.payload == b'{"request":' + body + b',"response":{}}'
    upload = AcceptedWrite(ARTIFACT_UPLOAD, DUAL, "alice", b"", b"", None, {}, f"1/{RUN_A}/artifacts/m.pkl")
    uploaded = outbox_entry(upload)
    assert uploaded is not None and msgspec.json.decode(uploaded.payload) == {"path": f"1/{RUN_A}/artifacts/m.pkl"}
    # An artifact of neither a run nor a logged model is nothing the central store keeps.
    assert outbox_entry(AcceptedWrite(ARTIFACT_UPLOAD, DUAL, "alice", b"", b"", None, {}, "1/x/y")) is None


async def test_the_uis_upload_is_queued_by_its_run_with_the_file_path_from_its_query() -> None:
    hook = NotingHook("outbox", {UI_UPLOAD_ARTIFACT})
    fw = forwarder(DUAL, hooks=[hook])
    upload = call(UI_UPLOAD_ARTIFACT, header="team-d", query=f"run_uuid={RUN_A}&path=plots/loss%20curve.png")
    upload.body = b"\x89PNG"
    await fw.forward(upload)
    (write,) = hook.recorded
    assert write.ids is not None and write.ids.run_uuid == RUN_A
    # The write-ahead note names the run too: a crash before the outbox commit is repaired under the run.
    assert intent_detail(write.ids, write.path_params, write.artifact_path) == {"run_uuid": RUN_A, "run_id": RUN_A}
    entry = outbox_entry(write)
    assert entry is not None and entry.order_key == f"1004/run:{RUN_A}" and entry.route == UI_UPLOAD_ARTIFACT.name
    assert msgspec.json.decode(entry.payload) == {"run_id": RUN_A, "path": "plots/loss curve.png"}
    # Something that is no run id names no run: nothing to order the entry by, and nothing is queued.
    other = call(UI_UPLOAD_ARTIFACT, header="team-d", query="run_uuid=not-a-run&path=x.txt")
    other.body = b"x"
    await fw.forward(other)
    assert hook.recorded[1].ids is None and outbox_entry(hook.recorded[1]) is None


class _Ids(msgspec.Struct):
    run_id: str | None = None
    run_uuid: str | None = None
    experiment_id: str | None = None
    name: str | None = None
    new_name: str | None = None


# -- the send step and its failover decorator ------------------------------------------------------------


class CentralCopy:
    """Failover's surface as FailoverSender uses it."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def serves(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return link.mirror is not None and spec.failover

    async def request(
        self, spec: RouteSpec, link: WorkspaceLink, path: str, query: str, body: bytes | None, artifact_path: str | None
    ) -> tuple[StoreResponse, Any]:
        self.asked.append(path)

        async def translate(raw: bytes) -> bytes:
            return raw.replace(b"central-id", b"own-id")

        return Answer(body=b'{"run": {"info": {"run_id": "central-id"}}}'), translate


async def test_failover_answers_reads_of_a_dual_workspace_whose_store_is_down() -> None:
    central = CentralCopy()
    sender = FailoverSender(StoreSender({"s": RecordingStore(down=True)}), central)  # type: ignore[arg-type]
    fw = Forwarder(links(DEFAULT, DUAL, TEAM_A), Runs({}), AllowAll(), sender, ())
    result = await fw.forward(call(RUNS_GET, header="team-d", query=f"run_id={RUN_A}"))
    assert result.headers[SERVED_BY] == "central"
    assert result.body == b'{"run": {"info": {"run_id": "own-id"}}}'  # read whole and translated back
    # Writes, and workspaces that are not dual, still answer 503.
    with pytest.raises(StoreUnavailable):
        await fw.forward(log_batch(RUN_A, header="team-d"))
    with pytest.raises(StoreUnavailable):
        await fw.forward(call(RUNS_GET, header="team-a", query=f"run_id={RUN_A}"))
    assert central.asked == ["/api/2.0/mlflow/runs/get"]


async def test_the_plain_sender_sends_to_the_workspaces_store_in_its_namespace() -> None:
    store = RecordingStore()
    renamed = WorkspaceLink("team-r", 1007, "workspace", "s", "s", "upstream-r")
    sent = await StoreSender({"s": store}).send(
        Outgoing(RUNS_GET, renamed, "/api/2.0/mlflow/runs/get", f"run_id={RUN_A}", [], None, None)
    )
    assert isinstance(sent, Sent) and sent.headers == {} and sent.translate is None
    assert [(s.method, s.path, s.workspace) for s in store.sent] == [("GET", "/api/2.0/mlflow/runs/get", "upstream-r")]


async def test_the_index_write_through_locates_an_unseen_run_before_it_takes_a_connection() -> None:
    """Locating a run may ask its store: no connection of the pool "derived" is held meanwhile."""
    held: list[bool] = []
    asked: list[tuple[bool, str]] = []

    class Connection:
        async def fetchval(self, query: str, *args: Any) -> Any:
            return None  # the index has no row for the run yet

        async def execute(self, query: str, *args: Any) -> str:
            return "INSERT 0 1"

    class Pool:
        def acquire(self) -> Any:
            class Acquired:
                async def __aenter__(self) -> Connection:
                    held.append(True)
                    return Connection()

                async def __aexit__(self, *exc: object) -> None:
                    held.pop()

            return Acquired()

    class Locator:
        async def experiment_of(self, where: WorkspaceLink, kind: str, object_id: str) -> str | None:
            asked.append((bool(held), object_id))
            return "7"

    async def open_pool(name: str, settings: Mapping[str, str] | None = None, /) -> Any:
        return Pool()

    index = IndexWriteThrough(IndexWriter(), Bookkeeping(open_pool), Locator())  # type: ignore[arg-type]
    body = json.dumps({"run_id": RUN_UNKNOWN, "params": [{"key": "lr", "value": "0.1"}]}).encode()
    await index.record(AcceptedWrite(RUNS_LOG_BATCH, TEAM_A, "alice", body, b"", None, {}, None))
    assert asked == [(False, RUN_UNKNOWN)]


async def test_an_accepted_write_the_index_cannot_read_is_left_to_the_sync() -> None:
    """MLflow accepts a run status sent as a number (KILLED = 5, even 5.5): the write stands, the call succeeds."""
    from gateway.observability.metrics import INDEX_FAILURES

    async def no_pool(name: str, settings: Mapping[str, str] | None = None, /) -> Any:
        raise AssertionError("nothing is written for a write the index cannot read")

    index = IndexWriteThrough(IndexWriter(), Bookkeeping(no_pool), locator=None)  # type: ignore[arg-type]
    before = INDEX_FAILURES._value.get()
    body = json.dumps({"run_id": RUN_A, "status": 5.5}).encode()
    update = declared("POST /mlflow/runs/update")
    await index.record(AcceptedWrite(update, TEAM_A, "alice", body, b"{}", None, {}, None))
    assert INDEX_FAILURES._value.get() == before + 1


# -- the AI gateway's invocations -----------------------------------------------------------------------

RAW_PROXY = declared("POST /gateway/proxy/{endpoint_name:str}/{path:path}")
GEMINI = [
    declared("POST /gateway/gemini/v1beta/models/{endpoint_name:str}:generateContent"),
    declared("POST /gateway/gemini/v1beta/models/{endpoint_name:str}:streamGenerateContent"),
]


async def test_an_llm_payload_is_forwarded_as_sent_and_streamed_back() -> None:
    """Nothing of a prompt is read: not decoded, no names refused, the bytes and their encoding as they came."""
    store = RecordingStore(Answer(body=b"data: {}\n\n", headers={"Content-Type": "text/event-stream"}))
    payload = b'{"messages": [{"role": "user", "content": "hi", "tool_call_id": "x"}], "runId": 1, "stream": true}'
    invocation = call(declared("POST /gateway/{endpoint_name:str}/mlflow/invocations"), header="team-a",
                      path_params={"endpoint_name": "chat"})  # fmt: skip
    invocation.body = payload
    invocation.headers = [("content-type", "application/json"), ("content-encoding", "zstd")]
    result = await forwarder(TEAM_A, store=store).forward(invocation)
    sent = store.sent[0]
    assert (sent.path, sent.body) == ("/gateway/chat/mlflow/invocations", payload)
    assert ("content-encoding", "zstd") in sent.headers
    assert result.stream is not None and not result.body  # an answer of unknown size streams


@pytest.mark.parametrize(
    ("tail", "upstream"),
    [
        ("chat/completions", "/gateway/proxy/ep-1/chat/completions"),
        ("v1beta/models/gemini:generateContent", "/gateway/proxy/ep-1/v1beta/models/gemini:generateContent"),
        ("..", None),
        ("a/../../admin", None),
        ("a/./b", None),
        ("a//b", None),
        ("%2e%2e/admin", None),  # raw: the router would have decoded it into '..'
        ("a%2fb", None),
        ("", None),
    ],
)
async def test_the_raw_proxys_path_is_plain_segments(tail: str, upstream: str | None) -> None:
    store = RecordingStore()
    proxy = call(RAW_PROXY, header="team-a", path_params={"endpoint_name": "ep-1", "path": tail}, body={})
    if upstream is None:
        with pytest.raises(InvalidParameter):
            await forwarder(TEAM_A, store=store).forward(proxy)
        assert store.sent == []
        return
    await forwarder(TEAM_A, store=store).forward(proxy)
    assert store.sent[0].path == upstream


def test_routes_told_apart_by_a_segment_suffix_share_a_handler_that_chooses_by_it() -> None:
    from gateway.core.errors import EndpointNotFound
    from gateway.federation.routes import _choose, mount_path

    assert {mount_path(spec.path) for spec in GEMINI} == {"/gateway/gemini/v1beta/models/{endpoint_name:str}"}
    spec, params = _choose(GEMINI, {"endpoint_name": "my-ep:streamGenerateContent"})
    assert (spec, params) == (GEMINI[1], {"endpoint_name": "my-ep"})
    spec, params = _choose(GEMINI, {"endpoint_name": "my-ep:generateContent"})
    assert (spec, params) == (GEMINI[0], {"endpoint_name": "my-ep"})
    for value in ("my-ep", "my-ep:countTokens", ":generateContent"):
        with pytest.raises(EndpointNotFound):
            _choose(GEMINI, {"endpoint_name": value})


async def test_an_answer_step_that_replaces_the_answer_is_what_the_client_gets() -> None:
    """A guard's step after the store's answer (a job list kept to what the caller may see) replaces it."""
    seen: list[bytes] = []

    async def keep_first(status: int, answer: bytes) -> bytes | None:
        seen.append(answer)
        return b'{"jobs":[{"job_id":"j1"}]}'

    store = RecordingStore(Answer(body=b'{"jobs":[{"job_id":"j1"},{"job_id":"j2"}]}', content_length=42))
    fw = forwarder(DEFAULT, TEAM_A, store=store, guard=AllowAll(Plan(after=keep_first)))
    result = await fw.forward(call(declared("POST /jobs/search", 3), header="team-a", body={}))
    assert seen == [b'{"jobs":[{"job_id":"j1"},{"job_id":"j2"}]}']
    assert result.body == b'{"jobs":[{"job_id":"j1"}]}'


@pytest.mark.parametrize(
    ("route", "request_body", "answer"),
    [
        (("POST /mlflow/runs/create-promptlab-run", 2), {"experiment_id": "1"},
         {"run": {"info": {"run_id": RUN_A, "experiment_id": "1"}}}),
        (("POST /mlflow/genai/evaluate/invoke", 3), {"experiment_id": "1"}, {"job_id": "j1", "run_id": RUN_A}),
        (("POST /mlflow/issues/invoke", 3), {"experiment_id": "1"}, {"job_id": "j1", "run_id": RUN_A}),
        (("POST /mlflow/prompt-optimization/jobs", 3), {"experiment_id": "1"},
         {"job": {"job_id": "j1", "run_id": RUN_A, "experiment_id": "1"}}),
    ],
)  # fmt: skip
async def test_a_run_the_store_creates_by_itself_is_routed_and_mirrored_from_its_answer(
    route: tuple[str, int], request_body: dict[str, Any], answer: dict[str, Any]
) -> None:
    spec = declared(*route)

    async def no_pool(name: str, settings: Mapping[str, str] | None = None, /) -> Any:
        raise AssertionError("no database in this test")

    bookkeeping = Bookkeeping(no_pool)
    assert spec.starts_run and spec.mirrored
    assert RunRoutes(bookkeeping, runs=None).wants(spec, TEAM_A)  # type: ignore[arg-type]
    assert OutboxCapture(bookkeeping).needs_answer(spec, DUAL)
    body, response = json.dumps(request_body).encode(), json.dumps(answer).encode()
    ids = msgspec.json.decode(body, type=_Ids)
    write = AcceptedWrite(spec, DUAL, "alice", body, response, ids, {}, None)  # type: ignore[arg-type]
    assert started_run_of(write) == (RUN_A, "1")
    entry = outbox_entry(write)
    assert entry is not None and entry.order_key == f"1004/run:{RUN_A}" and entry.route == spec.name
