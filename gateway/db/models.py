"""SQLAlchemy models of the gateway's own bookkeeping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Identity, Integer, LargeBinary, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class WorkspaceLinkRow(Base):
    """A workspace and the store it is linked to."""

    __tablename__ = "workspace_links"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    mode: Mapped[str] = mapped_column(String(16))
    store: Mapped[str | None] = mapped_column(String(63))
    upstream_workspace: Mapped[str | None] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(Text, default="")
    default_artifact_root: Mapped[str] = mapped_column(Text, default="")
    managed_by: Mapped[str] = mapped_column(String(16))  # "config" or "api"
    # Secret scopes (migration 0011): the vault of new scopes ("" is the built-in vault) and the scope a
    # run's read uses when it names none ("" for none).
    vault: Mapped[str] = mapped_column(String(63), default="", server_default="")
    default_secret_scope: Mapped[str] = mapped_column(String(128), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RunRouteRow(Base):
    """Which workspace a run lives in, so a call naming only a run id can be routed."""

    __tablename__ = "run_routes"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(63), index=True)
    experiment_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PrincipalRow(Base):
    """A user, service principal or group. Ids are immutable; grants and memberships refer to them."""

    __tablename__ = "principals"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))  # user | service_principal | group
    name: Mapped[str] = mapped_column(String(255))  # user name (case-folded), application id, group name
    display_name: Mapped[str] = mapped_column(Text, default="")
    external_id: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    account_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MembershipRow(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True)
    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class TokenRow(Base):
    """A personal access token: only its keyed hash is stored."""

    __tablename__ = "tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The token it was created with (migration 0037): revoking that one revokes this one, and its own children.
    parent_hash: Mapped[bytes | None] = mapped_column(
        LargeBinary, ForeignKey("tokens.token_hash", ondelete="CASCADE"), nullable=True, index=True
    )
    # The SHA-256 of the browser session's id it was created in (migration 0056): ending that session revokes it.
    session_hash: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, index=True)


class GrantRow(Base):
    """One privilege or permission level held by a principal on an object: a Casbin `p` row."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    principal_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(32))
    object: Mapped[str] = mapped_column(String(300))
    privilege: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegisteredModelRow(Base):
    """The immutable id of a registered model; names change with renames, ids never do."""

    __tablename__ = "registered_models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PolicyVersionRow(Base):
    """One row; bumped in the transaction of every access change. Replicas reload when it moves."""

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class PolicyChangeRow(Base):
    """The rows one policy version added and removed (`gateway.core.policy_changes`), for replicas to apply.

    Written in the transaction that moves the version to `version`; a version without a row is loaded whole.
    Only the latest versions are kept (`gateway.authz.repository.KEEP_CHANGES`).
    """

    __tablename__ = "policy_changes"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    changes: Mapped[Any] = mapped_column(JSONB, nullable=False)


class AuditRow(Base):
    """Append-only (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    request_id: Mapped[str] = mapped_column(String(64), default="")


class GatewaySecretRow(Base):
    """Deployment-wide secrets the gateway generates itself (the token hashing key)."""

    __tablename__ = "gateway_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class IdMapRow(Base):
    """The central store's id of an object first created in a dual workspace's own store."""

    __tablename__ = "id_map"

    workspace_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)  # experiment | run
    primary_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    central_id: Mapped[str] = mapped_column(String(64))
    # For runs: the central run's artifact root, where mirrored artifacts go.
    central_artifact_uri: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OutboxRow(Base):
    """A write the primary store accepted, to be applied to the central store (in order per key)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    order_key: Mapped[str] = mapped_column(Text)  # <workspace id>/run:<id>, .../experiment:<id>, .../registry
    route: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | done | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # every failed attempt (back-off)
    refusals: Mapped[int] = mapped_column(Integer, default=0)  # attempts the central store refused (4xx)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SecretScopeRow(Base):
    """A secret scope of a workspace: the vault its values live in and their location there (migrations 0010, 0013)."""

    __tablename__ = "secret_scopes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(128))
    vault: Mapped[str] = mapped_column(String(63))
    location: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # What every user of the workspace holds on the scope (`users` in its ACL; migration 0013): READ, WRITE, MANAGE.
    users_permission: Mapped[str | None] = mapped_column(String(8))


class RunSecretReadRow(Base):
    """A secret a run read (scope and key, never the value), for the leak guard (migration 0012)."""

    __tablename__ = "run_secret_reads"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str] = mapped_column(String(256))
    scope: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(128))
    first_read_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryRequestRow(Base):
    """A request to move a model version to a stage (migration 0016); open until decided or cancelled."""

    __tablename__ = "registry_requests"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str] = mapped_column(String(32))  # registered_models.id: renames keep it
    version: Mapped[str] = mapped_column(String(20))
    to_stage: Mapped[str | None] = mapped_column(String(16))  # a stage request (or NULL: an alias request)
    alias: Mapped[str | None] = mapped_column(String(256))  # an alias request (migration 0018): the alias to move
    requested_by: Mapped[str] = mapped_column(Text)  # the requester's name when they asked (shown)
    # principals.id of the requester (migration 0040; None: the bootstrap admin, or a row older than the column
    # whose requester's name nobody held): who may cancel it as its requester.
    requested_by_id: Mapped[int | None] = mapped_column(BigInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default="open")  # open | approved | rejected | cancelled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(Text)


class RegistryCommentRow(Base):
    """A comment on a model version (migration 0016); its author or a model manager edits or deletes it."""

    __tablename__ = "registry_comments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[str] = mapped_column(Text)  # the author's name when they wrote it (shown)
    # principals.id of the author (migration 0040; None as for requests): who may edit or delete it as its author.
    user_principal_id: Mapped[int | None] = mapped_column(BigInteger)
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryActivityRow(Base):
    """One entry of a model version's activity log (migration 0016), in Databricks' Activity shape.

    Append-only (a trigger refuses UPDATE, DELETE and TRUNCATE, but for the workspace's own moves).
    """

    __tablename__ = "registry_activities"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(20))
    activity_type: Mapped[str] = mapped_column(String(24))
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str | None] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    system_comment: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[int | None] = mapped_column(BigInteger)  # the request it opened, decided or cancelled
    comment_id: Mapped[str | None] = mapped_column(String(32))  # NEW_COMMENT: the comment (its text lives there)
    alias: Mapped[str | None] = mapped_column(String(256))  # the alias activities (migration 0018)
    # 1, 2, 3, ... within the model (migration 0051): what the API shows and pages by (`id` is never shown).
    number: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryModelSettingsRow(Base):
    """A registered model's workflow settings (migration 0018): the aliases whose moves need Production's level."""

    __tablename__ = "registry_model_settings"

    model_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    protected_aliases: Mapped[list[str]] = mapped_column(JSONB, default=list)
    updated_by: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryPromotionSettingsRow(Base):
    """Whether a promotion into a workspace needs an approved request (migration 0026); no row: it does not."""

    __tablename__ = "registry_promotion_settings"

    workspace_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    need_approval: Mapped[bool] = mapped_column(Boolean)
    updated_by: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryPromotionLoggedModelRow(Base):
    """A logged model a promotion made in its target workspace's store, for one lineage (migration 0043): the only
    logged models a promotion takes up again, and the only ones a version must hold to be taken for its copy."""

    __tablename__ = "registry_promotion_logged_models"

    workspace_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the target workspace
    model_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lineage_key: Mapped[str] = mapped_column(Text)  # w<workspace id>/<model id>/<version> of the source version
    target_name: Mapped[str] = mapped_column(Text)
    experiment_id: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryProtectedSourceRow(Base):
    """Where a protected model version's files lie (migration 0048): one row per version in Staging or Production
    or holding an alias; an artifact write there needs the right on the model that changing the version needs."""

    __tablename__ = "registry_protected_sources"

    workspace_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the gateway's id of the model
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)  # the model's name when the row was written
    stage: Mapped[str] = mapped_column(Text)  # "Staging", "Production" or ""
    aliases: Mapped[list[str]] = mapped_column(JSONB)
    path: Mapped[str] = mapped_column(Text)  # artifact path of the files, without a workspaces/<name>/ prefix
    experiment_id: Mapped[str] = mapped_column(Text)
    object_id: Mapped[str] = mapped_column(Text)  # the run or logged model the files lie in
    object_path: Mapped[str] = mapped_column(Text)  # the files' path within it ("": the whole of it)


class RegistryProtectionScanRow(Base):
    """A workspace whose store's registry was read whole into `registry_protected_sources` (migration 0048)."""

    __tablename__ = "registry_protection_scans"

    workspace_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    scanned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryPromotionRequestRow(Base):
    """A request to copy another workspace's model version into this one (migration 0026)."""

    __tablename__ = "registry_promotion_requests"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)  # the target workspace
    source_workspace_id: Mapped[int] = mapped_column(BigInteger)
    source_model_id: Mapped[str] = mapped_column(String(32))
    source_name: Mapped[str] = mapped_column(Text)  # <workspace>.<model>, as requested
    source_version: Mapped[str] = mapped_column(String(20))
    target_name: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int | None] = mapped_column(BigInteger)  # principals.id (None: the bootstrap admin)
    comment: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default="open")  # open | approved | rejected | cancelled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(Text)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    target_version: Mapped[str | None] = mapped_column(String(20))  # the copy, once approved
    # 1, 2, 3, ... within the target workspace (migration 0052): the request's id in the API (`id` is never shown).
    number: Mapped[int] = mapped_column(BigInteger)
    # Gateway groups the requester's identity provider named in the request's credential (migration 0031).
    requester_groups: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)


class RegistryWebhookRow(Base):
    """A registry webhook of the workflow's events (migration 0023): one model's, or the workspace's registry-wide."""

    __tablename__ = "registry_webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str | None] = mapped_column(String(32))  # None: every model of the workspace
    events: Mapped[list[str]] = mapped_column(JSONB)
    url: Mapped[str] = mapped_column(Text)
    # The HMAC key and the Authorization header's value, sealed (gateway/delivery/secrets.py; a CHECK of migration
    # 0030 refuses anything else): never answered, never logged.
    secret: Mapped[str | None] = mapped_column(Text)
    authorization: Mapped[str | None] = mapped_column(Text)
    enable_ssl_verification: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")  # ACTIVE | TEST_MODE | DISABLED
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text)
    # Whoever created or last changed it (migration 0046; None: the bootstrap admin), and the gateway groups their
    # identity provider named then: every delivery needs their CAN_MANAGE on the webhook's model or workspace.
    owner_id: Mapped[int | None] = mapped_column(BigInteger)
    owner_groups: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegistryWebhookDeliveryRow(Base):
    """One POST of one event to one webhook (migration 0023), written with the activity it reports."""

    __tablename__ = "registry_webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(32))
    workspace_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # exactly the bytes sent and signed
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SqlAlertRow(Base):
    """A SQL alert (migration 0024): a query run as its owner on a schedule, a condition, who to notify."""

    __tablename__ = "sql_alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(BigInteger)  # None: the bootstrap admin
    owner_name: Mapped[str] = mapped_column(Text)
    query_id: Mapped[str | None] = mapped_column(Text)
    query_text: Mapped[str | None] = mapped_column(Text)
    condition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The gateway groups the owner's identity provider named when they last created, changed or ran the alert or
    # signed in (migration 0034): counted in each evaluation as the guard counts them for the owner's calls.
    owner_groups: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    custom_subject: Mapped[str | None] = mapped_column(Text)
    custom_body: Mapped[str | None] = mapped_column(Text)
    notify_on_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    seconds_to_retrigger: Mapped[int] = mapped_column(Integer, default=0)
    schedule: Mapped[str | None] = mapped_column(Text)  # a Quartz cron expression; None: run on demand only
    timezone_id: Mapped[str] = mapped_column(Text, default="UTC")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # E-mail addresses and webhooks (URL and HMAC secret: the secret sealed, never answered, never logged).
    subscriptions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    state: Mapped[str] = mapped_column(String(16), default="UNKNOWN")  # UNKNOWN | OK | TRIGGERED
    evaluation_state: Mapped[str] = mapped_column(String(16), default="UNKNOWN")  # ... | ERROR
    error_message: Mapped[str | None] = mapped_column(Text)
    trigger_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None: paused or unscheduled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SqlAlertEvaluationRow(Base):
    """One evaluation of an alert (migration 0024): the alert's history."""

    __tablename__ = "sql_alert_evaluations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(36), ForeignKey("sql_alerts.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(12))  # SCHEDULE | MANUAL
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    state: Mapped[str] = mapped_column(String(16))  # OK | TRIGGERED | UNKNOWN | ERROR
    previous_state: Mapped[str] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(Text)
    row_count: Mapped[int | None] = mapped_column(Integer)
    condition: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    statement_id: Mapped[str | None] = mapped_column(String(36))
    notifications: Mapped[int] = mapped_column(Integer, default=0)
    evaluated_by: Mapped[str] = mapped_column(Text)  # host:pid of the gateway process


class SqlAlertDeliveryRow(Base):
    """One notification of an evaluation (migration 0024): a signed webhook POST or an e-mail, retried."""

    __tablename__ = "sql_alert_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(36))
    evaluation_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))  # webhook | email
    destination: Mapped[str] = mapped_column(Text)  # the URL, or the address
    subject: Mapped[str | None] = mapped_column(Text)  # e-mail only
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the JSON body (webhook) or the text (e-mail)
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SavedQueryRow(Base):
    """A saved SQL query of the account console (migration 0025); its sharing is grants on `query:<id>`."""

    __tablename__ = "sql_queries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(Text)
    query_text: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str | None] = mapped_column(Text)
    catalog: Mapped[str | None] = mapped_column(Text)
    schema: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list)
    apply_auto_limit: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_id: Mapped[int | None] = mapped_column(BigInteger)  # None: the bootstrap admin, which has no row
    owner_name: Mapped[str] = mapped_column(Text)
    last_modifier_name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StoreJobRow(Base):
    """A job of a store's job runner that the gateway started (migration 0027): what starting it needed.

    `needs` is the list of [kind, id, level] the caller was checked against when it started the job
    ("experiment", "model" or "workspace"); reading, cancelling or listing the job asks each of them again.
    """

    __tablename__ = "store_jobs"

    workspace_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_name: Mapped[str] = mapped_column(String(64))
    needs: Mapped[list[Any]] = mapped_column(JSONB)
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
