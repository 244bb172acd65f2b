"""Access-control cost: decision latency at 1k/10k/100k grants, and authn+authz per request end to end.

Part 1 builds policies of 1,000, 10,000 and 100,000 grants (2,000 users in 200 nested groups over 50
workspaces) and times single decisions of the compiled index the gateway uses, next to pycasbin's
enforce() over the same rows (the specification the index is held to), and prints p50/p99.

Part 2 starts PostgreSQL and a gateway in front of a minimal upstream that answers instantly, loads
100,000 grants into the database, and drives GET runs/get three ways: straight to the upstream, through
the gateway with the bootstrap admin token (authentication is one constant-time compare and
authorization short-circuits: access control as good as off), and as an ordinary user whose personal
access token and grants are checked on every request. The difference is what access control costs.

    python benchmarks/authz.py [--seconds 6] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.forwarding import Result, drive, minimal_upstream
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from gateway.db.engine import start_embedded
from gateway.devstack import GatewayProcess, free_port
from tests.support.casbin_bridge import build_enforcer, casbin_allows

TOKEN = "benchmark-admin-token-" + uuid.uuid4().hex
RUN_ID = "0123456789abcdef0123456789abcdef"  # the minimal upstream says it lives in experiment 1
USERS, GROUPS, WORKSPACES = 2_000, 200, 50
LEVELS = ("CAN_READ", "CAN_EDIT", "CAN_MANAGE")


def random_policy(grants: int, rng: random.Random) -> PolicySnapshot:
    principals = {i: PrincipalInfo(i, "user", f"u{i}") for i in range(1, USERS + 1)}
    principals |= {i: PrincipalInfo(i, "group", f"g{i}") for i in range(USERS + 1, USERS + GROUPS + 1)}
    groups = list(range(USERS + 1, USERS + GROUPS + 1))
    memberships = [(user, rng.choice(groups)) for user in range(1, USERS + 1) for _ in range(2)]
    memberships += [(g, rng.choice([h for h in groups if h > g])) for g in groups[:-1] if rng.random() < 0.5]
    rows = []
    for _ in range(grants):
        workspace = f"w{1001 + rng.randrange(WORKSPACES)}"
        holder = rng.randrange(1, USERS + GROUPS + 1)
        rows.append(Grant(holder, workspace, f"experiment:{workspace}/{rng.randrange(5_000)}", rng.choice(LEVELS)))
    return PolicySnapshot(1, principals, memberships, rows)


def decision_latency() -> None:
    rng = random.Random(7)
    print("Decision latency (one check: the caller's groups x the object and its workspace)")
    print(f"{'grants':>8}  {'index p50 us':>12} {'index p99 us':>12}   {'casbin p50 us':>13} {'casbin p99 us':>13}")
    for size in (1_000, 10_000, 100_000):
        policy = random_policy(size, rng)
        asks = [
            (rng.randrange(1, USERS + 1), f"w{1001 + rng.randrange(WORKSPACES)}", rng.randrange(5_000))
            for _ in range(20_000)
        ]
        index: list[float] = []
        for user, domain, experiment in asks:
            started = time.perf_counter_ns()
            policy.allows(policy.subjects(user), domain, f"experiment:{domain}/{experiment}", "CAN_READ")
            index.append((time.perf_counter_ns() - started) / 1000)
        casbin_cells = "       (skipped: seconds per check)"
        if size <= 10_000:
            enforcer = build_enforcer(policy)
            timings = []
            for user, domain, experiment in asks[:200]:
                started = time.perf_counter_ns()
                casbin_allows(enforcer, user, domain, f"experiment:{domain}/{experiment}", "CAN_READ")
                timings.append((time.perf_counter_ns() - started) / 1000)
            casbin_cells = f"{pct(timings, 0.5):13.0f} {pct(timings, 0.99):13.0f}"
        print(f"{size:>8}  {pct(index, 0.5):12.1f} {pct(index, 0.99):12.1f}   {casbin_cells}", flush=True)
    print("target: index p99 under 100 us at 100,000 grants")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load_grants(database: str, count: int) -> None:
    """100,000 grants for 2,000 principals, written as an admin's tools would, then one version bump."""
    connection = await asyncpg.connect(database)
    try:
        ids = await connection.fetch(
            "INSERT INTO principals (kind, name, display_name) "
            "SELECT 'user', 'bench-' || g, 'bench' FROM generate_series(1, $1) g RETURNING id",
            USERS,
        )
        principal_ids = [row["id"] for row in ids]
        rng = random.Random(11)
        rows = {
            (
                rng.choice(principal_ids),
                f"w{1001 + rng.randrange(WORKSPACES)}",
                rng.randrange(1_000_000),
                rng.choice(LEVELS),
            )
            for _ in range(count)
        }
        await connection.copy_records_to_table(
            "grants",
            records=[(pid, dom, f"experiment:{dom}/{exp}", level, "benchmark") for pid, dom, exp, level in rows],
            columns=["principal_id", "domain", "object", "privilege", "created_by"],
        )
        await connection.execute("UPDATE policy_version SET version = version + 1")
        await connection.execute("NOTIFY fedgate_policy")
    finally:
        await connection.close()


async def user_token(base: str) -> str:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=admin) as s:
        async with s.post(f"{base}/api/2.0/preview/scim/v2/Users", json={"userName": "bench@example.com"}) as r:
            assert r.status == 201, await r.text()
        async with s.post(
            f"{base}/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": "bench@example.com"}
        ) as r:
            token: str = (await r.json())["token_value"]
        # The user may edit experiment 1 of the workspace (where the upstream says the run lives).
        async with s.post(
            f"{base}/api/2.0/preview/scim/v2/Groups", json={"displayName": "bench-team", "members": []}
        ) as r:
            group = (await r.json())["id"]
        async with s.get(
            f"{base}/api/2.0/preview/scim/v2/Users", params={"filter": 'userName eq "bench@example.com"'}
        ) as r:
            user = (await r.json())["Resources"][0]["id"]
        async with s.patch(
            f"{base}/api/2.0/preview/scim/v2/Groups/{group}",
            json={"Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]},
        ) as r:
            assert r.status == 200, await r.text()
        async with s.patch(
            f"{base}/api/2.0/permissions/workspaces/capacity",
            json={"access_control_list": [{"group_name": "bench-team", "permission_level": "CAN_USE"}]},
        ) as r:
            assert r.status == 200, await r.text()
        async with s.patch(
            f"{base}/api/2.0/permissions/experiments/1",
            headers={"X-MLFLOW-WORKSPACE": "capacity"},
            json={"access_control_list": [{"group_name": "bench-team", "permission_level": "CAN_EDIT"}]},
        ) as r:
            assert r.status == 200, await r.text()
    return token


async def end_to_end(gateway: GatewayProcess, upstream: str, seconds: float, concurrency: int, token: str) -> None:
    def caller(base: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
        async def call(s: aiohttp.ClientSession) -> None:
            async with s.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": RUN_ID}, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"answered {r.status}: {await r.text()}")

        return call

    sides = {
        "upstream direct": caller(upstream, {}),
        "gateway, admin": caller(gateway.url, {"Authorization": f"Bearer {TOKEN}", "X-MLFLOW-WORKSPACE": "capacity"}),
        "gateway, user": caller(gateway.url, {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "capacity"}),
    }

    async def measure(clients: int) -> dict[str, Result]:
        results: dict[str, list[Result]] = {name: [] for name in sides}
        for _ in range(2):  # alternate, so drift of the machine hits every side alike
            for name, call in sides.items():
                results[name].append(await drive(call, seconds / 2, clients))
        return {
            name: Result(sum(p.requests for p in r), sum(p.seconds for p in r), [x for p in r for x in p.latencies])
            for name, r in results.items()
        }

    for clients in (1, concurrency):
        merged = await measure(clients)
        print(f"\nEnd to end, GET runs/get, {clients} client(s), 100,000 grants loaded")
        print(f"{'':18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for name, result in merged.items():
            print(f"{name:18} {result.throughput:8.0f} {result.percentile(0.5):8.2f} {result.percentile(0.99):8.2f}")
        admin, user = merged["gateway, admin"], merged["gateway, user"]
        print(f"user/admin: throughput {user.throughput / admin.throughput:.2f}x, "
              f"p50 {user.percentile(0.5) / admin.percentile(0.5):.2f}x; "
              f"CPU per request added: {1000 / user.throughput - 1000 / admin.throughput:.3f} ms")  # fmt: skip
        if clients == 1:
            added = user.percentile(0.5) - admin.percentile(0.5)
            print(f"authn+authz adds {added:.3f} ms p50 per request, one client (target under 1 ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    decision_latency()
    if args.skip_e2e:
        return 0
    root = Path(tempfile.mkdtemp(prefix="fedgate-authz-bench-"))
    database = start_embedded(root / "pg").url
    upstream_port = free_port()
    upstream = multiprocessing.Process(target=minimal_upstream, args=(upstream_port,), daemon=True)
    upstream.start()
    config = root / "fedgate.toml"
    config.write_text(
        f'[database]\nurl = "{database}"\n[server]\naccess_log = false\nprincipal_requests_per_second = 0\n'
        f'[stores.minimal]\nurl = "http://127.0.0.1:{upstream_port}"\n'
        '[[workspaces]]\nname = "capacity"\nid = "1002"\nstore = "minimal"\n'
    )
    gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN}, log_path=root / "gateway.log").start()
    try:
        asyncio.run(load_grants(database.replace("postgresql+asyncpg://", "postgresql://"), 100_000))
        token = asyncio.run(user_token(gateway.url))
        asyncio.run(end_to_end(gateway, f"http://127.0.0.1:{upstream_port}", args.seconds, args.concurrency, token))
    finally:
        gateway.stop()
        upstream.terminate()
        upstream.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
