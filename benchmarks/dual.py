"""Dual-tracking costs: draining a 100,000-point backlog into the central store, and the client's latency.

Part 1 stops the central `mlflow server`, logs a run of 100,000 metric points through the gateway into
a dual workspace (log-batch of 1,000 points), restarts the central store and times the relay until
the outbox is empty; then writes the same points straight to the central store with log-batch, and
prints the ratio. Part 2 times log-metric and log-batch calls from one client into the dual workspace
and into a plain `workspace`-mode workspace on an identical store, and prints what dual mode adds:
in front of instant stores (the gateway's own cost, with the outbox flushed before the answer and
with asynchronous commit), then in front of real `mlflow server` stores. In every case the relay
replays into a central store that answers while the client is timed.

    python benchmarks/dual.py [--points 100000] [--calls 300] [--skip-drain] [--skip-real]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.db.engine import start_embedded
from gateway.devstack import NO_TELEMETRY, GatewayProcess, MlflowServer, free_port

TOKEN = "benchmark-admin-token-" + uuid.uuid4().hex
BATCH = 1000
INSTANT_RUN = "0123456789abcdef0123456789abcdef"
RUNS = itertools.count(1)  # each latency run links its own stores and workspaces in the shared database


def session(workspace: str | None) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {TOKEN}"
    if workspace:
        s.headers["X-MLFLOW-WORKSPACE"] = workspace
    return s


def new_run(base: str, http: requests.Session) -> str:
    api = f"{base}/api/2.0/mlflow"
    experiment = http.post(f"{api}/experiments/create", json={"name": f"bench-{uuid.uuid4().hex}"}).json()
    return str(
        http.post(f"{api}/runs/create", json={"experiment_id": experiment["experiment_id"]}).json()["run"]["info"][
            "run_id"
        ]
    )


def log_points(base: str, http: requests.Session, run_id: str, points: int) -> None:
    for start in range(0, points, BATCH):
        metrics: list[Any] = [{"key": "loss", "value": 1.0 / (i + 1), "timestamp": 1_700_000_000_000 + i, "step": i}
                   for i in range(start, min(points, start + BATCH))]  # fmt: skip
        response = http.post(f"{base}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": metrics})
        response.raise_for_status()


def pending(gateway: GatewayProcess) -> int:
    links = session(None).get(f"{gateway.url}/api/2.0/fedgate/links").json()["links"]
    return int(next(link for link in links if link["workspace"] == "lab")["pending"])


def drain(primary: MlflowServer, central: MlflowServer, gateway: GatewayProcess, points: int) -> None:
    lab = session("lab")
    run_id = new_run(gateway.url, lab)
    while pending(gateway):  # the run's creation reaches the central store first
        time.sleep(0.2)
    # The direct write goes first, to a freshly started central store, as the drain will find it.
    central.stop()
    central.start()
    direct = session("lab")
    direct_run = new_run(central.url, direct)
    started = time.perf_counter()
    log_points(central.url, direct, direct_run, points)
    written = time.perf_counter() - started
    central.stop()
    started = time.perf_counter()
    log_points(gateway.url, lab, run_id, points)
    print(f"logged {points:,} points through the gateway (central store down) in {time.perf_counter() - started:.1f}s")
    backlog = pending(gateway)
    central.start()
    started = time.perf_counter()  # the central store answers again
    while pending(gateway):
        time.sleep(0.05)
    drained = time.perf_counter() - started
    print(f"backlog of {backlog} entries drained {drained:.2f}s after the central store came back; the same "
          f"points written straight to a freshly started central store with log-batch: {written:.2f}s")  # fmt: skip
    print(f"drain ratio (drain / direct): {drained / written:.2f} (target at most 1.3)")


def instant_mlflow(port: int) -> None:
    """A store that answers at once, with the few shapes the relay reads (ids, runs, searches)."""
    run = {"run": {"info": {"run_id": "c" * 32, "experiment_id": "1", "artifact_uri": "mlflow-artifacts:/1/c"}}}
    answers = {
        "experiments/get": {"experiment": {"experiment_id": "1", "name": "bench", "tags": []}},
        "experiments/create": {"experiment_id": "1"},
        "runs/create": run,
        "runs/get": run,
        "runs/search": {"runs": []},
    }

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        found = next((body for suffix, body in answers.items() if request.path.endswith(suffix)), {})
        if request.path.endswith("get-by-name"):
            return web.json_response({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "none"}, status=404)
        return web.json_response(found)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def latency(calls: int, database: str, *, durable: bool = True, real: bool = False) -> None:
    """Dual against workspace mode, one client, calls interleaved so both see the same machine.

    Instant stores leave only the gateway's own cost; the central store answers too, so the relay
    replays every entry while the client is timed (the outbox commit on the request path and the
    relay's work beside it). `real`: three `mlflow server` processes instead, as a user would run them.
    """
    root = Path(tempfile.mkdtemp(prefix="fedgate-dual-latency-"))
    servers: list[MlflowServer] = []
    upstreams: list[multiprocessing.Process] = []
    if real:
        servers = [MlflowServer(root / name, workspaces=name == "central") for name in ("primary", "plain", "central")]
        threads = [threading.Thread(target=server.start) for server in servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        urls = [server.url for server in servers]
    else:
        ports = [free_port(), free_port(), free_port()]
        upstreams = [multiprocessing.Process(target=instant_mlflow, args=(port,), daemon=True) for port in ports]
        for upstream in upstreams:
            upstream.start()
        urls = [f"http://127.0.0.1:{port}" for port in ports]
    n = next(RUNS)
    lab, plain = f"lab{n}", f"plain{n}"
    config = root / "fedgate.toml"
    config.write_text(
        f'[database]\nurl = "{database}"\n[server]\naccess_log = false\nreconcile_interval_seconds = 0\n'
        "principal_requests_per_second = 0\n"
        f"outbox_durable_commit = {str(durable).lower()}\n"
        f'[stores.primary{n}]\nurl = "{urls[0]}"\n[stores.plain{n}]\nurl = "{urls[1]}"\n'
        f'[stores.central{n}]\nurl = "{urls[2]}"\nworkspaces = {str(real).lower()}\n[central]\nstore = "central{n}"\n'
        f'[[workspaces]]\nname = "{lab}"\nid = "{2000 + 2 * n}"\nstore = "primary{n}"\nmode = "dual"\n'
        f'[[workspaces]]\nname = "{plain}"\nid = "{2001 + 2 * n}"\nstore = "plain{n}"\n'
    )  # fmt: skip
    gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN, **NO_TELEMETRY}, log_path=root / "gateway.log")
    gateway.start()
    try:
        https = {ws: session(ws) for ws in (plain, lab)}
        runs = {ws: new_run(gateway.url, http) if real else INSTANT_RUN for ws, http in https.items()}
        stores = "mlflow server stores" if real else "instant stores"
        commit = "outbox flushed before the answer" if durable else "outbox_durable_commit = false"
        print(f"\nClient latency through the gateway, one client, {calls} calls each, {stores} ({commit})")
        print(f"{'call':22} {'workspace p50':>14} {'dual p50':>10} {'added':>9} {'replayed':>9}")
        for name, path, body in (
            ("log-metric", "log-metric", {"key": "m", "value": 1.0, "timestamp": 1, "step": 1}),
            ("log-batch 100 points", "log-batch", {"metrics": [
                {"key": "m", "value": 1.0, "timestamp": j, "step": j} for j in range(100)]}),
        ):  # fmt: skip
            timings: dict[str, list[float]] = {ws: [] for ws in https}
            before = replayed_count(gateway)
            for _ in range(calls):
                for ws, http in https.items():
                    payload: dict[str, Any] = {"run_id": runs[ws], **body}
                    started = time.perf_counter()
                    http.post(f"{gateway.url}/api/2.0/mlflow/runs/{path}", json=payload).raise_for_status()
                    timings[ws].append((time.perf_counter() - started) * 1000)
            alone, dual = statistics.median(timings[plain]), statistics.median(timings[lab])
            replayed = replayed_count(gateway) - before
            print(f"{name:22} {alone:11.2f} ms {dual:7.2f} ms {dual - alone:6.2f} ms {replayed:9,}")
        print("target: dual mode adds under 1 ms p50 ('replayed': entries the relay applied meanwhile)")
    finally:
        gateway.stop()
        for upstream in upstreams:
            upstream.terminate()
        for server in servers:
            server.stop()


def replayed_count(gateway: GatewayProcess) -> int:
    """Entries the relay has applied so far (fedgate_outbox_applied_total)."""
    lines = session(None).get(f"{gateway.url}/metrics").text.splitlines()
    return sum(int(float(line.split()[-1])) for line in lines if line.startswith("fedgate_outbox_applied_total"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-real", action="store_true", help="no latency run in front of mlflow server stores")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedgate-dual-bench-"))
    database = start_embedded(root / "pg").url
    if not args.skip_drain:
        drain_benchmark(root, database, args.points)
    latency(args.calls, database)
    latency(args.calls, database, durable=False)
    if not args.skip_real:
        latency(args.calls, database, real=True)
    return 0


def drain_benchmark(root: Path, database: str, points: int) -> None:
    servers = {name: MlflowServer(root / name, workspaces=name == "central") for name in ("primary", "central")}
    threads = [threading.Thread(target=server.start) for server in servers.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    config = root / "fedgate.toml"
    config.write_text(
        f'[database]\nurl = "{database}"\n[server]\naccess_log = false\nreconcile_interval_seconds = 0\n'
        "principal_requests_per_second = 0\n"
        f'[stores.primary]\nurl = "{servers["primary"].url}"\n'
        f'[stores.central]\nurl = "{servers["central"].url}"\nworkspaces = true\n[central]\nstore = "central"\n'
        '[[workspaces]]\nname = "lab"\nid = "1001"\nstore = "primary"\nmode = "dual"\n'
    )  # fmt: skip
    gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN, **NO_TELEMETRY}, log_path=root / "gateway.log")
    gateway.start()
    try:
        drain(servers["primary"], servers["central"], gateway, points)
    finally:
        gateway.stop()
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
