"""Webhook secrets are kept sealed: registry webhooks' `secret` and `authorization`, SQL alerts' webhook secrets.

Until this revision they were stored as given. Each is now sealed as the built-in vault seals its values
(gateway/core/sealing.py: AES-256-GCM under the active key of FEDGATE_VAULT_KEYS or FEDGATE_VAULT_KEYS_FILE),
in `Sealed.to_text`'s form `fgv1:<key id>:<nonce>:<ciphertext>`, bound to its place as gateway/delivery/secrets.py
binds it (`registry_webhook:<id>` with `secret` or `authorization`; `sql_alert:<id>` with `webhook:<url>`).
Existing values are sealed here, which needs the keys when there is one to seal (the upgrade stops, naming the
variable, otherwise). A CHECK on each table refuses a value that is not sealed from now on.

Downgrade opens them again (with the same keys) and drops the checks.

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.core.config import ConfigError
from gateway.core.sealing import KEYS_ENV, TEXT_PREFIX, Keyring, Sealed

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

SEALED = f"{TEXT_PREFIX}:%"
# A subscription's webhook secret that is not sealed (a JSON path over sql_alerts.subscriptions).
PLAIN_ALERT_SECRET = '$[*].webhook.secret ? (!(@ starts with "' + TEXT_PREFIX + ':"))'
FIELDS = ("secret", "authorization")


def _keyring(count: int) -> Keyring:
    try:
        return Keyring.from_environment()
    except ConfigError as exc:
        raise RuntimeError(
            f"{count} webhook secret(s) are stored in plain text, and this migration seals them with the built-in "
            f"vault's keys: {exc}. Set {KEYS_ENV} (a new key: `fedgate secrets new-key ID`) for `fedgate db upgrade` "
            "and for every gateway, then upgrade again."
        ) from None


def _webhook_place(webhook_id: str) -> str:
    return f"registry_webhook:{webhook_id}"


def _alert_place(alert_id: str) -> tuple[str, str]:
    return f"sql_alert:{alert_id}", "webhook:"


def upgrade() -> None:
    bind = op.get_bind()
    hooks = bind.execute(
        sa.text(
            'SELECT id, secret, "authorization" FROM registry_webhooks '
            'WHERE secret IS NOT NULL OR "authorization" IS NOT NULL FOR UPDATE'
        )
    ).all()
    alerts = bind.execute(
        sa.text(
            "SELECT id, subscriptions FROM sql_alerts WHERE jsonb_path_exists(subscriptions, CAST(:path AS jsonpath)) "
            "FOR UPDATE"
        ),
        {"path": PLAIN_ALERT_SECRET},
    ).all()
    if hooks or alerts:
        keyring = _keyring(len(hooks) + len(alerts))
        for webhook_id, *values in hooks:
            sealed = {
                name: keyring.seal(_webhook_place(webhook_id), name, value.encode()).to_text() if value else None
                for name, value in zip(FIELDS, values, strict=True)
            }
            bind.execute(
                sa.text(
                    'UPDATE registry_webhooks SET secret = :secret, "authorization" = :authorization WHERE id = :id'
                ),
                {"id": webhook_id, **sealed},
            )
        for alert_id, subscriptions in alerts:
            place, field = _alert_place(alert_id)
            for item in subscriptions:
                webhook: dict[str, Any] | None = item.get("webhook") if isinstance(item, dict) else None
                if isinstance(webhook, dict) and webhook.get("secret"):
                    secret = str(webhook["secret"])
                    webhook["secret"] = keyring.seal(place, field + str(webhook["url"]), secret.encode()).to_text()
            bind.execute(
                sa.text("UPDATE sql_alerts SET subscriptions = CAST(:subscriptions AS jsonb) WHERE id = :id"),
                {"id": alert_id, "subscriptions": json.dumps(subscriptions)},
            )
    op.create_check_constraint(
        "registry_webhooks_secrets_sealed",
        "registry_webhooks",
        f"(secret IS NULL OR secret LIKE '{SEALED}') "
        f'AND ("authorization" IS NULL OR "authorization" LIKE \'{SEALED}\')',
    )
    op.create_check_constraint(
        "sql_alerts_secrets_sealed",
        "sql_alerts",
        f"NOT jsonb_path_exists(subscriptions, '{PLAIN_ALERT_SECRET}')",
    )


def downgrade() -> None:
    op.drop_constraint("sql_alerts_secrets_sealed", "sql_alerts", type_="check")
    op.drop_constraint("registry_webhooks_secrets_sealed", "registry_webhooks", type_="check")
    bind = op.get_bind()
    hooks = bind.execute(
        sa.text(
            'SELECT id, secret, "authorization" FROM registry_webhooks '
            'WHERE secret IS NOT NULL OR "authorization" IS NOT NULL'
        )
    ).all()
    alerts = bind.execute(
        sa.text(
            "SELECT id, subscriptions FROM sql_alerts WHERE jsonb_path_exists(subscriptions, '$[*].webhook.secret')"
        )
    ).all()
    if not hooks and not alerts:
        return
    keyring = _keyring(len(hooks) + len(alerts))
    for webhook_id, *values in hooks:
        opened = {
            name: keyring.open(_webhook_place(webhook_id), name, Sealed.from_text(value, name)).decode()
            if value
            else None
            for name, value in zip(FIELDS, values, strict=True)
        }
        bind.execute(
            sa.text('UPDATE registry_webhooks SET secret = :secret, "authorization" = :authorization WHERE id = :id'),
            {"id": webhook_id, **opened},
        )
    for alert_id, subscriptions in alerts:
        place, field = _alert_place(alert_id)
        for item in subscriptions:
            webhook = item.get("webhook") if isinstance(item, dict) else None
            if isinstance(webhook, dict) and webhook.get("secret"):
                field_name = field + str(webhook["url"])
                webhook["secret"] = keyring.open(
                    place, field_name, Sealed.from_text(webhook["secret"], field_name)
                ).decode()
        bind.execute(
            sa.text("UPDATE sql_alerts SET subscriptions = CAST(:subscriptions AS jsonb) WHERE id = :id"),
            {"id": alert_id, "subscriptions": json.dumps(subscriptions)},
        )
