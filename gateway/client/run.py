"""Azure ML's `Run` over MLflow, through fedgate: a script written for `azureml.core.Run` runs with its import changed.

    from gateway.client import Run            # was: from azureml.core import Run

    run = Run.get_context()                   # the MLflow run of MLFLOW_RUN_ID or the active run; offline: a stub
    run.log("accuracy", 0.91)
    run.log_row("citrus", fruit="lime", size=3)
    run.add_properties({"data_version": "2024-05"})   # add-only: the gateway refuses any change, for every client
    with run.child_run("fold-1") as child:
        child.log("loss", 0.2)
    run.get_metrics(recursive=True)           # {run_id: {name: value or list}} from the gateway's account index

Every method speaks to the tracking server with the stock MLflow client and its settings (MLFLOW_TRACKING_URI,
MLFLOW_WORKSPACE, MLFLOW_TRACKING_TOKEN ...); recursive metrics and secrets use the gateway's own endpoints.
How each Azure ML call maps onto MLflow objects is in docs/run-api.md and encoding.py. Only the standard library
and `mlflow` (matplotlib only for `log_image(plot=...)`, which takes the figure it is given).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import numbers
import os
import posixpath
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import mlflow
from mlflow.entities import Experiment, Metric, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from gateway.client import encoding as enc
from gateway.client import secrets as secret_reads
from gateway.client.shapes import checked, summarize

__all__ = ["AZURE_STATUS", "Model", "OfflineRun", "Run"]

RECURSIVE_METRICS = "/api/2.0/fedgate/runs/metrics-recursive"
ERROR_TAG = "fedgate.error"  # fail(error_details, error_code): {"code", "message"} as JSON
NOTE_TAG = "mlflow.note.content"  # MLflow's run description
IMAGES, METRIC_FILES = "fedgate/images", "fedgate/metrics"
PAGE = 1000

# MLflow's run statuses as Azure ML names them (Run.get_status, Run.list(status=...)).
AZURE_STATUS = {
    "RUNNING": "Running",
    "SCHEDULED": "NotStarted",
    "FINISHED": "Completed",
    "FAILED": "Failed",
    "KILLED": "Canceled",
}
_MLFLOW_STATUS = {**{v.lower(): k for k, v in AZURE_STATUS.items()}, **{k.lower(): k for k in AZURE_STATUS}}
_MLFLOW_STATUS.update({"queued": "SCHEDULED", "cancelled": "KILLED", "canceled": "KILLED"})
TERMINAL = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class Model:
    """What `register_model` registered: an MLflow model version, named as Azure ML's Model is."""

    name: str
    version: int
    run_id: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass
class _State:
    """What logging needs to know of the run, read once: kinds of its metrics and the next step of each."""

    kinds: dict[str, dict[str, Any]]
    steps: dict[str, int]


class Run:
    """An MLflow run with Azure ML's `Run` methods. `Run(experiment, run_id)` names an existing run."""

    def __init__(self, experiment: Any = None, run_id: str | None = None, outputs: Any = None, **kwargs: Any) -> None:
        if not run_id:
            raise TypeError("Run(experiment, run_id): run_id names an existing MLflow run (or use Run.get_context())")
        self._id = str(run_id)
        self._experiment_arg = experiment
        self._client: MlflowClient = kwargs.pop("_client", None) or MlflowClient()
        self._lock = threading.RLock()
        self._state: _State | None = None

    def __repr__(self) -> str:
        return f"Run(id={self._id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self._id)

    # -- finding runs ------------------------------------------------------------------------------------

    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False, **kwargs: Any) -> Run:
        """The run this script logs to: the active MLflow run, else the run of MLFLOW_RUN_ID (set by whatever
        started the script), else, with allow_offline, an offline run that prints what it is asked to log."""
        active = mlflow.active_run()
        run_id = active.info.run_id if active is not None else os.environ.get("MLFLOW_RUN_ID", "").strip()
        if run_id:
            return cls(None, run_id)
        if allow_offline:
            return OfflineRun()
        raise RuntimeError(
            "Run.get_context(allow_offline=False) found no run: start the script inside `mlflow.start_run()` or "
            "with MLFLOW_RUN_ID naming the run."
        )

    @staticmethod
    def get(workspace: Any = None, run_id: str | None = None) -> Run:
        """The run `run_id` (the workspace is the MLflow client's: MLFLOW_WORKSPACE or mlflow.set_workspace)."""
        if run_id is None:
            raise TypeError("Run.get(workspace, run_id) needs run_id")
        return Run(None, run_id)

    @staticmethod
    def list(
        experiment: Any,
        type: str | None = None,
        tags: str | Sequence[str] | Mapping[str, str] | None = None,
        properties: str | Sequence[str] | Mapping[str, str] | None = None,
        status: str | None = None,
        include_children: bool = False,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        """The runs of `experiment` (a name, an id, an MLflow Experiment or any object with `name`), newest first,
        matching every tag and property given (a name: present; a dict: equal values) and `status` (Azure ML's
        or MLflow's name); top-level runs only unless include_children. Read page by page as iterated."""
        _no_run_types(type)
        client = MlflowClient()
        experiment_id = _experiment_id(client, experiment)
        wanted = _wanted(tags, properties)
        wanted_status = _mlflow_status(status) if status is not None else None
        clauses = [_tag_clause(k, v) for k, v in wanted]
        if wanted_status is not None:
            clauses.append(f"attributes.status = '{wanted_status}'")
        if not include_children:
            clauses.append(f"tags.`{enc.PARENT_TAG}` IS NULL")
        top_level = None if include_children else True
        return (
            Run(experiment, run.info.run_id, _client=client)
            for run in _search(client, experiment_id, clauses)
            if _matches(run, wanted, wanted_status, top_level)
        )

    # -- what a run is -----------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def name(self) -> str:
        return str(self._mlflow_run().info.run_name or "")

    display_name = name

    @property
    def experiment(self) -> Experiment:
        return self._client.get_experiment(self._mlflow_run().info.experiment_id)

    @property
    def description(self) -> str:
        return str(self._mlflow_run().data.tags.get(NOTE_TAG, ""))

    @property
    def status(self) -> str:
        return self.get_status()

    @property
    def parent(self) -> Run | None:
        parent_id = self._mlflow_run().data.tags.get(enc.PARENT_TAG)
        return Run(None, parent_id, _client=self._client) if parent_id else None

    @property
    def properties(self) -> dict[str, str]:
        return self.get_properties()

    @property
    def tags(self) -> dict[str, str]:
        return self.get_tags()

    def get_status(self) -> str:
        """Azure ML's name of the run's status: Running, NotStarted, Completed, Failed or Canceled."""
        status = str(self._mlflow_run().info.status)
        return AZURE_STATUS.get(status, status)

    def get_details(self) -> dict[str, Any]:
        """Azure ML's run details: runId, target, status, start and end time (UTC, ISO 8601), properties,
        tags, input and output datasets, log files, submittedBy, and the error of a failed run."""
        run = self._mlflow_run()
        info, tags = run.info, run.data.tags
        details: dict[str, Any] = {
            "runId": info.run_id,
            "displayName": info.run_name or "",
            "target": "local",
            "status": AZURE_STATUS.get(str(info.status), str(info.status)),
            "startTimeUtc": _iso(info.start_time),
            "properties": enc.properties_of(tags),
            "tags": _user_tags(tags),
            "inputDatasets": [
                {"name": d.dataset.name, "digest": d.dataset.digest, "source_type": d.dataset.source_type}
                for d in (run.inputs.dataset_inputs if run.inputs else [])
            ],
            "outputDatasets": [],
            "logFiles": {},
            "submittedBy": info.user_id or tags.get("mlflow.user", ""),
        }
        if info.end_time:
            details["endTimeUtc"] = _iso(info.end_time)
        if ERROR_TAG in tags:
            with contextlib.suppress(ValueError):
                details["error"] = {"error": json.loads(tags[ERROR_TAG])}
        return details

    def get_portal_url(self) -> str:
        info = self._mlflow_run().info
        return f"{mlflow.get_tracking_uri().rstrip('/')}/#/experiments/{info.experiment_id}/runs/{self._id}"

    # -- life cycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._client.update_run(self._id, status="RUNNING")

    def complete(self, _set_status: bool = True) -> None:
        if _set_status:
            self._client.set_terminated(self._id, "FINISHED")

    def fail(self, error_details: Any = None, error_code: str | None = None, _set_status: bool = True) -> None:
        """The run failed; `error_details` (an exception or text) and `error_code` show in get_details()["error"]."""
        if error_details is not None or error_code is not None:
            message = str(error_details) if error_details is not None else ""
            error = {"code": error_code or type(error_details).__name__, "message": message[:4000]}
            self._client.set_tag(self._id, ERROR_TAG, json.dumps(error))
        if _set_status:
            self._client.set_terminated(self._id, "FAILED")

    def cancel(self) -> None:
        self._client.set_terminated(self._id, "KILLED")

    def flush(self, timeout_seconds: int = 300) -> None:
        """Every write is sent when it is made: nothing to flush."""

    def wait_for_completion(self, show_output: bool = False, wait_post_processing: bool = False) -> dict[str, Any]:
        while self._mlflow_run().info.status not in TERMINAL:
            time.sleep(2)
        return self.get_details()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc is None:
            self.complete()
        else:
            self.fail(error_details=exc)

    # -- child runs --------------------------------------------------------------------------------------

    def child_run(self, name: str | None = None, run_id: str | None = None, outputs: Any = None) -> Run:
        """A new run in this run's experiment whose parent is this run (tag mlflow.parentRunId)."""
        if run_id is not None:
            raise ValueError("child_run(run_id=...) is not supported: MLflow chooses the ids of new runs.")
        return self._children([{enc.PARENT_TAG: self._id}], [name])[0]

    def create_children(
        self, count: int | None = None, tag_key: str | None = None, tag_values: Sequence[str] | None = None
    ) -> builtins.list[Run]:
        """`count` child runs, or one per value of `tag_values`, each tagged `tag_key` (with its value)."""
        values = list(tag_values) if tag_values is not None else None
        if values is not None:
            if tag_key is None:
                raise ValueError("create_children(tag_values=...) needs tag_key, the tag the values go under")
            if count is not None and count != len(values):
                raise ValueError(f"create_children: count={count} but {len(values)} tag_values")
            count = len(values)
        if count is None or count < 0:
            raise ValueError("create_children needs count (or tag_key and tag_values)")
        tags = []
        for i in range(count):
            child = {enc.PARENT_TAG: self._id}
            if tag_key is not None:
                child[tag_key] = str(values[i]) if values is not None else ""
            tags.append(child)
        return self._children(tags, [None] * count)

    def get_children(
        self,
        recursive: bool = False,
        tags: str | Sequence[str] | Mapping[str, str] | None = None,
        properties: str | Sequence[str] | Mapping[str, str] | None = None,
        type: str | None = None,
        status: str | None = None,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        """This run's children (with `recursive`, all its descendants) matching the filters, as Run.list."""
        _no_run_types(type)
        experiment_id = self._mlflow_run().info.experiment_id
        wanted = _wanted(tags, properties)
        wanted_status = _mlflow_status(status) if status is not None else None
        parents, seen = [self._id], {self._id}
        while parents:
            parent = parents.pop(0)
            for child in _search(self._client, experiment_id, [_tag_clause(enc.PARENT_TAG, parent)]):
                child_id = child.info.run_id
                if child_id in seen:
                    continue
                seen.add(child_id)
                if recursive:
                    parents.append(child_id)
                if _matches(child, wanted, wanted_status, None):
                    yield Run(self._experiment_arg, child_id, _client=self._client)

    def _children(self, tags: builtins.list[dict[str, str]], names: builtins.list[str | None]) -> builtins.list[Run]:
        experiment_id = self._mlflow_run().info.experiment_id
        made: builtins.list[Run] = []
        for child_tags, name in zip(tags, names, strict=True):
            created = self._client.create_run(experiment_id, tags=child_tags, run_name=name)
            made.append(Run(self._experiment_arg, created.info.run_id, _client=self._client))
        return made

    # -- tags and properties -----------------------------------------------------------------------------

    def tag(self, key: str, value: Any = None) -> None:
        """Tag the run; without a value the tag's value is the empty string."""
        self.set_tags({key: "" if value is None else value})

    def set_tags(self, tags: Mapping[str, Any] | Sequence[str]) -> None:
        pairs = tags.items() if isinstance(tags, Mapping) else ((k, "") for k in tags)
        written = [RunTag(_user_tag_key(k), "" if v is None else str(v)) for k, v in pairs]
        if written:
            self._client.log_batch(self._id, tags=written)

    def get_tags(self) -> dict[str, str]:
        """The run's tags (MLflow's system tags included), without the Run API's own (metrics, properties)."""
        return _user_tags(self._mlflow_run().data.tags)

    def remove_tags(self, tags: str | Sequence[str]) -> None:
        for key in [tags] if isinstance(tags, str) else tags:
            self._client.delete_tag(self._id, _user_tag_key(key))

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        """Add properties: add-only, so an audit record. A property set before keeps its value; the gateway
        refuses to change or delete one (INVALID_PARAMETER_VALUE) through any client; setting the same value
        again is allowed."""
        written = [RunTag(_property_tag(k), str(v)) for k, v in properties.items()]
        if written:
            self._client.log_batch(self._id, tags=written)

    def get_properties(self) -> dict[str, str]:
        return enc.properties_of(self._mlflow_run().data.tags)

    # -- metrics -----------------------------------------------------------------------------------------

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """A number (or a bool) is a point of metric `name`; text is kept with the metric's kind. Logged again,
        a name holds a list of values."""
        value = _plain(value)
        with self._lock:
            state = self._load()
            kind = state.kinds.get(name)
            if _is_number(value):
                if kind is not None and (kind["type"] != enc.SCALAR or "text" in kind):
                    raise ValueError(f"Metric {name!r} holds {_holds(kind)}; log numbers under another name.")
                updated = _with_description(kind or {"type": enc.SCALAR}, description)
                changed = {name: updated} if description and updated != kind else {}
                self._write([self._point(state, name, float(value), step)], changed)
            elif isinstance(value, str):
                if name in state.steps or (kind is not None and kind["type"] != enc.SCALAR):
                    raise ValueError(f"Metric {name!r} holds {_holds(kind)}; log text under another name.")
                updated = {**(kind or {"type": enc.SCALAR}), "text": [*(kind or {}).get("text", []), value]}
                self._write([], {name: _with_description(updated, description)})
            else:
                raise TypeError(f"run.log({name!r}, ...) takes a number, a bool or a str, not {type(value).__name__}")

    def log_list(self, name: str, value: Iterable[Any], description: str = "") -> None:
        """A list of numbers (points of metric `name`, in order) or of text; logged again, the list grows. A list
        keeps holding numbers or text, as its first values did."""
        values = [_plain(v) for v in _plain_list(value)]
        numeric = all(_is_number(v) for v in values)
        if not numeric and not all(_is_number(v) or isinstance(v, str) for v in values):
            raise TypeError(f"log_list({name!r}, ...) takes numbers and text")
        with self._lock:
            state = self._load()
            kind = state.kinds.get(name)
            if (kind is None and name in state.steps) or (kind is not None and kind["type"] != enc.LIST):
                raise ValueError(f"Metric {name!r} holds {_holds(kind)}; log the list under another name.")
            text = kind is not None and "text" in kind
            if values and numeric and text:
                raise ValueError(f"List {name!r} holds text; it keeps that.")
            if values and not numeric and name in state.steps:
                raise ValueError(f"List {name!r} holds numbers; it keeps that.")
            updated = _with_description(kind or {"type": enc.LIST}, description)
            points: builtins.list[Metric] = []
            if text or not numeric:
                updated["text"] = [*updated.get("text", []), *values]
            else:
                points = [self._point(state, name, float(v), None) for v in values]
            self._write(points, {name: updated} if updated != kind else {})

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """One row of table `name`, a column per keyword; called again, the table grows by a row."""
        self._log_rows(name, [kwargs], description or "")

    def log_table(self, name: str, value: Mapping[str, Sequence[Any]], description: str = "") -> None:
        """Table `name` from its columns (`{"x": [1, 2, 3], "y": [0.6, 0.7, 0.89]}`), added as rows."""
        if not isinstance(value, Mapping) or not value:
            raise TypeError(f"log_table({name!r}, value): value is a dict of columns, each a list of cells")
        columns = {str(k): _plain_list(v) for k, v in value.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            sizes = {k: len(v) for k, v in columns.items()}
            raise ValueError(f"log_table({name!r}): every column has as many cells as the others, got {sizes}")
        rows = [{k: v[i] for k, v in columns.items()} for i in range(lengths.pop())]
        self._log_rows(name, rows, description)

    def log_image(
        self, name: str, path: str | os.PathLike[str] | None = None, plot: Any = None, description: str = ""
    ) -> None:
        """An image file (`path`), or a matplotlib figure or pyplot itself (`plot`): an artifact in fedgate/images/."""
        if (path is None) == (plot is None):
            raise ValueError("log_image takes path= or plot=, exactly one of them")
        _file_name(name)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"log_image({name!r}): no file {str(path)!r}")
        with self._lock:
            state = self._load()
            kind = state.kinds.get(name) or {"type": enc.IMAGE, "paths": []}
            if kind["type"] != enc.IMAGE or name in state.steps:
                raise ValueError(
                    f"Metric {name!r} holds {_holds(state.kinds.get(name))}; log the image under another name."
                )
            suffix = Path(path).suffix if path is not None else ".png"
            target = _numbered(f"{IMAGES}/{_file_name(name)}", len(kind["paths"]), suffix or ".png")
            with tempfile.TemporaryDirectory() as scratch:
                local = Path(scratch) / posixpath.basename(target)
                if path is not None:
                    shutil.copyfile(path, local)
                else:
                    plot.savefig(local, format="png")
                self._client.log_artifact(self._id, str(local), posixpath.dirname(target))
            updated = {**kind, "paths": [*kind["paths"], target]}
            self._write([], {name: _with_description(updated, description)})

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        self._log_schema(name, "confusion_matrix", value, description)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        self._log_schema(name, "accuracy_table", value, description)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        self._log_schema(name, "predictions", value, description)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        self._log_schema(name, "residuals", value, description)

    def get_metrics(
        self, name: str | None = None, recursive: bool = False, run_type: str | None = None, populate: bool = False
    ) -> dict[str, Any]:
        """`{name: value or list}`; with `recursive`, `{run_id: {...}}` for this run and every descendant the caller
        may read, answered by the gateway from its account index in one query. A table is `{column: [cells]}`; an
        image or JSON-shaped metric the `runs:/` URI of its artifact, or with `populate` its JSON."""
        _no_run_types(run_type)
        if recursive:
            by_run = {run_id: enc.from_json(values) for run_id, values in _recursive_metrics(self._id).items()}
        else:
            by_run = {self._id: self._own_metrics()}
        if populate:
            by_run = {run_id: {k: _populated(run_id, v) for k, v in m.items()} for run_id, m in by_run.items()}
        if name is not None:
            by_run = {run_id: {name: m[name]} if name in m else {} for run_id, m in by_run.items()}
        return by_run if recursive else by_run[self._id]

    # -- files -------------------------------------------------------------------------------------------

    def upload_file(
        self, name: str, path_or_stream: str | os.PathLike[str] | IO[Any], datastore_name: str | None = None
    ) -> None:
        """The file (or stream) as the run's artifact `name` (a path such as outputs/model.pkl)."""
        target = _artifact_name(name)
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / posixpath.basename(target)
            if isinstance(path_or_stream, str | os.PathLike):
                shutil.copyfile(path_or_stream, local)
            else:
                data = path_or_stream.read()
                local.write_bytes(data.encode() if isinstance(data, str) else data)
            self._client.log_artifact(self._id, str(local), posixpath.dirname(target) or None)

    def upload_files(
        self,
        names: Sequence[str],
        paths: Sequence[str | os.PathLike[str]],
        return_artifacts: bool = False,
        timeout_seconds: int | None = None,
        datastore_name: str | None = None,
    ) -> builtins.list[str] | None:
        if len(names) != len(paths):
            raise ValueError(f"upload_files: {len(names)} names for {len(paths)} paths")
        for name, path in zip(names, paths, strict=True):
            self.upload_file(name, path)
        return [_artifact_name(n) for n in names] if return_artifacts else None

    def upload_folder(self, name: str, path: str | os.PathLike[str], datastore_name: str | None = None) -> None:
        self._client.log_artifacts(self._id, str(path), _artifact_name(name))

    def get_file_names(self) -> builtins.list[str]:
        names: builtins.list[str] = []
        pending = [""]
        while pending:
            directory = pending.pop()
            for item in self._client.list_artifacts(self._id, directory or None):
                (pending if item.is_dir else names).append(item.path)
        return sorted(names)

    def download_file(
        self, name: str, output_file_path: str | os.PathLike[str] | None = None, _validate_checksum: bool = False
    ) -> None:
        """Artifact `name` to `output_file_path` (a file, or a directory it goes into; default: its base name here)."""
        target = Path(output_file_path) if output_file_path is not None else Path(posixpath.basename(name))
        if target.is_dir():
            target = target / posixpath.basename(name)
        with tempfile.TemporaryDirectory() as scratch:
            local = self._client.download_artifacts(self._id, _artifact_name(name), scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(local, target)

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike[str] | None = None,
        output_paths: Sequence[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: int | None = None,
    ) -> None:
        """Every artifact under `prefix` into `output_directory` (default: here), keeping its path (or its path
        below the prefix, without append_prefix); or to `output_paths`, one per artifact in name order."""
        wanted = [
            n for n in self.get_file_names() if not prefix or n == prefix or n.startswith(prefix.rstrip("/") + "/")
        ]
        if output_paths is not None and len(output_paths) != len(wanted):
            raise ValueError(f"download_files: {len(output_paths)} output_paths for {len(wanted)} files")
        root = Path(output_directory) if output_directory is not None else Path.cwd()
        for i, name in enumerate(wanted):
            if output_paths is not None:
                target = Path(output_paths[i])
            else:
                relative = (
                    name
                    if append_prefix or not prefix
                    else name[len(prefix.rstrip("/")) + 1 :] or posixpath.basename(name)
                )
                target = _inside(root, relative)
            self.download_file(name, target)

    # -- models and secrets ------------------------------------------------------------------------------

    def register_model(
        self,
        model_name: str,
        model_path: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
        description: str | None = None,
        datasets: Any = None,
        sample_input_dataset: Any = None,
        sample_output_dataset: Any = None,
        resource_configuration: Any = None,
        **kwargs: Any,
    ) -> Model:
        """A new version of registered model `model_name` (created if new) from the run's artifacts at
        `model_path` (default: the model name), with tags, properties and the framework as version tags."""
        path = _artifact_name(model_path if model_path is not None else model_name)
        with contextlib.suppress(MlflowException):  # it exists already: a new version of it
            self._client.create_registered_model(model_name)
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        source = RunsArtifactRepository.get_underlying_uri(enc.artifact_uri(self._id, path))
        version_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        version_tags.update({_property_tag(k): str(v) for k, v in (properties or {}).items()})
        if model_framework:
            version_tags["model_framework"] = model_framework
        if model_framework_version:
            version_tags["model_framework_version"] = model_framework_version
        version = self._client.create_model_version(
            model_name, source, run_id=self._id, tags=version_tags, description=description
        )
        return Model(
            name=version.name,
            version=int(version.version),
            run_id=self._id,
            source=str(version.source or source),
            tags={k: v for k, v in version_tags.items() if not k.startswith(enc.PROPERTY_TAG)},
            properties=enc.properties_of(version_tags),
            description=description,
        )

    def get_secret(self, name: str) -> str:
        """The secret `name` (`key` or `scope/key`), read by this run: gateway.client.get_secret."""
        return secret_reads.get_secret(name, run_id=self._id)

    def get_secrets(self, secrets: Sequence[str]) -> dict[str, str | None]:
        """Several secrets in one call; None for a missing one: gateway.client.get_secrets."""
        return secret_reads.get_secrets(secrets, run_id=self._id)

    # -- plumbing ----------------------------------------------------------------------------------------

    def _mlflow_run(self) -> Any:
        return self._client.get_run(self._id)

    def _load(self) -> _State:
        """The run's metric kinds and the next step of each metric, read once."""
        if self._state is None:
            run = self._mlflow_run()
            kinds = {}
            for key, value in run.data.tags.items():
                if key.startswith(enc.METRIC_TAG) and (kind := enc.parse_kind(value)) is not None:
                    kinds[key[len(enc.METRIC_TAG) :]] = kind
            steps = {m.key: int(m.step) + 1 for m in getattr(run.data, "_metric_objs", [])}
            self._state = _State(kinds, steps)
        return self._state

    def _point(self, state: _State, metric: str, value: float, step: int | None) -> Metric:
        at = state.steps.get(metric, 0) if step is None else int(step)
        state.steps[metric] = max(state.steps.get(metric, 0), at + 1)
        return Metric(metric, value, int(time.time() * 1000), at)

    def _write(self, metrics: builtins.list[Metric], kinds: Mapping[str, dict[str, Any]]) -> None:
        tags = [RunTag(enc.kind_tag(name), enc.dump_kind(name, kind)) for name, kind in kinds.items()]
        self._client.log_batch(self._id, metrics=metrics, tags=tags)
        if self._state is not None:
            self._state.kinds.update(kinds)

    def _log_rows(self, name: str, rows: builtins.list[dict[str, Any]], description: str) -> None:
        with self._lock:
            state = self._load()
            kind = state.kinds.get(name)
            if (kind is None and name in state.steps) or (kind is not None and kind["type"] != enc.TABLE):
                raise ValueError(f"Metric {name!r} holds {_holds(kind)}; log the table under another name.")
            columns: dict[str, str] = dict((kind or {}).get("columns") or {})
            text: dict[str, builtins.list[Any]] = {c: list(v) for c, v in ((kind or {}).get("text") or {}).items()}
            start = int((kind or {}).get("rows") or 0)
            at = int(time.time() * 1000)
            points: builtins.list[Metric] = []
            for offset, row in enumerate(rows):
                number = start + offset
                for column, raw in row.items():
                    cell = _plain(raw)
                    if cell is None:
                        continue
                    cell_type = enc.NUMBER if _is_number(cell) else enc.TEXT if isinstance(cell, str) else None
                    if cell_type is None:
                        raise TypeError(
                            f"Table {name!r}, column {column!r}: a cell is a number or text, not {type(cell).__name__}"
                        )
                    known = columns.setdefault(column, cell_type)
                    if known != cell_type:
                        held = "numbers" if known == enc.NUMBER else "text"
                        raise ValueError(f"Table {name!r}, column {column!r} holds {held}; it keeps that.")
                    if cell_type == enc.NUMBER:
                        metric = enc.table_metric(name, column)
                        points.append(Metric(metric, float(cell), at, number))
                        state.steps[metric] = max(state.steps.get(metric, 0), number + 1)
                    else:
                        cells = text.setdefault(column, [])
                        cells.extend([None] * (number + 1 - len(cells)))
                        cells[number] = cell
            total = start + len(rows)
            for cells in text.values():
                cells.extend([None] * (total - len(cells)))
            updated: dict[str, Any] = {"type": enc.TABLE, "rows": total, "columns": columns}
            if text:
                updated["text"] = text
            if (kind or {}).get("description"):
                updated["description"] = (kind or {})["description"]
            self._write(points, {name: _with_description(updated, description)})

    def _log_schema(self, name: str, schema_type: str, value: Any, description: str) -> None:
        _file_name(name)
        document = checked(name, schema_type, value)
        with self._lock:
            state = self._load()
            kind = state.kinds.get(name) or {"type": schema_type, "paths": [], "summary": []}
            if kind["type"] != schema_type or name in state.steps:
                raise ValueError(
                    f"Metric {name!r} holds {_holds(state.kinds.get(name))}; log the {schema_type} under another name."
                )
            index = len(kind["paths"])
            target = _numbered(f"{METRIC_FILES}/{_file_name(name)}", index, ".json")
            self._client.log_dict(self._id, document, target)
            summary = summarize(schema_type, document)
            at = int(time.time() * 1000)
            points = [Metric(enc.summary_metric(name, k), v, at, index) for k, v in summary.items()]
            updated = {
                **kind,
                "paths": [*kind["paths"], target],
                "summary": sorted({*kind.get("summary", []), *summary}),
            }
            self._write(points, {name: _with_description(updated, description)})

    def _own_metrics(self) -> dict[str, Any]:
        run = self._mlflow_run()
        histories: dict[str, builtins.list[tuple[int, float]]] = {}
        for key in run.data.metrics:
            points = sorted(self._client.get_metric_history(self._id, key), key=lambda m: (m.step, m.timestamp))
            histories[key] = [(int(m.step), float(m.value)) for m in points]
        return enc.decode(self._id, run.data.tags, histories)


class OfflineRun(Run):
    """What Run.get_context() gives outside any run: logging prints what it was asked (as Azure ML's offline run
    does) and is kept in memory, so a script runs locally unchanged; nothing reaches a server."""

    def __init__(self, parent: OfflineRun | None = None, name: str | None = None) -> None:
        self._id = f"OfflineRun_{uuid.uuid4()}"
        self._experiment_arg = None
        self._lock = threading.RLock()
        self._state = None
        self._parent = parent
        self._name = name or ""
        self._status = "RUNNING"
        self._metrics: dict[str, Any] = {}
        self._tags: dict[str, str] = {}
        self._properties: dict[str, str] = {}
        self._lists: set[str] = set()
        self._children_made: builtins.list[OfflineRun] = []

    def __repr__(self) -> str:
        return f"OfflineRun(id={self._id!r})"

    @staticmethod
    def _say(text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    @property
    def name(self) -> str:
        return self._name

    display_name = name

    @property
    def experiment(self) -> Any:
        return None

    @property
    def description(self) -> str:
        return ""

    @property
    def parent(self) -> Run | None:
        return self._parent

    def get_status(self) -> str:
        return AZURE_STATUS[self._status]

    def get_details(self) -> dict[str, Any]:
        return {
            "runId": self._id,
            "displayName": self._name,
            "target": "local",
            "status": self.get_status(),
            "properties": dict(self._properties),
            "tags": dict(self._tags),
            "inputDatasets": [],
            "outputDatasets": [],
            "logFiles": {},
        }

    def get_portal_url(self) -> str:
        return ""

    def start(self) -> None:
        self._status = "RUNNING"

    def complete(self, _set_status: bool = True) -> None:
        self._status = "FINISHED"

    def fail(self, error_details: Any = None, error_code: str | None = None, _set_status: bool = True) -> None:
        self._status = "FAILED"

    def cancel(self) -> None:
        self._status = "KILLED"

    def wait_for_completion(self, show_output: bool = False, wait_post_processing: bool = False) -> dict[str, Any]:
        return self.get_details()

    def child_run(self, name: str | None = None, run_id: str | None = None, outputs: Any = None) -> Run:
        child = OfflineRun(self, name)
        self._children_made.append(child)
        return child

    def create_children(
        self, count: int | None = None, tag_key: str | None = None, tag_values: Sequence[str] | None = None
    ) -> builtins.list[Run]:
        values = list(tag_values) if tag_values is not None else None
        made: builtins.list[Run] = []
        for i in range(len(values) if values is not None else count or 0):
            child = self.child_run()
            if tag_key is not None:
                child.tag(tag_key, values[i] if values is not None else "")
            made.append(child)
        return made

    def get_children(
        self,
        recursive: bool = False,
        tags: str | Sequence[str] | Mapping[str, str] | None = None,
        properties: str | Sequence[str] | Mapping[str, str] | None = None,
        type: str | None = None,
        status: str | None = None,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        wanted = _wanted(tags, properties)
        for child in self._children_made:
            tagged = {**child._tags, **{enc.PROPERTY_TAG + k: v for k, v in child._properties.items()}}
            if all(k in tagged and (v is None or tagged[k] == v) for k, v in wanted) and (
                status is None or child._status == _mlflow_status(status)
            ):
                yield child
            if recursive:
                yield from child.get_children(True, tags, properties, type, status)

    def set_tags(self, tags: Mapping[str, Any] | Sequence[str]) -> None:
        pairs = tags.items() if isinstance(tags, Mapping) else ((k, "") for k in tags)
        for key, value in pairs:
            self._tags[_user_tag_key(key)] = "" if value is None else str(value)
            self._say(f"Attempted to tag the run with {key}: {value}")

    def get_tags(self) -> dict[str, str]:
        return dict(self._tags)

    def remove_tags(self, tags: str | Sequence[str]) -> None:
        for key in [tags] if isinstance(tags, str) else tags:
            self._tags.pop(key, None)

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        for key, value in properties.items():
            old = self._properties.get(str(key))
            if old is not None and old != str(value):
                raise ValueError(
                    f"Changing property values is not allowed. Property with key={key!r} was already set with "
                    f"value={old!r} for run ID={self._id!r}. Attempted new value {str(value)!r}."
                )
        for key, value in properties.items():
            self._properties[str(key)] = str(value)
            self._say(f"Attempted to add property {key}: {value}")

    def get_properties(self) -> dict[str, str]:
        return dict(self._properties)

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        value = _plain(value)
        if not (_is_number(value) or isinstance(value, str)):
            raise TypeError(f"run.log({name!r}, ...) takes a number, a bool or a str, not {type(value).__name__}")
        self._say(f"Attempted to log scalar metric {name}:\n{value}")
        self._append(name, value)

    def log_list(self, name: str, value: Iterable[Any], description: str = "") -> None:
        values = [_plain(v) for v in _plain_list(value)]
        self._say(f"Attempted to log list metric {name}:\n{values}")
        existing = self._metrics.get(name)
        self._metrics[name] = [*(existing if isinstance(existing, list) else []), *values]

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._say(f"Attempted to log row metric {name}:\n{kwargs}")
        self._rows(name, [kwargs])

    def log_table(self, name: str, value: Mapping[str, Sequence[Any]], description: str = "") -> None:
        self._say(f"Attempted to log table metric {name}:\n{dict(value)}")
        columns = {str(k): _plain_list(v) for k, v in value.items()}
        size = max((len(v) for v in columns.values()), default=0)
        self._rows(name, [{k: v[i] for k, v in columns.items() if i < len(v)} for i in range(size)])

    def log_image(
        self, name: str, path: str | os.PathLike[str] | None = None, plot: Any = None, description: str = ""
    ) -> None:
        if (path is None) == (plot is None):
            raise ValueError("log_image takes path= or plot=, exactly one of them")
        _file_name(name)
        self._say(f"Attempted to log image metric {name}:\n{path if path is not None else plot}")
        self._append(name, str(path) if path is not None else f"{name}.png")

    def _log_schema(self, name: str, schema_type: str, value: Any, description: str) -> None:
        _file_name(name)
        document = checked(name, schema_type, value)
        self._say(f"Attempted to log {schema_type} metric {name}:\n{json.dumps(document)}")
        self._append(name, document)

    def get_metrics(
        self, name: str | None = None, recursive: bool = False, run_type: str | None = None, populate: bool = False
    ) -> dict[str, Any]:
        own = dict(self._metrics) if name is None else ({name: self._metrics[name]} if name in self._metrics else {})
        if not recursive:
            return own
        found: dict[str, Any] = {self._id: own}
        for child in self.get_children(recursive=True):
            found[child.id] = child.get_metrics(name)
        return found

    def upload_file(self, name: str, path_or_stream: Any, datastore_name: str | None = None) -> None:
        _artifact_name(name)
        self._say(f"Attempted to track file {name} at {path_or_stream}")

    def upload_folder(self, name: str, path: str | os.PathLike[str], datastore_name: str | None = None) -> None:
        _artifact_name(name)
        self._say(f"Attempted to track folder {name} at {path}")

    def get_file_names(self) -> builtins.list[str]:
        return []

    def download_file(self, name: str, output_file_path: Any = None, _validate_checksum: bool = False) -> None:
        raise RuntimeError(f"An offline run has no files to download ({name!r}).")

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike[str] | None = None,
        output_paths: Sequence[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: int | None = None,
    ) -> None:
        self._say(f"Attempted to download files {prefix or ''} of an offline run: it has none")

    def register_model(
        self,
        model_name: str,
        model_path: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
        description: str | None = None,
        datasets: Any = None,
        sample_input_dataset: Any = None,
        sample_output_dataset: Any = None,
        resource_configuration: Any = None,
        **kwargs: Any,
    ) -> Model:
        raise RuntimeError(f"An offline run cannot register model {model_name!r}: run the script inside an MLflow run.")

    def get_secret(self, name: str) -> str:
        raise secret_reads.NoActiveRun(
            f"get_secret({name!r}) needs a run: an offline run (Run.get_context() outside any MLflow run) reads no "
            "secrets. Start the script inside `mlflow.start_run()` or with MLFLOW_RUN_ID."
        )

    def get_secrets(self, secrets: Sequence[str]) -> dict[str, str | None]:
        raise secret_reads.NoActiveRun(
            "get_secrets(...) needs a run: an offline run (Run.get_context() outside any MLflow run) reads no "
            "secrets. Start the script inside `mlflow.start_run()` or with MLFLOW_RUN_ID."
        )

    def _append(self, name: str, value: Any) -> None:
        existing = self._metrics.get(name, _MISSING)
        if existing is _MISSING:
            self._metrics[name] = value
        elif isinstance(existing, list) and name in self._lists:
            existing.append(value)
        else:
            self._metrics[name] = [existing, value]
            self._lists.add(name)

    def _rows(self, name: str, rows: builtins.list[dict[str, Any]]) -> None:
        table = self._metrics.setdefault(name, {})
        size = len(next(iter(table.values()), []))
        for row in rows:
            for column in row:
                table.setdefault(column, [None] * size)
            for column, cells in table.items():
                cells.append(_plain(row.get(column)))
            size += 1


_MISSING = object()


# -- helpers -------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else unchanged."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def _plain_list(value: Any) -> list[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise TypeError(f"expected a list of values, not {type(value).__name__}")
    return list(value.tolist() if hasattr(value, "tolist") else value)


def _is_number(value: Any) -> bool:
    return isinstance(value, bool | numbers.Real)


def _holds(kind: Mapping[str, Any] | None) -> str:
    if kind is None:
        return "numbers logged with run.log"
    kind_type = str(kind.get("type"))
    if kind_type == enc.SCALAR:
        return "text logged with run.log" if "text" in kind else "numbers logged with run.log"
    return {enc.LIST: "a list", enc.TABLE: "a table", enc.IMAGE: "images"}.get(kind_type, f"a {kind_type}")


def _with_description(kind: Mapping[str, Any], description: str | None) -> dict[str, Any]:
    """A copy of `kind`, with `description` when one is given (a description stays until another replaces it)."""
    return {**kind, "description": description} if description else dict(kind)


def _numbered(stem: str, index: int, suffix: str) -> str:
    return f"{stem}{suffix}" if index == 0 else f"{stem}_{index}{suffix}"


def _inside(root: Path, relative: str) -> Path:
    """`root / relative` for a file named by the store, refused when the name would leave `root` (`..`, an absolute
    path): a store written to directly (an S3 bucket's keys may hold `../`) must not choose where files land."""
    target = root / relative
    if not target.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"download_files: the artifact {relative!r} would be written outside {str(root)!r}")
    return target


def _artifact_name(name: str | os.PathLike[str]) -> str:
    """An artifact path as MLflow keeps it: relative, '/'-separated, without '.' or '..' parts.

    The one check of every path the client builds from a caller's value, before anything is written: a store the
    client reaches directly (S3, a local folder) takes the path as it comes, so `..` would leave the run's folder."""
    text = str(name).replace("\\", "/").strip("/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"{str(name)!r} is not an artifact path (a relative path such as outputs/model.pkl)")
    return "/".join(parts)


def _file_name(name: str) -> str:
    """A metric name that becomes part of an artifact path (images, JSON-shaped metrics): `_artifact_name`'s check,
    and already in its form (no '.', '..' or empty parts, no backslash), so two names never share a file."""
    if not _in_form(name):
        raise ValueError(
            f"Metric name {name!r} names a file of the run (fedgate/images/<name>, fedgate/metrics/<name>): it is a "
            "relative path without '.', '..' or empty parts and without backslashes"
        )
    return name


def _in_form(path: Any) -> bool:
    """Whether `path` is an artifact path exactly as `_artifact_name` makes it."""
    try:
        return isinstance(path, str) and _artifact_name(path) == path
    except ValueError:
        return False


def _reserved(key: str) -> bool:
    return key.startswith((enc.PROPERTY_TAG, enc.METRIC_TAG))


def _user_tag_key(key: Any) -> str:
    text = str(key)
    if text.startswith(enc.PROPERTY_TAG):
        raise ValueError(f"Tag {text!r} is a property: set it with add_properties (properties are add-only).")
    if text.startswith(enc.METRIC_TAG):
        raise ValueError(f"Tag {text!r} belongs to the Run API's metrics: log metrics with the log_* methods.")
    return text


def _property_tag(key: Any) -> str:
    text = str(key)
    if not text:
        raise ValueError("A property has a name")
    return enc.PROPERTY_TAG + text


def _user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not _reserved(k)}


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _no_run_types(run_type: str | None) -> None:
    if run_type is not None:
        raise ValueError(f"run type {run_type!r}: MLflow runs have no Azure ML run types; leave it out")


def _mlflow_status(status: str) -> str:
    found = _MLFLOW_STATUS.get(str(status).strip().lower())
    if found is None:
        known = ", ".join([*AZURE_STATUS.values(), *AZURE_STATUS])
        raise ValueError(f"Unknown run status {status!r}; use one of {known}")
    return found


def _pairs(given: str | Sequence[str] | Mapping[str, Any] | None, what: str) -> list[tuple[str, str | None]]:
    """Azure ML's tag or property filter: a name (present), names, or {name: value} (equal)."""
    if given is None:
        return []
    if isinstance(given, str):
        return [(given, None)]
    if isinstance(given, Mapping):
        return [(str(k), None if v is None else str(v)) for k, v in given.items()]
    if isinstance(given, Iterable):
        return [(str(k), None) for k in given]
    raise TypeError(f"{what}: a name, a list of names or a dict of names and values")


def _wanted(tags: Any, properties: Any) -> list[tuple[str, str | None]]:
    return [*_pairs(tags, "tags"), *((enc.PROPERTY_TAG + k, v) for k, v in _pairs(properties, "properties"))]


def _tag_clause(key: str, value: str | None) -> str:
    """An MLflow search clause on a tag, or "" when the key or value cannot be written in one (then the runs
    found are checked here instead)."""
    if "`" in key:
        return ""
    if value is None:
        return f"tags.`{key}` IS NOT NULL"
    if "'" not in value and "\\" not in value:
        return f"tags.`{key}` = '{value}'"
    if '"' not in value and "\\" not in value:
        return f'tags.`{key}` = "{value}"'
    return ""


def _matches(run: Any, wanted: Sequence[tuple[str, str | None]], status: str | None, top_level: bool | None) -> bool:
    tags = run.data.tags
    if any(key not in tags or (value is not None and tags[key] != value) for key, value in wanted):
        return False
    if status is not None and run.info.status != status:
        return False
    return not (top_level and enc.PARENT_TAG in tags)


def _search(client: MlflowClient, experiment_id: str, clauses: Sequence[str]) -> Iterator[Any]:
    """The experiment's active runs matching every clause, newest first, a page at a time."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=" and ".join(c for c in clauses if c),
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _experiment_id(client: MlflowClient, experiment: Any) -> str:
    """An experiment given as an MLflow Experiment, an object with `experiment_id`, `id` or `name`, a name or an id."""
    if isinstance(experiment, Experiment):
        return str(experiment.experiment_id)
    for attribute in ("experiment_id", "id"):
        if isinstance(value := getattr(experiment, attribute, None), str | int) and str(value):
            return str(value)
    name = getattr(experiment, "name", experiment)
    if not isinstance(name, str | int) or not str(name):
        raise TypeError("Run.list(experiment): an experiment name, id or object with a name")
    found = client.get_experiment_by_name(str(name))
    if found is not None:
        return str(found.experiment_id)
    with contextlib.suppress(MlflowException):
        return str(client.get_experiment(str(name)).experiment_id)
    raise ValueError(f"No experiment named {str(name)!r} (nor with that id) in this workspace")


def _recursive_metrics(run_id: str) -> dict[str, Any]:
    """The gateway's answer for the run and its descendants (GET RECURSIVE_METRICS), with the MLflow client's
    credentials and workspace."""
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, ErrorCode
    from mlflow.utils.rest_utils import http_request

    creds = secret_reads._host_creds()
    response = http_request(creds, RECURSIVE_METRICS, "GET", params={"run_id": run_id}, raise_on_status=False)  # type: ignore[no-untyped-call]
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code == 200 and isinstance(answer, dict):
        return answer
    error = answer if isinstance(answer, dict) else {}
    code = str(error.get("error_code") or "")
    if response.status_code == 404 and not code:
        message = "The tracking server does not answer recursive metrics: is MLFLOW_TRACKING_URI the fedgate gateway?"
    else:
        message = f"get_metrics(recursive=True) of run {run_id}: {error.get('message') or response.text[:500]}"
    try:
        number = ErrorCode.Value(code) if code else INTERNAL_ERROR
    except ValueError:
        number = INTERNAL_ERROR
    raise MlflowException(message, error_code=number)


def _populated(run_id: str, value: Any) -> Any:
    """A JSON-shaped metric's artifact URI (or list of them) replaced by the JSON it names."""
    prefix = enc.artifact_uri(run_id, METRIC_FILES + "/")

    def ours(uri: Any) -> bool:  # the paths come from a tag any writer of the run sets: only the run's own files
        return isinstance(uri, str) and uri.startswith(prefix) and _in_form(uri[len(prefix) :])

    if ours(value):
        return mlflow.artifacts.load_dict(value)
    if isinstance(value, list) and value and all(ours(v) for v in value):
        return [mlflow.artifacts.load_dict(v) for v in value]
    return value
