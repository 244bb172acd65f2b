"""Forwarding overhead: the same MLflow workload direct to a store and through the gateway, in one run.

Part 1 drives a real `mlflow server` (sqlite, proxied artifacts) directly and through fedgate with
get_run, log_batch (100 metrics), search_runs, a 20 MB artifact upload and its download, and prints
throughput, p50 and p99 of both and their ratio. Part 2 measures the gateway's own capacity in
front of a minimal upstream that answers instantly, so only the gateway's cost is left.

With `--before REV`, two gateways (REV, from a git worktree, and this checkout) stand in front of the same
`mlflow server`, and each operation alternates direct, before and after in `--rounds` rounds, so drift of
the machine hits all three alike. It prints each side's throughput and ratio to direct, the CPU each
gateway and the store spent per call (their processes' user + system time over the calls made: on a
machine shared with other work the steadier figure), and after/before. Part 2 is left out.

    python benchmarks/forwarding.py [--seconds 8] [--concurrency 8] [--skip-mlflow]
    python benchmarks/forwarding.py --before REV [--seconds 8] [--rounds 4] [--only download]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path, where benchmarks/secrets.py hides the standard
# library's `secrets` (asyncpg imports it, with --before): the folder goes, the repository comes.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from gateway.db.engine import start_embedded  # noqa: E402
from gateway.devstack import NO_TELEMETRY, GatewayProcess, MlflowServer, free_port  # noqa: E402

os.environ.update(NO_TELEMETRY)

TOKEN = "benchmark-admin-token-" + uuid.uuid4().hex
ARTIFACT = os.urandom(20 * 1024 * 1024)


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def drive(call: Callable[[aiohttp.ClientSession], Awaitable[None]], seconds: float, concurrency: int,
                max_requests: int | None = None) -> Result:  # fmt: skip
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await call(session)  # warm the connection and the server
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline and (max_requests is None or len(latencies) < max_requests):
                started = time.perf_counter()
                await call(session)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(len(latencies), elapsed, latencies)


def workload(base: str, headers: dict[str, str], run_id: str, experiment_id: str) -> dict[str, Callable]:
    api = f"{base}/api/2.0/mlflow"
    artifact_dir = f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts"
    step = {"n": 0}

    async def ok(response: aiohttp.ClientResponse) -> None:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.url} answered {response.status}")

    async def get_run(s: aiohttp.ClientSession) -> None:
        async with s.get(f"{api}/runs/get", params={"run_id": run_id}, headers=headers) as r:
            await ok(r)

    async def log_batch(s: aiohttp.ClientSession) -> None:
        step["n"] += 1
        now = int(time.time() * 1000)
        metrics = [{"key": f"m{i}", "value": i * 0.5, "timestamp": now, "step": step["n"]} for i in range(100)]
        async with s.post(f"{api}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}, headers=headers) as r:
            await ok(r)

    async def search_runs(s: aiohttp.ClientSession) -> None:
        body = {"experiment_ids": [experiment_id], "max_results": 50, "filter": "metrics.m1 >= 0"}
        async with s.post(f"{api}/runs/search", json=body, headers=headers) as r:
            await ok(r)

    async def upload_20mb(s: aiohttp.ClientSession) -> None:
        async with s.put(f"{artifact_dir}/blob-{uuid.uuid4().hex}.bin", data=ARTIFACT, headers=headers) as r:
            await ok(r)

    async def download_20mb(s: aiohttp.ClientSession) -> None:
        async with s.get(f"{artifact_dir}/fixed.bin", headers=headers) as r:
            size = 0
            async for chunk in r.content.iter_chunked(1024 * 1024):
                size += len(chunk)
            if r.status != 200 or size != len(ARTIFACT):
                raise RuntimeError(f"download answered {r.status} with {size} bytes")

    return {
        "get_run": get_run,
        "log_batch(100)": log_batch,
        "search_runs": search_runs,
        "upload 20MB": upload_20mb,
        "download 20MB": download_20mb,
    }


async def prepare(base: str, headers: dict[str, str]) -> tuple[str, str]:
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": f"bench-{uuid.uuid4().hex}"}) as r:
            experiment_id = (await r.json())["experiment_id"]
        async with s.post(f"{base}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}) as r:
            run_id = (await r.json())["run"]["info"]["run_id"]
        url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/fixed.bin"
        async with s.put(url, data=ARTIFACT) as r:
            assert r.status == 200, await r.text()
    return experiment_id, run_id


def report_row(name: str, direct: Result, through: Result) -> str:
    ratio = through.throughput / direct.throughput
    return (
        f"{name:15} {direct.throughput:9.1f} {through.throughput:9.1f} {ratio:7.2f}x   "
        f"{direct.percentile(0.5):7.2f} {direct.percentile(0.99):8.2f}   "
        f"{through.percentile(0.5):7.2f} {through.percentile(0.99):8.2f}"
    )


async def compare_with_mlflow(store: MlflowServer, gateway: GatewayProcess, seconds: float, concurrency: int) -> None:
    direct_headers: dict[str, str] = {}
    gateway_headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": "bench"}
    direct_ids = await prepare(store.url, direct_headers)
    gateway_ids = await prepare(gateway.url, gateway_headers)
    direct_ops = workload(store.url, direct_headers, direct_ids[1], direct_ids[0])
    gateway_ops = workload(gateway.url, gateway_headers, gateway_ids[1], gateway_ids[0])
    print(f"\nReal mlflow server, {concurrency} concurrent clients, {seconds:.0f}s per side and operation")
    print(f"{'operation':15} {'direct/s':>9} {'gateway/s':>9} {'ratio':>8}   {'direct p50/p99 ms':>16}   "
          f"{'gateway p50/p99 ms':>17}")  # fmt: skip
    ratios = []
    for name in direct_ops:
        heavy = "20MB" in name
        workers = 2 if heavy else concurrency
        # Alternate the sides in two halves so drift of the machine hits both alike.
        parts: dict[str, list[Result]] = {"direct": [], "gateway": []}
        for _ in range(2):
            parts["direct"].append(await drive(direct_ops[name], seconds / 2, workers))
            parts["gateway"].append(await drive(gateway_ops[name], seconds / 2, workers))
        direct, through = (
            Result(sum(p.requests for p in r), sum(p.seconds for p in r), [x for p in r for x in p.latencies])
            for r in (parts["direct"], parts["gateway"])
        )
        ratios.append(through.throughput / direct.throughput)
        print(report_row(name, direct, through), flush=True)
    print(f"geometric mean of throughput ratios (gateway/direct): {statistics.geometric_mean(ratios):.2f}x")


def minimal_upstream(port: int) -> None:
    body = b'{"run": {"info": {"run_id": "0123456789abcdef0123456789abcdef", "experiment_id": "1"}}}'

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def load_process(url: str, seconds: float, concurrency: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": "capacity"}

    async def call(s: aiohttp.ClientSession) -> None:
        async with s.get(url, params={"run_id": "0123456789abcdef0123456789abcdef"}, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"answered {r.status}: {(await r.text())[:300]}")

    result = asyncio.run(drive(call, seconds, concurrency))
    queue.put((result.requests, result.seconds, result.latencies))


def measure_capacity(url: str, seconds: float, concurrency: int, processes: int, load: Any = load_process) -> Result:
    """`load(url, seconds, concurrency, queue)` in each of `processes` processes, results merged."""
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [multiprocessing.Process(target=load, args=(url, seconds, concurrency, queue)) for _ in range(processes)]
    for w in workers:
        w.start()
    parts = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    return Result(sum(p[0] for p in parts), max(p[1] for p in parts), [x for p in parts for x in p[2]])


def gateway_config(root: Path, name: str, database: str, store_url: str) -> Path:
    config = root / f"{name}.toml"
    config.write_text(
        f'[database]\nurl = "{database}"\n[server]\naccess_log = false\nprincipal_requests_per_second = 0\n'
        f'[stores.mlflow]\nurl = "{store_url}"\n'
        '[[workspaces]]\nname = "bench"\nid = "1001"\nstore = "mlflow"\n'
    )
    return config


async def side_by_side(
    store: MlflowServer, gateways: dict[str, GatewayProcess], seconds: float, concurrency: int, rounds: int,
    only: list[str],
) -> None:  # fmt: skip
    """Each operation direct and through each gateway, alternating in `rounds` rounds; ratios to direct."""
    from benchmarks.compare import tree_cpu_seconds

    assert store.process is not None
    gateway_headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": "bench"}
    ops: dict[str, dict[str, Callable]] = {}
    ids = await prepare(store.url, {})
    ops["direct"] = workload(store.url, {}, ids[1], ids[0])
    for name, gateway in gateways.items():
        ids = await prepare(gateway.url, gateway_headers)
        ops[name] = workload(gateway.url, gateway_headers, ids[1], ids[0])
    sides = ["direct", *gateways]
    pids = {name: gateway.process.pid for name, gateway in gateways.items() if gateway.process is not None}
    print(f"\nReal mlflow server, {concurrency} concurrent clients (2 for 20 MB), {rounds} rounds of "
          f"{seconds / rounds:.1f}s per side and operation; before = {sides[1]}, after = {sides[2]}")  # fmt: skip
    print(f"{'operation':15} {'side':7} {'calls/s':>9} {'/direct':>8} {'p50 ms':>8} {'p99 ms':>8}   "
          f"CPU per call, ms: {'gateway':>7} {'store':>7} {'client':>7} {'all':>7}")  # fmt: skip
    ratios: dict[str, list[float]] = {name: [] for name in gateways}
    for operation in ops["direct"]:
        if only and not any(word in operation for word in only):
            continue
        workers = 2 if "20MB" in operation else concurrency
        results: dict[str, list[Result]] = {side: [] for side in sides}
        # CPU seconds of the gateway, the store and this process (the client) while the side was driven.
        cpu = {side: [0.0, 0.0, 0.0] for side in sides}
        for _ in range(rounds):
            for side in sides:
                gateway_used = tree_cpu_seconds(pids[side]) if side in pids else 0.0
                store_used = tree_cpu_seconds(store.process.pid)
                client_used = time.process_time()
                results[side].append(await drive(ops[side][operation], seconds / rounds, workers))
                cpu[side][2] += time.process_time() - client_used
                if side in pids:
                    cpu[side][0] += tree_cpu_seconds(pids[side]) - gateway_used
                cpu[side][1] += tree_cpu_seconds(store.process.pid) - store_used
        merged = {
            side: Result(sum(r.requests for r in rs), sum(r.seconds for r in rs), [x for r in rs for x in r.latencies])
            for side, rs in results.items()
        }
        per_call = {}
        for side in sides:
            result = merged[side]
            # Each drive makes one warm-up call besides those it times.
            calls = result.requests + rounds
            ratio = result.throughput / merged["direct"].throughput
            if side in ratios:
                ratios[side].append(ratio)
            per_call[side] = [used / calls * 1e3 for used in cpu[side]]
            gateway_cpu, store_cpu, client_cpu = per_call[side]
            print(f"{operation if side == 'direct' else '':15} {side:7} {result.throughput:9.1f} {ratio:7.2f}x "
                  f"{result.percentile(0.5):8.2f} {result.percentile(0.99):8.2f}   {'':17} "
                  f"{gateway_cpu if side in pids else 0.0:7.2f} {store_cpu:7.2f} {client_cpu:7.2f} "
                  f"{sum(per_call[side]):7.2f}")  # fmt: skip
        before, after = sides[1], sides[2]
        # With the cores saturated (the load generator, the store and the gateway share them, and other work),
        # calls/s follow the CPU a call costs in all: direct's CPU over each side's is the ratio to expect then.
        bound = ", ".join(f"{side} {sum(per_call['direct']) / sum(per_call[side]):.2f}x" for side in gateways)
        print(
            f"{'':15} after/before {merged[after].throughput / merged[before].throughput:.2f}x; "
            f"CPU-bound ratio to direct: {bound}",
            flush=True,
        )
    for name, values in ratios.items():
        if values:
            print(f"geometric mean of throughput ratios ({name}/direct): {statistics.geometric_mean(values):.2f}x")


def compare_revisions(args: argparse.Namespace) -> int:
    """`--before REV`: two gateways (REV and this checkout) side by side in front of one `mlflow server`."""
    from benchmarks.compare import add_worktree, create_database, remove_worktree

    root = Path(tempfile.mkdtemp(prefix="fedgate-bench-side-"))
    worktree = add_worktree(root, args.before)
    database = start_embedded(root / "pg")
    store = MlflowServer(root / "store")
    gateways: dict[str, GatewayProcess] = {}
    try:
        store.start()
        for name, source in (("before", worktree), ("after", None)):
            url = asyncio.run(create_database(database.url, name))
            env = {"FEDGATE_ADMIN_TOKEN": TOKEN}
            if source is not None:
                env["PYTHONPATH"] = str(source)
            config = gateway_config(root, name, url, store.url)
            # Started in the checkout it runs: `python -m` would otherwise import this checkout's code first.
            gateways[name] = GatewayProcess(config, env, log_path=root / f"{name}.log", cwd=source).start(timeout=180)
        print(f"revisions: before = {args.before}, after = this checkout")
        only = [word for word in (args.only or "").split(",") if word]
        asyncio.run(side_by_side(store, gateways, args.seconds, args.concurrency, args.rounds, only))
    finally:
        for gateway in gateways.values():
            gateway.stop()
        store.stop()
        database.stop()
        remove_worktree(worktree)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-mlflow", action="store_true", help="only measure the gateway's own capacity")
    parser.add_argument("--before", help="revision of a second gateway side by side with this checkout's")
    parser.add_argument("--rounds", type=int, default=4, help="with --before: alternating rounds per operation")
    parser.add_argument("--only", help="with --before: the operations whose names hold one of these words (a,b)")
    args = parser.parse_args()
    if args.before:
        return compare_revisions(args)

    root = Path(tempfile.mkdtemp(prefix="fedgate-bench-"))
    database = start_embedded(root / "pg").url
    store = MlflowServer(root / "store")
    upstream_port = free_port()
    upstream = multiprocessing.Process(target=minimal_upstream, args=(upstream_port,), daemon=True)
    upstream.start()
    gateway: GatewayProcess | None = None
    try:
        if not args.skip_mlflow:
            store.start()
        config = gateway_config(root, "fedgate", database, store.url if store.port else "http://127.0.0.1:9")
        with config.open("a") as extra:
            extra.write(
                f'[stores.minimal]\nurl = "http://127.0.0.1:{upstream_port}"\n'
                '[[workspaces]]\nname = "capacity"\nid = "1002"\nstore = "minimal"\n'
            )
        gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN}, log_path=root / "gateway.log").start()
        if not args.skip_mlflow:
            asyncio.run(compare_with_mlflow(store, gateway, args.seconds, args.concurrency))

        print("\nGateway capacity in front of a minimal upstream (GET runs/get, 2 load processes x 32 connections)")
        direct = measure_capacity(f"http://127.0.0.1:{upstream_port}/api/2.0/mlflow/runs/get", args.seconds, 32, 2)
        through = measure_capacity(f"{gateway.url}/api/2.0/mlflow/runs/get", args.seconds, 32, 2)
        print(f"{'':15} {'direct/s':>9} {'gateway/s':>9} {'ratio':>8}   {'direct p50/p99 ms':>16}   "
              f"{'gateway p50/p99 ms':>17}")  # fmt: skip
        print(report_row("runs/get", direct, through))
        print(f"gateway capacity: {through.throughput:.0f} forwarded requests/s (target >= 3000)")
    finally:
        if gateway is not None:
            gateway.stop()
        store.stop()
        upstream.terminate()
        upstream.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
