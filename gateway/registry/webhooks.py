"""Registry webhooks: the workflow's events POSTed, signed, to URLs the operator allows, durably.

Databricks' registry webhooks API (`/api/2.0/mlflow/registry-webhooks/create|list|update|delete|test`, the
stock `databricks-sdk`'s `w.model_registry.create_webhook` and friends), for the events of the gateway's
registry workflow. A webhook is one model's (`model_name`) or registry-wide (the workspace's); it wants some
events and names an `http_url_spec` (`url`, optional `secret`, `authorization`, `enable_ssl_verification`).

- Who: a model's webhooks are managed by CAN_MANAGE on the model; registry-wide ones by CAN_MANAGE on the
  workspace. The secret and the Authorization value are never answered, logged or audited, and are stored
  sealed under the built-in vault's keys (gateway/delivery/secrets.py), opened only to sign and send.
- Where: the URL must parse strictly and be on `[outbound] allowed_destinations` (gateway/core/destinations.py)
  when the webhook is created or updated (400 or 403 otherwise) and again when each delivery is sent (a
  destination the operator took off the list since gets nothing). Redirects are not followed.
- What: `X-Databricks-Signature` is the hex HMAC-SHA256 of the body under the webhook's secret (when it has
  one), as Databricks sends it; `X-Fedgate-Delivery` names the delivery, the same on every retry of it, so a
  receiver can drop a repeat.
- When: `enqueue` writes the deliveries in the transaction that appends the activities (RegistryWorkflow), so
  an event exists exactly when its activity does. `deliverer` sends them with the shared delivery loop
  (gateway/delivery/worker.py): in every gateway process, a claim (`FOR UPDATE SKIP LOCKED`) takes due
  deliveries, so one process at a time holds each; a delivery answered 2xx is done, any other answer or no
  answer is tried again after a delay that doubles (`webhook_retry_seconds`, at most an hour) until
  `webhook_max_attempts`. A process that dies mid-delivery leaves it to be claimed again once the lease has
  passed. Deliveries are at least once: a receiver that answered after the lease, or whose 2xx was lost, sees
  the delivery again. Delivered and failed ones are deleted by the same loop `webhook_history_days` after their
  last attempt.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import msgspec
from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.authn.service import BOOTSTRAP_ADMIN
from gateway.authz.decide import Authorizer
from gateway.authz.levels import RANK, Level, model_object, workspace_domain, workspace_object
from gateway.authz.policy import PolicySnapshot
from gateway.core.destinations import AllowList, DestinationError, parse_destination
from gateway.core.errors import GatewayError, InvalidParameter, PermissionDenied, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.numbers import is_number
from gateway.core.principal import Principal
from gateway.core.sealing import SealError
from gateway.db.models import RegistryCommentRow, RegistryWebhookDeliveryRow, RegistryWebhookRow
from gateway.delivery import MAX_ANSWER_CHARS, DeliveryWorker, Outcome, Pacing, post_signed, send_webhook
from gateway.delivery.secrets import Resealed, SubscriberSecrets
from gateway.registry.repository import StoredActivity, millis
from gateway.registry.service import Model, ModelIds

MAX_WEBHOOKS_PER_MODEL = 100
STATUSES = ("ACTIVE", "TEST_MODE", "DISABLED")

# Databricks' events the workflow raises, and the gateway's own for decisions and aliases.
STAGE_EVENTS = {
    "Staging": "MODEL_VERSION_TRANSITIONED_TO_STAGING",
    "Production": "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
    "Archived": "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED",
}
REQUEST_EVENTS = {
    "Staging": "TRANSITION_REQUEST_TO_STAGING_CREATED",
    "Production": "TRANSITION_REQUEST_TO_PRODUCTION_CREATED",
    "Archived": "TRANSITION_REQUEST_TO_ARCHIVED_CREATED",
}
EVENTS = frozenset(
    {
        "TRANSITION_REQUEST_CREATED",
        *REQUEST_EVENTS.values(),
        "TRANSITION_REQUEST_APPROVED",
        "TRANSITION_REQUEST_REJECTED",
        "TRANSITION_REQUEST_CANCELLED",
        "MODEL_VERSION_TRANSITIONED_STAGE",
        *STAGE_EVENTS.values(),
        "COMMENT_CREATED",
        "ALIAS_REQUEST_CREATED",
        "ALIAS_REQUEST_APPROVED",
        "ALIAS_REQUEST_REJECTED",
        "ALIAS_REQUEST_CANCELLED",
        "MODEL_VERSION_ALIAS_SET",
        "MODEL_VERSION_ALIAS_DELETED",
        "PROMOTION_REQUEST_CREATED",
        "PROMOTION_REQUEST_APPROVED",
        "PROMOTION_REQUEST_REJECTED",
        "PROMOTION_REQUEST_CANCELLED",
    }
)


def events_of(activity_type: str, to_stage: str | None) -> list[str]:
    """The webhook events an activity raises."""
    moved = ["MODEL_VERSION_TRANSITIONED_STAGE", *([STAGE_EVENTS[to_stage]] if to_stage in STAGE_EVENTS else [])]
    return {
        "REQUESTED_TRANSITION": [
            "TRANSITION_REQUEST_CREATED",
            *([REQUEST_EVENTS[to_stage]] if to_stage in REQUEST_EVENTS else []),
        ],
        "APPROVED_REQUEST": ["TRANSITION_REQUEST_APPROVED", *moved],
        "REJECTED_REQUEST": ["TRANSITION_REQUEST_REJECTED"],
        "CANCELLED_REQUEST": ["TRANSITION_REQUEST_CANCELLED"],
        "APPLIED_TRANSITION": moved,
        "SYSTEM_TRANSITION": moved,
        "NEW_COMMENT": ["COMMENT_CREATED"],
        "REQUESTED_ALIAS": ["ALIAS_REQUEST_CREATED"],
        "APPROVED_ALIAS_REQUEST": ["ALIAS_REQUEST_APPROVED", "MODEL_VERSION_ALIAS_SET"],
        "REJECTED_ALIAS_REQUEST": ["ALIAS_REQUEST_REJECTED"],
        "CANCELLED_ALIAS_REQUEST": ["ALIAS_REQUEST_CANCELLED"],
        "SET_ALIAS": ["MODEL_VERSION_ALIAS_SET"],
        "DELETED_ALIAS": ["MODEL_VERSION_ALIAS_DELETED"],
        "REQUESTED_PROMOTION": ["PROMOTION_REQUEST_CREATED"],
        "APPROVED_PROMOTION": ["PROMOTION_REQUEST_APPROVED"],
        "REJECTED_PROMOTION": ["PROMOTION_REQUEST_REJECTED"],
        "CANCELLED_PROMOTION": ["PROMOTION_REQUEST_CANCELLED"],
    }.get(activity_type, [])


# -- the API's shapes (databricks-sdk service/ml.py) --------------------------------------------------


class _Body(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class HttpUrlSpec(_Body, kw_only=True):
    url: str
    secret: str | None = None
    authorization: str | None = None
    enable_ssl_verification: bool | None = None


class HttpUrlSpecWithoutSecret(_Body, kw_only=True):
    url: str
    enable_ssl_verification: bool = True


class CreateWebhook(_Body, kw_only=True):
    events: list[str]
    model_name: str | None = None
    description: str | None = None
    status: str | None = None
    http_url_spec: HttpUrlSpec | None = None
    job_spec: dict[str, Any] | None = None


class UpdateWebhook(_Body, kw_only=True):
    id: str
    events: list[str] | None = None
    description: str | None = None
    status: str | None = None
    http_url_spec: HttpUrlSpec | None = None
    job_spec: dict[str, Any] | None = None


class TestWebhook(_Body, kw_only=True):
    id: str
    event: str | None = None


class RegistryWebhook(_Body, kw_only=True):
    id: str
    events: list[str]
    status: str
    creation_timestamp: int
    last_updated_timestamp: int
    http_url_spec: HttpUrlSpecWithoutSecret
    model_name: str | None = None
    description: str | None = None


class WebhookResponse(_Body, kw_only=True):
    webhook: RegistryWebhook


class ListWebhooksResponse(_Body, kw_only=True):
    webhooks: list[RegistryWebhook]
    next_page_token: str | None = None


class TestWebhookResponse(_Body, kw_only=True):
    status_code: int
    body: str = ""


# -- the service -------------------------------------------------------------------------------------


class ModelLookup(Protocol):
    """A model the caller may read (404 otherwise): the workflow's `model`."""

    async def model(self, principal: Principal, link: WorkspaceLink, name: str) -> Model: ...


@dataclass(frozen=True, slots=True)
class Target:
    """What a webhook belongs to: one model (its id and name) or the workspace's whole registry."""

    link: WorkspaceLink
    model_id: str | None
    model_name: str | None
    obj: str


class RegistryWebhooks:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        authorizer: Authorizer,
        models: ModelLookup,
        ids: ModelIds,
        allowed: AllowList,
        audit: AuditTrail,
        subscriber_secrets: SubscriberSecrets,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._secrets = subscriber_secrets
        self._authorizer = authorizer
        self._models = models
        self._ids = ids
        self.allowed = allowed
        self._audit = audit
        self._timeout = timeout_seconds

    # -- who may manage which webhooks ---------------------------------------------------------------

    async def _target(self, principal: Principal, link: WorkspaceLink, model_name: str | None) -> Target:
        if model_name:
            model = await self._models.model(principal, link, model_name)
            if not self._authorizer.allows(principal, link.workspace_id, model.obj, Level.CAN_MANAGE):
                raise PermissionDenied(
                    f"{principal.name} lacks CAN_MANAGE on registered model '{model.name}' to manage its webhooks."
                )
            return Target(link, model.id, model.name, model.obj)
        obj = workspace_object(link.workspace_id)
        if not self._authorizer.allows(principal, link.workspace_id, obj, Level.CAN_MANAGE):
            raise PermissionDenied(
                f"{principal.name} lacks CAN_MANAGE on workspace '{link.name}' to manage registry-wide webhooks; "
                "name a model (model_name) whose webhooks you manage."
            )
        return Target(link, None, None, obj)

    async def _owned(
        self, session: AsyncSession, principal: Principal, link: WorkspaceLink, webhook_id: str
    ) -> tuple[RegistryWebhookRow, Target]:
        """The webhook, when the caller manages it; 404 when it does not exist or the caller cannot see it."""
        missing = f"Webhook {webhook_id[:64]} not found"
        row = await session.scalar(
            select(RegistryWebhookRow).where(
                RegistryWebhookRow.workspace_id == link.workspace_id, RegistryWebhookRow.id == webhook_id
            )
        )
        if row is None:
            raise ResourceNotFound(missing)
        name = None
        if row.model_id is not None:
            names = await self._ids.model_names(link, {row.model_id})
            if not names:  # the model is gone: its webhooks are the workspace managers' to clear
                try:
                    return row, await self._target(principal, link, None)
                except PermissionDenied:
                    raise ResourceNotFound(missing) from None
            name = names[0]
        try:
            return row, await self._target(principal, link, name)
        except ResourceNotFound:
            raise ResourceNotFound(missing) from None

    # -- the API ---------------------------------------------------------------------------------------

    async def create(self, principal: Principal, link: WorkspaceLink, wanted: CreateWebhook) -> RegistryWebhook:
        if wanted.job_spec is not None or wanted.http_url_spec is None:
            raise InvalidParameter("A webhook posts to an http_url_spec; job_spec webhooks are not served.")
        target = await self._target(principal, link, wanted.model_name)
        events, status = _events(wanted.events), _status(wanted.status or "ACTIVE")
        spec = wanted.http_url_spec
        url = self._check_url(spec.url)
        webhook_id = secrets.token_hex(16)
        sealed = self._sealed(webhook_id, spec)
        async with self._sessionmaker() as session, session.begin():
            count = await session.scalar(
                select(func.count())
                .select_from(RegistryWebhookRow)
                .where(
                    RegistryWebhookRow.workspace_id == link.workspace_id,
                    RegistryWebhookRow.model_id == target.model_id
                    if target.model_id is not None
                    else RegistryWebhookRow.model_id.is_(None),
                )
            )
            if int(count or 0) >= MAX_WEBHOOKS_PER_MODEL:
                raise InvalidParameter(f"A model has at most {MAX_WEBHOOKS_PER_MODEL} webhooks.")
            row = RegistryWebhookRow(
                id=webhook_id,
                workspace_id=link.workspace_id,
                model_id=target.model_id,
                events=events,
                url=url,
                secret=sealed.get("secret"),
                authorization=sealed.get("authorization"),
                enable_ssl_verification=spec.enable_ssl_verification is not False,
                status=status,
                description=wanted.description,
                created_by=principal.name,
                **_owned_by(principal),
            )
            session.add(row)
            await session.flush()
            await session.refresh(row)
            await self._audited(session, principal, "registry.webhook.create", target, row)
        return _webhook(row, target.model_name)

    async def update(self, principal: Principal, link: WorkspaceLink, wanted: UpdateWebhook) -> RegistryWebhook:
        if wanted.job_spec is not None:
            raise InvalidParameter("A webhook posts to an http_url_spec; job_spec webhooks are not served.")
        values: dict[str, Any] = {}
        if wanted.events is not None:
            values["events"] = _events(wanted.events)
        if wanted.status is not None:
            values["status"] = _status(wanted.status)
        if wanted.description is not None:
            values["description"] = wanted.description
        if (spec := wanted.http_url_spec) is not None:
            values["url"] = self._check_url(spec.url)
            if spec.enable_ssl_verification is not None:
                values["enable_ssl_verification"] = spec.enable_ssl_verification
        async with self._sessionmaker() as session, session.begin():
            row, target = await self._owned(session, principal, link, wanted.id)
            if spec is not None:
                _restated(row, spec, values["url"])
                values.update(self._sealed(row.id, spec))
            if values:
                values["updated_at"] = func.now()
                values.update(_owned_by(principal))  # a manager who changes a webhook answers for where it posts
                await session.execute(
                    update(RegistryWebhookRow).where(RegistryWebhookRow.id == row.id).values(**values)
                )
                await session.refresh(row)
            await self._audited(session, principal, "registry.webhook.update", target, row)
        return _webhook(row, target.model_name)

    async def delete(self, principal: Principal, link: WorkspaceLink, webhook_id: str) -> None:
        """The webhook goes, and its deliveries not yet sent with it."""
        async with self._sessionmaker() as session, session.begin():
            row, target = await self._owned(session, principal, link, webhook_id)
            await session.execute(
                delete(RegistryWebhookDeliveryRow).where(
                    RegistryWebhookDeliveryRow.webhook_id == row.id, RegistryWebhookDeliveryRow.state == "pending"
                )
            )
            await session.execute(delete(RegistryWebhookRow).where(RegistryWebhookRow.id == row.id))
            await self._audited(session, principal, "registry.webhook.delete", target, row)

    async def list(
        self,
        principal: Principal,
        link: WorkspaceLink,
        model_name: str | None,
        events: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> tuple[list[RegistryWebhook], str | None]:
        """A model's webhooks (CAN_MANAGE on it), or without a model every webhook of the workspace (CAN_MANAGE on
        the workspace); with `events`, those wanting any of them. Oldest first, pages of `max_results`."""
        target = await self._target(principal, link, model_name)
        wanted = _events(events) if events else []
        statement = (
            select(RegistryWebhookRow)
            .where(RegistryWebhookRow.workspace_id == link.workspace_id)
            .order_by(RegistryWebhookRow.created_at, RegistryWebhookRow.id)
        )
        if target.model_id is not None:
            statement = statement.where(RegistryWebhookRow.model_id == target.model_id)
        async with self._sessionmaker() as session:
            rows = list((await session.scalars(statement)).all())
        if wanted:
            rows = [row for row in rows if set(row.events) & set(wanted)]
        start = 0
        if page_token:
            if not is_number(page_token):
                raise InvalidParameter("Invalid page_token.")
            start = int(page_token)
        page = rows[start : start + max_results]
        names = {}
        for model_id in {row.model_id for row in page if row.model_id}:
            found = await self._ids.model_names(link, {model_id})
            if found:
                names[model_id] = found[0]
        following = str(start + max_results) if start + max_results < len(rows) else None
        return [_webhook(row, names.get(row.model_id) if row.model_id else None) for row in page], following

    async def test(self, principal: Principal, link: WorkspaceLink, wanted: TestWebhook) -> TestWebhookResponse:
        """Send a test event now (to the webhook's URL, if still allowed), and answer what the receiver said."""
        async with self._sessionmaker() as session:
            row, target = await self._owned(session, principal, link, wanted.id)
        event = wanted.event or row.events[0]
        if event not in EVENTS:
            raise InvalidParameter(f"Unknown event '{event[:64]}'.")
        payload = msgspec.json.encode(
            {
                "event": event,
                "webhook_id": row.id,
                "event_timestamp": int(time.time() * 1000),
                "model_name": target.model_name or "",
                "version": "",
                "test": True,
                "text": "This is a test of the webhook.",
            }
        )
        self._check_url(row.url, stored=True)
        try:
            secret, authorization = opened(self._secrets, row)
        except Unopened as exc:
            raise GatewayError(
                f"This gateway cannot sign the test: {exc}.",
                error_code="TEMPORARILY_UNAVAILABLE",
                status=503,
            ) from None
        try:
            status, answer = await post_signed(
                row.url,
                payload,
                f"test-{secrets.token_hex(8)}",
                self._timeout,
                secret=secret,
                authorization=authorization,
                verify_ssl=row.enable_ssl_verification,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The exception's class only: its message may repeat the URL (and whatever the URL carries).
            raise GatewayError(
                f"The webhook's URL did not answer the test ({type(exc).__name__}).",
                error_code="TEMPORARILY_UNAVAILABLE",
                status=502,
            ) from None
        return TestWebhookResponse(status_code=status, body=answer[:MAX_ANSWER_CHARS])

    def _sealed(self, webhook_id: str, spec: HttpUrlSpec) -> dict[str, str | None]:
        """The spec's secret and Authorization value as stored: sealed, None to remove one (an empty string), and
        left out when not given."""
        values: dict[str, str | None] = {}
        for name in SEALED_FIELDS:
            given = getattr(spec, name)
            if given is not None:
                values[name] = self._secrets.seal(place(webhook_id), name, given) if given else None
        return values

    def _check_url(self, value: str, *, stored: bool = False) -> str:
        try:
            destination = parse_destination(value)
        except DestinationError as exc:
            if stored:
                raise PermissionDenied(f"The webhook's stored URL is not one this gateway can check: {exc}.") from None
            raise InvalidParameter(f"Invalid webhook URL: {exc}.") from None
        if not self.allowed.allows(destination):
            raise PermissionDenied(
                f"The webhook URL {destination.origin} is not an allowed destination of this gateway ([outbound] "
                "allowed_destinations); ask an account admin to allow it."
            )
        return value

    async def _audited(
        self, session: AsyncSession, principal: Principal, action: str, target: Target, row: RegistryWebhookRow
    ) -> None:
        details: dict[str, Any] = {"webhook": row.id, "events": list(row.events), "status": row.status}
        if target.model_id:
            details.update(model_id=target.model_id, name=target.model_name)
        await self._audit.write(session, entry(principal.name, action, target.obj, "ok", details))

    # -- events ----------------------------------------------------------------------------------------

    async def enqueue(
        self,
        session: AsyncSession,
        link: WorkspaceLink,
        model_id: str,
        model_name: str,
        activities: Iterable[StoredActivity],
    ) -> int:
        """Queue the deliveries the activities raise, in the caller's transaction; how many."""
        raised = [(activity, events_of(activity.activity_type, activity.to_stage)) for activity in activities]
        if not any(events for _, events in raised):
            return 0
        hooks = (
            await session.scalars(
                select(RegistryWebhookRow).where(
                    RegistryWebhookRow.workspace_id == link.workspace_id,
                    or_(RegistryWebhookRow.model_id == model_id, RegistryWebhookRow.model_id.is_(None)),
                    RegistryWebhookRow.status == "ACTIVE",
                )
            )
        ).all()
        if not hooks:
            return 0
        rows = []
        for activity, events in raised:
            text_now = activity.comment
            if activity.comment_id is not None:
                text_now = await session.scalar(
                    select(RegistryCommentRow.comment).where(RegistryCommentRow.id == activity.comment_id)
                )
            for hook in hooks:
                for event in events:
                    if event not in hook.events:
                        continue
                    payload = _payload(event, hook.id, link, model_name, activity, text_now)
                    rows.append(
                        {"webhook_id": hook.id, "workspace_id": link.workspace_id, "event": event, "payload": payload}
                    )
        if rows:
            await session.execute(insert(RegistryWebhookDeliveryRow), rows)
            await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WEBHOOKS_CHANNEL})
        return len(rows)


WEBHOOKS_CHANNEL = "fedgate_registry_webhooks"


def _payload(
    event: str,
    webhook_id: str,
    link: WorkspaceLink,
    model_name: str,
    activity: StoredActivity,
    text_now: str | None,
) -> bytes:
    """Databricks' payload (event, webhook_id, event_timestamp, model_name, version, from_stage, to_stage, text),
    with who did it and the gateway's activity, workspace and alias."""
    body: dict[str, Any] = {
        "event": event,
        "webhook_id": webhook_id,
        "event_timestamp": activity.created_ms,
        "model_name": model_name,
        "version": activity.version,
        "user_id": activity.user_id,
        "activity_id": str(activity.id),
        "activity_type": activity.activity_type,
        "workspace": link.name,
        "workspace_id": str(link.workspace_id),
    }
    if activity.from_stage:
        body["from_stage"] = activity.from_stage
    if activity.to_stage:
        body["to_stage"] = activity.to_stage
    if activity.alias:
        body["alias"] = activity.alias
    if text_now:
        body["comment" if event == "COMMENT_CREATED" else "text"] = text_now
    return msgspec.json.encode(body)


def _events(events: Sequence[str]) -> list[str]:
    if not events:
        raise InvalidParameter("Name the events the webhook wants (events).")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidParameter(
            f"Unknown webhook event '{str(unknown[0])[:64]}'; use one of {', '.join(sorted(EVENTS))}."
        )
    return sorted(set(events))


def _status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidParameter(f"Invalid webhook status '{status[:32]}'; use one of {', '.join(STATUSES)}.")
    return status


def _restated(row: RegistryWebhookRow, spec: HttpUrlSpec, url: str) -> None:
    """A new URL, or TLS checks turned off, gets the secret and the Authorization value the webhook holds only when
    they are given again.

    They are never answered, not even to the webhook's managers; kept across a change of URL, they would go to
    whatever allowed URL a manager chose (the Authorization value verbatim, the secret as signatures of events and
    of test calls), so a manager could read what another set. Kept while verification is turned off, they would go
    over connections whose server is no longer checked, to whoever answers for the URL's host."""
    moved = url != row.url
    unverified = spec.enable_ssl_verification is False and row.enable_ssl_verification
    if not moved and not unverified:
        return
    held = [name for name in SEALED_FIELDS if getattr(row, name) is not None and getattr(spec, name) is None]
    if held:
        fields = " and ".join(f"http_url_spec.{name}" for name in held)
        if moved:
            raise InvalidParameter(
                f"A new URL takes the webhook's {fields} again (an empty string for none): they are not sent to "
                "another URL than the one they were given for."
            )
        raise InvalidParameter(
            f"Turning enable_ssl_verification off takes the webhook's {fields} again (an empty string for none): "
            "they are not sent over connections less checked than the ones they were given for."
        )


def _webhook(row: RegistryWebhookRow, model_name: str | None) -> RegistryWebhook:
    return RegistryWebhook(
        id=row.id,
        events=list(row.events),
        status=row.status,
        creation_timestamp=millis(row.created_at),
        last_updated_timestamp=millis(row.updated_at),
        http_url_spec=HttpUrlSpecWithoutSecret(url=row.url, enable_ssl_verification=row.enable_ssl_verification),
        model_name=model_name,
        description=row.description,
    )


SEALED_FIELDS = ("secret", "authorization")


def place(webhook_id: str) -> str:
    """Where a webhook's sealed values belong (their associated data, with the field's name)."""
    return f"registry_webhook:{webhook_id}"


class Unopened(Exception):
    """A webhook's stored secret or Authorization value did not open; the message is safe to record and log."""


def opened(sealed: SubscriberSecrets, row: RegistryWebhookRow) -> tuple[str | None, str | None]:
    """The webhook's secret and Authorization value, opened (Unopened when one cannot be)."""
    values: list[str | None] = []
    for name in SEALED_FIELDS:
        stored = getattr(row, name)
        try:
            values.append(sealed.open(place(row.id), name, stored) if stored else None)
        except SealError as exc:
            raise Unopened(SubscriberSecrets.unopened(stored, exc)) from None
    secret, authorization = values
    return secret, authorization


async def reseal_secrets(
    sessionmaker: async_sessionmaker[AsyncSession], subscriber_secrets: SubscriberSecrets
) -> Resealed:
    """Every webhook's secret and Authorization value sealed under the active vault key (`fedgate secrets
    rotate-key`): one short transaction over the (small) table, rows locked as a change would lock them."""
    done = Resealed()
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.scalars(
                select(RegistryWebhookRow)
                .where(or_(RegistryWebhookRow.secret.is_not(None), RegistryWebhookRow.authorization.is_not(None)))
                .with_for_update()
            )
        ).all()
        for row in rows:
            values: dict[str, str] = {}
            for name in SEALED_FIELDS:
                stored = getattr(row, name)
                if not stored:
                    continue
                try:
                    again = subscriber_secrets.reseal(place(row.id), name, stored)
                except SealError:
                    done.unreadable += 1
                    done.count(SubscriberSecrets.key_id(stored) or "?")
                    continue
                if again is not None:
                    values[name] = again
                    done.rotated += 1
            if values:
                await session.execute(
                    update(RegistryWebhookRow).where(RegistryWebhookRow.id == row.id).values(**values)
                )
    return done


# -- delivery ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    attempts: int
    webhook_id: str
    event: str
    payload: bytes


def _owned_by(principal: Principal) -> dict[str, Any]:
    """The owner columns of a webhook `principal` creates or changes."""
    return {"owner_id": principal.id, "owner_groups": list(principal.idp_groups)}


def owner(snapshot: PolicySnapshot, row: RegistryWebhookRow) -> Principal | None:
    """The webhook's owner as `snapshot` knows them (their groups, and those their identity provider named when they
    last created or changed it); None when disabled or deleted."""
    if row.owner_id is None:
        return BOOTSTRAP_ADMIN
    info = snapshot.principal(row.owner_id)
    if info is None or not info.active:
        return None
    return snapshot.acting_for(info, row.owner_groups or (), via="webhook")


def managed(snapshot: PolicySnapshot, row: RegistryWebhookRow) -> bool | None:
    """True when the webhook's owner still holds CAN_MANAGE on its model (or, registry-wide, its workspace); else
    None (for `LivePolicy.found`: decided again on the stored policy)."""
    who = owner(snapshot, row)
    if who is None:
        return None
    if who.account_admin:
        return True
    obj = model_object(row.workspace_id, row.model_id) if row.model_id else workspace_object(row.workspace_id)
    held = snapshot.level(who.subjects, workspace_domain(row.workspace_id), obj)
    return True if held is not None and RANK[held] >= RANK[Level.CAN_MANAGE] else None


def deliverer(
    sessionmaker: async_sessionmaker[AsyncSession],
    authorizer: Authorizer,
    allowed: AllowList,
    subscriber_secrets: SubscriberSecrets,
    pacing: Pacing,
    *,
    keep_days: int = 30,
) -> DeliveryWorker[Claimed]:
    """The registry's deliveries sent by the shared delivery loop (gateway/delivery/), to the webhook's URL as it is
    when each attempt is made; a webhook deleted or no longer ACTIVE gets nothing more, nor one whose owner (whoever
    created or last changed it, who chose where it posts) no longer manages its model or workspace, or is disabled
    or deleted: the events are the model's, and the receiver is theirs. Settled deliveries are deleted `keep_days`
    after their last attempt (`server.webhook_history_days`)."""

    async def send(delivery: Claimed) -> Outcome:
        async with sessionmaker() as session:
            row = await session.get(RegistryWebhookRow, delivery.webhook_id)
        if row is None or row.status != "ACTIVE":
            return Outcome.dropped("the webhook was deleted or is not active")
        if not await authorizer.policy.found(lambda snapshot: managed(snapshot, row)):
            return Outcome.dropped(
                "the webhook's owner no longer manages it (or is disabled or deleted); a manager who changes the "
                "webhook takes it over"
            )
        try:
            secret, authorization = opened(subscriber_secrets, row)
        except Unopened as exc:  # never sent unsigned: tried again, the operator may restore the key
            return Outcome.retry(None, str(exc))
        return await send_webhook(
            allowed,
            row.url,
            delivery.payload,
            str(delivery.id),
            pacing.timeout_seconds,
            secret=secret,
            authorization=authorization,
            verify_ssl=row.enable_ssl_verification,
        )

    return DeliveryWorker(
        "registry webhook deliveries",
        sessionmaker,
        RegistryWebhookDeliveryRow,
        ("webhook_id", "event", "payload"),
        lambda row: Claimed(**row),
        send,
        pacing,
        log_as={"webhook": "webhook_id"},
        keep_days=keep_days,
    )
