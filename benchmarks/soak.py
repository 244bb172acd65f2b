"""Memory soak: the gateway's resident memory under a steady mix of traffic for a long while.

Starts PostgreSQL, two real `mlflow server` processes (workspaces `soak-a` and `soak-b`) and a gateway with
two workers in front of them (gateway/devstack.py), provisions a user in a group that may edit `soak-a`
and read `soak-b`, and drives a moderate, steady mix through the gateway:

- forwarding: get-run as the user and as the bootstrap admin, runs/search in a workspace;
- log-batch of 100 metrics (written through to the account index);
- account search: experiments and runs in the `account` scope, as the user;
- SQL: a statement over `system.mlflow.runs_latest` (POST /api/2.0/sql/statements), as an admin;
- authentication: the user's token as Bearer and as basic-auth password, and a wrong token (401);
- access changes now and then: an experiment created (the owner's grant), a grant and its revocation,
  a token created and revoked.

After a warm-up it samples the resident set size (RSS) of each gateway worker every `--sample-seconds`,
prints every sample, then the start, end and maximum of the workers' total and end/start, and exits
non-zero when the total drifted by more than 10% (or a call answered something it should not have).

    python benchmarks/soak.py [--minutes 30] [--warmup-seconds 120] [--rate 25]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.db.engine import start_embedded
from gateway.devstack import NO_TELEMETRY, GatewayProcess, MlflowServer

os.environ.update(NO_TELEMETRY)

TOKEN = "soak-admin-token-" + uuid.uuid4().hex
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
USER_NAME = "soak@example.com"
MAX_DRIFT = 0.10

Call = Callable[[aiohttp.ClientSession], Awaitable[None]]


class Unexpected(Exception):
    pass


async def expect(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    body = await response.read()
    if response.status != status:
        raise Unexpected(f"{response.method} {response.url.path} answered {response.status}: {body[:200]!r}")
    return await response.json() if body and response.content_type == "application/json" else None


class Soak:
    def __init__(self, base: str) -> None:
        self.base = base
        self.api = f"{base}/api/2.0/mlflow"
        self.user: dict[str, str] = {}
        self.user_token = ""
        self.user_id = ""
        self.runs: dict[str, tuple[str, str]] = {}  # workspace -> (experiment id, run id)
        self.account_experiments: list[str] = []
        self.step = itertools.count(1)
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.first_failures: list[str] = []

    # -- set-up ---------------------------------------------------------------------------------------

    async def provision(self) -> None:
        async with aiohttp.ClientSession(headers=ADMIN) as s:
            async with s.post(f"{self.base}/api/2.0/preview/scim/v2/Users", json={"userName": USER_NAME}) as r:
                self.user_id = (await expect(r, 201))["id"]
            async with s.post(
                f"{self.base}/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": USER_NAME}
            ) as r:
                self.user_token = (await expect(r))["token_value"]
            async with s.post(
                f"{self.base}/api/2.0/preview/scim/v2/Groups",
                json={"displayName": "soak-team", "members": [{"value": self.user_id}]},
            ) as r:
                await expect(r, 201)
            for workspace, level in (("soak-a", "CAN_EDIT"), ("soak-b", "CAN_READ")):
                async with s.patch(
                    f"{self.base}/api/2.0/permissions/workspaces/{workspace}",
                    json={"access_control_list": [{"group_name": "soak-team", "permission_level": level}]},
                ) as r:
                    await expect(r)
            # The admin makes the run of soak-b (the user may only read there); the user makes its own in soak-a.
            for workspace, headers in (
                ("soak-a", {"Authorization": f"Bearer {self.user_token}"}),
                ("soak-b", ADMIN),
            ):
                headers = {**headers, "X-MLFLOW-WORKSPACE": workspace}
                async with s.post(
                    f"{self.api}/experiments/create", json={"name": f"soak-{uuid.uuid4().hex}"}, headers=headers
                ) as r:
                    experiment_id = (await expect(r))["experiment_id"]
                async with s.post(
                    f"{self.api}/runs/create", json={"experiment_id": experiment_id}, headers=headers
                ) as r:
                    run_id = (await expect(r))["run"]["info"]["run_id"]
                self.runs[workspace] = (experiment_id, run_id)
        self.user = {"Authorization": f"Bearer {self.user_token}"}
        async with aiohttp.ClientSession() as s:
            await self.log_batch(s)  # a metric for the searches to filter on
            async with s.post(
                f"{self.api}/experiments/search",
                json={"max_results": 100},
                headers={**self.user, "X-MLFLOW-WORKSPACE": "account"},
            ) as r:
                self.account_experiments = [e["experiment_id"] for e in (await expect(r))["experiments"]]

    # -- the mix --------------------------------------------------------------------------------------

    async def get_run_user(self, s: aiohttp.ClientSession) -> None:
        headers = {**self.user, "X-MLFLOW-WORKSPACE": "soak-a"}
        async with s.get(f"{self.api}/runs/get", params={"run_id": self.runs["soak-a"][1]}, headers=headers) as r:
            await expect(r)

    async def get_run_admin(self, s: aiohttp.ClientSession) -> None:
        headers = {**ADMIN, "X-MLFLOW-WORKSPACE": "soak-b"}
        async with s.get(f"{self.api}/runs/get", params={"run_id": self.runs["soak-b"][1]}, headers=headers) as r:
            await expect(r)

    async def log_batch(self, s: aiohttp.ClientSession) -> None:
        step, now = next(self.step), int(time.time() * 1000)
        metrics = [{"key": f"m{i}", "value": i * 0.5 + step, "timestamp": now, "step": step} for i in range(100)]
        body = {"run_id": self.runs["soak-a"][1], "metrics": metrics}
        async with s.post(
            f"{self.api}/runs/log-batch", json=body, headers={**self.user, "X-MLFLOW-WORKSPACE": "soak-a"}
        ) as r:
            await expect(r)

    async def search_runs(self, s: aiohttp.ClientSession) -> None:
        body = {"experiment_ids": [self.runs["soak-a"][0]], "max_results": 20, "filter": "metrics.m1 >= 0"}
        async with s.post(
            f"{self.api}/runs/search", json=body, headers={**self.user, "X-MLFLOW-WORKSPACE": "soak-a"}
        ) as r:
            await expect(r)

    async def account_search(self, s: aiohttp.ClientSession) -> None:
        headers = {**self.user, "X-MLFLOW-WORKSPACE": "account"}
        async with s.post(f"{self.api}/experiments/search", json={"max_results": 50}, headers=headers) as r:
            await expect(r)
        body = {"experiment_ids": self.account_experiments, "max_results": 20, "order_by": ["metrics.m1 DESC"]}
        async with s.post(f"{self.api}/runs/search", json=body, headers=headers) as r:
            await expect(r)

    async def sql(self, s: aiohttp.ClientSession) -> None:
        body = {
            "statement": "SELECT run_id, status, start_time FROM system.mlflow.runs_latest "
            "WHERE run_id = :run_id LIMIT 10",
            "parameters": [{"name": "run_id", "value": self.runs["soak-a"][1], "type": "STRING"}],
            "wait_timeout": "30s",
        }
        async with s.post(f"{self.base}/api/2.0/sql/statements", json=body, headers=ADMIN) as r:
            answer = await expect(r)
        if answer["status"]["state"] != "SUCCEEDED":
            raise Unexpected(f"SQL statement {answer['status']}")

    async def auth(self, s: aiohttp.ClientSession) -> None:
        basic = "Basic " + base64.b64encode(f"{USER_NAME}:{self.user_token}".encode()).decode()
        url, params = f"{self.api}/runs/get", {"run_id": self.runs["soak-a"][1]}
        async with s.get(url, params=params, headers={"Authorization": basic, "X-MLFLOW-WORKSPACE": "soak-a"}) as r:
            await expect(r)
        wrong = {"Authorization": f"Bearer fgt_{uuid.uuid4().hex}", "X-MLFLOW-WORKSPACE": "soak-a"}
        async with s.get(url, params=params, headers=wrong) as r:
            await expect(r, 401)

    async def access_changes(self, s: aiohttp.ClientSession) -> None:
        """An owner grant, a grant and its revocation, a token made and revoked: each moves the policy."""
        user_a = {**self.user, "X-MLFLOW-WORKSPACE": "soak-a"}
        async with s.post(
            f"{self.api}/experiments/create", json={"name": f"soak-{uuid.uuid4().hex}"}, headers=user_a
        ) as r:
            experiment_id = (await expect(r))["experiment_id"]
        permissions = f"{self.base}/api/2.0/permissions/experiments/{experiment_id}"
        admin_a = {**ADMIN, "X-MLFLOW-WORKSPACE": "soak-a"}
        grant = {"access_control_list": [{"group_name": "soak-team", "permission_level": "CAN_MANAGE"}]}
        async with s.patch(permissions, json=grant, headers=admin_a) as r:
            await expect(r)
        only_owner = {"access_control_list": [{"user_name": USER_NAME, "permission_level": "CAN_MANAGE"}]}
        async with s.put(permissions, json=only_owner, headers=admin_a) as r:
            await expect(r)
        async with s.post(f"{self.base}/api/2.0/token/create", json={"comment": "soak"}, headers=self.user) as r:
            token_id = (await expect(r))["token_info"]["token_id"]
        async with s.post(f"{self.base}/api/2.0/token/delete", json={"token_id": token_id}, headers=self.user) as r:
            await expect(r)

    def mix(self) -> list[tuple[str, Call]]:
        weighted = [
            ("get_run (user)", self.get_run_user, 6),
            ("get_run (admin)", self.get_run_admin, 3),
            ("log_batch(100)", self.log_batch, 3),
            ("search_runs", self.search_runs, 2),
            ("account search", self.account_search, 2),
            ("sql", self.sql, 2),
            ("auth", self.auth, 3),
        ]
        return [(name, call) for name, call, weight in weighted for _ in range(weight)]

    async def drive(self, stop_at: float, rate: float, workers: int) -> None:
        mix = self.mix()
        cycle = itertools.cycle(mix)
        interval = workers / rate
        changes_every = 30.0
        next_change = [time.monotonic() + changes_every]

        async def worker(s: aiohttp.ClientSession) -> None:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                if started >= next_change[0]:
                    next_change[0] = started + changes_every
                    name, call = "access changes", self.access_changes
                else:
                    name, call = next(cycle)
                try:
                    await call(s)
                except (Unexpected, aiohttp.ClientError, TimeoutError) as exc:
                    self.failures[name] += 1
                    if len(self.first_failures) < 10:
                        self.first_failures.append(f"{name}: {type(exc).__name__}: {exc}")
                self.calls[name] += 1
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            await asyncio.gather(*(worker(s) for _ in range(workers)))


def worker_processes(gateway: GatewayProcess) -> list[psutil.Process]:
    assert gateway.process is not None
    main = psutil.Process(gateway.process.pid)
    children = [p for p in main.children(recursive=True) if "python" in p.name().lower()]
    # uvicorn's supervisor forks a resource tracker besides the workers: the workers serve the app.
    serving = [p for p in children if "multiprocessing.resource_tracker" not in " ".join(p.cmdline())]
    return serving or [main]


async def sample(gateway: GatewayProcess, start_at: float, stop_at: float, every: float) -> list[list[int]]:
    samples: list[list[int]] = []
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    began = time.monotonic()
    while True:
        rss = [p.memory_info().rss for p in worker_processes(gateway)]
        samples.append(rss)
        minutes = (time.monotonic() - began) / 60
        cells = " ".join(f"{r / 2**20:7.1f}" for r in rss)
        print(f"  {minutes:5.1f} min  workers MB: {cells}   total {sum(rss) / 2**20:7.1f} MB", flush=True)
        if time.monotonic() + every > stop_at + 1:
            return samples
        await asyncio.sleep(every)


async def soak(gateway: GatewayProcess, args: argparse.Namespace) -> int:
    load = Soak(gateway.url)
    await load.provision()
    begin = time.monotonic()
    warm_until = begin + args.warmup_seconds
    stop_at = warm_until + args.minutes * 60
    print(f"warm-up {args.warmup_seconds:.0f} s, then {args.minutes:g} min at about {args.rate:g} calls/s; "
          f"RSS every {args.sample_seconds:.0f} s", flush=True)  # fmt: skip
    driving = asyncio.create_task(load.drive(stop_at, args.rate, args.workers))
    samples = await sample(gateway, warm_until, stop_at, args.sample_seconds)
    await driving
    elapsed = time.monotonic() - begin

    totals = [sum(s) for s in samples]
    start, end, peak = totals[0], totals[-1], max(totals)
    drift = end / start - 1
    print(
        f"\ncalls: {sum(load.calls.values()):,} in {elapsed / 60:.1f} min ({sum(load.calls.values()) / elapsed:.1f}/s)"
    )
    for name, count in sorted(load.calls.items()):
        print(f"  {name:18} {count:8,}  failed {load.failures[name]:,}")
    for line in load.first_failures:
        print(f"  ! {line}")
    print(f"gateway workers' RSS over {len(samples)} samples: start {start / 2**20:.1f} MB, end {end / 2**20:.1f} MB, "
          f"max {peak / 2**20:.1f} MB; end/start {end / start:.3f}, max/start {peak / start:.3f} "
          f"(limit: within {MAX_DRIFT:.0%})")  # fmt: skip
    failed = sum(load.failures.values())
    if abs(drift) > MAX_DRIFT:
        print(f"FAIL: RSS drifted by {drift:+.1%}")
        return 1
    if failed:
        print(f"FAIL: {failed} calls answered something unexpected")
        return 1
    print("ok: RSS flat")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="measured time after the warm-up")
    parser.add_argument("--warmup-seconds", type=float, default=120.0)
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=25.0, help="calls per second, all clients together")
    parser.add_argument("--workers", type=int, default=4, help="concurrent clients")
    parser.add_argument("--gateway-workers", type=int, default=2)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="fedgate-soak-"))
    database = start_embedded(root / "pg")
    stores = {name: MlflowServer(root / name) for name in ("store-a", "store-b")}
    gateway: GatewayProcess | None = None
    try:
        for store in stores.values():
            store.start(timeout=180)
        config = root / "fedgate.toml"
        config.write_text(
            f'[account]\nid = "8001"\n'
            f'[database]\nurl = "{database.url}"\n'
            "[server]\naccess_log = false\nprincipal_requests_per_second = 0\nindex_sync_interval_seconds = 0\n"
            + "".join(f'[stores.{name}]\nurl = "{store.url}"\n' for name, store in stores.items())
            + '[[workspaces]]\nname = "soak-a"\nid = "1001"\nstore = "store-a"\n'
            '[[workspaces]]\nname = "soak-b"\nid = "1002"\nstore = "store-b"\n'
        )
        gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN}, log_path=root / "gateway.log")
        gateway.start(workers=args.gateway_workers)
        return asyncio.run(soak(gateway, args))
    finally:
        if gateway is not None:
            gateway.stop()
        for store in stores.values():
            store.stop()
        with contextlib.suppress(Exception):
            database.stop()


if __name__ == "__main__":
    sys.exit(main())
