"""Personal access tokens never outlive the credential that created them, and always expire."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin

pytestmark = pytest.mark.integration
DEFAULT_LIFETIME = 90 * 24 * 3600  # tokens.default_lifetime_seconds
MAX_LIFETIME = 730 * 24 * 3600  # tokens.max_lifetime_seconds


def call(stack: Stack, path: str, body: dict[str, Any], token: str = ADMIN_TOKEN) -> requests.Response:
    return requests.post(f"{stack.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_a_token_never_outlives_the_token_that_created_it(stack: Stack) -> None:
    name = f"minter-{uuid.uuid4().hex[:8]}@example.com"
    Admin.of(stack).user(name)
    before = time.time()
    # A token with five minutes left ...
    parent = call(stack, "/api/2.0/token-management/on-behalf-of/tokens", {"user_name": name, "lifetime_seconds": 300})
    assert parent.status_code == 200, parent.text
    parent_expiry = parent.json()["token_info"]["expiry_time"]
    assert before * 1000 + 299_000 <= parent_expiry <= time.time() * 1000 + 301_000
    token = parent.json()["token_value"]
    # ... mints tokens that expire with it, whatever they ask for (nothing, -1, a year).
    for asked in ({}, {"lifetime_seconds": -1}, {"lifetime_seconds": 365 * 24 * 3600}):
        child = call(stack, "/api/2.0/token/create", {"comment": "child", **asked}, token=token)
        assert child.status_code == 200, child.text
        expiry = child.json()["token_info"]["expiry_time"]
        assert expiry != -1 and expiry <= parent_expiry, (asked, expiry, parent_expiry)
    # A lifetime shorter than what is left is kept as asked.
    short = call(stack, "/api/2.0/token/create", {"lifetime_seconds": 60}, token=token).json()["token_info"]
    assert short["expiry_time"] <= time.time() * 1000 + 61_000


def test_lifetimes_have_a_default_and_a_maximum(stack: Stack) -> None:
    name = f"lifetimes-{uuid.uuid4().hex[:8]}@example.com"
    Admin.of(stack).user(name)
    # The bootstrap admin's credential does not expire: the settings alone decide.
    issued = call(stack, "/api/2.0/token-management/on-behalf-of/tokens", {"user_name": name})
    assert issued.status_code == 200, issued.text
    expiry = issued.json()["token_info"]["expiry_time"]
    assert abs(expiry - (time.time() + DEFAULT_LIFETIME) * 1000) < 60_000
    too_long = call(
        stack,
        "/api/2.0/token-management/on-behalf-of/tokens",
        {"user_name": name, "lifetime_seconds": MAX_LIFETIME + 1},
    )
    assert too_long.status_code == 400 and too_long.json()["error_code"] == "INVALID_PARAMETER_VALUE"
