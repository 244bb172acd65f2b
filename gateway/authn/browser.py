"""What a browser request is, seen from the gateway: its origin, the session cookie, cross-site checks.

Cross-site request forgery. A request authenticated by the session cookie that may change something
(any method but GET, HEAD and OPTIONS; GraphQL is POST too) must come from the gateway's own pages:

- when the browser sends `Sec-Fetch-Site` (every current browser does over https and on localhost), it
  must be `same-origin`;
- otherwise its `Origin` must be the gateway's origin (`ui.public_url`, else scheme and Host of the
  request); browsers send Origin with every POST, PUT, PATCH and DELETE of fetch() and of forms;
- a request with neither is refused.

A header check rather than a token: the stock MLflow UI sends its own requests (fetch, Apollo) and cannot
be taught to copy a token from a cookie into a header, but the browser itself states where every request
comes from, in headers a page cannot set. The cookie is SameSite=Lax as well, so another site's page
cannot even make the browser send it with a POST, and reads (GET) return nothing another site could see
(no CORS headers are ever sent). Requests with an `Authorization` header never carry the cookie's
authority and are held to less: a browser adds only one kind of them by itself, Basic credentials it
was once asked for (the gateway's 401 names `Basic`, and a person who opened an API URL may have typed a
token into the browser's prompt), which it then sends with every request to the gateway, a form another
site posts included. So a write with a `Basic` header that a browser says comes from another site
(`Sec-Fetch-Site` other than `same-origin` or `none`, else an `Origin` not the gateway's) is refused as
well; clients (MLflow's, with `MLFLOW_TRACKING_USERNAME/PASSWORD`) send neither header. A `Bearer` header
is never added by a browser, and a page of another site can set it only through CORS, which the gateway
never allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from gateway.core.errors import PermissionDenied

SESSION_COOKIE = "fedgate_session"
SECURE_SESSION_COOKIE = "__Host-fedgate_session"  # Secure, Path=/, no Domain: no subdomain can set it
SIGN_IN_COOKIE = "fedgate_sign_in"
SECURE_SIGN_IN_COOKIE = "__Host-fedgate_sign_in"
COOKIE_SPACE = " \t"  # the only characters around a cookie's name or value that are not part of it
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
CROSS_SITE = "This request did not come from the gateway's own pages (cross-site requests are refused)."


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BrowserOrigin:
    """The gateway's origin for browsers: `public_url` when configured, else what each request says."""

    def __init__(self, public_url: str = "") -> None:
        self.public_origin = _origin_of(public_url) if public_url else None

    def origin(self, scope: Mapping[str, Any]) -> str:
        if self.public_origin is not None:
            return self.public_origin
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        host = header(scope, b"host") or ""
        return _origin_of(f"{scheme}://{host}") or f"{scheme}://invalid"

    def secure(self, scope: Mapping[str, Any]) -> bool:
        return self.origin(scope).startswith("https://")

    def session_cookie(self, scope: Mapping[str, Any]) -> str:
        return SECURE_SESSION_COOKIE if self.secure(scope) else SESSION_COOKIE

    def sign_in_cookie(self, scope: Mapping[str, Any]) -> str:
        return SECURE_SIGN_IN_COOKIE if self.secure(scope) else SIGN_IN_COOKIE

    def require_same_origin(self, scope: Mapping[str, Any]) -> None:
        """Refuse (403) a request a browser says came from another site, or that cannot say where it came from."""
        site = header(scope, b"sec-fetch-site")
        if site is not None:
            if site.strip().lower() != "same-origin":
                raise PermissionDenied(CROSS_SITE)
            return
        origin = header(scope, b"origin")
        if origin is None or _origin_of(origin.strip()) != self.origin(scope):
            raise PermissionDenied(CROSS_SITE)

    def refuse_cross_site(self, scope: Mapping[str, Any]) -> None:
        """Refuse (403) a request a browser says came from another site; one that says nothing passes."""
        site = header(scope, b"sec-fetch-site")
        if site is not None:
            if site.strip().lower() not in ("same-origin", "none"):
                raise PermissionDenied(CROSS_SITE)
            return
        origin = header(scope, b"origin")
        if origin is not None and _origin_of(origin.strip()) != self.origin(scope):
            raise PermissionDenied(CROSS_SITE)


def cookie_values(scope: Mapping[str, Any], name: str) -> list[str]:
    """Every value the browser sent for the cookie `name` (a browser may send one name more than once).

    Names are compared exactly, with only the spaces and tabs around them dropped (RFC 6265 §5.4): a browser
    keeps and sends any other byte of a name. Python's `str.strip()` also drops U+0085 and U+00A0, and with it
    a cookie a plain-http sibling host named `\\x85__Host-fedgate_session` (Chromium stores that without the
    prefix's rules, it does not start with `__Host-`) was read as the gateway's own `__Host-` session.
    """
    found: list[str] = []
    for key, value in scope.get("headers", ()):
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            cookie_name, sep, cookie_value = part.partition("=")
            if sep and cookie_name.strip(COOKIE_SPACE) == name:
                found.append(cookie_value.strip(COOKIE_SPACE).strip('"'))
    return found


def session_value(scope: Mapping[str, Any], name: str) -> str | None:
    """The one session id the browser sent. Two values (a cookie set by a sibling host beside the gateway's
    own, possible without `__Host-`) are ambiguous: neither is used."""
    values = cookie_values(scope, name)
    return values[0] if len(values) == 1 and values[0] else None


def local_path(candidate: str | None, default: str = "/") -> str:
    """Where to send a browser after sign-in: a path on this gateway, never another site.

    Only an absolute path is taken (`/`, `/#/experiments/1`): no scheme, no host, no `//` or `/\\` (which
    browsers read as another host), no control characters; anything else becomes `default`. Characters
    beyond ASCII are percent-encoded, as a browser would: the path goes into a Location header.
    """
    if not candidate or len(candidate) > 2000 or not candidate.startswith("/"):
        return default
    if candidate.startswith(("//", "/\\")) or any(ord(c) < 0x20 or c in "\\\x7f" for c in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    return candidate if candidate.isascii() else "".join(c if c.isascii() else quote(c, safe="") for c in candidate)
