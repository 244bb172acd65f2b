"""Dual-tracking costs: draining a 100,000-point backlog into the central store, and the client's latency.

Part 1 stops the central `mlflow server`, logs a run of 100,000 metric points through the gateway into
a dual workspace (log-batch of 1,000 points), restarts the central store and times the relay until
the outbox is empty; then writes the same points straight to the central store with log-batch, and
prints the ratio. Part 2 times log-metric and log-batch calls from one client into the dual workspace
and into a plain `workspace`-mode workspace on an identical store, and prints what dual mode adds.

    python benchmarks/dual.py [--points 100000] [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.db.engine import start_embedded
from gateway.devstack import NO_TELEMETRY, GatewayProcess, MlflowServer

TOKEN = "benchmark-admin-token-" + uuid.uuid4().hex
BATCH = 1000


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
        metrics = [{"key": "loss", "value": 1.0 / (i + 1), "timestamp": 1_700_000_000_000 + i, "step": i}
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
    central.stop()
    started = time.perf_counter()
    log_points(gateway.url, lab, run_id, points)
    print(f"logged {points:,} points through the gateway (central store down) in {time.perf_counter() - started:.1f}s")
    backlog = pending(gateway)
    central.start()
    started = time.perf_counter()  # the central store answers again
    first = None
    while left := pending(gateway):
        if first is None and left < backlog:
            first = time.perf_counter()  # the relay's retry found it back
        time.sleep(0.05)
    drained = time.perf_counter() - started
    relaying = time.perf_counter() - (first or started)
    direct = session("lab")
    direct_run = new_run(central.url, direct)
    started = time.perf_counter()
    log_points(central.url, direct, direct_run, points)
    written = time.perf_counter() - started
    print(f"backlog of {backlog} entries drained {drained:.2f}s after the central store came back "
          f"({relaying:.2f}s of relaying after the first retry found it); the same points written straight "
          f"to the central store with log-batch: {written:.2f}s")  # fmt: skip
    print(f"drain ratio, relaying / direct: {relaying / written:.2f} (target at most 1.3); "
          f"including the wait for the next retry: {drained / written:.2f}")  # fmt: skip


def latency(gateway: GatewayProcess, calls: int) -> None:
    print(f"\nClient latency, one client, {calls} calls each, alternating workspaces")
    print(f"{'call':22} {'workspace p50':>14} {'dual p50':>10} {'added':>9}")
    for name, body in (
        ("log-metric", lambda run, i: ("log-metric", {"run_id": run, "key": "m", "value": 1.0,
                                                       "timestamp": i, "step": i})),
        ("log-batch 100 points", lambda run, i: ("log-batch", {"run_id": run, "metrics": [
            {"key": "m", "value": 1.0, "timestamp": i * 100 + j, "step": i * 100 + j} for j in range(100)]})),
    ):  # fmt: skip
        timings: dict[str, list[float]] = {"plain": [], "lab": []}
        runs = {ws: new_run(gateway.url, session(ws)) for ws in timings}
        https = {ws: session(ws) for ws in timings}
        for i in range(calls):
            for ws in timings:
                path, payload = body(runs[ws], i)
                started = time.perf_counter()
                https[ws].post(f"{gateway.url}/api/2.0/mlflow/runs/{path}", json=payload).raise_for_status()
                timings[ws].append((time.perf_counter() - started) * 1000)
        plain, dual = statistics.median(timings["plain"]), statistics.median(timings["lab"])
        print(f"{name:22} {plain:11.2f} ms {dual:7.2f} ms {dual - plain:6.2f} ms")
    print("target: dual mode adds under 1 ms p50")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedgate-dual-bench-"))
    database = start_embedded(root / "pg").url
    servers = {
        name: MlflowServer(root / name, workspaces=name == "central") for name in ("primary", "plain", "central")
    }
    threads = [threading.Thread(target=server.start) for server in servers.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    config = root / "fedgate.toml"
    stores = "".join(
        f'[stores.{name}]\nurl = "{server.url}"\nworkspaces = {str(name == "central").lower()}\n'
        for name, server in servers.items()
    )
    config.write_text(
        f'[database]\nurl = "{database}"\n[server]\naccess_log = false\nreconcile_interval_seconds = 0\n'
        + stores
        + '[central]\nstore = "central"\n'
        '[[workspaces]]\nname = "lab"\nid = "1001"\nstore = "primary"\nmode = "dual"\n'
        '[[workspaces]]\nname = "plain"\nid = "1002"\nstore = "plain"\n'
    )  # fmt: skip
    gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN, **NO_TELEMETRY}, log_path=root / "gateway.log")
    gateway.start()
    try:
        drain(servers["primary"], servers["central"], gateway, args.points)
        latency(gateway, args.calls)
    finally:
        gateway.stop()
        for server in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
