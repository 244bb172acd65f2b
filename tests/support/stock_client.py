"""The stock mlflow client's environment for a block: where pytest's monkeypatch (one test long) cannot serve, in
module-scoped fixtures, or switched per call inside a test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# Restored after every block, set inside it or not: the stock client reads them (and mlflow.set_workspace
# writes the last one).
CLIENT_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_WORKSPACE")


@contextlib.contextmanager
def stock_client_env(**values: str) -> Iterator[None]:
    """`values` (MLFLOW_TRACKING_URI=..., MLFLOW_TRACKING_TOKEN=...) set in the environment for the block.

    After it, CLIENT_VARIABLES and the variables given are as they were before (unset if they were not set),
    whatever the block changed, and the workspace set with `mlflow.set_workspace` inside it is cleared: the
    client's workspace is again the one MLFLOW_WORKSPACE held before.
    """
    import mlflow

    saved = {key: os.environ.get(key) for key in (*CLIENT_VARIABLES, *values)}
    os.environ.update(values)
    try:
        yield
    finally:
        mlflow.set_workspace(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
