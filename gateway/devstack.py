"""Local processes for the demo, the tests and the benchmarks: mlflow servers and gateway processes.

Every process is started on a free loopback port and stopped by its pid, children included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Local stacks never phone home: MLflow's usage telemetry is off for every process started here.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# How long an `mlflow server` keeps a kept-alive connection nobody uses (uvicorn's --timeout-keep-alive, 5 s by
# default). A client's pool (requests, so the stock client) keeps an idle connection for as long as it likes and
# reuses it without knowing the server's limit: if the server closes it as a request leaves, the request is reset
# (ConnectionResetError), and a client told not to retry (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0) fails on the
# server's timing alone. A day is longer than any session of the tests or the demo leaves a connection unused;
# the gateway's own store client (adapters/keepalive.py) still drops its idle connections after 15 s.
STORE_KEEP_ALIVE_SECONDS = 24 * 3600


_handed_out: set[int] = set()
_handing_out = threading.Lock()


def free_port() -> int:
    """A loopback port free now that this process has not handed out before.

    The system may give a port again once nothing is bound to it, and the servers started here bind their port
    only later; so a port handed out stays this process's: a server stopped and started again on its port, or a
    port meant to stay unused (the address of a store that is down), never becomes another server's."""
    with _handing_out:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last = exc
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s: {last}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group started for `process`, then SIGKILL whatever the group still holds.

    mlflow's job consumers can outlive their server, so the sweep runs even when the leader is gone.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


def _spawn(
    args: list[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    return subprocess.Popen(  # new session: the whole group can be stopped by pid
        args,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**(env or os.environ), **NO_TELEMETRY},
        cwd=cwd,
        start_new_session=True,
    )


CLIENT_ONLY_ENV = frozenset({"MLFLOW_WORKSPACE", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"})


@dataclass
class MlflowServer:
    """A real `mlflow server` with a sqlite backend and proxied artifacts (`--serve-artifacts`)."""

    root: Path
    port: int = 0
    workspaces: bool = False
    # (username, password) of the admin of MLflow's `basic-auth` app; None runs without it.
    basic_auth: tuple[str, str] | None = None
    # MLflow's job execution (a job runner and a dozen huey consumers, ~1 GB per server); off unless a
    # caller needs the store's jobs.
    jobs: bool = False
    # More of the server's environment (MLflow's own settings, e.g. which webhook destinations it accepts).
    env: dict[str, str] = field(default_factory=dict)
    # False starts it with `--no-serve-artifacts` and an `mlflow-artifacts:/` default artifact root: its runs' files
    # are at `mlflow-artifacts:` locations, which its artifact routes refuse to serve (503).
    serve_artifacts: bool = True
    # True starts it with `--artifacts-only` and no backend store: an artifact proxy whose tracking routes refuse
    # with 503.
    artifacts_only: bool = False
    # False starts it serving artifacts with an empty `--artifacts-destination`: its artifact router's uploads and
    # downloads answer 503 "Artifact serving is not configured.".
    artifacts_destination: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        """The `mlflow server` command line of this store, on its port."""
        args = [
            sys.executable, "-m", "mlflow", "server",
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--workers", "1",
            "--uvicorn-opts", f"--timeout-keep-alive {STORE_KEEP_ALIVE_SECONDS}",
        ]  # fmt: skip
        if not self.artifacts_only:  # MLflow refuses a backend store for an artifact proxy
            args += ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
        if self.serve_artifacts:
            destination = str(self.root / "artifacts") if self.artifacts_destination else ""
            args += ["--artifacts-destination", destination, "--serve-artifacts"]
        else:
            args += ["--default-artifact-root", "mlflow-artifacts:/", "--no-serve-artifacts"]
        if self.artifacts_only:
            args.append("--artifacts-only")
        if self.workspaces:
            args += ["--enable-workspaces", "--workspace-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
        if self.basic_auth is not None:
            args += ["--app-name", "basic-auth"]
        return args

    def start(self, timeout: float = 90.0) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = self.command()
        # Client settings of the calling process (a test's workspace, say) are not the server's.
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_ONLY_ENV}
        env["MLFLOW_SERVER_ALLOWED_HOSTS"] = f"{LOOPBACK}:{self.port},localhost:{self.port}"
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if self.jobs else "false"
        env.update(self.env)
        if self.basic_auth is not None:
            env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.basic_auth
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = os.urandom(16).hex()
        # The server's cwd is its own folder: the basic-auth app keeps its sqlite file there.
        self.process = _spawn(args, self.root / "server.log", env, cwd=self.root)
        wait_http(f"{self.url}/health", timeout, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def restart(self, timeout: float = 90.0) -> None:
        self.stop()
        self.start(timeout)


@dataclass
class GatewayProcess:
    """`fedgate serve` in its own process, configured by a TOML file."""

    config_path: Path
    env: dict[str, str]
    port: int = 0
    log_path: Path | None = None
    # The working directory: `python -m` puts it first on sys.path, before PYTHONPATH, so a gateway meant to
    # run another checkout's code (benchmarks/compare.py) must be started there.
    cwd: Path | None = None
    # The address it listens on; `url` is the IPv4 loopback one (`::` with several workers takes IPv4 too).
    host: str = LOOPBACK
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 60.0, workers: int | None = None) -> GatewayProcess:
        self.port = self.port or free_port()
        args = [
            sys.executable, "-m", "gateway.cli", "serve",
            "--config", str(self.config_path),
            "--host", self.host,
            "--port", str(self.port),
        ]  # fmt: skip
        if workers:
            args += ["--workers", str(workers)]
        log_path = self.log_path or self.config_path.with_suffix(f".{self.port}.log")
        self.log_path = log_path
        self.process = _spawn(args, log_path, {**os.environ, **self.env}, cwd=self.cwd)
        wait_http(f"{self.url}/health/live", timeout, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
