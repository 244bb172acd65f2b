"""Bodies of the alerts API, in the shapes of Databricks' SQL alerts API (databricks-sdk `service/sql.py`).

`/api/2.0/sql/alerts` is Databricks' (legacy-successor) alerts API: `display_name`, `query_id`, `condition`
{`op`, `operand` {`column` {`name`}}, `threshold` {`value` {`double_value` | `string_value` | `bool_value`}},
`empty_result_state`}, `custom_subject`, `custom_body`, `notify_on_ok`, `seconds_to_retrigger`, `state`,
`trigger_time`. What Databricks keeps elsewhere is on the alert here, in the names of its AlertV2 API: the query's
text (`query_text`, when no saved query is named), the column's `aggregation`, the `schedule`
{`quartz_cron_schedule`, `timezone_id`, `pause_status`}, and the `subscriptions` to notify (an e-mail address,
or a webhook URL with the secret its HMAC signature is made with). Read-only extensions: `evaluation_state`
(UNKNOWN | OK | TRIGGERED | ERROR), `error_message`, `last_evaluated_at`, `next_run_time`.
"""

from __future__ import annotations

import msgspec


class _Body(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class OperandColumn(_Body, kw_only=True):
    name: str
    aggregation: str | None = None  # FIRST (default) | MIN | MAX | AVG | SUM | COUNT | COUNT_DISTINCT | MEDIAN | STDDEV
    display: str | None = None


class OperandValue(_Body, kw_only=True):
    double_value: float | None = None
    string_value: str | None = None
    bool_value: bool | None = None


class Operand(_Body, kw_only=True):
    column: OperandColumn | None = None
    value: OperandValue | None = None


class AlertCondition(_Body, kw_only=True):
    op: str
    operand: Operand
    threshold: Operand | None = None
    empty_result_state: str | None = None


class CronSchedule(_Body, kw_only=True):
    quartz_cron_schedule: str | None = None
    quartz_cron_expression: str | None = None  # the Jobs API's name of the same thing, accepted on input
    timezone_id: str | None = None
    pause_status: str | None = None


class WebhookSpec(_Body, kw_only=True):
    url: str
    secret: str | None = None  # never answered


class WebhookAnswer(_Body, kw_only=True):
    url: str
    has_secret: bool = False


class Subscription(_Body, kw_only=True):
    user_email: str | None = None
    webhook: WebhookSpec | None = None


class SubscriptionAnswer(_Body, kw_only=True):
    user_email: str | None = None
    webhook: WebhookAnswer | None = None


class AlertFields(_Body, kw_only=True):
    """What a caller sets: the `alert` of a create or update."""

    display_name: str | None = None
    query_id: str | None = None
    query_text: str | None = None
    condition: AlertCondition | None = None
    custom_subject: str | None = None
    custom_body: str | None = None
    notify_on_ok: bool | None = None
    seconds_to_retrigger: int | None = None
    owner_user_name: str | None = None  # update only: an account admin hands the alert to someone else
    parent_path: str | None = None  # accepted; alerts live in no folder here
    schedule: CronSchedule | None = None
    subscriptions: list[Subscription] | None = None


class CreateAlertRequest(_Body, kw_only=True):
    alert: AlertFields
    auto_resolve_display_name: bool | None = None


class UpdateAlertRequest(_Body, kw_only=True):
    alert: AlertFields
    update_mask: str | None = None
    auto_resolve_display_name: bool | None = None


class Alert(_Body, kw_only=True):
    id: str
    display_name: str
    condition: AlertCondition
    state: str  # UNKNOWN | OK | TRIGGERED (Databricks' v1 states; an evaluation error leaves UNKNOWN)
    owner_user_name: str
    create_time: str
    update_time: str
    lifecycle_state: str = "ACTIVE"
    query_id: str | None = None
    query_text: str | None = None
    custom_subject: str | None = None
    custom_body: str | None = None
    notify_on_ok: bool = False
    seconds_to_retrigger: int = 0
    trigger_time: str | None = None
    schedule: CronSchedule | None = None
    subscriptions: list[SubscriptionAnswer] = msgspec.field(default_factory=list)
    evaluation_state: str = "UNKNOWN"  # UNKNOWN | OK | TRIGGERED | ERROR (AlertV2's evaluation state)
    error_message: str | None = None
    last_evaluated_at: str | None = None
    next_run_time: str | None = None


class ListAlertsResponse(_Body, kw_only=True):
    results: list[Alert]
    next_page_token: str | None = None


class Evaluation(_Body, kw_only=True):
    """One evaluation of an alert: when, why (SCHEDULE or MANUAL), what the query gave and what followed."""

    id: int
    alert_id: str
    trigger: str  # SCHEDULE | MANUAL
    started_at: str
    state: str  # OK | TRIGGERED | UNKNOWN (an empty result so judged) | ERROR
    previous_state: str
    notifications: int  # deliveries queued by this evaluation
    finished_at: str | None = None
    scheduled_for: str | None = None  # the fire time a scheduled evaluation stands for
    value: str | None = None
    row_count: int | None = None
    condition: str | None = None  # as evaluated: `MIN(success_ratio) < 0.9`
    error_message: str | None = None
    statement_id: str | None = None  # the statement run as the owner (GET /api/2.0/sql/statements/{id})


class HistoryResponse(_Body, kw_only=True):
    evaluations: list[Evaluation]
    next_page_token: str | None = None
