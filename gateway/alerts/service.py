"""SQL alerts: create, read, change and delete them, evaluate them as their owner, and record what happened.

Who: an alert belongs to its owner (its creator; an account admin may hand it to someone else). The owner and
account admins see and manage it; to anybody else it does not exist (404). Its query runs with the **owner's**
rights at the time of each evaluation, through the SQL service (gateway/sql/service.py): the owner's grants,
dynamic views judged for the owner (`current_user()`, `is_account_group_member()`), the statement recorded as
the owner's. An owner who is disabled or deleted, or who lost a grant the query needs, makes the evaluation fail
(ERROR, with the reason) — never run with someone else's rights.

The owner's groups are the gateway's (memberships as they are at the evaluation) and those their identity
provider named (an OIDC token's groups claim, a browser sign-in's), which live in the owner's credential, absent
from a background evaluation. So the alert records them (`owner_groups`, by name): when the owner creates,
changes or runs it with such a credential, and whenever the owner signs in through the identity provider
(`owner_signed_in`); otherwise they stay as recorded. Each counts while a gateway group of that name exists, with
its grants as they are at the evaluation. A personal access token names no groups and leaves the record alone;
an alert handed to another owner starts with none of them until that owner signs in, changes or runs it.

What: the query is a saved query's (`query_id`, its text read when the alert is evaluated) or the alert's own
`query_text`; the condition is judged by gateway/alerts/condition.py; notifications are queued with the
evaluation (gateway/alerts/delivery.py) when the alert becomes TRIGGERED, when it stays TRIGGERED past
`seconds_to_retrigger` (when that is set), and when it returns to OK if `notify_on_ok`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.alerts.condition import (
    AGGREGATIONS,
    OPERATORS,
    RESULT_STATES,
    Condition,
    ConditionError,
    Judgement,
    Threshold,
    judge,
)
from gateway.alerts.recipients import BadAddress, Recipients, mail_address
from gateway.alerts.schedule import PAUSE_STATUSES, Schedule, ScheduleError
from gateway.alerts.schemas import (
    Alert,
    AlertCondition,
    AlertFields,
    CronSchedule,
    Evaluation,
    Operand,
    OperandColumn,
    OperandValue,
    Subscription,
    SubscriptionAnswer,
    WebhookAnswer,
)
from gateway.audit.trail import AuditTrail, entry
from gateway.authn.service import BOOTSTRAP_ADMIN
from gateway.authz.live import LivePolicy
from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.authz.service import resolve_principal
from gateway.core.config import AlertsSettings
from gateway.core.destinations import AllowList, DestinationError, parse_destination
from gateway.core.errors import GatewayError, InvalidParameter, InvalidState, PermissionDenied, ResourceNotFound
from gateway.core.numbers import is_number
from gateway.core.principal import Principal
from gateway.core.sealing import SealError
from gateway.db.models import SqlAlertDeliveryRow, SqlAlertEvaluationRow, SqlAlertRow
from gateway.delivery.secrets import Resealed, SubscriberSecrets
from gateway.observability.metrics import ALERT_EVALUATIONS
from gateway.sql.schemas import ExecuteStatementRequest
from gateway.sql.service import SqlService
from gateway.sql.statements import Defaults, Query, classify

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 20
MAX_NAME = 255
MAX_TEXT = 10_000
MAX_PAGE = 200
WAIT = "50s"  # the SQL service's longest wait; a statement still running then is cancelled (an ERROR)
EVALUATED_BY = f"{socket.gethostname()}:{os.getpid()}"


class SavedQueries(Protocol):
    """The saved queries of the SQL editor: the text of one the principal may run (404 / 403 otherwise)."""

    async def text_for(self, principal: Principal, query_id: str) -> str: ...


class EvaluationFailed(Exception):
    """The query gave no result to judge; the message says why, in words the owner may read."""


@dataclass(frozen=True, slots=True)
class Notice:
    event: str  # ALERT_TRIGGERED | ALERT_OK
    subject: str
    body: str
    payload: dict[str, Any]


class AlertService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        sql: SqlService,
        policy: LivePolicy,
        allowed: AllowList,
        audit: AuditTrail,
        settings: AlertsSettings,
        subscriber_secrets: SubscriberSecrets,
        *,
        email: bool,
        recipients: Recipients,
        saved_queries: SavedQueries | None = None,
        public_url: str = "",
    ) -> None:
        self._sessionmaker = sessionmaker
        self._sql = sql
        self._policy = policy
        self._allowed = allowed
        self._audit = audit
        self._settings = settings
        self._secrets = subscriber_secrets
        self._email = email
        self._recipients = recipients
        self.saved_queries = saved_queries
        self._public_url = public_url.rstrip("/")
        # Told when an evaluation queued deliveries (the deliverer's wake).
        self.notified: list[Callable[[], None]] = []

    # -- the API ----------------------------------------------------------------------------------------

    async def create(self, principal: Principal, fields: AlertFields) -> Alert:
        alert_id = str(uuid.uuid4())
        refused = await self._refused_recipients(fields.subscriptions)
        values = self._values(principal, fields, alert_id, creating=True, refused=refused)
        values["id"] = alert_id
        values["owner_id"] = principal.id
        values["owner_name"] = principal.name
        values["owner_groups"] = list(principal.idp_groups)
        async with self._sessionmaker() as session, session.begin():
            await session.execute(insert(SqlAlertRow).values(**values))
            row = await session.get(SqlAlertRow, values["id"])
            assert row is not None
            await self._audit.write(
                session, entry(principal.name, "sql.alert.create", _target(row), "ok", _details(row))
            )
        return self._answer(row)

    async def get(self, principal: Principal, alert_id: str) -> Alert:
        async with self._sessionmaker() as session:
            return self._answer(await self._visible(session, principal, alert_id))

    async def list_alerts(
        self, principal: Principal, page_size: int | None, page_token: str | None
    ) -> tuple[list[Alert], str | None]:
        size = _page_size(page_size)
        start = _page_start(page_token)
        statement = select(SqlAlertRow).order_by(SqlAlertRow.created_at, SqlAlertRow.id).offset(start).limit(size + 1)
        if not principal.account_admin:
            statement = statement.where(SqlAlertRow.owner_id == principal.id)
        async with self._sessionmaker() as session:
            rows = list((await session.scalars(statement)).all())
        following = str(start + size) if len(rows) > size else None
        return [self._answer(row) for row in rows[:size]], following

    async def update(self, principal: Principal, alert_id: str, fields: AlertFields, mask: str | None) -> Alert:
        wanted = _mask(fields, mask)
        handed = fields.owner_user_name if "owner_user_name" in wanted else None
        # Looked up before the alert's row is locked: finding a principal may read the stored policy.
        named = await self._named_owner(principal, handed) if handed else None
        refused = await self._refused_recipients(fields.subscriptions if "subscriptions" in wanted else None)
        async with self._sessionmaker() as session, session.begin():
            row = await self._visible(session, principal, alert_id, lock=True)
            values = self._values(principal, fields, row.id, creating=False, only=wanted, current=row, refused=refused)
            owner = row.owner_id
            if handed:
                values.update(self._new_owner(principal, handed, named, row))
                owner = values.get("owner_id", owner)
            if "owner_groups" not in values and owner is not None and owner == principal.id and principal.idp:
                values["owner_groups"] = list(principal.idp_groups)  # the owner's identity provider, of late
            if values:
                values["updated_at"] = func.now()
                await session.execute(update(SqlAlertRow).where(SqlAlertRow.id == row.id).values(**values))
                await session.refresh(row)
            await self._audit.write(
                session, entry(principal.name, "sql.alert.update", _target(row), "ok", _details(row))
            )
        return self._answer(row)

    async def delete(self, principal: Principal, alert_id: str) -> None:
        """The alert goes, with its history and its notifications not yet sent."""
        async with self._sessionmaker() as session, session.begin():
            row = await self._visible(session, principal, alert_id, lock=True)
            await session.execute(
                delete(SqlAlertDeliveryRow).where(
                    SqlAlertDeliveryRow.alert_id == row.id, SqlAlertDeliveryRow.state == "pending"
                )
            )
            await session.execute(delete(SqlAlertRow).where(SqlAlertRow.id == row.id))
            await self._audit.write(session, entry(principal.name, "sql.alert.delete", _target(row), "ok"))

    async def run(self, principal: Principal, alert_id: str) -> Evaluation:
        """Evaluate now (as the owner, whoever asks), and answer the evaluation. The statement counts against the
        statement cap of whoever asks: the run is their request, not the owner's."""
        async with self._sessionmaker() as session:
            row = await self._visible(session, principal, alert_id)
        self._audit.record(entry(principal.name, "sql.alert.run", _target(row), "ok"))
        if row.owner_id is not None and row.owner_id == principal.id and principal.idp:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(_groups_of(principal).where(SqlAlertRow.id == row.id))
        evaluation = await self.evaluate(row.id, "MANUAL", caller=principal)
        if evaluation is None:
            raise ResourceNotFound(f"Alert {alert_id[:64]} does not exist.")
        return evaluation

    async def owner_signed_in(self, principal: Principal) -> None:
        """The person signed in through the identity provider: their alerts count the groups it named now."""
        if principal.id is None or not principal.idp:
            return
        async with self._sessionmaker() as session, session.begin():
            await session.execute(_groups_of(principal))

    async def history(
        self, principal: Principal, alert_id: str, page_size: int | None, page_token: str | None
    ) -> tuple[list[Evaluation], str | None]:
        """Evaluations, newest first."""
        size = _page_size(page_size)
        async with self._sessionmaker() as session:
            row = await self._visible(session, principal, alert_id)
            statement = (
                select(SqlAlertEvaluationRow)
                .where(SqlAlertEvaluationRow.alert_id == row.id)
                .order_by(SqlAlertEvaluationRow.id.desc())
                .limit(size + 1)
            )
            if page_token:
                statement = statement.where(SqlAlertEvaluationRow.id < _page_start(page_token))
            found = list((await session.scalars(statement)).all())
        following = str(found[size - 1].id) if len(found) > size else None
        return [_evaluation(item) for item in found[:size]], following

    # -- evaluation ---------------------------------------------------------------------------------------

    async def evaluate(
        self, alert_id: str, trigger: str, scheduled_for: datetime | None = None, *, caller: Principal | None = None
    ) -> Evaluation | None:
        """Run the alert's query as its owner, judge the result, record it, queue notifications; None if it is gone.
        `caller`: who asked for a MANUAL evaluation, whose statement cap it counts against."""
        started = datetime.now(UTC)
        async with self._sessionmaker() as session:
            row = await session.get(SqlAlertRow, alert_id)
        if row is None:
            return None
        condition = _condition(row.condition)
        statement_id: str | None = None
        judgement: Judgement | None = None
        error: str | None = None
        try:
            owner = self.owner(row)
            query = await self._query_text(owner, row)
            # A scheduled evaluation is never refused by the owner's statement cap: it is no caller's request,
            # and `alerts.concurrency` bounds it. A manual one (`run`) is a request like any statement, of the
            # caller's: it counts against the cap of whoever pressed run, not the owner's.
            manual = trigger == "MANUAL"
            statement_id, columns, rows = await self._result(owner, query, capped=manual, counted=caller)
            judgement = judge(condition, columns, rows)
        except EvaluationFailed as exc:
            error = str(exc)
        except ConditionError as exc:
            error = str(exc)
        except GatewayError as exc:
            error = exc.message
        except Exception:
            log.exception("alert %s: evaluation failed unexpectedly", alert_id)
            error = "The evaluation failed inside the gateway."
        return await self._record(alert_id, trigger, scheduled_for, started, condition, judgement, error, statement_id)

    def owner(self, row: SqlAlertRow) -> Principal:
        """The owner as the policy knows them now: their grants and groups at this evaluation."""
        if row.owner_id is None:
            return BOOTSTRAP_ADMIN
        snapshot = self._policy.snapshot
        info = snapshot.principal(row.owner_id)
        if info is None or not info.active:
            raise EvaluationFailed(
                f"The alert's owner {row.owner_name} is disabled or deleted; an account admin can give the alert "
                "to someone else (owner_user_name)."
            )
        # The groups recorded from the owner's identity provider (the module).
        return snapshot.acting_for(info, row.owner_groups or (), via="alert")

    async def _query_text(self, owner: Principal, row: SqlAlertRow) -> str:
        if row.query_id:
            if self.saved_queries is None:
                raise EvaluationFailed("Saved queries are not served by this gateway; give the alert a query_text.")
            return await self.saved_queries.text_for(owner, row.query_id)
        assert row.query_text is not None  # the table's check: one of the two
        return row.query_text

    async def _result(
        self, owner: Principal, query: str, *, capped: bool, counted: Principal | None
    ) -> tuple[str, list[str], list[list[str | None]]]:
        request = ExecuteStatementRequest(statement=query, wait_timeout=WAIT, on_wait_timeout="CANCEL")
        answer = await self._sql.execute(owner, request, capped=capped, counted=counted)
        status = answer.status
        if status.state != "SUCCEEDED" or answer.manifest is None:
            reason = status.error.message if status.error is not None else f"the statement ended {status.state}"
            raise EvaluationFailed(f"The query did not succeed: {reason}")
        columns = [column.name for column in answer.manifest.schema.columns]
        rows: list[list[str | None]] = list(answer.result.data_array or []) if answer.result is not None else []
        for index in range(1, answer.manifest.total_chunk_count):
            chunk = await self._sql.chunk(owner, answer.statement_id, index)
            rows.extend(chunk.data_array or [])
        return answer.statement_id, columns, rows

    async def _record(
        self,
        alert_id: str,
        trigger: str,
        scheduled_for: datetime | None,
        started: datetime,
        condition: Condition,
        judgement: Judgement | None,
        error: str | None,
        statement_id: str | None,
    ) -> Evaluation | None:
        async with self._sessionmaker() as session, session.begin():
            row = await session.scalar(select(SqlAlertRow).where(SqlAlertRow.id == alert_id).with_for_update())
            if row is None:
                return None  # deleted while it was evaluated
            now = await session.scalar(select(func.now()))
            assert isinstance(now, datetime)
            previous = row.state
            if judgement is None:
                state, evaluation_state = "UNKNOWN", "ERROR"
            else:
                state = evaluation_state = judgement.state
            notice = self._notice(row, previous, state, judgement, condition, now)
            evaluation_id = await session.scalar(
                insert(SqlAlertEvaluationRow)
                .values(
                    alert_id=row.id,
                    trigger=trigger,
                    scheduled_for=scheduled_for,
                    started_at=started,
                    state=evaluation_state,
                    previous_state=previous,
                    value=judgement.value if judgement else None,
                    row_count=judgement.row_count if judgement else None,
                    condition=condition.describe(),
                    error_message=error,
                    statement_id=statement_id,
                    notifications=0,
                    evaluated_by=EVALUATED_BY,
                )
                .returning(SqlAlertEvaluationRow.id)
            )
            assert isinstance(evaluation_id, int)
            queued = 0
            if notice is not None:
                notice.payload["evaluation_id"] = str(evaluation_id)
                queued = await self._queue(session, row, evaluation_id, notice)
                await session.execute(
                    update(SqlAlertEvaluationRow)
                    .where(SqlAlertEvaluationRow.id == evaluation_id)
                    .values(notifications=queued)
                )
            values: dict[str, Any] = {
                "state": state,
                "evaluation_state": evaluation_state,
                "error_message": error,
                "last_evaluated_at": now,
            }
            if state == "TRIGGERED" and previous != "TRIGGERED":
                values["trigger_time"] = now
            if queued:
                values["last_notified_at"] = now
            await session.execute(update(SqlAlertRow).where(SqlAlertRow.id == row.id).values(**values))
            stored = await session.scalar(
                select(SqlAlertEvaluationRow)
                .where(SqlAlertEvaluationRow.id == evaluation_id)
                .execution_options(populate_existing=True)
            )
            assert stored is not None
            answer = _evaluation(stored)
        ALERT_EVALUATIONS.labels(trigger, answer.state).inc()
        if queued:
            for callback in self.notified:
                callback()
        return answer

    def _notice(
        self,
        row: SqlAlertRow,
        previous: str,
        state: str,
        judgement: Judgement | None,
        condition: Condition,
        now: datetime,
    ) -> Notice | None:
        if state == "TRIGGERED":
            again = (
                previous == "TRIGGERED"
                and row.seconds_to_retrigger > 0
                and row.last_notified_at is not None
                and now - row.last_notified_at >= timedelta(seconds=row.seconds_to_retrigger)
            )
            if previous == "TRIGGERED" and not again:
                return None
            event = "ALERT_TRIGGERED"
        elif state == "OK" and previous == "TRIGGERED" and row.notify_on_ok:
            event = "ALERT_OK"
        else:
            return None
        value = judgement.value if judgement else None
        words = {
            "ALERT_NAME": row.display_name,
            "ALERT_STATUS": state,
            "ALERT_CONDITION": condition.describe(),
            "ALERT_COLUMN": condition.column,
            "ALERT_THRESHOLD": "" if condition.threshold.value is None else str(condition.threshold.value),
            "QUERY_RESULT_VALUE": "null" if value is None else value,
            "ALERT_URL": f"{self._public_url}/api/2.0/sql/alerts/{row.id}" if self._public_url else row.id,
        }
        subject = _fill(row.custom_subject, words) or f"[fedgate] {row.display_name} is {state}"
        body = _fill(row.custom_body, words) or (
            f"Alert {row.display_name} is {state}: {condition.describe()} "
            f"(the value is {words['QUERY_RESULT_VALUE']}, over {judgement.row_count if judgement else 0} rows).\n"
            f"Evaluated at {_time(now)} as {row.owner_name}.\n"
        )
        payload: dict[str, Any] = {
            "event": event,
            "alert_id": row.id,
            "display_name": row.display_name,
            "state": state,
            "previous_state": previous,
            "condition": condition.describe(),
            "column": condition.column,
            "aggregation": condition.aggregation or "FIRST",
            "op": condition.op,
            "threshold": condition.threshold.value,
            "value": value,
            "row_count": judgement.row_count if judgement else 0,
            "evaluated_at": _time(now),
            "owner_user_name": row.owner_name,
            "subject": subject,
            "body": body,
        }
        if row.query_id:
            payload["query_id"] = row.query_id
        return Notice(event, subject, body, payload)

    async def _queue(self, session: AsyncSession, row: SqlAlertRow, evaluation_id: int, notice: Notice) -> int:
        rows: list[tuple[str, str, str | None, bytes]] = []
        for subscription in row.subscriptions or []:
            webhook = subscription.get("webhook")
            if isinstance(webhook, dict) and webhook.get("url"):
                body = msgspec.json.encode(notice.payload)
                rows.append(("webhook", str(webhook["url"]), None, body))
            elif subscription.get("user_email"):
                rows.append(("email", str(subscription["user_email"]), notice.subject, notice.body.encode()))
        if rows:
            await session.execute(
                insert(SqlAlertDeliveryRow),
                [
                    {
                        "alert_id": row.id,
                        "evaluation_id": evaluation_id,
                        "kind": kind,
                        "destination": destination,
                        "subject": subject,
                        "payload": payload,
                    }
                    for kind, destination, subject, payload in rows
                ],
            )
        return len(rows)

    # -- checks ---------------------------------------------------------------------------------------------

    async def _visible(
        self, session: AsyncSession, principal: Principal, alert_id: str, *, lock: bool = False
    ) -> SqlAlertRow:
        statement = select(SqlAlertRow).where(SqlAlertRow.id == alert_id[:64])
        if lock:
            statement = statement.with_for_update()
        row = await session.scalar(statement)
        if row is None or not (principal.account_admin or (row.owner_id is not None and row.owner_id == principal.id)):
            raise ResourceNotFound(f"Alert {alert_id[:64]} does not exist.")
        return row

    async def _named_owner(self, principal: Principal, name: str) -> PrincipalInfo | InvalidState | None:
        """The active user or service principal an account admin names as owner, the name's conflict, or None (also
        for anyone else, whom `_new_owner` refuses). One made through another replica moments ago is found in the
        stored policy."""
        if not principal.account_admin:
            return None

        def owner(snapshot: PolicySnapshot) -> PrincipalInfo | None:
            info = resolve_principal(snapshot, name)
            return info if info is not None and info.active and info.kind != "group" else None

        try:
            return await self._policy.found(owner)
        except InvalidState as exc:
            return exc

    async def _refused_recipients(self, given: Sequence[Subscription] | None) -> dict[str, str]:
        """Why each e-mail address given may not be mailed (gateway/alerts/recipients.py); absent: it may. Looked up
        before the alert's row is locked: finding a user may read the stored policy."""
        refused: dict[str, str] = {}
        for subscription in (given or [])[:MAX_SUBSCRIPTIONS]:
            try:
                address = mail_address(subscription.user_email or "")
            except BadAddress:
                continue  # refused as no address by `_subscriptions`
            if address not in refused:
                reason = await self._recipients.refusal(address)
                if reason is not None:
                    refused[address] = reason
        return refused

    def _new_owner(
        self, principal: Principal, name: str, named: PrincipalInfo | InvalidState | None, row: SqlAlertRow
    ) -> dict[str, Any]:
        """The owner an account admin names (`_named_owner` found it). Another owner's identity-provider groups are
        not known here: none count until that owner signs in, changes or runs the alert."""
        if not principal.account_admin:
            raise PermissionDenied("Only an account admin can give an alert to another owner.")
        if isinstance(named, InvalidState):
            raise InvalidParameter(named.message) from None
        if named is None:
            raise InvalidParameter(f"'{name[:128]}' is not an active user or service principal.")
        info = named
        if info.id == row.owner_id:
            return {}
        groups = list(principal.idp_groups) if info.id == principal.id else []
        return {"owner_id": info.id, "owner_name": info.name, "owner_groups": groups}

    def _values(
        self,
        principal: Principal,
        fields: AlertFields,
        alert_id: str,
        *,
        creating: bool,
        only: frozenset[str] | None = None,
        current: SqlAlertRow | None = None,
        refused: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Column values of the fields given (all on create), each checked; 400 for the first bad one."""

        def wanted(name: str) -> bool:
            return creating or only is None or name in only

        values: dict[str, Any] = {}
        if wanted("display_name"):
            name = (fields.display_name or "").strip()
            # Printable, as a saved query's name: a format character (U+202E RIGHT-TO-LEFT OVERRIDE, U+200B) or a
            # line break turned the console's list and the notification's subject, the gateway's own words after
            # the name ("is TRIGGERED") included, into what the name's author chose them to look like.
            if not name or len(name) > MAX_NAME or not name.isprintable():
                raise InvalidParameter(f"display_name is required: 1 to {MAX_NAME} printable characters.")
            values["display_name"] = name
        query_id = current.query_id if current is not None else None
        query_text = current.query_text if current is not None else None
        if wanted("query_id"):
            query_id = (fields.query_id or "").strip() or None
            if query_id is not None and self.saved_queries is None:
                raise InvalidParameter("Saved queries are not served by this gateway; give the alert a query_text.")
            if query_id is not None and not wanted("query_text"):
                query_text = None  # the saved query replaces the alert's own text
        if wanted("query_text"):
            query_text = (fields.query_text or "").strip() or None
            if query_text is not None:
                _check_query(query_text)
                if not wanted("query_id"):
                    query_id = None  # the alert's own text replaces the saved query
        if query_id is not None and query_text is not None:
            raise InvalidParameter("Give the alert a query_id or a query_text, not both.")
        if query_id is None and query_text is None:
            raise InvalidParameter("An alert needs a query: a saved query's query_id, or a query_text.")
        values["query_id"] = query_id
        values["query_text"] = query_text
        if wanted("condition"):
            if fields.condition is None:
                raise InvalidParameter("condition is required: op, operand.column.name and threshold.value.")
            values["condition"] = _stored_condition(fields.condition)
        for name in ("custom_subject", "custom_body"):
            if wanted(name):
                value = getattr(fields, name)
                if value is not None and len(value) > MAX_TEXT:
                    raise InvalidParameter(f"{name} is at most {MAX_TEXT} characters.")
                values[name] = value or None
        if wanted("notify_on_ok"):
            values["notify_on_ok"] = bool(fields.notify_on_ok)
        if wanted("seconds_to_retrigger"):
            seconds = fields.seconds_to_retrigger or 0
            if not 0 <= seconds <= 366 * 86400:
                raise InvalidParameter("seconds_to_retrigger is between 0 and a year.")
            values["seconds_to_retrigger"] = seconds
        if wanted("schedule"):
            values.update(self._schedule(fields.schedule))
        if wanted("subscriptions"):
            values["subscriptions"] = self._subscriptions(alert_id, fields.subscriptions or [], current, refused or {})
        return values

    def _schedule(self, given: CronSchedule | None) -> dict[str, Any]:
        if given is None:
            return {"schedule": None, "timezone_id": "UTC", "paused": False, "next_run_at": None}
        expression = given.quartz_cron_schedule or given.quartz_cron_expression
        if not expression:
            raise InvalidParameter("schedule.quartz_cron_schedule is required, e.g. '0 0/15 * * * ?'.")
        pause = given.pause_status or "UNPAUSED"
        if pause not in PAUSE_STATUSES:
            raise InvalidParameter(f"schedule.pause_status is one of {', '.join(PAUSE_STATUSES)}.")
        try:
            schedule = Schedule.parse(expression, given.timezone_id)
        except ScheduleError as exc:
            raise InvalidParameter(f"schedule: {exc}") from None
        now = datetime.now(UTC)
        if schedule.shortest_interval(now) < self._settings.min_interval_seconds:
            raise InvalidParameter(
                f"schedule: '{schedule.quartz}' fires more often than every {self._settings.min_interval_seconds:g} "
                "seconds (alerts.min_interval_seconds)."
            )
        return {
            "schedule": schedule.quartz,
            "timezone_id": schedule.timezone_id,
            "paused": pause == "PAUSED",
            "next_run_at": None if pause == "PAUSED" else schedule.next_after(now),
        }

    def _subscriptions(
        self, alert_id: str, given: Sequence[Subscription], current: SqlAlertRow | None, refused: dict[str, str]
    ) -> list[dict[str, Any]]:
        """As stored: a webhook's secret sealed (gateway/delivery/secrets.py), bound to the alert and the URL; an
        update that repeats a URL without a secret keeps the sealed one. An e-mail address in `refused` (neither a
        user of the account nor allowed by the operator) is refused with its reason."""
        if len(given) > MAX_SUBSCRIPTIONS:
            raise InvalidParameter(f"An alert has at most {MAX_SUBSCRIPTIONS} subscriptions.")
        old_secrets = {
            str(item["webhook"]["url"]): item["webhook"].get("secret")
            for item in (current.subscriptions if current is not None else [])
            if isinstance(item.get("webhook"), dict)
        }
        stored: list[dict[str, Any]] = []
        for subscription in given:
            if (subscription.user_email is None) == (subscription.webhook is None):
                raise InvalidParameter("A subscription names one of user_email and webhook.")
            if subscription.user_email is not None:
                try:
                    address = mail_address(subscription.user_email)
                except BadAddress as exc:
                    shown = json.dumps(subscription.user_email[:64])
                    raise InvalidParameter(f"{shown} is not one e-mail address: {exc}.") from None
                if not self._email:
                    raise InvalidParameter("No SMTP server is configured ([smtp] host): e-mail cannot be sent.")
                if address in refused:
                    raise InvalidParameter(refused[address])
                stored.append({"user_email": address})
                continue
            assert subscription.webhook is not None
            url = self._check_url(subscription.webhook.url)
            new_secret = subscription.webhook.secret
            secret = old_secrets.get(url) if new_secret is None else None
            if new_secret:
                secret = self._secrets.seal(secret_place(alert_id), secret_field(url), new_secret)
            stored.append({"webhook": {"url": url, **({"secret": secret} if secret else {})}})
        return stored

    def _check_url(self, value: str) -> str:
        try:
            destination = parse_destination(value)
        except DestinationError as exc:
            raise InvalidParameter(f"Invalid webhook URL: {exc}.") from None
        if not self._allowed.allows(destination):
            raise PermissionDenied(
                f"The webhook URL {destination.origin} is not an allowed destination of this gateway ([outbound] "
                "allowed_destinations); ask an account admin to allow it."
            )
        return value

    # -- answers ------------------------------------------------------------------------------------------

    def _answer(self, row: SqlAlertRow) -> Alert:
        condition = msgspec.convert(row.condition, AlertCondition)
        schedule = None
        if row.schedule:
            schedule = CronSchedule(
                quartz_cron_schedule=row.schedule,
                timezone_id=row.timezone_id,
                pause_status="PAUSED" if row.paused else "UNPAUSED",
            )
        subscriptions = []
        for item in row.subscriptions or []:
            webhook = item.get("webhook")
            if isinstance(webhook, dict):
                url = str(webhook.get("url", ""))
                subscriptions.append(
                    SubscriptionAnswer(webhook=WebhookAnswer(url=url, has_secret=bool(webhook.get("secret"))))
                )
            else:
                subscriptions.append(SubscriptionAnswer(user_email=str(item.get("user_email", ""))))
        return Alert(
            id=row.id,
            display_name=row.display_name,
            condition=condition,
            state=row.state,
            owner_user_name=row.owner_name,
            create_time=_time(row.created_at),
            update_time=_time(row.updated_at),
            query_id=row.query_id,
            query_text=row.query_text,
            custom_subject=row.custom_subject,
            custom_body=row.custom_body,
            notify_on_ok=row.notify_on_ok,
            seconds_to_retrigger=row.seconds_to_retrigger,
            trigger_time=_time(row.trigger_time) if row.trigger_time else None,
            schedule=schedule,
            subscriptions=subscriptions,
            evaluation_state=row.evaluation_state,
            error_message=row.error_message,
            last_evaluated_at=_time(row.last_evaluated_at) if row.last_evaluated_at else None,
            next_run_time=_time(row.next_run_at) if row.next_run_at else None,
        )


# -- helpers --------------------------------------------------------------------------------------------------


def _check_query(text: str) -> None:
    if len(text) > MAX_TEXT * 10:
        raise InvalidParameter("query_text is too long.")
    statement = classify(text, Defaults(None, None))
    if not isinstance(statement, Query):
        raise InvalidParameter("An alert's query is a SELECT.")
    if statement.parameters:
        raise InvalidParameter("An alert's query cannot have parameters (:name): nobody gives their values.")


def _stored_condition(given: AlertCondition) -> dict[str, Any]:
    if given.op not in OPERATORS:
        raise InvalidParameter(f"condition.op is one of {', '.join(OPERATORS)}.")
    column = given.operand.column
    if column is None or not column.name.strip():
        raise InvalidParameter("condition.operand.column.name names the result's column to judge.")
    aggregation = (column.aggregation or "").upper() or None
    if aggregation is not None and aggregation not in AGGREGATIONS:
        raise InvalidParameter(f"condition.operand.column.aggregation is one of {', '.join(AGGREGATIONS)}.")
    empty = given.empty_result_state or "UNKNOWN"
    if empty not in RESULT_STATES:
        raise InvalidParameter(f"condition.empty_result_state is one of {', '.join(RESULT_STATES)}.")
    threshold: OperandValue | None = given.threshold.value if given.threshold is not None else None
    if given.op != "IS_NULL":
        given_values = (
            [v for v in (threshold.double_value, threshold.string_value, threshold.bool_value) if v is not None]
            if threshold is not None
            else []
        )
        if len(given_values) != 1:
            raise InvalidParameter("condition.threshold.value has one of double_value, string_value and bool_value.")
        assert threshold is not None
        if (
            threshold.double_value is None
            and given.op not in ("EQUAL", "NOT_EQUAL")
            and threshold.bool_value is not None
        ):
            raise InvalidParameter("A bool_value threshold compares with EQUAL or NOT_EQUAL.")
    stored = AlertCondition(
        op=given.op,
        operand=Operand(
            column=OperandColumn(name=column.name.strip(), aggregation=aggregation, display=column.display)
        ),
        threshold=Operand(value=threshold) if threshold is not None and given.op != "IS_NULL" else None,
        empty_result_state=empty,
    )
    return dict(msgspec.to_builtins(stored))


def _condition(stored: dict[str, Any]) -> Condition:
    given = msgspec.convert(stored, AlertCondition)
    assert given.operand.column is not None
    value = given.threshold.value if given.threshold is not None else None
    if value is None:
        threshold = Threshold("none", None)
    elif value.double_value is not None:
        threshold = Threshold("double", float(value.double_value))
    elif value.bool_value is not None:
        threshold = Threshold("bool", value.bool_value)
    else:
        threshold = Threshold("string", value.string_value)
    return Condition(
        column=given.operand.column.name,
        aggregation=given.operand.column.aggregation,
        op=given.op,
        threshold=threshold,
        empty_result_state=given.empty_result_state or "UNKNOWN",
    )


def _mask(fields: AlertFields, mask: str | None) -> frozenset[str]:
    """The fields an update changes: those the mask names (`*`: all), else those the body gives."""
    known = set(AlertFields.__struct_fields__) - {"parent_path"}
    if mask is None or not mask.strip():
        return frozenset(name for name in known if getattr(fields, name) is not None)
    names = {name.strip().split(".")[0] for name in mask.split(",") if name.strip()}
    if "*" in names:
        return frozenset(known)
    unknown = sorted(names - known)
    if unknown:
        raise InvalidParameter(f"update_mask names unknown field '{unknown[0][:64]}'.")
    return frozenset(names)


def _fill(template: str | None, words: dict[str, str]) -> str:
    """Databricks' template words, `{{ALERT_NAME}}` and the like, replaced; nothing else is evaluated."""
    if not template:
        return ""
    for word, value in words.items():
        template = template.replace("{{" + word + "}}", value)
    return template


def _page_size(size: int | None) -> int:
    if size is None or size == 0:
        return 100
    if not 1 <= size <= MAX_PAGE:
        raise InvalidParameter(f"page_size is between 1 and {MAX_PAGE}.")
    return size


def _page_start(token: str | None) -> int:
    if not token:
        return 0
    if not is_number(token):
        raise InvalidParameter("Invalid page_token.")
    return int(token)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def reseal_secrets(
    sessionmaker: async_sessionmaker[AsyncSession], subscriber_secrets: SubscriberSecrets
) -> Resealed:
    """Every alert's webhook secrets sealed under the active vault key (`fedgate secrets rotate-key`): one short
    transaction, the alerts that have a secret locked as an update or an evaluation would lock them."""
    done = Resealed()
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.scalars(
                select(SqlAlertRow)
                .where(text("jsonb_path_exists(subscriptions, '$[*].webhook.secret')"))
                .with_for_update()
            )
        ).all()
        for row in rows:
            changed = False
            subscriptions = [dict(item) for item in row.subscriptions or []]
            for item in subscriptions:
                webhook = item.get("webhook")
                if not isinstance(webhook, dict) or not webhook.get("secret"):
                    continue
                stored = str(webhook["secret"])
                try:
                    again = subscriber_secrets.reseal(secret_place(row.id), secret_field(str(webhook["url"])), stored)
                except SealError:
                    done.unreadable += 1
                    done.count(SubscriberSecrets.key_id(stored) or "?")
                    continue
                if again is not None:
                    item["webhook"] = {**webhook, "secret": again}
                    done.rotated += 1
                    changed = True
            if changed:
                await session.execute(
                    update(SqlAlertRow).where(SqlAlertRow.id == row.id).values(subscriptions=subscriptions)
                )
    return done


def secret_place(alert_id: str) -> str:
    """Where an alert's sealed webhook secrets belong (their associated data, with `secret_field`)."""
    return f"sql_alert:{alert_id}"


def secret_field(url: str) -> str:
    """Which of the alert's secrets: its webhook subscription's, by URL."""
    return f"webhook:{url}"


def _groups_of(principal: Principal) -> Any:
    """The principal's alerts record the groups their identity provider named in this credential (none changed
    where they are the same)."""
    groups = list(principal.idp_groups)
    return (
        update(SqlAlertRow)
        .where(SqlAlertRow.owner_id == principal.id, SqlAlertRow.owner_groups.is_distinct_from(groups))
        .values(owner_groups=groups)
    )


def _target(row: SqlAlertRow) -> str:
    return f"sql_alert:{row.id}"


def _details(row: SqlAlertRow) -> dict[str, Any]:
    """What the audit log keeps of an alert: never a webhook's secret, and of its URL only the origin (the path or
    query may carry a token, `https://hooks.slack.com/services/...`, `?token=`); the owner and account admins
    read the URL itself from the alert."""
    return {
        "display_name": row.display_name,
        "owner": row.owner_name,
        "owner_groups": list(row.owner_groups or ()),
        "query_id": row.query_id,
        "schedule": row.schedule,
        "subscriptions": [
            _origin(str(item["webhook"].get("url", "")))
            if isinstance(item.get("webhook"), dict)
            else item.get("user_email")
            for item in row.subscriptions or []
        ],
    }


def _origin(url: str) -> str:
    """Where a webhook posts, without what its path or query may carry."""
    try:
        return f"{parse_destination(url).origin}/..."
    except DestinationError:
        return "(a URL this gateway cannot check)"


def _evaluation(row: SqlAlertEvaluationRow) -> Evaluation:
    return Evaluation(
        id=row.id,
        alert_id=row.alert_id,
        trigger=row.trigger,
        started_at=_time(row.started_at),
        finished_at=_time(row.finished_at) if row.finished_at else None,
        scheduled_for=_time(row.scheduled_for) if row.scheduled_for else None,
        state=row.state,
        previous_state=row.previous_state,
        value=row.value,
        row_count=row.row_count,
        condition=row.condition,
        error_message=row.error_message,
        statement_id=row.statement_id,
        notifications=row.notifications,
    )
