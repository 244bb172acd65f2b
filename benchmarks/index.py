"""The account-wide index at scale: searches, documented SQL queries, and write-through ingest.

1. Generates an account of 10 workspaces, 1,000,000 runs and 20,000,000 metric points straight into
   the index tables (COPY; the generation is set-up, not what is measured). `--data DIR` keeps the
   generated database for the next run.
2. Times typical account-scope searches (the stock client's calls, through the gateway) and the
   documented system-table queries (through POST /api/2.0/sql/statements), as an account admin and as
   a user who may read 3 of the 10 workspaces; p50/p95 (no store answers these, so there is no direct
   baseline: the targets are absolute). Then the account console's dashboards (their data route), as the
   admin and as the user through a dynamic view of their workspaces (`--skip-dashboards` leaves them out).
3. Times metric ingest with log-batch calls of 1,000 points: the write-through alone (bodies applied
   straight to PostgreSQL), then through the gateway with write-through on vs off, against an instant
   upstream (the gateway's own cost) and against a real `mlflow server` (what a user sees); prints
   points/s and the ratio. The same for runs/create (runs/s): each new run also moves the run counts.

    python benchmarks/index.py [--runs 1000000] [--points 20000000] [--data DIR] [--repeat 30]

With `--before REV` the reads are measured side by side instead: the account is generated into a database
migrated by revision REV (a git worktree of it), copied, and the copy migrated by this checkout (the time
that takes is printed: it is the upgrade of an existing 1M-run index); a gateway of each revision serves
its own database, and every search and statement is called on both in turn, so the machine's drift hits
both alike. Prints p50/p95 per side and the after/before ratio of each.

    python benchmarks/index.py --before REV --skip-ingest [--data DIR] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import requests
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.console.dashboard_queries import DASHBOARDS, Filters
from gateway.db.engine import start_embedded
from gateway.db.migrate import upgrade
from gateway.devstack import GatewayProcess, MlflowServer, free_port
from gateway.index.points import PointWriter, read_points
from gateway.index.writer import IndexWriter, NewRun, RunWrite
from gateway.sql.documented import (
    METRIC_SUMMARY,
    RUN_DETAILS,
    RUN_DETAILS_WITH_EXPERIMENT,
    RUN_ROW,
    RUN_TAGS,
    SUCCESS_RATIO,
)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "benchmark-admin-token-" + uuid.uuid4().hex
WORKSPACES = 10
EXPERIMENTS_PER_WORKSPACE = 100
FIRST_WORKSPACE_ID = 2001
OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")
STATUSES = ("FINISHED",) * 7 + ("FAILED", "KILLED", "RUNNING")
BATCH = 1000
JSON = {"Content-Type": "application/json"}
BASE = datetime(2026, 1, 1, tzinfo=UTC)


# -- 1. the generated account --------------------------------------------------------------------------


def run_rows(first: int, count: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for key in range(first, first + count):
        workspace = FIRST_WORKSPACE_ID + key % WORKSPACES
        experiment = str(1 + (key // WORKSPACES) % EXPERIMENTS_PER_WORKSPACE)
        start = BASE + timedelta(seconds=key * 7)
        status = STATUSES[key % len(STATUSES)]
        end = None if status == "RUNNING" else start + timedelta(minutes=1 + key % 90)
        params = {
            "lr": f"{rng.choice((0.1, 0.01, 0.001))}",
            "optimizer": OPTIMIZERS[key % 4],
            "batch": str(32 << key % 3),
        }
        tags = {"team": f"team-{key % 7}", "mlflow.user": f"user{key % 50}@example.com", "mlflow.runName": f"run-{key}"}
        yield (
            key,
            uuid.UUID(int=key).hex,
            workspace,
            experiment,
            f"user{key % 50}@example.com",
            f"run-{key}",
            status,
            start,
            end,
            start,
            json.dumps(params),
            json.dumps(tags),
        )


async def generate(url: str, runs: int, points: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT count(*) FROM ix_runs") >= runs:
            print(f"using the generated account in place ({runs:,} runs)")
            return
        started = time.perf_counter()
        await conn.execute("TRUNCATE ix_runs, ix_metrics, ix_metric_latest, ix_experiments")
        await conn.copy_records_to_table(
            "ix_experiments",
            records=[
                (FIRST_WORKSPACE_ID + w, str(e + 1), f"/Users/team-{w}/experiment-{e + 1}", BASE, BASE)
                for w in range(WORKSPACES)
                for e in range(EXPERIMENTS_PER_WORKSPACE)
            ],
            columns=("workspace_id", "experiment_id", "name", "create_time", "update_time"),
        )
        rng = random.Random(7)
        per_run = max(1, points // runs)
        steps = per_run // 2  # two metrics per run: loss and accuracy
        chunk = 20_000
        for first in range(1, runs + 1, chunk):
            count = min(chunk, runs + 1 - first)
            await conn.copy_records_to_table(
                "ix_runs",
                records=run_rows(first, count, rng),
                columns=(
                    "run_key",
                    "run_id",
                    "workspace_id",
                    "experiment_id",
                    "created_by",
                    "run_name",
                    "status",
                    "start_time",
                    "end_time",
                    "update_time",
                    "params",
                    "tags",
                ),
            )
            metric_rows: list[tuple[Any, ...]] = []
            latest_rows: list[tuple[Any, ...]] = []
            for key in range(first, first + count):
                start = BASE + timedelta(seconds=key * 7)
                quality = rng.random()
                losses = [2.0 / (s + 1) + quality for s in range(steps)]
                accuracies = [min(0.999, quality * (s + 1) / steps) for s in range(steps)]
                times = [start + timedelta(seconds=s) for s in range(steps)]
                metric_rows.append((key, "loss", list(range(steps)), times, losses))
                metric_rows.append((key, "accuracy", list(range(steps)), times, accuracies))
                last = steps - 1
                latest_rows.append((key, "loss", losses[last], last, times[last], min(losses), max(losses), steps))
                latest_rows.append(
                    (key, "accuracy", accuracies[last], last, times[last], min(accuracies), max(accuracies), steps)
                )
            await conn.copy_records_to_table(
                "ix_metrics",
                records=metric_rows,
                columns=("run_key", "metric_name", "metric_steps", "metric_times", "metric_values"),
            )
            await conn.copy_records_to_table(
                "ix_metric_latest",
                records=latest_rows,
                columns=(
                    "run_key",
                    "metric_name",
                    "latest_value",
                    "latest_step",
                    "latest_time",
                    "min_value",
                    "max_value",
                    "points",
                ),
            )
            done = first + count - 1
            if done % 100_000 < chunk:
                print(f"  generated {done:,} runs, {done * steps * 2:,} points ({time.perf_counter() - started:.0f} s)")
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('ix_runs', 'run_key'), (SELECT max(run_key) FROM ix_runs))"
        )
        await conn.execute("VACUUM ANALYZE ix_runs")
        await conn.execute("VACUUM ANALYZE ix_metrics")
        await conn.execute("VACUUM ANALYZE ix_metric_latest")
        await conn.execute("VACUUM ANALYZE ix_experiments")
        print(f"generated {runs:,} runs and {runs * steps * 2:,} points in {time.perf_counter() - started:.0f} s")
    finally:
        await conn.close()


# -- 2. searches and SQL ---------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(call: Callable[[], requests.Response], repeat: int) -> tuple[float, float, Any]:
    call()  # warm
    samples = []
    answer: Any = None
    for _ in range(repeat):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        answer = response.json()
    p50, p95 = percentiles(samples)
    return p50, p95, answer


def session(token: str, workspace: str | None = None) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    if workspace:
        s.headers["X-MLFLOW-WORKSPACE"] = workspace
    return s


ACCOUNT = {"X-MLFLOW-WORKSPACE": "account"}


def account_experiment_ids(base: str, http: requests.Session) -> list[str]:
    """What `search_runs(search_all_experiments=True)` does first: every experiment id, page by page."""
    ids: list[str] = []
    token = ""
    while True:
        body: dict[str, Any] = {"max_results": 1000, "view_type": "ACTIVE_ONLY"}
        if token:
            body["page_token"] = token
        page = http.post(f"{base}/api/2.0/mlflow/experiments/search", json=body, headers=ACCOUNT).json()
        ids.extend(e["experiment_id"] for e in page.get("experiments") or [])
        token = page.get("next_page_token") or ""
        if not token:
            return ids


SEARCHES: list[tuple[str, dict[str, Any]]] = [
    (
        "metrics.accuracy > 0.9 and params.optimizer = 'adam', by accuracy",
        {"filter": "metrics.accuracy > 0.9 and params.optimizer = 'adam'", "order_by": ["metrics.accuracy DESC"]},
    ),
    ("all runs, newest first (the default order)", {}),
    ("tags.team = 'team-3'", {"filter": "tags.team = 'team-3'"}),
    (
        "attributes.status = 'FAILED', by start time",
        {"filter": "attributes.status = 'FAILED'", "order_by": ["attributes.start_time ASC"]},
    ),
    ("params.lr = '0.01' and metrics.loss < 1.5", {"filter": "params.lr = '0.01' and metrics.loss < 1.5"}),
]

SQL: list[tuple[str, str, list[dict[str, str]]]] = [
    (
        "success ratio per experiment, top 20",
        SUCCESS_RATIO,
        [],
    ),
    (
        "run details",
        RUN_DETAILS,
        ["experiment_id", "run_id"],
    ),
    (
        "run details joined with experiments",
        RUN_DETAILS_WITH_EXPERIMENT,
        ["experiment_id", "run_id"],
    ),
    (
        "metric summary of one run",
        METRIC_SUMMARY,
        ["run_id"],
    ),
    (
        "one run, all columns (dashboard)",
        RUN_ROW,
        ["experiment_id", "run_id"],
    ),
    (
        "explode(tags) of one run (dashboard)",
        RUN_TAGS,
        ["experiment_id", "run_id"],
    ),
    (
        "params['lr'] of one experiment's runs",
        """SELECT run_id, params['lr'] AS lr, status FROM system.mlflow.runs_latest
WHERE experiment_id = :experiment_id AND workspace_id = :workspace_id ORDER BY start_time DESC LIMIT 100""",
        ["experiment_id", "workspace_id"],
    ),
]


def sql_call(base: str, http: requests.Session, statement: str, params: dict[str, str]) -> requests.Response:
    body = {
        "statement": statement,
        "parameters": [{"name": k, "value": v, "type": "STRING"} for k, v in params.items()],
        "wait_timeout": "50s",
    }
    response = http.post(f"{base}/api/2.0/sql/statements", json=body)
    if response.status_code == 200 and response.json().get("status", {}).get("state") != "SUCCEEDED":
        response.status_code = 599
    return response


def measure_reads(base: str, admin: requests.Session, user: requests.Session, repeat: int, runs: int) -> None:
    account = ACCOUNT
    for who, http in (("admin", admin), ("3-of-10 user", user)):
        started = time.perf_counter()
        ids = account_experiment_ids(base, http)
        listing = (time.perf_counter() - started) * 1000
        print(f"\naccount search as {who}: {len(ids)} experiments listed in {listing:.0f} ms")
        print(f"  {'search':<68} {'p50 ms':>8} {'p95 ms':>8} {'rows':>5}")
        for label, extra in SEARCHES:
            body = {"experiment_ids": ids, "max_results": 100, **extra}
            p50, p95, answer = timed(
                lambda body=body, http=http: http.post(  # type: ignore[misc]
                    f"{base}/api/2.0/mlflow/runs/search", json=body, headers=account
                ),
                repeat,
            )
            print(f"  {label:<68} {p50:8.1f} {p95:8.1f} {len(answer.get('runs') or []):5}")
        p50, p95, _ = timed(
            lambda http=http: http.post(  # type: ignore[misc]
                f"{base}/api/2.0/mlflow/experiments/search", json={"max_results": 100}, headers=account
            ),
            repeat,
        )
        print(f"  {'experiments, first page of 100':<68} {p50:8.1f} {p95:8.1f}")

    rng = random.Random(11)
    print(f"\nSQL statements (account admin), {repeat} random runs each")
    print(f"  {'statement':<44} {'p50 ms':>8} {'p95 ms':>8} {'rows':>5}")
    for label, statement, names in SQL:
        samples = []
        rows = 0
        for i in range(repeat + 1):
            key = rng.randrange(1, runs + 1)
            workspace = FIRST_WORKSPACE_ID + key % WORKSPACES
            values = {
                "run_id": uuid.UUID(int=key).hex,
                # The system tables' account-wide experiment id: <workspace_id>-<experiment_id>.
                "experiment_id": f"{workspace}-{1 + (key // WORKSPACES) % EXPERIMENTS_PER_WORKSPACE}",
                "workspace_id": str(workspace),
            }
            params = {n: values[n] for n in names}
            started = time.perf_counter()
            response = sql_call(base, admin, statement, params)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{label}: {response.status_code} {response.text[:300]}")
            if i:  # the first call warms
                samples.append(elapsed)
            rows = len((response.json().get("result") or {}).get("data_array") or [])
        p50, p95 = percentiles(samples)
        print(f"  {label:<44} {p50:8.1f} {p95:8.1f} {rows:5}")


def measure_dashboards(base: str, admin: requests.Session, user: requests.Session, repeat: int, runs: int) -> None:
    """The console's dashboards (gateway/console/dashboards.py) on the generated account.

    Through the console's own data route (`/fedgate/console/dashboards/data/<key>`: the statement built, run
    through the SQL service as the caller, every chunk read, the rows as JSON), as the account admin over the
    system tables and as the 3-of-10 user through a dynamic view of their three workspaces; then each
    statement with a 30-day window over the generated runs through the SQL API (the console's windows count
    back from now, and the generated runs are in the past).
    """
    view = "bench.mlflow.three_workspaces"
    user_name = user.get(f"{base}/api/2.0/preview/scim/v2/Me").json()["userName"]
    for statement in (
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest "
        "WHERE workspace_id IN ('2001', '2002', '2003')",
        f"GRANT USE CATALOG ON CATALOG bench TO `{user_name}`",
        f"GRANT USE SCHEMA ON SCHEMA bench.mlflow TO `{user_name}`",
        f"GRANT SELECT ON VIEW {view} TO `{user_name}`",
        f"GRANT USE CATALOG ON CATALOG system TO `{user_name}`",
        f"GRANT USE SCHEMA ON SCHEMA system.mlflow TO `{user_name}`",
        f"GRANT SELECT ON TABLE system.mlflow.run_metrics_history TO `{user_name}`",
    ):
        response = sql_call(base, admin, statement, {})
        if response.status_code != 200:
            raise RuntimeError(f"{statement}: {response.status_code} {response.text[:300]}")
    experiment = f"{FIRST_WORKSPACE_ID}-1"  # 1/1000 of the runs, 10 loss points each
    cases: list[tuple[str, requests.Session, dict[str, str]]] = [
        ("admin, all time", admin, {"days": "all"}),
        ("admin, all time, workspace ws-1", admin, {"days": "all", "workspace": "ws-1"}),
        ("3-of-10 user by a view, all time", user, {"days": "all", "runs": view}),
        ("3-of-10 user by a view, ws-1", user, {"days": "all", "runs": view, "workspace": "ws-1"}),
    ]
    print(f"\nconsole dashboards on {runs:,} runs, {repeat} calls each (the data route: JSON of every row)")
    print(f"  {'dashboard':<22} {'filters':<38} {'p50 ms':>8} {'p95 ms':>8} {'rows':>5}")
    for label, http, params in cases:
        for item in DASHBOARDS:
            # The metric trend is of one experiment; the others span every run the filters leave.
            query = {**params, "experiment": experiment, "metric": "loss"} if item.key == "metric-trend" else params
            p50, p95, answer = timed(
                lambda http=http, key=item.key, query=query: http.get(  # type: ignore[misc]
                    f"{base}/fedgate/console/dashboards/data/{key}", params=query
                ),
                repeat,
            )
            print(f"  {item.key:<22} {label:<38} {p50:8.1f} {p95:8.1f} {len(answer['rows']):5}")
    last_start = BASE + timedelta(seconds=runs * 7)
    window = Filters(since=(last_start - timedelta(days=30)).date())
    print(f"  {'(SQL API) 30-day window, admin':<61}")
    for item in DASHBOARDS:
        statement = item.build(
            Filters(since=window.since, experiment_id=experiment, metric="loss")
            if item.key == "metric-trend"
            else window
        )

        def call(statement: Any = statement) -> requests.Response:
            body = {
                "statement": statement.text,
                "parameters": [{"name": n, "value": v, "type": t} for n, (v, t) in statement.parameters.items()],
                "wait_timeout": "50s",
            }
            return admin.post(f"{base}/api/2.0/sql/statements", json=body)

        p50, p95, answer = timed(call, repeat)
        if answer["status"]["state"] != "SUCCEEDED":
            raise RuntimeError(f"{item.key}: {answer['status']}")
        rows = len((answer.get("result") or {}).get("data_array") or [])
        print(f"  {item.key:<22} {'last 30 days of the runs':<38} {p50:8.1f} {p95:8.1f} {rows:5}")


@dataclass
class Side:
    """One revision's gateway in a side-by-side run, with an admin's and a 3-of-10 user's sessions."""

    name: str
    base: str
    admin: requests.Session
    user: requests.Session


def compare_reads(sides: list[Side], repeat: int, runs: int) -> None:
    """Every search and documented statement, timed on each side in turn; p50/p95 per side and the ratio."""
    before, after = sides

    def report(label: str, samples: dict[str, list[float]]) -> None:
        (b50, b95), (a50, a95) = percentiles(samples[before.name]), percentiles(samples[after.name])
        print(f"  {label:<68} {b50:7.1f} {b95:7.1f} {a50:7.1f} {a95:7.1f}   {a50 / b50:5.2f}x {a95 / b95:5.2f}x")

    header = f"  {'':<68} {'before':>15} {'after':>15}   {'after/before':>13}"
    columns = f"  {'':<68} {'p50':>7} {'p95':>7} {'p50':>7} {'p95':>7}   {'p50':>6} {'p95':>6}"
    for who in ("admin", "3-of-10 user"):
        ids = {
            side.name: account_experiment_ids(side.base, side.admin if who == "admin" else side.user) for side in sides
        }
        print(f"\naccount search as {who} ({len(ids[after.name])} experiments), ms, {repeat} calls per side")
        print(header + "\n" + columns)
        for label, extra in SEARCHES:
            samples: dict[str, list[float]] = {side.name: [] for side in sides}
            answers: dict[str, Any] = {}
            for i in range(repeat + 1):
                for side in sides if i % 2 else reversed(sides):
                    http = side.admin if who == "admin" else side.user
                    body = {"experiment_ids": ids[side.name], "max_results": 100, **extra}
                    started = time.perf_counter()
                    response = http.post(f"{side.base}/api/2.0/mlflow/runs/search", json=body, headers=ACCOUNT)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise RuntimeError(f"{side.name} {label}: {response.status_code} {response.text[:300]}")
                    answers[side.name] = [r["info"]["run_id"] for r in response.json().get("runs") or []]
                    if i:
                        samples[side.name].append(elapsed)
            if answers[before.name] != answers[after.name]:
                raise RuntimeError(f"{label}: the two revisions answer different runs")
            report(label, samples)
    rng = random.Random(11)
    print(f"\nSQL statements (account admin), ms, {repeat} random runs per side")
    print(header + "\n" + columns)
    for label, statement, names in SQL:
        samples = {side.name: [] for side in sides}
        results: dict[str, Any] = {}
        for i in range(repeat + 1):
            key = rng.randrange(1, runs + 1)
            workspace = FIRST_WORKSPACE_ID + key % WORKSPACES
            values = {
                "run_id": uuid.UUID(int=key).hex,
                "experiment_id": f"{workspace}-{1 + (key // WORKSPACES) % EXPERIMENTS_PER_WORKSPACE}",
                "workspace_id": str(workspace),
            }
            params = {n: values[n] for n in names}
            for side in sides if i % 2 else reversed(sides):
                started = time.perf_counter()
                response = sql_call(side.base, side.admin, statement, params)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{side.name} {label}: {response.status_code} {response.text[:300]}")
                results[side.name] = sorted(map(str, (response.json().get("result") or {}).get("data_array") or []))
                if i:
                    samples[side.name].append(elapsed)
            # Rows tied on the ORDER BY may differ in which of them a LIMIT keeps; the rest must not.
            if "LIMIT 20" not in statement and results[before.name] != results[after.name]:
                raise RuntimeError(f"{label}: the two revisions answer different rows")
        report(label, samples)


def migrate_with(source: Path | None, url: str) -> None:
    """Migrate `url` to the head of the checkout at `source` (this one when None), in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(source or ROOT)}
    code = "import sys; from gateway.db.migrate import upgrade; upgrade(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, url], check=True, cwd=source or ROOT, env=env)


async def admin_execute(url: str, *commands: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for command in commands:
            await connection.execute(command)
    finally:
        await connection.close()


def database_url(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def side_by_side(args: argparse.Namespace, root: Path, server: str, stores: dict[str, str]) -> None:
    """Generate with REV's schema, copy and migrate the copy with this checkout, then time both gateways."""
    from benchmarks.compare import add_worktree, remove_worktree

    worktree = add_worktree(root, args.before)
    gateways: list[GatewayProcess] = []
    try:
        names = {"before": "index_before", "after": "index_after"}
        urls = {side: database_url(server, name) for side, name in names.items()}
        exists = asyncio.run(_database_exists(server, names["before"]))
        if not exists:
            asyncio.run(admin_execute(server, f'CREATE DATABASE "{names["before"]}"'))
        migrate_with(worktree, urls["before"])
        asyncio.run(generate(urls["before"], args.runs, args.points))
        asyncio.run(
            admin_execute(
                server,
                f'DROP DATABASE IF EXISTS "{names["after"]}" WITH (FORCE)',
                f'CREATE DATABASE "{names["after"]}" TEMPLATE "{names["before"]}"',
            )
        )
        started = time.perf_counter()
        migrate_with(None, urls["after"])
        print(f"\nthis checkout's migrations on the generated account: {time.perf_counter() - started:.1f} s")
        sides: list[Side] = []
        for side, source in (("before", worktree), ("after", None)):
            env = {"FEDGATE_ADMIN_TOKEN": TOKEN}
            if source is not None:
                env["PYTHONPATH"] = str(source)
            config = write_config(root / f"fedgate-{side}.toml", urls[side], stores, True)
            gateway = GatewayProcess(config, env, log_path=root / f"{side}.log", cwd=source).start(timeout=180)
            gateways.append(gateway)
            sides.append(Side(side, gateway.url, session(TOKEN), session(provision_user(gateway.url))))
        print(f"revisions: before = {args.before}, after = this checkout")
        compare_reads(sides, args.repeat, args.runs)
    finally:
        for gateway in gateways:
            gateway.stop()
        remove_worktree(worktree)


async def _database_exists(server: str, name: str) -> bool:
    connection = await asyncpg.connect(server)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


# -- 3. ingest ---------------------------------------------------------------------------------------------


def instant_upstream(port: int) -> None:
    """Answers like an MLflow store that takes no time: a new run id per created run, `{}` otherwise."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.path.endswith("/runs/create"):
            run = {"info": {"run_id": uuid.uuid4().hex, "experiment_id": "1", "status": "RUNNING"}, "data": {}}
            return web.json_response({"run": run})
        if request.path.endswith("/experiments/create"):
            return web.json_response({"experiment_id": "1"})
        if request.path.endswith("/experiments/get"):
            return web.json_response({"experiment": {"experiment_id": "1", "name": "x", "lifecycle_stage": "active"}})
        return web.json_response({})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def metric_arrays(calls: int) -> list[bytes]:
    """The `metrics` arrays of `calls` log-batch calls of BATCH points (ten metrics, one step per call, random values),
    encoded before anything is timed: encoding 1,000 points in Python costs a few ms, more than the gateway spends on
    the call, and a load generator that spends it on the same two cores measures itself."""
    return [
        msgspec.json.encode(
            [
                {"key": f"m{i % 10}", "value": random.random(), "timestamp": 1_700_000_000_000 + b, "step": b}
                for i in range(BATCH)
            ]
        )
        for b in range(calls)
    ]


async def ingest(base: str, workspace: str, clients: int, batches: int) -> float:
    """Points per second: `clients` runs logged concurrently, `batches` log-batch calls of 1,000 points each (their
    bodies encoded before the clock starts: `metric_arrays`)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": workspace}
    api = f"{base}/api/2.0/mlflow"
    calls = batches // clients
    arrays = {n: metric_arrays(calls) for n in range(-1, clients)}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{api}/experiments/create", json={"name": f"ingest-{uuid.uuid4().hex}"}) as r:
            experiment_id = (await r.json())["experiment_id"]

        async def one_client(n: int) -> None:
            async with http.post(f"{api}/runs/create", json={"experiment_id": experiment_id}) as r:
                run_id = (await r.json())["run"]["info"]["run_id"]
            head = b'{"run_id":"%s","metrics":' % run_id.encode()
            for metrics in arrays[n]:
                body = head + metrics + b"}"
                async with http.post(f"{api}/runs/log-batch", data=body, headers=JSON) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"log-batch answered {r.status}")

        await one_client(-1)  # warm: one run, connections open
        started = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return calls * clients * BATCH / elapsed


async def create_runs(base: str, workspace: str, clients: int, runs: int) -> float:
    """Runs per second: `clients` concurrent clients each creating their share of `runs` with runs/create."""
    headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": workspace}
    api = f"{base}/api/2.0/mlflow"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{api}/experiments/create", json={"name": f"runs-{uuid.uuid4().hex}"}) as r:
            experiment_id = (await r.json())["experiment_id"]

        async def one_client(count: int) -> None:
            for _ in range(count):
                async with http.post(f"{api}/runs/create", json={"experiment_id": experiment_id}) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"runs/create answered {r.status}")

        await one_client(clients)  # warm
        started = time.perf_counter()
        await asyncio.gather(*(one_client(runs // clients) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return (runs // clients) * clients / elapsed


async def index_run_capacity(url: str, connections: int, runs: int) -> float:
    """Runs per second the write-through itself absorbs: runs/create answers applied straight to PostgreSQL
    (the INSERT into ix_runs and the triggers that keep the run counts)."""
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    start = datetime.now(UTC)

    async def one(client: int) -> None:
        writer = IndexWriter()
        for i in range(runs // connections):
            run = NewRun(3003, uuid.uuid4().hex, str(1 + i % 5), f"user{client}", "r", "RUNNING", start, None, {})
            async with pool.acquire() as conn:
                await writer.apply(conn, run, 3003)

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(connections)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return (runs // connections) * connections / elapsed


async def index_capacity(url: str, connections: int, batches: int) -> tuple[float, float]:
    """Points per second the write-through itself absorbs, log-batch bodies applied straight to PostgreSQL: by the
    statement (`connections` calls at a time, a connection each) and by the point writer (as many calls at once,
    batched)."""
    writer = IndexWriter()
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    bodies = [
        json.dumps(
            {
                "metrics": [
                    {"key": f"m{i % 10}", "value": random.random(), "timestamp": 1_700_000_000_000 + b, "step": b}
                    for i in range(BATCH)
                ]
            }
        ).encode()
        for b in range(batches // connections)
    ]
    async with pool.acquire() as conn:
        run_keys = [
            await conn.fetchval(
                "INSERT INTO ix_runs (run_id, workspace_id, experiment_id) VALUES ($1, 3003, '1') RETURNING run_key",
                uuid.uuid4().hex,
            )
            for _ in range(connections * 2)
        ]

    async def by_statement(run_key: int) -> None:
        for body in bodies:
            write = msgspec.json.decode(body, type=RunWrite)  # what the gateway decodes per call
            async with pool.acquire() as conn:
                await writer.log_metrics(conn, run_key, bytes(write.metrics))

    async def the_pool() -> asyncpg.Pool:
        return pool

    points = PointWriter(the_pool)

    async def by_point_writer(run_key: int) -> None:
        for body in bodies:
            rows = read_points(run_key, bytes(msgspec.json.decode(body, type=RunWrite).metrics))
            assert rows is not None
            await points.write(rows)

    rates = []
    for way, keys in ((by_statement, run_keys[:connections]), (by_point_writer, run_keys[connections:])):
        started = time.perf_counter()
        await asyncio.gather(*(way(k) for k in keys))
        rates.append(len(bodies) * connections * BATCH / (time.perf_counter() - started))
    await pool.close()
    return rates[0], rates[1]


def write_config(path: Path, url: str, stores: dict[str, str], write_through: bool) -> Path:
    # Workspaces on one store each name their own namespace there (the instant store ignores it).
    workspaces = "\n".join(
        f'[[workspaces]]\nname = "ws-{i + 1}"\nid = "{FIRST_WORKSPACE_ID + i}"\nstore = "instant"\n'
        f'upstream_workspace = "ws-{i + 1}"\n'
        for i in range(WORKSPACES)
    )
    store_blocks = "\n".join(
        f'[stores.{name}]\nurl = "{store_url}"\n' + ("workspaces = true\n" if name == "instant" else "")
        for name, store_url in stores.items()
    )
    path.write_text(
        f"""
[account]
id = "9001"
[server]
index_sync_interval_seconds = 0
principal_requests_per_second = 0
index_write_through = {str(write_through).lower()}
access_log = false
[database]
url = "{url}"
pool_size = 20
{store_blocks}
{workspaces}
[[workspaces]]
name = "ingest"
id = "3001"
store = "instant"
upstream_workspace = "ingest"
[[workspaces]]
name = "ingest-mlflow"
id = "3002"
store = "mlflow"
"""
    )
    return path


def provision_user(base: str) -> str:
    """A user in group `analysts`, which may read workspaces ws-1..ws-3; returns the user's token."""
    admin = session(TOKEN)
    scim = f"{base}/api/2.0/preview/scim/v2"
    name = f"analyst-{uuid.uuid4().hex[:6]}@example.com"
    user = admin.post(f"{scim}/Users", json={"userName": name}).json()
    group = f"analysts-{uuid.uuid4().hex[:6]}"
    admin.post(f"{scim}/Groups", json={"displayName": group, "members": [{"value": user["id"]}]}).raise_for_status()
    for i in range(3):
        admin.patch(
            f"{base}/api/2.0/permissions/workspaces/ws-{i + 1}",
            json={"access_control_list": [{"group_name": group, "permission_level": "CAN_READ"}]},
        ).raise_for_status()
    token = admin.post(
        f"{base}/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": name, "comment": "bench"}
    )
    token.raise_for_status()
    return str(token.json()["token_value"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--points", type=int, default=20_000_000)
    parser.add_argument("--data", help="keep the generated database here and reuse it next time")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=400, help="log-batch calls per ingest measurement")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--before", help="time the reads side by side with a gateway of this revision")
    parser.add_argument("--skip-dashboards", action="store_true", help="leave out the console's dashboards")
    args = parser.parse_args()

    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="fedgate-bench-index-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    database = start_embedded(root / "postgres")
    instant_port = free_port()
    upstream = multiprocessing.Process(target=instant_upstream, args=(instant_port,), daemon=True)
    upstream.start()
    mlflow = MlflowServer(root / f"mlflow-{uuid.uuid4().hex[:6]}")
    gateway: GatewayProcess | None = None
    try:
        if args.before:
            # Reads need no store; the ingest workspace's mlflow server is not started for them.
            stores = {"instant": f"http://127.0.0.1:{instant_port}", "mlflow": f"http://127.0.0.1:{free_port()}"}
            side_by_side(args, root, database.url, stores)
            return 0
        upgrade(database.url)
        asyncio.run(generate(database.url, args.runs, args.points))
        mlflow.start(timeout=180)
        stores = {"instant": f"http://127.0.0.1:{instant_port}", "mlflow": mlflow.url}
        env = {"FEDGATE_ADMIN_TOKEN": TOKEN}
        if not args.skip_reads:
            gateway = GatewayProcess(write_config(root / "fedgate.toml", database.url, stores, True), env).start()
            user = session(provision_user(gateway.url))
            measure_reads(gateway.url, session(TOKEN), user, args.repeat, args.runs)
            if not args.skip_dashboards:
                measure_dashboards(gateway.url, session(TOKEN), user, args.repeat, args.runs)
            gateway.stop()
            gateway = None
        if not args.skip_ingest:
            print(f"\ningest: {args.clients} clients, log-batch of {BATCH} points, {args.batches} calls per figure")
            statement, batched = asyncio.run(index_capacity(database.url, args.clients, args.batches))
            print(f"  write-through alone (log-batch bodies applied to PostgreSQL): {statement:10,.0f} points/s by the "
                  f"statement, {batched:10,.0f} points/s by the point writer")  # fmt: skip
            created = asyncio.run(index_run_capacity(database.url, args.clients, args.batches * 5))
            print(f"  write-through alone (runs/create answers applied to PostgreSQL): {created:10,.0f} runs/s")
            results: dict[tuple[str, bool], list[float]] = {}
            run_rates: dict[bool, list[float]] = {}
            for write_through in (True, False, True, False):
                config = write_config(root / "fedgate.toml", database.url, stores, write_through)
                gateway = GatewayProcess(config, env).start()
                for workspace, batches in (
                    ("ingest", args.batches),
                    ("ingest-mlflow", max(args.clients, args.batches // 8)),
                ):
                    rate = asyncio.run(ingest(gateway.url, workspace, args.clients, batches))
                    results.setdefault((workspace, write_through), []).append(rate)
                rate = asyncio.run(create_runs(gateway.url, "ingest", args.clients, args.batches))
                run_rates.setdefault(write_through, []).append(rate)
                gateway.stop()
                gateway = None
            for workspace, label in (("ingest", "instant upstream"), ("ingest-mlflow", "mlflow server")):
                on = max(results[(workspace, True)])
                off = max(results[(workspace, False)])
                print(
                    f"  {label:<17} write-through on {on:10,.0f} points/s   off {off:10,.0f} points/s   "
                    f"on/off {on / off:.2f} (cost {100 * (1 - on / off):.0f}%)"
                )
            on, off = max(run_rates[True]), max(run_rates[False])
            print(
                f"  {'runs/create, instant':<17} write-through on {on:10,.0f} runs/s     off {off:10,.0f} runs/s     "
                f"on/off {on / off:.2f}"
            )
    finally:
        if gateway is not None:
            gateway.stop()
        mlflow.stop()
        upstream.terminate()
        database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
