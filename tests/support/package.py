"""The package tree copied out of the checkout, for tests of what the tree itself decides (layers, package data)."""

from __future__ import annotations

import shutil
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
TREE = ("gateway", "adapters", "pyproject.toml")


def copy_tree(target: Path, parts: tuple[str, ...] = TREE) -> Path:
    """Copy `parts` of the checkout (packages without their byte code, files as they are) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for part in parts:
        source = CHECKOUT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / part)
    return target
