"""The one bounded cache of a worker's reads: at most `size` entries, the oldest forgotten first, a use refreshing an
entry only when read with `get`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.bounded import BoundedCache


def kept(cache: BoundedCache[str, int], keys: str) -> dict[str, int | None]:
    return {key: cache.peek(key) for key in keys}


def filled(size: int, keys: str) -> BoundedCache[str, int]:
    """A cache of `size` that kept each of `keys` in turn, "a" as 1, "b" as 2, ..."""
    cache: BoundedCache[str, int] = BoundedCache(size)
    for key in keys:
        cache.put(key, ord(key) - ord("a") + 1)
    return cache


def test_keeping_one_past_the_size_forgets_the_oldest_kept() -> None:
    cache = filled(2, "abc")
    assert len(cache) == 2
    assert kept(cache, "abc") == {"a": None, "b": 2, "c": 3}
    cache.put("d", 4)
    assert kept(cache, "bcd") == {"b": None, "c": 3, "d": 4}


def test_get_makes_an_entry_the_newest_and_peek_does_not() -> None:
    cache = filled(2, "ab")
    assert cache.get("a") == 1  # used: "b" is now the oldest
    cache.put("c", 3)
    assert kept(cache, "abc") == {"a": 1, "b": None, "c": 3}
    assert cache.peek("a") == 1  # read, not used: "a" stays the oldest
    cache.put("d", 4)
    assert kept(cache, "acd") == {"a": None, "c": 3, "d": 4}


def test_keeping_a_kept_key_replaces_its_value_and_makes_it_the_newest() -> None:
    cache = filled(2, "ab")
    cache.put("a", 10)
    assert len(cache) == 2
    cache.put("c", 3)
    assert kept(cache, "abc") == {"a": 10, "b": None, "c": 3}


def test_pop_and_clear_forget_and_a_missing_key_reads_none() -> None:
    cache = filled(3, "ab")
    assert cache.get("z") is None and cache.peek("z") is None and cache.pop("z") is None and len(cache) == 2
    assert cache.pop("a") == 1 and "a" not in cache and "b" in cache and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.peek("b") is None


def test_a_cache_of_size_zero_keeps_nothing_and_a_negative_size_is_refused() -> None:
    cache = filled(0, "a")
    assert len(cache) == 0 and cache.peek("a") is None
    with pytest.raises(ValueError):
        BoundedCache(-1)


@given(
    st.integers(min_value=0, max_value=5),
    st.lists(st.tuples(st.sampled_from(["put", "get", "peek", "pop"]), st.integers(0, 7)), max_size=60),
)
def test_the_cache_holds_the_most_recently_kept_or_used_keys_within_its_size(
    size: int, steps: list[tuple[str, int]]
) -> None:
    # The model: keys in order of last put (or get of a held key), values as last put, the oldest dropped past size.
    cache: BoundedCache[int, int] = BoundedCache(size)
    order: list[int] = []
    values: dict[int, int] = {}
    for number, (step, key) in enumerate(steps):
        if step == "put":
            cache.put(key, number)
            order = [k for k in order if k != key] + [key]
            values[key] = number
            while len(order) > size:
                del values[order.pop(0)]
        elif step == "get":
            assert cache.get(key) == values.get(key)
            if key in values:
                order = [k for k in order if k != key] + [key]
        elif step == "peek":
            assert cache.peek(key) == values.get(key)
        else:
            assert cache.pop(key) == values.pop(key, None)
            order = [k for k in order if k != key]
        assert len(cache) == len(order) <= size
    assert {key: cache.peek(key) for key in range(8)} == {key: values.get(key) for key in range(8)}
    # Filled up, each new key forgets the oldest in the model's order, and only it.
    for filler in range(size - len(order)):
        cache.put(200 + filler, 0)
    for index, key in enumerate(order):
        cache.put(100 + key, 0)
        assert cache.peek(key) is None
        assert all(cache.peek(later) == values[later] for later in order[index + 1 :])
