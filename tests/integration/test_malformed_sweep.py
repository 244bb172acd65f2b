"""A sweep of malformed values through every forwarded MLflow route that takes JSON, as an account admin (whom the
guard lets through to the store), against a real MLflow 3.17.2 store: each field of the route's request message in
turn holds one of a fixed set of bad values (wrong JSON types, nulls, empty and blank strings, numbers past a 64-bit
integer or written in other digits, garbage page tokens; for a GET, the same as query text, and each parameter
repeated), the route's other required fields and ids plausible ones naming real objects; and the same values one
level down, in each field of a top-level field that is a message (alone, or the one item of a list).

No answer is a 5xx and every error is JSON in MLflow's shape (`error_code`, `message`): a value the store cannot
read is the caller's error, refused (400) before the store fails on it with its own 500 or an HTML page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from gateway.core.route_table import FORWARDED_ROUTES, Action, Body, RouteSpec
from gateway.federation.mlflow_checks import REQUEST_CHECKS
from gateway.federation.mlflow_requests import _pool
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import unique

pytestmark = pytest.mark.integration
TIMEOUT = 60
WORKSPACE = "team-a"

# What a JSON field holds in turn.
BAD_JSON: list[Any] = [
    None,
    True,
    -1,
    1.5,
    10**30,
    "",
    " ",
    "abc",
    "-1",
    "NaN",
    "9" * 30,
    "²",
    "!!not a token!!",
    [],
    [None],
    ["abc"],
    [{}],
    {},
    {"a": {"b": 1}},
]
# What a query parameter holds in turn (a GET's fields are query text); None: the parameter sent twice.
BAD_TEXT: list[str | None] = [
    "",
    " ",
    "abc",
    "-1",
    "1.5",
    "NaN",
    "9" * 30,
    "²",
    "!!not a token!!",
    "eyJ",
    "null",
    "true",
    "[]",
    "{}",
    "[1]",
    '{"a": 1}',
    "%",
    "x" * 300,
    None,
]


# Store failures the guard does not refuse (docs/security.md, "Malformed values the store fails on"): an artifact
# listing of a path whose name is longer than the store's file system takes (an object store takes it). It answers
# 502 INTERNAL_ERROR, in MLflow's shape.
LEFT = {
    ("GET /mlflow-artifacts/artifacts", f"path={'x' * 300!r}"),
}


@dataclass(frozen=True)
class Objects:
    """Real objects of the sweep's workspace that a route's other fields and path name."""

    experiment_id: str
    run_id: str
    model_name: str
    trace_id: str
    model_id: str
    dataset_id: str


def _messages_fields(spec: RouteSpec) -> list[str]:
    """The fields of the route's request message, or of the plain JSON its handler checks."""
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None:
        return []
    if not route[0]:
        return [name for name, _ in route[2]]
    return [field.name for field in _pool().FindMessageTypeByName(route[0]).fields]


def _required(spec: RouteSpec) -> list[str]:
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None:
        return []
    return [name for name, checks in route[2] if "required" in checks]


# Forwarded routes of JSON requests whose request message has fields; the ones that delete or purge last, so that
# the objects the others name are there for them.
SWEPT = sorted(
    (spec for spec in FORWARDED_ROUTES if spec.body is Body.JSON and _messages_fields(spec)),
    key=lambda spec: spec.action is Action.MANAGE,
)


def _plausible(objects: Objects) -> dict[str, Any]:
    return {
        "experiment_id": objects.experiment_id,
        "experiment_ids": [objects.experiment_id],
        "run_id": objects.run_id,
        "run_uuid": objects.run_id,
        "run_ids": [objects.run_id],
        "name": objects.model_name,
        "version": "1",
        "trace_id": objects.trace_id,
        "request_id": objects.trace_id,
        "trace_ids": [objects.trace_id],
        "request_ids": [objects.trace_id],
        "model_id": objects.model_id,
        "dataset_id": objects.dataset_id,
        "key": "sweep-key",
        "value": "v",
        "experiment_name": "sweep-missing",
        "timestamp": 0,
        "alias": "sweep",
        "stage": "Staging",
        "new_name": unique("sweep-renamed"),
        "source": "sweep-missing",
    }


def _path(spec: RouteSpec, objects: Objects) -> str:
    path = spec.path
    values = {
        "model_id": objects.model_id,
        "request_id": objects.trace_id,
        "trace_id": objects.trace_id,
        "dataset_id": objects.dataset_id,
        "artifact_path": f"{objects.experiment_id}/{objects.run_id}/artifacts/sweep.txt",
    }
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1 : end].split(":")[0]
        path = path[:start] + values.get(name, "sweep-missing") + path[end + 1 :]
    prefix = "" if spec.absolute else f"/api/{spec.version}.0"
    return prefix + path


def _cases(spec: RouteSpec, objects: Objects, bad: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what is bad, the keyword arguments of the request) for each field of a route holding bad value `bad`."""
    fields = _messages_fields(spec)
    plausible = _plausible(objects)
    base = {name: plausible[name] for name in (*_required(spec), *spec.ids) if name in plausible and name in fields}
    for field in fields:
        if spec.method == "GET":
            params = [(k, v if isinstance(v, str) else v[0]) for k, v in base.items() if k != field]
            text = BAD_TEXT[bad]
            if text is None:  # the parameter twice: a plausible value, then a bad one
                first = base.get(field, "x")
                params += [(field, first if isinstance(first, str) else first[0]), (field, "abc")]
            else:
                params.append((field, text))
            yield f"{field}={text!r}", {"params": params}
        else:
            yield f"{field}={BAD_JSON[bad]!r}", {"json": {**base, field: BAD_JSON[bad]}}


@pytest.fixture(scope="module")
def objects(stack: Stack) -> Objects:
    session = stack.http(WORKSPACE)
    api = f"{stack.url}/api/2.0/mlflow"

    def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = session.post(url, json=body, timeout=TIMEOUT)
        assert answer.status_code == 200, (url, answer.text)
        return dict(answer.json())

    experiment_id = str(post(f"{api}/experiments/create", {"name": unique("sweep")})["experiment_id"])
    run = post(f"{api}/runs/create", {"experiment_id": experiment_id})["run"]["info"]
    name = unique("sweep-model")
    post(f"{api}/registered-models/create", {"name": name})
    post(
        f"{api}/model-versions/create",
        {"name": name, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]},
    )
    model_id = post(f"{api}/logged-models", {"experiment_id": experiment_id})["model"]["info"]["model_id"]
    trace_id = f"tr-{uuid.uuid4().hex}"
    info = {
        "trace_id": trace_id,
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}},
        "request_time": "2026-12-04T00:00:00Z",
        "state": "OK",
    }
    post(f"{stack.url}/api/3.0/mlflow/traces", {"trace": {"trace_info": info}})
    dataset = post(
        f"{stack.url}/api/3.0/mlflow/datasets/create", {"name": unique("sweep-ds"), "experiment_ids": [experiment_id]}
    )
    return Objects(experiment_id, run["run_id"], name, trace_id, model_id, dataset["dataset"]["dataset_id"])


POOL = ThreadPoolExecutor(8)  # a route's fields side by side
SESSION = requests.Session()
SESSION.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE})


def _not_implemented(answer: requests.Response) -> bool:
    """The store's 501 for what it was started without (multipart uploads of a local artifact root): no failure,
    the same for any value."""
    return answer.status_code == 501 and answer.json().get("error_code") == "NOT_IMPLEMENTED"


def failure(answer: requests.Response) -> str | None:
    """Why an answer is no clean one, or None: a 5xx, or an error that is not JSON in MLflow's shape."""
    if answer.status_code >= 500 and not _not_implemented(answer):
        return f"{answer.status_code} {answer.text[:200]}"
    if answer.status_code >= 400:
        try:
            body = answer.json()
        except ValueError:
            return f"{answer.status_code} not JSON: {answer.text[:200]}"
        if not (isinstance(body, dict) and isinstance(body.get("error_code"), str) and body.get("message")):
            return f"{answer.status_code} not an MLflow error: {answer.text[:200]}"
    return None


@pytest.mark.parametrize("bad", range(len(BAD_JSON)))
@pytest.mark.parametrize("spec", SWEPT, ids=[f"{s.method} v{s.version} {s.path}" for s in SWEPT])
def test_no_malformed_value_answers_a_5xx_or_a_page(stack: Stack, objects: Objects, spec: RouteSpec, bad: int) -> None:
    url = f"{stack.url}{_path(spec, objects)}"
    cases = [(what, kwargs) for what, kwargs in _cases(spec, objects, bad) if (spec.name, what) not in LEFT]
    answers = list(POOL.map(lambda case: SESSION.request(spec.method, url, timeout=TIMEOUT, **case[1]), cases))
    failures = []
    for (what, _), answer in zip(cases, answers, strict=True):
        if (why := failure(answer)) is not None:
            failures.append(f"{what}: {why}")
    assert not failures, "\n".join(failures)


def _nested_fields(spec: RouteSpec) -> list[tuple[str, bool, list[str]]]:
    """(field, whether it is a list, the fields of its message) for each top-level field of the route's request
    message that is a message itself (a trace's spans, an assessment, a logged model's params)."""
    route = REQUEST_CHECKS.get((spec.method, spec.path, spec.version))
    if route is None or not route[0]:
        return []
    found = []
    for field in _pool().FindMessageTypeByName(route[0]).fields:
        message = field.message_type
        if message is None or message.GetOptions().map_entry:
            continue
        repeated = field.is_repeated
        found.append((field.name, repeated, [sub.name for sub in message.fields]))
    return found


NESTED = [spec for spec in SWEPT if spec.method != "GET" and _nested_fields(spec)]


@pytest.mark.parametrize("spec", NESTED, ids=[f"{s.method} v{s.version} {s.path}" for s in NESTED])
def test_no_malformed_nested_value_answers_a_5xx_or_a_page(stack: Stack, objects: Objects, spec: RouteSpec) -> None:
    url = f"{stack.url}{_path(spec, objects)}"
    plausible = _plausible(objects)
    fields = _messages_fields(spec)
    base = {name: plausible[name] for name in (*_required(spec), *spec.ids) if name in plausible and name in fields}
    cases = []
    for field, repeated, subfields in _nested_fields(spec):
        for sub in subfields:
            for bad in BAD_JSON:
                inner = {sub: bad}
                cases.append((f"{field}.{sub}={bad!r}", {"json": {**base, field: [inner] if repeated else inner}}))
    answers = list(POOL.map(lambda case: SESSION.request(spec.method, url, timeout=TIMEOUT, **case[1]), cases))
    failures = [f"{what}: {why}" for (what, _), answer in zip(cases, answers, strict=True) if (why := failure(answer))]
    assert not failures, "\n".join(failures)
