"""A webhook POST: the JSON payload with its delivery id, signed with the subscriber's secret, to an allowed URL."""

from __future__ import annotations

import hashlib
import hmac

import aiohttp

from gateway.core.destinations import AllowList, DestinationError, parse_destination
from gateway.delivery.worker import Outcome

SIGNATURE_HEADER = "X-Databricks-Signature"
DELIVERY_HEADER = "X-Fedgate-Delivery"
MAX_ANSWER_CHARS = 1000


def signature(secret: str, body: bytes) -> str:
    """Databricks' `X-Databricks-Signature`: the hex HMAC-SHA256 of the body under the webhook's secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_signed(
    url: str,
    payload: bytes,
    delivery: str,
    seconds: float,
    *,
    secret: str | None,
    authorization: str | None = None,
    verify_ssl: bool = True,
    agent: str = "fedgate-webhooks",
) -> tuple[int, str]:
    """The gateway's one way of sending a webhook (registry webhooks, SQL alerts): the JSON payload POSTed with
    its delivery id and, given a secret, `X-Databricks-Signature`; (status, the answer's start). Redirects are not
    followed. The caller checks the URL against the allow-list first."""
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery, "User-Agent": agent}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, payload)
    if authorization:
        headers["Authorization"] = authorization
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
        session.post(url, data=payload, headers=headers, allow_redirects=False, ssl=verify_ssl) as answer,
    ):
        body = await answer.content.read(MAX_ANSWER_CHARS)
        return answer.status, body.decode("utf-8", errors="replace")


async def send_webhook(
    allowed: AllowList,
    url: str,
    payload: bytes,
    delivery: str,
    seconds: float,
    *,
    secret: str | None,
    authorization: str | None = None,
    verify_ssl: bool = True,
    agent: str = "fedgate-webhooks",
) -> Outcome:
    """One attempt of a queued delivery: the URL checked against the allow-list again (a destination the operator
    took off it since gets nothing, for good), then `post_signed`; a 2xx answer delivers it."""
    try:
        if not allowed.allows(parse_destination(url)):
            return Outcome.dropped("the URL is no longer an allowed destination")
    except DestinationError:
        return Outcome.dropped("the URL is not one this gateway can check")
    try:
        status, _ = await post_signed(
            url,
            payload,
            delivery,
            seconds,
            secret=secret,
            authorization=authorization,
            verify_ssl=verify_ssl,
            agent=agent,
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # The exception's class only: a message may repeat the URL (and whatever it carries).
        return Outcome.retry(None, f"no answer ({type(exc).__name__})")
    if 200 <= status < 300:
        return Outcome.delivered(status)
    return Outcome.retry(status, f"answered {status}")
