"""Prometheus metrics of the gateway."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("fedgate_requests_total", "Requests answered by the gateway", ["route", "method", "status"])
REQUEST_LATENCY = Histogram(
    "fedgate_request_duration_seconds",
    "Time from request start to the end of the response",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
UPSTREAM_LATENCY = Histogram(
    "fedgate_upstream_duration_seconds",
    "Time until a store's response headers arrived",
    ["store"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
UPSTREAM_ERRORS = Counter(
    "fedgate_upstream_errors_total", "Store calls that failed without an answer", ["store", "kind"]
)
INDEX_FAILURES = Counter(
    "fedgate_index_failures_total", "Accepted writes whose index rows (or run route) could not be written"
)
POLICY_VERSION = Gauge("fedgate_policy_version", "Version of the access policy this process decides with")
POLICY_RELOADS = Counter("fedgate_policy_reloads_total", "Times the access policy was reloaded")
POLICY_CHANGES_APPLIED = Counter(
    "fedgate_policy_changes_applied_total", "Policy versions this process applied as recorded changes, without a reload"
)
POLICY_DRIFT = Counter(
    "fedgate_policy_drift_total",
    "Periodic reloads that found the policy built from applied changes differing from the stored one (a fault)",
)
DENIED = Counter("fedgate_denied_total", "Requests refused by authorization", ["reason"])
OUTBOX_APPLIED = Counter("fedgate_outbox_applied_total", "Outbox entries applied to the central store")
OUTBOX_FAILURES = Counter("fedgate_outbox_failures_total", "Failed attempts to apply outbox entries", ["kind"])
AUDIT_DROPPED = Counter(
    "fedgate_audit_dropped_total", "Denial audit rows lost: the write queue was full (a flood) or a batch failed"
)
RATE_LIMITED = Counter(
    "fedgate_rate_limited_total", "Requests refused 429 because their address spent its anonymous-denial budget"
)
SECRET_CACHE = Counter(
    "fedgate_secret_cache_reads_total",
    "Secret values a run read from the vault cache ([secrets] cache_seconds): hit, or miss (the vault was asked)",
    ["vault", "result"],
)
STORE_UP = Gauge("fedgate_store_up", "1 when the store answered its last health check, else 0", ["store"])
STORE_CHECK_SECONDS = Gauge("fedgate_store_check_seconds", "How long the store's last health check took", ["store"])
IN_FLIGHT = Gauge("fedgate_in_flight_requests", "Requests this worker is working on (server.max_in_flight caps it)")
QUEUED = Gauge("fedgate_queued_requests", "Requests waiting for a place (server.max_queued caps it)")
OVERLOAD_REFUSED = Counter(
    "fedgate_overload_refused_total",
    "Requests refused by overload protection: queue_full and queue_timeout (503), principal_rate (429)",
    ["reason"],
)
INTENTS_RECOVERED = Counter(
    "fedgate_write_intents_recovered_total",
    "Writes of unknown outcome (their worker died, no answer, a failed after-write hook) checked against the store",
    ["route"],
)
INTENTS_UNNOTED = Counter(
    "fedgate_write_intents_unnoted_total", "Writes whose intent could not be noted before they were sent"
)
OUTBOX_PENDING = Gauge(
    "fedgate_outbox_pending",
    "Outbox entries waiting for the central store (every replica reports the same)",
    ["workspace"],
)
OUTBOX_OLDEST = Gauge("fedgate_outbox_oldest_pending_seconds", "Age of the oldest pending outbox entry", ["workspace"])
INDEX_LAG = Gauge(
    "fedgate_index_lag_seconds", "Seconds since the workspace's last finished index sync pass", ["workspace"]
)
SQL_CAPPED = Counter(
    "fedgate_sql_statements_capped_total",
    "SQL statements refused because the principal they count against had server.sql_max_statements_per_principal "
    "pending or running (429 RESOURCE_EXHAUSTED; an alert run by hand ends ERROR)",
)
PROPERTY_SLOTS_REFUSED = Counter(
    "fedgate_property_slots_refused_total",
    "Run property writes refused because every property slot of the worker stayed taken for the slot wait "
    "(429 REQUEST_LIMIT_EXCEEDED; half of database.pool_size per worker)",
)
ALERT_EVALUATIONS = Counter(
    "fedgate_alert_evaluations_total", "SQL alert evaluations made by this process", ["trigger", "state"]
)
ALERT_NOTIFICATIONS = Counter(
    "fedgate_alert_notifications_total",
    "Attempts to send an alert's notification: delivered, retry (tried again later) or failed (given up)",
    ["kind", "outcome"],
)
