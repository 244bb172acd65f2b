"""The console's features: each one's controllers (or handlers), mounted under `/fedgate/console` by shell.py.

A feature adds its own line here (its module beside this one); docs/console.md says how.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from gateway.console.access.pages import AccessPagesController
from gateway.console.alerts import AlertsPage
from gateway.console.dashboards import DashboardsController
from gateway.console.queries.page import SqlEditorController

FEATURES: tuple[ControllerRouterHandler, ...] = (
    DashboardsController,
    SqlEditorController,
    AlertsPage,
    AccessPagesController,
)
