"""The one reading of whole numbers a client sends as text: ASCII digits only, and no more than a bigint holds."""

from __future__ import annotations

import pytest

from gateway.core.numbers import is_number, whole


@pytest.mark.parametrize("text", ["0", "7", "123456789012345678"])
def test_ascii_digits_are_numbers(text: str) -> None:
    assert is_number(text) and whole(text) == int(text)


@pytest.mark.parametrize(
    "text",
    ["", " 1", "1 ", "-1", "+1", "1.0", "1_000", "²", "\uff11", "\u0663", "1234567890123456789", "9" * 5000, "\x00"],
)
def test_anything_else_is_not(text: str) -> None:
    # each of '²', fullwidth and Arabic-Indic digits passes str.isdigit(); 5,000 digits are more than int() reads
    assert not is_number(text) and whole(text) is None


def test_whole_takes_ints_but_not_bools_negatives_or_past_bigint() -> None:
    assert whole(5) == 5 and whole(0) == 0
    assert whole(True) is None and whole(-1) is None and whole(10**18) is None and whole(None) is None
    assert whole("12", most=1) is None and is_number("12", most=2)
