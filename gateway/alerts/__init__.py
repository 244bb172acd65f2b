"""SQL alerts: a query over the system tables run on a schedule as its owner, a condition on its result, and
notifications (signed webhooks, e-mail) when it fires; scheduled through PostgreSQL by every gateway process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.alerts.delivery import Claimed, Mailer, alert_deliverer
from gateway.alerts.recipients import Recipients
from gateway.alerts.routes import SqlAlertsController
from gateway.alerts.scheduler import Scheduler
from gateway.alerts.service import AlertService
from gateway.audit.trail import AuditTrail
from gateway.authz.live import LivePolicy
from gateway.core.config import Settings
from gateway.core.destinations import AllowList
from gateway.delivery import DeliveryWorker
from gateway.delivery.secrets import SubscriberSecrets
from gateway.sql.service import SqlService

__all__ = ["AlertService", "Alerts", "Mailer", "Scheduler", "SqlAlertsController", "alert_deliverer", "build_alerts"]


@dataclass(frozen=True)
class Alerts:
    """The alerts feature of one process: its service, scheduler loop and notification sender."""

    service: AlertService
    scheduler: Scheduler
    deliverer: DeliveryWorker[Claimed]

    def start(self) -> None:
        self.scheduler.start()
        self.deliverer.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.deliverer.stop()


def build_alerts(
    sessionmaker: async_sessionmaker[AsyncSession],
    sql: SqlService,
    policy: LivePolicy,
    allowed: AllowList,
    audit: AuditTrail,
    settings: Settings,
    smtp_password: str,
    subscriber_secrets: SubscriberSecrets,
) -> Alerts:
    """The service, its scheduler (evaluating due alerts) and deliverer (woken by this process's evaluations)."""
    config = settings.alerts
    mailer = Mailer(settings.smtp, smtp_password, config.timeout_seconds)
    recipients = Recipients(policy, config.allowed_recipients)
    service = AlertService(
        sessionmaker,
        sql,
        policy,
        allowed,
        audit,
        config,
        subscriber_secrets,
        email=mailer.configured,
        recipients=recipients,
        public_url=settings.ui.public_url,
    )
    deliverer = alert_deliverer(sessionmaker, allowed, subscriber_secrets, mailer, recipients, config)
    service.notified.append(deliverer.wake)
    scheduler = Scheduler(
        sessionmaker,
        service.evaluate,
        poll_seconds=config.poll_seconds,
        concurrency=config.concurrency,
        history_days=config.history_days,
    )
    return Alerts(service, scheduler, deliverer)
