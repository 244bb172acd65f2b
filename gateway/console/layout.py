"""The layout every console page shares: title, navigation, who is signed in, sign-out, the way back to MLflow.

A feature renders only its page's body (HTML it escapes itself) and calls `render_page`; the layout adds the
head (the console's stylesheet and the page's own scripts and styles, all from the package's static files),
the navigation with the active section marked, and the sign-out form (a same-origin POST, authn/browser.py).

Console pages run no inline script: CONSOLE_HEADERS' Content-Security-Policy allows scripts and styles from
the gateway only. A page hands data to its script in `data-` attributes or in a
`<script type="application/json">` block (data, never run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from gateway.console.assets import ConsoleAssets
from gateway.ui.pages import SIGN_OUT_PATH

CONSOLE_PATH = "/fedgate/console"

CONSOLE_HEADERS = {
    # No form-action: sign-out's answer may redirect to the identity provider, which form-action would block.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Section:
    key: str  # what a page passes as `active`
    label: str
    path: str
    admins_only: bool = False  # shown to account admins and workspace admins only


SECTIONS: tuple[Section, ...] = (
    Section("dashboards", "Dashboards", f"{CONSOLE_PATH}/dashboards"),
    Section("sql", "SQL editor", f"{CONSOLE_PATH}/sql"),
    Section("alerts", "Alerts", f"{CONSOLE_PATH}/alerts"),
    Section("access", "Access", f"{CONSOLE_PATH}/access", admins_only=True),
)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a console page."""

    name: str
    account_admin: bool
    workspace_admin: bool  # CAN_MANAGE on at least one workspace

    @property
    def admin(self) -> bool:
        return self.account_admin or self.workspace_admin


def render_page(
    assets: ConsoleAssets,
    viewer: Viewer,
    *,
    title: str,
    body: str,
    active: str,
    scripts: Sequence[str] = (),
    styles: Sequence[str] = (),
) -> str:
    """A whole console page around `body` (trusted HTML: escape what it carries). `scripts` and `styles` are
    names of files under gateway/console/static/ ("dashboards.js", "vendor/chart.umd.min.js"), in order."""
    head = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{escape(title)} · fedgate console</title>",
        "<link rel='icon' href='data:,'>",  # no favicon request (the gateway has none to give)
        f"<link rel='stylesheet' href='{escape(assets.url('console.css'), quote=True)}'>",
        *(f"<link rel='stylesheet' href='{escape(assets.url(name), quote=True)}'>" for name in styles),
        f"<script defer src='{escape(assets.url('console.js'), quote=True)}'></script>",
        *(f"<script defer src='{escape(assets.url(name), quote=True)}'></script>" for name in scripts),
        "</head><body>",
    ]
    nav = [
        "<header class='fg-top'><a class='fg-brand' href='" + CONSOLE_PATH + "'>fedgate console</a>",
        "<nav class='fg-nav' aria-label='Console'>",
    ]
    for section in SECTIONS:
        if section.admins_only and not viewer.admin:
            continue
        current = " aria-current='page' class='fg-active'" if section.key == active else ""
        nav.append(f"<a id='fg-nav-{section.key}' href='{section.path}'{current}>{escape(section.label)}</a>")
    nav += [
        "</nav><div class='fg-who'>",
        "<a id='fg-mlflow' href='/'>MLflow UI</a>",
        f"<span id='fg-user'>{escape(viewer.name)}</span>",
        f"<form method='post' action='{SIGN_OUT_PATH}' class='fg-sign-out'>",
        "<button type='submit' id='fg-sign-out'>Sign out</button></form>",
        "</div></header>",
    ]
    main = [f"<main id='fg-main'><h1>{escape(title)}</h1>", body, "</main></body></html>"]
    return "".join(head + nav + main)
