"""What a job's scorers carry, read as the store will read them: JSON inside JSON text, at any depth, in any
spelling the decoder accepts; nesting deeper than the decoder goes is refused, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.errors import InvalidParameter
from gateway.federation.guard.jobs import EVALUATE, INVOKE_SCORER, has_custom_code, nodes

documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["call_source", "name", "a", "b"]), inner, max_size=4)
    ),
    max_leaves=30,
)


def reference(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("call_source") is not None or any(reference(v) for v in node.values())
    if isinstance(node, list):
        return any(reference(item) for item in node)
    return False


@given(documents)
def test_custom_code_is_found_wherever_it_is_as_text_or_as_a_document(document: Any) -> None:
    expected = reference(document)
    assert has_custom_code(INVOKE_SCORER, {"serialized_scorer": json.dumps(document)}) is expected
    assert has_custom_code(EVALUATE, {"serialized_scorers": [json.dumps(document), None]}) is expected
    assert has_custom_code(EVALUATE, {"serialized_scorers": [document]}) is expected


@given(documents)
def test_every_value_is_visited_once_in_document_order(document: Any) -> None:
    def preorder(node: Any) -> list[Any]:
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        return [node, *(seen for child in children for seen in preorder(child))]

    assert [id(node) for node in nodes(document)] == [id(node) for node in preorder(document)]


@pytest.mark.parametrize(
    "text",
    [
        '{"call_s\\u006furce": "def f(): ..."}',  # an escaped key is the same key once decoded
        '{"call_source": null, "call_source": "def f(): ..."}',  # the last of repeated keys counts, as in json
        '{"a": [{"b": {"call_source": "x"}}]}',
        '{"a":' * 900 + '{"call_source": "x"}' + "}" * 900,  # deeper than a recursive walk from a request goes
    ],
)
def test_custom_code_in_any_spelling_is_found(text: str) -> None:
    assert has_custom_code(INVOKE_SCORER, {"serialized_scorer": text})


def test_a_scorer_nested_deeper_than_the_decoder_goes_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="serialized_scorer"):
        has_custom_code(INVOKE_SCORER, {"serialized_scorer": "[" * 50_000 + "]" * 50_000})
