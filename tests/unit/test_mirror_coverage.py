"""Every write route of MLflow's server is decided on for dual mode: mirrored, or not mirrored for a stated reason.

The write routes are read from the installed `mlflow` package at test time (tests/support/mlflow_surface.py): every
route it serves with POST, PUT, PATCH or DELETE. A route MLflow adds fails `test_every_write_route_is_mirrored_or_
not_mirrored_for_a_reason` until it carries the `MIRRORED` trait (gateway/core/route_table.py, applied by
gateway/dual/mirror.py) or sits in a family of gateway/dual/coverage.py's `NOT_MIRRORED`, which the docs list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.route_table import FORWARDED_ROUTES, NOT_SERVED, SERVER_INFO, UI_ROUTES, WORKSPACE_ROUTES, RouteSpec
from gateway.dual.coverage import NOT_MIRRORED, not_mirrored, route_key
from gateway.dual.mirror import MIRRORED_ROUTES
from tests.support.mlflow_surface import mlflow_routes, normalised

pytest.importorskip("mlflow.server")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dual-tracking.md"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@pytest.fixture(scope="module")
def mlflow_writes() -> set[str]:
    """Every "METHOD /path" MLflow serves with a method that may write."""
    return {route for route in mlflow_routes() if route.split(" ", 1)[0] in WRITE_METHODS}


def served() -> dict[str, RouteSpec]:
    """What the gateway serves, by "METHOD /path" as a client calls it (both aliases of a route)."""
    found: dict[str, RouteSpec] = {}
    for spec in (*FORWARDED_ROUTES, *WORKSPACE_ROUTES, SERVER_INFO, *UI_ROUTES):
        for path in spec.paths():
            found[f"{spec.method} {normalised(path)}"] = spec
    return found


def refused() -> set[str]:
    return {route for family in NOT_SERVED for route in family.routes}


def test_every_write_route_is_mirrored_or_not_mirrored_for_a_reason(mlflow_writes: set[str]) -> None:
    specs, decided = served(), not_mirrored()
    undecided = []
    for route in sorted(mlflow_writes - refused()):
        spec = specs.get(route)
        assert spec is not None, f"{route}: MLflow serves it and the route table has no word on it"
        if not spec.mirrored and route_key(spec) not in decided:
            undecided.append(route)
    assert undecided == [], (
        "write routes neither mirrored (the MIRRORED trait, applied by gateway/dual/mirror.py) nor in a family of "
        f"gateway/dual/coverage.py's NOT_MIRRORED with the reason: {undecided}"
    )


def test_no_route_is_both_mirrored_and_not_mirrored() -> None:
    decided = not_mirrored()
    both = sorted(route_key(spec) for spec in FORWARDED_ROUTES if spec.mirrored and route_key(spec) in decided)
    assert both == []


def test_the_not_mirrored_table_names_only_write_routes_mlflow_serves(mlflow_writes: set[str]) -> None:
    specs = served()
    keys = {route_key(specs[route]) for route in mlflow_writes if route in specs}
    stale = sorted(set(not_mirrored()) - keys)
    assert stale == [], f"NOT_MIRRORED names routes MLflow does not serve as writes: {stale}"


def test_the_writes_a_user_makes_to_logged_models_and_runs_are_mirrored() -> None:
    """The ones found unmirrored: a logged model's tag deleted, a logged model deleted, a model recorded in a run, a
    file deleted through the artifact proxy."""
    for name in (
        "DELETE /mlflow/logged-models/{model_id:str}/tags/{tag_key:str}",
        "DELETE /mlflow/logged-models/{model_id:str}",
        "POST /mlflow/runs/log-model",
        "DELETE /mlflow-artifacts/artifacts/{artifact_path:path}",
    ):
        assert name in MIRRORED_ROUTES, name


def test_each_family_has_a_reason_and_is_in_the_docs() -> None:
    docs = DOCS.read_text()
    for family in NOT_MIRRORED:
        assert family.reason and family.routes, family.family
        assert f"| {family.family} |" in docs, f"docs/dual-tracking.md does not list {family.family!r}"
