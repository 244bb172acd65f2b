"""The gateway's error bodies are what an MLflow 3.17 server writes for the same code and message, byte for byte.

The stock client keeps `error_class` and `sqlstate` on the exception it raises and fills in others of its own
when they are missing; and a refusal of a hidden object must read exactly as the store's answer for a missing one
(a body without them, or spaced otherwise, told the two apart)."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from gateway.core.errors import GatewayError, ResourceNotFound, error_bytes, mlflow_error


@pytest.mark.parametrize("code", sorted(ErrorCode.keys()))
def test_every_error_code_is_written_as_mlflow_writes_it(code: str) -> None:
    message = 'Run with id=0a1b not found "quoted" é'
    expected = MlflowException(message, error_code=ErrorCode.Value(code)).serialize_as_json().encode()
    assert error_bytes(mlflow_error(code, message)) == expected


def test_a_gateway_error_and_a_not_found_are_written_as_mlflow_writes_them() -> None:
    missing = MlflowException("Experiment 'x' does not exist.", error_code=ErrorCode.Value("RESOURCE_DOES_NOT_EXIST"))
    hidden = ResourceNotFound("Experiment 'x' does not exist.")
    assert error_bytes(hidden.document()) == missing.serialize_as_json().encode()
    refused = GatewayError("No.", error_code="PERMISSION_DENIED", status=403)
    assert (
        error_bytes(refused.document())
        == MlflowException("No.", ErrorCode.Value("PERMISSION_DENIED")).serialize_as_json().encode()
    )
