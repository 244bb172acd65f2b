"""Bodies shared by the gateway's own APIs."""

from __future__ import annotations

import msgspec


class Empty(msgspec.Struct):
    """`{}`: the answer of a call that returns nothing (a token deleted, a statement canceled)."""
