"""The stores local stacks start keep an idle kept-alive connection longer than a test leaves one unused.

uvicorn closes an idle connection after 5 s by default; the stock client's pool reuses one whenever it likes, and
with MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 (the stock-client sweep) a request sent as the server closes it was reset.
The command line is read as `mlflow server` reads it and the uvicorn command it builds as uvicorn reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.cli import server as mlflow_server
from mlflow.server import _build_uvicorn_command
from uvicorn.main import main as uvicorn_main

from gateway.devstack import LOOPBACK, STORE_KEEP_ALIVE_SECONDS, MlflowServer

AN_HOUR = 3600


@pytest.mark.parametrize(
    "store",
    [
        MlflowServer(Path("store")),
        MlflowServer(Path("central"), workspaces=True),
        MlflowServer(Path("auth"), basic_auth=("admin", "password1234")),
        MlflowServer(Path("proxy"), artifacts_only=True),
        MlflowServer(Path("unserving"), serve_artifacts=False),
    ],
    ids=["store", "workspaces", "basic-auth", "artifacts-only", "unserving"],
)
def test_a_store_keeps_idle_connections_longer_than_a_test_session_leaves_one_unused(store: MlflowServer) -> None:
    store.port = 5005
    args = store.command()
    assert args[1:4] == ["-m", "mlflow", "server"]
    with mlflow_server.make_context("server", args[4:]) as options:
        uvicorn_opts = options.params["uvicorn_opts"]
    command = _build_uvicorn_command(uvicorn_opts, LOOPBACK, 5005, 1, "mlflow.server.fastapi_app:app")
    assert command[1:3] == ["-m", "uvicorn"]
    with uvicorn_main.make_context("uvicorn", command[3:]) as read:
        assert read.params["timeout_keep_alive"] == STORE_KEEP_ALIVE_SECONDS >= AN_HOUR
