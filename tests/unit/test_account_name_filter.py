"""Registry searches of the account scope: `name` comparisons over `<workspace>.<name>` split per workspace."""

from __future__ import annotations

import pytest

from gateway.core.errors import InvalidParameter
from gateway.index.filters import account_name_filter, like


def per_workspace(text: str, workspaces: tuple[str, ...] = ("team-a", "team-b", "team_c")) -> dict[str, str | None]:
    parsed = account_name_filter(text)
    return {workspace: parsed.for_workspace(workspace) for workspace in workspaces}


def test_a_qualified_name_asks_only_its_workspace_with_the_bare_name() -> None:
    assert per_workspace("name = 'team-a.churn'") == {"team-a": "name = 'churn'", "team-b": None, "team_c": None}
    assert per_workspace("name='team-a.my.model'")["team-a"] == "name = 'my.model'"  # the first dot splits
    assert per_workspace('name = "team-b.it\'s"')["team-b"] == 'name = "it\'s"'


def test_a_bare_name_is_a_name_inside_every_workspace() -> None:
    assert set(per_workspace("name = 'churn'").values()) == {"name = 'churn'"}
    assert set(per_workspace("name LIKE 'churn%'").values()) == {"name LIKE 'churn%'"}
    assert set(per_workspace("").values()) == {""}


def test_lists_and_inequalities_keep_what_concerns_each_workspace() -> None:
    listed = per_workspace("name IN ('team-a.x', 'team-b.y', 'z')")
    assert listed == {"team-a": "name IN ('x', 'z')", "team-b": "name IN ('y', 'z')", "team_c": "name IN ('z')"}
    only = per_workspace("name IN ('team-a.x')")
    assert only == {"team-a": "name IN ('x')", "team-b": None, "team_c": None}
    assert per_workspace("name != 'team-a.x'") == {"team-a": "name != 'x'", "team-b": "", "team_c": ""}
    assert per_workspace("name NOT IN ('team-a.x', 'team-b.y')") == {
        "team-a": "name NOT IN ('x')",
        "team-b": "name NOT IN ('y')",
        "team_c": "",
    }


def test_like_patterns_match_workspace_names_before_their_first_dot() -> None:
    assert per_workspace("name LIKE 'team-%.churn%'") == {
        "team-a": "name LIKE 'churn%'",
        "team-b": "name LIKE 'churn%'",
        "team_c": None,
    }
    every = {"team-a": "name LIKE '%'", "team-b": "name LIKE '%'", "team_c": None}
    assert per_workspace("name LIKE 'team-_.%'") == every
    assert per_workspace("name ILIKE 'TEAM-B.%x'") == {"team-a": None, "team-b": "name ILIKE '%x'", "team_c": None}
    assert per_workspace("name LIKE 'TEAM-B.%x'")["team-b"] is None  # LIKE is case-sensitive


def test_other_clauses_go_to_every_workspace_as_written() -> None:
    text = "run_id = 'abc' AND name = 'team-b.churn' AND tags.`k` LIKE 'v%' AND version_number > 2"
    assert per_workspace(text) == {
        "team-a": None,
        "team-b": "run_id = 'abc' AND tags.`k` LIKE 'v%' AND version_number > 2 AND name = 'churn'",
        "team_c": None,
    }
    assert per_workspace("run_id IN ('a', 'b')")["team_c"] == "run_id IN ('a', 'b')"


def test_bad_filters_are_invalid_parameters() -> None:
    for text in ("name = ", "name = 'a' OR name = 'b'", "name IN ()", "= 'x'"):
        with pytest.raises(InvalidParameter):
            account_name_filter(text)


def test_like_is_sql_like() -> None:
    assert like("a%c", "abbbc") and like("a_c", "abc") and not like("a_c", "abbc")
    assert like("a.c", "a.c") and not like("a.c", "abc") and like("A%", "abc", insensitive=True)
