"""The read-only `account` scope: one search over every workspace a caller may read, with the stock client.

Two layers are tested. The SQL itself, on synthetic index rows, against MLflow's own reference
implementation of filters and ordering (`SearchUtils.filter` / `SearchUtils.sort`) for generated
filters, orders and page sizes. Then the whole path: runs written into three workspaces through the
gateway (so the index is filled by the gateway's write-through), searched in the account scope and
compared with what each workspace answers on its own, merged and ordered the way MLflow orders.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import mlflow
import msgspec
import pytest
import pytest_asyncio
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunData, RunInfo, RunInputs, RunTag
from mlflow.entities import ViewType as MlflowViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import SearchUtils
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from gateway.db.engine import async_url
from gateway.devstack import GatewayProcess
from gateway.index.filters import parse_run_filter, parse_run_order_by
from gateway.index.search import IndexSearch, RunSearch, ViewType, search_shape
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack, write_config
from tests.support.identity import Admin, unique
from tests.support.stock_client import stock_client_env

pytestmark = pytest.mark.integration
ACCOUNT = "account"


# == the SQL against MLflow's reference semantics, on synthetic index rows ===============================

BASE = datetime(2024, 5, 1, tzinfo=UTC)
EXPERIMENTS = ("1", "2", "10")
METRIC_VALUES = (None, math.nan, math.inf, -math.inf, 0.5, 0.9, 0.95, 1.0, -1.0, 0.5)
PARAM_VALUES = (None, "adam", "sgd", "Adam", "a_b", "1", "10", "2")
TAG_VALUES = (None, "x", "y", "xy", "X")
NAMES = ("alpha", "beta", "Alpha", "gamma_1", "delta%")


@dataclass
class Synthetic:
    workspace_id: int
    runs: list[Run] = field(default_factory=list)
    start_ms: int = 0


def _ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    created = create_async_engine(async_url(stack.database_url))
    yield created
    await created.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def synthetic(engine: AsyncEngine) -> Synthetic:
    """Forty runs in a workspace id no linked workspace has, with every awkward value MLflow knows."""
    rng = random.Random(20240501)
    data = Synthetic(workspace_id=rng.randrange(900_000_000, 999_999_999), start_ms=_ms(BASE))
    async with engine.begin() as conn:
        for index in range(40):
            run_id = uuid.UUID(int=rng.getrandbits(128)).hex
            experiment = rng.choice(EXPERIMENTS)
            start = BASE + timedelta(seconds=rng.randrange(6))  # ties on start_time, broken by run_id
            end = None if rng.random() < 0.3 else start + timedelta(seconds=rng.randrange(1, 100))
            deleted = rng.random() < 0.15
            params = {k: v for k in ("p1", "p2") if (v := rng.choice(PARAM_VALUES)) is not None}
            tags = {k: v for k in ("t1",) if (v := rng.choice(TAG_VALUES)) is not None}
            user = rng.choice((None, "ann", "bob"))
            if user:
                tags["mlflow.user"] = user
            name = rng.choice(NAMES)
            tags["mlflow.runName"] = name
            metrics = {k: v for k in ("m1", "m2") if (v := rng.choice(METRIC_VALUES)) is not None}
            datasets = [
                {"name": rng.choice(("ds1", "ds2")), "digest": rng.choice(("d1", "d2")), "context": c}
                for c in rng.sample(("", "train", "eval"), rng.randrange(3))
            ]
            status = rng.choice(("RUNNING", "FINISHED", "FAILED"))
            run_key = (
                await conn.execute(
                    text(
                        "INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, "
                        "start_time, end_time, delete_time, params, tags, datasets) VALUES (:run_id, :ws, :exp, "
                        "'tester', :name, :status, :start, :end, :deleted, CAST(:params AS jsonb), "
                        "CAST(:tags AS jsonb), CAST(:datasets AS jsonb)) RETURNING run_key"
                    ),
                    {
                        "run_id": run_id,
                        "ws": data.workspace_id,
                        "exp": experiment,
                        "name": name,
                        "status": status,
                        "start": start,
                        "end": end,
                        "deleted": BASE if deleted else None,
                        "params": msgspec.json.encode(params).decode(),
                        "tags": msgspec.json.encode(tags).decode(),
                        "datasets": msgspec.json.encode(datasets).decode(),
                    },
                )
            ).scalar_one()
            for metric, value in metrics.items():
                await conn.execute(
                    text(
                        "INSERT INTO ix_metric_latest (run_key, metric_name, latest_value, latest_step, latest_time, "
                        "min_value, max_value, has_nan, points) VALUES (:key, :name, :value, :step, :at, :value, "
                        ":value, :nan, 1)"
                    ),
                    {
                        "key": run_key,
                        "name": metric,
                        "value": value,
                        "step": index,
                        "at": start,
                        "nan": math.isnan(value),
                    },
                )
            data.runs.append(
                Run(
                    RunInfo(
                        run_id=run_id,
                        experiment_id=f"{data.workspace_id}-{experiment}",
                        user_id=user or "unknown",
                        status=status,
                        start_time=_ms(start),
                        end_time=_ms(end) if end else None,
                        lifecycle_stage="deleted" if deleted else "active",
                        run_name=name,
                    ),
                    RunData(
                        metrics=[Metric(k, v, _ms(start), index) for k, v in metrics.items()],
                        params=[Param(k, v) for k, v in params.items()],
                        tags=[RunTag(k, v) for k, v in tags.items()],
                    ),
                    RunInputs(
                        [
                            DatasetInput(
                                Dataset(d["name"], d["digest"], "local", "src"),
                                [InputTag("mlflow.data.context", d["context"])] if d["context"] else [],
                            )
                            for d in datasets
                        ]
                    ),
                )
            )
    return data


def _clause_strategy(synthetic_runs: list[str]) -> st.SearchStrategy[str]:
    numeric = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    stringy = st.sampled_from(["=", "!=", "LIKE", "ILIKE"])
    start = _ms(BASE)
    return st.one_of(
        st.tuples(
            st.sampled_from(["metrics.m1", "metric.m2"]), numeric, st.sampled_from(["-1", "0", "0.5", "0.9", "1", "2"])
        ).map(" ".join),
        st.tuples(
            st.sampled_from(["params.p1", "param.p2", "tags.t1", "tags.`mlflow.user`"]),
            stringy,
            st.sampled_from(["'adam'", "'ADAM'", "'a%'", "'%d%'", "'a_b'", "'1%'", "'x'", "'X%'", '"ann"']),
        ).map(" ".join),
        st.sampled_from(["params.p1 IS NULL", "params.p2 IS NOT NULL", "tags.t1 IS NULL", "tags.t1 IS NOT NULL"]),
        st.sampled_from(
            [
                "status = 'FINISHED'",
                "attributes.status != 'RUNNING'",
                "status LIKE 'F%'",
                "run_name = 'alpha'",
                "run_name ILIKE 'alpha'",
                "`Run name` LIKE '%a%'",
                "user_id = 'ann'",
                "user_id != 'unknown'",
                f"start_time > {start + 2000}",
                f"created <= {start + 3000}",
                f"end_time > {start + 50_000}",
                f"attributes.end_time != {start}",
                "datasets.name = 'ds1'",
                "datasets.name IN ('ds1', 'ds2')",
                "datasets.digest NOT IN ('d1')",
                "datasets.context = 'train'",
                "datasets.context != 'train'",
                "dataset.context LIKE 'e%'",
            ]
        ),
        st.lists(st.sampled_from(synthetic_runs), min_size=1, max_size=3).map(
            lambda ids: "run_id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
        ),
    )


ORDER_FIELDS = [
    "metrics.m1",
    "metrics.m2",
    "params.p1",
    "params.p2",
    "tags.t1",
    "start_time",
    "end_time",
    "run_name",
    "status",
    "user_id",
    "attributes.run_id",
]
orders = st.lists(st.sampled_from(ORDER_FIELDS), max_size=2, unique=True).flatmap(
    lambda fields: st.tuples(*(st.sampled_from([f, f"{f} ASC", f"{f} DESC"]) for f in fields)).map(list)
)


def _reference(
    data: Synthetic, filter_text: str, order_by: list[str], view: ViewType, experiments: set[str]
) -> list[str]:
    stages = {ViewType.ACTIVE_ONLY: {"active"}, ViewType.DELETED_ONLY: {"deleted"}, ViewType.ALL: {"active", "deleted"}}
    runs = [r for r in data.runs if r.info.lifecycle_stage in stages[view] and r.info.experiment_id in experiments]
    return [r.info.run_id for r in SearchUtils.sort(SearchUtils.filter(runs, filter_text), order_by)]


async def _search_all(
    engine: AsyncEngine,
    data: Synthetic,
    filter_text: str,
    order_by: list[str],
    view: ViewType,
    experiments: set[str],
    page: int,
) -> list[str]:
    pairs = [(data.workspace_id, e.split("-", 1)[1]) for e in experiments]
    shape = search_shape("runs", filter_text, order_by, view.value)
    found: list[str] = []
    token = None
    sessions = async_sessionmaker(engine)
    for _ in range(100):
        search = RunSearch(pairs, parse_run_filter(filter_text), parse_run_order_by(order_by), view, page, token, shape)
        async with sessions() as session:
            answer = await IndexSearch(session).runs(search)
        assert len(answer.runs) == page or answer.next_page_token is None  # only the last page is short
        found.extend(r.info.run_id for r in answer.runs)
        token = answer.next_page_token
        if token is None:
            return found
    raise AssertionError("paging did not end")


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_index_search_agrees_with_mlflow_on_filters_orders_and_pages(
    engine: AsyncEngine, synthetic: Synthetic, data: st.DataObject
) -> None:
    clause = _clause_strategy([r.info.run_id for r in synthetic.runs])
    filter_text = " AND ".join(data.draw(st.lists(clause, max_size=2), label="clauses"))
    order_by = data.draw(orders, label="order_by")
    view = data.draw(st.sampled_from(list(ViewType)), label="view")
    experiments = {
        f"{synthetic.workspace_id}-{e}" for e in data.draw(st.sets(st.sampled_from(EXPERIMENTS), min_size=1))
    }
    page = data.draw(st.sampled_from([1, 3, 7, 1000]), label="page")
    expected = _reference(synthetic, filter_text, order_by, view, experiments)
    found = await _search_all(engine, synthetic, filter_text, order_by, view, experiments, page)
    assert found == expected, (filter_text, order_by, view.value, page)


async def test_index_search_answers_in_mlflows_shape(engine: AsyncEngine, synthetic: Synthetic) -> None:
    experiments = {f"{synthetic.workspace_id}-{e}" for e in EXPERIMENTS}
    pairs = [(synthetic.workspace_id, e) for e in EXPERIMENTS]
    search = RunSearch(pairs, [], [], ViewType.ALL, 1000, None, "s")
    async with async_sessionmaker(engine)() as session:
        answer = await IndexSearch(session).runs(search)
    by_id = {r.info.run_id: r for r in synthetic.runs}
    assert {r.info.run_id for r in answer.runs} == set(by_id)
    for found in answer.runs:
        want = by_id[found.info.run_id]
        assert found.info.experiment_id == want.info.experiment_id and found.info.experiment_id in experiments
        assert (found.info.start_time, found.info.end_time) == (want.info.start_time, want.info.end_time)
        assert (found.info.lifecycle_stage, found.info.user_id, found.info.run_name) == (
            want.info.lifecycle_stage,
            want.info.user_id,
            want.info.run_name,
        )
        assert {p.key: p.value for p in found.data.params} == want.data.params
        assert {t.key: t.value for t in found.data.tags} == want.data.tags
        for metric in found.data.metrics:
            logged = want.data.metrics[metric.key]
            if math.isnan(logged):
                assert metric.value == "NaN"
            elif math.isinf(logged):
                assert metric.value == math.copysign(1.7976931348623157e308, logged)
            else:
                assert metric.value == logged
        contexts = sorted(
            next((t.value for t in d.tags if t.key == "mlflow.data.context"), "") for d in found.inputs.dataset_inputs
        )
        assert contexts == sorted(next((t.value for t in d.tags), "") for d in want.inputs.dataset_inputs)


async def test_default_order_pages_seek_through_the_start_time_index(engine: AsyncEngine, synthetic: Synthetic) -> None:
    """With sequential scans off, the planner must be able to answer a later page from an index."""
    from sqlalchemy.dialects import postgresql

    from gateway.index.search import build_run_query

    pairs = [(synthetic.workspace_id, e) for e in EXPERIMENTS]
    cursor = [BASE + timedelta(seconds=3), "8" * 32]
    statement = build_run_query(pairs, [], [], ViewType.ACTIVE_ONLY, 11, cursor).statements[0]
    compiled = statement.compile(dialect=postgresql.asyncpg.dialect())
    params = [compiled.params[name] for name in compiled.positiontup or []]
    async with engine.connect() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        plan = "\n".join(row[0] for row in await raw.fetch(f"EXPLAIN {compiled}", *params))
    assert "ix_runs_start" in plan or "ix_runs_experiment_start" in plan, plan


# == end to end, with the stock client ===================================================================


@dataclass
class Written:
    suite: str
    experiments: dict[str, tuple[str, str]]  # account id → (workspace, store experiment id)
    runs: dict[str, str]  # run name → run id
    names: dict[str, str]  # account id → experiment name


def _account_id(workspace_id: int, experiment_id: str) -> str:
    return f"{workspace_id}-{experiment_id}"


WORKSPACE_IDS = {"team-a": 1001, "team-b": 1002, "team-c": 1003}


@pytest.fixture(scope="module")
def written(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    """Runs in three workspaces (one behind a renamed upstream workspace), written through the gateway."""

    with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
        mlflow.set_tracking_uri(stack.url)
        suite = unique("acct")
        experiments: dict[str, tuple[str, str]] = {}
        names: dict[str, str] = {}
        runs: dict[str, str] = {}
        artifact = tmp_path_factory.mktemp("account") / "notes.txt"
        artifact.write_text("account scope notes")
        plan = {
            "team-a": [("a1", 0.95, "adam"), ("a2", math.nan, "adam"), ("a3", math.inf, "sgd"), ("a4", None, "adam")],
            "team-b": [("b1", 0.92, "adam"), ("b2", 0.5, "sgd"), ("b3", -math.inf, "adam"), ("b4", 0.99, "adam")],
            "team-c": [("c1", 0.97, "adam"), ("c2", 0.91, "rmsprop")],
        }
        for workspace, planned in plan.items():
            mlflow.set_workspace(workspace)
            client = MlflowClient()
            name = f"{suite}-{workspace}"
            experiment_id = client.create_experiment(name, tags={"suite": suite})
            account_id = _account_id(WORKSPACE_IDS[workspace], experiment_id)
            experiments[account_id] = (workspace, experiment_id)
            names[account_id] = name
            for run_name, accuracy, optimizer in planned:
                with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
                    runs[run_name] = run.info.run_id
                    at = int(time.time() * 1000)
                    loss = 1.0 - (accuracy if accuracy is not None and math.isfinite(accuracy) else 0.0)
                    metrics = [Metric("loss", loss, at, 0)]
                    if accuracy is not None:  # the latest point is the greatest step
                        metrics += [Metric("accuracy", 0.1, at, 0), Metric("accuracy", accuracy, at, 1)]
                    # One batch per run: the fixture stays quick on a busy machine.
                    client.log_batch(
                        run.info.run_id, metrics, [Param("optimizer", optimizer)], [RunTag("suite", suite)]
                    )
                    if run_name in ("a1", "c1"):
                        mlflow.log_artifact(str(artifact))
                    if run_name == "a1":
                        with mlflow.start_run(experiment_id=experiment_id, run_name="a1-child", nested=True) as child:
                            runs["a1-child"] = child.info.run_id
                            client.log_batch(
                                child.info.run_id,
                                [Metric("accuracy", 0.93, at, 0)],
                                [Param("optimizer", "adam")],
                                [RunTag("suite", suite)],
                            )
            if workspace == "team-b":
                client.delete_run(runs["b2"])
        yield Written(suite, experiments, runs, names)


def _per_workspace(written: Written, filter_string: str, order_by: list[str], view: int) -> list[Run]:
    """What each workspace answers on its own, with experiment ids put in the account form."""
    found: list[Run] = []
    for account_id, (workspace, experiment_id) in written.experiments.items():
        mlflow.set_workspace(workspace)
        for run in MlflowClient().search_runs([experiment_id], filter_string, view, 1000, order_by):
            run.info._experiment_id = account_id
            found.append(run)
    mlflow.set_workspace(ACCOUNT)
    return found


def _account_pages(written: Written, filter_string: str, order_by: list[str], view: int, page: int) -> list[Run]:
    mlflow.set_workspace(ACCOUNT)
    client = MlflowClient()
    found: list[Run] = []
    token = None
    while True:
        result = client.search_runs(list(written.experiments), filter_string, view, page, order_by, token)
        assert len(result) == page or not result.token
        found.extend(result)
        token = result.token
        if not token:
            return found


def _same_run(account: Run, workspace: Run) -> None:
    assert account.info.run_id == workspace.info.run_id
    assert account.info.experiment_id == workspace.info.experiment_id
    assert (account.info.status, account.info.start_time, account.info.end_time, account.info.run_name) == (
        workspace.info.status,
        workspace.info.start_time,
        workspace.info.end_time,
        workspace.info.run_name,
    )
    assert (account.info.user_id, account.info.lifecycle_stage) == (
        workspace.info.user_id,
        workspace.info.lifecycle_stage,
    )
    assert account.data.params == workspace.data.params
    assert account.data.tags == workspace.data.tags
    assert set(account.data.metrics) == set(workspace.data.metrics)
    for key, value in workspace.data.metrics.items():
        assert account.data.metrics[key] == value or (math.isnan(value) and math.isnan(account.data.metrics[key]))


@pytest.mark.parametrize(
    ("filter_string", "order_by", "view", "page"),
    [
        (
            "metrics.accuracy > 0.9 and params.optimizer = 'adam'",
            ["metrics.accuracy DESC"],
            MlflowViewType.ACTIVE_ONLY,
            2,
        ),
        ("", [], MlflowViewType.ACTIVE_ONLY, 3),
        ("", ["metrics.accuracy ASC"], MlflowViewType.ALL, 2),
        ("params.optimizer != 'adam'", ["params.optimizer DESC", "start_time"], MlflowViewType.ALL, 1),
        ("tags.mlflow.runName LIKE 'a%'", ["attributes.run_name DESC"], MlflowViewType.ACTIVE_ONLY, 4),
        ("metrics.loss >= 0", ["metrics.loss", "attributes.end_time DESC"], MlflowViewType.DELETED_ONLY, 1),
        (
            "attributes.status = 'FINISHED' and metrics.accuracy != 0.95",
            ["tags.`mlflow.runName`"],
            MlflowViewType.ALL,
            5,
        ),
    ],
)
def test_account_search_returns_what_the_workspaces_return_merged_and_ordered(
    mlflow_env: Stack, written: Written, filter_string: str, order_by: list[str], view: int, page: int
) -> None:
    workspace_runs = _per_workspace(written, filter_string, order_by, view)
    expected = SearchUtils.sort(workspace_runs, order_by)
    account_runs = _account_pages(written, filter_string, order_by, view, page)
    assert [r.info.run_id for r in account_runs] == [r.info.run_id for r in expected]
    assert account_runs, "the case should find something"
    for account, workspace in zip(account_runs, expected, strict=True):
        _same_run(account, workspace)


def test_search_runs_over_all_experiments_finds_every_workspaces_runs(mlflow_env: Stack, written: Written) -> None:
    """`search_all_experiments=True` lists experiments first (account ids), then searches their runs."""
    mlflow.set_workspace(ACCOUNT)
    found = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"metrics.accuracy > 0.9 and params.optimizer = 'adam' and tags.suite = '{written.suite}'",
        order_by=["metrics.accuracy DESC"],
    )
    # NaN (a2) and the runs without the metric never pass `>`; b2 is deleted; a3 (infinity) is not adam.
    assert list(found["tags.mlflow.runName"]) == ["b4", "c1", "a1", "a1-child", "b1"]
    assert set(found["experiment_id"]) <= set(written.experiments)
    nested = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.mlflow.parentRunId = '{written.runs['a1']}'",
        output_format="list",
    )
    assert [r.info.run_id for r in nested] == [written.runs["a1-child"]]


def test_nan_and_infinite_metrics_sort_as_mlflow_sorts_them(mlflow_env: Stack, written: Written) -> None:
    mlflow.set_workspace(ACCOUNT)
    team_a = [e for e, (w, _) in written.experiments.items() if w == "team-a"]
    for direction in ("DESC", "ASC"):
        runs = MlflowClient().search_runs(team_a, order_by=[f"metrics.accuracy {direction}"])
        names = [r.info.run_name for r in runs]
        # Numbers in order (infinity stored as the largest double), then NaN, then the run without it.
        numbers = ["a3", "a1", "a1-child"] if direction == "DESC" else ["a1-child", "a1", "a3"]
        assert names == [*numbers, "a2", "a4"]
        values = {r.info.run_name: r.data.metrics.get("accuracy") for r in runs}
        assert values["a3"] == 1.7976931348623157e308 and math.isnan(values["a2"]) and values["a4"] is None


def test_account_experiments_span_workspaces_with_account_ids(mlflow_env: Stack, written: Written) -> None:
    mlflow.set_workspace(ACCOUNT)
    client = MlflowClient()
    found = client.search_experiments(filter_string=f"name LIKE '{written.suite}-%'", order_by=["name DESC"])
    assert [e.experiment_id for e in found] == sorted(written.experiments, key=written.names.__getitem__, reverse=True)
    assert {e.workspace for e in found} == {"team-a", "team-b", "team-c"}
    assert all(e.tags == {"suite": written.suite} and e.lifecycle_stage == "active" for e in found)
    paged, token = [], None
    while True:
        page = client.search_experiments(
            max_results=1, page_token=token, filter_string=f"tags.suite = '{written.suite}'"
        )
        paged.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            break
    assert sorted(paged) == sorted(written.experiments) and len(paged) == 3
    chosen = next(iter(written.experiments))
    assert [e.experiment_id for e in client.search_experiments(filter_string=f"experiment_id = '{chosen}'")] == [chosen]

    experiment = client.get_experiment(chosen)
    assert (experiment.experiment_id, experiment.name) == (chosen, written.names[chosen])
    by_name = client.get_experiment_by_name(written.names[chosen])
    assert by_name is not None and by_name.experiment_id == chosen
    assert client.get_experiment_by_name(unique("nothing")) is None


def test_get_run_history_and_artifacts_come_from_the_runs_workspace(
    mlflow_env: Stack, written: Written, tmp_path: Path
) -> None:
    for run_name, workspace in (("a1", "team-a"), ("c1", "team-c")):
        run_id = written.runs[run_name]
        mlflow.set_workspace(workspace)
        direct = MlflowClient().get_run(run_id)
        history = [(m.step, m.value) for m in MlflowClient().get_metric_history(run_id, "accuracy")]
        mlflow.set_workspace(ACCOUNT)
        client = MlflowClient()
        run = client.get_run(run_id)
        assert run.info.experiment_id == _account_id(WORKSPACE_IDS[workspace], direct.info.experiment_id)
        assert (run.data.params, run.data.metrics, run.data.tags) == (
            direct.data.params,
            direct.data.metrics,
            direct.data.tags,
        )
        assert run.info.artifact_uri == direct.info.artifact_uri
        assert (
            [(m.step, m.value) for m in client.get_metric_history(run_id, "accuracy")]
            == history
            == [(0, 0.1), (1, run.data.metrics["accuracy"])]
        )
        assert [f.path for f in client.list_artifacts(run_id)] == ["notes.txt"]
        downloaded = client.download_artifacts(run_id, "notes.txt", str(tmp_path / run_name))
        assert Path(downloaded).read_text() == "account scope notes"
    # The UI's bulk history may name runs of several workspaces: each part goes to its own workspace.
    bulk = mlflow_env.http(ACCOUNT).get(
        f"{mlflow_env.url}/api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": [written.runs["a1"], written.runs["b1"]], "metric_key": "accuracy", "max_results": 10},
    )
    assert bulk.status_code == 200, bulk.text
    assert sorted((p["run_id"], p["step"], p["value"]) for p in bulk.json()["metrics"]) == sorted(
        [
            (written.runs["a1"], 0, 0.1),
            (written.runs["a1"], 1, 0.95),
            (written.runs["b1"], 0, 0.1),
            (written.runs["b1"], 1, 0.92),
        ]
    )
    unknown = uuid.uuid4().hex
    with pytest.raises(MlflowException) as missing:
        MlflowClient().get_run(unknown)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_every_write_in_the_account_scope_is_refused(mlflow_env: Stack, written: Written) -> None:
    mlflow.set_workspace(ACCOUNT)
    client = MlflowClient()
    run_id = written.runs["a1"]
    experiment = next(iter(written.experiments))
    for write in (
        lambda: client.create_experiment(unique("nope")),
        lambda: client.log_metric(run_id, "x", 1.0),
        lambda: client.set_tag(run_id, "x", "y"),
        lambda: client.delete_run(run_id),
        lambda: client.create_run(experiment),
        lambda: client.set_experiment_tag(experiment, "x", "y"),
        lambda: client.create_registered_model(unique("model")),
    ):
        with pytest.raises(MlflowException) as refused:
            write()
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "The account scope is read-only; choose a workspace." in str(refused.value)
    session = mlflow_env.http(ACCOUNT)
    upload = session.put(f"{mlflow_env.url}/api/2.0/mlflow-artifacts/artifacts/1/{run_id}/artifacts/x.txt", data=b"x")
    assert upload.status_code == 400 and upload.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # Reads the account scope does not serve say so, instead of guessing a workspace.
    logged = session.get(f"{mlflow_env.url}/api/2.0/mlflow/logged-models/{'m-' + '0' * 32}")
    assert logged.status_code == 400 and "account scope" in logged.json()["message"]
    # Registered models and their versions are served there (named <workspace>.<name>), but a store that does
    # not answer leaves its workspace out of the page and is named in a header, rather than failing the search.
    searches = (("registered-models/search", "registered_models"), ("model-versions/search", "model_versions"))
    for path, listed in searches:
        found = session.get(f"{mlflow_env.url}/api/2.0/mlflow/{path}")
        assert found.status_code == 200, found.text
        assert "offline" in found.headers["X-Fedgate-Unreachable-Workspaces"].split(", ")
        assert all("." in m["name"] for m in found.json().get(listed, []))
    assert client.get_run(run_id).info.run_id == run_id  # nothing was changed
    assert "x" not in client.get_run(run_id).data.tags


def test_bad_tokens_ids_and_filters_are_invalid_parameters(mlflow_env: Stack, written: Written) -> None:
    session = mlflow_env.http(ACCOUNT)
    search = f"{mlflow_env.url}/api/2.0/mlflow/runs/search"
    cases = [
        {"experiment_ids": list(written.experiments), "page_token": "bm90IGEgdG9rZW4"},
        {"experiment_ids": ["1"]},
        {"experiment_ids": list(written.experiments), "filter": "metrics.a > 1 OR metrics.b > 2"},
        {"experiment_ids": list(written.experiments), "filter": "attributes.artifact_uri = 'x'"},
        {"experiment_ids": list(written.experiments), "max_results": 50_001},
    ]
    for body in cases:
        answer = session.post(search, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", body
    first = session.post(search, json={"experiment_ids": list(written.experiments), "max_results": 1}).json()
    other = session.post(
        search,
        json={
            "experiment_ids": list(written.experiments),
            "max_results": 1,
            "filter": "params.optimizer = 'adam'",
            "page_token": first["next_page_token"],
        },
    )
    assert other.status_code == 400 and "different search" in other.json()["message"]
    # The client's capability probe in the account scope: workspaces on.
    info = session.get(f"{mlflow_env.url}/api/3.0/mlflow/server-info").json()
    assert info["workspaces_enabled"] is True


def test_an_experiment_name_in_two_workspaces_is_ambiguous_by_name(mlflow_env: Stack) -> None:
    name = unique("twice")
    for workspace in ("team-a", "team-b"):
        mlflow.set_workspace(workspace)
        MlflowClient().create_experiment(name)
    mlflow.set_workspace(ACCOUNT)
    with pytest.raises(MlflowException) as ambiguous:
        MlflowClient().get_experiment_by_name(name)
    assert ambiguous.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "team-a" in str(ambiguous.value) and "team-b" in str(ambiguous.value)
    found = MlflowClient().search_experiments(filter_string=f"name = '{name}'")
    assert sorted(e.workspace for e in found) == ["team-a", "team-b"]


# -- who sees what --------------------------------------------------------------------------------------


def test_a_reader_of_one_experiment_sees_only_that_experiment_account_wide(
    mlflow_env: Stack, written: Written, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, admin = f"reader.{uuid.uuid4().hex[:6]}@example.com", Admin.of(mlflow_env)
    token = admin.person(name).token
    readable = next(e for e, (w, _) in written.experiments.items() if w == "team-b")
    workspace, experiment_id = written.experiments[readable]
    admin.grant(f"experiments/{experiment_id}", "CAN_READ", user=name, workspace=workspace)

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    mlflow.set_workspace(ACCOUNT)
    client = MlflowClient()
    assert [e.experiment_id for e in client.search_experiments(filter_string=f"tags.suite = '{written.suite}'")] == [
        readable
    ]
    runs = client.search_runs(list(written.experiments), run_view_type=MlflowViewType.ALL)
    assert {r.info.run_name for r in runs} == {"b1", "b2", "b3", "b4"}
    everything = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert {r.info.experiment_id for r in everything} == {readable}
    hidden = written.runs["a1"]
    for read in (
        lambda: client.get_run(hidden),
        lambda: client.get_metric_history(hidden, "accuracy"),
        lambda: client.get_experiment(next(e for e in written.experiments if e != readable)),
    ):
        with pytest.raises(MlflowException) as refused:
            read()
        assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert "team-a" not in str(refused.value)
    assert client.get_run(written.runs["b1"]).info.experiment_id == readable
    with pytest.raises(MlflowException) as refused:
        client.log_metric(written.runs["b1"], "x", 1.0)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_like_pattern_ending_in_its_escape_is_refused_whatever_the_rows(mlflow_env: Stack, written: Written) -> None:
    """PostgreSQL fails on `LIKE 'x\\'` only when a value it reads matches all of it before the backslash: such a
    filter answered 500 INTERNAL_ERROR or 200 by the rows, and which rows it reads before the caller's visibility
    test (one more condition of the same WHERE) is the planner's choice. It is refused with 400, whatever the
    rows; the probes name the reader's own rows and another workspace's (`a1` prefixes a hidden run's name)."""
    name, admin = f"prober.{uuid.uuid4().hex[:6]}@example.com", Admin.of(mlflow_env)
    token = admin.person(name).token
    readable = next(e for e, (w, _) in written.experiments.items() if w == "team-b")
    workspace, experiment_id = written.experiments[readable]
    admin.grant(f"experiments/{experiment_id}", "CAN_READ", user=name, workspace=workspace)
    session = mlflow_env.http(ACCOUNT, token=token)
    hidden = next(n for e, n in written.names.items() if written.experiments[e][0] == "team-a")
    probes = [
        ("runs/search", {"experiment_ids": list(written.experiments), "filter": "attributes.run_name LIKE 'a1\\'"}),
        ("experiments/search", {"filter": f"name ILIKE '{hidden[:-3].upper()}\\'", "max_results": 10}),
        ("runs/search", {"experiment_ids": list(written.experiments), "filter": "attributes.run_name LIKE 'a\\'"}),
        ("runs/search", {"experiment_ids": list(written.experiments), "filter": "tags.suite LIKE 'acct\\'"}),
        ("runs/search", {"experiment_ids": [readable], "filter": "params.optimizer ILIKE 'ADA\\'"}),
    ]
    answers = [session.post(f"{mlflow_env.url}/api/2.0/mlflow/{route}", json=body) for route, body in probes]
    assert [a.status_code for a in answers] == [400] * len(probes), [(a.status_code, a.text[:200]) for a in answers]
    for answer in answers:
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "ends in the escape character" in answer.json()["message"]
    # An escaped backslash is a pattern like any other: nothing of team-a's, and the reader's own run by name.
    for pattern, expected in ((f"{hidden[:-3]}\\\\%", []), ("b1%", ["b1"])):
        body = {"experiment_ids": list(written.experiments), "filter": f"attributes.run_name LIKE '{pattern}'"}
        answer = session.post(f"{mlflow_env.url}/api/2.0/mlflow/runs/search", json=body)
        assert answer.status_code == 200, answer.text
        assert [r["info"]["run_name"] for r in answer.json().get("runs", [])] == expected


def test_a_search_longer_than_its_statement_timeout_answers_deadline_exceeded(stack: Stack) -> None:
    """A replica with a one-second search timeout; the search waits behind a lock on the index until cancelled."""
    config = write_config(stack.workdir / "fedgate-search-timeout.toml", stack.database_url, stack.stores)
    gateway = GatewayProcess(config, {**GATEWAY_ENV, "FEDGATE_SERVER_ACCOUNT_SEARCH_TIMEOUT_SECONDS": "1"}).start()

    def search() -> requests.Response:
        return requests.post(
            f"{gateway.url}/api/2.0/mlflow/experiments/search",
            json={"max_results": 10},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": ACCOUNT},
            timeout=60,
        )

    async def behind_a_lock() -> requests.Response:
        connection = await asyncpg.connect(stack.database_url)
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE ix_experiments IN ACCESS EXCLUSIVE MODE")
                return await asyncio.to_thread(search)
        finally:
            await connection.close()

    try:
        refused = asyncio.run(behind_a_lock())
        assert refused.status_code == 504, refused.text
        error = refused.json()
        assert error["error_code"] == "DEADLINE_EXCEEDED"
        assert "longer than 1 s" in error["message"]
        assert search().status_code == 200  # the lock gone, the same search answers
    finally:
        gateway.stop()
