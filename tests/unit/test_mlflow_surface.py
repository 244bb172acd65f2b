"""The route table against MLflow's own route map: every route MLflow serves is decided on, and every declared
route reaches a path the store serves.

The map is read from the installed `mlflow` package (tests/support/mlflow_surface.py). An MLflow upgrade that
adds a route fails `test_every_route_mlflow_serves_is_declared_or_not_served` until someone declares it in
gateway/core/route_table.py (with its guard rule) or adds it to a family of `NOT_SERVED`, with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.core.route_table import (
    FORWARDED_ROUTES,
    NOT_SERVED,
    SERVER_INFO,
    UI_ROUTES,
    WORKSPACE_ROUTES,
    RouteSpec,
    declared,
)
from tests.support.mlflow_surface import basic_auth_routes, mlflow_routes, normalised

pytest.importorskip("mlflow.server")

README = Path(__file__).resolve().parents[2] / "README.md"
# Answered by the gateway's own operations endpoints, not forwarded (observability/routes.py).
GATEWAY_OPERATIONS = frozenset({"GET /health"})


@pytest.fixture(scope="module")
def served_by_mlflow() -> dict[str, str]:
    return mlflow_routes()


@pytest.fixture(scope="module")
def added_by_basic_auth() -> dict[str, str]:
    """The routes a store started with `--app-name basic-auth` serves beyond the default map."""
    return basic_auth_routes()


def _client_routes(spec: RouteSpec) -> set[str]:
    return {f"{spec.method} {normalised(path)}" for path in spec.paths()}


def declared_routes() -> dict[str, RouteSpec]:
    """Every "METHOD /path" the gateway serves for MLflow's API (forwarded, or answered itself)."""
    found: dict[str, RouteSpec] = {}
    for spec in (*FORWARDED_ROUTES, *WORKSPACE_ROUTES, SERVER_INFO, *UI_ROUTES):
        for route in _client_routes(spec):
            assert route not in found, f"{route} is declared twice"
            found[route] = spec
    return found


def not_served_routes() -> dict[str, str]:
    found: dict[str, str] = {}
    for family in NOT_SERVED:
        for route in family.routes:
            assert route not in found, f"{route} is in the families {found[route]!r} and {family.family!r}"
            found[route] = family.family
    return found


def test_every_route_mlflow_serves_is_declared_or_not_served(served_by_mlflow: dict[str, str]) -> None:
    decided = set(declared_routes()) | set(not_served_routes()) | GATEWAY_OPERATIONS
    undecided = sorted(set(served_by_mlflow) - decided)
    assert undecided == [], (
        "MLflow serves routes nobody decided on: declare each in gateway/core/route_table.py (with a guard rule) "
        f"or add it to a family of NOT_SERVED with the reason: {undecided}"
    )


def test_every_declared_route_is_served_by_mlflow_at_the_same_path(served_by_mlflow: dict[str, str]) -> None:
    """Same path, same method, same /api or /ajax-api prefix: the gateway offers no alias MLflow lacks."""
    extra = sorted(set(declared_routes()) - set(served_by_mlflow))
    assert extra == [], f"declared, but MLflow does not serve them: {extra}"


def test_every_forwarded_route_reaches_a_path_the_store_serves(served_by_mlflow: dict[str, str]) -> None:
    """Both aliases go to `spec.upstream_prefix + path`, the path the forwarder sends (service.py)."""
    missing = []
    for spec in FORWARDED_ROUTES:
        upstream = f"{spec.method} {normalised(spec.upstream_prefix + spec.path)}"
        if upstream not in served_by_mlflow:
            missing.append(f"{spec.name} v{spec.version} -> {upstream}")
    assert missing == [], f"forwarded to paths the store does not serve: {missing}"


def test_every_route_the_basic_auth_app_adds_is_not_served(
    served_by_mlflow: dict[str, str], added_by_basic_auth: dict[str, str]
) -> None:
    """A store behind MLflow's basic-auth app (the gateway presents its admin's credentials: `[stores.<name>] auth`)
    serves its users, roles and permissions too. Forwarded under those credentials, any caller would administer the
    store's own accounts; each such route must be in a family of NOT_SERVED, so an MLflow upgrade adding one fails
    here instead of going unnoticed, and none may be declared."""
    assert added_by_basic_auth, "the basic-auth app added no route: the map was not read"
    assert not set(added_by_basic_auth) & set(served_by_mlflow)
    undecided = sorted(set(added_by_basic_auth) - set(not_served_routes()))
    assert undecided == [], f"basic-auth routes missing from NOT_SERVED: {undecided}"
    assert sorted(set(added_by_basic_auth) & set(declared_routes())) == []


def test_the_not_served_list_names_only_routes_mlflow_serves(
    served_by_mlflow: dict[str, str], added_by_basic_auth: dict[str, str]
) -> None:
    """A family entry MLflow no longer serves (renamed, removed) is stale: the list stays exact."""
    stale = sorted(set(not_served_routes()) - set(served_by_mlflow) - set(added_by_basic_auth))
    assert stale == [], f"NOT_SERVED names routes MLflow does not serve: {stale}"
    overlap = sorted(set(not_served_routes()) & set(declared_routes()))
    assert overlap == [], f"declared and not served at once: {overlap}"


def test_each_not_served_family_has_a_reason_and_is_in_the_readme() -> None:
    readme = README.read_text()
    section = readme[readme.index("## What is not served") :]
    section = section[: section.index("\n## ", 1)]
    for family in NOT_SERVED:
        assert family.reason and family.routes, family.family
        assert re.search(rf"^- \*\*{re.escape(family.family)}\*\*", section, re.M), (
            f"README's 'What is not served' does not list the family {family.family!r}"
        )


def test_search_datasets_exists_only_under_ajax_api(served_by_mlflow: dict[str, str]) -> None:
    """MLflow registers the UI's datasets summary under /ajax-api alone; the gateway mounts and forwards it there."""
    assert "POST /ajax-api/2.0/mlflow/experiments/search-datasets" in served_by_mlflow
    assert "POST /api/2.0/mlflow/experiments/search-datasets" not in served_by_mlflow
    spec = declared("POST /mlflow/experiments/search-datasets")
    assert spec.paths() == ["/ajax-api/2.0/mlflow/experiments/search-datasets"]
    assert spec.upstream_prefix == "/ajax-api/2.0"
    # Routes served under both prefixes keep forwarding either alias to /api, which every store serves.
    assert declared("POST /mlflow/runs/search").upstream_prefix == "/api/2.0"
