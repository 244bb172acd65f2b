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

import ast
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
# The repository, on the path of an interpreter started to read a route map (`basic_auth_routes`).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def normalised(path: str) -> str:
    """A path with its parameters written `{name}`, whatever router syntax it came in."""
    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)  # Flask/werkzeug: <name>, <path:name>
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)  # Starlette and Litestar: {name:path}, {name:str}


@dataclass(frozen=True)
class View:
    """What serves one route of `mlflow server`: where it comes from ("flask <endpoint>" or "asgi"), its view
    function, and for an ASGI route the FastAPI route itself."""

    source: str
    function: Any
    route: Any = None


def mlflow_views() -> dict[str, View]:
    """Every "METHOD /path" the installed `mlflow server` serves, with what serves it: the Flask app's view (the
    first rule of a path), or the ASGI route in its place where both have one, as `mlflow server` routes it."""
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    if os.environ.get(STATIC_PREFIX_ENV_VAR):
        raise RuntimeError(f"{STATIC_PREFIX_ENV_VAR} is set: the route map would carry its prefix")
    import mlflow.server
    from mlflow.server.fastapi_app import create_fastapi_app

    views: dict[str, View] = {}
    flask_app = mlflow.server.app
    for rule in flask_app.url_map.iter_rules():
        if rule.endpoint == "_not_implemented":
            continue
        view = View(f"flask {rule.endpoint}", flask_app.view_functions[rule.endpoint])
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            views.setdefault(f"{method} {normalised(rule.rule)}", view)
    _walk_asgi(create_fastapi_app(flask_app).routes, "", views)
    return views


def mlflow_routes() -> dict[str, str]:
    """Every "METHOD /path" the installed `mlflow server` serves, with where it comes from (flask or asgi)."""
    return {route: view.source for route, view in mlflow_views().items()}


def _walk_asgi(entries: list[Any], prefix: str, views: dict[str, View]) -> None:
    from starlette.routing import Mount

    for entry in entries:
        if isinstance(entry, Mount):
            if entry.path == "":  # the Flask app, read above
                continue
            raise AssertionError(f"unexpected mount {entry.path!r} in the MLflow app")
        if hasattr(entry, "include_context"):  # a router included with a prefix (FastAPI >= 0.120)
            _walk_asgi(entry.original_router.routes, prefix + entry.include_context.prefix, views)
            continue
        methods = getattr(entry, "methods", None)
        if methods is None:
            raise AssertionError(f"unexpected route {entry!r} in the MLflow app: neither HTTP route nor router")
        view = View("asgi", entry.endpoint, entry)
        for method in sorted(methods - IGNORED_METHODS):
            views[f"{method} {normalised(prefix + entry.path)}"] = view


def basic_auth_routes() -> dict[str, str]:
    """Every "METHOD /path" that `mlflow server --app-name basic-auth` serves beyond `mlflow_routes()`: its users,
    roles and permissions. Read in a separate interpreter (the basic-auth app adds its routes to MLflow's one Flask
    app, and makes its user database and admin), in a temporary folder of its own."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlflow-basic-auth-") as folder:
        environment = {
            **os.environ,
            # The basic-auth app refuses to start without these; nothing is served, they only let it build its map.
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "route-map-only",
            "MLFLOW_AUTH_ADMIN_USERNAME": "route-map",
            "MLFLOW_AUTH_ADMIN_PASSWORD": "route-map-only-" + os.urandom(8).hex(),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        done = subprocess.run(
            [sys.executable, "-m", "tests.support.mlflow_surface", "basic-auth-routes"],
            cwd=folder,
            env={**environment, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"reading the basic-auth app's routes failed: {done.stderr[-2000:]}")
    found: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _print_basic_auth_routes() -> None:
    """In a fresh interpreter, in a folder of its own (its user database goes there): the routes the basic-auth app
    adds, as one JSON line."""
    import json

    import mlflow.server
    from mlflow.server.auth import create_app

    default = mlflow_routes()
    create_app(mlflow.server.app)
    added = {route: source for route, source in mlflow_routes().items() if route not in default}
    print(json.dumps(added, sort_keys=True))


# -- how MLflow answers a success ------------------------------------------------------------------------

JSON = "json"
_PARAMETER = "parameter: "  # a function returns what it was given: its caller's argument tells
_ANSWER_HEADS = frozenset({"mimetype", "content_type", "status_code", "status"})
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
# Makers of an answer whose body is JSON whatever it holds.
_JSON_MAKERS = frozenset({"jsonify", "JSONResponse"})
# Makers of a file's bytes.
_FILE_MAKERS = frozenset({"send_file", "send_from_directory"})
# Constructors of an answer whose content type is the mimetype, media_type or content_type it is given.
_RESPONSE_CLASSES = frozenset(
    {"Response", "response_class", "PlainTextResponse", "HTMLResponse", "FileResponse", "StreamingResponse"}
)


def answer_forms() -> dict[str, frozenset[str]]:
    """For every route of `mlflow_routes()`, how its handler answers a success, read from the handler's code:
    `JSON` for an answer whose body is JSON (a proto message through `_wrap_response`, `jsonify`, FastAPI's
    JSONResponse of a model or a dict, `Response(mimetype="application/json")`), else what it answers instead
    (a file, text, a stream, protobuf, an empty answer with no content type, a 204) as the code that makes it.
    A success the code does not tell (it returns what another object made) is `unread: <expression>`.

    Only the answers a handler returns with a success status count: one given a status of 300 or more, or a
    status it computes (an exception's), is an error path; MLflow's errors are its own to send."""
    from fastapi.routing import APIRoute

    forms: dict[str, frozenset[str]] = {}
    read: dict[tuple[int, bool], frozenset[str]] = {}  # each view's code read once, whatever routes it serves
    for route, view in mlflow_views().items():
        fastapi = view.route is not None
        key = (id(view.function), fastapi)
        if key not in read:
            read[key] = _function_forms(view.function, fastapi=fastapi)
        found = read[key]
        if fastapi:
            assert isinstance(view.route, APIRoute), view.route
            response_class = getattr(view.route.response_class, "value", view.route.response_class)  # the default
            if JSON in found and not _is_json_class(response_class):
                found = (found - {JSON}) | {f"{response_class!r} of the handler's value"}
        forms[route] = found
    return forms


def _is_json_class(response_class: Any) -> bool:
    from fastapi.responses import JSONResponse

    return isinstance(response_class, type) and issubclass(response_class, JSONResponse)


def _function_forms(function: Any, *, fastapi: bool, seen: frozenset[Any] = frozenset()) -> frozenset[str]:
    import inspect
    import textwrap

    function = inspect.unwrap(function)
    if function in seen:
        return frozenset()
    try:
        definition = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    except (OSError, TypeError, SyntaxError):
        definition = None
    if not isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef):  # a lambda (Flask's static files)
        return frozenset({f"unread: {function.__qualname__}"})
    body = list(_own_nodes(definition))
    context = _Context(function, body, fastapi, seen | {function})
    found: set[str] = set()
    for node in body:
        if isinstance(node, ast.Return) and node.value is not None:
            found |= context.forms(node.value)
    return frozenset(found)


def _own_nodes(definition: Any) -> Iterator[Any]:
    """The nodes of a function's body, without those of functions, lambdas and classes defined inside it."""
    stack = [node for node in definition.body if not isinstance(node, _NESTED)]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _NESTED):
                stack.append(child)


class _Context:
    def __init__(self, function: Any, body: list[Any], fastapi: bool, seen: frozenset[Any]) -> None:
        self.function, self.body, self.fastapi, self.seen = function, body, fastapi, seen
        self.names: frozenset[str] = frozenset()

    def forms(self, node: Any) -> frozenset[str]:
        if isinstance(node, ast.Await):
            return self.forms(node.value)
        if isinstance(node, ast.Dict | ast.List | ast.DictComp | ast.ListComp):
            return frozenset({JSON})  # Flask's jsonify and FastAPI's JSONResponse of a plain value
        if isinstance(node, ast.Tuple) and node.elts:  # Flask's (body, status)
            status = node.elts[1] if len(node.elts) > 1 else None
            if status is not None and not _success_status(status):
                return frozenset()
            return self.forms(node.elts[0])
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            return frozenset({f"text: {ast.unparse(node)}"})
        if isinstance(node, ast.Constant) and node.value is None:
            return frozenset()
        if isinstance(node, ast.IfExp):
            return self.forms(node.body) | self.forms(node.orelse)
        if isinstance(node, ast.Name):
            return self._name_forms(node.id)
        if isinstance(node, ast.Call):
            return self._call_forms(node)
        return frozenset({f"unread: {ast.unparse(node)}"})

    def _name_forms(self, name: str) -> frozenset[str]:
        if name in self.names:
            return frozenset()
        self.names = self.names | {name}
        values = [
            node.value
            for node in self.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            and node.value is not None
            and any(
                isinstance(target, ast.Name) and target.id == name
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        ]
        if not values:
            import inspect

            if name in inspect.signature(self.function).parameters:
                return frozenset({f"{_PARAMETER}{name}"})
            if isinstance(self.function.__globals__.get(name), str):
                return frozenset({f"text: {name}"})  # a module's constant (MLflow's VERSION)
            return frozenset({f"unread: {name}"})
        found: set[str] = set()
        for value in values:
            found |= self.forms(value)
        return frozenset(found | self._changed_heads(name))

    def _changed_heads(self, name: str) -> set[str]:
        """What the function sets of the answer `name` after making it that can make it other than JSON: its
        mimetype or content type (but to application/json), a Content-Type header, a status of 204 or 205."""
        changed = set()
        for node in self.body:
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if isinstance(target, ast.Subscript):
                    header = target.slice
                    target = target.value
                    if not (isinstance(header, ast.Constant) and str(header.value).lower() == "content-type"):
                        continue
                    if not (isinstance(target, ast.Attribute) and target.attr == "headers"):
                        continue
                elif not (isinstance(target, ast.Attribute) and target.attr in _ANSWER_HEADS):
                    continue
                if not (isinstance(target.value, ast.Name) and target.value.id == name):
                    continue
                value = node.value
                if isinstance(target, ast.Attribute) and target.attr in ("status_code", "status"):
                    if isinstance(value, ast.Constant) and value.value in (204, 205):
                        changed.add(f"not json: {ast.unparse(node)}")
                elif not (isinstance(value, ast.Constant) and value.value == "application/json"):
                    changed.add(f"not json: {ast.unparse(node)}")
        return changed

    def _call_forms(self, call: Any) -> frozenset[str]:
        callee = call.func
        name = callee.id if isinstance(callee, ast.Name) else callee.attr if isinstance(callee, ast.Attribute) else ""
        text = ast.unparse(call)
        keywords = {keyword.arg: keyword.value for keyword in call.keywords if keyword.arg}
        if name in _JSON_MAKERS | _FILE_MAKERS | _RESPONSE_CLASSES:
            status = keywords.get("status", keywords.get("status_code"))
            if status is None and len(call.args) > 1 and name == "Response":
                status = call.args[1]
            if status is not None and not _success_status(status):
                return frozenset()  # an error's answer
        if name in _JSON_MAKERS:
            return frozenset({JSON})
        if name in _FILE_MAKERS:
            return frozenset({f"file: {name}"})
        if name in _RESPONSE_CLASSES:
            kind = keywords.get("mimetype", keywords.get("media_type", keywords.get("content_type")))
            if isinstance(kind, ast.Constant) and kind.value == "application/json":
                return frozenset({JSON})
            return frozenset({f"not json: {text}"})
        target = self._resolve(callee)
        if target is None:
            return frozenset({f"unread: {text}"})
        if self.fastapi and _is_model_class(target):
            return frozenset({JSON})  # a pydantic model (or its factory), answered as FastAPI's JSONResponse
        if _readable_function(target):
            return self._arguments_placed(call, target, _function_forms(target, fastapi=self.fastapi, seen=self.seen))
        return frozenset({f"unread: {text}"})

    def _arguments_placed(self, call: Any, target: Any, found: frozenset[str]) -> frozenset[str]:
        """`found`, the forms of a function `call` calls, with each parameter it returns (as it came, or given
        headers) read as the argument the call passes."""
        import inspect

        placed: set[str] = set()
        names = list(inspect.signature(target).parameters)
        for form in found:
            if not form.startswith(_PARAMETER):
                placed.add(form)
                continue
            name = form.removeprefix(_PARAMETER)
            argument = next((keyword.value for keyword in call.keywords if keyword.arg == name), None)
            if argument is None and name in names and names.index(name) < len(call.args):
                argument = call.args[names.index(name)]
            placed |= self.forms(argument) if argument is not None else {f"unread: {name}"}
        return frozenset(placed)

    def _resolve(self, node: Any) -> Any:
        """The object a callee names in the handler's module: a function of MLflow's, a model class or a
        model's class method."""
        if isinstance(node, ast.Name):
            return self.function.__globals__.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = self.function.__globals__.get(node.value.id)
            if isinstance(owner, ModuleType):
                return getattr(owner, node.attr, None)
            if owner is not None and _is_model_class(owner):
                return owner
        return None


def _readable_function(target: Any) -> bool:
    """An MLflow function whose code can be read."""
    import inspect

    return inspect.isfunction(target) and (target.__module__ or "").startswith("mlflow.")


def _is_model_class(target: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(target, type) and issubclass(target, BaseModel)


def _success_status(node: Any) -> bool:
    """A status that is a success: a constant below 300. A status the code computes is an error's."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value < 300
    return isinstance(node, ast.Attribute) and node.attr.startswith("HTTP_2")


# -- what MLflow answers when it runs without artifact serving ---------------------------------------------

# How MLflow's handlers refuse when `mlflow server` runs with `--no-serve-artifacts` (503): Flask's through this
# decorator, its artifact router's (FastAPI) by asking this function first.
_SERVING_DECORATOR = "_disable_unless_serve_artifacts."
_SERVING_CHECK = "_is_serving_proxied_artifacts"


def artifact_serving_routes() -> frozenset[str]:
    """Every "METHOD /path" of `mlflow server` whose handler answers 503 when the server does not serve artifacts,
    read from the handlers' code: a Flask view wrapped by `_disable_unless_serve_artifacts`, or a view (Flask or
    FastAPI) whose own code asks `_is_serving_proxied_artifacts`."""
    return frozenset(route for route, view in mlflow_views().items() if _checks_serving(view.function))


# How MLflow's Flask handlers refuse when `mlflow server` runs with `--artifacts-only` (503).
_ARTIFACTS_ONLY_DECORATOR = "_disable_if_artifacts_only."


def artifacts_only_routes() -> frozenset[str]:
    """Every "METHOD /path" of `mlflow server` whose handler answers 503 when the server runs with
    `--artifacts-only`, read from the handlers' code: a Flask view wrapped by `_disable_if_artifacts_only`."""
    return frozenset(
        route
        for route, view in mlflow_views().items()
        if _wrapped_by(view.function, lambda code: code.co_qualname.startswith(_ARTIFACTS_ONLY_DECORATOR))
    )


def _checks_serving(function: Any) -> bool:
    return _wrapped_by(
        function, lambda code: code.co_qualname.startswith(_SERVING_DECORATOR) or _SERVING_CHECK in code.co_names
    )


def _wrapped_by(function: Any, found: Any) -> bool:
    """Whether `found` holds for the code of `function` or of one it wraps."""
    while function is not None:  # the decorators' wrappers, down to the handler (functools.wraps sets __wrapped__)
        code = getattr(function, "__code__", None)
        if code is not None and found(code):
            return True
        function = getattr(function, "__wrapped__", None)
    return False


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
    import sys

    if sys.argv[1:] == ["basic-auth-routes"]:
        _print_basic_auth_routes()
    else:
        main()
