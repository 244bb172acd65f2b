"""What the installed `mlflow` package serves and checks, read from its own apps and handlers.

`mlflow_routes`: the route map of `mlflow server`. `request_checks`: what each handler checks of a request
before it acts (gateway/federation/mlflow_checks.py is compared with it). `request_descriptors`: the request
messages' descriptors (gateway/federation/mlflow_requests.binpb). After an MLflow upgrade,
`python -m tests.support.mlflow_surface` writes the descriptors afresh and prints every route's checks.

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


# -- what MLflow's handlers check before they act -------------------------------------------------------


STORE_GETTERS = (
    "_get_tracking_store",
    "_get_model_registry_store",
    "_get_artifact_repo_mlflow_artifacts",
    "_get_job_store",
)


class _NoStore(Exception):
    """A handler asked for a store while its checks were being read."""


class _Captured(BaseException):
    """Raised in place of MLflow's request parsing, carrying what the handler asked it to check."""


def request_checks(specs: list[Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """For each route of `specs` whose MLflow handler validates its request: the request message's full name
    ("" for the handlers that validate plain JSON), the schema as MLflow wrote it, and whether the handler
    reads the JSON body before it parses it (log-batch). The handler is called inside a Flask request with
    MLflow's parsing replaced by a capture, so nothing reaches a store."""
    import mlflow.server
    from mlflow.server import handlers

    flask_app = mlflow.server.app
    adapter = flask_app.url_map.bind("localhost")
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    calls: list[str] = []

    def capture_message(request_message: Any, flask_request: Any = None, schema: Any = None) -> Any:
        raise _Captured(request_message.DESCRIPTOR.full_name, schema or {})

    def capture_json(flask_request: Any = None, schema: Any = None) -> Any:
        raise _Captured("", schema or {})

    real_json = handlers._get_request_json

    def reading_json(*args: Any, **kwargs: Any) -> Any:
        calls.append("read")
        return real_json(*args, **kwargs)

    def no_store(*args: Any, **kwargs: Any) -> Any:
        raise _NoStore

    replaced = {
        "_get_request_message": capture_message,
        "_get_validated_flask_request_json": capture_json,
        "_get_request_json": reading_json,
        # A handler that acts without validating reaches no store (none is made in the working directory).
        **dict.fromkeys(STORE_GETTERS, no_store),
    }
    saved = {name: getattr(handlers, name) for name in replaced}
    for name, replacement in replaced.items():
        setattr(handlers, name, replacement)
    # Artifact routes served; the AI gateway's model catalog read from the package, not fetched from the network.
    environment = {"_MLFLOW_SERVER_SERVE_ARTIFACTS": "true", "MLFLOW_MODEL_CATALOG_URI": ""}
    kept = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        for spec in specs:
            path = re.sub(r"\{(\w+):\w+\}", "x", spec.upstream_prefix + spec.path)
            try:
                endpoint, arguments = adapter.match(path, method=spec.method)
            except Exception:  # a route MLflow lacks has no checks (the route map test fails on it)
                continue
            calls.clear()
            body = None if spec.method == "GET" else b"{}"
            with flask_app.test_request_context(
                path, method=spec.method, data=body, content_type=None if body is None else "application/json"
            ):
                try:
                    flask_app.view_functions[endpoint](**arguments)
                except _Captured as captured:
                    message, schema = captured.args
                    found[(spec.method, spec.path, spec.version)] = {
                        "message": message,
                        "schema": schema,
                        "reads_first": bool(calls),
                    }
                except Exception:  # the handler acts without validating a request first
                    continue
    finally:
        for name, original in saved.items():
            setattr(handlers, name, original)
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return found


def request_descriptors(message_names: set[str]) -> bytes:
    """A FileDescriptorSet with the request messages `message_names` and every type their fields reach, as
    MLflow's generated code defines them, without services, extensions or options (but map entries)."""
    import importlib

    from google.protobuf import descriptor_pb2, descriptor_pool

    for module in ("service_pb2", "model_registry_pb2", "mlflow_artifacts_pb2"):
        importlib.import_module(f"mlflow.protos.{module}")  # registers its messages in the default pool

    pool = descriptor_pool.Default()
    wanted: set[str] = set()

    def visit(descriptor: Any) -> None:
        if descriptor.full_name in wanted:
            return
        wanted.add(descriptor.full_name)
        if descriptor.containing_type is not None:
            visit(descriptor.containing_type)
        for field in getattr(descriptor, "fields", ()):
            if field.message_type is not None:
                visit(field.message_type)
            if field.enum_type is not None:
                visit(field.enum_type)

    for name in sorted(message_names):
        visit(pool.FindMessageTypeByName(name))

    def trimmed(message: Any, proto: Any) -> None:
        """`proto`, a copy of `message`, without options (map entries kept), extensions and unwanted types."""
        proto.ClearField("options")
        if message.GetOptions().map_entry:
            proto.options.map_entry = True
        proto.ClearField("extension")
        for field in proto.field:
            field.ClearField("options")
        del proto.nested_type[:]
        for nested in message.nested_types:
            if nested.full_name in wanted:
                nested.CopyToProto(nested_proto := proto.nested_type.add())
                trimmed(nested, nested_proto)
        del proto.enum_type[:]
        for enum in message.enum_types:
            if enum.full_name in wanted:
                enum.CopyToProto(enum_proto := proto.enum_type.add())
                plain_enum(enum_proto)

    def plain_enum(proto: Any) -> None:
        proto.ClearField("options")
        for value in proto.value:
            value.ClearField("options")

    def referenced_files(message: Any) -> set[str]:
        found = set()
        for field in message.fields:
            target = field.message_type or field.enum_type
            if target is not None:
                found.add(target.file.name)
        for nested in message.nested_types:
            if nested.full_name in wanted:
                found |= referenced_files(nested)
        return found

    files: dict[str, Any] = {}
    needs: dict[str, set[str]] = {}
    for name in sorted(wanted):
        try:
            descriptor = pool.FindMessageTypeByName(name)
        except KeyError:
            descriptor = pool.FindEnumTypeByName(name)
        if descriptor.containing_type is not None:
            continue  # written inside its parent
        file = descriptor.file
        if file.name not in files:
            file.CopyToProto(proto := descriptor_pb2.FileDescriptorProto())
            for part in ("message_type", "enum_type", "service", "extension", "options", "dependency"):
                proto.ClearField(part)
            for part in ("public_dependency", "weak_dependency", "source_code_info"):
                proto.ClearField(part)
            files[file.name], needs[file.name] = proto, set()
        proto = files[file.name]
        if hasattr(descriptor, "fields"):
            descriptor.CopyToProto(message_proto := proto.message_type.add())
            trimmed(descriptor, message_proto)
            needs[file.name] |= referenced_files(descriptor) - {file.name}
        else:
            descriptor.CopyToProto(enum_proto := proto.enum_type.add())
            plain_enum(enum_proto)
    ordered: list[str] = []

    def place(name: str) -> None:
        if name in ordered:
            return
        for dependency in sorted(needs[name]):
            place(dependency)
        ordered.append(name)

    for name in sorted(files):
        place(name)
    result = descriptor_pb2.FileDescriptorSet()
    for name in ordered:
        files[name].dependency[:] = sorted(needs[name])
        result.file.add().CopyFrom(files[name])
    return bytes(result.SerializeToString(deterministic=True))


def main() -> None:
    """Write the request descriptors the gateway ships, and print each route's checks as MLflow names them."""
    from pathlib import Path

    from gateway.core.route_table import FORWARDED_ROUTES

    checks = request_checks(list(FORWARDED_ROUTES))
    target = Path(__file__).resolve().parents[2] / "gateway" / "federation" / "mlflow_requests.binpb"
    target.write_bytes(request_descriptors({found["message"] for found in checks.values() if found["message"]}))
    print(f"wrote {target}")
    for key, found in checks.items():
        schema = {name: [function.__name__ for function in functions] for name, functions in found["schema"].items()}
        print(key, found["message"] or "(plain JSON)", "reads first" if found["reads_first"] else "", schema)


if __name__ == "__main__":
    main()
