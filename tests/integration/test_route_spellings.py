"""Spellings of a request target, sent to a real store directly and through the gateway: whatever the gateway
answers with success is what the store does with that same target, and what it refuses it refuses in MLflow's shape.

The router of each matches the decoded path (`%61` is `a`, `%2F` a slash, `//` merged); the gateway reads some
parameters from the raw target instead (an artifact path keeps `//etc/passwd` absolute). Both readings must agree
on where a parameter starts, or the gateway checks and serves one object while the target names another.
"""

from __future__ import annotations

import http.client
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.conftest import Stack
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    location: str = ""


def send(base_url: str, method: str, target: str, headers: dict[str, str], body: bytes | None = None) -> Answer:
    """`target` exactly as written (no client normalises it), over a connection of its own."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(response.status, response.read(), response.getheader("Location") or "")
    finally:
        connection.close()


@dataclass(frozen=True)
class Files:
    alice: Person
    bob: Person
    alices: str  # `<experiment>/<run>/artifacts` of Alice's run: Bob holds nothing on it
    bobs: str  # of Bob's run


def _run_folder(person: Person, stack: Stack) -> str:
    http = person.http(stack)
    created = http.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("spelling")})
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    run = http.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
    assert run.status_code == 200, run.text
    return f"{experiment_id}/{run.json()['run']['info']['run_id']}/artifacts"


@pytest.fixture(scope="module")
def files(stack: Stack) -> Files:
    suffix, admin = uuid.uuid4().hex[:6], Admin.of(stack)
    alice = admin.person(f"alice.spelling.{suffix}@example.com")
    bob = admin.person(f"bob.spelling.{suffix}@example.com")
    admin.group(f"spelling-{suffix}", [alice.id, bob.id])
    admin.grant("workspaces/team-a", "CAN_USE", group=f"spelling-{suffix}")
    alices, bobs = _run_folder(alice, stack), _run_folder(bob, stack)
    for person, folder, text in ((alice, alices, b"alice's file"), (bob, bobs, b"bob's file")):
        put = person.http(stack).put(f"{stack.url}{ARTIFACTS}/{folder}/x", data=text)
        assert put.status_code == 200, put.text
    return Files(alice, bob, alices, bobs)


def _spellings(files: Files) -> list[str]:
    """Targets of a GET of Alice's file `x`, or of a path that names Alice's folder before Bob's."""
    alices, bobs = files.alices, files.bobs
    return [
        f"{ARTIFACTS}/{alices}/x",
        f"/ajax-api/2.0/mlflow-artifacts/artifacts/{alices}/x",
        f"/{ARTIFACTS}/{alices}/x",
        f"/api/2.0//mlflow-artifacts/artifacts/{alices}/x",
        f"{ARTIFACTS}//{alices}/x",
        f"{ARTIFACTS}/{alices}%2Fx",
        f"{ARTIFACTS}/{alices.replace('/', '%2F')}/x",
        f"/api/2.0/mlflow-artifacts/%61rtifacts/{alices}/x",
        f"/api/2.0/mlflow%2Dartifacts/artifacts/{alices}/x",
        # The mount's own text again inside the path: the store reads the path from its first `artifacts/` on.
        f"/api/2.0/mlflow-artifacts/%61rtifacts/{alices}/mlflow-artifacts/artifacts/{bobs}/x",
        f"/api/2.0/mlflow-artifacts/%61rtifacts/{bobs}/mlflow-artifacts/artifacts/{bobs}/x",
        f"/api/2.0/mlflow-artifacts%2Fartifacts/{alices}/mlflow-artifacts/artifacts/{bobs}/x",
        f"{ARTIFACTS}/{alices}/mlflow-artifacts/artifacts/{bobs}/x",
        f"{ARTIFACTS};x/{alices}/x",
        f"{ARTIFACTS}/{alices}/%2e%2e/artifacts/x",
        f"/api/2.0/MLFLOW-ARTIFACTS/artifacts/{alices}/x",
        f"{ARTIFACTS}/{alices}/x?path={bobs}/x",
    ]


def test_an_artifact_target_is_read_where_the_store_reads_it(stack: Stack, files: Files) -> None:
    """For each spelling, sent by the account admin (who may read both folders): the gateway's success is the
    store's own answer to the same target, byte for byte; anything else is a refusal with an MLflow error code.
    Before, `%61rtifacts` followed by the mount's text again had the gateway read the path from the second
    `/mlflow-artifacts/artifacts/` on, and serve Bob's file where the store reads a path in Alice's run."""
    store = stack.stores["a"].url
    admin = {"Authorization": f"Bearer {Admin.of(stack).token}", "X-MLFLOW-WORKSPACE": "team-a"}
    differing = []
    for target in _spellings(files):
        direct = send(store, "GET", target, {})
        for _ in range(3):  # the store's router merges `//` by a redirect to the path it serves
            if direct.status != 308:
                break
            location = urlsplit(direct.location)
            direct = send(store, "GET", f"{location.path}?{location.query}".rstrip("?"), {})
        through = send(stack.url, "GET", target, admin)
        if through.status == 200 and (through.status, through.body) != (direct.status, direct.body):
            differing.append((target, direct.status, direct.location, direct.body[:100], through.body[:100]))
        elif through.status != 200:
            assert 400 <= through.status < 500 and b'"error_code"' in through.body, (target, through)
    assert differing == [], differing


def test_no_spelling_of_a_target_reads_another_users_file(stack: Stack, files: Files) -> None:
    """Bob, who holds nothing on Alice's experiment, gets her file under no spelling of its target, and each
    refusal is MLflow's shape."""
    bob = {"Authorization": f"Bearer {files.bob.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    for target in _spellings(files):
        through = send(stack.url, "GET", target, bob)
        assert b"alice's file" not in through.body, target
        if through.status != 200:
            assert 400 <= through.status < 500 and b'"error_code"' in through.body, (target, through)


@dataclass(frozen=True)
class Head:
    status: int
    length: str
    content_type: str
    body: bytes


def head(base_url: str, method: str, target: str, headers: dict[str, str]) -> Head:
    """The status, declared length and type of an answer, and what body came (a HEAD's: none)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, target, headers=headers)
        response = connection.getresponse()
        body = response.read()  # for a HEAD, http.client reads no body whatever the length says
        return Head(
            response.status, response.getheader("Content-Length") or "", response.getheader("Content-Type") or "", body
        )
    finally:
        connection.close()


def test_head_of_a_get_route_is_the_gets_answer_without_its_body(stack: Stack, files: Files) -> None:
    """MLflow's server runs the GET of its Flask routes for a HEAD and answers its status and head without the body
    (a file's download: 200 and the file's length). Through the gateway a HEAD is the GET's own call, authorized as
    that GET is: its status, length and type, no body, whoever asks. Before, every HEAD was 404."""
    store = stack.stores["a"].url
    alice = {"Authorization": f"Bearer {files.alice.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    bob = {"Authorization": f"Bearer {files.bob.token}", "X-MLFLOW-WORKSPACE": "team-a"}
    download = f"{ARTIFACTS}/{files.alices}/x"
    direct = head(store, "HEAD", download, {})
    assert (direct.status, direct.length, direct.body) == (200, str(len(b"alice's file")), b""), direct
    experiment_id = files.alices.split("/", 1)[0]
    for target in (
        download,
        f"{ARTIFACTS}?path={files.alices}",
        f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}",
        f"/ajax-api/2.0/mlflow/runs/get?run_id={files.alices.split('/')[1]}",
    ):
        for person, allowed in ((alice, True), (bob, False)):
            got = head(stack.url, "GET", target, person)
            headed = head(stack.url, "HEAD", target, person)
            assert (got.status == 200) is allowed, (target, got)
            assert got.length == str(len(got.body)), (target, got)
            assert headed == Head(got.status, got.length, got.content_type, b""), (target, got, headed)
