"""The MLflow web UI's static build, served by the gateway: the files of the installed `mlflow` wheel.

`pip install 'fedgate[ui]'` brings the `mlflow` wheel, whose `mlflow/server/js/build` holds the compiled UI
(index.html, hashed JavaScript and CSS chunks, fonts, images). The build is found without importing mlflow.

Every answer has its content type from the file name, `X-Content-Type-Options: nosniff`, and may not be framed
(`X-Frame-Options: DENY`, `frame-ancestors 'none'`); an HTML file also gets the UI's script policy (APP_POLICY,
its inline scripts pinned by hash). Files whose
name carries a content hash (`main.c2f5f8d4.js`) are cached by browsers for a year (`immutable`); the
others (index.html, the manifest, the favicon) are revalidated each time. A precompressed sibling
(`.br`, `.gz`) is sent when the browser accepts it; otherwise text files are gzipped on first use and
kept compressed in memory (bounded), so each is compressed once per process.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import importlib.util
import mimetypes
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import InvalidParameter
from gateway.core.paths import canonical_artifact_path

HASHED_NAME = re.compile(r"\.[0-9a-f]{8,}\.(?:chunk\.)?[A-Za-z0-9]+\Z")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESSIBLE = frozenset({".js", ".css", ".html", ".json", ".map", ".svg", ".txt", ".ico", ".xml"})
MIN_COMPRESS_BYTES = 1024
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".wasm": "application/wasm",
}


# MLflow's page (index.html, also served with the gateway's bar at `/`) and the build's other HTML files run
# the build's scripts with the person's session. Their policy allows what MLflow 3.17.2's UI uses and no more:
# its script files from the gateway (no 'unsafe-eval': the bundle's `Function(...)` calls are fallbacks it does
# not reach in a browser) and the inline scripts of the HTML file served, pinned by their SHA-256 as read from
# that file (the 3.17.2 build has none; a build that adds one keeps working, and a script put into the page by
# anyone else does not run); its calls to the gateway only; its workers (Monaco's, pdf.js's, the telemetry
# worker) from the gateway; the style elements and attributes of its components; images and fonts from the
# gateway or inlined (`data:`), previews of artifacts read into the page (`blob:`); an HTML artifact in a
# `blob:` frame (which keeps this policy, so an uploaded page's scripts do not run); no plugins; `<base>` only
# to the gateway (the trace renderer's `<base href="/">`). No form-action: sign-out's answer may redirect to
# the identity provider, which form-action would block.
APP_POLICY = (
    "default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; media-src 'self' blob:; "
    "frame-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_SCRIPT_SRC = re.compile(rb"\ssrc\s*=", re.IGNORECASE)
_SCRIPT_TYPE = re.compile(rb"""\stype\s*=\s*["']?\s*([^"'\s>]*)""", re.IGNORECASE)
_RUN_TYPES = frozenset({b"", b"text/javascript", b"application/javascript", b"module"})


def inline_script_hashes(html: bytes) -> list[str]:
    """The CSP source of each inline script `html` runs (`'sha256-...'`), in order, each once: its text as the
    browser's HTML parser hands it over (line ends made LF) hashed. Scripts with `src` and data blocks
    (`type="application/json"`) need none."""
    found: list[str] = []
    for attributes, text in _SCRIPT.findall(html):
        if _SCRIPT_SRC.search(attributes):
            continue
        kind = _SCRIPT_TYPE.search(attributes)
        if kind is not None and kind.group(1).lower() not in _RUN_TYPES:
            continue
        digest = hashlib.sha256(text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")).digest()
        source = f"'sha256-{base64.b64encode(digest).decode()}'"
        if source not in found:
            found.append(source)
    return found


def app_policy(html: bytes) -> str:
    """The Content-Security-Policy of an HTML page of the build, `html` being the file as served."""
    hashes = inline_script_hashes(html)
    return APP_POLICY.format(hashes="".join(f" {each}" for each in hashes))


# No file of the build may be shown in another site's frame. Its HTML files are pages of the gateway's origin
# that run MLflow's scripts with the person's session (the notebook trace renderer shows a trace, buttons and
# all, from its URL alone): framed by a sibling host, whose frames get the SameSite=Lax cookie, they would take
# clicks meant for the framing page (clickjacking), and their requests are same-origin to the cross-site checks.
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def find_build() -> Path | None:
    """`mlflow/server/js/build` of the installed mlflow wheel, or None without it (the `ui` extra)."""
    spec = importlib.util.find_spec("mlflow")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        build = Path(location) / "server" / "js" / "build"
        if (build / "index.html").is_file():
            return build
    return None


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    headers: dict[str, str]


class UiBuild:
    """Files of one build directory; compressed copies kept in a bounded in-memory cache."""

    def __init__(self, root: Path, cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root.resolve()
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[str, str], StaticFile] = OrderedDict()
        self._cached = 0
        self._lock = asyncio.Lock()

    def index_html(self) -> bytes:
        return (self.root / "index.html").read_bytes()

    def locate(self, relative: str) -> Path | None:
        """The file at `relative` inside the build, or None; a path that could leave the build is refused."""
        try:
            relative = canonical_artifact_path(relative.lstrip("/"))
        except InvalidParameter:
            return None
        try:
            path = (self.root / relative).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                return None
        except OSError:  # a name or path longer than the file system holds (ENAMETOOLONG): no file of the build
            return None
        return path

    async def file(self, relative: str, accept_encoding: str) -> StaticFile | None:
        path = self.locate(relative)
        if path is None:
            return None
        encodings = _accepted(accept_encoding)
        key = (str(path), "gzip" if "gzip" in encodings else "")
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        found = await asyncio.to_thread(_read, path, encodings)
        async with self._lock:
            self._remember(key, found)
        return found

    def _remember(self, key: tuple[str, str], found: StaticFile) -> None:
        size = len(found.body)
        if size > self.cache_bytes // 8:
            return
        if key in self._cache:
            return
        self._cache[key] = found
        self._cached += size
        while self._cached > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped.body)


def _accepted(header: str) -> set[str]:
    """The content codings of an Accept-Encoding header, less those given q=0."""
    found = set()
    for part in header.lower().split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        weight = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            if name and float(weight) > 0:
                found.add(name)
        except ValueError:
            continue
    return found


def _read(path: Path, encodings: set[str]) -> StaticFile:
    suffix = path.suffix.lower()
    media = CONTENT_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "Content-Type": media,
        "Cache-Control": IMMUTABLE if HASHED_NAME.search(path.name) else REVALIDATE,
        "X-Content-Type-Options": "nosniff",
        **NOT_FRAMED,
        "Vary": "Accept-Encoding",
    }
    if suffix == ".html":  # a page that runs the build's scripts: the UI's policy, with this file's hashes
        headers["Content-Security-Policy"] = app_policy(path.read_bytes())
    for encoding, extension in (("br", ".br"), ("gzip", ".gz")):
        sibling = path.with_name(path.name + extension)
        if encoding in encodings and sibling.is_file():
            return StaticFile(sibling.read_bytes(), {**headers, "Content-Encoding": encoding})
    body = path.read_bytes()
    if "gzip" in encodings and suffix in COMPRESSIBLE and len(body) >= MIN_COMPRESS_BYTES:
        return StaticFile(gzip.compress(body, compresslevel=6, mtime=0), {**headers, "Content-Encoding": "gzip"})
    return StaticFile(body, headers)
