"""Refusal latency: how long each kind of 4xx takes to answer, one client, sequential requests.

Starts PostgreSQL, a minimal upstream that answers instantly, and a gateway in front of it; creates a
user with CAN_USE on the workspace (it enters it and reads nothing), then times each refusal path
(401 without a token, 401 with an unknown token, 403, the 404 that hides an object, 400 for a
malformed and for a 5,000-deep body) and prints p50/p95/max in milliseconds. A second gateway with a
budget of one anonymous denial times the 429 that answers once the budget is spent. The target in
docs is every refusal under 50 ms; this prints the numbers, it asserts nothing.

    python benchmarks/denials.py [--requests 300]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.forwarding import minimal_upstream
from gateway.db.engine import start_embedded
from gateway.devstack import GatewayProcess, free_port

TOKEN = "benchmark-admin-token-" + uuid.uuid4().hex
SCIM = "/api/2.0/preview/scim/v2"
DEEP = b"[" * 5000 + b"]" * 5000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_user(base: str) -> str:
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {TOKEN}"
    name = f"bench-{uuid.uuid4().hex[:6]}@example.com"
    assert admin.post(f"{base}{SCIM}/Users", json={"userName": name}).status_code == 201
    issued = admin.post(f"{base}/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": name})
    assert issued.status_code == 200, issued.text
    granted = admin.patch(
        f"{base}/api/2.0/permissions/workspaces/capacity",
        json={"access_control_list": [{"user_name": name, "permission_level": "CAN_USE"}]},
    )
    assert granted.status_code == 200, granted.text
    return str(issued.json()["token_value"])


def time_path(
    session: requests.Session, method: str, url: str, headers: dict[str, str], body: bytes | None, status: int, n: int
) -> list[float]:
    timings = []
    for index in range(n + 20):
        started = time.perf_counter()
        response = session.request(method, url, headers=headers, data=body, timeout=30)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != status:
            raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:200]}")
        if index >= 20:  # warm-up
            timings.append(elapsed)
    return timings


def report(name: str, timings: list[float]) -> None:
    print(f"{name:28} {pct(timings, 0.5):8.2f} {pct(timings, 0.95):8.2f} {max(timings):8.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedgate-denials-bench-"))
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
    # The anonymous paths are timed as refusals, not as 429s: a budget no benchmark spends.
    roomy = {
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_PER_SECOND": "1000000",
        "FEDGATE_SERVER_ANONYMOUS_DENIALS_BURST": "1000000",
    }
    gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": TOKEN, **roomy}, log_path=root / "gateway.log").start()
    tight = GatewayProcess(
        config,
        {
            "FEDGATE_ADMIN_TOKEN": TOKEN,
            "FEDGATE_SERVER_ANONYMOUS_DENIALS_PER_SECOND": "0.001",
            "FEDGATE_SERVER_ANONYMOUS_DENIALS_BURST": "1",
        },
        log_path=root / "tight.log",
    )
    try:
        tight.start()
        base = gateway.url
        user = make_user(base)
        ws = {"X-MLFLOW-WORKSPACE": "capacity"}
        as_user = {**ws, "Authorization": f"Bearer {user}"}
        as_admin = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        paths = [
            ("401 no token", "GET", search, ws, None, 401),
            ("401 unknown token", "GET", search, {**ws, "Authorization": "Bearer fgt_" + "x" * 43}, None, 401),
            ("403 audit log (user)", "GET", f"{base}/api/2.0/fedgate/audit-log", as_user, None, 403),
            ("404 hidden experiment acl", "GET", f"{base}/api/2.0/permissions/experiments/1", as_user, None, 404),
            (
                "404 hidden experiment get",
                "GET",
                f"{base}/api/2.0/mlflow/experiments/get?experiment_id=1",
                as_user,
                None,
                404,
            ),
            ("400 malformed scim body", "POST", f"{base}{SCIM}/Users", as_admin, b"{not json", 400),
            ("400 5,000-deep scim body", "POST", f"{base}{SCIM}/Users", as_admin, DEEP, 400),
        ]
        print(f"{args.requests} sequential requests per path, one client, keep-alive; milliseconds")
        print(f"{'path':28} {'p50':>8} {'p95':>8} {'max':>8}")
        session = requests.Session()
        for name, method, url, headers, body, status in paths:
            report(name, time_path(session, method, url, headers, body, status, args.requests))
        tight_search = f"{tight.url}/api/2.0/mlflow/experiments/search?max_results=1"
        session.get(tight_search, headers=ws)  # spends the budget of one
        report("429 budget spent", time_path(session, "GET", tight_search, ws, None, 429, args.requests))
        log = (root / "gateway.log").read_text() + (root / "tight.log").read_text()
        print(f"tracebacks in the gateway logs: {log.count('Traceback')}")
    finally:
        tight.stop()
        gateway.stop()
        upstream.terminate()
        upstream.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
