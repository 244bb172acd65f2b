"""`fedgate demo`: embedded PostgreSQL, local mlflow servers and the gateway, with a training run through it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway.devstack import LOOPBACK, NO_TELEMETRY, GatewayProcess, MlflowServer, free_port

STORES = ("team-a-store", "team-b-store", "central")


def _config(root: Path, servers: dict[str, MlflowServer]) -> str:
    stores = "\n".join(f'[stores.{name}]\nurl = "{server.url}"\n' for name, server in servers.items())
    return f"""# Written by `fedgate demo`.
[account]
id = "7001"

[database]
data_dir = "{root / "gateway"}"

{stores}
[central]
store = "central"

[[workspaces]]
name = "team-a"
id = "1001"
store = "team-a-store"

[[workspaces]]
name = "team-b"
id = "1002"
store = "team-b-store"

[[workspaces]]
name = "research"
id = "1003"
mode = "central"
"""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(root: Path, port: int = 8080) -> int:
    # Explicit handlers: a shell may start us with SIGINT ignored, and SIGTERM must clean up too.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    root = root.resolve()
    token = os.environ.get("FEDGATE_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    servers = {name: MlflowServer(root / name) for name in STORES}
    gateway: GatewayProcess | None = None
    print(f"starting {len(servers)} mlflow servers (sqlite + proxied artifacts) under {root} ...", flush=True)
    try:
        threads = [threading.Thread(target=server.start) for server in servers.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, server in servers.items():
            if server.process is None or server.process.poll() is not None:
                raise RuntimeError(f"mlflow server {name} did not start; see {server.root / 'server.log'}")
            print(f"  {name:13} {server.url}", flush=True)
        config = root / "fedgate.toml"
        config.write_text(_config(root, servers))
        gateway = GatewayProcess(config, {"FEDGATE_ADMIN_TOKEN": token}, port=_port(port))
        gateway.log_path = root / "gateway.log"
        gateway.start()
        print(f"gateway listening on {gateway.url} (log: {gateway.log_path})\n", flush=True)
        env = {
            **os.environ,
            **NO_TELEMETRY,
            "MLFLOW_TRACKING_URI": gateway.url,
            "MLFLOW_TRACKING_TOKEN": token,
            "MLFLOW_WORKSPACE": "team-a",
        }
        example = Path(__file__).with_name("train.py")
        print(f"running {example} through the gateway ...", flush=True)
        finished = subprocess.run([sys.executable, str(example)], env=env, check=False)
        if finished.returncode != 0:
            print("the example failed; see the output above", file=sys.stderr)
            return 1
        print(
            "\nUse it from another shell:\n"
            f"  export MLFLOW_TRACKING_URI={gateway.url}\n"
            f"  export MLFLOW_TRACKING_TOKEN={token}\n"
            "  export MLFLOW_WORKSPACE=team-a      # or team-b, research\n"
            f"\nConfig: {config}\nPress Ctrl-C to stop everything.",
            flush=True,
        )
        while gateway.process is not None and gateway.process.poll() is None:
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        if gateway is not None:
            gateway.stop()
        for server in servers.values():
            server.stop()


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, preferred))
        except OSError:
            return free_port()
    return preferred
