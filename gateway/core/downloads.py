"""The headers of a file sent to a browser's origin: a download is a user's upload, and must never run or render
as the gateway's own page (where the web UI's and the console's sessions live)."""

from __future__ import annotations

from collections.abc import Mapping

# What every file a download route sends carries, whatever the store said: a file is a user's upload (HTML, SVG),
# and rendered in the gateway's origin its script would act with the web UI's session. MLflow sends an attachment
# with `nosniff` itself; a store that does not (another MLflow-compatible server, a proxy in front of one) had its
# file rendered. The sandbox, with nothing allowed, keeps a browser that renders it anyway from running a script or
# counting it as the gateway's origin. The web UI reads files with fetch(), which none of this changes.
DOWNLOAD_POLICY = "sandbox; default-src 'none'; frame-ancestors 'none'"
ATTACHMENT = "attachment"
# The types a page runs or applies a file of its own origin as (`<script>`, a worker, a service worker, a module,
# `<link rel=stylesheet>`): the JavaScript MIME types of the WHATWG MIME Sniffing standard, and CSS. The pages'
# policies allow scripts and styles from the gateway's origin (`script-src 'self'`), and a download is a file of
# that origin: MLflow serves a `.mjs` or `.es` upload as text/javascript, a `.css` one as text/css. Sent so, a
# person's upload was a script any markup put into MLflow's page or the console could run with the viewer's
# session (or register as the origin's service worker), whatever the policy. As `text/plain`, with `nosniff`, no
# browser runs or applies it; the UI reads files with fetch(), which the type does not change.
RUNNABLE_TYPES = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/javascript",
        *(f"text/javascript1.{minor}" for minor in range(6)),
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
        "text/css",
    }
)
INERT_TYPE = "text/plain"


def inert_content_type(value: str) -> str:
    """A download's Content-Type as sent: the store's, unless a browser would run or apply a file of that type
    (RUNNABLE_TYPES), then `text/plain` with the store's parameters. A browser reads the last type of a list
    (`text/plain, text/javascript`), so any one of a list counts."""
    pieces = value.split(",")
    if not any(piece.split(";", 1)[0].strip().lower() in RUNNABLE_TYPES for piece in pieces):
        return value
    _, sep, parameters = pieces[0].partition(";") if len(pieces) == 1 else ("", "", "")
    return f"{INERT_TYPE}{sep}{parameters}"


def download_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A download's headers: the store's, its disposition made an attachment, a type no page runs as a script or
    applies as a style sheet, with `nosniff`, a sandbox, and caching private to the browser."""
    replaced = ("x-content-type-options", "content-security-policy", "cache-control")
    kept = {k: v for k, v in headers.items() if k.lower() not in replaced}
    disposition = next((k for k in kept if k.lower() == "content-disposition"), None)
    if disposition is None:
        kept["Content-Disposition"] = ATTACHMENT
    elif not kept[disposition].strip().lower().startswith(ATTACHMENT):
        # `inline; filename=x.html` keeps its file name, as an attachment.
        _, sep, rest = kept[disposition].partition(";")
        kept[disposition] = f"{ATTACHMENT}{sep}{rest}"
    for name in [k for k in kept if k.lower() == "content-type"]:
        kept[name] = inert_content_type(kept[name])
    kept["X-Content-Type-Options"] = "nosniff"
    kept["Content-Security-Policy"] = DOWNLOAD_POLICY
    # The caller's file, asked for with a token or the web UI's cookie: never in a shared cache (a cookie is no
    # Authorization header, whose answers a shared cache keeps only when told), never reused without asking.
    store_said = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
    kept["Cache-Control"] = "private, no-store" if "no-store" in store_said.lower() else "private, no-cache"
    return kept
