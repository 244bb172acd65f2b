"""A file of MLflow's build asked for under a name or path longer than the file system holds is no file of the
build (404), where the file system's `File name too long` was raised (500 from `GET /static-files/...`)."""

from __future__ import annotations

from pathlib import Path

from gateway.ui.static import UiBuild


async def test_a_name_or_path_too_long_for_the_file_system_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "main.js").write_text("boot = () => 1;")
    build = UiBuild(tmp_path)
    assert await build.file("main.js", "") is not None
    for relative in ("a" * 256, "é" * 128 + ".js", "/".join(["b" * 200] * 25)):
        assert build.locate(relative) is None
        assert await build.file(relative, "gzip") is None
