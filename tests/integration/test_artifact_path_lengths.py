"""Artifact paths longer than the store's file system holds, on every artifact route, against real MLflow servers.

MLflow 3.17.2 checks no length: its local artifact store fails with `OSError: [Errno 36] File name too long` (a name
past 255 bytes, a path past 4,096 with the store's own folders), answered as 500 by its artifact routes, and lists
or deletes such a path as if it were missing. The gateway refuses them first with 400 INVALID_PARAMETER_VALUE, in
bytes of UTF-8 as the store writes the percent-decoded path: a proxied path with the `workspaces/<name>/` the store
puts before it (team-c's store has workspaces, team-a's not), a path inside a run's, logged model's or model
version's artifacts with the object's folder counted too (core/paths.py). A path at the limit still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests

from gateway.core.errors import mlflow_error
from gateway.core.paths import MAX_ARTIFACT_PATH_BYTES, NAME_MAX_BYTES, OBJECT_FOLDER_BYTES
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import unique

pytestmark = pytest.mark.integration
TIMEOUT = 60
API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
# The workspaces and the folder their store puts before a proxied path (team-c: `upstream-c` on the central store).
WORKSPACES = {"team-a": "", "team-c": "workspaces/upstream-c/"}
MULTIPART = {
    "create": {"path": "f", "num_parts": 1},
    "complete": {"path": "f", "upload_id": "u", "parts": []},
    "abort": {"path": "f", "upload_id": "u"},
}


def _bytes(text: str) -> int:
    return len(text.encode())


def filled(base: str, size: int) -> str:
    """`base` and then names of `é` (two bytes in UTF-8) up to `size` bytes in all, each name at most 201 bytes."""
    rest = size - _bytes(base)
    names = []
    while rest > 201:
        names.append("é" * 100)  # 200 bytes, and its '/'
        rest -= 201
    names.append("é" * (rest // 2) + "a" * (rest % 2))
    path = base + "/".join(names)
    assert _bytes(path) == size
    return path


@dataclass
class Objects:
    session: requests.Session
    url: str
    experiment_id: str
    run_id: str
    model_id: str
    model_name: str


def _ok(answer: requests.Response) -> dict[str, object]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def objects(stack: Stack, workspace: str) -> Objects:
    session = stack.http(workspace, ADMIN_TOKEN)
    url = f"{stack.url}{API}"
    experiment_id = str(_ok(session.post(f"{url}/experiments/create", json={"name": unique("long")}))["experiment_id"])
    run = _ok(session.post(f"{url}/runs/create", json={"experiment_id": experiment_id}))["run"]
    run_id = run["info"]["run_id"]  # type: ignore[index]
    model = _ok(session.post(f"{url}/logged-models", json={"experiment_id": experiment_id}))["model"]
    model_id = model["info"]["model_id"]  # type: ignore[index]
    name = unique("long-model")
    _ok(session.post(f"{url}/registered-models/create", json={"name": name}))
    source = run["info"]["artifact_uri"]  # type: ignore[index]
    _ok(session.post(f"{url}/model-versions/create", json={"name": name, "source": source, "run_id": run_id}))
    return Objects(session, stack.url, experiment_id, run_id, model_id, name)


def refused(answer: requests.Response, message: str) -> None:
    assert answer.status_code == 400, f"{answer.request.method} {answer.request.url[:120]}: {answer.text[:300]}"
    assert answer.json() == mlflow_error("INVALID_PARAMETER_VALUE", message)


def too_long_name(path: str, name: str) -> str:
    shown = path if len(path) <= 100 else path[:100] + "..."
    shown_name = name if len(name) <= 100 else name[:100] + "..."
    return (
        f"Invalid artifact path: '{shown}'. Its name '{shown_name}' is {_bytes(name):,} bytes long in UTF-8; the "
        f"artifact store's file system holds names of at most {NAME_MAX_BYTES} bytes."
    )


def too_long_path(path: str, room: int) -> str:
    shown = path if len(path) <= 100 else path[:100] + "..."
    return (
        f"Invalid artifact path: '{shown}' is {_bytes(path):,} bytes long in UTF-8, and a path there holds at most "
        f"{room:,}: the artifact store's file system holds paths of at most 4,096 bytes, its own folders included."
    )


@pytest.mark.parametrize("workspace", list(WORKSPACES))
def test_the_artifact_proxy_takes_a_path_up_to_the_limit_and_refuses_one_byte_more(
    stack: Stack, workspace: str
) -> None:
    made = objects(stack, workspace)
    session, url = made.session, made.url
    room = MAX_ARTIFACT_PATH_BYTES - _bytes(WORKSPACES[workspace])
    base = f"{made.experiment_id}/{made.run_id}/artifacts/"
    longest_name = base + "é" * (NAME_MAX_BYTES // 2) + "a"  # 255 bytes in 128 characters
    over_name = base + "é" * (NAME_MAX_BYTES // 2 + 1)  # 256 bytes in 128 characters
    longest, over = filled(base, room), filled(base, room + 1)

    for path in (longest_name, longest):
        at = f"{url}{ARTIFACTS}/{quote(path)}"
        assert session.put(at, data=b"x", timeout=TIMEOUT).status_code == 200
        assert session.get(at, timeout=TIMEOUT).content == b"x"
        listed = session.get(f"{url}{ARTIFACTS}", params={"path": path.rsplit("/", 1)[0]}, timeout=TIMEOUT)
        assert [f["path"] for f in listed.json()["files"]] == [path.rsplit("/", 1)[1]]
        assert session.get(f"{url}{ARTIFACTS}", params={"path": path}, timeout=TIMEOUT).status_code == 200
        for step in MULTIPART:  # the store's own answer: its local store has no multipart uploads
            answer = session.post(
                f"{url}/api/2.0/mlflow-artifacts/mpu/{step}/{quote(path)}", json=MULTIPART[step], timeout=TIMEOUT
            )
            assert answer.status_code == 501, answer.text
        answer = session.get(f"{url}/api/2.0/mlflow-artifacts/presigned/{quote(path)}", timeout=TIMEOUT)
        assert answer.status_code == 501, answer.text
        assert session.delete(at, timeout=TIMEOUT).status_code == 200
        assert session.get(at, timeout=TIMEOUT).status_code == 404

    for path, message in (
        (over_name, too_long_name(over_name, over_name.rsplit("/", 1)[1])),
        (over, too_long_path(over, room)),
    ):
        at = f"{url}{ARTIFACTS}/{quote(path)}"
        answers = [
            session.put(at, data=b"x", timeout=TIMEOUT),
            session.get(at, timeout=TIMEOUT),
            session.get(f"{url}{ARTIFACTS}", params={"path": path}, timeout=TIMEOUT),
            session.delete(at, timeout=TIMEOUT),
            session.get(f"{url}/api/2.0/mlflow-artifacts/presigned/{quote(path)}", timeout=TIMEOUT),
            *[
                session.post(
                    f"{url}/api/2.0/mlflow-artifacts/mpu/{step}/{quote(path)}", json=MULTIPART[step], timeout=TIMEOUT
                )
                for step in MULTIPART
            ],
        ]
        for answer in answers:
            refused(answer, message)
    # Named with its workspace, the path is as long as the store writes it: the store's name of the workspace counts.
    if WORKSPACES[workspace]:
        prefixed = f"{url}{ARTIFACTS}/{quote(f'workspaces/{workspace}/')}"
        assert session.put(prefixed + quote(longest), data=b"x", timeout=TIMEOUT).status_code == 200
        refused(session.put(prefixed + quote(over), data=b"x", timeout=TIMEOUT), too_long_path(over, room))


@pytest.mark.parametrize("workspace", list(WORKSPACES))
def test_paths_inside_a_run_or_model_count_its_folder_and_refuse_one_byte_more(stack: Stack, workspace: str) -> None:
    made = objects(stack, workspace)
    session, url = made.session, made.url
    room = MAX_ARTIFACT_PATH_BYTES - _bytes(WORKSPACES[workspace]) - OBJECT_FOLDER_BYTES
    longest_name = "é" * (NAME_MAX_BYTES // 2) + "a"
    over_name = "é" * (NAME_MAX_BYTES // 2 + 1)
    run_root = f"{made.experiment_id}/{made.run_id}/artifacts/"
    model_root = f"{made.experiment_id}/models/{made.model_id}/artifacts/"

    def routes(path: str, folder: str) -> list[requests.Response]:
        return [
            session.post(
                f"{url}/ajax-api/2.0/mlflow/upload-artifact",
                params={"run_uuid": made.run_id, "path": path},
                data=b"y",
                timeout=TIMEOUT,
            ),
            session.get(f"{url}/get-artifact", params={"run_uuid": made.run_id, "path": path}, timeout=TIMEOUT),
            session.get(
                f"{url}/model-versions/get-artifact",
                params={"name": made.model_name, "version": "1", "path": path},
                timeout=TIMEOUT,
            ),
            session.get(
                f"{url}/ajax-api/2.0/mlflow/logged-models/{made.model_id}/artifacts/files",
                params={"artifact_file_path": path},
                timeout=TIMEOUT,
            ),
            session.get(f"{url}{API}/artifacts/list", params={"run_id": made.run_id, "path": folder}, timeout=TIMEOUT),
            session.get(
                f"{url}{API}/logged-models/{made.model_id}/artifacts/directories",
                params={"artifact_directory_path": folder},
                timeout=TIMEOUT,
            ),
        ]

    for path in (longest_name, filled("", room)):
        put = session.put(f"{url}{ARTIFACTS}/{quote(model_root + path)}", data=b"y", timeout=TIMEOUT)
        assert put.status_code == 200, put.text
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        upload, run_file, version_file, model_file, run_listing, model_listing = routes(path, folder)
        assert upload.status_code == 200, upload.text
        for read in (run_file, version_file, model_file):
            assert (read.status_code, read.content) == (200, b"y"), read.text[:300]
        for listing in (run_listing, model_listing):
            assert listing.status_code == 200, listing.text[:300]
            assert path.rsplit("/", 1)[-1] in {f["path"].rsplit("/", 1)[-1] for f in listing.json()["files"]}
        assert session.delete(f"{url}{ARTIFACTS}/{quote(run_root + path)}", timeout=TIMEOUT).status_code == 200

    over = filled("", room + 1)
    for path, message in (
        (over_name, too_long_name(over_name, over_name)),
        (over, too_long_path(over, room)),
    ):
        for answer in routes(path, path):
            refused(answer, message)
