"""What the installed `mlflow` package serves: the route map of `mlflow server`, read from its own apps.

An `mlflow server` is a FastAPI app (`mlflow.server.fastapi_app`) whose native routers (OTLP, jobs, the AI
gateway, the assistant, artifacts, MCP servers, server-info) come first and which mounts the Flask app
(`mlflow.server.app`: the protobuf services of `handlers.get_endpoints()` at `/api/<v>.0` and
`/ajax-api/<v>.0`, plus routes of its own) at `/`. The map is the union of both, as `mlflow server` builds
it, without a static prefix. Routes whose Flask handler is MLflow's `_not_implemented` (it answers an empty
404: Databricks-only endpoints, and a proto path with a missing slash) are not served by MLflow either and
are left out.
"""

from __future__ import annotations

import os
import re
from typing import Any

IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})


def normalised(path: str) -> str:
    """A path with its parameters written `{name}`, whatever router syntax it came in."""
    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)  # Flask/werkzeug: <name>, <path:name>
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)  # Starlette and Litestar: {name:path}, {name:str}


def mlflow_routes() -> dict[str, str]:
    """Every "METHOD /path" the installed `mlflow server` serves, with where it comes from (flask or asgi)."""
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    if os.environ.get(STATIC_PREFIX_ENV_VAR):
        raise RuntimeError(f"{STATIC_PREFIX_ENV_VAR} is set: the route map would carry its prefix")
    import mlflow.server
    from mlflow.server.fastapi_app import create_fastapi_app

    routes: dict[str, str] = {}
    flask_app = mlflow.server.app
    for rule in flask_app.url_map.iter_rules():
        if rule.endpoint == "_not_implemented":
            continue
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            routes.setdefault(f"{method} {normalised(rule.rule)}", f"flask {rule.endpoint}")
    _walk_asgi(create_fastapi_app(flask_app).routes, "", routes)
    return routes


def _walk_asgi(entries: list[Any], prefix: str, routes: dict[str, str]) -> None:
    from starlette.routing import Mount

    for entry in entries:
        if isinstance(entry, Mount):
            if entry.path == "":  # the Flask app, read above
                continue
            raise AssertionError(f"unexpected mount {entry.path!r} in the MLflow app")
        if hasattr(entry, "include_context"):  # a router included with a prefix (FastAPI >= 0.120)
            _walk_asgi(entry.original_router.routes, prefix + entry.include_context.prefix, routes)
            continue
        methods = getattr(entry, "methods", None)
        if methods is None:
            raise AssertionError(f"unexpected route {entry!r} in the MLflow app: neither HTTP route nor router")
        for method in sorted(methods - IGNORED_METHODS):
            routes[f"{method} {normalised(prefix + entry.path)}"] = "asgi"
