"""Every route the app serves is declared, with the resource it touches and the action it needs."""

from __future__ import annotations

from litestar import Litestar

from gateway.app import create_app
from gateway.core.config import Settings, StoreSettings, WorkspaceSettings
from gateway.core.route_table import (
    FORWARDED_ROUTES,
    RUNS_CREATE,
    SERVER_INFO,
    UI_ROUTES,
    WORKSPACE_ROUTES,
    Action,
    Resource,
    RouteSpec,
    Trait,
    declared,
)
from gateway.federation.guard import rule_for
from gateway.federation.routes import mount_path
from gateway.principals.guards import is_account_admin_guard

OPERATIONS = {"/health", "/health/live", "/health/ready", "/health/stores", "/metrics"}
ADMIN_TOKEN = "x" * 32


def build_app() -> Litestar:
    settings = Settings(
        stores={"s": StoreSettings(url="http://127.0.0.1:9")},
        workspaces=[WorkspaceSettings(name="team-a", id="1001", store="s")],
        admin_token=ADMIN_TOKEN,
    )
    return create_app(settings, "postgresql://nobody@127.0.0.1:9/none")


def served_routes(app: Litestar, *, own_api: bool = False) -> list[tuple[str, str, object]]:
    """(method, path, RouteSpec) of every MLflow route; with own_api, the gateway's own API's access notes."""
    served = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if ("access" in handler.opt) == own_api:
                    served.append((method, route.path, handler.opt.get("access" if own_api else "route")))
    return served


def test_the_gateways_own_api_states_who_may_call_it() -> None:
    own = served_routes(build_app(), own_api=True)
    assert {path for _, path, _ in own} >= {
        "/api/2.0/preview/scim/v2/{resource:str}",
        "/api/2.0/token/create",
        "/api/2.0/permissions/{kind:str}/{object_id:str}",
        "/api/2.1/unity-catalog/permissions/{securable_type:str}/{full_name:str}",
        "/api/2.0/fedgate/audit-log",
        "/api/2.0/mlflow/transition-requests/create",
        "/api/2.0/mlflow/transition-requests/approve",
        "/api/2.0/mlflow/transition-requests/reject",
        "/api/2.0/mlflow/transition-requests/delete",
        "/api/2.0/mlflow/transition-requests/list",
        "/api/2.0/mlflow/comments/create",
        "/api/2.0/mlflow/comments/update",
        "/api/2.0/mlflow/comments/delete",
        "/api/2.0/mlflow/databricks/registered-models/get",
        "/api/2.0/mlflow/databricks/model-versions/transition-stage",
        "/api/2.0/mlflow/activities/list",
        "/api/2.0/mlflow/alias-requests/create",
        "/api/2.0/mlflow/alias-requests/approve",
        "/api/2.0/mlflow/alias-requests/reject",
        "/api/2.0/mlflow/alias-requests/delete",
        "/api/2.0/mlflow/alias-requests/list",
        "/api/2.0/mlflow/registry-settings/get",
        "/api/2.0/mlflow/registry-settings/update",
        "/api/2.0/mlflow/registry-webhooks/create",
        "/api/2.0/mlflow/registry-webhooks/update",
        "/api/2.0/mlflow/registry-webhooks/delete",
        "/api/2.0/mlflow/registry-webhooks/list",
        "/api/2.0/mlflow/registry-webhooks/test",
    }
    assert all(isinstance(note, str) and note for _, _, note in own)


def test_account_admin_routes_refuse_through_a_guard() -> None:
    """Admin-only routes carry the account-admin guard on their controller, not a call a handler could forget."""
    guarded: set[tuple[str, str]] = set()
    open_to_all: set[tuple[str, str]] = set()
    for route in build_app().routes:
        for handler in getattr(route, "route_handlers", []):
            admin = any(is_account_admin_guard(guard) for guard in handler.resolve_guards())
            for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                (guarded if admin else open_to_all).add((method, route.path))
                if handler.opt.get("access") == "account admins":
                    assert admin, f"{method} {route.path} is for account admins but has no guard"
    assert guarded >= {
        ("GET", "/api/2.0/preview/scim/v2/{resource:str}"),
        ("POST", "/api/2.0/preview/scim/v2/{resource:str}"),
        ("PATCH", "/api/2.0/preview/scim/v2/{resource:str}/{principal_id:int}"),
        ("DELETE", "/api/2.0/preview/scim/v2/{resource:str}/{principal_id:int}"),
        ("POST", "/api/2.0/token-management/on-behalf-of/tokens"),
        ("GET", "/api/2.0/token-management/tokens"),
        ("DELETE", "/api/2.0/token-management/tokens/{token_id:str}"),
        ("GET", "/api/2.0/fedgate/audit-log"),
        ("GET", "/api/2.0/fedgate/links"),
        ("POST", "/api/2.0/fedgate/links/{workspace_name:str}/dead-letters/retry"),
        ("POST", "/api/2.0/fedgate/links/{workspace_name:str}/dead-letters/discard"),
        ("POST", "/api/2.0/fedgate/index/sync"),
        ("POST", "/api/3.0/mlflow/workspaces"),
        ("PATCH", "/ajax-api/3.0/mlflow/workspaces/{workspace_name:str}"),
        ("DELETE", "/api/3.0/mlflow/workspaces/{workspace_name:str}"),
    }
    assert open_to_all >= {
        ("GET", "/api/2.0/preview/scim/v2/Me"),
        ("POST", "/api/2.0/token/create"),
        ("GET", "/api/2.0/token/list"),
        ("GET", "/api/3.0/mlflow/workspaces"),
        ("GET", "/api/3.0/mlflow/workspaces/{workspace_name:str}"),
    }


def test_the_openapi_document_shows_the_admin_schemas_to_authenticated_callers() -> None:
    """/schema is deny by default like every other route; what it lists are the Structs of the own API."""
    from litestar.testing import TestClient

    client = TestClient(build_app())  # no lifespan: nothing here needs the database or a store
    refused = client.get("/schema/openapi.json")
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"
    answer = client.get("/schema/openapi.json", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert set(document["components"]["schemas"]) >= {
        "ScimResource",
        "ScimList",
        "ScimCreate",
        "ScimPatch",
        "TokenCreated",
        "ManagedTokenList",
        "ObjectPermissions",
        "SetPermissions",
        "PermissionsList",
        "UpdatePermissions",
        "AuditEntries",
        "LinksStatus",
        "WorkspaceCreate",
        "SyncRequest",
    }
    scim = document["paths"]["/api/2.0/preview/scim/v2/{resource}"]
    assert scim["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScimCreate"
    }
    assert not any("/mlflow/runs/" in path for path in document["paths"])  # MLflow's routes are MLflow's


def test_every_mlflow_route_has_an_authorization_rule() -> None:
    """Deny by default: a route nobody wrote a rule for fails here, not in production."""
    missing = []
    for spec in (*FORWARDED_ROUTES, *WORKSPACE_ROUTES, SERVER_INFO, *UI_ROUTES):
        try:
            rule_for(spec)
        except LookupError:
            missing.append(f"{spec.name} v{spec.version}")
    assert missing == []


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
    """At its path, or where Litestar can mount it: Gemini's `{endpoint_name}:generateContent` is served by a
    handler of `{endpoint_name}` that tells the routes apart by the suffix (test_pipeline.py)."""
    served = {(method, path) for method, path, _ in served_routes(build_app())}
    for spec in FORWARDED_ROUTES:
        for path in spec.paths():
            litestar_path = mount_path(path).replace(":str}", "}").replace(":path}", "}")
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


def test_every_per_feature_route_set_names_declared_routes() -> None:
    """A typo in a route name would silently turn a feature off for that route (mirroring, indexing...)."""
    from gateway.dual import failover, mirror
    from gateway.federation.guard import models, nested, rules
    from gateway.index import account, writer

    declared = {spec.name for spec in FORWARDED_ROUTES}
    declared_versions = {(spec.name, spec.version) for spec in FORWARDED_ROUTES}
    sets = {
        "mirror.MIRRORED_ROUTES": mirror.MIRRORED_ROUTES,
        "mirror.REGISTRY_ROUTES": mirror.REGISTRY_ROUTES,
        "mirror.BATCHED": mirror.BATCHED,
        "failover.FAILOVER_ROUTES": failover.FAILOVER_ROUTES,
        "writer.INDEXED_ROUTES": writer.INDEXED_ROUTES,
        "account.RUN_READS": account.RUN_READS,
        "rules.LEVEL_OVERRIDES": set(rules.LEVEL_OVERRIDES),
        "rules.RULE_OVERRIDES": set(rules.RULE_OVERRIDES),
        "guard.models": {models.RENAME, models.DELETE, models.TRANSITION_STAGE},
    }
    for where, names in sets.items():
        assert not set(names) - declared, f"{where} names undeclared routes: {sorted(set(names) - declared)}"
    assert not set(nested.NESTED_IDS) - declared_versions, sorted(set(nested.NESTED_IDS) - declared_versions)


def test_feature_route_sets_follow_the_traits_of_the_route_table() -> None:
    """Each feature reads its routes off the table's traits: a route gains or loses a feature in one place."""
    from gateway.dual import failover, mirror
    from gateway.index import writer

    def named(trait: Trait) -> set[str]:
        return {spec.name for spec in FORWARDED_ROUTES if trait in spec.traits}

    assert set(mirror.MIRRORED_ROUTES) == named(Trait.MIRRORED)
    assert set(mirror.BATCHED) == named(Trait.BATCHED) <= named(Trait.MIRRORED)
    assert set(writer.INDEXED_ROUTES) == named(Trait.INDEXED)
    assert set(writer.RUN_ROUTES) | set(writer.EXPERIMENT_ROUTES) | {RUNS_CREATE.name} == named(Trait.INDEXED)
    assert set(failover.FAILOVER_ROUTES) == named(Trait.FAILOVER)
    # Only writes are indexed or mirrored, only reads fail over, and what names a created object creates.
    for spec in FORWARDED_ROUTES:
        if spec.indexed or spec.mirrored:
            assert spec.method != "GET" and spec.action not in (Action.READ, Action.SEARCH), spec.name
        if spec.failover:
            assert spec.idempotent, spec.name
        if spec.creates:
            assert spec.action is Action.CREATE, spec.name


def test_named_routes_are_declared_and_a_misspelt_name_fails_at_once() -> None:
    assert declared("POST /mlflow/runs/create") is RUNS_CREATE
    assert RUNS_CREATE.indexed and RUNS_CREATE.mirrored and RUNS_CREATE.creates
    try:
        declared("POST /mlflow/runs/log-bacth")
    except LookupError:
        pass
    else:
        raise AssertionError("an undeclared route name was accepted")


def test_routes_open_without_credentials_read_no_more_than_the_sign_in_form() -> None:
    """What anyone may send without a credential is read up to the sign-in form's 16 KiB at most: every public route
    taking a method that carries a body (the token sign-in, sign-out) caps it there, and no public route decodes a
    body into an argument. Before, the token sign-in read up to `max_json_body_bytes` (32 MB) of an anonymous post."""
    capped: set[str] = set()
    for route in build_app().routes:
        for handler in getattr(route, "route_handlers", []):
            if not handler.opt.get("public"):
                continue
            assert "data" not in handler.parsed_fn_signature.parameters, route.path
            if handler.http_methods - {"GET", "HEAD", "OPTIONS"}:
                limit = handler.resolve_request_max_body_size()
                assert limit is not None and 0 < limit <= 16 * 1024, (route.path, limit)
                capped.add(route.path)
    assert capped >= {"/fedgate/sign-in/token", "/fedgate/sign-out"}, capped
