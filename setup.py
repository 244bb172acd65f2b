"""The one build step pyproject.toml cannot state: ship `policies/` inside the package, as `gateway/policies/`.

The policy's specification (the Casbin model and the static hierarchy rows) stays at the repository
root; an installed package carries its own copy, found with `importlib.resources.files("gateway")`.
Everything else about the build is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

POLICIES = Path(__file__).resolve().parent / "policies"


def ship_policies(build_lib: Path) -> list[Path]:
    """Copy every file of `policies/` into `<build_lib>/gateway/policies/`; the copies, in name order."""
    target = build_lib / "gateway" / "policies"
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for source in sorted(POLICIES.iterdir()):
        if source.is_file():
            copies.append(Path(shutil.copy2(source, target / source.name)))
    return copies


class BuildPy(build_py):
    """build_py, then the policy files: a wheel holds whatever the build directory holds."""

    def run(self) -> None:
        super().run()
        ship_policies(Path(self.build_lib))


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPy})
