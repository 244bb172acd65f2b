"""Alert notifications, sent durably: a signed webhook POST to an allowed URL, or an e-mail through the SMTP server.

An evaluation that must notify writes its deliveries in the transaction that records it (one per subscription),
so a notification exists exactly when its evaluation does. `AlertDeliverer` sends them in every gateway process
the way registry webhook deliveries are sent (gateway/registry/webhooks.py): a claim (`FOR UPDATE SKIP LOCKED`)
takes due deliveries and moves their next attempt past a lease in one statement, so one process at a time holds
each; a webhook answered 2xx or an e-mail the server accepted is done, anything else is tried again after a
delay that doubles (`alerts.retry_seconds`, at most an hour) until `alerts.max_attempts`. At least once: a
receiver may see a delivery again (the same `X-Fedgate-Delivery`).

Webhooks use the registry webhooks' sending (`post_signed`): the URL is checked against `[outbound]
allowed_destinations` when the alert is saved and again before each attempt, the body is signed with the
subscription's secret (`X-Databricks-Signature`, hex HMAC-SHA256), redirects are not followed. The secret is read
from the alert when the delivery is sent, never copied into the delivery, never logged. E-mail goes through
`[smtp]` with the standard library's smtplib in a thread (STARTTLS or TLS, a login whose password comes from the
environment or a file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.config import AlertsSettings, SmtpSettings
from gateway.core.destinations import AllowList, DestinationError, parse_destination
from gateway.db.models import SqlAlertRow
from gateway.observability.metrics import ALERT_NOTIFICATIONS
from gateway.registry.webhooks import DELIVERY_HEADER, post_signed

log = logging.getLogger(__name__)

AGENT = "fedgate-alerts"

_CLAIM = text(
    """
    UPDATE sql_alert_deliveries AS d
    SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease)
    FROM (
        SELECT id FROM sql_alert_deliveries
        WHERE state = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE d.id = due.id
    RETURNING d.id, d.alert_id, d.kind, d.destination, d.subject, d.payload, d.attempts
    """
)
# Only while the claim is this process's: a delivery claimed again after its lease has more attempts.
_DONE = text(
    "UPDATE sql_alert_deliveries SET state = 'delivered', delivered_at = now(), last_status = :status, "
    "last_error = NULL WHERE id = :id AND attempts = :attempts AND state = 'pending'"
)
_RETRY = text(
    "UPDATE sql_alert_deliveries SET state = CASE WHEN :final THEN 'failed' ELSE 'pending' END, "
    "next_attempt_at = now() + make_interval(secs => :delay), last_status = :status, last_error = :error "
    "WHERE id = :id AND attempts = :attempts AND state = 'pending'"
)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    alert_id: str
    kind: str
    destination: str
    subject: str | None
    payload: bytes
    attempts: int


class Mailer:
    """Sends one e-mail through the configured SMTP server (smtplib, in a thread)."""

    def __init__(self, smtp: SmtpSettings, password: str, timeout_seconds: float) -> None:
        self._smtp = smtp
        self._password = password
        self._timeout = timeout_seconds

    @property
    def configured(self) -> bool:
        return bool(self._smtp.host)

    async def send(self, to: str, subject: str, body: str, delivery: str) -> None:
        message = EmailMessage()
        message["From"] = self._smtp.from_address
        message["To"] = to
        message["Subject"] = subject
        message[DELIVERY_HEADER] = delivery
        message.set_content(body)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        smtp = self._smtp
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if smtp.tls:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=self._timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=self._timeout)
        with client:
            if smtp.starttls and not smtp.tls:
                client.starttls(context=context)
            if smtp.username:
                client.login(smtp.username, self._password)
            client.send_message(message)


class AlertDeliverer:
    """Sends due alert notifications, in every gateway process; woken by its own evaluations or every poll."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        allowed: AllowList,
        mailer: Mailer,
        settings: AlertsSettings,
        *,
        batch: int = 20,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._allowed = allowed
        self._mailer = mailer
        self._settings = settings
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alert notifications")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:
                log.exception("alert notifications failed; trying again shortly")
                sent = 0
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)
            self._wake.clear()

    async def deliver_due(self) -> int:
        """Claim the due deliveries and send them side by side; how many were claimed."""
        lease = self._settings.timeout_seconds + 30.0
        async with self._sessionmaker() as session, session.begin():
            found = await session.execute(_CLAIM, {"lease": lease, "batch": self._batch})
            claimed = [Claimed(*row) for row in found.all()]
        if claimed:
            await asyncio.gather(*(self._deliver(delivery) for delivery in claimed))
        return len(claimed)

    async def _deliver(self, delivery: Claimed) -> None:
        if delivery.kind == "email":
            await self._email(delivery)
        else:
            await self._webhook(delivery)

    async def _webhook(self, delivery: Claimed) -> None:
        async with self._sessionmaker() as session:
            alert = await session.get(SqlAlertRow, delivery.alert_id)
        subscription = _webhook_of(alert, delivery.destination) if alert is not None else None
        if subscription is None:
            await self._finish(delivery, None, "the alert or its webhook subscription is gone", final=True)
            return
        try:
            if not self._allowed.allows(parse_destination(delivery.destination)):
                await self._finish(delivery, None, "the URL is no longer an allowed destination", final=True)
                return
        except DestinationError:
            await self._finish(delivery, None, "the URL is not one this gateway can check", final=True)
            return
        status: int | None = None
        try:
            status, _ = await post_signed(
                delivery.destination,
                delivery.payload,
                str(delivery.id),
                self._settings.timeout_seconds,
                secret=subscription.get("secret"),
                agent=AGENT,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The exception's class only: a message may repeat the URL (and whatever it carries).
            error = f"no answer ({type(exc).__name__})"
        else:
            if 200 <= status < 300:
                await self._done(delivery, status)
                return
            error = f"answered {status}"
        await self._failed(delivery, status, error)

    async def _email(self, delivery: Claimed) -> None:
        if not self._mailer.configured:
            await self._finish(delivery, None, "no SMTP server is configured", final=True)
            return
        try:
            await self._mailer.send(
                delivery.destination,
                delivery.subject or "fedgate alert",
                delivery.payload.decode("utf-8", errors="replace"),
                str(delivery.id),
            )
        except (smtplib.SMTPException, OSError, TimeoutError) as exc:
            # The class only: the server's reply may repeat the address or the login.
            await self._failed(delivery, None, f"not accepted ({type(exc).__name__})")
            return
        await self._done(delivery, None)

    async def _done(self, delivery: Claimed, status: int | None) -> None:
        ALERT_NOTIFICATIONS.labels(delivery.kind, "delivered").inc()
        async with self._sessionmaker() as session, session.begin():
            await session.execute(_DONE, {"id": delivery.id, "attempts": delivery.attempts, "status": status})

    async def _failed(self, delivery: Claimed, status: int | None, error: str) -> None:
        log.info(
            "alert notification not accepted",
            extra={"delivery": delivery.id, "alert": delivery.alert_id, "attempt": delivery.attempts, "error": error},
        )
        await self._finish(delivery, status, error, final=delivery.attempts >= self._settings.max_attempts)

    async def _finish(self, delivery: Claimed, status: int | None, error: str, *, final: bool) -> None:
        ALERT_NOTIFICATIONS.labels(delivery.kind, "failed" if final else "retry").inc()
        delay = min(self._settings.retry_seconds * 2 ** (delivery.attempts - 1), 3600.0)
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                _RETRY,
                {
                    "id": delivery.id,
                    "attempts": delivery.attempts,
                    "final": final,
                    "delay": delay,
                    "status": status,
                    "error": error,
                },
            )


def _webhook_of(alert: SqlAlertRow, url: str) -> dict[str, Any] | None:
    for subscription in alert.subscriptions or []:
        webhook = subscription.get("webhook")
        if isinstance(webhook, dict) and webhook.get("url") == url:
            return webhook
    return None
