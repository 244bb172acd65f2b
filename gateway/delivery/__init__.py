"""Durable outgoing notifications: the one way the gateway sends a signed webhook and retries it.

Registry webhooks (gateway/registry/webhooks.py) and SQL alerts (gateway/alerts/delivery.py) each keep their
own deliveries table, payloads and API; what they share is here:

- `worker.py`: `DeliveryWorker`, the loop every gateway process runs over one deliveries table: a claim
  (`FOR UPDATE SKIP LOCKED`) takes due deliveries and moves their next attempt past a lease in one statement,
  so one process at a time holds each; the feature's `send` says how an attempt went (`Outcome`), and the
  worker records it: delivered, tried again after a delay that doubles (at most an hour), or failed for good
  once `max_attempts` are spent or the feature says another attempt is pointless.
- `webhook.py`: `post_signed` (the JSON body POSTed with its delivery id and, given a secret, Databricks'
  `X-Databricks-Signature`, the hex HMAC-SHA256 of the body; redirects are not followed) and `send_webhook`
  (the URL checked against `[outbound] allowed_destinations` before each attempt, the answer as an `Outcome`).
"""

from __future__ import annotations

from gateway.delivery.webhook import (
    DELIVERY_HEADER,
    MAX_ANSWER_CHARS,
    SIGNATURE_HEADER,
    post_signed,
    send_webhook,
    signature,
)
from gateway.delivery.worker import Delivery, DeliveryWorker, Outcome, Pacing

__all__ = [
    "DELIVERY_HEADER",
    "MAX_ANSWER_CHARS",
    "SIGNATURE_HEADER",
    "Delivery",
    "DeliveryWorker",
    "Outcome",
    "Pacing",
    "post_signed",
    "send_webhook",
    "signature",
]
