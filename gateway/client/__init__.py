"""What a training run imports: Azure ML's `Run` over MLflow (run.py) and its secret reads (secrets.py).

    from gateway.client import Run                      # as `from azureml.core import Run`
    from gateway.client import get_secret, get_secrets  # a secret of the active run

Only the standard library and `mlflow`: a training image needs nothing of the gateway's server (an
import-linter contract in pyproject.toml keeps it so). `Run` is imported on first use, so reading a secret
(or the gateway reading encoding.py) does not import mlflow's client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.client.secrets import (
    SCOPE_ENV,
    NoActiveRun,
    SecretError,
    SecretNotFound,
    SecretsUnavailable,
    get_secret,
    get_secrets,
    split_name,
)

if TYPE_CHECKING:
    from gateway.client.run import Model, OfflineRun, Run
    from gateway.client.shapes import MetricShapeError

__all__ = [
    "SCOPE_ENV",
    "MetricShapeError",
    "Model",
    "NoActiveRun",
    "OfflineRun",
    "Run",
    "SecretError",
    "SecretNotFound",
    "SecretsUnavailable",
    "get_secret",
    "get_secrets",
    "split_name",
]

_LAZY = {"Run": "run", "Model": "run", "OfflineRun": "run", "MetricShapeError": "shapes"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.client' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"gateway.client.{module}"), name)
