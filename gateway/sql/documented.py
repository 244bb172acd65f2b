"""The system-table queries the MLflow system-tables documentation and its sample dashboard publish.

Kept verbatim, in one place: the tests prove each runs and answers correctly, the benchmark times
them, and the demo shows one.
"""

from __future__ import annotations

# Success ratio per experiment, top 20 by run count (the documentation's SQL-alert example).
SUCCESS_RATIO = """SELECT
  experiment_id,
  AVG(CASE WHEN status = 'FINISHED' THEN 1.0 ELSE 0.0 END) AS success_ratio,
  COUNT(status) AS run_count
FROM system.mlflow.runs_latest
WHERE status IS NOT NULL
GROUP BY experiment_id
ORDER BY run_count DESC
LIMIT 20;"""
# One run's name, start date, status and length in minutes.
RUN_DETAILS = """SELECT
  run_name,
  date(start_time) AS start_date,
  status,
  TIMESTAMPDIFF(MINUTE, start_time, end_time) AS run_length_minutes
FROM system.mlflow.runs_latest
WHERE
  experiment_id = :experiment_id
  AND run_id = :run_id
LIMIT 1"""
# The same, joined with the experiment's name.
RUN_DETAILS_WITH_EXPERIMENT = """SELECT
  runs.run_name,
  experiments.name,
  date(runs.start_time) AS start_date,
  runs.status,
  TIMESTAMPDIFF(MINUTE, runs.start_time, runs.end_time) AS run_length_minutes
FROM system.mlflow.runs_latest runs
  JOIN system.mlflow.experiments_latest experiments ON runs.experiment_id = experiments.experiment_id
  WHERE
    runs.experiment_id = :experiment_id
    AND runs.run_id = :run_id
LIMIT 1"""
# Per-metric summary of one run: points, average, max, min and quartiles, rounded.
METRIC_SUMMARY = """SELECT
  metric_name,
  count(metric_time) AS num_data_points,
  ROUND(avg(metric_value), 1) AS avg,
  ROUND(max(metric_value), 1) AS max,
  ROUND(min(metric_value), 1) AS min,
  ROUND(PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY metric_value), 1) AS pct_25,
  ROUND(PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY metric_value), 1) AS median,
  ROUND(PERCENTILE_CONT(0.75) WITHIN GROUP (ORDER BY metric_value), 1) AS pct_75
FROM
  system.mlflow.run_metrics_history
WHERE
  run_id = :run_id
GROUP BY
  metric_name, run_id
LIMIT 100"""
# Dashboard: the whole runs_latest row of one run.
RUN_ROW = """ SELECT *
 FROM system.mlflow.runs_latest
 WHERE experiment_id LIKE trim(:experiment_id)
 AND run_id LIKE trim(:run_id)
 LIMIT 1;"""
# Dashboard: one run's tags as key/value rows.
RUN_TAGS = """ SELECT explode(tags)
 FROM system.mlflow.runs_latest
 WHERE experiment_id LIKE trim(:experiment_id)
 AND run_id LIKE trim(:run_id)
 LIMIT 1000;"""
