"""`system_mlflow.run_metrics_history` lists a point once, as MLflow's stores keep it.

MLflow's SQL stores key the metric table on (run, key, timestamp, step, value, is_nan): a point sent again (a
retried `log_metric`, a log-batch naming it twice) is dropped, and `get_metric_history` answers it once. The index
appends every point it is sent, in chunks, so the view listed each copy: counts, averages and percentiles over the
history disagreed with the store. The view now keeps, of identical points of a run's metric, the first written (the
smallest `record_id`); points of one step and time with different values stay apart, as in the store.

Revision ID: 0049
Revises: 0048
"""

from __future__ import annotations

from alembic import op

revision = "0049"
down_revision = "0048"
branch_labels = None
depends_on = None

# The columns, their order and types are the view's before: CREATE OR REPLACE keeps its grants.
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

EVERY = """
CREATE OR REPLACE VIEW system_mlflow.run_metrics_history AS
SELECT current_setting('fedgate.account_id', true) AS account_id,
       m.insert_time, (m.chunk_id * 100000 + p.ord)::text AS record_id, r.workspace_id::text AS workspace_id,
       r.account_experiment_id AS experiment_id, r.run_id, m.metric_name,
       p.metric_time, p.metric_step, p.metric_value
FROM ix_metrics m JOIN ix_runs r ON r.run_key = m.run_key
CROSS JOIN LATERAL unnest(m.metric_values, m.metric_steps, m.metric_times)
    WITH ORDINALITY AS p(metric_value, metric_step, metric_time, ord)
"""


def upgrade() -> None:
    op.execute(ONCE)


def downgrade() -> None:
    op.execute(EVERY)
