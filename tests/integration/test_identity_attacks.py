"""Attacks on identity: who a credential names, and what a browser session may be made of.

Real gateway processes of the stack (one of them also accepting the local OIDC issuer's access tokens) and the
stack's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import Any

import asyncpg
import pytest
import requests

from tests.conftest import Stack
from tests.support.identity import SCIM, Admin, unique

pytestmark = pytest.mark.integration
TIMEOUT = 30


def audited(stack: Stack, actor: str, action: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The audit rows of `actor` doing `action`, once there are any (denials are written in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        log = stack.http().get(
            f"{stack.url}/api/2.0/fedgate/audit-log", params={"max_results": 1000, "actor": actor}, timeout=TIMEOUT
        )
        assert log.status_code == 200, log.text
        rows = [row for row in log.json().get("entries", []) if row["action"] == action]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def service_principal(stack: Stack) -> tuple[int, str, str]:
    """A new service principal with a token of its own: (id, application id, token)."""
    created = stack.http().post(
        f"{stack.url}{SCIM}/ServicePrincipals", json={"applicationId": unique("robot")}, timeout=TIMEOUT
    )
    assert created.status_code == 201, created.text
    application_id = created.json()["applicationId"]
    issued = stack.http().post(
        f"{stack.url}/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": application_id, "comment": "a machine's"},
        timeout=TIMEOUT,
    )
    assert issued.status_code == 200, issued.text
    return int(created.json()["id"]), application_id, issued.json()["token_value"]


def sign_in(stack: Stack, token: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/fedgate/sign-in/token",
        data={"token": token, "next": "/"},
        headers={"Origin": stack.url},
        allow_redirects=False,
        timeout=TIMEOUT,
    )


def test_a_service_principals_token_gets_no_browser_session(stack: Stack) -> None:
    """A service principal is a machine: its token works on the API, never as a person's sign-in to the UI."""
    _, application_id, token = service_principal(stack)
    me = requests.get(f"{stack.url}{SCIM}/Me", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
    assert me.status_code == 200 and me.json()["applicationId"] == application_id
    refused = sign_in(stack, token)
    assert refused.status_code == 403, refused.text
    assert "service principal" in refused.text and "not a person" in refused.text
    assert "fedgate_session" not in refused.headers.get("set-cookie", "")
    assert "location" not in refused.headers
    rows = audited(stack, application_id, "ui.sign_in")
    assert [row["outcome"] for row in rows] == ["denied"], rows
    # A user's token still signs in.
    person = Admin.of(stack).person(f"{unique('human')}@example.com")
    assert sign_in(stack, person.token).status_code == 303


def test_a_browser_session_of_a_service_principal_made_before_is_refused_and_ended(stack: Stack) -> None:
    """Sessions that a service principal's token got before sign-in refused them authenticate nobody now."""
    principal_id, _, _ = service_principal(stack)
    value = secrets.token_urlsafe(32)

    async def plant() -> None:
        connection = await asyncpg.connect(stack.database_url)
        try:
            await connection.execute(
                "INSERT INTO browser_sessions (id_hash, principal_id, via, groups, expires_at, handle) "
                "VALUES ($1, $2, 'token', '[]'::jsonb, now() + interval '1 hour', $3)",
                hashlib.sha256(value.encode()).digest(),
                principal_id,
                secrets.token_hex(16),
            )
        finally:
            await connection.close()

    async def left() -> int:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return int(
                await connection.fetchval("SELECT count(*) FROM browser_sessions WHERE principal_id = $1", principal_id)
            )
        finally:
            await connection.close()

    asyncio.run(plant())
    answer = requests.get(f"{stack.url}{SCIM}/Me", cookies={"fedgate_session": value}, timeout=TIMEOUT)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error_code"] == "UNAUTHENTICATED"
    assert asyncio.run(left()) == 0
