"""The Run API's recursive metrics read (gateway/index/run_metrics.py) in process: memory, CPU and loop stalls.

Starts an embedded PostgreSQL, migrates a database of its own and writes one tree into the index tables: a root
run and `--children` child runs, each with `--metrics` metrics, `--points` metric values in all (chunks of 1,000
points, as the write-through adds them). Then it reads the tree as `GET /api/2.0/fedgate/runs/metrics-recursive`
does (RunMetrics.recursive, and the answer encoded as JSON as litestar encodes it) and prints:

- the peak of Python memory one read holds (tracemalloc), and of `--concurrent` reads at once;
- the CPU time of one read (time.process_time, median of `--repeat`);
- the longest the event loop went without running a 1 ms ticker during one read (its stall), and during
  `--concurrent` reads at once;
- what the concurrent reads answered (their answer or their error code and status).

    python benchmarks/run_metrics.py [--points 5000000] [--children 49] [--metrics 10] [--concurrent 4]
                                     [--table-cells 0] [--table-columns 10]

`--table-cells` gives the root a table of that many cells (a tag saying its rows; no points), the answer's
other bound (MAX_TABLE_CELLS, gateway/client/encoding.py): `--points 0 --table-cells 5000000` measures it alone.

It asserts nothing; run it on the code before and after a change of the read, on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from gateway.authz.decide import EVERYTHING, Everything
from gateway.client.encoding import METRIC_TAG
from gateway.core.errors import GatewayError
from gateway.core.links import LinkTable, WorkspaceLink
from gateway.core.principal import Principal
from gateway.db.engine import async_url, start_embedded
from gateway.db.migrate import upgrade
from gateway.index.run_metrics import RunMetrics

TEAM = WorkspaceLink("team-a", 1001, "workspace", "a", "a", None)
READER = Principal("reader@example.com", "user")
CHUNK = 1000


class Everyone:
    def readable_experiments(self, principal: Principal, workspace_id: int) -> Everything:
        return EVERYTHING


async def fill(url: str, points: int, children: int, metrics: int, table_cells: int = 0, columns: int = 10) -> str:
    """The tree: a root and its children, `points` values over every metric of every run; the root holds a table of
    `table_cells` cells over `columns` number columns (its tag says its rows; its cells have no points, each one
    is an empty cell of the answer, as a tag any writer of the run sets makes them)."""
    connection = await asyncpg.connect(url)
    root = uuid.uuid4().hex
    table = {"type": "table", "rows": table_cells // columns, "columns": {f"c{c}": "number" for c in range(columns)}}
    root_tags = {METRIC_TAG + "table": msgspec.json.encode(table).decode()} if table_cells else {}
    try:
        runs = [root] + [uuid.uuid4().hex for _ in range(children)]
        keys = []
        for run_id in runs:
            tags = msgspec.json.encode(root_tags if run_id == root else {"mlflow.parentRunId": root}).decode()
            keys.append(
                await connection.fetchval(
                    "INSERT INTO ix_runs (run_id, workspace_id, experiment_id, tags) VALUES ($1, 1001, '1', $2::jsonb) "
                    "RETURNING run_key",
                    run_id,
                    tags,
                )
            )
        per_metric = max(1, points // (len(runs) * metrics))
        chunks = []
        latest = []
        for key in keys:
            for m in range(metrics):
                name = f"metric_{m}"
                for start in range(0, per_metric, CHUNK):
                    steps = list(range(start, min(start + CHUNK, per_metric)))
                    chunks.append((key, name, steps, [s * 0.001 + m for s in steps]))
                latest.append((key, name, per_metric))
        await connection.executemany(
            "INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values) "
            "VALUES ($1, $2, $3, array_fill(now(), ARRAY[cardinality($3::bigint[])]), $4)",
            chunks,
        )
        await connection.executemany(
            "INSERT INTO ix_metric_latest (run_key, metric_name, latest_value, latest_step, latest_time, min_value, "
            "max_value, points) VALUES ($1, $2, 0, 0, now(), 0, 0, $3)",
            latest,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return root


async def stall_during(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """The longest gap between two runs of a 1 ms ticker while `work` runs, and what it answered."""
    longest = 0.0
    done = False

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    try:
        answer = await work()
    finally:
        done = True
        await ticker
    return longest, answer


async def read(service: RunMetrics, root: str) -> Any:
    try:
        return msgspec.json.encode(await service.recursive(READER, root, None))
    except GatewayError as error:
        return f"{error.status} {error.error_code}"


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fedgate-bench-run-metrics-"))
    database = start_embedded(workdir / "postgres")
    server = database.url
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    try:
        await asyncio.to_thread(upgrade, url, "head")
        root = await fill(url, args.points, args.children, args.metrics, args.table_cells, args.table_columns)
        engine = create_async_engine(async_url(url), pool_size=args.concurrent + 1, max_overflow=0)
        links = LinkTable()
        links.replace([TEAM])
        service = RunMetrics(links, Everyone(), async_sessionmaker(engine, expire_on_commit=False))  # type: ignore[arg-type]
        first = await read(service, root)
        size = f"{len(first):,} bytes of JSON" if isinstance(first, bytes) else first
        print(
            f"tree: 1 + {args.children} runs, {args.metrics} metrics each, {args.points:,} values, a table of "
            f"{args.table_cells:,} cells in {args.table_columns} columns; answer: {size}"
        )

        cpu = []
        stalls = []
        for _ in range(args.repeat):
            started = time.process_time()
            stall, _ = await stall_during(lambda: read(service, root))
            cpu.append(time.process_time() - started)
            stalls.append(stall)
        cpu_ms, stall_ms = statistics.median(cpu) * 1000, statistics.median(stalls) * 1000
        print(f"one read: CPU {cpu_ms:.0f} ms, loop stall {stall_ms:.0f} ms")

        tracemalloc.start()
        await read(service, root)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        print(f"one read: peak Python memory {peak / 2**20:.0f} MiB")
        together = await asyncio.gather(*(read(service, root) for _ in range(args.concurrent)))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        answers = sorted(f"{len(a):,} bytes" if isinstance(a, bytes) else str(a) for a in together)
        print(f"{args.concurrent} reads at once: peak Python memory {peak / 2**20:.0f} MiB; answers: {answers}")

        started = time.process_time()
        stall, _ = await stall_during(lambda: asyncio.gather(*(read(service, root) for _ in range(args.concurrent))))
        print(
            f"{args.concurrent} reads at once: CPU {(time.process_time() - started) * 1000:.0f} ms, "
            f"loop stall {stall * 1000:.0f} ms"
        )
        await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        database.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=5_000_000)
    parser.add_argument("--children", type=int, default=49)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--table-cells", type=int, default=0)
    parser.add_argument("--table-columns", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
