"""`policies/` ships inside the package: an installed gateway reads its own copy, a checkout the root's."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import gateway
from tests.support.casbin_bridge import CHECKOUT_POLICIES, policy_files
from tests.support.package import CHECKOUT, copy_tree

# Run where only the copy under `site` (first on the path) and the checkout's tests can be imported.
LOAD = """
import json, gateway
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from tests.support.casbin_bridge import build_enforcer, casbin_allows, policy_files
grants = [Grant(1, "account", "catalog:system", "SELECT"), Grant(1, "w1", "experiment:w1/1", "CAN_EDIT")]
enforcer = build_enforcer(PolicySnapshot(1, {1: PrincipalInfo(1, "user", "u")}, [], grants))
print(json.dumps({
    "gateway": gateway.__file__,
    "policies": str(policy_files()),
    "inherited": casbin_allows(enforcer, 1, "account", "table:system.mlflow.runs_latest", "SELECT"),
    "implied": casbin_allows(enforcer, 1, "w1", "experiment:w1/1", "CAN_READ"),
    "beyond": casbin_allows(enforcer, 1, "w1", "experiment:w1/1", "CAN_MANAGE"),
}))
"""


def ship_policies(build_lib: Path) -> list[Path]:
    """The build hook of setup.py, the step that puts the policy files into the wheel."""
    hook = runpy.run_path(str(CHECKOUT / "setup.py"), run_name="build_hook")
    copies: list[Path] = hook["ship_policies"](build_lib)
    return copies


def test_the_build_hook_ships_every_policy_file(tmp_path: Path) -> None:
    copies = ship_policies(tmp_path)
    sources = sorted(path for path in CHECKOUT_POLICIES.iterdir() if path.is_file())
    assert [copy.relative_to(tmp_path).as_posix() for copy in copies] == [
        f"gateway/policies/{source.name}" for source in sources
    ]
    assert {"model.conf", "hierarchy.csv"} <= {source.name for source in sources}
    assert all(copy.read_bytes() == source.read_bytes() for copy, source in zip(copies, sources, strict=True))


def test_an_installed_package_reads_its_own_copy(tmp_path: Path) -> None:
    site = copy_tree(tmp_path / "site", ("gateway",))
    ship_policies(site)
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(CHECKOUT)])},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(loaded.stdout)
    assert answer["gateway"] == str(site / "gateway" / "__init__.py")
    assert answer["policies"] == str(site / "gateway" / "policies")
    # The model and the hierarchy rows were read: system tables sit in their catalog, levels imply lower ones.
    assert answer["inherited"] is True and answer["implied"] is True and answer["beyond"] is False


def test_a_checkout_reads_the_policies_at_its_root() -> None:
    assert not (Path(gateway.__file__).parent / "policies").exists()
    assert policy_files() == CHECKOUT_POLICIES
