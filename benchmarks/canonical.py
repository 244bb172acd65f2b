"""What deciding on the decoded body costs: log-batch of 1,000 metrics before and after canonical bodies.

Part 1 times, in this process, the body handling of one log-batch of 1,000 metrics: before (the typed
decode of the id fields plus the raw-byte spelling scan that was the guard's body check) and after
(`canonical_body`: decode, alias and nested-id walk, re-encoding). Part 2 runs two gateways side by
side in front of an upstream that answers instantly, one from the commit before canonical bodies (a
git worktree) and one from this checkout, and drives both with the same log-batch calls, alternating
halves so drift of the machine hits both alike; the index write-through is off in both, so the ratio
is forwarding cost alone.

    python benchmarks/canonical.py [--seconds 8] [--concurrency 16] [--before REV]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare import TOKEN, add_worktree, create_database, remove_worktree, start_gateway  # noqa: E402
from benchmarks.forwarding import Result, drive, measure_capacity, minimal_upstream  # noqa: E402
from gateway.db.engine import start_embedded  # noqa: E402
from gateway.devstack import GatewayProcess, free_port  # noqa: E402
from gateway.federation.canonical import canonical_body  # noqa: E402
from gateway.federation.schemas import RequestIds  # noqa: E402

RUN_ID = "0123456789abcdef0123456789abcdef"
BODY = json.dumps(
    {
        "run_id": RUN_ID,
        "metrics": [
            {"key": f"metric_{i % 10}", "value": i / 3, "timestamp": 1_700_000_000_000 + i, "step": i}
            for i in range(1000)
        ],
    }
).encode()

# The body check this replaces (the raw-byte scan of id keys), kept here as the "before" of part 1.
_OLD_FIELDS = [
    *("experiment_id", "experiment_ids", "run_id", "run_uuid", "run_ids", "model_id", "source_run_id", "source"),
    *("name", "trace_id", "trace_ids", "request_id", "dataset_id", "trace_location", "mlflow_experiment"),
    *("locations", "new_name", "stage"),
]
_OLD_CAMEL = [n.split("_")[0] + "".join(p.title() for p in n.split("_")[1:]) for n in _OLD_FIELDS if "_" in n]
_OLD_SCAN = re.compile(rb'"(' + b"|".join(n.encode() for n in _OLD_FIELDS + _OLD_CAMEL) + rb')"\s*:')


def before(body: bytes) -> None:
    found = _OLD_SCAN.findall(body)
    assert len(found) == len(set(found))
    msgspec.json.decode(body, type=RequestIds)


def after(body: bytes) -> None:
    canonical_body(body)


def per_call(function: Any, repeat: int = 300) -> float:
    function(BODY)
    started = time.perf_counter()
    for _ in range(repeat):
        function(BODY)
    return (time.perf_counter() - started) / repeat * 1e6


def load_process(url: str, seconds: float, concurrency: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": "capacity", "Content-Type": "application/json"}

    async def call(s: aiohttp.ClientSession) -> None:
        async with s.post(url, data=BODY, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"answered {r.status}: {await r.text()}")

    result = asyncio.run(drive(call, seconds, concurrency))
    queue.put((result.requests, result.seconds, result.latencies))


def before_revision() -> str:
    added = subprocess.run(
        ["git", "log", "--format=%H", "--diff-filter=A", "--", "gateway/federation/canonical.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{added[-1]}^"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--before", default=None, help="revision of the 'before' gateway (default: before canonical)")
    args = parser.parse_args()

    old, new = per_call(before), per_call(after)
    print(f"Part 1: body handling of one log-batch of 1,000 metrics ({len(BODY):,} bytes), in process")
    print(f"  before (typed id decode + raw-byte scan): {old:8.0f} us")
    print(f"  after  (canonical_body)                 : {new:8.0f} us   ratio {new / old:.2f}x")

    root = Path(tempfile.mkdtemp(prefix="fedgate-bench-canonical-"))
    revision = args.before or before_revision()
    worktree = add_worktree(root, revision)
    upstream_port = free_port()
    upstream = multiprocessing.Process(target=minimal_upstream, args=(upstream_port,), daemon=True)
    upstream.start()
    gateways: list[GatewayProcess] = []
    try:
        url = start_embedded(root / "pg").url
        old_db, new_db = (asyncio.run(create_database(url, name)) for name in ("before", "after"))
        stores = {"minimal": upstream_port}
        gateways = [
            start_gateway(root, "before", old_db, stores, worktree, write_through=False),
            start_gateway(root, "after", new_db, stores, None, write_through=False),
        ]
        path = "/api/2.0/mlflow/runs/log-batch"
        parts: dict[str, list[Result]] = {"before": [], "after": []}
        for _ in range(2):
            for name, process in zip(("before", "after"), gateways, strict=True):
                parts[name].append(
                    measure_capacity(process.url + path, args.seconds / 2, args.concurrency, 2, load_process)
                )
        results = {
            name: Result(sum(p.requests for p in r), sum(p.seconds for p in r) / 2, [x for p in r for x in p.latencies])
            for name, r in parts.items()
        }
        print(f"\nPart 2: log-batch of 1,000 metrics, instant upstream, 2 x {args.concurrency} clients")
        for name, result in results.items():
            print(f"  {name:6} ({revision if name == 'before' else 'HEAD'}): {result.throughput:7.0f} calls/s, "
                  f"p50 {result.percentile(0.5):.1f} ms, p99 {result.percentile(0.99):.1f} ms")  # fmt: skip
        ratio = results["after"].throughput / results["before"].throughput
        print(f"  throughput after/before: {ratio:.2f}x (target >= 0.90)")
    finally:
        for process in gateways:
            process.stop()
        upstream.terminate()
        upstream.join(5)
        remove_worktree(worktree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
