"""Attacks on identity: who a credential names, and what a browser session may be made of.

Real gateway processes of the stack (one of them also accepting the local OIDC issuer's access tokens) and the
stack's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import requests
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import await_only

from gateway.authn.oidc import OidcIdentity
from gateway.authn.service import Authenticator
from gateway.authn.sessions import BrowserSessions
from gateway.authz.live import LivePolicy
from gateway.core.errors import Unauthenticated
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.elsewhere import made_elsewhere
from tests.support.identity import SCIM, Admin, unique
from tests.support.oidc import OIDC_AUDIENCE as AUDIENCE
from tests.support.oidc import OidcIssuer
from tests.support.waiting import logged_so_far, until

pytestmark = pytest.mark.integration
TIMEOUT = 30


def audited(stack: Stack, actor: str, action: str) -> list[dict[str, Any]]:
    """The audit rows of `actor` doing `action`, once there are any (denials are written from a queue)."""

    def read() -> list[dict[str, Any]]:
        log = stack.http().get(
            f"{stack.url}/api/2.0/fedgate/audit-log",
            params={"max_results": 1000, "actor": actor, "action": action},
            timeout=TIMEOUT,
        )
        assert log.status_code == 200, log.text
        return [row for row in log.json().get("entries", []) if row["action"] == action]

    return until(read, bool, f"an audit row of {actor} doing {action}")


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


def me(gateway_url: str, token: str) -> requests.Response:
    return requests.get(f"{gateway_url}{SCIM}/Me", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)


def test_a_name_that_only_folds_onto_an_account_admins_names_nobody(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, stack: Stack
) -> None:
    """An address with a long s or a Kelvin sign is another address than the admin's with s or k: an identity
    provider vouching for it does not vouch for the admin's, though Unicode case-folding makes them equal."""
    suffix = uuid.uuid4().hex[:6]
    boss = f"kass.{suffix}@example.com"
    created = stack.http().post(
        f"{stack.url}{SCIM}/Users", json={"userName": boss, "roles": [{"value": "account_admin"}]}, timeout=TIMEOUT
    )
    assert created.status_code == 201, created.text
    lookalikes = [
        f"ka\u017fs.{suffix}@example.com",  # LATIN SMALL LETTER LONG S folds to s
        f"\u212aass.{suffix}@example.com",  # KELVIN SIGN folds (and lower-cases) to k
        f"\u2003kass.{suffix}@example.com",  # EM SPACE, which str.strip() removes
        f"\uff4bass.{suffix}@example.com",  # FULLWIDTH k: never folded, refused as before
        f"kass.{suffix}@example.com.",  # a trailing dot: refused as before
    ]
    for email in lookalikes:
        token = issuer.token("m", audience=AUDIENCE, email=email, extra_claims={"email_verified": True})
        answer = me(oidc_gateway.url, token)
        assert answer.status_code == 401, (email, answer.text)
        assert "not a valid user name" in answer.json()["message"], (email, answer.text)
    real = issuer.token("b", audience=AUDIENCE, email=boss.upper(), extra_claims={"email_verified": True})
    answer = me(oidc_gateway.url, real)
    assert answer.status_code == 200 and answer.json()["userName"] == boss  # ASCII case still folds
    # Nor does SCIM store a look-alike under the name it folds to.
    for user_name in (f"\u017fomeone.{suffix}@example.com", f"\u212ale.{suffix}@example.com"):
        refused = stack.http().post(f"{stack.url}{SCIM}/Users", json={"userName": user_name}, timeout=TIMEOUT)
        assert refused.status_code == 400, (user_name, refused.text)
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_scim_filter_finds_no_principal_a_look_alike_name_only_folds_onto(stack: Stack) -> None:
    """An identity provider provisioning `ka\u017fs@...` (long s) first asks SCIM for `userName eq "..."` with it and
    links what it finds: its later changes (deactivation, roles, groups) then go to that principal. Unicode
    case-folding made the admin `kass@...` the answer, though every name is ASCII and no look-alike names anyone;
    ASCII case still folds, as SCIM compares these attributes case-insensitively."""
    suffix = uuid.uuid4().hex[:6]
    admin = stack.http()
    boss = f"kass.{suffix}@example.com"
    made = admin.post(
        f"{stack.url}{SCIM}/Users", json={"userName": boss, "roles": [{"value": "account_admin"}]}, timeout=TIMEOUT
    )
    assert made.status_code == 201, made.text
    team = f"Kiosk-{suffix}"
    assert admin.post(f"{stack.url}{SCIM}/Groups", json={"displayName": team}, timeout=TIMEOUT).status_code == 201
    robot = f"sk-{suffix}"
    made = admin.post(f"{stack.url}{SCIM}/ServicePrincipals", json={"applicationId": robot}, timeout=TIMEOUT)
    assert made.status_code == 201, made.text

    def found(resource: str, condition: str) -> list[str]:
        listed = admin.get(f"{stack.url}{SCIM}/{resource}", params={"filter": condition}, timeout=TIMEOUT)
        assert listed.status_code == 200, listed.text
        return [one["id"] for one in listed.json()["Resources"]]

    lookalikes = [
        ("Users", f'userName eq "ka\u017fs.{suffix}@example.com"'),  # LATIN SMALL LETTER LONG S folds to s
        ("Users", f'userName eq "\u212aass.{suffix}@example.com"'),  # KELVIN SIGN folds to k
        ("Users", f'userName sw "\u212aass.{suffix}"'),
        ("Groups", f'displayName eq "\u212aiosk-{suffix}"'),
        ("ServicePrincipals", f'applicationId eq "\u017fk-{suffix}"'),
    ]
    for resource, condition in lookalikes:
        assert found(resource, condition) == [], condition
    assert len(found("Users", f'userName eq "{boss.upper()}"')) == 1
    assert len(found("Groups", f'displayName eq "{team.lower()}"')) == 1
    assert len(found("ServicePrincipals", f'applicationId eq "{robot.upper()}"')) == 1


def test_an_identity_provider_group_counts_only_under_its_exact_name(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, stack: Stack
) -> None:
    """A provider's group named with a no-break space before `team` is not the gateway's group `team`."""
    team = unique("exact-team")
    Admin.of(stack).group(team)
    Admin.of(stack).grant("workspaces/team-b", "CAN_READ", group=team)
    email = f"{unique('grouped')}@example.com"
    verified = {"email_verified": True}

    def search(groups: list[str]) -> int:
        token = issuer.token("g", audience=AUDIENCE, email=email, groups=groups, extra_claims=verified)
        return requests.post(
            f"{oidc_gateway.url}/api/2.0/mlflow/experiments/search",
            json={"max_results": 1},
            headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "team-b"},
            timeout=TIMEOUT,
        ).status_code

    assert search([team]) == 200
    assert search([f" {team} "]) == 200  # ASCII spaces around a claim are trimmed, as for any name
    for spoof in (f"\u00a0{team}", f"{team}\u2003", f"\u200b{team}"):
        assert search([spoof]) == 404, spoof


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_whose_header_nests_past_the_parsers_depth_is_refused_not_failed(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer
) -> None:
    """A JWT's header is read before anything is checked, by anyone who can reach the gateway. One nesting 5,000
    arrays deep (13 KB, under the token limit) made Python's JSON parser raise RecursionError, which no refusal
    caught: a 500 logged as the gateway's own failure for a GET, and for a call with a body a 400 blaming the body,
    either way without spending the address's anonymous-denial budget. It is a malformed token: 401."""
    header = b'{"alg":"RS256","kid":"' + issuer.kid.encode() + b'","x5c":' + b"[" * 5000 + b"]" * 5000 + b"}"
    claims = json.dumps({"iss": issuer.url, "sub": "deep", "aud": AUDIENCE, "exp": 4102444800}).encode()
    token = f"{_segment(header)}.{_segment(claims)}.{_segment(b'not a signature')}"
    assert len(token) < 16 * 1024
    log_path = oidc_gateway.log_path
    assert log_path is not None
    logged_before = log_path.stat().st_size
    auth = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "team-a"}
    answers = [
        requests.get(f"{oidc_gateway.url}{SCIM}/Me", headers=auth, timeout=TIMEOUT),
        requests.get(f"{oidc_gateway.url}/api/2.0/mlflow/experiments/search?max_results=1", headers=auth, timeout=30),
        requests.post(
            f"{oidc_gateway.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, headers=auth, timeout=30
        ),
    ]
    for answer in answers:
        assert answer.status_code == 401, (answer.status_code, answer.text[:300])
        assert answer.json()["error_code"] == "UNAUTHENTICATED", answer.text
        assert answer.json()["message"] == "The OIDC token is malformed.", answer.text
    logged_so_far(oidc_gateway.url, log_path)
    with log_path.open("rb") as handle:
        handle.seek(logged_before)
        logged = handle.read().decode("utf-8", "replace")
    assert "unexpected error" not in logged and "RecursionError" not in logged, logged[-2000:]


def test_a_disabled_group_gives_nothing_when_an_identity_provider_names_it(
    oidc_gateway: GatewayProcess, issuer: OidcIssuer, stack: Stack
) -> None:
    """An account admin disables a group to take its rights away: its members, the gateway's and those the identity
    provider names alike, keep none of its grants, nor those of the groups it is in."""
    team, parent = unique("cut-team"), unique("cut-parent")
    admin = Admin.of(stack)
    team_id = admin.group(team)
    admin.group(parent, members=[team_id])
    admin.grant("workspaces/team-b", "CAN_READ", group=team)
    admin.grant("workspaces/team-a", "CAN_READ", group=parent)
    email = f"{unique('cut')}@example.com"

    def search(workspace: str) -> int:
        token = issuer.token("c", audience=AUDIENCE, email=email, groups=[team], extra_claims={"email_verified": True})
        return requests.post(
            f"{oidc_gateway.url}/api/2.0/mlflow/experiments/search",
            json={"max_results": 1},
            headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace},
            timeout=TIMEOUT,
        ).status_code

    assert (search("team-b"), search("team-a")) == (200, 200)
    disabled = admin.http().patch(
        f"{stack.url}{SCIM}/Groups/{team_id}",
        json={"Operations": [{"op": "replace", "path": "active", "value": False}]},
        timeout=TIMEOUT,
    )
    assert disabled.status_code == 200, disabled.text
    assert until(lambda: (search("team-b"), search("team-a")), lambda codes: codes == (404, 404), "no rights")


def sql(stack: Stack, token: str, statement: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/api/2.0/sql/statements",
        json={"statement": statement, "warehouse_id": "any", "wait_timeout": "30s"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def succeeded(response: requests.Response) -> list[list[Any]]:
    assert response.status_code == 200, response.text
    assert response.json()["status"]["state"] == "SUCCEEDED", response.text
    return list(response.json().get("result", {}).get("data_array") or [])


def test_a_views_owner_is_the_principal_not_whoever_holds_the_name_later(stack: Stack) -> None:
    """A view reads with its owner's rights. Once the owner is renamed or deleted, a newcomer given the old name
    (here an account admin) must not become the owner whose rights every reader of the view reads with."""
    admin = Admin.of(stack)
    suffix = uuid.uuid4().hex[:8]
    catalog, maker_name = f"owners_{suffix}", f"maker.{suffix}@example.com"
    maker, reader = admin.person(maker_name), admin.person(f"reader.{suffix}@example.com")
    view = f"{catalog}.mlflow.experiments"
    count = f"SELECT count(*) FROM {view}"
    for statement in (
        f"CREATE VIEW {catalog}.mlflow.seed AS SELECT experiment_id FROM system.mlflow.experiments_latest",
        f"GRANT USE CATALOG ON CATALOG system TO `{maker.name}`",
        f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{maker.name}`",
        f"GRANT MANAGE ON SCHEMA {catalog}.mlflow TO `{maker.name}`",
        f"GRANT USE CATALOG ON CATALOG {catalog} TO `{reader.name}`",
        f"GRANT USE SCHEMA ON SCHEMA {catalog}.mlflow TO `{reader.name}`",
    ):
        succeeded(sql(stack, ADMIN_TOKEN, statement))
    succeeded(
        sql(stack, maker.token, f"CREATE VIEW {view} AS SELECT experiment_id FROM system.mlflow.experiments_latest")
    )
    succeeded(sql(stack, maker.token, f"GRANT SELECT ON VIEW {view} TO `{reader.name}`"))
    succeeded(sql(stack, reader.token, count))
    # The owner is renamed: the view stays theirs, read with their rights.
    renamed = f"maker.renamed.{suffix}@example.com"
    patched = admin.http().patch(
        f"{stack.url}{SCIM}/Users/{maker.id}",
        json={"Operations": [{"op": "replace", "path": "userName", "value": renamed}]},
        timeout=TIMEOUT,
    )
    assert patched.status_code == 200, patched.text
    succeeded(sql(stack, reader.token, count))
    # Someone else gets the old name, as an account admin; the owner loses the right to read the table.
    newcomer = admin.http().post(
        f"{stack.url}{SCIM}/Users",
        json={"userName": maker_name, "roles": [{"value": "account_admin"}]},
        timeout=TIMEOUT,
    )
    assert newcomer.status_code == 201, newcomer.text
    succeeded(sql(stack, ADMIN_TOKEN, f"REVOKE SELECT ON SCHEMA system.mlflow FROM `{renamed}`"))
    lacking = sql(stack, reader.token, count)
    assert lacking.status_code == 403, lacking.text
    assert lacking.json()["message"] == (
        f"View {view} cannot be read: its owner {renamed} lacks SELECT on table system.mlflow.experiments_latest."
    )
    # The owner is deleted: the view is nobody's, whoever holds either name.
    assert admin.http().delete(f"{stack.url}{SCIM}/Users/{maker.id}", timeout=TIMEOUT).status_code == 204
    again = admin.http().post(
        f"{stack.url}{SCIM}/Users", json={"userName": renamed, "roles": [{"value": "account_admin"}]}, timeout=TIMEOUT
    )
    assert again.status_code == 201, again.text
    orphaned = sql(stack, reader.token, count)
    assert orphaned.status_code == 403, orphaned.text
    assert "no longer exists or is disabled" in orphaned.json()["message"]


def test_revoking_a_token_revokes_every_token_minted_with_it(stack: Stack) -> None:
    """A stolen token used to mint another must not leave the thief a working token once the victim revokes it."""
    admin = Admin.of(stack)
    person = admin.person(f"{unique('minted')}@example.com")
    unrelated = admin.token_for(person.name, "made by an admin, not with the stolen token")

    def mint(**credentials: Any) -> str:
        created = requests.post(
            f"{stack.url}/api/2.0/token/create", json={"comment": "minted"}, timeout=TIMEOUT, **credentials
        )
        assert created.status_code == 200, created.text
        return str(created.json()["token_value"])

    def works(token: str) -> bool:
        return me(stack.url, token).status_code == 200

    child = mint(headers={"Authorization": f"Bearer {person.token}"})
    grandchild = mint(headers={"Authorization": f"Bearer {child}"})
    signed_in = sign_in(stack, person.token)
    assert signed_in.status_code == 303, signed_in.text
    from_session = mint(
        headers={"Origin": stack.url}, cookies={"fedgate_session": signed_in.cookies["fedgate_session"]}
    )
    sibling = mint(headers={"Authorization": f"Bearer {unrelated}"})
    assert all(works(token) for token in (child, grandchild, from_session, sibling))
    stolen_id = next(
        info["token_id"]
        for info in admin.http()
        .get(f"{stack.url}/api/2.0/token-management/tokens", timeout=TIMEOUT)
        .json()["token_infos"]
        if info["owner_id"] == person.id and info["created_by_username"] == "admin" and info["comment"] == "tests"
    )
    revoked = admin.http().delete(f"{stack.url}/api/2.0/token-management/tokens/{stolen_id}", timeout=TIMEOUT)
    assert revoked.status_code == 200, revoked.text
    assert not works(person.token)
    for token in (child, grandchild, from_session):
        refused = me(stack.url, token)
        assert refused.status_code == 401, refused.text
        assert token not in refused.text
    assert works(unrelated) and works(sibling)
    rows = audited(stack, "admin", "token.revoke")
    assert any(row["target"] == f"token:{stolen_id}" and len(row["details"]["minted_with_it"]) == 3 for row in rows), (
        rows
    )


async def test_a_token_revoked_while_it_is_being_looked_up_is_not_cached_as_valid(stack: Stack) -> None:
    """A replica's token cache is emptied when the policy moves (a revocation moves it). A lookup that read the
    token's row before the revocation and finished after the cache was emptied must not put the row back: the
    revoked token would then work on that replica until the next change of the policy."""
    person = Admin.of(stack).person(f"{unique('cached')}@example.com")
    token_id = next(
        info["token_id"]
        for info in Admin.of(stack)
        .http()
        .get(f"{stack.url}/api/2.0/token-management/tokens", timeout=TIMEOUT)
        .json()["token_infos"]
        if info["owner_id"] == person.id
    )
    engine = make_engine(stack.database_url, pool_size=4)
    sessionmaker = make_sessionmaker(engine)

    async def no_views(session: AsyncSession) -> list[str]:
        return []

    policy = LivePolicy(sessionmaker, views=no_views)
    await policy.reload()
    replica = Authenticator(ADMIN_TOKEN, policy, sessionmaker)
    await replica.start()
    armed = [True]

    def revoke_meanwhile(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        """Right after this replica read the token's row: the token is revoked (by the gateway) and the news
        reaches this replica, whose cache is emptied, before the lookup goes on."""
        if armed and "FROM tokens" in statement:
            armed.clear()
            revoked = Admin.of(stack).http().delete(f"{stack.url}/api/2.0/token-management/tokens/{token_id}")
            assert revoked.status_code == 200, revoked.text
            await_only(policy.reload())

    event.listen(engine.sync_engine, "after_cursor_execute", revoke_meanwhile)
    try:
        first = await replica.authenticate(f"Bearer {person.token}")  # asked before the revocation: answered
        assert first.name == person.name and not armed
        assert me(stack.url, person.token).status_code == 401  # revoked for the gateway itself
        with pytest.raises(Unauthenticated):
            await replica.authenticate(f"Bearer {person.token}")
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", revoke_meanwhile)
        await engine.dispose()


async def test_a_user_deleted_while_being_provisioned_is_not_signed_in_nor_brought_back(stack: Stack) -> None:
    """A replica provisions a person the identity provider vouched for whom its policy does not know yet, and
    remembers their principal id until the policy next moves. A provisioning that read the person's row just
    before the person was deleted must neither answer with, nor remember, nor record into the policy of every
    replica the deleted principal: the person would go on signing in as a principal that no longer exists (and
    recorded, it would come back into every replica's policy)."""
    engine = make_engine(stack.database_url, pool_size=4)
    sessionmaker = make_sessionmaker(engine)

    async def no_views(session: AsyncSession) -> list[str]:
        return []

    policy = LivePolicy(sessionmaker, views=no_views)
    await policy.reload()  # before the person exists: this replica has not heard of them yet
    replica = Authenticator(ADMIN_TOKEN, policy, sessionmaker)
    await replica.start()
    name = f"{unique('provisioned')}@example.com".casefold()
    deleted_id = Admin.of(stack).user(name)
    identity = OidcIdentity(username=name, groups=frozenset(), subject=name)
    armed = [True]

    def delete_meanwhile(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        """Right after this replica read the person's row: the person is deleted (by the gateway) and the news
        reaches this replica, whose caches are emptied, before the provisioning goes on."""
        if armed and statement.lstrip().upper().startswith("SELECT") and "FROM principals" in statement:
            armed.clear()
            gone = Admin.of(stack).http().delete(f"{stack.url}{SCIM}/Users/{deleted_id}", timeout=TIMEOUT)
            assert gone.status_code == 204, gone.text
            await_only(policy.reload())

    event.listen(engine.sync_engine, "after_cursor_execute", delete_meanwhile)
    try:
        first = await replica.identity_principal(identity)
        assert not armed
        assert first.id != deleted_id, "signed in as the deleted principal"
        again = await replica.identity_principal(identity)
        assert again.id == first.id
        await policy.reload()
        known = policy.snapshot.find("user", name)
        assert known is not None and known.id == first.id, known
        assert policy.snapshot.principal(deleted_id) is None
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", delete_meanwhile)
        await engine.dispose()


async def test_made_up_session_cookies_cost_at_most_one_lookup_each(stack: Stack) -> None:
    """A cookie no session was ever made with (not of the shape of the ids the gateway issues) is not looked up
    at all, and one found dead is not looked up again: a flood of them is not a flood of database reads."""
    engine = make_engine(stack.database_url, pool_size=2)
    sessionmaker = make_sessionmaker(engine)

    async def no_views(session: AsyncSession) -> list[str]:
        return []

    person = Admin.of(stack).person(f"{unique('browser')}@example.com")
    policy = LivePolicy(sessionmaker, views=no_views)
    await policy.reload()
    sessions = BrowserSessions(sessionmaker, idle_seconds=3600, max_seconds=3600)
    replica = Authenticator(ADMIN_TOKEN, policy, sessionmaker, sessions=sessions)
    await replica.start()
    lookups: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "browser_sessions" in statement:
            lookups.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        for value in ("x", "fgt_" + "a" * 40, "a" * 44, "a" * 42 + "!", "é" * 43, "a" * 42 + "="):
            with pytest.raises(Unauthenticated):
                await replica.from_session(value)
        assert lookups == []
        dead = secrets.token_urlsafe(32)
        for _ in range(3):
            with pytest.raises(Unauthenticated):
                await replica.from_session(dead)
        assert len(lookups) == 1, lookups
        # A live session is found as ever.
        value, _ = await sessions.begin(person.id, "oidc")
        principal, _ = await replica.from_session(value)
        assert principal.id == person.id
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        await engine.dispose()


def test_a_scim_patch_changes_exactly_what_it_names_or_is_refused(stack: Stack) -> None:
    """Roles are a list: adding another role left the account admin role taken away, and removing the admin role by
    its filtered path (`roles[value eq "account_admin"]`) answered 200 and left it. A path the gateway does not keep
    (another attribute, `members` of a user) or an attribute in other case answered 200 with nothing changed: an
    identity provider was told a change was made that was not."""
    admin = Admin.of(stack).http()
    made = admin.post(
        f"{stack.url}{SCIM}/Users",
        json={"userName": unique("roles") + "@example.com", "roles": [{"value": "account_admin"}]},
        timeout=TIMEOUT,
    )
    assert made.status_code == 201, made.text
    url = f"{stack.url}{SCIM}/Users/{made.json()['id']}"

    def patch(*operations: dict[str, Any]) -> requests.Response:
        return admin.patch(url, json={"Operations": list(operations)}, timeout=TIMEOUT)

    def is_admin() -> bool:
        got = admin.get(url, timeout=TIMEOUT)
        assert got.status_code == 200, got.text
        return any(role.get("value") == "account_admin" for role in got.json().get("roles") or [])

    added = patch({"op": "add", "path": "roles", "value": [{"value": "workspace_reader"}]})
    assert added.status_code == 200, added.text
    assert is_admin()
    whole = patch({"op": "add", "value": {"roles": [{"value": "workspace_reader"}], "displayName": "Still Admin"}})
    assert whole.status_code == 200 and whole.json()["displayName"] == "Still Admin", whole.text
    assert is_admin()
    removed = patch({"op": "remove", "path": 'roles[value eq "account_admin"]'})
    assert removed.status_code == 200, removed.text
    assert not is_admin()
    assert patch({"op": "add", "path": "roles", "value": [{"value": "account_admin"}]}).status_code == 200
    assert is_admin()
    assert patch({"op": "remove", "path": "roles"}).status_code == 200
    assert not is_admin()
    # Attribute names are case-insensitive (RFC 7644); a path naming nothing the gateway keeps is refused.
    renamed = patch({"op": "replace", "path": "DISPLAYNAME", "value": "Shown"})
    assert renamed.status_code == 200 and renamed.json()["displayName"] == "Shown", renamed.text
    for operation in (
        {"op": "add", "path": "members", "value": [{"value": "1"}]},
        {"op": "replace", "path": "nickName", "value": "x"},
        {"op": "replace", "path": 'roles[value eq "account_admin"]', "value": True},
    ):
        refused = patch(operation)
        assert refused.status_code == 400, (operation, refused.text)
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert admin.delete(url, timeout=TIMEOUT).status_code == 204


def test_a_principal_created_into_a_group_that_is_not_there_is_not_created(stack: Stack) -> None:
    """SCIM create with `groups`: the principal was made, then put into each group in calls of their own, so a group
    id that names no group answered 404 with the user already made (an identity provider's retry then met 409).
    Now one transaction: refused (400) and nothing made; with a real group the principal is in it."""
    admin = Admin.of(stack).http()
    team = admin.post(f"{stack.url}{SCIM}/Groups", json={"displayName": unique("into")}, timeout=TIMEOUT)
    assert team.status_code == 201, team.text
    name = unique("into") + "@example.com"
    other = Admin.of(stack).user(unique("not-a-group") + "@example.com")
    for missing in ("999999999", str(other)):  # no principal, and a user, not a group
        refused = admin.post(
            f"{stack.url}{SCIM}/Users",
            json={"userName": name, "groups": [{"value": team.json()["id"]}, {"value": missing}]},
            timeout=TIMEOUT,
        )
        assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text
        listed = admin.get(f"{stack.url}{SCIM}/Users", params={"filter": f'userName eq "{name}"'}, timeout=TIMEOUT)
        assert listed.json()["totalResults"] == 0, listed.text
        members = admin.get(f"{stack.url}{SCIM}/Groups/{team.json()['id']}", timeout=TIMEOUT).json()["members"]
        assert members == [], members
    made = admin.post(
        f"{stack.url}{SCIM}/Users", json={"userName": name, "groups": [{"value": team.json()["id"]}]}, timeout=TIMEOUT
    )
    assert made.status_code == 201, made.text
    assert [group["value"] for group in made.json()["groups"]] == [team.json()["id"]]
    assert admin.delete(f"{stack.url}{SCIM}/Users/{made.json()['id']}", timeout=TIMEOUT).status_code == 204
    assert admin.delete(f"{stack.url}{SCIM}/Groups/{team.json()['id']}", timeout=TIMEOUT).status_code == 204


def test_a_service_principals_application_id_is_fixed(stack: Stack) -> None:
    """Databricks keeps a service principal's applicationId once it is made; a SCIM PATCH changed it, so whatever
    named the service principal by it (an identity provider, a client's configuration, a SQL statement) lost it,
    and a principal given the freed id next was named instead. Repeating the same value is accepted; a name the
    rules refuse (older than them) can still be replaced by a valid one, the only way to enable it again."""
    admin = Admin.of(stack).http()
    application_id = unique("fixed-app")
    made = admin.post(f"{stack.url}{SCIM}/ServicePrincipals", json={"applicationId": application_id}, timeout=TIMEOUT)
    assert made.status_code == 201, made.text
    url = f"{stack.url}{SCIM}/ServicePrincipals/{made.json()['id']}"

    def patch(*operations: dict[str, Any], at: str = url) -> requests.Response:
        return admin.patch(at, json={"Operations": list(operations)}, timeout=TIMEOUT)

    other = unique("other-app")
    for operation in (
        {"op": "replace", "path": "applicationId", "value": other},
        {"op": "add", "path": "APPLICATIONID", "value": other},
        {"op": "replace", "value": {"applicationId": other, "displayName": "moved"}},
        {"op": "add", "value": {"applicationId": f" {other} "}},
    ):
        refused = patch(operation)
        assert refused.status_code == 400, (operation, refused.text)
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text
        assert "applicationId cannot be changed" in refused.json()["message"], refused.text
        got = admin.get(url, timeout=TIMEOUT).json()
        assert got["applicationId"] == application_id and got["displayName"] == application_id, got
    taken = admin.post(f"{stack.url}{SCIM}/ServicePrincipals", json={"applicationId": other}, timeout=TIMEOUT)
    assert taken.status_code == 201, taken.text  # the id asked for was never given up or taken
    same = patch(
        {"op": "replace", "path": "applicationId", "value": application_id},
        {"op": "replace", "value": {"applicationId": f"{application_id} ", "displayName": "Same App"}},
    )
    assert same.status_code == 200, same.text
    assert same.json()["applicationId"] == application_id and same.json()["displayName"] == "Same App", same.text
    # A service principal named before the rules reserved its name is renamed to a valid one, as ever.
    legacy = made_elsewhere(stack.database_url, "service_principal", "admins", admin=False)
    fixed = unique("formerly-admins")
    renamed = patch(
        {"op": "replace", "path": "applicationId", "value": fixed}, at=f"{stack.url}{SCIM}/ServicePrincipals/{legacy}"
    )
    assert renamed.status_code == 200 and renamed.json()["applicationId"] == fixed, renamed.text
    for done in (made.json()["id"], taken.json()["id"], legacy):
        assert admin.delete(f"{stack.url}{SCIM}/ServicePrincipals/{done}", timeout=TIMEOUT).status_code == 204


def test_ending_a_browser_session_ends_the_tokens_minted_with_it(stack: Stack, oidc_gateway: GatewayProcess) -> None:
    """A stolen session cookie used to mint a token must not leave the thief a working token once the session is
    ended: by signing out, by its owner from another browser, or by an account admin after an incident. Every
    replica refuses the token, the one that cached it too; the person's own token, and a token minted in another
    session, keep working."""
    admin = Admin.of(stack)
    person = admin.person(f"{unique('session-minted')}@example.com")

    def session() -> str:
        signed_in = sign_in(stack, person.token)
        assert signed_in.status_code == 303, signed_in.text
        return str(signed_in.cookies["fedgate_session"])

    def in_session(cookie: str, method: str, path: str, body: dict[str, Any]) -> requests.Response:
        return requests.request(
            method,
            f"{stack.url}{path}",
            json=body,
            headers={"Origin": stack.url},
            cookies={"fedgate_session": cookie},
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    def mint(**credentials: Any) -> str:
        created = requests.post(
            f"{stack.url}/api/2.0/token/create", json={"comment": "minted"}, timeout=TIMEOUT, **credentials
        )
        assert created.status_code == 200, created.text
        return str(created.json()["token_value"])

    def minted_in(cookie: str) -> list[str]:
        child = mint(headers={"Origin": stack.url}, cookies={"fedgate_session": cookie})
        grandchild = mint(headers={"Authorization": f"Bearer {child}"})
        for token in (child, grandchild):  # working, and cached as such by both replicas
            assert me(stack.url, token).status_code == 200
            assert me(oidc_gateway.url, token).status_code == 200
        return [child, grandchild]

    def refused_everywhere(tokens: list[str]) -> None:
        for token in tokens:
            refused = me(stack.url, token)
            assert refused.status_code == 401, refused.text
            until(lambda token=token: me(oidc_gateway.url, token).status_code, lambda status: status == 401, "refused")

    # Signed out.
    cookie = session()
    stolen = minted_in(cookie)
    kept_cookie = session()
    kept = minted_in(kept_cookie)
    signed_out = in_session(cookie, "POST", "/fedgate/sign-out", {})
    assert signed_out.status_code == 303, signed_out.text
    refused_everywhere(stolen)

    # Ended by its owner from another of their sessions.
    cookie = session()
    stolen = minted_in(cookie)
    listed = in_session(kept_cookie, "GET", "/api/2.0/fedgate/sessions", {})
    handle = next(one["session_id"] for one in listed.json()["sessions"] if not one["current"])
    ended = in_session(kept_cookie, "POST", "/api/2.0/fedgate/sessions/end", {"session_id": handle})
    assert ended.status_code == 200, ended.text
    refused_everywhere(stolen)

    assert all(me(stack.url, token).status_code == 200 for token in kept)  # another session's live on

    # Ended by an account admin, with every other session of the person.
    cookie = session()
    stolen = minted_in(cookie)
    ended = admin.http().post(
        f"{stack.url}/api/2.0/fedgate/sessions/end-all", json={"user_name": person.name}, timeout=TIMEOUT
    )
    assert ended.status_code == 200 and ended.json()["ended"] == 2, ended.text
    refused_everywhere(stolen + kept)

    assert me(stack.url, person.token).status_code == 200
    assert me(oidc_gateway.url, person.token).status_code == 200


def test_the_tokens_a_session_end_revokes_are_audited_one_by_one(stack: Stack) -> None:
    """An operator looking into a stolen cookie must see which tokens died with the session and why: one
    `token.revoke` row per token created in it, naming who ended it and for what reason (sign-out, an account
    admin ending the person's sessions, a new sign-in replacing them), never the token or its hash."""
    admin = Admin.of(stack)
    person = admin.person(f"{unique('session-audit')}@example.com")
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()  # not before: the log of a long run is long

    def session(*replacing: str) -> str:
        signed_in = requests.post(
            f"{stack.url}/fedgate/sign-in/token",
            data={"token": person.token, "next": "/"},
            headers={"Origin": stack.url},
            cookies={"fedgate_session": replacing[0]} if replacing else None,
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert signed_in.status_code == 303, signed_in.text
        return str(signed_in.cookies["fedgate_session"])

    def mint(**credentials: Any) -> tuple[str, str]:
        created = requests.post(
            f"{stack.url}/api/2.0/token/create", json={"comment": "minted"}, timeout=TIMEOUT, **credentials
        )
        assert created.status_code == 200, created.text
        return str(created.json()["token_info"]["token_id"]), str(created.json()["token_value"])

    def minted_in(cookie: str) -> tuple[str, str, list[str]]:
        """(id of the token made in the session, id of one minted with it, both values)."""
        child_id, child = mint(headers={"Origin": stack.url}, cookies={"fedgate_session": cookie})
        grandchild_id, grandchild = mint(headers={"Authorization": f"Bearer {child}"})
        return child_id, grandchild_id, [child, grandchild]

    def revocation(actor: str, child_id: str, grandchild_id: str, values: list[str]) -> dict[str, Any]:
        log = stack.http().get(
            f"{stack.url}/api/2.0/fedgate/audit-log",
            params={"max_results": 1000, "actor": actor, "action": "token.revoke", "since": since},
            timeout=TIMEOUT,
        )
        assert log.status_code == 200, log.text
        rows = [row for row in log.json().get("entries", []) if row["target"] == f"token:{child_id}"]
        assert len(rows) == 1, log.text  # written with the revocation: there once the answer is
        (row,) = rows
        assert row["outcome"] == "ok" and row["details"]["minted_with_it"] == [grandchild_id], row
        shown = json.dumps(row)
        for value in values:
            assert value not in shown and hashlib.sha256(value.encode()).hexdigest() not in shown, shown
        for value in values:
            assert me(stack.url, value).status_code == 401
        return row

    # Signed out.
    cookie = session()
    child_id, grandchild_id, values = minted_in(cookie)
    signed_out = requests.post(
        f"{stack.url}/fedgate/sign-out",
        headers={"Origin": stack.url},
        cookies={"fedgate_session": cookie},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert signed_out.status_code == 303, signed_out.text
    row = revocation(person.name, child_id, grandchild_id, values)
    assert row["details"]["reason"] == "signed out", row

    # Replaced by the browser's next sign-in.
    cookie = session()
    child_id, grandchild_id, values = minted_in(cookie)
    session(cookie)
    row = revocation(person.name, child_id, grandchild_id, values)
    assert row["details"]["reason"] == "replaced by a new sign-in", row

    # Ended by an account admin.
    cookie = session()
    child_id, grandchild_id, values = minted_in(cookie)
    ended = admin.http().post(
        f"{stack.url}/api/2.0/fedgate/sessions/end-all", json={"user_name": person.name}, timeout=TIMEOUT
    )
    assert ended.status_code == 200 and ended.json()["ended"] >= 1, ended.text
    row = revocation("admin", child_id, grandchild_id, values)
    assert row["details"]["reason"] == "session ended by admin", row


def test_deactivating_a_user_ends_their_browser_sessions_for_good(stack: Stack) -> None:
    """A user deactivated after an incident and reactivated later gets back their personal access tokens, never a
    browser session of before (a stolen cookie) nor a token made in one: deactivation ends the sessions, as an
    admin's end-all does, and audits each token it revokes."""
    admin = Admin.of(stack)
    person = admin.person(f"{unique('deactivated')}@example.com")
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    signed_in = sign_in(stack, person.token)
    assert signed_in.status_code == 303, signed_in.text
    cookie = str(signed_in.cookies["fedgate_session"])

    def in_session(path: str, method: str = "GET") -> requests.Response:
        return requests.request(
            method,
            f"{stack.url}{path}",
            json={"comment": "minted"} if method == "POST" else None,
            headers={"Origin": stack.url},
            cookies={"fedgate_session": cookie},
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    created = in_session("/api/2.0/token/create", "POST")
    assert created.status_code == 200, created.text
    minted_id, minted = str(created.json()["token_info"]["token_id"]), str(created.json()["token_value"])
    assert in_session("/api/2.0/fedgate/sessions").status_code == 200

    def active(value: bool) -> None:
        patched = admin.http().patch(
            f"{stack.url}{SCIM}/Users/{person.id}",
            json={"Operations": [{"op": "replace", "path": "active", "value": value}]},
            timeout=TIMEOUT,
        )
        assert patched.status_code == 200, patched.text

    active(False)
    # The session is not used while the user is inactive: a session made with a token ends at its first request
    # once that token is refused, and the one an identity provider made would not.
    assert me(stack.url, person.token).status_code == 401
    active(True)
    assert me(stack.url, person.token).status_code == 200  # a personal access token is back
    refused = in_session("/api/2.0/fedgate/sessions")
    assert refused.status_code == 401, refused.text  # the session is not
    assert me(stack.url, minted).status_code == 401  # nor the token made in it

    def audited_as(action: str, target: str) -> list[dict[str, Any]]:
        log = stack.http().get(
            f"{stack.url}/api/2.0/fedgate/audit-log",
            params={"max_results": 1000, "actor": "admin", "action": action, "since": since},
            timeout=TIMEOUT,
        )
        assert log.status_code == 200, log.text
        assert minted not in log.text
        return [row for row in log.json()["entries"] if row["target"] == target]

    revoked = audited_as("token.revoke", f"token:{minted_id}")
    assert [row["details"]["reason"] for row in revoked] == ["deactivated by admin"], revoked
    updates = audited_as("user.update", f"user:{person.id}")
    assert [row["details"].get("sessions_ended") for row in updates] == [1, None], updates
