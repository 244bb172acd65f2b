"""Registry webhooks without servers: which events each activity raises, the signature receivers check, and the
settings that pace deliveries."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gateway.core.config import ConfigError, ServerSettings, Settings, StoreSettings, validate_settings
from gateway.delivery import signature
from gateway.registry.webhooks import EVENTS, events_of


@pytest.mark.parametrize(
    ("activity", "to_stage", "events"),
    [
        (
            "REQUESTED_TRANSITION",
            "Production",
            ["TRANSITION_REQUEST_CREATED", "TRANSITION_REQUEST_TO_PRODUCTION_CREATED"],
        ),
        ("REQUESTED_TRANSITION", "None", ["TRANSITION_REQUEST_CREATED"]),
        (
            "APPROVED_REQUEST",
            "Staging",
            [
                "TRANSITION_REQUEST_APPROVED",
                "MODEL_VERSION_TRANSITIONED_STAGE",
                "MODEL_VERSION_TRANSITIONED_TO_STAGING",
            ],
        ),
        ("REJECTED_REQUEST", "Staging", ["TRANSITION_REQUEST_REJECTED"]),
        ("CANCELLED_REQUEST", "Production", ["TRANSITION_REQUEST_CANCELLED"]),
        ("APPLIED_TRANSITION", "None", ["MODEL_VERSION_TRANSITIONED_STAGE"]),
        (
            "SYSTEM_TRANSITION",
            "Archived",
            ["MODEL_VERSION_TRANSITIONED_STAGE", "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED"],
        ),
        ("NEW_COMMENT", None, ["COMMENT_CREATED"]),
        ("APPROVED_ALIAS_REQUEST", None, ["ALIAS_REQUEST_APPROVED", "MODEL_VERSION_ALIAS_SET"]),
        ("DELETED_ALIAS", None, ["MODEL_VERSION_ALIAS_DELETED"]),
        ("SOMETHING_ELSE", None, []),
    ],
)
def test_each_activity_raises_its_events(activity: str, to_stage: str | None, events: list[str]) -> None:
    assert events_of(activity, to_stage) == events
    assert set(events) <= EVENTS


def test_the_signature_is_databricks_hex_hmac_sha256_of_the_body() -> None:
    body = b'{"event":"COMMENT_CREATED"}'
    assert signature("s3cret", body) == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) != signature("other", body)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("webhook_poll_seconds", 0.0),
        ("webhook_retry_seconds", -1.0),
        ("webhook_timeout_seconds", 3601.0),
        ("webhook_max_attempts", 0),
        ("webhook_history_days", 0),
    ],
)
def test_delivery_settings_out_of_range_are_refused(key: str, value: float) -> None:
    settings = Settings(stores={"s": StoreSettings(url="http://127.0.0.1:9")}, server=ServerSettings(**{key: value}))
    with pytest.raises(ConfigError, match=key):
        validate_settings(settings)
