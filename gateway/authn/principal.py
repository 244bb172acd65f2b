"""The authenticated caller, as every other context sees it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    kind: str  # "user", "service_principal" or "bootstrap"
    account_admin: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)
