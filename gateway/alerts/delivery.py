"""Alert notifications, sent durably: a signed webhook POST to an allowed URL, or an e-mail through the SMTP server.

An evaluation that must notify writes its deliveries in the transaction that records it (one per subscription),
so a notification exists exactly when its evaluation does. `alert_deliverer` sends them in every gateway process
with the delivery loop registry webhooks use too (gateway/delivery/worker.py): a claim (`FOR UPDATE SKIP
LOCKED`) takes due deliveries and moves their next attempt past a lease in one statement, so one process at a
time holds each; a webhook answered 2xx or an e-mail the server accepted is done, anything else is tried again
after a delay that doubles (`alerts.retry_seconds`, at most an hour) until `alerts.max_attempts`. At least once:
a receiver may see a delivery again (the same `X-Fedgate-Delivery`). Delivered and failed notifications are
deleted by the same loop `alerts.history_days` after their last attempt; pending ones stay until they settle.

Webhooks are sent as registry webhooks are (`send_webhook` of gateway/delivery/webhook.py): the URL is checked
against `[outbound] allowed_destinations` when the alert is saved and again before each attempt, the body is
signed with the subscription's secret (`X-Databricks-Signature`, hex HMAC-SHA256), redirects are not followed.
The secret is kept sealed in the alert (gateway/delivery/secrets.py) and opened when the delivery is sent, never
copied into the delivery, never logged.
E-mail goes through `[smtp]` with the standard library's smtplib in a thread (STARTTLS or TLS, a login whose
password comes from the environment or a file). The subject is sent on one line, its line breaks as spaces: it
carries the alert's name and its query's value (a run's name, which whoever logs the run chooses), and Python's
e-mail headers refuse a line break, so a subject holding one was never sent, and tried again at every lease, for
ever. A message that cannot be built at all is given up (failed), never retried for ever. Before each e-mail its
address is checked again (gateway/alerts/recipients.py): one that is no longer an active user of the account nor
on `[alerts] allowed_recipients`, or that is not stored exactly as it would be saved now (one bare address), is not
mailed, the delivery given up with that reason. The message's `To` and its envelope recipient are the stored
address itself, never an address read back out of a header.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.alerts.recipients import Recipients, stored_as_mailed
from gateway.alerts.service import secret_field, secret_place
from gateway.core.config import AlertsSettings, SmtpSettings
from gateway.core.destinations import AllowList
from gateway.core.sealing import SealError
from gateway.db.models import SqlAlertDeliveryRow, SqlAlertRow
from gateway.delivery import DELIVERY_HEADER, DeliveryWorker, Outcome, Pacing, send_webhook
from gateway.delivery.secrets import SubscriberSecrets
from gateway.observability.metrics import ALERT_NOTIFICATIONS

AGENT = "fedgate-alerts"
# What Python's e-mail headers refuse as line breaks (str.splitlines' boundaries): a run of them is one space.
LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


def one_line(text: str) -> str:
    """A header's text on one line: every run of line breaks a space."""
    return LINE_BREAKS.sub(" ", text)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    attempts: int
    alert_id: str
    kind: str
    destination: str
    subject: str | None
    payload: bytes


class Mailer:
    """Sends one e-mail through the configured SMTP server (smtplib, in a thread)."""

    def __init__(self, smtp: SmtpSettings, password: str, timeout_seconds: float) -> None:
        self._smtp = smtp
        self._password = password
        self._timeout = timeout_seconds

    @property
    def configured(self) -> bool:
        return bool(self._smtp.host)

    def compose(self, to: str, subject: str, body: str, delivery: str) -> EmailMessage:
        """The message; ValueError when Python's e-mail headers cannot hold it (which no retry changes)."""
        message = EmailMessage()
        message["From"] = self._smtp.from_address
        message["To"] = Address(addr_spec=to)
        message["Subject"] = one_line(subject)
        message[DELIVERY_HEADER] = delivery
        message.set_content(body)
        return message

    async def send(self, message: EmailMessage, to: str) -> None:
        await asyncio.to_thread(self._send, message, to)

    def _send(self, message: EmailMessage, to: str) -> None:
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
            client.send_message(message, to_addrs=[to])  # the stored address, never read back from a header


def alert_deliverer(
    sessionmaker: async_sessionmaker[AsyncSession],
    allowed: AllowList,
    subscriber_secrets: SubscriberSecrets,
    mailer: Mailer,
    recipients: Recipients,
    settings: AlertsSettings,
) -> DeliveryWorker[Claimed]:
    """Sends due alert notifications, in every gateway process; woken by its own evaluations or every poll."""

    async def webhook(delivery: Claimed) -> Outcome:
        async with sessionmaker() as session:
            alert = await session.get(SqlAlertRow, delivery.alert_id)
        subscription = _webhook_of(alert, delivery.destination) if alert is not None else None
        if subscription is None:
            return Outcome.dropped("the alert or its webhook subscription is gone")
        sealed = subscription.get("secret")
        try:
            secret = (
                subscriber_secrets.open(secret_place(delivery.alert_id), secret_field(delivery.destination), sealed)
                if sealed
                else None
            )
        except SealError as exc:  # never sent unsigned: tried again, the operator may restore the key
            return Outcome.retry(None, SubscriberSecrets.unopened(str(sealed), exc))
        return await send_webhook(
            allowed,
            delivery.destination,
            delivery.payload,
            str(delivery.id),
            settings.timeout_seconds,
            secret=secret,
            agent=AGENT,
        )

    async def email(delivery: Claimed) -> Outcome:
        if not mailer.configured:
            return Outcome.dropped("no SMTP server is configured")
        if not stored_as_mailed(delivery.destination):
            # Saved before addresses were checked as mailed (gateway/alerts/recipients.py): Python's e-mail parser may
            # read it as another address (`a(b@example.com` as `a`).
            return Outcome.dropped("the recipient is not one plain e-mail address")
        if await recipients.refusal(delivery.destination) is not None:
            # Allowed when the alert was saved (or saved before the rule), not now: never mailed.
            return Outcome.dropped(
                "the recipient is no longer an active user of this account nor on [alerts] allowed_recipients"
            )
        try:
            message = mailer.compose(
                delivery.destination,
                delivery.subject or "fedgate alert",
                delivery.payload.decode("utf-8", errors="replace"),
                str(delivery.id),
            )
        except ValueError as exc:  # no attempt would build it: given up, not tried again at every lease for ever
            return Outcome.dropped(f"the e-mail could not be built ({type(exc).__name__})")
        try:
            await mailer.send(message, delivery.destination)
        except (smtplib.SMTPException, OSError, TimeoutError) as exc:
            # The class only: the server's reply may repeat the address or the login.
            return Outcome.retry(None, f"not accepted ({type(exc).__name__})")
        return Outcome.delivered(None)

    async def send(delivery: Claimed) -> Outcome:
        return await (email(delivery) if delivery.kind == "email" else webhook(delivery))

    return DeliveryWorker(
        "alert notifications",
        sessionmaker,
        SqlAlertDeliveryRow,
        ("alert_id", "kind", "destination", "subject", "payload"),
        lambda row: Claimed(**row),
        send,
        Pacing(
            poll_seconds=settings.poll_seconds,
            retry_seconds=settings.retry_seconds,
            max_attempts=settings.max_attempts,
            timeout_seconds=settings.timeout_seconds,
        ),
        log_as={"alert": "alert_id"},
        on_settled=lambda delivery, result: ALERT_NOTIFICATIONS.labels(delivery.kind, result).inc(),
        keep_days=settings.history_days,
    )


def _webhook_of(alert: SqlAlertRow, url: str) -> dict[str, Any] | None:
    for subscription in alert.subscriptions or []:
        webhook = subscription.get("webhook")
        if isinstance(webhook, dict) and webhook.get("url") == url:
            return webhook
    return None
