"""The index write-through's own cost per log-batch call, in one process, without HTTP or an upstream.

`benchmarks/compare.py --off` gives the write-through's cost through a whole gateway, where the load generator,
the upstream and the gateway share the cores and the figures swing with the machine. This drives the after-write
hook (`IndexWriteThrough.record`) directly with calls as the forwarder hands them on (the canonical body, the
document the guard decoded and the points its partial-read check converted), `--clients` runs logged at once,
so that the point writer batches as it does in a gateway, and prints per call of `--points` points:

- the CPU of this process (the gateway's side: reading the points, the point writer, asyncpg), and of that the
  reading alone (`read_client_points`, timed on its own over the same calls);
- the CPU of PostgreSQL, for the whole write and for the same calls with their chunk rows left out (the upsert
  of the aggregates and the transaction alone): the difference is what the chunk rows cost it.

    python benchmarks/write_through.py [--clients 1,2,8] [--calls 1600] [--points 1000] [--metrics 10]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import msgspec
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.compare import create_database
from gateway.core.links import WorkspaceLink
from gateway.core.route_table import RUNS_LOG_BATCH
from gateway.db.engine import make_engine, make_sessionmaker, start_embedded
from gateway.db.migrate import upgrade
from gateway.federation.bookkeeping import DERIVED_SETTINGS, Bookkeeping
from gateway.federation.canonical import canonical_body
from gateway.federation.hooks import AcceptedWrite
from gateway.federation.locate import Locator, RunDirectory
from gateway.federation.mlflow_requests import partial_read
from gateway.index.points import PointRows, PointWriter, read_client_points
from gateway.index.write_through import IndexWriteThrough
from gateway.index.writer import IndexWriter, NewRun

LINK = WorkspaceLink("bench", 1001, "workspace", "bench", "bench", None)
WARM_UP = 5  # calls per run before the clock starts
TIMESTAMP = 1_700_000_000_000


def accepted(run_id: str, step: int, points: int, metrics: int) -> AcceptedWrite:
    """A log-batch call as the forwarder hands it to the after-write hooks: one step and timestamp, as the
    stock client's log_metrics sends them."""
    body = msgspec.json.encode(
        {
            "run_id": run_id,
            "metrics": [
                {"key": f"m{i % metrics}", "value": random.random(), "timestamp": TIMESTAMP + step, "step": step}
                for i in range(points)
            ],
        }
    )
    canonical = canonical_body(body)
    assert canonical is not None
    converted = partial_read(RUNS_LOG_BATCH, canonical.encoded, "", canonical.document)[1]
    return AcceptedWrite(
        RUNS_LOG_BATCH, LINK, "bench", canonical.encoded, b"", None, {}, None, "", canonical.document, converted
    )


def postgres_cpu(postmaster: psutil.Process) -> float:
    """User + system CPU seconds of the PostgreSQL backends so far (the calls keep theirs: pooled)."""
    total = 0.0
    for each in postmaster.children(recursive=True):
        try:
            times = each.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def no_store(*_: object) -> tuple[int, bytes]:
    raise ConnectionError("every run is in the run directory")


class ChunklessWriter(PointWriter):
    """The point writer with every call's chunk rows left out: the aggregates' upsert and the transaction alone."""

    async def write(self, rows: PointRows) -> None:
        await super().write(dataclasses.replace(rows, copy=b""))


async def drive(hook: IndexWriteThrough, writes: dict[str, list[AcceptedWrite]], first: int, last: int) -> None:
    """Each run's calls `first` to `last`, one after the other, the runs at once."""

    async def client(calls: list[AcceptedWrite]) -> None:
        for write in calls:
            await hook.record(write)

    await asyncio.gather(*(client(calls[first:last]) for calls in writes.values()))


async def measure(url: str, postmaster: psutil.Process, clients: int, calls: int, points: int, metrics: int) -> None:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def open_pool(name: str, settings: Mapping[str, str] | None = None, /) -> asyncpg.Pool:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=4, server_settings=dict(settings or {}))

    engine = make_engine(url, pool_size=1)
    bookkeeping = Bookkeeping(open_pool)
    directory = RunDirectory(make_sessionmaker(engine))
    pool = await open_pool("setup")
    figures: dict[str, tuple[float, float]] = {}
    try:
        for way in ("whole", "chunkless"):
            writer = IndexWriter()
            hook = IndexWriteThrough(writer, bookkeeping, Locator(no_store, directory))
            if way == "chunkless":
                hook.points = ChunklessWriter(lambda: bookkeeping.pool("derived", DERIVED_SETTINGS))
            runs = [uuid.uuid4().hex for _ in range(clients)]
            async with pool.acquire() as conn:
                for run_id in runs:
                    new = NewRun(LINK.workspace_id, run_id, "1", "bench", "", "RUNNING", None, None, {})
                    await writer.apply(conn, new, LINK.workspace_id)
                    directory.remember(run_id, LINK.name, "1")
            per_run = calls // clients
            writes = {run_id: [accepted(run_id, s, points, metrics) for s in range(per_run)] for run_id in runs}

            await drive(hook, writes, 0, WARM_UP)
            timed = (per_run - WARM_UP) * clients
            cpu, database, batches = time.process_time(), postgres_cpu(postmaster), hook.points.batches
            await drive(hook, writes, WARM_UP, per_run)
            cpu, database = time.process_time() - cpu, postgres_cpu(postmaster) - database
            figures[way] = (cpu / timed * 1e3, database / timed * 1e3)
            if way == "whole":
                batched = timed / (hook.points.batches - batches)
                converted = [w.points for ws in writes.values() for w in ws[WARM_UP:]]
                started = time.process_time()
                for each in converted:
                    assert each is not None
                    read_client_points(1, each)
                reading = (time.process_time() - started) / len(converted) * 1e3
    finally:
        await pool.close()
        await bookkeeping.close()
        await engine.dispose()
    (gateway, database), (_, chunkless) = figures["whole"], figures["chunkless"]
    print(
        f"  {clients} run(s) at once ({batched:.1f} calls per batch): this process {gateway:.3f} ms per call "
        f"(reading the points {reading:.3f} ms), PostgreSQL {database:.3f} ms "
        f"(the chunk rows {database - chunkless:.3f} ms, the aggregates and the transaction {chunkless:.3f} ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,2,8", help="runs logged at once, one figure each")
    parser.add_argument("--calls", type=int, default=1600, help="log-batch calls per figure")
    parser.add_argument("--points", type=int, default=1000, help="points per call")
    parser.add_argument("--metrics", type=int, default=10, help="metrics the points are spread over")
    args = parser.parse_args()
    database = start_embedded(Path(tempfile.mkdtemp(prefix="fedgate-bench-write-through-")) / "pg")
    try:
        url = asyncio.run(create_database(database.url, f"bench_{uuid.uuid4().hex[:8]}"))
        upgrade(url)
        postmaster = psutil.Process(database.pid)
        print(f"index write-through per log-batch call of {args.points} points over {args.metrics} metrics, in process")
        for clients in (int(each) for each in args.clients.split(",")):
            uvloop.run(measure(url, postmaster, clients, args.calls, args.points, args.metrics))  # as the gateway
    finally:
        database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
