"""Id fields spelled twice or in camelCase are refused before any check; everything else passes."""

from __future__ import annotations

import json

import pytest

from gateway.errors import InvalidParameter
from gateway.federation.guard import check_body_spelling


@pytest.mark.parametrize(
    "body",
    [
        b'{"run_id": "a", "run_id": "b"}',
        b'{"run_id": "a", "runId": "b"}',
        b'{"runId": "a"}',
        b'{"run_id": "a", "metrics": [{"key": "k", "model_id": "m-1", "model_id": "m-2"}]}',
        b'{"run_id": "a", "metrics": [{"key": "k", "modelId": "m-2"}]}',
        b'{"experiment_ids": ["1"],\n "experiment_ids" : ["2"]}',
    ],
)
def test_repeated_or_camel_case_ids_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidParameter):
        check_body_spelling(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"run_id": "a", "key": "runId", "value": "\\"run_id\\": 1"}',  # the names inside string values
        b'{"run_id": "a", "tags": [{"key": "run_id", "value": "x"}, {"key": "name", "value": "y"}]}',
        b'{"name": "model", "description": "mentions \\"name\\": and \\"runId\\": in text"}',
    ],
)
def test_names_inside_values_are_not_keys(body: bytes) -> None:
    check_body_spelling(body)


def test_a_large_log_batch_passes() -> None:
    metrics = [
        {"key": f"m{i % 10}", "value": i / 3, "timestamp": 1_700_000_000_000 + i, "step": i} for i in range(1000)
    ]
    check_body_spelling(json.dumps({"run_id": "0" * 32, "metrics": metrics}).encode())
