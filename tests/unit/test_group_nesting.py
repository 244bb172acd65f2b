"""Groups nest without cycles and at most MAX_GROUP_DEPTH levels deep (checked before a membership is written)."""

from __future__ import annotations

from gateway.principals.groups import MAX_GROUP_DEPTH, nesting_problem


def chain(length: int) -> list[tuple[int, int]]:
    """Group i is a member of group i + 1, for groups 1 .. length."""
    return [(group, group + 1) for group in range(1, length)]


def test_an_unrelated_group_may_join() -> None:
    assert nesting_problem(chain(3), 1, 10) is None
    assert nesting_problem([], 1, 2) is None


def test_a_group_cannot_join_itself_or_a_group_inside_it() -> None:
    assert nesting_problem([], 1, 1) == "That membership would make a group contain itself."
    # 1 is in 2 is in 3: 3 joining 1 would close the loop.
    assert nesting_problem(chain(3), 1, 3) == "That membership would make a group contain itself."
    assert nesting_problem(chain(3), 3, 1) is None


def test_depth_is_bounded() -> None:
    # Group 1 sits below MAX_GROUP_DEPTH - 1 groups: a member of 1 makes MAX_GROUP_DEPTH + 1 levels.
    assert nesting_problem(chain(MAX_GROUP_DEPTH), 1, 0) is None
    assert nesting_problem(chain(MAX_GROUP_DEPTH + 1), 1, 0) == f"Groups nest at most {MAX_GROUP_DEPTH} levels deep."
    # The longest path upwards counts, not the first one found.
    branching = [*chain(MAX_GROUP_DEPTH + 1), (1, 100)]
    assert nesting_problem(branching, 1, 0) is not None
