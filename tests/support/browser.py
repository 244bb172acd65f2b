"""A real headless Chromium for the web UI's end-to-end tests: Debian's `chromium`, driven by Playwright.

Playwright's own browser downloads are never used: the tests launch the system's chromium by its path
(`FEDGATE_CHROMIUM`, else `chromium` on PATH; `.ci/run` installs the Debian package). One browser serves
the whole test session; each test gets contexts of its own (cookies, storage), which are cheap.
Screenshots go to `test-artifacts/ui/` at the repository root (README, "The web UI").
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def chromium_path() -> str | None:
    return os.environ.get("FEDGATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def png(width: int, height: int) -> bytes:
    """A small real PNG (a colour gradient), for an image artifact the UI previews."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
