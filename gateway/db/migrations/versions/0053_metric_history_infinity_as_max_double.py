"""`system_mlflow.run_metrics_history` lists ±Infinity and ±max double of one step and time once, as MLflow's stores.

MLflow's SQL stores keep ±Infinity as ±max double (1.7976931348623157e308), in the metric table's key too:
+Infinity and 1.797e308 logged at the same step and time are one point, the first written, and `get_metric_history`
answers it once (as ±max double). The index keeps ±Infinity as such, so the view of migration 0049, which lists
identical points once, listed both. The view now compares values as the store keys them (±Infinity as ±max double)
and keeps, of points equal so, the first written; NaN stays apart from every number, as MLflow's `is_nan` keeps it.

Revision ID: 0053
Revises: 0052
"""

from __future__ import annotations

from alembic import op

revision = "0053"
down_revision = "0052"
branch_labels = None
depends_on = None

# The columns, their order and types are the view's before: CREATE OR REPLACE keeps its grants.
AS_STORED = """
CREATE OR REPLACE VIEW system_mlflow.run_metrics_history AS
SELECT current_setting('fedgate.account_id', true) AS account_id,
       p.insert_time, p.record_id, r.workspace_id::text AS workspace_id,
       r.account_experiment_id AS experiment_id, r.run_id, p.metric_name,
       p.metric_time, p.metric_step, p.metric_value
FROM ix_runs r
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (m.metric_name, x.metric_step, x.metric_time, k.stored)
           m.insert_time, (m.chunk_id * 100000 + x.ord)::text AS record_id, m.metric_name,
           x.metric_time, x.metric_step, x.metric_value
    FROM ix_metrics m
    CROSS JOIN LATERAL unnest(m.metric_values, m.metric_steps, m.metric_times)
        WITH ORDINALITY AS x(metric_value, metric_step, metric_time, ord)
    CROSS JOIN LATERAL (
        SELECT CASE x.metric_value
                   WHEN 'Infinity'::float8 THEN '1.7976931348623157e308'::float8
                   WHEN '-Infinity'::float8 THEN '-1.7976931348623157e308'::float8
                   ELSE x.metric_value
               END AS stored
    ) k
    WHERE m.run_key = r.run_key
    ORDER BY m.metric_name, x.metric_step, x.metric_time, k.stored, m.chunk_id, x.ord
) p
"""

# Migration 0049's view (0050 to 0052 left it as it was).
ONCE = """
CREATE OR REPLACE VIEW system_mlflow.run_metrics_history AS
SELECT current_setting('fedgate.account_id', true) AS account_id,
       p.insert_time, p.record_id, r.workspace_id::text AS workspace_id,
       r.account_experiment_id AS experiment_id, r.run_id, p.metric_name,
       p.metric_time, p.metric_step, p.metric_value
FROM ix_runs r
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (m.metric_name, x.metric_step, x.metric_time, x.metric_value)
           m.insert_time, (m.chunk_id * 100000 + x.ord)::text AS record_id, m.metric_name,
           x.metric_time, x.metric_step, x.metric_value
    FROM ix_metrics m
    CROSS JOIN LATERAL unnest(m.metric_values, m.metric_steps, m.metric_times)
        WITH ORDINALITY AS x(metric_value, metric_step, metric_time, ord)
    WHERE m.run_key = r.run_key
    ORDER BY m.metric_name, x.metric_step, x.metric_time, x.metric_value, m.chunk_id, x.ord
) p
"""


def upgrade() -> None:
    op.execute(AS_STORED)


def downgrade() -> None:
    op.execute(ONCE)
