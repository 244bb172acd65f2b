"""The access console's pages under `/fedgate/console/access`: principals and groups, one principal's
effective permissions with one-click revoke, and the audit log.

Each page is the console's layout around an empty frame that `static/access.js` fills from the JSON API
(`routes.py`); the page hands the script only where the API is and what to show, in `data-` attributes.
Whoever is neither an account admin nor a workspace admin is refused (403, audited) before anything is
rendered, as the API refuses them; the layout hides the navigation's Access link from them.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Controller, Request, Response, get

from gateway.console.access.routes import API_PATH
from gateway.console.access.service import AccessConsole
from gateway.console.shell import Console, page_opt, signed_in

PAGE_ACCESS = "account admins; workspace admins (within the workspaces they administer)"
SCRIPTS = ["access.js"]
STYLES = ["access.css"]

_DIALOG = (
    "<dialog id='fg-revoke-dialog' class='fg-dialog' aria-labelledby='fg-revoke-title'>"
    "<h2 id='fg-revoke-title'>Revoke this grant?</h2>"
    "<p id='fg-revoke-text'></p><p id='fg-revoke-affects' class='fg-warning'></p>"
    "<div id='fg-revoke-error' class='fg-error fg-hidden' role='alert'></div>"
    "<div class='fg-dialog-buttons'>"
    "<button type='button' id='fg-revoke-cancel' class='fg-plain'>Cancel</button>"
    "<button type='button' id='fg-revoke-confirm' class='fg-button fg-danger'>Revoke</button>"
    "</div></dialog>"
)


def page_frame(view: str, **data: str) -> str:
    attributes = "".join(f" data-{name}='{escape(value, quote=True)}'" for name, value in data.items())
    tabs = (
        "<nav class='fg-tabs' aria-label='Access'>"
        "<a id='fg-tab-principals' href='/fedgate/console/access'>Principals and groups</a>"
        "<a id='fg-tab-audit' href='/fedgate/console/access/audit'>Audit log</a></nav>"
    )
    return (
        f"{tabs}<div id='fg-access' data-view='{view}' data-api='{API_PATH}'{attributes}>"
        "<div id='fg-access-scope' class='fg-note'></div>"
        "<div id='fg-access-error' class='fg-error fg-hidden' role='alert'></div>"
        "<div id='fg-access-notice' class='fg-notice fg-hidden' role='status'></div>"
        f"<div id='fg-access-content'></div></div>{_DIALOG}"
    )


class AccessPagesController(Controller):
    path = "/access"

    @get("/", opt=page_opt(PAGE_ACCESS), name="console access", include_in_schema=False)
    async def principals(
        self, request: Request[Any, Any, Any], console: Console, access_console: AccessConsole
    ) -> Response[str]:
        access_console.require(signed_in(request))
        return console.page(
            request,
            title="Who can see what",
            body=page_frame("principals"),
            active="access",
            scripts=SCRIPTS,
            styles=STYLES,
        )

    @get(
        "/principals/{principal_id:int}",
        opt=page_opt(PAGE_ACCESS),
        name="console access principal page",
        include_in_schema=False,
    )
    async def principal(
        self, request: Request[Any, Any, Any], console: Console, access_console: AccessConsole, principal_id: int
    ) -> Response[str]:
        access_console.require(signed_in(request))
        return console.page(
            request,
            title="Effective permissions",
            body=page_frame("principal", principal=str(principal_id)),
            active="access",
            scripts=SCRIPTS,
            styles=STYLES,
        )

    @get("/audit", opt=page_opt(PAGE_ACCESS), name="console access audit page", include_in_schema=False)
    async def audit(
        self, request: Request[Any, Any, Any], console: Console, access_console: AccessConsole
    ) -> Response[str]:
        access_console.require(signed_in(request))
        return console.page(
            request,
            title="Audit log",
            body=page_frame("audit"),
            active="access",
            scripts=SCRIPTS,
            styles=STYLES,
        )
