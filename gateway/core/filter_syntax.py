"""The words of MLflow's search filters, as its SQL tokenizer (sqlparse) reads them.

One lexicon for every reader of a filter: the account index's own parser (index/filters.py) and the
rename of artifact URIs in a renamed workspace's filters (federation/filter_renames.py). A part of a
key is a backticked or double-quoted name, or a word; a key is parts joined by dots.
"""

from __future__ import annotations

import re

PART = r"`(?:``|[^`])*`|\"(?:\"\"|\\\"|[^\"])*\"|[^\W\d]\w*"
STRING = r"'(?:''|\\'|[^'])*'"
# The number forms sqlparse knows; a letter right after one (`1and`, `0x10`) is not a number.
NUMBER = r"-?(?:\d+(?:\.\d+)?[eE]-?\d+|\d+\.\d*|\.\d+|\d+)(?![\w.])"
IDENT = rf"(?:{PART})(?:\.(?:{PART}|\w+))*"
OPERATOR = r"!=|<>|<=|>=|==|=|<|>"
SPLIT_PARTS = re.compile(rf"{PART}|\w+")


def quoted(text: str, quote: str) -> bool:
    """Whether `quote` encloses all of the text."""
    return len(text) >= 2 and text[0] == quote and text[-1] == quote


def unquote_key(key: str) -> str:
    """MLflow strips quotes, then backticks, from a key, but only when they enclose all of it."""
    if quoted(key, "'") or quoted(key, '"'):
        key = key[1:-1]
    if quoted(key, "`"):
        key = key[1:-1]
    return key
