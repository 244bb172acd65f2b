"""What a statement can name: the `system.mlflow` tables (their columns and types) and stored dynamic views."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.authz.levels import uc_object

SYSTEM_CATALOG = "system"
SYSTEM_SCHEMA = "mlflow"
# Where the system tables live in PostgreSQL, as views the reader role may select from.
PG_SCHEMA = "system_mlflow"
# The one role statements run as; it can read the views of PG_SCHEMA and nothing else.
READER_ROLE = "fedgate_sql_reader"

# Column order as documented for Databricks; `SELECT *` answers in this order.
SYSTEM_COLUMNS: dict[str, tuple[str, ...]] = {
    "experiments_latest": (
        "account_id",
        "update_time",
        "delete_time",
        "experiment_id",
        "workspace_id",
        "name",
        "create_time",
    ),
    "runs_latest": (
        "account_id",
        "update_time",
        "delete_time",
        "workspace_id",
        "run_id",
        "experiment_id",
        "created_by",
        "start_time",
        "end_time",
        "run_name",
        "status",
        "params",
        "tags",
        "aggregated_metrics",
    ),
    "run_metrics_history": (
        "account_id",
        "insert_time",
        "record_id",
        "workspace_id",
        "experiment_id",
        "run_id",
        "metric_name",
        "metric_time",
        "metric_step",
        "metric_value",
    ),
}

# Column kinds the transpiler needs where Databricks and PostgreSQL types differ in behaviour:
# map<string,string> is jsonb, array<struct> is an array of a composite type, doubles round differently.
MAP_COLUMNS = frozenset({"params", "tags"})
ARRAY_COLUMNS = frozenset({"aggregated_metrics"})
DOUBLE_COLUMNS = frozenset({"metric_value", "latest_value", "max_value", "min_value"})
# Columns of runs_latest whose values are as large as what was logged (any number of tags, params or metrics): a
# statement reads them through a check of their size (transpile.py, migration 0047).
STORED_VALUE_COLUMNS = frozenset({"params", "tags", "aggregated_metrics"})
# The fields of `system_mlflow.metric_aggregate`, the elements of aggregated_metrics: the only values with fields
# (besides whole rows of FROM items, read as `alias.column`).
STRUCT_FIELDS = frozenset({"metric_name", "latest_value", "max_value", "min_value"})


@dataclass(frozen=True, slots=True, order=True)
class TableName:
    """A three-part name, lower-case: `system.mlflow.runs_latest`, `gov.mlflow.team_a_runs`."""

    catalog: str
    schema: str
    name: str

    @property
    def full(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.name}"

    @property
    def is_system(self) -> bool:
        return self.catalog == SYSTEM_CATALOG

    @property
    def securable(self) -> str:
        return uc_object("table", self.full)

    @property
    def schema_securable(self) -> str:
        return uc_object("schema", f"{self.catalog}.{self.schema}")

    @property
    def catalog_securable(self) -> str:
        return uc_object("catalog", self.catalog)

    def __str__(self) -> str:
        return self.full


def system_table(name: TableName) -> bool:
    return name.catalog == SYSTEM_CATALOG and name.schema == SYSTEM_SCHEMA and name.name in SYSTEM_COLUMNS
