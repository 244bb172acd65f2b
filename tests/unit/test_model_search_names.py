"""The `name IN (...)` a registry search is narrowed with, read back by MLflow's own filter parser.

The store reads the list with Python's literal reader (escapes included): whatever names the caller's models
have, the store must read back exactly names of those models, never another's.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mlflow.utils.search_utils import SearchModelUtils, SearchModelVersionUtils

from gateway.federation.guard.models import names_clause

# Model names as MLflow accepts them: anything but '/' and ':', not blank (surrogates cannot be sent as JSON).
NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/:"), min_size=1, max_size=12)


@pytest.mark.parametrize("parser", [SearchModelUtils, SearchModelVersionUtils])
@settings(max_examples=400, deadline=None)
@given(names=st.sets(NAMES, min_size=1, max_size=4))
@example(names={"alice\\x2dmodel"})  # Python reads `\x2d` as '-': it stood for Alice's `alice-model`
@example(names={"a\\", "b"})  # a backslash before the closing quote
@example(names={"it's", 'say "hi"', "both ' and \""})
@example(names={"line\nend", "nul\x00"})
def test_the_store_reads_back_only_the_names_written(parser: type[SearchModelUtils], names: set[str]) -> None:
    clause = names_clause(names)
    if clause is None:
        return
    parsed = parser.parse_search_filter(f"name LIKE '%' AND {clause}")
    listed = next(c for c in parsed if c["comparator"] == "IN")
    read = set(listed["value"])
    assert read <= names
    # Only names that cannot be written are left out.
    assert all(
        n in read
        for n in names
        if "\\" not in n and not any(ord(c) < 32 or ord(c) == 127 for c in n) and not ("'" in n and '"' in n)
    )


def test_nothing_writable_is_no_clause() -> None:
    assert names_clause([]) is None
    assert names_clause(["a\\b", "both ' and \""]) is None
    assert names_clause(["churn"]) == "name IN ('churn')"
