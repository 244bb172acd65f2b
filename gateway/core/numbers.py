"""Whole numbers a client sends as text (ids, versions, page tokens, counts), read the one strict way.

`str.isdigit()` alone also takes digits of other scripts and superscripts such as '²' (which `int` refuses), `int`
takes fullwidth and Arabic-Indic digits, and `int` refuses numbers of more than 4,300 digits: every route that
turned such a value into a number with those answered 500 where the input was bad. These take ASCII digits only,
at most `most` of them (18 by default: what PostgreSQL's bigint holds).
"""

from __future__ import annotations

BIGINT_DIGITS = 18


def is_number(text: str, most: int = BIGINT_DIGITS) -> bool:
    """`text` is 1 to `most` ASCII digits (no sign, no blanks)."""
    return isinstance(text, str) and 0 < len(text) <= most and text.isascii() and text.isdigit()


def whole(raw: object, most: int = BIGINT_DIGITS) -> int | None:
    """The non-negative whole number `raw` spells in ASCII digits (at most `most`), or None. An int (never a bool)
    is taken as it is when it has at most `most` digits and is not negative."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw < 10**most else None
    text = str(raw)
    return int(text) if is_number(text, most) else None
