"""The gateway's own pages: the sign-in page, and the bar it adds to MLflow's page (who, sign out; no assistant).

Plain HTML and CSS, no script: the token field is posted by the browser as a form, so the token never
meets page JavaScript and never appears in a URL. Every page is sent with a Content-Security-Policy that
allows no script at all and forms to the gateway only, and may not be framed.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from urllib.parse import quote

from gateway.authn.browser import local_path

SIGN_IN_PATH = "/fedgate/sign-in"
TOKEN_SIGN_IN_PATH = "/fedgate/sign-in/token"
OIDC_SIGN_IN_PATH = "/fedgate/sign-in/oidc"
SIGN_OUT_PATH = "/fedgate/sign-out"
RESUME_PATH = "/fedgate/sign-in/resume"

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# MLflow's own page: it runs its bundled scripts (and inline styles of its components). Its
# Content-Security-Policy is made from the served index.html (gateway/ui/static.py, app_policy) by WebUi.
APP_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; background: #f4f6f8;
       margin: 0; color: #1f272d; }
main { max-width: 380px; margin: 12vh auto; background: #fff; border-radius: 8px; padding: 32px;
       box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h1 { font-size: 20px; margin: 0 0 4px; } p { color: #5f7281; font-size: 14px; margin: 0 0 20px; }
label { display: block; font-size: 13px; font-weight: 600; margin-bottom: 6px; }
input[type=password] { width: 100%; box-sizing: border-box; padding: 8px 10px; border: 1px solid #c4ccd3;
       border-radius: 4px; font-size: 14px; margin-bottom: 14px; }
button, a.button { display: block; width: 100%; box-sizing: border-box; text-align: center; padding: 9px;
       border-radius: 4px; font-size: 14px; cursor: pointer; text-decoration: none; }
button { background: #2272b4; color: #fff; border: 0; }
a.button { background: #fff; color: #2272b4; border: 1px solid #2272b4; margin-bottom: 18px; }
.or { text-align: center; color: #8a99a6; font-size: 12px; margin: 0 0 18px; }
.error { background: #fdecea; color: #a0281e; border-radius: 4px; padding: 8px 10px; font-size: 13px;
       margin-bottom: 16px; }
.note { font-size: 12px; color: #8a99a6; margin-top: 16px; }
"""


def sign_in_page(next_path: str, *, provider: str | None, error: str | None = None) -> str:
    """The sign-in page: the identity provider's button (when configured) and the personal access token form."""
    target = escape(local_path(next_path), quote=True)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        "<link rel='icon' href='data:,'>",  # no favicon request (the gateway has none to give)
        f"<title>Sign in · fedgate</title><style>{_STYLE}</style></head><body><main>",
        "<h1>Sign in to MLflow</h1><p>through fedgate, for every workspace you may use</p>",
    ]
    if error:
        parts.append(f"<div class='error' role='alert'>{escape(error)}</div>")
    if provider:
        href = escape(f"{OIDC_SIGN_IN_PATH}?next={quote(local_path(next_path), safe='')}", quote=True)
        parts.append(f"<a class='button' id='sign-in-oidc' href='{href}'>Sign in with {escape(provider)}</a>")
        parts.append("<div class='or'>or with a personal access token</div>")
    parts.append(
        f"<form method='post' action='{TOKEN_SIGN_IN_PATH}' autocomplete='off'>"
        f"<input type='hidden' name='next' value='{target}'>"
        "<label for='token'>Personal access token</label>"
        "<input type='password' id='token' name='token' required autocomplete='off' spellcheck='false'>"
        "<button type='submit' id='sign-in-token'>Sign in</button></form>"
        "<div class='note'>Create one with <code>fedgate tokens create</code> or ask an account admin.</div>"
        "</main></body></html>"
    )
    return "".join(parts)


# A link into the UI (`/#/experiments/1/runs/...`) keeps its place across sign-in. The part after `#` never
# reaches the server, but a browser keeps it across a redirect whose Location has none: `/` sends a
# browser without a session here, and this page's one script (allowed by its hash, nothing else) puts it
# into `next` of the sign-in page. The sign-in page itself stays without script: the token field never
# shares a page with JavaScript. Without script, the meta refresh goes to sign-in with `next=/`.
_RESUME_SCRIPT = (
    'var h=location.hash;location.replace("' + SIGN_IN_PATH + '?next="+encodeURIComponent("/"+'
    '(h.length>1&&h.length<1800?h:"")));'
)
_RESUME_HASH = base64.b64encode(hashlib.sha256(_RESUME_SCRIPT.encode()).digest()).decode()
RESUME_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        f"default-src 'none'; script-src 'sha256-{_RESUME_HASH}'; img-src data:; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
}


def resume_page() -> str:
    """The hop between a link opened without a session and the sign-in page, keeping the link's `#` part."""
    fallback = escape(f"{SIGN_IN_PATH}?next=%2F", quote=True)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
        "<title>Sign in · fedgate</title>"
        f"<noscript><meta http-equiv='refresh' content='0;url={fallback}'></noscript>"
        f"<script>{_RESUME_SCRIPT}</script></head>"
        f"<body><a href='{fallback}'>Sign in</a></body></html>"
    )


def signed_in_bar(name: str) -> str:
    """What the gateway adds to MLflow's page: who is signed in, and a sign-out button (a same-origin POST)."""
    return (
        "<form id='fedgate-bar' method='post' action='" + SIGN_OUT_PATH + "' style='position:fixed;right:12px;"
        "bottom:10px;z-index:2147483647;margin:0;font:12px -apple-system,Segoe UI,Roboto,sans-serif;"
        "background:rgba(255,255,255,.92);border:1px solid #d1d9e1;border-radius:14px;padding:3px 4px 3px 10px;"
        "box-shadow:0 1px 3px rgba(0,0,0,.12)'>"
        f"<span id='fedgate-user' style='color:#5f7281;margin-right:6px'>{escape(name)}</span>"
        "<button type='submit' id='fedgate-sign-out' style='border:0;background:#2272b4;color:#fff;"
        "border-radius:10px;padding:3px 10px;font:inherit;cursor:pointer'>Sign out</button></form>"
    )


# MLflow's assistant runs a coding agent on the server's host and is served to localhost only; the gateway
# never forwards it (route_table.py, not served). Its panel, its floating button and its "Analyze with
# Assistant" buttons all carry `data-assistant-ui`; on a page opened at localhost the UI would open the
# panel by itself. Hidden by a style rule rather than left to fail.
HIDE_ASSISTANT = "<style id='fedgate-no-assistant'>[data-assistant-ui]{display:none!important}</style>"


def with_bar(index_html: bytes, name: str) -> bytes:
    """MLflow's index.html with the bar (and the rule hiding the assistant) just before </body>."""
    bar = (HIDE_ASSISTANT + signed_in_bar(name)).encode()
    marker = b"</body>"
    at = index_html.rfind(marker)
    if at < 0:
        return index_html + bar
    return index_html[:at] + bar + index_html[at:]
