"""The console's static files (its JavaScript, CSS and vendored libraries), served from the package itself.

Every URL carries the file's content digest (`/fedgate/console/static/<digest>/dashboards.js`): a browser
may keep it for a year (`immutable`), and a new release changes the URL of exactly the files that changed.
A URL with an outdated digest (a page cached from before an upgrade) still gets the current file, revalidated
on every use. Nothing is fetched from another host: the gateway may run offline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gateway.ui.static import IMMUTABLE, REVALIDATE, StaticFile, UiBuild

STATIC_ROOT = Path(__file__).with_name("static")
STATIC_PREFIX = "/fedgate/console/static"
DIGEST_LENGTH = 12


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # the path under static/ ("dashboards.js", "vendor/chart.umd.min.js")
    digest: str

    @property
    def url(self) -> str:
        return f"{STATIC_PREFIX}/{self.digest}/{self.name}"


class ConsoleAssets:
    """The files under `root`, each with its digest; read once at start-up, compressed copies kept in memory."""

    def __init__(self, root: Path = STATIC_ROOT) -> None:
        self.root = root.resolve()
        self._files = UiBuild(self.root, cache_bytes=16 * 1024 * 1024)
        self._digests: dict[str, str] = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_LENGTH]
                self._digests[path.relative_to(self.root).as_posix()] = digest

    def names(self) -> list[str]:
        return sorted(self._digests)

    def url(self, name: str) -> str:
        """The URL of static/`name`; KeyError for a file that is not there (a typo fails at the first render)."""
        return Asset(name, self._digests[name]).url

    async def file(self, digest: str, name: str, accept_encoding: str) -> StaticFile | None:
        current = self._digests.get(name)
        if current is None:
            return None
        found = await self._files.file(name, accept_encoding)
        if found is None:
            return None
        caching = IMMUTABLE if digest == current else REVALIDATE
        return StaticFile(found.body, {**found.headers, "Cache-Control": caching})
