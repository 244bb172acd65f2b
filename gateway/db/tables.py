"""Core declarations of the tables that are read and written as SQL expressions rather than through ORM models.

Each declaration names every column the migrations create (migration 0004 for the index, 0006 for the
reconciler's progress, 0009 for the built-in vault, 0017 for browser sessions), so an expression built on
it can use any column; tests/unit/test_db_schema.py checks them, and the ORM models of
`gateway/db/models.py`, against a migrated database. Indexes, constraints and defaults live in the migrations only.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

_TIME = sa.DateTime(timezone=True)
_DOUBLE = sa.Float(precision=53)

# -- the account-wide index (migration 0004) ---------------------------------------------------------------

ix_experiments = sa.table(
    "ix_experiments",
    sa.column("workspace_id", sa.BigInteger),
    sa.column("experiment_id", sa.Text),
    sa.column("name", sa.Text),
    sa.column("create_time", _TIME),
    sa.column("update_time", _TIME),
    sa.column("delete_time", _TIME),
    sa.column("tags", JSONB),
)
ix_runs = sa.table(
    "ix_runs",
    sa.column("run_key", sa.BigInteger),
    sa.column("run_id", sa.Text),
    sa.column("workspace_id", sa.BigInteger),
    sa.column("experiment_id", sa.Text),
    sa.column("account_experiment_id", sa.Text),  # computed: `<workspace_id>-<experiment_id>`
    sa.column("created_by", sa.Text),
    sa.column("run_name", sa.Text),
    sa.column("status", sa.Text),
    sa.column("start_time", _TIME),
    sa.column("end_time", _TIME),
    sa.column("update_time", _TIME),
    sa.column("delete_time", _TIME),
    sa.column("params", JSONB),
    sa.column("tags", JSONB),
    sa.column("datasets", JSONB),
)
ix_metrics = sa.table(
    "ix_metrics",
    sa.column("chunk_id", sa.BigInteger),
    sa.column("run_key", sa.BigInteger),
    sa.column("metric_name", sa.Text),
    sa.column("metric_steps", ARRAY(sa.BigInteger)),
    sa.column("metric_times", ARRAY(_TIME)),
    sa.column("metric_values", ARRAY(_DOUBLE)),
    sa.column("insert_time", _TIME),
)
ix_metric_latest = sa.table(
    "ix_metric_latest",
    sa.column("run_key", sa.BigInteger),
    sa.column("metric_name", sa.Text),
    sa.column("latest_value", _DOUBLE),
    sa.column("latest_step", sa.BigInteger),
    sa.column("latest_time", _TIME),
    sa.column("min_value", _DOUBLE),
    sa.column("max_value", _DOUBLE),
    sa.column("has_nan", sa.Boolean),
    sa.column("points", sa.BigInteger),
)
ix_sync_state = sa.table(
    "ix_sync_state",
    sa.column("workspace_id", sa.BigInteger),
    sa.column("state", sa.String(12)),
    sa.column("cursor", sa.Text),
    sa.column("runs_seen", sa.BigInteger),
    sa.column("runs_total", sa.BigInteger),
    sa.column("points_added", sa.BigInteger),
    sa.column("last_error", sa.Text),
    sa.column("started_at", _TIME),
    sa.column("finished_at", _TIME),
    sa.column("updated_at", _TIME),
)
ix_dirty_runs = sa.table(
    "ix_dirty_runs",
    sa.column("run_id", sa.String(64)),
    sa.column("workspace_id", sa.BigInteger),
    sa.column("marked_at", _TIME),
)

# -- dual tracking (migration 0006) ------------------------------------------------------------------------

reconcile_state = sa.table(
    "reconcile_state",
    sa.column("workspace_id", sa.BigInteger),
    sa.column("scope", sa.String(8)),
    sa.column("state", sa.String(12)),
    sa.column("experiments", sa.Integer),
    sa.column("runs_checked", sa.BigInteger),
    sa.column("runs_repaired", sa.BigInteger),
    sa.column("points_copied", sa.BigInteger),
    sa.column("files_copied", sa.BigInteger),
    sa.column("after_experiment", sa.String(64)),
    sa.column("resumed", sa.Integer),
    sa.column("error", sa.Text),
    sa.column("started_at", _TIME),
    sa.column("finished_at", _TIME),
    sa.column("updated_at", _TIME),
)

# -- the built-in vault's values (migration 0009) ----------------------------------------------------------

vault_values = sa.table(
    "vault_values",
    sa.column("location", sa.String(200)),
    sa.column("key", sa.String(128)),
    sa.column("kid", sa.String(32)),
    sa.column("nonce", sa.LargeBinary),
    sa.column("ciphertext", sa.LargeBinary),
    sa.column("updated_at", _TIME),
)

# -- write intents (migration 0015; gateway/federation/intents.py) -----------------------------------------

write_intents = sa.table(
    "write_intents",
    sa.column("id", sa.BigInteger),
    sa.column("owner", sa.BigInteger),
    sa.column("workspace_id", sa.BigInteger),
    sa.column("route", sa.String(120)),
    sa.column("version", sa.Integer),
    sa.column("detail", JSONB),
    sa.column("created_at", _TIME),
    sa.column("next_attempt_at", _TIME),
    sa.column("attempts", sa.Integer),
    sa.column("looks", sa.Integer),
    sa.column("last_error", sa.Text),
)

# -- browser sessions of the web UI (migration 0017) -------------------------------------------------------

browser_sessions = sa.table(
    "browser_sessions",
    sa.column("id_hash", sa.LargeBinary),
    sa.column("principal_id", sa.BigInteger),
    sa.column("via", sa.String(16)),
    sa.column("token_hash", sa.LargeBinary),
    sa.column("groups", JSONB),
    sa.column("created_at", _TIME),
    sa.column("last_seen_at", _TIME),
    sa.column("expires_at", _TIME),
    sa.column("handle", sa.String(32)),  # migration 0029: the session's public name, the browser's agent and address
    sa.column("user_agent", sa.Text),
    sa.column("ip_address", sa.String(64)),
)
sign_in_attempts = sa.table(
    "sign_in_attempts",
    sa.column("id_hash", sa.LargeBinary),
    sa.column("state", sa.Text),
    sa.column("nonce", sa.Text),
    sa.column("code_verifier", sa.Text),
    sa.column("next_path", sa.Text),
    sa.column("expires_at", _TIME),
)

CORE_TABLES = (
    ix_experiments,
    ix_runs,
    ix_metrics,
    ix_metric_latest,
    ix_sync_state,
    ix_dirty_runs,
    reconcile_state,
    vault_values,
    write_intents,
    browser_sessions,
    sign_in_attempts,
)
