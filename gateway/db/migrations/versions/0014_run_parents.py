"""The account index finds a run's children by their parent: `get_metrics(recursive=True)` of the Run API.

MLflow names a child run's parent in its tag `mlflow.parentRunId`; the index keeps tags as JSON, so a partial
expression index over that tag (only runs that have one) lets the recursive query walk a run's descendants
one level at a time without reading other runs.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_runs_parent ON ix_runs (workspace_id, (tags ->> 'mlflow.parentRunId')) "
        "WHERE tags ? 'mlflow.parentRunId'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_runs_parent")
