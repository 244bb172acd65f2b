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
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.forwarding import minimal_upstream
from gateway.db.engine import start_embedded
from gateway.devstack import NO_TELEMETRY, GatewayProcess, MlflowServer, free_port

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


def latency(calls: int, database: str, durable: bool = True) -> None:
    """Dual against workspace mode in front of instant upstreams, so only the gateway's own cost is left.

    The central store is a port nobody listens on: the relay only queues, and what is timed is the
    outbox commit on the request path.
    """
    ports = [free_port(), free_port()]
    upstreams = [multiprocessing.Process(target=minimal_upstream, args=(port,), daemon=True) for port in ports]
    for upstream in upstreams:
        upstream.start()
    root = Path(tempfile.mkdtemp(prefix="fedgate-dual-latency-"))
    config = root / "fedgate.toml"
    config.write_text(
        f'[database]\nurl = "{database}"\n[server]\naccess_log = false\nreconcile_interval_seconds = 0\n'
        f"outbox_durable_commit = {str(durable).lower()}\n"
        f'[stores.primary]\nurl = "http://127.0.0.1:{ports[0]}"\n[stores.plain]\nurl = "http://127.0.0.1:{ports[1]}"\n'
        f'[stores.central]\nurl = "http://127.0.0.1:{free_port()}"\n[central]\nstore = "central"\n'
        '[[workspaces]]\nname = "lab2"\nid = "2001"\nstore = "primary"\nmode = "dual"\n'
        '[[workspaces]]\nname = "plain2"\nid = "2002"\nstore = "plain"\n'
    )  # fmt: skip
    gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN, **NO_TELEMETRY}, log_path=root / "gateway.log")
    gateway.start()
    run_id = "0123456789abcdef0123456789abcdef"
    try:
        commit = "outbox flushed before the answer" if durable else "outbox_durable_commit = false"
        print(f"\nClient latency through the gateway, one client, {calls} calls each, instant upstreams ({commit})")
        print(f"{'call':22} {'workspace p50':>14} {'dual p50':>10} {'added':>9}")
        for name, path, payload in (
            ("log-metric", "log-metric", {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 1}),
            ("log-batch 100 points", "log-batch", {"run_id": run_id, "metrics": [
                {"key": "m", "value": 1.0, "timestamp": j, "step": j} for j in range(100)]}),
        ):  # fmt: skip
            timings: dict[str, list[float]] = {"plain2": [], "lab2": []}
            https = {ws: session(ws) for ws in timings}
            for _ in range(calls):
                for ws, http in https.items():
                    started = time.perf_counter()
                    http.post(f"{gateway.url}/api/2.0/mlflow/runs/{path}", json=payload).raise_for_status()
                    timings[ws].append((time.perf_counter() - started) * 1000)
            plain, dual = statistics.median(timings["plain2"]), statistics.median(timings["lab2"])
            print(f"{name:22} {plain:11.2f} ms {dual:7.2f} ms {dual - plain:6.2f} ms")
        print("target: dual mode adds under 1 ms p50")
    finally:
        gateway.stop()
        for upstream in upstreams:
            upstream.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--skip-drain", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedgate-dual-bench-"))
    database = start_embedded(root / "pg").url
    if not args.skip_drain:
        drain_benchmark(root, database, args.points)
    latency(args.calls, database)
    latency(args.calls, database, durable=False)
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
