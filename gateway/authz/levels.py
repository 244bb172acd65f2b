"""Privileges and permission levels, the objects they apply to, and how objects are named."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

ACCOUNT_DOMAIN = "account"


class Level(StrEnum):
    """MLflow permission levels, one total order. CAN_USE only lets a principal enter a workspace."""

    CAN_USE = "CAN_USE"
    CAN_READ = "CAN_READ"
    CAN_EDIT = "CAN_EDIT"
    CAN_MANAGE_STAGING_VERSIONS = "CAN_MANAGE_STAGING_VERSIONS"
    CAN_MANAGE_PRODUCTION_VERSIONS = "CAN_MANAGE_PRODUCTION_VERSIONS"
    CAN_MANAGE = "CAN_MANAGE"


LEVEL_ORDER: tuple[Level, ...] = tuple(Level)
RANK: dict[str, int] = {level.value: index for index, level in enumerate(LEVEL_ORDER)}

EXPERIMENT_LEVELS = (Level.CAN_READ, Level.CAN_EDIT, Level.CAN_MANAGE)
MODEL_LEVELS = (
    Level.CAN_READ,
    Level.CAN_EDIT,
    Level.CAN_MANAGE_STAGING_VERSIONS,
    Level.CAN_MANAGE_PRODUCTION_VERSIONS,
    Level.CAN_MANAGE,
)
WORKSPACE_LEVELS = (Level.CAN_USE, Level.CAN_READ, Level.CAN_EDIT, Level.CAN_MANAGE)
PRODUCTION = "Production"


def transition_level(current: str, target: str) -> Level:
    """The level moving a model version from stage `current` to stage `target` asks for.

    Anything into or out of Production needs CAN_MANAGE_PRODUCTION_VERSIONS; moves among None, Staging
    and Archived need CAN_MANAGE_STAGING_VERSIONS. Stage names compare case-insensitively, as MLflow
    reads them, and without blanks around, as the workflow reads them on a store without stages
    (registry/store.py): ` Production` is Production. An unknown current stage ("") counts as not Production.
    """
    if PRODUCTION.lower() in (current.strip().lower(), target.strip().lower()):
        return Level.CAN_MANAGE_PRODUCTION_VERSIONS
    return Level.CAN_MANAGE_STAGING_VERSIONS


def alias_level(alias: str, protected: Iterable[str]) -> Level:
    """The level setting, moving or deleting alias `alias` of a registered model asks for.

    An alias the model protects (its `protected_aliases` setting, e.g. `champion`) asks what a move into
    Production asks, CAN_MANAGE_PRODUCTION_VERSIONS; any other alias asks CAN_EDIT, as MLflow's own rule.
    Alias names compare case-insensitively, so a differently cased spelling is protected too.
    """
    if alias.casefold() in {name.casefold() for name in protected}:
        return Level.CAN_MANAGE_PRODUCTION_VERSIONS
    return Level.CAN_EDIT


# Who may change which aliases of a model are protected: whoever manages the model (its permissions too).
PROTECTED_ALIASES_LEVEL = Level.CAN_MANAGE


class Privilege(StrEnum):
    """Unity Catalog privileges. No DENY, and none implies another (MANAGE is not SELECT)."""

    USE_CATALOG = "USE_CATALOG"
    USE_SCHEMA = "USE_SCHEMA"
    SELECT = "SELECT"
    MANAGE = "MANAGE"


UC_PRIVILEGES: dict[str, tuple[Privilege, ...]] = {
    "catalog": (Privilege.USE_CATALOG, Privilege.USE_SCHEMA, Privilege.SELECT, Privilege.MANAGE),
    "schema": (Privilege.USE_SCHEMA, Privilege.SELECT, Privilege.MANAGE),
    "table": (Privilege.SELECT, Privilege.MANAGE),
}

SYSTEM_TABLES = ("experiments_latest", "runs_latest", "run_metrics_history")

# What may appear in a stored policy value. A comma or bracket would corrupt Casbin's reload.
OBJECT_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,300}\Z")
DOMAIN_RE = re.compile(r"^[a-z0-9]{1,32}\Z")
PRIVILEGE_RE = re.compile(r"^[A-Z_]{1,40}\Z")


def files_level(stage: str, aliases: Iterable[str], protected: Iterable[str]) -> Level | None:
    """The level changing the files of a model version asks for (an artifact write where they lie); None when the
    version is not protected (no stage but None or Archived, no alias): the experiment's grants decide alone.

    The level is that of what a change of the version would be: taking it out of its stage (`transition_level`:
    CAN_MANAGE_PRODUCTION_VERSIONS for Production, CAN_MANAGE_STAGING_VERSIONS for Staging) and moving each alias it
    holds (`alias_level`: CAN_MANAGE_PRODUCTION_VERSIONS for a protected alias, CAN_EDIT on the model for another);
    the highest of them.
    """
    wanted: list[Level] = []
    if stage.strip().lower() in ("staging", PRODUCTION.lower()):
        wanted.append(transition_level(stage, "Archived"))
    protected = list(protected)
    wanted.extend(alias_level(alias, protected) for alias in aliases)
    return max(wanted, key=lambda level: RANK[level.value]) if wanted else None


def workspace_domain(workspace_id: int) -> str:
    return f"w{workspace_id}"


def workspace_object(workspace_id: int) -> str:
    return f"workspace:{workspace_domain(workspace_id)}"


def experiment_object(workspace_id: int, experiment_id: str) -> str:
    return f"experiment:{workspace_domain(workspace_id)}/{experiment_id}"


def model_object(workspace_id: int, model_id: str) -> str:
    return f"registered_model:{workspace_domain(workspace_id)}/{model_id}"


def subject(principal_id: int) -> str:
    return f"p{principal_id}"


def uc_object(securable_type: str, full_name: str) -> str:
    return f"{securable_type}:{full_name}"


def uc_parents(obj: str) -> list[str]:
    """`table:system.mlflow.runs_latest` → [schema:system.mlflow, catalog:system]."""
    kind, _, name = obj.partition(":")
    parts = name.split(".")
    if kind == "table" and len(parts) == 3:
        return [f"schema:{parts[0]}.{parts[1]}", f"catalog:{parts[0]}"]
    if kind == "schema" and len(parts) == 2:
        return [f"catalog:{parts[0]}"]
    return []


def implies(held: str, wanted: str) -> bool:
    """Whether holding `held` satisfies a request for `wanted` on the same object."""
    if held == wanted:
        return True
    held_rank, wanted_rank = RANK.get(held), RANK.get(wanted)
    return held_rank is not None and wanted_rank is not None and held_rank >= wanted_rank


def valid_value(kind: str, value: str) -> bool:
    pattern = {"object": OBJECT_RE, "domain": DOMAIN_RE, "privilege": PRIVILEGE_RE}[kind]
    return bool(pattern.match(value))
