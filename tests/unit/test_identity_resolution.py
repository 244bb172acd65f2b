"""A bare principal name in a grant denotes one principal by its shape, or is refused; never a guess in some order."""

from __future__ import annotations

import pytest

from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.authz.service import resolve_principal
from gateway.core.errors import InvalidState
from gateway.principals import names


def snapshot(*principals: PrincipalInfo) -> PolicySnapshot:
    return PolicySnapshot(1, {p.id: p for p in principals}, [], [])


def test_the_shape_of_a_name_decides_its_kind() -> None:
    people = snapshot(
        PrincipalInfo(1, "user", "ann@example.com"),
        PrincipalInfo(2, "group", "ml-team"),
        PrincipalInfo(3, "service_principal", "3f1c2b9e-7d4a"),
        PrincipalInfo(4, "user", "ml-team"),  # a row older than the name rules: not a user name
    )
    assert resolve_principal(people, " Ann@Example.com ") == people.principal(1)
    assert resolve_principal(people, "ml-team") == people.principal(2)
    assert resolve_principal(people, "3f1c2b9e-7d4a") == people.principal(3)
    assert resolve_principal(people, "nobody") is None
    assert resolve_principal(people, "ML-TEAM") is None  # group names are exact


def test_a_name_two_kinds_still_share_is_refused() -> None:
    legacy = snapshot(PrincipalInfo(2, "group", "shared"), PrincipalInfo(3, "service_principal", "shared"))
    with pytest.raises(InvalidState, match="several kinds"):
        resolve_principal(legacy, "shared")


@pytest.mark.parametrize(
    "lookalike",
    [
        "ka\u017fs@example.com",  # LATIN SMALL LETTER LONG S: casefold() gives s
        "\u212aass@example.com",  # KELVIN SIGN: casefold() and lower() give k
        "kass@example.\u212aom".replace("\u212a", "c\u0327"),  # a combining cedilla: never folded away
        "\u2003kass@example.com",  # EM SPACE: str.strip() removes it
        "kass@example.com\u00a0",  # NO-BREAK SPACE
    ],
)
def test_a_name_only_unicode_folding_makes_another_users_names_nobody(lookalike: str) -> None:
    people = snapshot(PrincipalInfo(1, "user", "kass@example.com", account_admin=True))
    assert names.canonical("user", lookalike) != "kass@example.com"
    assert names.problem("user", names.canonical("user", lookalike)) is not None
    assert resolve_principal(people, lookalike) is None
    assert names.canonical("user", " \tKASS@Example.COM\n") == "kass@example.com"  # ASCII still folds
    assert names.canonical("group", "\u00a0ml-team") != "ml-team"
