"""`/api/2.0/sql/alerts`: Databricks' SQL alerts API (create, get, list, update, delete), plus run and history.

- `POST /api/2.0/sql/alerts` {alert, auto_resolve_display_name} → the alert
- `GET /api/2.0/sql/alerts?page_size=&page_token=` → {results, next_page_token}: the caller's alerts (every
  alert for account admins)
- `GET /api/2.0/sql/alerts/{id}`, `PATCH /api/2.0/sql/alerts/{id}` {alert, update_mask}, `DELETE ...` → {}
- `POST /api/2.0/sql/alerts/{id}/run` → the evaluation, made now as the owner
- `GET /api/2.0/sql/alerts/{id}/history?page_size=&page_token=` → {evaluations, next_page_token}, newest first

The stock databricks-sdk's `w.alerts` works against these routes. Alerts are the account's, like the system
tables their queries read; a workspace header, if any, is checked by the rule every route shares.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide

from gateway.alerts.schemas import (
    Alert,
    CreateAlertRequest,
    Evaluation,
    HistoryResponse,
    ListAlertsResponse,
    UpdateAlertRequest,
)
from gateway.alerts.service import AlertService
from gateway.authz.workspace_choice import requested_workspace
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.schemas import Empty


class SqlAlertsController(Controller):
    path = "/api/2.0/sql/alerts"
    opt = {"access": "an alert's owner and account admins; its query runs with the owner's grants"}
    dependencies = {"workspace": Provide(requested_workspace)}

    @post("/", name="sql alerts create", status_code=200)
    async def create(
        self,
        request: Request[Principal, Any, Any],
        data: CreateAlertRequest,
        alerts: AlertService,
        workspace: WorkspaceLink | None,
    ) -> Alert:
        return await alerts.create(request.user, data.alert)

    @get("/", name="sql alerts list")
    async def list_alerts(
        self,
        request: Request[Principal, Any, Any],
        alerts: AlertService,
        workspace: WorkspaceLink | None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> ListAlertsResponse:
        found, following = await alerts.list_alerts(request.user, page_size, page_token)
        return ListAlertsResponse(results=found, next_page_token=following)

    @get("/{alert_id:str}", name="sql alerts get")
    async def get_alert(
        self,
        request: Request[Principal, Any, Any],
        alert_id: str,
        alerts: AlertService,
        workspace: WorkspaceLink | None,
    ) -> Alert:
        return await alerts.get(request.user, alert_id)

    @patch("/{alert_id:str}", name="sql alerts update")
    async def update_alert(
        self,
        request: Request[Principal, Any, Any],
        alert_id: str,
        data: UpdateAlertRequest,
        alerts: AlertService,
        workspace: WorkspaceLink | None,
    ) -> Alert:
        return await alerts.update(request.user, alert_id, data.alert, data.update_mask)

    @delete("/{alert_id:str}", name="sql alerts delete", status_code=200)
    async def delete_alert(
        self,
        request: Request[Principal, Any, Any],
        alert_id: str,
        alerts: AlertService,
        workspace: WorkspaceLink | None,
    ) -> Empty:
        await alerts.delete(request.user, alert_id)
        return Empty()

    @post("/{alert_id:str}/run", name="sql alerts run", status_code=200)
    async def run_alert(
        self,
        request: Request[Principal, Any, Any],
        alert_id: str,
        alerts: AlertService,
        workspace: WorkspaceLink | None,
    ) -> Evaluation:
        return await alerts.run(request.user, alert_id)

    @get("/{alert_id:str}/history", name="sql alerts history")
    async def history(
        self,
        request: Request[Principal, Any, Any],
        alert_id: str,
        alerts: AlertService,
        workspace: WorkspaceLink | None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> HistoryResponse:
        found, following = await alerts.history(request.user, alert_id, page_size, page_token)
        return HistoryResponse(evaluations=found, next_page_token=following)
