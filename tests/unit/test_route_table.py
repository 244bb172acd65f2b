"""Every route the app serves is declared, with the resource it touches and the action it needs."""

from __future__ import annotations

from litestar import Litestar

from gateway.app import create_app
from gateway.config import Settings, StoreSettings, WorkspaceSettings
from gateway.federation.route_table import FORWARDED_ROUTES, Action, Resource, RouteSpec

OPERATIONS = {"/health", "/health/live", "/health/ready", "/metrics"}


def build_app() -> Litestar:
    settings = Settings(
        stores={"s": StoreSettings(url="http://127.0.0.1:9")},
        workspaces=[WorkspaceSettings(name="team-a", id="1001", store="s")],
        admin_token="x" * 32,
    )
    return create_app(settings, "postgresql://nobody@127.0.0.1:9/none")


def served_routes(app: Litestar) -> list[tuple[str, str, object]]:
    served = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                served.append((method, route.path, handler.opt.get("route")))
    return served


def test_every_served_route_declares_resource_and_action() -> None:
    undeclared = []
    for method, path, spec in served_routes(build_app()):
        if path in OPERATIONS or method in ("HEAD", "OPTIONS"):
            continue
        if not isinstance(spec, RouteSpec) or not isinstance(spec.resource, Resource):
            undeclared.append(f"{method} {path}")
            continue
        assert isinstance(spec.action, Action)
        assert spec.method == method, f"{method} {path} is declared as {spec.method}"
    assert undeclared == []


def test_every_alias_of_every_declared_route_is_served() -> None:
    served = {(method, path) for method, path, _ in served_routes(build_app())}
    for spec in FORWARDED_ROUTES:
        for path in spec.paths():
            litestar_path = path.replace(":str}", "}").replace(":path}", "}")
            assert any(
                m == spec.method and p.replace(":str}", "}").replace(":path}", "}") == litestar_path for m, p in served
            ), f"{spec.method} {path} is declared but not served"


def test_both_prefixes_are_mounted_for_api_routes() -> None:
    paths = {path for _, path, _ in served_routes(build_app())}
    assert any(p.startswith("/ajax-api/2.0/mlflow-artifacts/") for p in paths)
    assert any(p.startswith("/ajax-api/3.0/mlflow/traces") for p in paths)
    assert "/api/2.0/mlflow/runs/log-batch" in paths and "/ajax-api/2.0/mlflow/runs/log-batch" in paths


def test_writes_never_declare_read_actions() -> None:
    for spec in FORWARDED_ROUTES:
        if spec.method in ("PUT", "PATCH", "DELETE"):
            assert spec.action not in (Action.READ, Action.SEARCH, Action.PUBLIC), spec.name
        if spec.resource is Resource.ARTIFACT and spec.method == "DELETE":
            assert spec.action is Action.MANAGE  # deleting artifacts is not an edit (CVE-2024-4263)
