"""A mapping of at most a given number of entries that forgets the least recently kept (or used) one first.

A worker's caches of what it read (a run's workspace, a compiled SQL text, a token's principal) are bounded so
that memory stays flat whatever the callers name. `put` makes an entry the newest; a read either leaves the order
alone (`peek`: the entry ages from when it was kept) or makes it the newest too (`get`: least recently used).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `size` entries; keeping one more forgets the oldest. Not for None values: a read of a missing key
    answers None."""

    __slots__ = ("_entries", "size")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("a bounded cache holds zero or more entries")
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def peek(self, key: K) -> V | None:
        """The value kept for `key`, or None; its age is unchanged."""
        return self._entries.get(key)

    def get(self, key: K) -> V | None:
        """The value kept for `key`, or None; a found entry becomes the newest."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `key` as the newest entry (replacing one kept), then forget the oldest beyond `size`."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Forget `key`; the value it had, or None."""
        return self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
