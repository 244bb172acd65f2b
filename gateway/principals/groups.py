"""How groups may nest: no group inside itself, at most `MAX_GROUP_DEPTH` levels.

Memberships are written only when they keep both rules, so whatever reads them (the policy following
a principal up through its groups) can rely on a finite, acyclic hierarchy of bounded depth.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_GROUP_DEPTH = 32


def nesting_problem(memberships: Iterable[tuple[int, int]], group_id: int, member_group_id: int) -> str | None:
    """Why group `member_group_id` may not join group `group_id`, or None when it may.

    `memberships` are the current (member_id, group_id) pairs. Joining is refused when it would make a
    group contain itself (directly or through other groups), or when the levels of groups `group_id`
    is in, itself included, already number more than `MAX_GROUP_DEPTH`.
    """
    parents: dict[int, set[int]] = {}
    for child, parent in memberships:
        parents.setdefault(child, set()).add(parent)
    frontier, depth, seen = {group_id}, 0, {group_id}
    while frontier:
        if member_group_id in frontier:
            return "That membership would make a group contain itself."
        depth += 1
        frontier = {p for g in frontier for p in parents.get(g, ()) if p not in seen}
        seen |= frontier
    if depth > MAX_GROUP_DEPTH:
        return f"Groups nest at most {MAX_GROUP_DEPTH} levels deep."
    return None
