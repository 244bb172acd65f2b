"""Two revisions of the gateway side by side, in one run: forwarding capacity and index write-through ingest.

A restructuring that keeps behaviour must not cost speed. This starts two gateways on one embedded
PostgreSQL (a database each): `before` from a git worktree of REV, `after` from this checkout, both in
front of the same upstreams that answer instantly, and drives both with the same load, alternating
rounds so drift of the machine hits both alike:

1. forwarding capacity: get-run calls (2 load processes x `--concurrency` clients), calls/s, and the
   gateway's CPU time per call (its processes' user + system time over the calls answered: on a machine
   shared with other work, the steadier of the two figures);
2. index write-through ingest: log-batch calls of 1,000 points with the write-through on, points/s; with
   `--off`, a third gateway (this checkout, write-through off) in the same rounds gives each side's
   on/off ratio, the write-through's cost.

    python benchmarks/compare.py --before REV [--seconds 8] [--concurrency 16] [--rounds 2] [--workers 1]
                                 [--off] [--skip-capacity]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import forwarding, index  # noqa: E402
from gateway.db.engine import start_embedded  # noqa: E402
from gateway.devstack import GatewayProcess, free_port  # noqa: E402

TOKEN = index.TOKEN
forwarding.TOKEN = TOKEN  # the forwarding load (forked processes) and the ingest speak to the same gateways


async def create_database(url: str, name: str) -> str:
    """A new database on the server at `url`; its URL (the socket directory travels in the query)."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def cpu_seconds(process: GatewayProcess) -> float:
    """User + system CPU time of the gateway's process and its workers so far."""
    assert process.process is not None
    return tree_cpu_seconds(process.process.pid)


def own_cpu_seconds() -> float:
    """User + system CPU time of this process: the ingest's load generator (its clients run here)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_ticks() -> tuple[int, int]:
    """The machine's busy and total CPU ticks so far (/proc/stat: idle and iowait count as not busy)."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (PostgreSQL: the postmaster's backends;
    a backend that ended meanwhile is missed, so calls keep their connections: pooled)."""
    total = 0.0
    root = psutil.Process(pid)
    for each in (root, *root.children(recursive=True)):
        try:
            times = each.cpu_times()
        except psutil.Error:  # a worker that just ended
            continue
        total += times.user + times.system
    return total


def start_gateway(
    root: Path,
    name: str,
    database: str,
    stores: dict[str, int],
    source: Path | None,
    *,
    write_through: bool,
    workers: int = 1,
    pool_size: int = 10,
) -> GatewayProcess:
    """A gateway named `name` with a workspace per store given (`capacity` → minimal, `ingest` → instant).

    `source`, when given, is the checkout whose code the gateway runs (a worktree of another revision).
    """
    config = root / f"{name}.toml"
    # Capacity is measured with one token: a revision with per-principal rate limits has them off here.
    knows_limits = "principal_requests_per_second" in ((source or ROOT) / "gateway/core/config.py").read_text()
    lines = [
        f'[database]\nurl = "{database}"\npool_size = {pool_size}',
        f"[server]\naccess_log = false\nindex_write_through = {str(write_through).lower()}"
        + ("\nprincipal_requests_per_second = 0" if knows_limits else ""),
        *(f'[stores.{store}]\nurl = "http://127.0.0.1:{port}"' for store, port in stores.items()),
        *(
            f'[[workspaces]]\nname = "{workspace}"\nid = "{workspace_id}"\nstore = "{store}"'
            for workspace, workspace_id, store in (("capacity", 1002, "minimal"), ("ingest", 1003, "instant"))
            if store in stores
        ),
    ]
    config.write_text("\n".join(lines) + "\n")
    env = {"FEDGATE_ADMIN_TOKEN": TOKEN}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    # Started in the checkout it runs: `python -m` would otherwise import this checkout's code first.
    return GatewayProcess(config, env, log_path=root / f"{name}.log", cwd=source).start(timeout=180, workers=workers)


def add_worktree(root: Path, revision: str) -> Path:
    worktree = root / "before"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), revision], cwd=ROOT, check=True, capture_output=True
    )
    return worktree


def remove_worktree(worktree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="revision of the 'before' gateway")
    parser.add_argument("--seconds", type=float, default=8.0, help="per side and figure, split over the rounds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8, help="concurrent runs of the ingest")
    parser.add_argument("--batches", type=int, default=400, help="log-batch calls per ingest figure")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each gateway")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=0,
        help="database.pool_size of every gateway (default: 10 for one worker, 4 for more, so that three gateways'"
        " workers stay within the embedded PostgreSQL's 100 connections)",
    )
    parser.add_argument("--off", action="store_true", help="also ingest through this checkout, write-through off")
    parser.add_argument("--skip-capacity", action="store_true", help="measure the ingest alone")
    args = parser.parse_args()

    # Three gateways of two workers at the default pool size passed the embedded PostgreSQL's 100 connections under
    # the ingest: the index writes that found none were dropped (logged, the call answered: 4,400 to 4,500 of 5,400
    # calls in one run), and the write-through's figures were of a gateway that skipped most of its writes. At 4
    # each gateway of two workers held 28 to 31 connections.
    pool_size = args.pool_size or (10 if args.workers == 1 else 4)
    root = Path(tempfile.mkdtemp(prefix="fedgate-bench-compare-"))
    worktree = add_worktree(root, args.before)
    ports = {"minimal": free_port(), "instant": free_port()}
    upstreams = [
        multiprocessing.Process(target=forwarding.minimal_upstream, args=(ports["minimal"],), daemon=True),
        multiprocessing.Process(target=index.instant_upstream, args=(ports["instant"],), daemon=True),
    ]
    for upstream in upstreams:
        upstream.start()
    database = start_embedded(root / "pg")
    gateways: dict[str, GatewayProcess] = {}
    try:
        for name, source in (("before", worktree), ("after", None)):
            url = asyncio.run(create_database(database.url, name))
            gateways[name] = start_gateway(
                root, name, url, ports, source, write_through=True, workers=args.workers, pool_size=pool_size
            )
        if args.off:
            url = asyncio.run(create_database(database.url, "off"))
            gateways["off"] = start_gateway(
                root, "off", url, ports, None, write_through=False, workers=args.workers, pool_size=pool_size
            )
        calls: dict[str, list[forwarding.Result]] = {"before": [], "after": []}
        cpu: dict[str, float] = {"before": 0.0, "after": 0.0}
        points: dict[str, list[float]] = {name: [] for name in gateways}
        # CPU seconds over the ingests: gateway, PostgreSQL, the load generator, the upstreams; busy and all ticks.
        ingest_cpu = {name: [0.0] * 6 for name in gateways}
        for _ in range(args.rounds):
            for name, process in gateways.items():
                if name in calls and not args.skip_capacity:
                    used = cpu_seconds(process)
                    calls[name].append(
                        forwarding.measure_capacity(
                            process.url + "/api/2.0/mlflow/runs/get", args.seconds / args.rounds, args.concurrency, 2
                        )
                    )
                    cpu[name] += cpu_seconds(process) - used
                before = ingest_figures(process, database.pid, upstreams)
                points[name].append(asyncio.run(index.ingest(process.url, "ingest", args.clients, args.batches)))
                after = ingest_figures(process, database.pid, upstreams)
                ingest_cpu[name] = [total + b - a for total, a, b in zip(ingest_cpu[name], before, after, strict=True)]
        print(f"revisions: before = {args.before}, after = this checkout; {args.rounds} alternating rounds")
        if not args.skip_capacity:
            report_capacity(args, calls, cpu)
        print(f"\n2. log-batch ingest, index write-through on, {args.clients} clients, {index.BATCH} points per call")
        best = {name: max(rates) for name, rates in points.items()}
        for name, rate in best.items():
            label = "off" if name == "off" else f"{name}, on"
            print(f"  {label:10}: {rate:10,.0f} points/s (best of {len(points[name])}; "
                  f"{', '.join(f'{r:,.0f}' for r in points[name])})")  # fmt: skip
        print(f"  after/before: {best['after'] / best['before']:.2f}x")
        calls_made = (args.batches // args.clients) * (args.clients + 1) * args.rounds  # with each ingest's warm-up
        for name, (gateway_cpu, database_cpu, client_cpu, upstream_cpu, busy, ticks) in ingest_cpu.items():
            print(f"  CPU per call of {index.BATCH} points, {name:6}: gateway {gateway_cpu / calls_made * 1e3:.2f} ms, "
                  f"PostgreSQL {database_cpu / calls_made * 1e3:.2f} ms, load generator "
                  f"{client_cpu / calls_made * 1e3:.2f} ms, upstream {upstream_cpu / calls_made * 1e3:.2f} ms; "
                  f"the machine {busy / ticks:.0%} busy")  # fmt: skip
        if "off" in best:
            for name in ("before", "after"):
                print(f"  {name} on/off: {best[name] / best['off']:.2f}x")
        for name in gateways:
            if (refused := (root / f"{name}.log").read_text().count("TooManyConnectionsError")) > 0:
                print(f"  NOT VALID: {name} was refused database connections {refused} times (try a lower --pool-size)")
    finally:
        for process in gateways.values():
            process.stop()
        for upstream in upstreams:
            upstream.terminate()
            upstream.join(5)
        database.stop()
        remove_worktree(worktree)
    return 0


def ingest_figures(
    process: GatewayProcess, database_pid: int, upstreams: list[multiprocessing.Process]
) -> tuple[float, float, float, float, int, int]:
    """The CPU seconds so far of the gateway, PostgreSQL, this process (the load generator) and the upstreams,
    and the machine's busy and total ticks."""
    upstream = sum(tree_cpu_seconds(each.pid) for each in upstreams if each.pid is not None)
    return (cpu_seconds(process), tree_cpu_seconds(database_pid), own_cpu_seconds(), upstream, *machine_ticks())


def report_capacity(args: argparse.Namespace, calls: dict[str, list[forwarding.Result]], cpu: dict[str, float]) -> None:
    clients = f"2 x {args.concurrency} clients"
    print(f"\n1. get-run through the gateway ({args.workers} worker(s)), instant upstream, {clients}")
    throughput, per_call = {}, {}
    for name, results in calls.items():
        merged = forwarding.Result(
            sum(r.requests for r in results),
            sum(r.seconds for r in results),
            [x for r in results for x in r.latencies],
        )
        throughput[name] = merged.throughput
        per_call[name] = cpu[name] / merged.requests * 1e6
        print(f"  {name:6}: {merged.throughput:7.0f} calls/s, p50 {merged.percentile(0.5):.2f} ms, "
              f"p99 {merged.percentile(0.99):.2f} ms, gateway CPU {per_call[name]:.0f} us per call")  # fmt: skip
    print(f"  after/before: {throughput['after'] / throughput['before']:.2f}x calls/s, "
          f"{per_call['after'] / per_call['before']:.2f}x CPU per call")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
