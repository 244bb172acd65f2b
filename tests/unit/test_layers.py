"""The layer contract bites: one upward import makes `lint-imports` fail, naming that import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.package import copy_tree

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's configuration, over the packages under `root` alone."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_upward_import_breaks_the_layer_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    kept = lint(tree)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert " 0 broken." in kept.stdout

    errors = tree / "gateway" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport gateway.app  # noqa: E402, F401\n")
    broken = lint(tree)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "gateway.core is not allowed to import gateway.app" in broken.stdout
    assert "- gateway.core.errors -> gateway.app" in broken.stdout
