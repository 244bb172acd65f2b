"""The leak guard's scan (gateway/secrets/scan.py): a secret's value is found in any string of a run write that
holds it, whatever surrounds it, and nothing else is; messages name the kind of field, never its content.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import assume, example, given
from hypothesis import strategies as st

from gateway.core.route_table import (
    FORWARDED_ROUTES,
    RUNS_LOG_BATCH,
    RUNS_LOG_INPUTS,
    RUNS_LOG_METRIC,
    RUNS_LOG_MODEL,
    RUNS_LOG_PARAMETER,
    RUNS_SET_TAG,
    RUNS_UPDATE,
    Action,
    Resource,
)
from gateway.secrets.scan import MIN_CHECKED_CHARACTERS, Text, leaked_into, spellings, written_texts

RUN_ID = "a" * 32

# A secret worth checking: at least MIN_CHECKED_CHARACTERS once white space around it is removed.
secret_values = st.text(min_size=MIN_CHECKED_CHARACTERS, max_size=40).filter(
    lambda text: len(text.encode().strip().decode(errors="replace")) >= MIN_CHECKED_CHARACTERS
)
surroundings = st.text(max_size=40)


def found(secret: str, *texts: str) -> str | None:
    return leaked_into(
        [Text(f"field {i}", text.encode("utf-8", "surrogatepass")) for i, text in enumerate(texts)],
        spellings(secret.encode("utf-8", "surrogatepass")),
    )


@given(secret=secret_values, prefix=surroundings, suffix=surroundings)
@example(secret="hunter22", prefix="postgresql://u:", suffix="@db/x")
def test_a_string_holding_the_secret_is_caught_whatever_surrounds_it(secret: str, prefix: str, suffix: str) -> None:
    assert found(secret, "unrelated", prefix + secret + suffix) == "field 1"


@given(secret=secret_values, prefix=surroundings, suffix=surroundings)
def test_the_secret_with_white_space_around_it_is_found_as_the_script_strips_it(
    secret: str, prefix: str, suffix: str
) -> None:
    stripped = secret.encode().strip().decode()
    assert found(f"  {secret}\n", prefix + stripped + suffix) == "field 0"


@given(secret=secret_values, text=st.text(max_size=200))
def test_a_string_without_any_spelling_of_the_secret_passes(secret: str, text: str) -> None:
    encoded = text.encode("utf-8", "surrogatepass")
    assume(not any(spelled in encoded for spelled in spellings(secret.encode("utf-8", "surrogatepass"))))
    assert found(secret, text) is None


@given(secret=secret_values, prefix=surroundings, suffix=surroundings)
def test_percent_encoded_and_json_escaped_spellings_are_caught(secret: str, prefix: str, suffix: str) -> None:
    core = secret.encode().strip().decode()
    assert found(secret, prefix + quote(core, safe="") + suffix) is not None
    assert found(secret, prefix + json.dumps({"password": core}) + suffix) is not None
    assert found(secret, prefix + json.dumps({"password": core}, ensure_ascii=False) + suffix) is not None


@given(short=st.text(max_size=MIN_CHECKED_CHARACTERS - 1), text=st.text(max_size=100))
def test_values_too_short_to_be_told_from_ordinary_text_are_not_looked_for(short: str, text: str) -> None:
    assert spellings(short.encode("utf-8", "surrogatepass")) == ()
    assert found(short, short + text) is None


def test_an_empty_secret_blocks_nothing_and_binary_values_are_looked_for_as_bytes() -> None:
    assert spellings(b"") == () and spellings(b"  \n") == () and spellings(b"\n abc \n") == ()
    binary = b"\xff\xfe\x00\x01"
    assert spellings(binary) == (binary,)
    assert leaked_into([Text("param value", b"x" + binary + b"y")], spellings(binary)) == "param value"


def kinds(route: Any, document: dict[str, Any]) -> dict[str, str]:
    """Each string of the body, mapped to the kind of field the scan says it is in."""
    return {text.value.decode(): text.kind for text in written_texts(route, document)}


def test_every_text_field_of_the_run_writes_is_scanned_and_named_by_kind() -> None:
    assert kinds(RUNS_LOG_PARAMETER, {"run_id": RUN_ID, "key": "K", "value": "V"}) == {
        "K": "param key",
        "V": "param value",
    }
    assert kinds(RUNS_SET_TAG, {"run_id": RUN_ID, "key": "K", "value": "V"}) == {"K": "tag key", "V": "tag value"}
    assert kinds(RUNS_SET_TAG, {"run_uuid": RUN_ID, "key": "mlflow.runName", "value": "V"})["V"] == (
        "run name (tag mlflow.runName)"
    )
    assert kinds(
        RUNS_LOG_METRIC,
        {"run_id": RUN_ID, "key": "K", "value": 1.0, "dataset_name": "D", "dataset_digest": "G", "model_id": "m-1"},
    ) == {"K": "metric name", "D": "field", "G": "field"}
    assert kinds(RUNS_UPDATE, {"run_id": RUN_ID, "run_name": "N", "status": "FINISHED", "end_time": 1}) == {
        "N": "run name"
    }
    # Ending a run writes no text: no vault is needed for it.
    assert written_texts(RUNS_UPDATE, {"run_id": RUN_ID, "status": "FINISHED", "end_time": 1}) == []
    assert kinds(
        RUNS_LOG_BATCH,
        {
            "run_id": RUN_ID,
            "metrics": [{"key": "MK", "value": 1, "timestamp": 1, "step": 0, "dataset_name": "MD"}],
            "params": [{"key": "PK", "value": "PV"}],
            "tags": [{"key": "TK", "value": "TV"}, {"key": "mlflow.runName", "value": "RN"}],
        },
    ) == {
        "MK": "metric name",
        "MD": "metric field",
        "PK": "param key",
        "PV": "param value",
        "TK": "tag key",
        "TV": "tag value",
        "mlflow.runName": "tag key",
        "RN": "run name (tag mlflow.runName)",
    }
    assert kinds(RUNS_LOG_MODEL, {"run_id": RUN_ID, "model_json": "{}"}) == {
        "{}": "logged model (tag mlflow.log-model.history)"
    }
    dataset = {"name": "N", "digest": "G", "source_type": "http", "source": "S", "schema": "C", "profile": "P"}
    inputs = {"run_id": RUN_ID, "datasets": [{"dataset": dataset, "tags": [{"key": "k", "value": "v"}]}]}
    assert set(kinds(RUNS_LOG_INPUTS, inputs).values()) == {"dataset input"}
    assert set(kinds(RUNS_LOG_INPUTS, inputs)) == {"N", "G", "http", "S", "C", "P", "k", "v"}


def test_ids_and_numbers_are_not_text_and_keys_never_name_a_kind() -> None:
    secret = "s3cr3t-value"
    texts = written_texts(
        RUNS_LOG_BATCH,
        {
            "run_id": secret,
            "run_uuid": secret,
            "metrics": [{"key": "m", "value": 12345678, "timestamp": 1, "model_id": secret}],
            secret: "x",  # an unknown field named by the secret: its value is text, its name is never shown
            "deep": [{"deeper": {secret: secret}}],
        },
    )
    assert {text.value.decode() for text in texts} == {"m", "x", secret}
    assert all(secret not in text.kind for text in texts)
    assert leaked_into(texts, spellings(secret.encode())) == "field"


@given(
    document=st.recursive(
        st.text() | st.integers() | st.floats(allow_nan=False),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=30,
    )
)
def test_a_kind_is_one_of_a_fixed_vocabulary_whatever_the_body(document: Any) -> None:
    vocabulary = {
        "run name",
        "run name (tag mlflow.runName)",
        "param key",
        "param value",
        "tag key",
        "tag value",
        "metric name",
        "metric field",
        "dataset input",
        "logged model (tag mlflow.log-model.history)",
        "field",
    }
    for route in (RUNS_LOG_BATCH, RUNS_SET_TAG, RUNS_LOG_INPUTS):
        for text in written_texts(route, {"body": document, "params": document, "tags": document}):
            assert text.kind in vocabulary


def test_every_run_write_either_carries_text_the_guard_reads_or_is_known_to_carry_none() -> None:
    """A new run route must be decided on: RUN_TEXT (the leak guard scans it) or listed here with the reason."""
    without_text = {
        "POST /mlflow/runs/delete-tag": "removes a tag; it must stay possible to remove a leak logged before a read",
        "POST /mlflow/runs/outputs": "logged model ids and steps only",
        "POST /mlflow/artifacts/presigned-upload-url": "artifacts are not scanned (docs/secrets.md)",
        "POST /mlflow/upload-artifact": "the web UI's upload of an artifact file: artifacts are not scanned",
    }
    writes = {
        spec.name
        for spec in FORWARDED_ROUTES
        if spec.resource is Resource.RUN and spec.action in (Action.EDIT, Action.CREATE)
    }
    text = {spec.name for spec in FORWARDED_ROUTES if spec.run_text}
    assert text <= writes
    # runs/create and the prompt lab's run name no run yet: no run has read a secret before it exists.
    assert writes - text == set(without_text) | {"POST /mlflow/runs/create", "POST /mlflow/runs/create-promptlab-run"}
