"""Where features plug into the request pipeline; the forwarder (service.py) knows none of them by name.

The forwarder runs every call through the same steps: canonical body → resolve the workspace →
guard → before-send checks → send → read the answer → after-write hooks. Features plug in through
four small protocols, and the composition root (gateway/app.py) chooses which:

- `AfterWrite`: told of every write the store accepted (status 200) that it `wants`. The answer is
  read whole (not streamed) when a wanting hook `needs_answer`. Wanting hooks `record` concurrently:
  the client waits for the slowest, not the sum. A hook that raises fails the call with its error
  (the dual outbox: 503, the write must be repeated); best-effort hooks never raise.
  Implemented by run routes (federation/bookkeeping.py), the index write-through
  (index/write_through.py) and the dual outbox (dual/capture.py).
- `BeforeSend`: asked about every call it `wants` once the guard allowed it and before anything of it
  is sent anywhere (store, outbox, index): it sees the canonical body the store will get (`PendingCall`)
  and raises a GatewayError to refuse the whole call; it may return something it `Held` (a lock) that
  the forwarder releases once the send step is over. Implemented by the secrets leak guard
  (secrets/leaks.py: a write of a run that read a secret must not carry the secret's value) and the
  property guard (properties/guard.py: a run's properties are add-only; it holds a per-run lock).
- `Sender`: the send step. `StoreSender` (service.py) sends to the workspace's store; a decorator
  may wrap it (dual/failover.py's `FailoverSender` answers reads from the central copy while a dual
  workspace's store is down).
- `Scope`: a workspace name served by something other than the forwarder, chosen at the HTTP edge
  (federation/routes.py): the read-only `account` scope (index/account.py), which calls the
  forwarder back for reads of one workspace.
- `FeatureRoute`: a declared route a feature serves itself, chosen at the HTTP edge too: MLflow's
  transition-stage, served by the registry workflow (registry/routes.py) so that every stage change
  follows its rules and lands in its activity log; it calls the forwarder back for the store's part.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.errors import GatewayError
from gateway.core.links import WorkspaceLink
from gateway.core.ports import StoreResponse
from gateway.core.principal import Principal
from gateway.core.route_table import RouteSpec
from gateway.federation.call import ForwardCall, ForwardResult
from gateway.federation.canonical import CanonicalBody
from gateway.federation.guard.request import Plan
from gateway.federation.mlflow_requests import ClientPoint
from gateway.federation.schemas import RequestIds


@dataclass(slots=True)
class AcceptedWrite:
    """A write the store accepted, as the after-write hooks see it."""

    spec: RouteSpec
    link: WorkspaceLink
    principal: str
    request: bytes  # the canonical body, named in the client's workspace (b"" for uploads)
    response: bytes  # the store's answer when a wanting hook needed it, else b""
    ids: RequestIds | None  # the top-level ids of a JSON body
    path_params: Mapping[str, Any]
    artifact_path: str | None  # artifact routes: the canonical path, in the client's workspace
    query: str = ""  # the canonical query string (the UI's upload names its run and file there)
    # The canonical body decoded, as the guard read it (`request` is its encoding); None when the guard's plan
    # replaced the body. Read-only: every hook of the write shares it.
    document: Mapping[str, Any] | None = None
    # A log-batch's points as the partial-read check converted them from `document` (`ClientPoint`), when all are in
    # the shape MLflow's clients send; else None. Read-only, as `document`.
    points: Sequence[ClientPoint] | None = None


class AfterWrite(Protocol):
    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        """Whether an accepted write of this route to this workspace is recorded by this hook."""
        ...

    def needs_answer(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        """Whether `record` reads `write.response` (asked only of hooks that want the write)."""
        ...

    async def record(self, write: AcceptedWrite) -> None:
        """Record the write before the client hears of it; raise only to fail the call."""
        ...


@dataclass(slots=True)
class PendingCall:
    """A call the guard allowed, as a before-send check sees it: the canonical body the store will get."""

    spec: RouteSpec
    link: WorkspaceLink
    principal: Principal
    body: CanonicalBody  # decoded once; `encoded` is exactly what is sent (in the client's workspace); {} for none
    request_id: str
    path_params: Mapping[str, Any] = field(default_factory=dict)
    # The store's answers for the traces the guard read to allow the call, by id (read at every call, never kept):
    # a check that needs a trace reads it here rather than asking the store a second time.
    traces: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class Held(Protocol):
    """What a before-send check holds until the store has answered the call (a lock), released by the forwarder."""

    async def release(self) -> None: ...


class BeforeSend(Protocol):
    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        """Whether calls of this route to this workspace are checked (asked for every call: keep it cheap)."""
        ...

    async def check(self, call: PendingCall) -> Held | None:
        """Raise a GatewayError to refuse the call: nothing of it is sent then, and no hook hears of it.

        A check whose verdict holds only while nothing else changes what it read (the property guard: no other
        call sets the property meanwhile) returns what it holds; the forwarder releases it once the send step
        is over, whatever happened, so the next such call is checked against what this one wrote.
        """
        ...


@dataclass(slots=True)
class Outgoing:
    """A call as the send step sends it: path and query for the store, the body the guard checked."""

    spec: RouteSpec
    link: WorkspaceLink
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterable[bytes] | None
    artifact_path: str | None


@dataclass(slots=True)
class Sent:
    """What the send step got back: the answer, headers to add to it, and a translation of its JSON body.

    With `translate`, the answer is read whole and passed through it before it goes out.
    """

    response: StoreResponse
    headers: dict[str, str] = field(default_factory=dict)
    translate: Callable[[bytes], Awaitable[bytes]] | None = None


class Sender(Protocol):
    async def send(self, outgoing: Outgoing) -> Sent:
        """Send the call; raise a GatewayError (StoreUnavailable, StoreTimeout) when it cannot be answered."""
        ...


class Scope(Protocol):
    async def serve(self, call: ForwardCall) -> ForwardResult:
        """Answer a call whose X-MLFLOW-WORKSPACE names this scope (and no X-Databricks-Workspace-Id is sent)."""
        ...


class FeatureRoute(Protocol):
    async def serve(self, call: ForwardCall) -> ForwardResult:
        """Answer a call of this declared route (the forwarder may be called back with a call of one's own)."""
        ...


class Check(Protocol):
    """The guard step (federation/guard/): raises to refuse, or says what to do differently (`Plan`)."""

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
        """The plan for an allowed call; the store's answers for the traces read to decide it are put into
        `traces`, by id, for the checks before the send (`PendingCall.traces`)."""
        ...

    async def check_found_experiment(self, principal: Principal, link: WorkspaceLink, answer: bytes) -> None:
        """get-by-name names no id up front: raises unless the experiment in the answer is readable."""
        ...

    async def missing_after_failure(
        self, spec: RouteSpec, link: WorkspaceLink, path_params: Mapping[str, Any]
    ) -> GatewayError | None:
        """A store's 5xx on a route whose MLflow handler answers every error so: the error it stands for when the
        object the call names is missing (404), else None (the 5xx goes out as it is)."""
        ...

    def enters(self, principal: Principal, link: WorkspaceLink) -> bool:
        """Whether the principal may see the workspace at all (a workspace it may not see answers 404)."""
        ...

    async def caught_up(self, principal: Principal) -> Principal | None:
        """Bring the policy decisions rest on up to the stored one (a change made through another replica may
        not have reached this one yet). When that changed it, the principal as the newer policy knows it, for a
        refusal to be decided again; else None."""
        ...


class RunHomes(Protocol):
    """Which workspace a run lives in (federation/locate.py's RunDirectory), for calls that name only a run."""

    async def workspace_of(self, run_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class UnsettledWrite:
    """A write noted before it was sent whose outcome nobody knows: its process died before the after-write
    hooks ran, the store did not answer, or a hook failed. What was known of it before the send."""

    spec: RouteSpec
    link: WorkspaceLink
    detail: Mapping[str, str]  # run_id, experiment_id, name, new_name, model_id, artifact_path: those it named
    noted_at: float  # epoch seconds, when it was noted (before the send)

    def get(self, key: str) -> str | None:
        return self.detail.get(key) or None


class Recovery(Protocol):
    """Brings what a feature keeps of a write level with the store, when the write's outcome is unknown.

    Asked of writes it `wants`, some seconds after their process died (or at once when the outcome was
    unknown in a live process), and once more a little later for a write the store may have finished
    after its caller went away. It checks the store, never assumes the write happened. It raises to be
    asked again later (the store down, say).
    """

    essential: bool  # True: a write it wants is not sent unless it was noted (the dual outbox)

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool: ...

    def coalesces(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        """Whether recovering one write of `spec` recovers every write of it with the same detail (it reads the
        detail only, not what else the write sent nor when it was noted): such writes may share a note."""
        ...

    async def recover(self, write: UnsettledWrite) -> None: ...


class Intent(Protocol):
    """A noted write, told how it ended."""

    def settled(self) -> None:
        """The store answered and every after-write hook ran: nothing to recover."""
        ...

    def unknown(self) -> None:
        """The outcome is not known (no answer, a 5xx, a failed hook): recover it now."""
        ...


class WriteAhead(Protocol):
    """Notes a write durably before it is sent, so a crash between the store's answer and the after-write
    hooks leaves a trace that is recovered within seconds (federation/intents.py)."""

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool: ...

    async def begin(
        self,
        spec: RouteSpec,
        link: WorkspaceLink,
        ids: RequestIds | None,
        path_params: Mapping[str, Any],
        artifact_path: str | None,
    ) -> Intent | None:
        """Note the write (None: not noted; the call goes on). Raises a GatewayError when an essential
        feature wants the write and it could not be noted: nothing is sent then."""
        ...
