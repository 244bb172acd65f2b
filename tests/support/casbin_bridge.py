"""The policy's specification, run: the rows of a `PolicySnapshot` loaded into pycasbin with `policies/`.

The gateway decides with its compiled index (`gateway.authz.policy`); the Casbin model in
`policies/model.conf`, with the static rows of `policies/hierarchy.csv`, says what the answers must be.
Property tests build both from the same rows and require the same answer for every request.

The enforcer is given the rows the snapshot was built from (grants, memberships, securables), not the
index built from them, so a fault in building the index shows as a disagreement. It keeps the two rules
the policy applies to rows before any decision: a grant with a value outside the strict character set is
never loaded, and an inactive group passes on nothing to its members.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from itertools import pairwise
from pathlib import Path
from typing import Any

import casbin
from casbin import persist
from casbin.rbac.default_role_manager import RoleManager

from gateway.authz.levels import ACCOUNT_DOMAIN, subject, uc_parents
from gateway.authz.policy import PolicySnapshot
from gateway.principals.groups import MAX_GROUP_DEPTH

CHECKOUT_POLICIES = Path(__file__).resolve().parents[2] / "policies"


def policy_files() -> Traversable:
    """`policies/` as the imported `gateway` package ships it, or the source checkout's when it ships none.

    A wheel holds the files in the package (`gateway/policies/`, put there by the build hook in
    setup.py); a source checkout, and the editable install made from it, keeps them at the root.
    """
    shipped = resources.files("gateway") / "policies"
    return shipped if shipped.is_dir() else CHECKOUT_POLICIES


def static_rows() -> list[list[str]]:
    """The level order (g3) and the Unity Catalog object hierarchy (g2), from `policies/hierarchy.csv`."""
    rows: list[list[str]] = []
    for line in (policy_files() / "hierarchy.csv").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append([part.strip() for part in line.split(",")])
    return rows


def casbin_rows(snapshot: PolicySnapshot) -> list[list[str]]:
    """The snapshot's grants (p), memberships in active groups (g) and object containment (g2) as rows.

    The snapshot must hold its rows in collections, not one-shot iterators: they are read a second time here.
    """
    grants = [grant for grant in snapshot.grants if grant.valid()]
    rows = sorted({("p", subject(g.principal_id), g.domain, g.object, g.privilege) for g in grants})
    active = {principal_id for principal_id, info in snapshot.principals.items() if info.active}
    rows += sorted(
        {("g", subject(member), subject(group)) for member, group in snapshot.memberships if group in active}
    )
    known = {grant.object for grant in grants if grant.domain == ACCOUNT_DOMAIN} | set(snapshot.securables)
    rows += sorted({("g2", child, parent) for obj in known for child, parent in pairwise([obj, *uc_parents(obj)])})
    return [list(row) for row in rows]


class _RowAdapter(persist.Adapter):  # type: ignore[misc]
    """Loads rows that are already in memory; every value was checked against the strict character set."""

    def __init__(self, rows: list[list[str]]) -> None:
        self._rows = rows

    def load_policy(self, model: Any) -> None:
        for row in self._rows:
            persist.load_policy_line(", ".join(row), model)


def build_enforcer(snapshot: PolicySnapshot) -> casbin.Enforcer:
    with resources.as_file(policy_files() / "model.conf") as model:
        enforcer = casbin.Enforcer(str(model), _RowAdapter([*static_rows(), *casbin_rows(snapshot)]))
    # Casbin follows ten levels of roles by default; memberships may nest MAX_GROUP_DEPTH deep.
    enforcer.set_role_manager(RoleManager(max_hierarchy_level=MAX_GROUP_DEPTH + 1))
    enforcer.build_role_links()
    return enforcer


def casbin_allows(enforcer: casbin.Enforcer, principal_id: int, domain: str, obj: str, wanted: str) -> bool:
    return bool(enforcer.enforce(subject(principal_id), domain, obj, wanted))
