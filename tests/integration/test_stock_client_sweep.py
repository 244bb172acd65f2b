"""A sweep of what a user's code does with the stock mlflow client, run twice: through the gateway (workspace
team-a, as a user who may only use it, or who edits or manages it where the call is the workspace's; team-c,
whose store knows it under another name, where a scenario says so) and directly against an `mlflow server`.
Each scenario returns what the user would see, stripped of ids and times, and the two must be equal.

Users run the same code whatever mode their workspace is linked in, so the scenarios that take `linked` (all but
the command line, basic auth, webhooks and the renamed workspace's) run through each mode: team-a (its own store),
research (`central`: the account's central store, namespace `research`) and a dual workspace of a stack of its own
(its store, mirrored into that stack's central store, whose copies of the runs scenario are checked too), each
compared with the same direct view, made once.

What other modules already cover in depth (the registry's aliases and tags, stage transitions, a folder's
download, renamed workspaces, permissions) is touched here only where a scenario needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource, Param, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.rest_utils import http_request

from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import GATEWAY_ENV, Stack, _start_all, _stop_all
from tests.support.identity import Admin, Person
from tests.support.stock_client import stock_client_env
from tests.support.waiting import until

pytestmark = pytest.mark.integration

# The same names on both sides (different stores), unique per session.
SUFFIX = uuid.uuid4().hex[:8]


def named(prefix: str) -> str:
    return f"sweep-{prefix}-{SUFFIX}"


@dataclass(frozen=True)
class Target:
    label: str
    uri: str
    token: str | None
    workspace: str | None
    workspace_from_env: bool = False  # MLFLOW_WORKSPACE rather than mlflow.set_workspace


@dataclass(frozen=True)
class Sides:
    gateway: Target  # a user who may use team-a (CAN_USE): owns what they create
    editor: Target  # a user who may edit all of team-a (CAN_EDIT): evaluation datasets are the workspace's
    manager: Target  # a user who manages team-a (CAN_MANAGE): webhooks and scorers carrying code are the workspace's
    direct: Target
    central: Linked  # research, a `central` workspace


@pytest.fixture(scope="module")
def sides(stack: Stack) -> Sides:
    admin = Admin.of(stack)
    user: Person = admin.person(f"sweep.{SUFFIX}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=user.name)
    editor: Person = admin.person(f"sweep.editor.{SUFFIX}@example.com")
    admin.grant("workspaces/team-a", "CAN_EDIT", user=editor.name)
    manager: Person = admin.person(f"sweep.manager.{SUFFIX}@example.com")
    admin.grant("workspaces/team-a", "CAN_MANAGE", user=manager.name)
    return Sides(
        gateway=Target("gateway", stack.url, user.token, "team-a"),
        editor=Target("gateway", stack.url, editor.token, "team-a", workspace_from_env=True),
        manager=Target("gateway", stack.url, manager.token, "team-a"),
        direct=Target("direct", stack.stores["b"].url, None, None),
        central=users_of(admin, stack.url, "central", "research"),
    )


@dataclass(frozen=True)
class Linked:
    """The gateway side of a scenario, in one link mode: users of one workspace in that mode."""

    mode: str
    target: Target  # CAN_USE
    editor: Target  # CAN_EDIT
    manager: Target  # CAN_MANAGE
    dual: DualSide | None = None


def users_of(admin: Admin, url: str, mode: str, workspace: str) -> Linked:
    made = {}
    for level in ("CAN_USE", "CAN_EDIT", "CAN_MANAGE"):
        person: Person = admin.person(f"sweep.{mode}.{level.lower()}.{SUFFIX}@example.com")
        admin.grant(f"workspaces/{workspace}", level, user=person.name)
        made[level] = person.token
    return Linked(
        mode,
        Target("gateway", url, made["CAN_USE"], workspace),
        Target("gateway", url, made["CAN_EDIT"], workspace, workspace_from_env=True),
        Target("gateway", url, made["CAN_MANAGE"], workspace),
    )


DUAL = "team-d"


@dataclass(frozen=True)
class DualSide:
    stack: Stack  # a gateway of its own: its stores are fixed by its config
    central: MlflowServer  # where the workspace's copies land, in the namespace of its name

    def drained(self) -> None:
        def status() -> dict[str, Any]:
            links = self.stack.http().get(f"{self.stack.url}/api/2.0/fedgate/links", timeout=30).json()["links"]
            return next(link for link in links if link["workspace"] == DUAL)

        until(status, lambda link: link["pending"] == 0, "the dual workspace's outbox drained", seconds=120)

    def copies(self, experiment: str) -> dict[str, Any]:
        """The central copies of the runs of `experiment`, once the outbox drained: by run name, their params,
        metrics and artifact files."""
        self.drained()
        with stock_client_env(MLFLOW_TRACKING_URI=self.central.url):
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
            mlflow.set_workspace(DUAL)
            central = MlflowClient(self.central.url)
            found = central.get_experiment_by_name(experiment)
            assert found is not None, experiment
            return {
                run.info.run_name: (
                    run.data.params,
                    run.data.metrics,
                    sorted(f.path for f in central.list_artifacts(run.info.run_id)),
                )
                for run in central.search_runs([found.experiment_id])
            }


@pytest.fixture(scope="module")
def dual_side(workdir: Path) -> Iterator[Linked]:
    """A dual workspace: the session stack's stores are all taken (one link per namespace), so it gets a stack of
    its own, started only when a dual case runs."""
    from gateway.db.engine import start_embedded

    root = workdir / "sweep-dual"
    database = start_embedded(root / "postgres")
    primary = MlflowServer(root / "primary")
    central = MlflowServer(root / "central", workspaces=True)
    _start_all([primary, central])
    gateway: GatewayProcess | None = None
    config = root / "fedgate.toml"
    config.write_text(
        f"""
[account]
id = "7003"
[database]
url = "{database.url}"
[stores.primary]
url = "{primary.url}"
[stores.central]
url = "{central.url}"
workspaces = true
[central]
store = "central"
[[workspaces]]
name = "{DUAL}"
id = "3001"
store = "primary"
mode = "dual"
"""
    )
    try:
        gateway = GatewayProcess(config, GATEWAY_ENV).start()
        stack = Stack(gateway, {"primary": primary, "central": central}, database.url, root)
        users = users_of(Admin.of(stack), gateway.url, "dual", DUAL)
        yield dataclasses.replace(users, dual=DualSide(stack, central))
    finally:
        if gateway is not None:
            gateway.stop()
        _stop_all([primary, central])
        database.stop()


@pytest.fixture(params=["workspace", "central", "dual"])
def linked(request: pytest.FixtureRequest, sides: Sides) -> Linked:
    """The gateway side of a core scenario, in each link mode. The direct side is the same for all three (`both`
    keeps it), so the names a scenario makes are the same in each."""
    if request.param == "workspace":
        return Linked("workspace", sides.gateway, sides.editor, sides.manager)
    if request.param == "central":
        return sides.central
    dual: Linked = request.getfixturevalue("dual_side")
    return dual


# What a scenario showed directly against a store, by scenario: it runs once there however many modes it runs in
# through the gateway (a second run there would meet the names of the first).
DIRECT: dict[str, Any] = {}


@contextlib.contextmanager
def talking_to(target: Target) -> Iterator[MlflowClient]:
    """The stock client configured for `target` as a user would: tracking URI, token, workspace."""
    with stock_client_env(MLFLOW_TRACKING_URI=target.uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"):
        if target.token is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = target.token
        mlflow.set_tracking_uri(target.uri)
        if target.workspace_from_env and target.workspace:
            os.environ["MLFLOW_WORKSPACE"] = target.workspace
        else:
            mlflow.set_workspace(target.workspace)
        try:
            yield MlflowClient()
        finally:
            while mlflow.active_run():
                mlflow.end_run()
            mlflow.clear_active_model()


def both(
    sides: Sides,
    tmp_path: Path,
    scenario: Callable[[MlflowClient, Path], Any],
    *,
    as_editor: bool = False,
    through: Target | None = None,
) -> Any:
    """The scenario's view through the gateway, asserted equal to its view of a store of its own."""
    seen = {}
    key = scenario.__qualname__
    if key in DIRECT:
        seen["direct"] = DIRECT[key]
    for target in (sides.direct, through or (sides.editor if as_editor else sides.gateway)):
        if target.label in seen:
            continue
        folder = tmp_path / target.label
        folder.mkdir()
        with talking_to(target) as client:
            try:
                seen[target.label] = scenario(client, folder)
            except Exception as error:
                error.add_note(f"(the scenario {target.label})")
                raise
        if target is sides.direct:
            DIRECT[key] = seen["direct"]
    assert seen["gateway"] == seen["direct"]
    return seen["gateway"]


def tree(root: Path) -> dict[str, str]:
    """Every file under `root`, by relative path, with a digest of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def listing(client: MlflowClient, run_id: str, path: str | None = None) -> list[tuple[str, bool, int | None]]:
    return sorted((f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id, path))


def test_runs_params_metrics_and_artifacts(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        mlflow.set_experiment(named("runs"))
        source = folder / "src"
        (source / "sub" / "deeper").mkdir(parents=True)
        (source / "top.txt").write_text("top")
        (source / "sub" / "mid.csv").write_text("a,b\n1,2\n")
        (source / "sub" / "deeper" / "low.bin").write_bytes(bytes(range(256)) * 40)
        with mlflow.start_run(run_name="outer") as outer:
            mlflow.log_params({"optimizer": "adam", "layers": 3})
            for step in range(3):
                mlflow.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
            mlflow.log_dict({"a": [1, 2], "b": {"c": "d"}}, "config/settings.json")
            mlflow.log_dict({"k": "v"}, "config/settings.yaml")
            mlflow.log_text("hello ünïcode", "notes/readme.txt")
            mlflow.log_table(pd.DataFrame({"q": ["x", "y"], "score": [0.5, 0.7]}), "tables/eval.json")
            with contextlib.suppress(ImportError):
                from PIL import Image

                mlflow.log_image(Image.new("RGB", (8, 8), (255, 0, 0)), "images/red.png")
            mlflow.log_artifacts(str(source), artifact_path="bundle")
            with mlflow.start_run(run_name="inner", nested=True) as inner:
                mlflow.log_metric("inner_metric", 2.5)
                with mlflow.start_run(run_name="innermost", nested=True) as innermost:
                    mlflow.set_tag("depth", "2")
        run_id = outer.info.run_id

        run = client.get_run(run_id)
        children = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
        grandchild = client.get_run(innermost.info.run_id)
        history = [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")]

        depth = {
            path: listing(client, run_id, path)
            for path in (None, "bundle", "bundle/sub", "bundle/sub/deeper", "config", "bundle/top.txt", "nowhere")
        }
        folder_copy = Path(client.download_artifacts(run_id, "bundle/sub", str(folder / "folder")))
        whole = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/", dst_path=str(folder / "whole")))
        one = Path(
            mlflow.artifacts.download_artifacts(f"runs:/{run_id}/notes/readme.txt", dst_path=str(folder / "one"))
        )
        table = mlflow.load_table("tables/eval.json", run_ids=[run_id])
        return {
            "params": run.data.params,
            "metrics": run.data.metrics,
            "history": history,
            "children": [r.info.run_name for r in children],
            "child id": [r.info.run_id for r in children] == [inner.info.run_id],
            "grandchild": (
                grandchild.data.tags["mlflow.parentRunId"] == inner.info.run_id,
                grandchild.data.tags["depth"],
            ),
            "listing": depth,
            "folder": (folder_copy.name, tree(folder_copy)),
            "whole": tree(whole),
            "one": (one.name, one.read_text()),
            "text": mlflow.artifacts.load_text(f"runs:/{run_id}/notes/readme.txt"),
            "dict": mlflow.artifacts.load_dict(f"runs:/{run_id}/config/settings.json"),
            "yaml": mlflow.artifacts.load_text(f"runs:/{run_id}/config/settings.yaml"),
            "table": table.drop(columns=["run_id"], errors="ignore").to_dict("records"),
            "artifact uri": run.info.artifact_uri.endswith(f"/{run_id}/artifacts"),
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["children"] == ["inner"] and seen["child id"]
    assert seen["listing"]["bundle/sub/deeper"] == [("bundle/sub/deeper/low.bin", False, 10240)]
    assert seen["folder"][1] == {
        "mid.csv": seen["folder"][1]["mid.csv"],
        "deeper/low.bin": seen["whole"]["bundle/sub/deeper/low.bin"],
    }
    assert seen["text"] == "hello ünïcode"
    if linked.dual:  # what the user wrote, in the central copy too
        copies = linked.dual.copies(named("runs"))
        assert sorted(copies) == ["inner", "innermost", "outer"]
        assert copies["outer"] == (seen["params"], seen["metrics"], [path for path, _, _ in seen["listing"][None]])


def test_search_runs_and_experiments(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        name = named("search")
        experiment_id = mlflow.set_experiment(name).experiment_id
        ids = {}
        for index, (optimizer, team) in enumerate((("adam", "red"), ("sgd", "blue"), ("adam", "blue"))):
            with mlflow.start_run(run_name=f"trial-{index}") as run:
                mlflow.log_params({"optimizer": optimizer, "index": index})
                mlflow.set_tags({"team": team})
                mlflow.log_metric("score", index * 1.5)
            ids[run.info.run_id] = run.info.run_name
        with mlflow.start_run(run_name="broken") as broken:
            pass
        client.set_terminated(broken.info.run_id, status="FAILED")
        ids[broken.info.run_id] = "broken"

        def names(frame: pd.DataFrame) -> list[str]:
            return [ids[run_id] for run_id in frame["run_id"]]

        frames = {
            "all": mlflow.search_runs([experiment_id], order_by=["attributes.run_name ASC"]),
            "param": mlflow.search_runs([experiment_id], "params.optimizer = 'adam'", order_by=["metrics.score DESC"]),
            "tag": mlflow.search_runs([experiment_id], "tags.team = 'blue' and params.optimizer != 'sgd'"),
            "status": mlflow.search_runs([experiment_id], "attributes.status = 'FAILED'"),
            "like": mlflow.search_runs(
                [experiment_id], "attributes.run_name LIKE 'trial-%'", order_by=["start_time ASC"]
            ),
            "metric": mlflow.search_runs(experiment_names=[name], filter_string="metrics.score >= 1.5"),
        }
        columns = sorted(frames["all"].columns)
        listed = mlflow.search_runs([experiment_id], output_format="list", max_results=2, order_by=["run_name DESC"])

        client.set_experiment_tag(experiment_id, "stage", "sweep")
        mlflow.set_experiment_tags({"owner": "data", "kind": "sweep"})
        by_name = mlflow.get_experiment_by_name(name)
        found = mlflow.search_experiments(filter_string=f"name = '{name}' and tags.stage = 'sweep'")
        liked = mlflow.search_experiments(filter_string=f"name LIKE 'sweep-search-{SUFFIX}%'", order_by=["name"])

        mlflow.delete_run(broken.info.run_id)
        deleted_runs = mlflow.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
        client.restore_run(broken.info.run_id)
        mlflow.delete_experiment(experiment_id)
        after_delete = (
            mlflow.get_experiment_by_name(name).lifecycle_stage,
            [e.name for e in mlflow.search_experiments(filter_string=f"name = '{name}'")],
            [
                e.name
                for e in mlflow.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=f"name = '{name}'")
            ],
        )
        client.restore_experiment(experiment_id)

        def located(uri: str) -> str:
            # A store with workspaces (a `central` workspace's) keeps each one's artifacts under `workspaces/<name>/`
            # and its locations say so, where a store without writes none: the client reads and writes them
            # through the gateway alike (docs/dual-tracking.md, "What a user sees").
            return re.sub(r"^mlflow-artifacts:/workspaces/[^/]+/", "mlflow-artifacts:/", uri)

        return {
            "locations": (
                located(by_name.artifact_location) == f"mlflow-artifacts:/{experiment_id}",
                located(client.get_run(broken.info.run_id).info.artifact_uri)
                == f"mlflow-artifacts:/{experiment_id}/{broken.info.run_id}/artifacts",
            ),
            "frames": {key: names(frame) for key, frame in frames.items()},
            "columns": columns,
            "listed": [r.info.run_name for r in listed],
            "by name": (by_name.experiment_id == experiment_id, by_name.tags.get("stage"), by_name.tags.get("kind")),
            "found": [e.name for e in found],
            "liked": [e.name for e in liked],
            "deleted runs": names(deleted_runs),
            "after delete": after_delete,
            "restored": (
                client.get_experiment(experiment_id).lifecycle_stage,
                client.get_run(broken.info.run_id).info.lifecycle_stage,
            ),
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["frames"]["param"] == ["trial-2", "trial-0"]
    assert seen["frames"]["tag"] == ["trial-2"]
    assert seen["after delete"] == ("deleted", [], [named("search")])
    assert seen["locations"] == (True, True)


class AddN(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return model_input["x"] + 1


def test_models_registry_and_loading(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    from mlflow.models import infer_signature

    sklearn = pytest.importorskip("sklearn.linear_model")

    def scenario(client: MlflowClient, folder: Path) -> Any:
        mlflow.set_experiment(named("models"))
        name = named("pyfunc")
        example = pd.DataFrame({"x": [1.0, 2.0]})
        signature = infer_signature(example, pd.Series([2.0, 3.0]))
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=AddN(),
                registered_model_name=name,
                input_example=example,
                signature=signature,
            )
        features = np.array([[0.1, 0.2], [0.9, 0.8], [0.3, 0.9], [0.7, 0.1]])
        fitted = sklearn.LogisticRegression().fit(features, [0, 1, 0, 1])
        sk_name = named("sklearn")
        with mlflow.start_run():
            sk_info = mlflow.sklearn.log_model(
                fitted, name="clf", registered_model_name=sk_name, input_example=features[:2]
            )
        client.set_registered_model_alias(name, "champion", "1")
        probe = pd.DataFrame({"x": [10.0]})
        loads = {
            uri.replace(run.info.run_id, "<run>").replace(info.model_id, "<model>"): list(
                mlflow.pyfunc.load_model(uri).predict(probe)
            )
            for uri in (
                f"runs:/{run.info.run_id}/model",
                f"models:/{name}/1",
                f"models:/{name}@champion",
                f"models:/{info.model_id}",
                info.model_uri,
            )
        }
        sk_loaded = mlflow.sklearn.load_model(f"models:/{sk_name}/1")
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
        example = mlflow.models.get_model_info(f"models:/{name}/1").saved_input_example_info

        copied = client.copy_model_version(f"models:/{name}/1", named("copy"))
        by_alias = client.get_model_version_by_alias(name, "champion")
        searches = {
            "name": client.search_model_versions(f"name = '{name}'"),
            "run": client.search_model_versions(f"run_id = '{run.info.run_id}'"),
            "like": client.search_model_versions(f"name LIKE 'sweep-%-{SUFFIX}'", order_by=["name ASC"]),
            "source": client.search_model_versions(f"source_path = 'runs:/{run.info.run_id}/model'"),
        }
        staged = client.transition_model_version_stage(name, "1", "Staging")
        latest = client.get_latest_versions(name, stages=["Staging"])
        renamed = named("renamed")
        client.rename_registered_model(name, renamed)
        after_rename = client.get_model_version_by_alias(renamed, "champion").version
        renamed_load = list(mlflow.pyfunc.load_model(f"models:/{renamed}@champion").predict(probe))
        client.delete_registered_model(renamed)
        with pytest.raises(MlflowException) as gone:
            client.get_registered_model(renamed)
        return {
            "versions": (info.registered_model_version, sk_info.registered_model_version),
            "model uri": info.model_uri == f"models:/{info.model_id}",
            "loads": loads,
            "signature": loaded.metadata.get_input_schema().to_dict(),
            "example": example,
            "sklearn": list(sk_loaded.predict(features)),
            "copy": (copied.name, copied.version, copied.source.startswith("models:/")),
            "alias": (by_alias.version, by_alias.aliases),
            "searches": {k: sorted((v.name, v.version) for v in found) for k, found in searches.items()},
            "staged": (staged.current_stage, [v.version for v in latest]),
            "renamed": (after_rename, renamed_load),
            "gone": gone.value.error_code,
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert set(map(tuple, seen["loads"].values())) == {(11.0,)}
    assert seen["searches"]["name"] == [(named("pyfunc"), "1")]


def outcome(call: Callable[[], Any]) -> Any:
    """What a call returned, or the error code and status it raised: refusals are compared like answers."""
    try:
        return ("returned", call())
    except MlflowException as error:
        return ("raised", error.error_code, error.get_http_status_code())


def rename_refused(seen: Any) -> Any:
    """A deleted experiment's rename, the one refusal the gateway words differently on purpose: MLflow's store
    answers 500 INVALID_STATE, which the client retries until it raises INTERNAL_ERROR, and the gateway answers 409
    INVALID_STATE at once (test_tracking.py holds the gateway's answer). Either is the same refusal here."""
    if seen in (("raised", "INTERNAL_ERROR", 500), ("raised", "INVALID_STATE", 500)):
        return ("raised", "not an active experiment")
    return seen


def pages(fetch: Callable[[str | None], Any], label: Callable[[Any], Any]) -> list[list[Any]]:
    """Every page of a paged search, following its tokens as a user's loop does."""
    seen, token = [], None
    while True:
        page = fetch(token)
        seen.append([label(item) for item in page])
        token = page.token
        if not token:
            return seen


def test_experiment_pages_filters_and_refusals(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        base = named("pages")

        def short(experiments: Any) -> list[str]:
            return [e.name.removeprefix(base) for e in experiments]

        ids = [client.create_experiment(f"{base}-{i}", tags={"i": str(i), "parity": str(i % 2)}) for i in range(5)]
        paged = pages(
            lambda token: client.search_experiments(
                max_results=2, filter_string=f"name LIKE '{base}-%'", order_by=["name DESC"], page_token=token
            ),
            lambda e: e.name.removeprefix(base),
        )
        client.rename_experiment(ids[0], f"{base}-renamed")
        client.delete_experiment(ids[1])
        mine = f"name LIKE '{base}%'"
        experiment = client.get_experiment(ids[2])
        return {
            "pages": paged,
            "tags": short(client.search_experiments(filter_string=f"tags.parity = '1' and {mine}")),
            "tag like": short(client.search_experiments(filter_string=f"tags.i LIKE '%3%' and {mine}")),
            "ilike": short(
                client.search_experiments(filter_string=f"name ILIKE '{base.upper()}-%'", order_by=["name"])
            ),
            "all": short(client.search_experiments(view_type=ViewType.ALL, filter_string=mine, order_by=["name"])),
            "deleted": short(client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=mine)),
            "times": len(
                client.search_experiments(
                    filter_string=f"creation_time > 0 and {mine}", order_by=["last_update_time DESC"]
                )
            ),
            "fluent": len(mlflow.search_experiments(filter_string=mine, max_results=None)),
            "got": (experiment.name.removeprefix(base), experiment.lifecycle_stage, experiment.tags),
            "by id": mlflow.set_experiment(experiment_id=ids[2]).name.removeprefix(base),
            "refused": {
                "rename deleted": rename_refused(outcome(lambda: client.rename_experiment(ids[1], f"{base}-again"))),
                "taken": outcome(lambda: client.create_experiment(f"{base}-2")),
                "missing": outcome(lambda: client.get_experiment("987654321")),
                "bad filter": outcome(lambda: client.search_experiments(filter_string="nonsense = 1")),
                "bad order": outcome(lambda: client.search_experiments(order_by=["bogus"])),
                "bad token": outcome(lambda: client.search_experiments(page_token="garbage")),
                "too many": outcome(lambda: client.search_experiments(max_results=50001)),
                "set missing": outcome(lambda: mlflow.set_experiment(experiment_id="987654321")),
            },
            "missing by name": client.get_experiment_by_name(f"{base}-nowhere"),
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["pages"] == [["-4", "-3"], ["-2", "-1"], ["-0"]]
    assert seen["refused"]["taken"] == ("raised", "RESOURCE_ALREADY_EXISTS", 400)


def test_run_filters_pages_and_metric_history(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("filters")).experiment_id
        names: dict[str, str] = {}
        for i in range(7):
            with mlflow.start_run(
                run_name=f"r{i}", tags={"grp": "odd" if i % 2 else "even"}, description=f"d{i}"
            ) as run:
                mlflow.log_param("i", i)
                for step in range(30):
                    mlflow.log_metric("m", i + step / 10, step=step)
                if i == 3:
                    frame = pd.DataFrame({"a": [1]})
                    mlflow.log_input(mlflow.data.from_pandas(frame, name="ds3"), context="eval")
            names[run.info.run_id] = f"r{i}"
        first, second = list(names)[:2]

        def found(filter_string: str) -> Any:
            return outcome(
                lambda: sorted(names[r.info.run_id] for r in client.search_runs([experiment_id], filter_string))
            )

        filters = {
            "run_id =": f"attributes.run_id = '{first}'",
            "run_id IN": f"attributes.run_id IN ('{first}', '{second}')",
            "run_id NOT IN": f"attributes.run_id NOT IN ('{first}')",
            "status": "attributes.status != 'RUNNING'",
            "times": "attributes.start_time > 0 and attributes.end_time > 0 and attributes.created > 0",
            "name ILIKE": "run_name ILIKE 'R1%'",
            "user": "attributes.user_id != 'nobody'",
            "quoted tag": "tags.`grp` LIKE 'ev%'",
            "tag set": "tags.grp IS NOT NULL and tags.nowhere IS NULL",
            "param IN": "params.i IN ('1', '2')",
            "metric": "metrics.m > 8",
            "dataset": "datasets.name = 'ds3' and datasets.context = 'eval' and datasets.digest != 'x'",
            "artifact uri": "attribute.artifact_uri LIKE '%artifacts%'",
            "system tag": "tags.mlflow.runName = 'r2'",
            "bad grammar": "bad grammar ===",
            "metric as text": "metrics.m = 'text'",
        }
        orders = (["metrics.m DESC"], ["tags.grp ASC", "params.i DESC"], ["attributes.start_time DESC"], ["bogus.x"])
        client.update_run(first, name="renamed", status="KILLED")
        updated = client.get_run(first)
        store = client._tracking_client.store
        runs = list(names)[:2]

        def store_answer(path: str, method: str, **request: Any) -> tuple[int, Any]:
            """A call the client's own transport makes (its credentials and workspace) that no client API makes."""
            answer = http_request(store.get_host_creds(), path, method, **request)
            return answer.status_code, answer.json()

        def bulk_interval(run_ids: list[str], **params: int) -> Any:
            status, answer = store_answer(
                "/api/2.0/mlflow/metrics/get-history-bulk-interval",
                "GET",
                params={"run_ids": run_ids, "metric_key": "m", **params},
            )
            return status, [(names[m["run_id"]], m["step"], m["value"]) for m in answer.get("metrics", [])]

        return {
            "pages": pages(
                lambda token: client.search_runs(
                    [experiment_id], max_results=3, order_by=["params.i DESC"], page_token=token
                ),
                lambda r: names[r.info.run_id],
            ),
            "filters": {label: found(text) for label, text in filters.items()},
            "orders": {
                str(order): outcome(
                    lambda order=order: [
                        names[r.info.run_id] for r in client.search_runs([experiment_id], order_by=order)
                    ]
                )
                for order in orders
            },
            # No experiment searched: MLflow finds no run and no logged model, which is no error.
            "no experiment": outcome(lambda: list(client.search_runs([]))),
            "no experiment models": outcome(lambda: list(client.search_logged_models(experiment_ids=[]))),
            "no experiment models by hand": outcome(
                lambda: store_answer("/api/2.0/mlflow/logged-models/search", "POST", json={"experiment_ids": []})
            ),
            "no experiment datasets": outcome(
                lambda: store_answer(
                    "/ajax-api/2.0/mlflow/experiments/search-datasets", "POST", json={"experiment_ids": []}
                )
            ),
            "frame": len(mlflow.search_runs([experiment_id], max_results=100000)),
            "updated": (updated.info.run_name, updated.info.status, updated.data.tags.get("mlflow.note.content")),
            "history": len(client.get_metric_history(first, "m")),
            # The client samples a history itself; the UI asks the server (the store's own sampling).
            "bulk": [
                bulk_interval(runs, max_results=5),
                bulk_interval(runs, max_results=10, start_step=5, end_step=20),
            ],
            "refused": {
                "missing run": outcome(lambda: client.get_run("0" * 32)),
                "bad run id": outcome(lambda: client.get_run("nope")),
                "too many": outcome(lambda: client.search_runs([experiment_id], max_results=50001)),
                "param changed": outcome(lambda: client.log_param(first, "i", "99")),
                "missing tag": outcome(lambda: client.delete_tag(first, "nowhere")),
                "batch too big": outcome(
                    lambda: client.log_batch(first, params=[Param(f"p{i}", "v") for i in range(101)])
                ),
                "param too long": outcome(lambda: client.log_param(first, "long", "x" * 9000)),
            },
            "inputs": [
                (i.dataset.name, [(t.key, t.value) for t in i.tags])
                for i in client.get_run(list(names)[3]).inputs.dataset_inputs
            ],
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["pages"] == [["r6", "r5", "r4"], ["r3", "r2", "r1"], ["r0"]]
    assert seen["no experiment"] == ("returned", []) and seen["no experiment models by hand"] == ("returned", (200, {}))
    assert [status for status, _ in seen["bulk"]] == [200, 200]
    assert seen["filters"]["dataset"] == ("returned", ["r3"])


def test_registry_pages_edits_and_refusals(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        mlflow.set_experiment(named("registry"))
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
        source = f"runs:/{run.info.run_id}/model"
        base = named("registry")
        for i in range(4):
            client.create_registered_model(f"{base}-{i}", tags={"i": str(i)}, description=f"model {i}")
            for _ in range(2):
                client.create_model_version(f"{base}-{i}", source, run_id=run.info.run_id, tags={"v": "t"})
        name = f"{base}-0"
        client.update_registered_model(name, description="changed")
        client.update_model_version(name, "1", description="changed too")
        client.set_registered_model_tag(name, "k", "v")
        client.delete_registered_model_tag(name, "i")
        client.set_model_version_tag(name, "1", "k", "v")
        client.delete_model_version_tag(name, "1", "v")
        client.set_registered_model_alias(name, "prod", "2")
        client.transition_model_version_stage(name, "2", "Production")
        client.transition_model_version_stage(name, "1", "Production", archive_existing_versions=True)
        model = client.get_registered_model(name)
        version = client.get_model_version(name, "1")

        def versions(filter_string: str) -> Any:
            return outcome(
                lambda: sorted(
                    (v.name.removeprefix(base), v.version) for v in client.search_model_versions(filter_string)
                )
            )

        seen = {
            "model pages": pages(
                lambda token: client.search_registered_models(
                    filter_string=f"name LIKE '{base}-%'", max_results=3, order_by=["name DESC"], page_token=token
                ),
                lambda m: m.name.removeprefix(base),
            ),
            "version pages": pages(
                lambda token: client.search_model_versions(
                    filter_string=f"name LIKE '{base}-%'",
                    max_results=3,
                    order_by=["name ASC", "version_number DESC"],
                    page_token=token,
                ),
                lambda v: (v.name.removeprefix(base), v.version),
            ),
            "model": (model.description, model.tags, model.aliases),
            "latest": sorted((v.version, v.current_stage) for v in model.latest_versions),
            "version": (version.description, version.tags, version.current_stage, version.status),
            "download uri": client.get_model_version_download_uri(name, "1").endswith(
                f"/{run.info.run_id}/artifacts/model"
            ),
            "model filters": {
                text.removeprefix(base): outcome(
                    lambda text=text: sorted(m.name.removeprefix(base) for m in client.search_registered_models(text))
                )
                for text in (f"tags.i = '3' and name LIKE '{base}%'", f"name ILIKE '{base.upper()}-%'")
            },
            "version filters": {
                "number": versions(f"name = '{name}' and version_number > 1"),
                "tag": versions(f"name = '{name}' and tags.k = 'v'"),
                "run IN": versions(f"run_id IN ('{run.info.run_id}') and name = '{name}'"),
                "bad": versions("bogus = 1"),
            },
            "refused": {
                "missing model": outcome(lambda: client.get_registered_model(f"{base}-nowhere")),
                "missing version": outcome(lambda: client.get_model_version(name, "99")),
                "bad version": outcome(lambda: client.get_model_version(name, "abc")),
                "taken": outcome(lambda: client.create_registered_model(name)),
                "missing alias": outcome(lambda: client.get_model_version_by_alias(name, "nowhere")),
                "bad stage": outcome(lambda: client.transition_model_version_stage(name, "1", "Bogus")),
                "rename to taken": outcome(lambda: client.rename_registered_model(name, f"{base}-1")),
            },
        }
        client.delete_model_version(f"{base}-1", "2")
        client.delete_registered_model_alias(name, "prod")
        stage = mlflow.artifacts.download_artifacts(f"models:/{name}/Production", dst_path=str(folder / "stage"))
        latest = mlflow.artifacts.download_artifacts(f"models:/{name}/latest", dst_path=str(folder / "latest"))
        seen["after"] = (
            [v.version for v in client.search_model_versions(f"name = '{base}-1'")],
            client.get_registered_model(name).aliases,
            tree(Path(stage)),
            tree(Path(latest)),
        )
        return seen

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["model pages"] == [["-3", "-2", "-1"], ["-0"]]
    assert seen["latest"] == [("1", "Production"), ("2", "Archived")]


def test_artifacts_multipart_and_artifact_uris(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    from PIL import Image

    multipart = {
        "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
        "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(1024 * 1024),
        "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(1024 * 1024),
        "MLFLOW_ENABLE_MULTIPART_DOWNLOAD": "true",
        "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE": str(1024 * 1024),
        "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE": str(1024 * 1024),
    }
    large = tmp_path / "large.bin"
    large.write_bytes(bytes(range(256)) * (12 * 1024))  # 3 MiB: three parts where the store splits uploads

    def scenario(client: MlflowClient, folder: Path) -> Any:
        mlflow.set_experiment(named("multipart"))
        with stock_client_env(**multipart), mlflow.start_run() as run:
            mlflow.log_artifact(str(large), "large")
            mlflow.log_image(Image.new("RGB", (3, 2), (0, 0, 255)), "images/blue.png")
            got = Path(client.download_artifacts(run.info.run_id, "large/large.bin", str(folder / "large")))
        artifact_uri = client.get_run(run.info.run_id).info.artifact_uri
        return {
            "listing": listing(client, run.info.run_id, "large"),
            "same bytes": got.read_bytes() == large.read_bytes(),
            "image": mlflow.artifacts.load_image(f"runs:/{run.info.run_id}/images/blue.png").size,
            "by uri": sorted(f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=artifact_uri)),
            "by uri folder": tree(
                Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{artifact_uri}/large", dst_path=str(folder / "u")
                    )
                )
            ),
            "missing": outcome(lambda: client.download_artifacts(run.info.run_id, "nowhere.txt", str(folder))),
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["same bytes"] and seen["image"] == (3, 2)


def test_basic_auth_with_a_token_as_password(sides: Sides, tmp_path: Path) -> None:
    """MLFLOW_TRACKING_USERNAME/PASSWORD (the client sends Basic, and prefers it to a token when both are set)."""

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("basic")).experiment_id
        user = f"sweep.{SUFFIX}@example.com"
        with stock_client_env(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=sides.gateway.token or ""):
            with mlflow.start_run() as run:
                mlflow.log_param("auth", "basic")
            basic = MlflowClient().get_run(run.info.run_id)
            os.environ["MLFLOW_TRACKING_USERNAME"] = "token"
            as_token = [r.info.run_id for r in MlflowClient().search_runs([experiment_id])]
        return {
            "params": basic.data.params,
            "user": basic.info.user_id == run.info.user_id,
            "found": as_token == [run.info.run_id],
        }

    assert both(sides, tmp_path, scenario) == {"params": {"auth": "basic"}, "user": True, "found": True}


def mlflow_cli(target: Target, folder: Path, *args: str) -> tuple[int, str]:
    """The `mlflow` command of the venv, configured for `target` through the environment as a user's shell is."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_WORKSPACE")}
    env["MLFLOW_TRACKING_URI"] = target.uri
    if target.token:
        env["MLFLOW_TRACKING_TOKEN"] = target.token
    if target.workspace:
        env["MLFLOW_WORKSPACE"] = target.workspace
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), *args],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout


def command_line_session(target: Target, folder: Path) -> dict[str, Any]:
    """What a user sees of one session of `mlflow` commands: their exit codes and output, ids replaced."""
    (folder / "files" / "sub").mkdir(parents=True)
    (folder / "files" / "sub" / "b.txt").write_text("b")
    (folder / "one.txt").write_text("one")
    name = named("cli")
    created, out = mlflow_cli(target, folder, "experiments", "create", "--experiment-name", name)
    experiment_id = out.split()[-1]
    mlflow_cli(target, folder, "runs", "create", "--experiment-id", experiment_id, "--run-name", "by-cli")
    with talking_to(target) as client:
        run_id = client.search_runs([experiment_id])[0].info.run_id

    def run(*args: str) -> tuple[int, Any]:
        code, out = mlflow_cli(target, folder, *args)
        out = out.replace(run_id, "<run>").replace(str(folder), "")
        # The two stores number experiments apart; a bare small number is too common to replace everywhere.
        # MLflow's messages spell it "id" and "ID" ("Experiment with ID 5 has been deleted.").
        for before, after in (
            (f"/{experiment_id}", "/<experiment>"),
            (f"id {experiment_id} ", "id <experiment> "),
            (f"ID {experiment_id} ", "ID <experiment> "),
        ):
            out = out.replace(before, after)
        out = out.replace(f'"experiment_id": "{experiment_id}"', '"experiment_id": "<experiment>"')
        with contextlib.suppress(ValueError):
            document = json.loads(out)
            if isinstance(document, dict):  # an experiment: its times are the clock's
                return code, {k: v for k, v in document.items() if not k.endswith("time")}
            return code, document
        return code, out.strip()

    steps = [
        run("experiments", "get", "--experiment-name", name, "--output", "json"),
        run("artifacts", "log-artifact", "--local-file", "one.txt", "--run-id", run_id, "-a", "top"),
        run("artifacts", "log-artifacts", "--local-dir", "files", "--run-id", run_id, "-a", "tree"),
        run("artifacts", "list", "--run-id", run_id, "--artifact-path", "tree"),
        run("artifacts", "download", "--run-id", run_id, "--artifact-path", "tree", "--dst-path", "copy"),
        run("runs", "delete", "--run-id", run_id),
        run("runs", "restore", "--run-id", run_id),
        run("experiments", "delete", "--experiment-id", experiment_id),
        run("experiments", "restore", "--experiment-id", experiment_id),
        run("runs", "describe", "--run-id", "0" * 32),
    ]
    described = json.loads(mlflow_cli(target, folder, "runs", "describe", "--run-id", run_id)[1])
    return {
        "created": created,
        "steps": steps,
        "described": (described["info"]["run_name"], described["info"]["status"], described["data"]["params"]),
        "copied": tree(folder / "copy"),
    }


def test_mlflow_command_line(sides: Sides, tmp_path: Path) -> None:
    """`mlflow experiments`, `mlflow runs` and `mlflow artifacts` against a tracking server.

    Through team-a only: each command is a process of its own (about 50 s a session), and what the commands send is
    what the client's calls in the scenarios run in every mode send."""
    seen = {}
    for target in (sides.direct, sides.gateway):
        (tmp_path / target.label).mkdir()
        seen[target.label] = command_line_session(target, tmp_path / target.label)
    assert seen["gateway"] == seen["direct"]
    assert list(seen["gateway"]["copied"]) == ["tree/sub/b.txt"]


def test_logged_models(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("logged")).experiment_id
        first = mlflow.initialize_logged_model(name="first", tags={"kind": "baseline"}, params={"alpha": "0.1"})
        mlflow.finalize_logged_model(first.model_id, "READY")
        second = mlflow.initialize_logged_model(name="second")
        mlflow.set_logged_model_tags(second.model_id, {"kind": "candidate", "round": "2"})
        mlflow.delete_logged_model_tag(second.model_id, "round")
        with mlflow.start_run():
            mlflow.log_metric("accuracy", 0.8, model_id=first.model_id)
            mlflow.log_metric("accuracy", 0.9, model_id=second.model_id)
        mlflow.finalize_logged_model(second.model_id, "FAILED")
        ids = {first.model_id: "first", second.model_id: "second"}
        frame = mlflow.search_logged_models(experiment_ids=[experiment_id])
        listed = mlflow.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string="metrics.accuracy > 0.85",
            output_format="list",
        )
        ordered = mlflow.search_logged_models(
            experiment_ids=[experiment_id],
            order_by=[{"field_name": "metrics.accuracy", "ascending": False}],
            output_format="list",
        )
        tagged = mlflow.search_logged_models(
            experiment_ids=[experiment_id], filter_string="tags.kind = 'baseline'", output_format="list"
        )
        fetched = mlflow.get_logged_model(second.model_id)
        return {
            "frame": sorted(ids[i] for i in frame["model_id"]),
            "columns": sorted(frame.columns),
            "listed": [ids[m.model_id] for m in listed],
            "ordered": [ids[m.model_id] for m in ordered],
            "tagged": [ids[m.model_id] for m in tagged],
            "second": (str(fetched.status), fetched.tags, [(m.key, m.value) for m in fetched.metrics or []]),
            "first params": mlflow.get_logged_model(first.model_id).params,
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["listed"] == ["second"] and seen["ordered"] == ["second", "first"]


def test_traces_and_assessments(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("traces")).experiment_id

        @mlflow.trace(name="outer", attributes={"team": "sweep"})
        def outer(question: str) -> str:
            return inner(question.upper())

        @mlflow.trace
        def inner(text: str) -> str:
            return text + "!"

        assert outer("why") == "WHY!"
        with mlflow.start_span("manual", span_type="CHAIN") as span:
            span.set_inputs({"q": 1})
            span.set_outputs({"a": 2})
            with mlflow.start_span("child") as child:
                child.set_attribute("k", "v")
            manual_id = span.trace_id
        mlflow.flush_trace_async_logging()
        frame = mlflow.search_traces(locations=[experiment_id], order_by=["timestamp_ms ASC"])
        trace_ids = list(frame["trace_id"])
        assert len(trace_ids) == 2 and manual_id in trace_ids
        first_id = trace_ids[0] if trace_ids[1] == manual_id else trace_ids[1]

        mlflow.set_trace_tag(manual_id, "reviewed", "yes")
        client.set_trace_tag(manual_id, "temp", "x")
        client.delete_trace_tag(manual_id, "temp")
        trace = mlflow.get_trace(manual_id)
        tagged = mlflow.search_traces(
            locations=[experiment_id], filter_string="tags.reviewed = 'yes'", return_type="list"
        )

        feedback = mlflow.log_feedback(
            trace_id=manual_id,
            name="helpful",
            value=True,
            rationale="answered",
            source=AssessmentSource(source_type="HUMAN", source_id="reviewer@example.com"),
            metadata={"round": "1"},
        )
        expectation = mlflow.log_expectation(trace_id=manual_id, name="expected", value={"a": 2})
        span_feedback = mlflow.log_feedback(
            trace_id=manual_id, name="span-score", value=0.5, span_id=trace.data.spans[1].span_id
        )
        fetched = mlflow.get_assessment(manual_id, feedback.assessment_id)
        updated = mlflow.update_assessment(
            trace_id=manual_id,
            assessment_id=feedback.assessment_id,
            assessment=mlflow.entities.Feedback(name="helpful", value=False, rationale="not really"),
        )
        overridden = mlflow.override_feedback(
            trace_id=manual_id, assessment_id=span_feedback.assessment_id, value=0.9, rationale="recheck"
        )
        mlflow.delete_assessment(manual_id, expectation.assessment_id)
        with pytest.raises(MlflowException) as deleted:
            mlflow.get_assessment(manual_id, expectation.assessment_id)
        final = mlflow.get_trace(manual_id)
        assessments = sorted((a.name, repr(a.value), a.valid, a.rationale) for a in final.info.assessments)
        frame_columns = sorted(frame.columns)
        removed = client.delete_traces(experiment_id, trace_ids=[first_id])
        remaining = mlflow.search_traces(locations=[experiment_id], return_type="list")
        return {
            # Two traces started in the same millisecond tie on timestamp_ms, and the store breaks the tie by their
            # random ids: the two sides' frames may list them in either order. Their rows, and that the times
            # ascend, do not depend on it.
            "frame": sorted(zip(frame["request"].tolist(), frame["state"].tolist(), strict=True), key=repr),
            "frame ascends": frame["request_time"].tolist() == sorted(frame["request_time"].tolist()),
            "columns": frame_columns,
            "spans": sorted((s.name, s.parent_id is None) for s in trace.data.spans),
            "span io": (trace.data.spans[0].inputs, trace.data.spans[0].outputs),
            "tags": {k: v for k, v in trace.info.tags.items() if not k.startswith("mlflow.")},
            "tagged": [t.info.trace_id == manual_id for t in tagged],
            "fetched": (fetched.name, fetched.value, fetched.rationale, fetched.source.source_id, fetched.metadata),
            "updated": (updated.value, updated.rationale),
            "overridden": (overridden.value, overridden.rationale),
            "deleted": deleted.value.error_code,
            "assessments": assessments,
            "removed": removed,
            "remaining": [t.info.trace_id == manual_id for t in remaining],
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["removed"] == 1 and seen["remaining"] == [True]


def test_prompts(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        name = named("prompt")
        first = mlflow.genai.register_prompt(name, "Hello {{name}}", commit_message="first", tags={"team": "a"})
        second = mlflow.genai.register_prompt(
            name, [{"role": "user", "content": "Hi {{name}}"}], commit_message="second"
        )
        mlflow.genai.set_prompt_alias(name, "production", first.version)
        loads = {
            "by name": mlflow.genai.load_prompt(name),
            "by version": mlflow.genai.load_prompt(name, version=1),
            "by uri": mlflow.genai.load_prompt(f"prompts:/{name}/2"),
            "by alias": mlflow.genai.load_prompt(f"prompts:/{name}@production"),
            "latest": mlflow.genai.load_prompt(f"prompts:/{name}@latest"),
        }
        found = mlflow.genai.search_prompts(filter_string=f"name = '{name}'")
        liked = mlflow.genai.search_prompts(filter_string=f"name LIKE 'sweep-prompt-{SUFFIX}%'")
        mlflow.genai.delete_prompt_alias(name, "production")
        with pytest.raises(MlflowException) as missing_alias:
            mlflow.genai.load_prompt(f"prompts:/{name}@production", cache_ttl_seconds=0)
        return {
            "versions": (first.version, second.version),
            "loads": {k: (p.version, p.template, p.commit_message) for k, p in loads.items()},
            "formatted": loads["by alias"].format(name="Ann"),
            "aliases": loads["by alias"].aliases,
            "found": [(p.name, p.tags) for p in found],
            "liked": [p.name for p in liked],
            "missing alias": missing_alias.value.error_code,
            "not a model": [m.name for m in client.search_registered_models(filter_string=f"name = '{name}'")],
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["formatted"] == "Hello Ann"


def test_datasets(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    from mlflow.genai import datasets

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("datasets")).experiment_id
        name = named("eval")
        created = datasets.create_dataset(name=name, experiment_id=experiment_id, tags={"team": "a"})
        created.merge_records(
            [
                {"inputs": {"question": "2+2"}, "expectations": {"answer": "4"}},
                {"inputs": {"question": "3+3"}, "expectations": {"answer": "6"}},
            ]
        )
        created.merge_records(pd.DataFrame([{"inputs": {"question": "2+2"}, "expectations": {"answer": "four"}}]))
        fetched = datasets.get_dataset(dataset_id=created.dataset_id)
        records = fetched.to_df()
        found = datasets.search_datasets(experiment_ids=[experiment_id])
        filtered = datasets.search_datasets(experiment_ids=[experiment_id], filter_string=f"name = '{name}'")
        datasets.set_dataset_tags(dataset_id=created.dataset_id, tags={"stage": "draft"})

        frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
        logged = mlflow.data.from_pandas(frame, name="train", targets="y")
        with mlflow.start_run() as run:
            mlflow.log_input(logged, context="training", tags={"fold": "1"})
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        return {
            "records": sorted((r["inputs"]["question"], r["expectations"]["answer"]) for _, r in records.iterrows()),
            "found": [d.name for d in found],
            "filtered": [d.name for d in filtered],
            "tags": {
                k: v
                for k, v in datasets.get_dataset(dataset_id=created.dataset_id).tags.items()
                if not k.startswith("mlflow.")
            },
            "inputs": [
                (i.dataset.name, i.dataset.digest, i.dataset.source_type, sorted((t.key, t.value) for t in i.tags))
                for i in inputs
            ],
        }

    seen = both(sides, tmp_path, scenario, through=linked.editor)
    assert seen["records"] == [("2+2", "four"), ("3+3", "6")]


def test_async_logging_and_autolog(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("async")).experiment_id
        mlflow.config.enable_async_logging(True)
        try:
            with mlflow.start_run() as run:
                mlflow.log_param("mode", "async")
                for step in range(20):
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                mlflow.set_tag("async", "yes")
            mlflow.flush_async_logging()
        finally:
            mlflow.config.enable_async_logging(False)
        history = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        mlflow.sklearn.autolog(log_input_examples=True, log_datasets=True)
        try:
            with mlflow.start_run() as auto:
                features = np.array([[0.1, 0.2], [0.9, 0.8], [0.3, 0.9], [0.7, 0.1]])
                sklearn.LogisticRegression(C=0.5).fit(features, np.array([0, 1, 0, 1]))
        finally:
            mlflow.sklearn.autolog(disable=True)
        logged = client.get_run(auto.info.run_id)
        models = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
        model = models[0]
        return {
            "history": history,
            "async run": (
                client.get_run(run.info.run_id).data.params,
                client.get_run(run.info.run_id).data.tags.get("async"),
            ),
            "auto params": sorted(logged.data.params),
            "auto metrics": sorted(logged.data.metrics),
            "auto inputs": [i.dataset.name for i in logged.inputs.dataset_inputs],
            "auto outputs": [
                o.model_id == model.model_id for o in (logged.outputs.model_outputs if logged.outputs else [])
            ],
            "models": [(m.name, str(m.status), m.source_run_id == auto.info.run_id) for m in models],
            "model artifacts": sorted(f.path for f in client.list_logged_model_artifacts(model.model_id)),
            "model files": sorted(
                tree(Path(mlflow.artifacts.download_artifacts(f"models:/{model.model_id}", dst_path=str(folder / "m"))))
            ),
            "register": mlflow.register_model(f"models:/{model.model_id}", named("autolog")).version,
            "register run": mlflow.register_model(f"runs:/{auto.info.run_id}/model", named("autolog")).version,
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["history"] == list(range(20)) and seen["models"] == [("model", "READY", True)]
    assert (seen["register"], seen["register run"]) == ("1", "2")


def test_genai_evaluate_and_linked_traces(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    from mlflow.genai.scorers import scorer

    @scorer
    def exact(outputs: Any, expectations: dict[str, Any]) -> bool:
        return bool(outputs == expectations["answer"])

    def scenario(client: MlflowClient, folder: Path) -> Any:
        mlflow.set_experiment(named("evaluate"))
        prompt = mlflow.genai.register_prompt(named("eval-prompt"), "Q: {{q}}")
        mlflow.genai.set_prompt_tag(prompt.name, "team", "a")
        mlflow.genai.set_prompt_version_tag(prompt.name, 1, "checked", "yes")

        @mlflow.trace
        def answer(q: str) -> str:
            template = mlflow.genai.load_prompt(f"prompts:/{prompt.name}/1")
            return template.format(q=q)[-1]

        active = mlflow.set_active_model(name=named("agent"))
        with mlflow.start_run() as run:
            answer("2+2=4")
        mlflow.flush_trace_async_logging()
        linked = mlflow.search_traces(run_id=run.info.run_id, return_type="list")
        by_model = mlflow.search_traces(model_id=active.model_id, return_type="list")
        result = mlflow.genai.evaluate(
            data=[
                {"inputs": {"q": "2+2"}, "outputs": "4", "expectations": {"answer": "4"}},
                {"inputs": {"q": "3+3"}, "outputs": "5", "expectations": {"answer": "6"}},
            ],
            scorers=[exact],
        )
        mlflow.flush_trace_async_logging()
        evaluated = mlflow.search_traces(run_id=result.run_id, return_type="list")
        return {
            "linked": len(linked),
            "by model": len(by_model),
            "prompts on trace": [t.info.tags.get("mlflow.linkedPrompts", "").count(prompt.name) for t in linked],
            "prompt tags": {
                k: v for k, v in mlflow.genai.get_prompt_tags(prompt.name).items() if not k.startswith("_")
            },
            "metrics": result.metrics,
            "evaluated": sorted(
                sorted((a.name, a.value) for a in t.info.assessments if a.name == "exact") for t in evaluated
            ),
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["evaluated"] == [[("exact", False)], [("exact", True)]] and seen["prompts on trace"] == [1]


def test_paths_images_and_resume(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    from PIL import Image

    def scenario(client: MlflowClient, folder: Path) -> Any:
        mlflow.set_experiment(named("paths"))
        with mlflow.start_run(run_name="first") as run:
            mlflow.log_text("spaced", "dir with space/naïve file.txt")
            mlflow.log_text("percent", "odd/100% done#1?.txt")
            for step in range(2):
                mlflow.log_image(Image.new("RGB", (4, 4), (0, step * 100, 0)), key="green", step=step)
        client.log_batch(
            run.info.run_id, metrics=[mlflow.entities.Metric("bulk", float(i), 1000 + i, i) for i in range(2500)]
        )
        with mlflow.start_run(run_id=run.info.run_id):
            mlflow.log_param("resumed", "yes")
        with mlflow.start_run(run_name="parent") as parent, mlflow.start_run(run_name=named("kid"), nested=True) as kid:
            pass
        images = listing(client, run.info.run_id, "images")
        return {
            "top": listing(client, run.info.run_id),
            "spaced": listing(client, run.info.run_id, "dir with space"),
            "odd": listing(client, run.info.run_id, "odd"),
            "spaced text": mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/dir with space/naïve file.txt"),
            "odd text": Path(
                client.download_artifacts(run.info.run_id, "odd/100% done#1?.txt", str(folder))
            ).read_text(),
            "image files": sorted(Path(p).suffix for p, _, _ in images),
            "bulk": len(client.get_metric_history(run.info.run_id, "bulk")),
            "resumed": client.get_run(run.info.run_id).data.params,
            "parent": mlflow.get_parent_run(kid.info.run_id).info.run_id == parent.info.run_id,
            "all experiments": sorted(
                r.info.run_name
                for r in mlflow.search_runs(
                    search_all_experiments=True,
                    output_format="list",
                    filter_string=f"attributes.run_name = '{named('kid')}'",
                )
            ),
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["image files"] == [".png", ".png", ".webp", ".webp"] and seen["bulk"] == 2500
    assert seen["odd text"] == "percent" and seen["spaced text"] == "spaced"


def test_trace_filters(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("trace-filters")).experiment_id

        @mlflow.trace(span_type="LLM")
        def ask(q: str) -> str:
            mlflow.update_current_trace(tags={"topic": q}, metadata={"session": "s1"})
            if q == "bad":
                raise ValueError("bad question")
            return q * 2

        ask("ok")
        with pytest.raises(ValueError):
            ask("bad")
        last = mlflow.get_last_active_trace_id()
        mlflow.flush_trace_async_logging()
        filters: dict[str, Any] = {}
        for text in (
            "trace.status = 'ERROR'",
            "tags.topic = 'ok'",
            "metadata.session = 's1'",
            "span.name = 'ask'",
            "span.type = 'LLM'",
            "trace.timestamp_ms > 0",
            "trace.name = 'ask'",
        ):
            try:
                filters[text] = sorted(
                    t.info.tags.get("topic")
                    for t in mlflow.search_traces(locations=[experiment_id], filter_string=text, return_type="list")
                )
            except Exception as error:
                filters[text] = type(error).__name__ + str(getattr(error, "error_code", ""))
        root = client.start_trace("by hand", inputs={"q": "manual"}, tags={"topic": "manual"})
        step = client.start_span("step", trace_id=root.trace_id, parent_id=root.span_id, inputs={"x": 1})
        client.end_span(root.trace_id, step.span_id, outputs={"y": 2})
        client.end_trace(root.trace_id, outputs={"a": "done"})
        mlflow.flush_trace_async_logging()
        manual = mlflow.get_trace(root.trace_id)
        filters["manual"] = [(s.name, s.outputs) for s in manual.data.spans]
        page = client.search_traces(locations=[experiment_id], max_results=1)
        rest = client.search_traces(locations=[experiment_id], max_results=1, page_token=page.token)
        return {
            "filters": filters,
            "last": mlflow.get_trace(last).info.tags.get("topic"),
            "pages": (len(page), bool(page.token), len(rest)),
            "error span": [
                (s.status.status_code, [e.name for e in s.events]) for s in mlflow.get_trace(last).data.spans
            ],
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["filters"]["trace.status = 'ERROR'"] == ["bad"] and seen["filters"]["tags.topic = 'ok'"] == ["ok"]
    assert seen["last"] == "bad" and seen["pages"] == (1, True, 1)


def test_version_sources_follow_what_they_name(sides: Sides, stack: Stack) -> None:
    """A version copied from another model needs CAN_READ on that model; a prompt's placeholder source is a
    prompt version's only (anything else made from it would be a version whose files lie nowhere it may read)."""
    with talking_to(sides.editor) as client:
        mlflow.set_experiment(named("editor-sources"))
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
        hidden = named("hidden")
        client.create_registered_model(hidden)
        client.create_model_version(hidden, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    with talking_to(sides.gateway) as client:
        mine = named("mine")
        client.create_registered_model(mine)
        for source in (f"models:/{hidden}/1", f"models:/{hidden}@champion", f"models:/{hidden}/latest"):
            with pytest.raises(MlflowException) as hidden_source:
                client.create_model_version(mine, source)
            assert hidden_source.value.error_code == "RESOURCE_DOES_NOT_EXIST", source
        prompt_tag = "mlflow.prompt.is_prompt"
        for source, tags in (
            ("prompt-template", []),
            ("dummy-source", [(prompt_tag, "false")]),
            # Given twice, the last one false: the store takes it for a model's version, and so does the gateway.
            ("prompt-template", [(prompt_tag, "true"), (prompt_tag, "false")]),
        ):
            body: dict[str, Any] = {"name": mine, "source": source, "tags": [{"key": k, "value": v} for k, v in tags]}
            answer = stack.http("team-a", token=sides.gateway.token).post(
                f"{stack.url}/api/2.0/mlflow/model-versions/create", json=body, timeout=60
            )
            assert (answer.status_code, answer.json()["error_code"]) == (403, "PERMISSION_DENIED"), body
        assert client.search_model_versions(f"name = '{mine}'") == []


def test_trace_search_pages_links_and_deletion(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    import time

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("trace-pages")).experiment_id

        @mlflow.trace(name="step", span_type="TOOL")
        def step(i: int) -> int:
            mlflow.update_current_trace(tags={"i": str(i), "parity": "odd" if i % 2 else "even"})
            with mlflow.start_span("square") as inner:
                inner.set_inputs({"i": i})
                inner.set_outputs({"square": i * i})
            return i * i

        for i in range(5):
            step(i)
            time.sleep(0.005)  # distinct timestamps: an order by time has no ties to break by random ids
        with mlflow.start_run() as run:
            step(5)
        external = mlflow.create_external_model(name="agent", tags={"kind": "external"}, params={"k": "v"})
        mlflow.set_active_model(model_id=external.model_id)
        step(6)
        mlflow.clear_active_model()
        mlflow.flush_trace_async_logging()

        def order(found: Any) -> list[str]:
            return [t.info.tags.get("i") for t in found]

        pages, token = [], None
        while True:
            page = client.search_traces(
                locations=[experiment_id], max_results=2, order_by=["timestamp_ms DESC"], page_token=token
            )
            pages.append(order(page))
            token = page.token
            if not token:
                break
        filters: dict[str, Any] = {}
        for text in (
            "tags.parity = 'even'",
            "tags.parity = 'odd' AND trace.timestamp_ms > 0",
            "trace.execution_time_ms >= 0 AND tags.i != '0'",
            "metadata.`mlflow.sourceRun` = '<run>'",
            "span.type = 'TOOL' AND tags.i = '3'",
            "tags.i IN ('1', '2')",
            "tags.i LIKE '%'",
            "span.name = 'square'",
        ):
            try:
                found = mlflow.search_traces(
                    locations=[experiment_id],
                    filter_string=text.replace("<run>", run.info.run_id),
                    order_by=["timestamp_ms ASC"],
                    return_type="list",
                )
                filters[text] = order(found)
            except MlflowException as error:
                filters[text] = error.error_code
        frame = mlflow.search_traces(locations=[experiment_id], max_results=3, order_by=["timestamp_ms ASC"])
        bare = mlflow.search_traces(locations=[experiment_id], include_spans=False, return_type="list")
        by_run = mlflow.search_traces(run_id=run.info.run_id, return_type="list")
        by_model = mlflow.search_traces(model_id=external.model_id, return_type="list")
        trace = mlflow.get_trace(by_model[0].info.trace_id)
        first_time = sorted(t.info.timestamp_ms for t in bare)[1]
        removed_old = client.delete_traces(experiment_id, max_timestamp_millis=first_time, max_traces=10)
        left = mlflow.search_traces(locations=[experiment_id], return_type="list", order_by=["timestamp_ms ASC"])
        removed_ids = client.delete_traces(experiment_id, trace_ids=[left[0].info.trace_id, left[1].info.trace_id])
        final = mlflow.search_traces(locations=[experiment_id], return_type="list", order_by=["timestamp_ms ASC"])
        return {
            "pages": pages,
            "filters": filters,
            "frame": [row["i"] for row in frame["tags"]],
            "frame spans": [len(spans) for spans in frame["spans"]],
            "bare spans": sorted(len(t.data.spans) for t in bare),
            "by run": order(by_run),
            "by model": order(by_model),
            "linked": (
                trace.info.request_metadata.get("mlflow.modelId") == external.model_id,
                trace.info.tags.get("mlflow.trace.spansLocation"),
                sorted((s.name, s.span_type) for s in trace.data.spans),
            ),
            "external": (str(mlflow.get_logged_model(external.model_id).status), external.tags.get("kind")),
            "removed": (removed_old, removed_ids),
            "final": order(final),
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["pages"] == [["6", "5"], ["4", "3"], ["2", "1"], ["0"]]
    assert seen["removed"] == (2, 2) and seen["final"] == ["4", "5", "6"]


class Verdict(__import__("pydantic").BaseModel):  # type: ignore[misc]
    answer: str
    confidence: float


def test_prompt_formats_tags_and_versions(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        name = named("chat-prompt")
        chat = [
            {"role": "system", "content": "You answer about {{ topic }}."},
            {"role": "user", "content": "{{ question }}"},
        ]
        first = mlflow.genai.register_prompt(name, chat, response_format=Verdict, tags={"team": "a", "temp": "x"})
        second = mlflow.genai.register_prompt(
            name,
            "Plain {{ question }}",
            response_format={"type": "object", "properties": {"a": {"type": "string"}}},
            model_config={"model_name": "gpt-x", "temperature": 0.2},
            commit_message="text now",
        )
        mlflow.genai.set_prompt_alias(name, "prod", 2)
        mlflow.genai.set_prompt_alias(name, "prod", 1)
        mlflow.genai.set_prompt_tag(name, "owner", "sweep")
        mlflow.genai.delete_prompt_tag(name, "temp")
        mlflow.genai.set_prompt_version_tag(name, 2, "state", "draft")
        mlflow.genai.set_prompt_version_tag(name, 2, "gone", "soon")
        mlflow.genai.delete_prompt_version_tag(name, 2, "gone")
        loaded = {
            "v1": mlflow.genai.load_prompt(name, version=1),
            "v2": mlflow.genai.load_prompt(f"prompts:/{name}/2"),
            "prod": mlflow.genai.load_prompt(f"prompts:/{name}@prod"),
            "alias by client": client.get_prompt_version_by_alias(name, "prod"),
        }
        versions = client.search_prompt_versions(name)
        found = mlflow.genai.search_prompts(filter_string=f"name = '{name}'")
        errors = {}
        for label, action in {
            "missing version": lambda: mlflow.genai.load_prompt(name, version=9),
            "missing alias": lambda: mlflow.genai.load_prompt(f"prompts:/{name}@nowhere"),
            "missing prompt": lambda: mlflow.genai.load_prompt(named("no-prompt"), version=1),
        }.items():
            try:
                errors[label] = repr(action())
            except MlflowException as error:
                errors[label] = error.error_code
        client.delete_prompt_version(name, "2")
        after = [v.version for v in client.search_prompt_versions(name)]
        return {
            "versions": (first.version, second.version),
            "loaded": {
                key: (
                    p.version,
                    p.template,
                    p.is_text_prompt,
                    p.response_format,
                    p.model_config,
                    {k: v for k, v in p.tags.items() if not k.startswith("_mlflow") and not k.startswith("mlflow.")},
                    p.aliases,
                )
                for key, p in loaded.items()
            },
            "formatted": loaded["v1"].format(topic="math", question="2+2?"),
            "variables": sorted(loaded["v1"].variables),
            "versions listed": sorted(v.version for v in versions),
            "prompt tags": {k: v for k, v in mlflow.genai.get_prompt_tags(name).items() if not k.startswith("_")},
            "found": [(p.name, p.tags) for p in found],
            "errors": errors,
            "after delete": after,
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["loaded"]["prod"][0] == 1 and seen["prompt tags"] == {"team": "a", "owner": "sweep"}


def test_dataset_life_cycle_and_evaluation(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    from mlflow.genai import datasets
    from mlflow.genai.scorers import scorer

    @scorer
    def matches(outputs: Any, expectations: dict[str, Any] | None) -> bool:
        return bool(outputs == (expectations or {}).get("answer", "6"))

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("dataset-life")).experiment_id
        names = [named(f"life-{i}") for i in range(3)]
        made = [
            datasets.create_dataset(name=n, experiment_id=experiment_id, tags={"i": str(i), "team": "a"})
            for i, n in enumerate(names)
        ]
        made[0].merge_records([{"inputs": {"q": "2+2"}, "expectations": {"answer": "4"}}])

        @mlflow.trace
        def solve(q: str) -> str:
            return {"2+2": "4", "3+3": "6"}.get(q, "?")

        solve("3+3")
        mlflow.flush_trace_async_logging()
        traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
        made[0].merge_records(traces)
        by_name = datasets.get_dataset(name=names[0])
        searches: dict[str, Any] = {}
        for label, kwargs in {
            "all": {"experiment_ids": [experiment_id], "order_by": ["name ASC"]},
            "tag": {"experiment_ids": [experiment_id], "filter_string": "tags.i = '1'"},
            "like": {"experiment_ids": [experiment_id], "filter_string": f"name LIKE '%life-2-{SUFFIX}'"},
            "first": {"experiment_ids": [experiment_id], "max_results": 1, "order_by": ["name DESC"]},
        }.items():
            try:
                searches[label] = [d.name for d in datasets.search_datasets(**kwargs)]
            except MlflowException as error:
                searches[label] = error.error_code
        datasets.delete_dataset_tag(dataset_id=made[1].dataset_id, key="team")
        result = mlflow.genai.evaluate(
            data=datasets.get_dataset(dataset_id=made[0].dataset_id),
            predict_fn=solve,
            scorers=[matches],
        )
        mlflow.flush_trace_async_logging()
        datasets.delete_dataset(dataset_id=made[2].dataset_id)
        with pytest.raises(MlflowException) as deleted:
            datasets.get_dataset(dataset_id=made[2].dataset_id)
        return {
            "records": sorted(
                (r["inputs"].get("q"), (r["expectations"] or {}).get("answer")) for _, r in by_name.to_df().iterrows()
            ),
            "by name": by_name.dataset_id == made[0].dataset_id,
            "searches": searches,
            "untagged": {k: v for k, v in datasets.get_dataset(dataset_id=made[1].dataset_id).tags.items()},
            "metrics": result.metrics,
            "evaluated": sorted(
                repr([(a.name, a.value, a.error) for a in t.info.assessments if a.name == "matches"])
                for t in mlflow.search_traces(run_id=result.run_id, return_type="list")
            ),
            "deleted": deleted.value.error_code,
            "remaining": sorted(d.name for d in datasets.search_datasets(experiment_ids=[experiment_id])),
        }

    # Deleting a dataset is the workspace's managers' (datasets have no grants of their own).
    seen = both(sides, tmp_path, scenario, through=linked.manager)
    assert seen["searches"]["tag"] == [named("life-1")]


def test_logged_model_surface(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("logged-surface")).experiment_id
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(
                name="adder",
                python_model=AddN(),
                params={"alpha": "0.5"},
                tags={"flavor": "pyfunc"},
                model_type="agent",
                input_example=pd.DataFrame({"x": [1.0]}),
            )
            mlflow.log_metric("accuracy", 0.75, model_id=info.model_id)
        mlflow.log_model_params({"beta": "2"}, model_id=info.model_id)
        external = mlflow.create_external_model(name="remote", model_type="agent", tags={"where": "there"})
        first = mlflow.set_active_model(name="by-name")
        again = mlflow.set_active_model(name="by-name")
        active = mlflow.get_active_model_id()
        mlflow.clear_active_model()
        initialized = mlflow.initialize_logged_model(name="pending", source_run_id=run.info.run_id)
        ids = {
            info.model_id: "adder",
            external.model_id: "remote",
            first.model_id: "by-name",
            initialized.model_id: "pending",
        }

        def names(found: Any) -> list[str]:
            return [ids.get(m.model_id, m.name) for m in found]

        searches: dict[str, Any] = {}
        for text in (
            "name = 'adder'",
            "params.alpha = '0.5'",
            "tags.flavor = 'pyfunc'",
            "metrics.accuracy >= 0.7",
            "source_run_id = '<run>'",
            "status = 'PENDING'",
            "model_type = 'agent'",
            "name LIKE 'by-%'",
            "name != 'adder' AND status != 'PENDING'",
        ):
            try:
                searches[text] = sorted(
                    names(
                        mlflow.search_logged_models(
                            experiment_ids=[experiment_id],
                            filter_string=text.replace("<run>", run.info.run_id),
                            output_format="list",
                        )
                    )
                )
            except MlflowException as error:
                searches[text] = error.error_code
        pages, token = [], None
        while True:
            page = client.search_logged_models(
                experiment_ids=[experiment_id], max_results=2, order_by=[{"field_name": "name"}], page_token=token
            )
            pages.append(names(page))
            token = page.token
            if not token:
                break
        fetched = mlflow.get_logged_model(info.model_id)
        client.delete_logged_model(initialized.model_id)
        with pytest.raises(MlflowException) as deleted:
            mlflow.get_logged_model(initialized.model_id)
        return {
            "same active": (first.model_id == again.model_id == active),
            "searches": searches,
            "pages": pages,
            "fetched": (
                fetched.name,
                str(fetched.status),
                fetched.model_type,
                fetched.params,
                {k: v for k, v in fetched.tags.items() if not k.startswith("mlflow.")},
                [(m.key, m.value, m.run_id == run.info.run_id) for m in fetched.metrics or []],
                fetched.source_run_id == run.info.run_id,
            ),
            "external": (str(external.status), external.model_type),
            "artifacts": sorted(f.path for f in client.list_logged_model_artifacts(info.model_id)),
            "predicted": list(mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame({"x": [1.0]}))),
            "deleted": deleted.value.error_code,
        }

    seen = both(sides, tmp_path, scenario, through=linked.target)
    assert seen["pages"] == [["adder", "by-name"], ["pending", "remote"]]
    assert seen["searches"]["params.alpha = '0.5'"] == ["adder"]


def test_registered_scorers(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    from mlflow.genai.scorers import (
        RegexMatch,
        ScorerSamplingConfig,
        delete_scorer,
        get_scorer,
        list_scorers,
        scorer,
    )

    @scorer
    def short(outputs: Any) -> bool:
        return len(str(outputs)) < 10

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("scorers")).experiment_id
        out: dict[str, Any] = {}
        # Neither store runs a scorer's own code (MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS is not set).
        with pytest.raises(MlflowException) as custom:
            short.register(name="short")
        out["custom"] = custom.value.error_code
        registered = RegexMatch(name="starts", pattern="^A").register(name="starts")
        again = RegexMatch(name="starts", pattern="^An").register(name="starts")
        out["registered"] = (registered.name, again.name)
        for label, action in {
            "start": lambda: registered.start(sampling_config=ScorerSamplingConfig(sample_rate=0.5)),
            "update": lambda: registered.update(
                sampling_config=ScorerSamplingConfig(sample_rate=0.25, filter_string="tags.x = 'y'")
            ),
            "stop": lambda: registered.stop(),
        }.items():
            try:
                changed = action()
                out[label] = (changed.name, changed.sample_rate, changed.filter_string)
            except MlflowException as error:
                out[label] = error.error_code
        listed = list_scorers(experiment_id=experiment_id)
        fetched = get_scorer(name="starts", experiment_id=experiment_id)
        first = get_scorer(name="starts", experiment_id=experiment_id, version=1)
        out["listed"] = sorted((s.name, s.sample_rate) for s in listed)
        out["fetched"] = (fetched.name, fetched.sample_rate, fetched(outputs="Ab").value, first(outputs="Ab").value)
        delete_scorer(name="starts", experiment_id=experiment_id, version=1)
        out["after one"] = sorted(s.name for s in list_scorers(experiment_id=experiment_id))
        delete_scorer(name="starts", experiment_id=experiment_id, version="all")
        out["after all"] = [s.name for s in list_scorers(experiment_id=experiment_id)]
        with pytest.raises(MlflowException) as gone:
            get_scorer(name="starts", experiment_id=experiment_id)
        out["gone"] = gone.value.error_code
        return out

    seen = both(sides, tmp_path, scenario, through=linked.manager)
    assert seen["after all"] == [] and seen["gone"] == "RESOURCE_DOES_NOT_EXIST"


def test_webhooks(sides: Sides, stack: Stack, tmp_path: Path) -> None:
    from tests.conftest import OUTBOUND_ALLOWED

    # Store `a` itself (team-a's store): it takes the plain-http loopback URL the gateway allows.
    direct = Target("direct", stack.stores["a"].url, None, None)
    own = dataclasses.replace(sides, direct=direct)

    def scenario(client: MlflowClient, folder: Path) -> Any:
        tag = uuid.uuid4().hex[:6]
        made = [
            client.create_webhook(
                name=f"hook-{tag}-{i}",
                url=f"{OUTBOUND_ALLOWED}/sweep-{i}",
                events=["model_version.created", "prompt.created"],
                description=f"number {i}",
                secret="s3cret",
            )
            for i in range(3)
        ]
        ids = {hook.webhook_id: hook.name.rsplit("-", 1)[1] for hook in made}
        listed, token = [], None
        while True:
            page = client.list_webhooks(max_results=100, page_token=token)
            listed += [ids[h.webhook_id] for h in page if h.webhook_id in ids]
            token = page.token
            if not token:
                break
        updated = client.update_webhook(
            made[0].webhook_id, description="changed", status="DISABLED", events=["registered_model.created"]
        )
        fetched = client.get_webhook(made[0].webhook_id)
        tested = client.test_webhook(made[1].webhook_id)
        client.delete_webhook(made[2].webhook_id)
        with pytest.raises(MlflowException) as gone:
            client.get_webhook(made[2].webhook_id)
        for hook in made[:2]:
            client.delete_webhook(hook.webhook_id)
        return {
            "made": [
                (h.description, str(h.status), sorted(str(e) for e in h.events), h.url.rsplit("/", 1)[1]) for h in made
            ],
            "listed": sorted(listed),
            "updated": (updated.description, str(updated.status), [str(e) for e in updated.events]),
            "fetched": (fetched.description, str(fetched.status), fetched.name == made[0].name),
            "tested": (tested.success, tested.response_status, bool(tested.error_message)),
            "gone": gone.value.error_code,
        }

    seen = both(own, tmp_path, scenario, through=sides.manager)
    assert seen["listed"] == ["0", "1", "2"]


def test_trace_metrics_links_and_attachments(sides: Sides, linked: Linked, tmp_path: Path) -> None:
    """The calls the UI and the client's helpers make that the scenarios above do not: trace metrics and filter
    correlation, batch trace infos, traces linked to a run (the REST store does not unlink), a dataset's
    experiments and records, a prompt attached to a run and a model, and a prompt deleted."""
    from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType
    from mlflow.genai import datasets
    from mlflow.tracking._tracking_service.utils import _get_store

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("metrics")).experiment_id
        other_id = mlflow.set_experiment(named("metrics-other")).experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)

        @mlflow.trace(name="work")
        def work(i: int) -> int:
            mlflow.update_current_trace(tags={"i": str(i), "kind": "even" if i % 2 == 0 else "odd"})
            if i == 3:
                raise ValueError("three")
            return i

        for i in range(4):
            with contextlib.suppress(ValueError):
                work(i)
        mlflow.flush_trace_async_logging()
        traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
        ids = [t.info.trace_id for t in sorted(traces, key=lambda t: t.info.tags["i"])]
        store = _get_store()
        out: dict[str, Any] = {}
        counts = store.query_trace_metrics(
            experiment_ids=[experiment_id],
            view_type=MetricViewType.TRACES,
            metric_name="trace_count",
            aggregations=[MetricAggregation(AggregationType.COUNT)],
            dimensions=["trace_status"],
        )
        out["counts"] = sorted((p.dimensions.get("trace_status"), p.values) for p in counts)
        spans = store.query_trace_metrics(
            experiment_ids=[experiment_id],
            view_type=MetricViewType.SPANS,
            metric_name="span_count",
            aggregations=[MetricAggregation(AggregationType.COUNT)],
        )
        out["spans"] = [p.values for p in spans]
        correlation = store.calculate_trace_filter_correlation(
            experiment_ids=[experiment_id], filter_string1="tags.kind = 'odd'", filter_string2="trace.status = 'ERROR'"
        )
        out["correlation"] = (
            correlation.filter1_count,
            correlation.filter2_count,
            correlation.joint_count,
            correlation.total_count,
        )
        infos = store.batch_get_trace_infos(ids[:2], location=experiment_id)
        out["infos"] = sorted(i.tags.get("kind") for i in infos)
        with mlflow.start_run() as run:
            pass
        client.link_traces_to_run(ids[:3], run.info.run_id)
        out["linked"] = sorted(
            t.info.tags["kind"] for t in mlflow.search_traces(run_id=run.info.run_id, return_type="list")
        )
        dataset = datasets.create_dataset(name=named("attached"), experiment_id=experiment_id)
        dataset.merge_records([{"inputs": {"q": str(i)}, "expectations": {"a": str(i)}} for i in range(3)])
        datasets.add_dataset_to_experiments(dataset_id=dataset.dataset_id, experiment_ids=[other_id])
        out["experiments"] = sorted(
            "own" if e == experiment_id else "other" for e in store.get_dataset_experiment_ids(dataset.dataset_id)
        )
        datasets.remove_dataset_from_experiments(dataset_id=dataset.dataset_id, experiment_ids=[other_id])
        out["after removal"] = store.get_dataset_experiment_ids(dataset.dataset_id) == [experiment_id]
        record_ids = sorted(
            (r["inputs"]["q"], r["dataset_record_id"])
            for _, r in datasets.get_dataset(dataset_id=dataset.dataset_id).to_df().iterrows()
        )
        out["deleted records"] = store.delete_dataset_records(dataset.dataset_id, [record_ids[0][1]])
        out["records"] = sorted(
            r["inputs"]["q"] for _, r in datasets.get_dataset(dataset_id=dataset.dataset_id).to_df().iterrows()
        )

        prompt = mlflow.genai.register_prompt(named("attached-prompt"), "Say {{ x }}")
        client.link_prompt_version_to_run(run.info.run_id, prompt)
        out["run prompts"] = [(p.name == prompt.name, p.version) for p in client.list_logged_prompts(run.info.run_id)]
        # MLflow 3.17.2's detach reads a version tag that linking no longer writes: refused the same way.
        with pytest.raises(MlflowException) as detached:
            client.detach_prompt_from_run(run.info.run_id, prompt.uri)
        out["detached"] = detached.value.error_code
        model = mlflow.initialize_logged_model(name="with-prompt")
        client.link_prompt_version_to_model(prompt.name, prompt.version, model.model_id)
        out["model tag"] = prompt.name in mlflow.get_logged_model(model.model_id).tags.get("mlflow.linkedPrompts", "")
        client.delete_prompt_version(prompt.name, str(prompt.version))
        client.delete_prompt(prompt.name)
        out["prompt gone"] = client.get_prompt(prompt.name)
        return out

    seen = both(sides, tmp_path, scenario, through=linked.manager)
    assert seen["counts"] and seen["records"] == ["1", "2"]


def test_a_trace_kept_as_an_artifact_in_a_renamed_workspace(sides: Sides, stack: Stack, tmp_path: Path) -> None:
    """A trace whose spans the store does not hold (the stock client found the store without them when the trace
    ended, as when its span export lost the race with the trace's start, or an older client logged it) has its data
    in a `traces.json` under the trace's `mlflow.artifactLocation` tag: the client uploads it there and reads it from
    there. Team-c's store knows the workspace as `upstream-c`, and the tag named `workspaces/upstream-c/...`, a path
    the gateway refuses in team-c (400 `Artifact path workspace 'upstream-c' does not match the active workspace
    'team-c'`): the trace was lost, and one already there could not be read. The tag names team-c's path, as the
    experiment's and runs' artifact URIs do."""
    from mlflow.entities import TraceInfo, TraceLocation, TraceState
    from mlflow.tracing.client import TracingClient

    admin = Admin.of(stack)
    user = admin.person(f"sweep.renamed.{SUFFIX}@example.com")
    admin.grant("workspaces/team-c", "CAN_USE", user=user.name)
    renamed = dataclasses.replace(sides, gateway=Target("gateway", stack.url, user.token, "team-c"))

    def scenario(client: MlflowClient, folder: Path) -> Any:
        experiment_id = mlflow.set_experiment(named("trace-artifact")).experiment_id
        with mlflow.start_span("answer") as span:
            span.set_inputs({"q": "why"})
            span.set_outputs({"a": "because"})
        mlflow.flush_trace_async_logging()
        kept = mlflow.get_trace(span.trace_id)
        # What the client's exporter does with a trace whose spans the store does not hold.
        tracing = TracingClient()
        info = tracing.start_trace(
            TraceInfo(
                trace_id=f"tr-{uuid.uuid4().hex}",
                trace_location=TraceLocation.from_experiment_id(experiment_id),
                request_time=kept.info.request_time,
                state=TraceState.OK,
                execution_duration=1,
                tags={"kind": "artifact"},
            )
        )
        tracing._upload_trace_data(info, kept.data)
        read = mlflow.get_trace(info.trace_id)
        listed = mlflow.search_traces(
            locations=[experiment_id], filter_string="tags.kind = 'artifact'", return_type="list"
        )
        return {
            "location": info.tags["mlflow.artifactLocation"].split("/traces/")[1] == f"{info.trace_id}/artifacts",
            "read": [(s.name, s.inputs, s.outputs) for s in read.data.spans],
            "listed": [[(s.name, s.outputs) for s in t.data.spans] for t in listed],
        }

    seen = both(renamed, tmp_path, scenario)
    assert seen["read"] == [("answer", {"q": "why"}, {"a": "because"})]
