"""The MLflow 3 workspaces API: list and get for callers, link/relink/unlink for account admins."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.repository import AuditRepository
from gateway.audit.trail import entry
from gateway.authz.decide import Authorizer
from gateway.core.errors import InvalidParameter, ResourceNotFound, hidden
from gateway.core.links import WorkspaceLink
from gateway.core.numbers import whole
from gateway.core.principal import Principal
from gateway.core.route_table import WORKSPACE_ROUTES
from gateway.dual.outbox import OutboxRepository
from gateway.dual.reconcile import Reconciler
from gateway.federation.call import ACCOUNT_SCOPE
from gateway.observability.access import REQUEST_ID_KEY
from gateway.principals.guards import account_admin
from gateway.workspaces.schemas import (
    DeadLetter,
    DeadLetters,
    Discarded,
    DiscardRequest,
    LinksStatus,
    LinkStatus,
    ReconcileRequest,
    ReconcileStarted,
    Requeued,
    RetryRequest,
    Workspace,
    WorkspaceChanges,
    WorkspaceCreate,
    WorkspaceList,
    WorkspaceResponse,
)
from gateway.workspaces.service import WorkspaceService

WARNING_HEADER = "X-Fedgate-Warning"
ACCOUNT_DESCRIPTION = "Every workspace you may read, read-only: experiment and run search across them"
DELETE_MODES = ("RESTRICT", "CASCADE", "SET_DEFAULT")


# Linking, relinking, unlinking and the state of links: account admins only.
ADMINS = account_admin("Only account admins may link, relink or unlink workspaces.")


def _warned(content: WorkspaceResponse, warning: str | None, status: int) -> Response[WorkspaceResponse]:
    headers = {WARNING_HEADER: warning} if warning else {}
    return Response(content, status_code=status, headers=headers)


_LIST, _CREATE, _GET, _UPDATE, _DELETE = WORKSPACE_ROUTES


class WorkspacesController(Controller):
    """Mounted at /api/3.0 and /ajax-api/3.0 under mlflow/workspaces. Reading: each caller sees the workspaces
    it holds a grant in. Linking (create), relinking (update) and unlinking (delete): account admins, by a
    guard on each of those routes (a separate controller would register the same paths twice)."""

    path = "/"

    @get(_LIST.paths(), opt={"route": _LIST}, name="workspaces list")
    async def list_workspaces(
        self, request: Request[Principal, Any, Any], service: WorkspaceService, authorizer: Authorizer
    ) -> WorkspaceList:
        # Only the workspaces the caller holds a grant in; the others are not listed, not counted.
        visible = [w for w in service.list() if authorizer.enters(request.user, int(w.workspace_id))]
        if request.user.via == "session" and visible:
            # The web UI's workspace selector also offers the read-only account-wide scope (index/account.py).
            visible.append(Workspace(name=ACCOUNT_SCOPE, description=ACCOUNT_DESCRIPTION))
        return WorkspaceList(workspaces=visible)

    @post(_CREATE.paths(), opt={"route": _CREATE}, name="workspaces create", status_code=201, guards=[ADMINS])
    async def create_workspace(
        self,
        data: WorkspaceCreate,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> Response[WorkspaceResponse]:
        workspace, warning = await service.create(sessionmaker, data)
        async with sessionmaker() as session:
            await service.reload(session)
        return _warned(WorkspaceResponse(workspace), warning, 201)

    @get(_GET.paths(), opt={"route": _GET}, name="workspaces get")
    async def get_workspace(
        self,
        request: Request[Principal, Any, Any],
        workspace_name: str,
        service: WorkspaceService,
        authorizer: Authorizer,
    ) -> WorkspaceResponse:
        workspace = service.get(workspace_name)
        if not authorizer.enters(request.user, int(workspace.workspace_id)):
            raise hidden(f"Workspace '{workspace_name}' not found")
        return WorkspaceResponse(workspace)

    @patch(_UPDATE.paths(), opt={"route": _UPDATE}, name="workspaces update", guards=[ADMINS])
    async def update_workspace(
        self,
        workspace_name: str,
        data: WorkspaceChanges,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
        reconciler: Reconciler,
    ) -> Response[WorkspaceResponse]:
        before = service.links.get(workspace_name)
        workspace, warning = await service.update(sessionmaker, workspace_name, data)
        async with sessionmaker() as session:
            await service.reload(session)
        after = service.links.get(workspace_name)
        if after is not None and after.mirror is not None and (before is None or before.mirror is None):
            # Newly dual: its history is copied to the central store in the background (resumable).
            await reconciler.begin(after, everything=True)
        return _warned(WorkspaceResponse(workspace), warning, 200)

    @delete(_DELETE.paths(), opt={"route": _DELETE}, name="workspaces delete", status_code=204, guards=[ADMINS])
    async def delete_workspace(
        self,
        workspace_name: str,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
        mode: str = Parameter(default="RESTRICT"),
    ) -> None:
        if mode.upper() not in DELETE_MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(DELETE_MODES)}")
        # Unlinking never touches the store, so every mode leaves the store's data where it is.
        await service.delete(sessionmaker, workspace_name)
        async with sessionmaker() as session:
            await service.reload(session)


class LinksController(Controller):
    """The state of every link: mode, stores and, for dual links, the outbox toward the central store."""

    path = "/api/2.0/fedgate/links"
    opt = {"access": "account admins"}
    guards = [ADMINS]

    @get("/", name="links status")
    async def status(
        self,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
        reconciler: Reconciler,
    ) -> LinksStatus:
        async with sessionmaker() as session:
            queues = {row["workspace_id"]: row for row in await OutboxRepository(session).status()}
        passes = await reconciler.states()
        links = []
        # Withheld links (sharing a store namespace with another one, not served) are listed with the conflict.
        conflicts = {link.name: reason for link, reason in service.links.withheld()}
        everything = [*service.links.all(), *(link for link, _ in service.links.withheld())]
        for link in everything:
            queue = queues.get(link.workspace_id, {})
            progress = passes.get(link.workspace_id)
            links.append(
                LinkStatus(
                    workspace=link.name,
                    workspace_id=str(link.workspace_id),
                    mode=link.mode,
                    store=link.store,
                    central_store=link.mirror or "",
                    pending=queue.get("pending", 0),
                    oldest_pending_seconds=queue.get("oldest_pending_seconds", 0.0),
                    replayed_per_second=queue.get("replayed_per_second", 0.0),
                    dead_letters=queue.get("dead_letters", 0),
                    conflict=conflicts.get(link.name),
                    reconcile=asdict(progress) if progress is not None else None,
                )
            )
        return LinksStatus(links=links)

    @post("/{workspace_name:str}/reconcile", name="links reconcile", status_code=202)
    async def reconcile(
        self,
        workspace_name: str,
        data: ReconcileRequest,
        service: WorkspaceService,
        reconciler: Reconciler,
    ) -> ReconcileStarted:
        """Compare the workspace's runs with their central copies and repair; `all` also backfills history."""
        link = _linked(service, workspace_name)
        if link.mirror is None:
            raise InvalidParameter(f"Workspace '{workspace_name}' is not linked in dual mode; nothing to reconcile.")
        return ReconcileStarted(reconcile=asdict(await reconciler.begin(link, everything=data.all)))

    @get("/{workspace_name:str}/dead-letters", name="links dead letters")
    async def dead_letters(
        self,
        workspace_name: str,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> DeadLetters:
        link = _linked(service, workspace_name)
        async with sessionmaker() as session:
            rows = await OutboxRepository(session).dead_letters(link.workspace_id)
        return DeadLetters(
            dead_letters=[
                DeadLetter(
                    id=row.id,
                    route=row.route,
                    order_key=row.order_key,
                    attempts=row.attempts,
                    last_error=row.last_error,
                    created_at=row.created_at.isoformat(),
                    payload=row.payload,
                )
                for row in rows
            ]
        )

    @post("/{workspace_name:str}/dead-letters/retry", name="links retry dead letters", status_code=200)
    async def retry(
        self,
        workspace_name: str,
        data: RetryRequest,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> Requeued:
        link = _linked(service, workspace_name)
        number = _letter_id(data.id)
        async with sessionmaker() as session, session.begin():
            count = await OutboxRepository(session).retry_dead(link.workspace_id, number)
        return Requeued(requeued=count)

    @post("/{workspace_name:str}/dead-letters/discard", name="links discard dead letters", status_code=200)
    async def discard(
        self,
        request: Request[Principal, Any, Any],
        workspace_name: str,
        data: DiscardRequest,
        service: WorkspaceService,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> Discarded:
        """Delete dead letters for good (their writes never reach the central store); audited with their ids."""
        link = _linked(service, workspace_name)
        number = _letter_id(data.id)
        if (number is None) != data.all:
            raise InvalidParameter("Give the 'id' of one dead letter, or 'all': true for every one; not both.")
        request_id = str(request.scope.get(REQUEST_ID_KEY, ""))  # type: ignore[call-overload,unused-ignore]
        async with sessionmaker() as session, session.begin():
            ids = await OutboxRepository(session).discard_dead(link.workspace_id, number)
            if ids:
                details = {"workspace": link.name, "ids": ids, "count": len(ids)}
                row = entry(request.user.name, "links.dead_letters.discard", link.name, "ok", details, request_id)
                await AuditRepository(session).append([row])
        return Discarded(discarded=len(ids), ids=ids)


def _letter_id(value: int | str | None) -> int | None:
    """The dead letter a request names (None: none named); 400 unless a number an outbox id can be."""
    if value is None:
        return None
    number = whole(value)
    if number is None:
        raise InvalidParameter("'id' is the number of a dead letter.")
    return number


def _linked(service: WorkspaceService, name: str) -> WorkspaceLink:
    link = service.links.get(name)
    if link is None:
        raise ResourceNotFound(f"Workspace '{name}' not found")
    return link
