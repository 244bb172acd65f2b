"""The console's frame: its router, the browser-session rule, the sign-in redirect, pages in the layout, static files.

Every console route lives under `/fedgate/console` in one Litestar Router (`console_router`), which gives its
handlers the `console` dependency and one guard:

- a page (a handler whose opt comes from `page_opt`) is for a person signed in with a browser session; a
  browser without one is sent to the sign-in page with the page's path and query as `next`, and comes back
  there after sign-in (by token or at the identity provider). A request with a token instead of a session
  cookie is refused (403): the console is not an API;
- any other console route (a handler whose opt comes from `api_opt`: the JSON and CSV a page's script
  fetches) needs a caller like every route of the gateway, and answers in MLflow's error shape.

Cross-site requests need nothing here: the authentication middleware already refuses a cookie-authenticated
POST, PUT, PATCH or DELETE that the browser does not say came from the gateway's own pages (authn/browser.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.types import ControllerRouterHandler

from gateway.authn.browser import local_path
from gateway.authz.decide import Authorizer
from gateway.authz.levels import Level, workspace_object
from gateway.console.assets import STATIC_PREFIX, ConsoleAssets
from gateway.console.layout import CONSOLE_HEADERS, CONSOLE_PATH, SECTIONS, Viewer, render_page
from gateway.core.errors import PermissionDenied
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.principal import Principal
from gateway.ui.pages import SIGN_IN_PATH

HTML = "text/html"  # Litestar adds `; charset=utf-8` to a text media type
CONSOLE_PAGE = "console_page"
NOT_A_BROWSER = "The console's pages are for people signed in with a browser; call the REST API with a token instead."


def page_opt(access: str) -> dict[str, Any]:
    """The opt of a console page: who may see it (`access`, as every own route states), open to the sign-in redirect."""
    return {"access": access, "public": True, CONSOLE_PAGE: True}


def api_opt(access: str) -> dict[str, Any]:
    """The opt of a console route a page's script calls (JSON, CSV): authenticated like every other route."""
    return {"access": access}


class SignInRequired(Exception):
    """A page opened without a session: answered with a redirect to the sign-in page, coming back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Console:
    """What console pages share: the static files, and who the viewer is (for the navigation)."""

    def __init__(self, assets: ConsoleAssets, authorizer: Authorizer, links: LinkTable) -> None:
        self.assets = assets
        self.authorizer = authorizer
        self.links = links

    def viewer(self, principal: Principal) -> Viewer:
        return Viewer(principal.name, principal.account_admin, self.workspace_admin(principal))

    def workspace_admin(self, principal: Principal) -> bool:
        """CAN_MANAGE on at least one workspace (account admins hold it everywhere)."""
        if principal.account_admin:
            return True
        return any(
            self.authorizer.allows(principal, link.workspace_id, workspace_object(link.workspace_id), Level.CAN_MANAGE)
            for link in self.links.all()
        )

    def workspaces(self, principal: Principal) -> list[WorkspaceLink]:
        """The workspaces the person may see (holds any grant in), by name: what a workspace filter offers."""
        return sorted(
            (link for link in self.links.all() if self.authorizer.enters(principal, link.workspace_id)),
            key=lambda link: link.name,
        )

    def page(
        self,
        request: Request[Any, Any, Any],
        *,
        title: str,
        body: str,
        active: str,
        scripts: Sequence[str] = (),
        styles: Sequence[str] = (),
        status: int = 200,
    ) -> Response[str]:
        """The page `body` in the console's layout, with the console's headers (CSP without inline scripts)."""
        html = render_page(
            self.assets,
            self.viewer(signed_in(request)),
            title=title,
            body=body,
            active=active,
            scripts=scripts,
            styles=styles,
        )
        return Response(html, status_code=status, media_type=HTML, headers=CONSOLE_HEADERS)


def signed_in(request: Request[Any, Any, Any]) -> Principal:
    """The person a console route serves (the guard has made sure there is one)."""
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise SignInRequired(_here(request.scope))
    return user


def _here(scope: Any) -> str:
    path = str(scope.get("path", CONSOLE_PATH))
    query = scope.get("query_string", b"")
    return local_path(f"{path}?{query.decode('latin-1')}" if query else path, CONSOLE_PATH)


def browser_pages(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The console's guard: its pages are for browser sessions (a browser without one goes to sign in)."""
    if not handler.opt.get(CONSOLE_PAGE):
        return
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise SignInRequired(_here(connection.scope))
    if user.via != "session":
        raise PermissionDenied(NOT_A_BROWSER)


def _to_sign_in(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[str]:
    location = f"{SIGN_IN_PATH}?next={quote(exc.next_path, safe='/')}"
    return Response("", status_code=303, headers={"Location": location, "Cache-Control": "no-store"})


STATIC_ACCESS = "anyone: the console's JavaScript, CSS and vendored libraries (no data)"


def console_router(console: Console, *features: ControllerRouterHandler) -> Router:
    """`/fedgate/console`: the shell's own routes and every feature's (controllers or handlers)."""

    @get("/", opt=page_opt("anyone signed in with a browser"), name="console home", include_in_schema=False)
    async def home(request: Request[Any, Any, Any]) -> Response[str]:
        viewer = console.viewer(signed_in(request))
        items = "".join(
            f"<li><a href='{section.path}'>{escape(section.label)}</a></li>"
            for section in SECTIONS
            if viewer.admin or not section.admins_only
        )
        body = f"<div class='fg-card'><p>What you may read, across your workspaces.</p><ul>{items}</ul></div>"
        return console.page(request, title="Console", body=body, active="")

    @get(
        STATIC_PREFIX.removeprefix(CONSOLE_PATH) + "/{digest:str}/{name:path}",
        opt={"access": STATIC_ACCESS, "public": True},
        name="console static",
        include_in_schema=False,
    )
    async def static(request: Request[Any, Any, Any], digest: str, name: str) -> Response[bytes]:
        found = await console.assets.file(digest, name.lstrip("/"), request.headers.get("accept-encoding", ""))
        if found is None:
            return Response(b"Not found", status_code=404, media_type="text/plain")
        return Response(found.body, headers=found.headers)

    return Router(
        CONSOLE_PATH,
        route_handlers=[home, static, *features],
        guards=[browser_pages],
        dependencies={"console": Provide(lambda: console, sync_to_thread=False, use_cache=True)},
        exception_handlers={SignInRequired: _to_sign_in},
        include_in_schema=False,
    )
