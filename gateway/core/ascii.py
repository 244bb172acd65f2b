"""Lower-casing of ASCII letters alone, where text must compare without case but no other letter may fold."""

from __future__ import annotations

import string

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """`text` with its ASCII letters lower-cased and every other character as it is: Unicode case-folding makes
    look-alikes equal (`\u212a`, the Kelvin sign, to `k`; `\u017f`, the long s, to `s`)."""
    return text.translate(_ASCII_LOWER)
