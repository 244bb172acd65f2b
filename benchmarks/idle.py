"""What an idle gateway costs: its CPU per second and the database transactions it makes, with no call coming in.

Every replica runs background loops (the outbox relay, webhook deliveries, policy and link checks, the scheduler,
the index sync); a deployment pays them on every worker of every replica, all day. This starts gateways on one
embedded PostgreSQL (a database each, so each one's transactions are counted apart: `pg_stat_database`) in front
of an instant upstream, waits for their start-up to settle, then samples them in alternating rounds:

    python benchmarks/idle.py [--before REV] [--seconds 60] [--rounds 3] [--workers 1]

It prints, per side, the gateway's CPU in milliseconds per second, the transactions per second it made, and with
`--before` the ratio of this checkout to REV.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import index  # noqa: E402
from benchmarks.compare import (  # noqa: E402
    add_worktree,
    cpu_seconds,
    create_database,
    remove_worktree,
    start_gateway,
)
from gateway.db.engine import start_embedded  # noqa: E402
from gateway.devstack import GatewayProcess, free_port  # noqa: E402

SETTLE_SECONDS = 20.0  # start-up's one-off work (migrations, the first sync and policy loads) done before sampling


async def transactions(url: str, name: str) -> int:
    """Transactions committed and rolled back in database `name` so far (asked on `url`, another database)."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(
            await connection.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                name,
            )
        )
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="revision to compare with (a git worktree of it runs beside this checkout)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per side, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each gateway")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="fedgate-bench-idle-"))
    worktree = add_worktree(root, args.before) if args.before else None
    ports = {"instant": free_port()}
    upstream = multiprocessing.Process(target=index.instant_upstream, args=(ports["instant"],), daemon=True)
    upstream.start()
    database = start_embedded(root / "pg")
    gateways: dict[str, GatewayProcess] = {}
    try:
        sides = [("before", worktree), ("after", None)] if worktree is not None else [("after", None)]
        for name, source in sides:
            url = asyncio.run(create_database(database.url, name))
            gateways[name] = start_gateway(root, name, url, ports, source, write_through=True, workers=args.workers)
        time.sleep(SETTLE_SECONDS)
        cpu = dict.fromkeys(gateways, 0.0)
        made = dict.fromkeys(gateways, 0)
        per_round = args.seconds / args.rounds
        for _ in range(args.rounds):
            for name, gateway in gateways.items():
                used, before = cpu_seconds(gateway), asyncio.run(transactions(database.url, name))
                time.sleep(per_round)
                cpu[name] += cpu_seconds(gateway) - used
                made[name] += asyncio.run(transactions(database.url, name)) - before
        print(f"idle gateways, {args.workers} worker(s) each, {args.rounds} alternating rounds of {per_round:.0f} s")
        for name in gateways:
            print(f"  {name:6}: {cpu[name] / args.seconds * 1e3:6.1f} ms of CPU per second, "
                  f"{made[name] / args.seconds:6.1f} transactions per second")  # fmt: skip
        if "before" in gateways:
            print(f"  after/before: CPU {cpu['after'] / cpu['before']:.2f}x, "
                  f"transactions {made['after'] / max(made['before'], 1):.2f}x")  # fmt: skip
    finally:
        for gateway in gateways.values():
            gateway.stop()
        upstream.terminate()
        upstream.join(5)
        database.stop()
        if worktree is not None:
            remove_worktree(worktree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
