"""The leak guard: a write of a run that read a secret must not carry the secret's value into the tracking store.

A before-send check of the request pipeline (federation/hooks.py `BeforeSend`), plugged in by app.py. For
every write that carries text into a run (`RUN_TEXT` routes), or into a trace, assessment, logged model or model
version linked to a run (linked.py: by the body, or by the object as its store has it, asked only for a body with
text while some run read a secret), it asks whether the run read a secret (taint.py: a set in memory, no database
round trip for other runs). For such a run it reads the run's reads
(scope and key, secrets/repository.py), gets their values again from each scope's vault (one
`get_many` per scope; the values live for this request only, nothing of them is kept or logged) and looks
for them in every string of the canonical body the store would get (scan.py).

Found: the whole call is refused before anything of it is sent (store, outbox, index), 400
INVALID_PARAMETER_VALUE with a message naming the kind of field and the secret's scope and key when the
caller holds a permission on the scope; else only "a secret that this run read", as each answer to such a
caller is a guess checked, and what it may learn so is bounded (probes.py: after a few refusals, or
enough text, its writes to runs that read the scope are refused unchecked for a while). Never the
field's content, which may be the secret itself, nor its key. The refusal is audited
(`secrets.leak_refused`: run, key, kind of field; no value), and so is a write refused by those limits
(`secrets.leak_probes_limited`). A vault that does not answer, or is not available on this worker: 503 with Retry-After,
as nothing unchecked may reach the store.

The values checked are those the vault holds now: a secret deleted since the run read it is not looked
for, one changed since is looked for with its new value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import quote

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.core.bounded import BoundedCache
from gateway.core.errors import InvalidParameter, StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.ports import Vault, VaultDenied, VaultNameRefused, VaultUnavailable
from gateway.core.principal import Principal
from gateway.core.route_table import RouteSpec
from gateway.core.sealing import SealError
from gateway.federation.hooks import PendingCall
from gateway.secrets.linked import LINKED_ROUTES, body_runs, linked_object, linked_texts, source_run
from gateway.secrets.probes import ProbeLedger, ProbesLimited
from gateway.secrets.repository import ReadRepository, SecretRead
from gateway.secrets.scan import Text, leaked_into, spellings, written_texts
from gateway.secrets.service import VaultUnreachable, scope_object, unopened
from gateway.secrets.taint import MAX_RUN_ID, TaintedRuns

log = logging.getLogger(__name__)

# The caller's permission on a scope of the link's workspace, given what the scope gives every user of the
# workspace (`users`), None for none (SecretScopes.permission).
Permission = Callable[[Principal, WorkspaceLink, str, str | None], str | None]
# The gateway's own read of an object from the workspace's store: (status, body), federation/direct.py's fetch.
Fetch = Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]]
MODEL_RUNS_KEPT = 100_000  # logged models whose source run a worker keeps
MAX_OBJECT_ID = 1024  # a trace's or logged model's id longer than this is no store's
_LINKED = frozenset(id(spec) for spec in LINKED_ROUTES)  # `wants` is asked of every call: no hashing of specs


class LeakGuard:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        tainted: TaintedRuns,
        vaults: Mapping[str, Vault],
        permission: Permission,
        audit: AuditTrail,
        probes: ProbeLedger,
        fetch: Fetch,
    ) -> None:
        self._fetch = fetch
        # A logged model's source run ("" none), least recently used first.
        self._model_runs: BoundedCache[tuple[int, str], str] = BoundedCache(MODEL_RUNS_KEPT)
        self._sessionmaker = sessionmaker
        self._tainted = tainted
        self._vaults = vaults
        self._permission = permission
        self._audit = audit
        self._probes = probes

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.run_text or id(spec) in _LINKED

    async def check(self, call: PendingCall) -> None:
        if call.spec.run_text:
            ids = call.body.ids
            named = list(dict.fromkeys(run_id for run_id in (ids.run_id, ids.run_uuid) if run_id))
            tainted = [run_id for run_id in named if await self._tainted.includes(run_id)]
            if not tainted:
                return
            texts = written_texts(call.spec, call.body.document)
            if not texts:
                return
        else:
            texts = linked_texts(call.spec, call.body.document)
            if not texts or self._tainted.none:
                return
            named = body_runs(call.spec, call.body.document)
            linked = linked_object(call.spec, call.path_params, call.body.document)
            if linked is not None:
                named = list(dict.fromkeys([*named, *await self._linked_run(call, *linked)]))
            tainted = [run_id for run_id in named if len(run_id) <= MAX_RUN_ID and await self._tainted.includes(run_id)]
            if not tainted:
                return
        async with self._sessionmaker() as session:
            reads = await ReadRepository(session).of_runs(sorted({run_id.lower() for run_id in tainted}))
        by_scope: dict[tuple[str, str], list[SecretRead]] = {}
        for read in reads:
            by_scope.setdefault((read.vault, read.location), []).append(read)
        # The scopes whose values the caller may not read: to it, each answer is an oracle (probes.py).
        guarded = sorted({(read.workspace_id, read.scope) for read in reads if not self._holds(call, read)})
        ticket = None
        if guarded:
            try:
                ticket = await self._probes.admit(call.principal.name, guarded, sum(len(t.value) for t in texts))
            except ProbesLimited as exc:
                self._limited(call, guarded, tainted, exc)
                raise
        leaks: list[tuple[SecretRead, str]] = []
        try:
            found = await asyncio.gather(*(self._search(texts, scope_reads) for scope_reads in by_scope.values()))
            leaks = [leak for leak in found if leak is not None]
        finally:
            left = None
            if ticket is not None:
                hit = [(read.workspace_id, read.scope) for read, _ in leaks]
                left = await self._probes.settle(ticket, [scope for scope in hit if scope in guarded])
        if leaks:
            read, kind = leaks[0]
            raise self._refusal(call, read, kind, left)

    def _holds(self, call: PendingCall, read: SecretRead) -> bool:
        """Whether the caller holds a permission on the scope of the read (and so may read its values)."""
        return read.workspace_id == call.link.workspace_id and (
            self._permission(call.principal, call.link, read.scope, read.users_permission) is not None
        )

    async def _linked_run(self, call: PendingCall, kind: str, object_id: str) -> list[str]:
        """The run that recorded the trace or logged model the call names, asked of its store (linked.py); a logged
        model's is kept, as it never changes, and a trace the guard read to allow the call is read from its answer."""
        if len(object_id) > MAX_OBJECT_ID:
            return []  # no store's id: it names nothing, and the store refuses the call itself
        key = (call.link.workspace_id, object_id)
        if kind == "logged_model" and (run := self._model_runs.get(key)) is not None:
            return [run] if run else []
        if kind == "trace" and (read := call.traces.get(object_id)) is not None:
            found = source_run(kind, read)  # as the guard read it for this call
            return [found] if found else []
        quoted = quote(object_id, safe="")
        path = (
            f"/api/2.0/mlflow/logged-models/{quoted}" if kind == "logged_model" else f"/api/3.0/mlflow/traces/{quoted}"
        )
        status, body = await self._fetch(call.link, path, "")
        if 400 <= status < 500:
            return []  # no such object: the store refuses the call itself
        answer: object = None
        if status == 200:
            with contextlib.suppress(msgspec.DecodeError):
                answer = msgspec.json.decode(body)
        if not isinstance(answer, dict):
            raise StoreUnavailable(
                f"The store of workspace '{call.link.name}' could not be read to check this write for secrets; "
                "try again shortly."
            )
        found = source_run(kind, answer)
        if kind == "logged_model":
            self._model_runs.put(key, found or "")
        return [found] if found else []

    def _limited(self, call: PendingCall, guarded: list[tuple[int, str]], runs: list[str], exc: ProbesLimited) -> None:
        for workspace_id, scope in guarded:
            self._audit.record(
                entry(
                    call.principal.name,
                    "secrets.leak_probes_limited",
                    scope_object(workspace_id, scope),
                    "denied",
                    {
                        "run_id": runs[0],
                        "route": call.spec.name,
                        "status": exc.status,
                    },
                    call.request_id,
                )
            )

    async def _search(self, texts: Sequence[Text], reads: list[SecretRead]) -> tuple[SecretRead, str] | None:
        """The first of one scope's secrets found in the write, and where; the values are dropped on return."""
        vault = self._vaults.get(reads[0].vault)
        if vault is None:
            raise VaultUnreachable(
                "The vault of a secret this run read is not available on this gateway, so this write cannot be "
                "checked for the secret's value and is refused; try again later."
            )
        keys = list(dict.fromkeys(read.key for read in reads))
        try:
            values = await _values(vault, reads[0].location, keys)
        except VaultUnavailable:
            raise VaultUnreachable(
                "The vault of a secret this run read did not answer, so this write cannot be checked for the "
                "secret's value and is refused; try again later."
            ) from None
        except VaultDenied:
            log.warning("a vault refused the gateway's credentials; `fedgate vaults check` tells which")
            raise VaultUnreachable(
                "The vault of a secret this run read refused the gateway's credentials, so this write cannot be "
                "checked and is refused; an operator must fix that."
            ) from None
        except SealError as exc:
            raise unopened(exc) from None
        for read in reads:
            value = values.get(read.key)
            if value is None:
                continue
            kind = leaked_into(texts, spellings(value))
            if kind is not None:
                return read, kind
        return None

    def _refusal(self, call: PendingCall, read: SecretRead, kind: str, left: int | None) -> InvalidParameter:
        shown = self._holds(call, read)
        self._audit.record(
            entry(
                call.principal.name,
                "secrets.leak_refused",
                scope_object(read.workspace_id, read.scope),
                "denied",
                {"run_id": read.run_id, "key": read.key, "field": kind, "route": call.spec.name},
                call.request_id,
            )
        )
        refused = (
            "Secrets are not logged to the tracking store: the whole call was refused and nothing of it was written."
        )
        if shown:
            return InvalidParameter(
                f"A {kind} of this write contains the value of secret {read.key} of scope {read.scope} that this run "
                f"read. {refused}"
            )
        # To a caller who may not read the secret, neither where in the write nor which secret: each answer is a
        # guess checked, and the fewer it says the fewer it tells (probes.py).
        limits = self._probes.limits
        if left is None:
            after = ""
        elif left > 0:
            after = (
                f" As you may not read that secret, {left} more such refusal(s) within {limits.window_seconds:g} s "
                f"lock your writes of text to runs that read it for {limits.window_seconds:g} s."
            )
        else:
            after = (
                f" As you may not read that secret, your writes of text to runs that read it are refused for the "
                f"next {limits.window_seconds:g} s."
            )
        return InvalidParameter(f"This write contains the value of a secret that this run read. {refused}{after}")


async def _values(vault: Vault, location: str, keys: list[str]) -> Mapping[str, bytes | None]:
    """The values of `keys` in one `get_many`; when the vault refuses a name, each key on its own, a name it
    refuses holding no value.

    The gateway's names follow one rule for every vault (`SECRET_NAME_RE`), but a vault may still refuse one (a
    long pair does not fit Key Vault's 127 characters; OpenBao's adapter refuses `.` and `..` itself too). A run's
    read of such a name is refused (400) after the statement noted it, so the run's writes look it up: nothing is
    there to find, and a refusal of it must neither fail every later write of the run nor hide the run's other
    secrets.
    """
    try:
        return await vault.get_many(location, keys)
    except VaultNameRefused:

        async def one(key: str) -> bytes | None:
            try:
                return await vault.get(location, key)
            except VaultNameRefused:
                return None

        return dict(zip(keys, await asyncio.gather(*(one(key) for key in keys)), strict=True))
