"""Replicas over one PostgreSQL: throughput with 1, 2 and 3 gateways, and what each request costs in CPU.

Starts one embedded PostgreSQL, upstreams that answer instantly (the gateway's own cost is what is
measured), and 1, then 2, then 3 gateway processes on the same database. Two load processes spread their
clients over the replicas round-robin. Two workloads:

1. get-run (a read: authentication, authorization, forwarding; no database work per call);
2. log-batch of 100 points with the index write-through on (a write: forwarding plus the index's rows).

For each, calls/s, and CPU time per call of the gateway processes and of the PostgreSQL server (every
backend), read from /proc around the measured window; and the database transactions per call. These are
the figures docs/scaling.md's capacity plan is made of. On the 2-core development machine the load
generator, the gateways, the upstreams and PostgreSQL all share the two cores, so the replica count can
only show how the work divides, not add capacity: the CPU per call is the figure that carries over.

    python benchmarks/scale.py [--seconds 6] [--concurrency 16] [--replicas 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import forwarding, index
from gateway.db.engine import start_embedded
from gateway.devstack import GatewayProcess, free_port

TOKEN = index.TOKEN
RUN_ID = "0123456789abcdef0123456789abcdef"
POINTS = 100


def config(root: Path, database: str, ports: dict[str, int], name: str) -> Path:
    path = root / f"{name}.toml"
    path.write_text(
        f"""
[account]
id = "9001"
[server]
access_log = false
index_write_through = true
index_sync_interval_seconds = 0
principal_requests_per_second = 0
[database]
url = "{database}"
[stores.minimal]
url = "http://127.0.0.1:{ports["minimal"]}"
[stores.instant]
url = "http://127.0.0.1:{ports["instant"]}"
[[workspaces]]
name = "capacity"
id = "1002"
store = "minimal"
[[workspaces]]
name = "ingest"
id = "1003"
store = "instant"
"""
    )
    return path


def get_run_load(urls: list[str], seconds: float, concurrency: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": "capacity"}
    turn = iter(range(10**12))

    async def call(s: aiohttp.ClientSession) -> None:
        url = urls[next(turn) % len(urls)] + "/api/2.0/mlflow/runs/get"
        async with s.get(url, params={"run_id": RUN_ID}, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"answered {r.status}: {(await r.text())[:300]}")

    result = asyncio.run(forwarding.drive(call, seconds, concurrency))
    queue.put((result.requests, result.seconds, result.latencies))


def log_batch_load(urls: list[str], seconds: float, concurrency: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": "ingest"}
    turn = iter(range(10**12))
    runs: list[str] = []

    async def call(s: aiohttp.ClientSession) -> None:
        base = urls[next(turn) % len(urls)] + "/api/2.0/mlflow"
        if len(runs) < concurrency:
            async with s.post(f"{base}/runs/create", json={"experiment_id": "1"}, headers=headers) as r:
                runs.append((await r.json())["run"]["info"]["run_id"])
        step = next(turn)
        metrics = [
            {"key": f"m{i % 10}", "value": random.random(), "timestamp": 1_700_000_000_000 + step, "step": step}
            for i in range(POINTS)
        ]
        body = {"run_id": random.choice(runs), "metrics": metrics}
        async with s.post(f"{base}/runs/log-batch", json=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"log-batch answered {r.status}: {(await r.text())[:300]}")

    result = asyncio.run(forwarding.drive(call, seconds, concurrency))
    queue.put((result.requests, result.seconds, result.latencies))


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU time (user + system) of each process and its descendants, by pid."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return found


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings (a process that started in between counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


async def transactions(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(
            await connection.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await connection.close()


@dataclass
class Figures:
    calls_per_second: float
    p50_ms: float
    gateway_cpu_ms: float  # per call
    database_cpu_ms: float  # per call
    transactions: float  # per call


def measure(
    load: Any, urls: list[str], seconds: float, concurrency: int, gateways: list[int], database: int, url: str
) -> Figures:
    cpu_before = cpu_seconds(gateways), cpu_seconds([database])
    xacts = asyncio.run(transactions(url))
    result = forwarding.measure_capacity(urls, seconds, concurrency, 2, load)  # type: ignore[arg-type]
    cpu_after = cpu_seconds(gateways), cpu_seconds([database])
    xacts = asyncio.run(transactions(url)) - xacts
    calls = max(1, result.requests)
    return Figures(
        result.throughput,
        result.percentile(0.5),
        1000 * used(cpu_before[0], cpu_after[0]) / calls,
        1000 * used(cpu_before[1], cpu_after[1]) / calls,
        xacts / calls,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="per workload and replica count")
    parser.add_argument("--concurrency", type=int, default=16, help="clients per load process (two processes)")
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()

    forwarding.TOKEN = index.TOKEN = TOKEN
    root = Path(tempfile.mkdtemp(prefix="fedgate-bench-scale-"))
    root.chmod(0o755)
    ports = {"minimal": free_port(), "instant": free_port()}
    upstreams = [
        multiprocessing.Process(target=forwarding.minimal_upstream, args=(ports["minimal"],), daemon=True),
        multiprocessing.Process(target=index.instant_upstream, args=(ports["instant"],), daemon=True),
    ]
    for upstream in upstreams:
        upstream.start()
    database = start_embedded(root / "pg")
    assert database.pid is not None
    gateways: list[GatewayProcess] = []
    rows: list[tuple[int, Figures, Figures]] = []
    try:
        for count in range(1, args.replicas + 1):
            while len(gateways) < count:
                name = f"replica-{len(gateways) + 1}"
                gateway = GatewayProcess(config(root, database.url, ports, name), {"FEDGATE_ADMIN_TOKEN": TOKEN})
                gateways.append(gateway.start(timeout=180))
            urls = [g.url for g in gateways]
            pids = [g.process.pid for g in gateways if g.process is not None]
            reads = measure(get_run_load, urls, args.seconds, args.concurrency, pids, database.pid, database.url)
            writes = measure(log_batch_load, urls, args.seconds, args.concurrency, pids, database.pid, database.url)
            rows.append((count, reads, writes))
        print(f"replicas over one PostgreSQL, instant upstreams, 2 load processes x {args.concurrency} clients, "
              f"{args.seconds:g} s per figure")  # fmt: skip
        print(f"(machine: {psutil.cpu_count()} cores shared by load, gateways, upstreams and PostgreSQL)\n")
        print(f"{'':9} {'get-run':>44}   {f'log-batch of {POINTS} points, index write-through':>54}")
        print(
            f"{'replicas':>9} {'calls/s':>9} {'p50 ms':>7} {'gw CPU ms':>10} {'db CPU ms':>10} {'xact':>5}   "
            f"{'calls/s':>9} {'points/s':>10} {'p50 ms':>7} {'gw CPU ms':>10} {'db CPU ms':>10} {'xact':>5}"
        )
        for count, r, w in rows:
            print(
                f"{count:>9} {r.calls_per_second:9.0f} {r.p50_ms:7.1f} {r.gateway_cpu_ms:10.3f} "
                f"{r.database_cpu_ms:10.3f} {r.transactions:5.1f}   {w.calls_per_second:9.0f} "
                f"{w.calls_per_second * POINTS:10.0f} {w.p50_ms:7.1f} {w.gateway_cpu_ms:10.3f} "
                f"{w.database_cpu_ms:10.3f} {w.transactions:5.1f}"
            )
        print("\n(CPU ms are per call, summed over every gateway process or every PostgreSQL process)")
    finally:
        for gateway in gateways:
            gateway.stop()
        for upstream in upstreams:
            upstream.terminate()
            upstream.join(5)
        database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
