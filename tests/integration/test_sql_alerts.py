"""SQL alerts against real gateways on a database of their own, a real mlflow store, a real HTTP receiver and a
real SMTP server (aiosmtpd) on loopback.

The documented "low experiment reliability" alert (the success ratio per experiment, `MIN(success_ratio) < 0.9`)
is created by an analyst over seeded runs, some FAILED, written with the stock mlflow client through the gateway:
it fires, its webhook arrives signed with the subscription's secret and its e-mail reaches the SMTP server; it
returns to OK (and says so) once the runs are healthy. It runs with its owner's grants at each evaluation: once
the owner lost SELECT, or is disabled, it fails (ERROR) even when an account admin runs it. The scheduler: two
gateway processes evaluate each fire time once, and fire times missed while every gateway was down give one
catch-up evaluation. Schedules of seconds need `alerts.min_interval_seconds = 1`, a setting for tests. An owner
whose access comes from a group their identity provider names (a real local OIDC issuer: tokens and the browser
sign-in's code flow) has it in every evaluation, as recorded at their last sign-in or change. Last, the
console's alerts page in a real headless Chromium: the analyst creates the reliability alert from its preset, runs
it, sees it TRIGGERED with its history, and the receiver gets the signed webhook (screenshots in test-artifacts/ui/).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.config import ServerSettings
from gateway.devstack import GatewayProcess, free_port
from gateway.sql.documented import SUCCESS_RATIO
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, OUTBOUND_ALLOWED, Stack
from tests.integration.test_registry_webhooks import (
    RECEIVER,
    Received,
    Receiver,
    receiver,  # noqa: F401 - the module's HTTP receiver
    signed,
)
from tests.support.identity import SCIM, Admin, Person, unique
from tests.support.oidc import OidcIssuer
from tests.support.own_gateway import own_config
from tests.support.stock_client import stock_client_env
from tests.support.waiting import until

pytestmark = pytest.mark.integration

WORKSPACE = "alerting"
SECRET = "alert-whsec-" + uuid.uuid4().hex
ALERTS = "/api/2.0/sql/alerts"
STATEMENTS = "/api/2.0/sql/statements"
# The gateways accept the local issuer's tokens and sign people in with it (the code flow).
AUDIENCE = "fedgate"
CLIENT_ID = "fedgate-alerts"
CLIENT_SECRET = "alerts-client-secret-" + uuid.uuid4().hex[:8]
PASSWORD = "correct horse battery staple"
# A domain on the gateways' `alerts.allowed_recipients`: any address of it may be mailed.
LISTS = "lists.fedgate.test"


@dataclass
class Mailbox:
    """What the local SMTP server accepted: (envelope recipients, the message's bytes)."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 60.0) -> list[tuple[list[str], bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.1)
        raise AssertionError(f"the SMTP server received {len(self.messages)} of {count} messages")


@dataclass
class Alerting:
    config: Path
    database_url: str
    gateways: list[GatewayProcess]
    mailbox: Mailbox
    analyst: Person
    outsider: Person
    issuer: OidcIssuer

    @property
    def url(self) -> str:
        return self.gateways[0].url

    def start(self) -> GatewayProcess:
        env = {
            **GATEWAY_ENV,
            "FEDGATE_OIDC_ISSUER": self.issuer.url,
            "FEDGATE_OIDC_AUDIENCE": AUDIENCE,
            "FEDGATE_OIDC_CLIENT_ID": CLIENT_ID,
            "FEDGATE_OIDC_CLIENT_SECRET_ENV": "ALERTS_CLIENT_SECRET",
            "ALERTS_CLIENT_SECRET": CLIENT_SECRET,
        }
        gateway = GatewayProcess(self.config, env).start()
        self.issuer.register(CLIENT_ID, f"{gateway.url}/fedgate/sign-in/callback", CLIENT_SECRET)
        self.gateways.append(gateway)
        return gateway

    def stop_all(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        self.gateways.clear()


def query(url: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return list(await connection.fetch(statement, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def call(url: str, token: str, method: str, path: str, status: int = 200, **kw: Any) -> dict[str, Any]:
    answer = requests.request(method, url + path, headers={"Authorization": f"Bearer {token}"}, timeout=90, **kw)
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def sql(url: str, token: str, statement: str) -> None:
    answer = call(url, token, "POST", STATEMENTS, json={"statement": statement, "wait_timeout": "30s"})
    assert answer["status"]["state"] == "SUCCEEDED", answer


def system_reader(url: str, prefix: str) -> Person:
    """A new user of the gateway at `url` who may read system.mlflow's tables (USE CATALOG, USE SCHEMA, SELECT)."""
    person = Admin(url).person(unique(prefix) + "@example.com")
    for statement in (
        "GRANT USE CATALOG ON CATALOG system TO `{}`",
        "GRANT USE SCHEMA ON SCHEMA system.mlflow TO `{}`",
        "GRANT SELECT ON SCHEMA system.mlflow TO `{}`",
    ):
        sql(url, ADMIN_TOKEN, statement.format(person.name))
    return person


@pytest.fixture(scope="module")
def alerting(stack: Stack) -> Iterator[Alerting]:
    """Gateways of their own database and SMTP server, over a namespace of their own on the central store."""
    from aiosmtpd.controller import Controller

    upstream = unique("alerts")
    created = requests.post(
        f"{stack.stores['central'].url}/api/3.0/mlflow/workspaces", json={"name": upstream}, timeout=30
    )
    assert created.status_code == 201, created.text
    mailbox = Mailbox()
    smtp_port = free_port()
    with own_config(
        stack.database_url,
        stack.workdir / "alerts.toml",
        f"""
[account]
id = "7001"
[alerts]
poll_seconds = 0.2
min_interval_seconds = 1
retry_seconds = 0.2
allowed_recipients = ["oncall@example.com", "nightly-oncall@example.com", "@{LISTS}"]
[smtp]
host = "127.0.0.1"
port = {smtp_port}
from_address = "alerts@fedgate.test"
starttls = false
[stores.central]
url = "{stack.stores["central"].url}"
workspaces = true
[outbound]
allowed_destinations = ["{OUTBOUND_ALLOWED}"]
[[workspaces]]
name = "{WORKSPACE}"
id = "4101"
store = "central"
upstream_workspace = "{upstream}"
""",
        prefix="alerts",
    ) as config:
        smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        issuer = OidcIssuer().start()
        own = Alerting(config.path, config.database_url, [], mailbox, analyst=None, outsider=None, issuer=issuer)  # type: ignore[arg-type]
        try:
            gateway = own.start()
            own.analyst = system_reader(gateway.url, "analyst")
            own.outsider = Admin(gateway.url).person(unique("outsider") + "@example.com")
            yield own
        finally:
            own.stop_all()
            issuer.stop()
            smtp.stop()


def seed_runs(url: str, experiment: str, finished: int, failed: int) -> None:
    """Runs through the gateway with the stock mlflow client: `finished` that end FINISHED, `failed` FAILED."""
    import mlflow
    from mlflow import MlflowClient

    with stock_client_env(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
        mlflow.set_tracking_uri(url)
        mlflow.set_workspace(WORKSPACE)
        client = MlflowClient()
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        for index in range(finished + failed):
            run = mlflow.start_run(experiment_id=experiment_id)
            mlflow.log_metric("loss", 0.1 * index)
            mlflow.end_run(status="FINISHED" if index < finished else "FAILED")
            assert client.get_run(run.info.run_id).info.status == ("FINISHED" if index < finished else "FAILED")


def reliability_alert(path: str, **extra: Any) -> dict[str, Any]:
    """The documented alert: the documented success-ratio query, MIN(success_ratio) < 0.9."""
    return {
        "alert": {
            "display_name": "low experiment reliability",
            "query_text": SUCCESS_RATIO,
            "condition": {
                "op": "LESS_THAN",
                "operand": {"column": {"name": "success_ratio", "aggregation": "MIN"}},
                "threshold": {"value": {"double_value": 0.9}},
            },
            "subscriptions": [{"webhook": {"url": RECEIVER + path, "secret": SECRET}}],
            **extra,
        }
    }


def cli(alerting: Alerting, token: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "alerts", *args, "--url", alerting.url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FEDGATE_TOKEN": token},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_low_reliability_alert_fires_signed_and_by_mail_then_returns_to_ok(
    alerting: Alerting,
    receiver: Receiver,  # noqa: F811
) -> None:
    from databricks.sdk import WorkspaceClient

    analyst = alerting.analyst
    earlier = {alert["id"] for alert in call(alerting.url, analyst.token, "GET", ALERTS)["results"]}  # other tests'
    experiment = unique("training")
    seed_runs(alerting.url, experiment, finished=3, failed=2)  # a success ratio of 0.6
    path = f"/allowed/alerts-{uuid.uuid4().hex[:6]}"
    body = reliability_alert(path, notify_on_ok=True)
    body["alert"]["subscriptions"].append({"user_email": "oncall@example.com"})
    created = call(alerting.url, analyst.token, "POST", ALERTS, json=body)
    alert_id = created["id"]
    assert (created["state"], created["owner_user_name"]) == ("UNKNOWN", analyst.name)
    assert created["subscriptions"] == [
        {"webhook": {"url": RECEIVER + path, "has_secret": True}},
        {"user_email": "oncall@example.com"},
    ]
    assert SECRET not in json.dumps(created)

    # Evaluated now, from the command line, as its owner: TRIGGERED, the value the worst experiment's ratio.
    printed = cli(alerting, analyst.token, "run", alert_id)
    assert "TRIGGERED" in printed and "0.6" in printed
    [hook] = receiver.wait_for(path, 1)
    assert signed(hook, SECRET)
    event = hook.event
    assert (event["event"], event["alert_id"], event["state"], event["previous_state"]) == (
        "ALERT_TRIGGERED",
        alert_id,
        "TRIGGERED",
        "UNKNOWN",
    )
    assert (event["value"], event["condition"], event["row_count"]) == ("0.6", "MIN(success_ratio) < 0.9", 1)
    [(recipients, message)] = alerting.mailbox.wait_for(1)
    assert recipients == ["oncall@example.com"]
    assert b"Subject: [fedgate] low experiment reliability is TRIGGERED" in message
    assert b"MIN(success_ratio) < 0.9" in message

    # The stock databricks-sdk reads it in Databricks' shape.
    workspace = WorkspaceClient(host=alerting.url, token=analyst.token)
    read = workspace.alerts.get(alert_id)
    assert (read.display_name, read.state.value, read.condition.op.value) == (  # type: ignore[union-attr]
        "low experiment reliability",
        "TRIGGERED",
        "LESS_THAN",
    )
    assert read.trigger_time is not None
    assert [a.id for a in workspace.alerts.list() if a.id not in earlier] == [alert_id]

    # Still TRIGGERED: no second notification (no seconds_to_retrigger).
    again = call(alerting.url, analyst.token, "POST", f"{ALERTS}/{alert_id}/run")
    assert (again["state"], again["previous_state"], again["notifications"]) == ("TRIGGERED", "TRIGGERED", 0)

    # Healthy runs lift the ratio to 19/21 > 0.9: OK, and notify_on_ok says so.
    seed_runs(alerting.url, experiment, finished=16, failed=0)
    ok = call(alerting.url, analyst.token, "POST", f"{ALERTS}/{alert_id}/run")
    assert (ok["state"], ok["notifications"]) == ("OK", 2)
    assert float(ok["value"]) == pytest.approx(19 / 21)
    seen = receiver.wait_for(path, 2)
    assert seen[-1].event["event"] == "ALERT_OK" and signed(seen[-1], SECRET)
    alerting.mailbox.wait_for(2)

    history = call(alerting.url, analyst.token, "GET", f"{ALERTS}/{alert_id}/history")["evaluations"]
    assert [(e["state"], e["trigger"], e["notifications"]) for e in history] == [
        ("OK", "MANUAL", 2),
        ("TRIGGERED", "MANUAL", 0),
        ("TRIGGERED", "MANUAL", 2),
    ]
    assert all(e["statement_id"] for e in history)
    assert "OK" in cli(alerting, analyst.token, "history", alert_id)

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(requests.get(f"{alerting.url}/metrics", timeout=30).text)
            for sample in family.samples
        }

    evaluations = ("fedgate_alert_evaluations_total", (("state", "TRIGGERED"), ("trigger", "MANUAL")))
    mailed = ("fedgate_alert_notifications_total", (("kind", "email"), ("outcome", "delivered")))
    # A delivery is counted once the sender has its answer, after the SMTP server took the message.
    until(counted, lambda found: found.get(evaluations, 0) >= 2 and found.get(mailed, 0) >= 1, "the alert's metrics")

    # Nobody else sees it; the secret is in no answer, log line or audit row.
    call(alerting.url, alerting.outsider.token, "GET", f"{ALERTS}/{alert_id}", status=404)
    call(alerting.url, alerting.outsider.token, "POST", f"{ALERTS}/{alert_id}/run", status=404)
    assert call(alerting.url, alerting.outsider.token, "GET", ALERTS)["results"] == []
    for gateway in alerting.gateways:
        assert gateway.log_path is not None
        assert SECRET not in Path(gateway.log_path).read_text(errors="replace")
    audited = query(
        alerting.database_url, "SELECT details::text AS d FROM audit_log WHERE target = $1", f"sql_alert:{alert_id}"
    )
    assert audited and all(SECRET not in row["d"] for row in audited)
    # Nor in the database: the alert holds it sealed with the vault's keys, and yet signed the deliveries above.
    [stored] = query(alerting.database_url, "SELECT subscriptions::text AS s FROM sql_alerts WHERE id = $1", alert_id)
    assert SECRET not in stored["s"]
    [sealed] = [item["webhook"]["secret"] for item in json.loads(stored["s"]) if "webhook" in item]
    assert sealed.startswith("fgv1:t1:")  # the active key of the tests' FEDGATE_VAULT_KEYS


def test_bad_alerts_are_refused_in_mlflows_error_shape(alerting: Alerting) -> None:
    token = alerting.analyst.token
    path = "/allowed/never"

    def refused(body: dict[str, Any], status: int = 400) -> str:
        answer = requests.post(
            alerting.url + ALERTS, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=30
        )
        assert answer.status_code == status, answer.text
        return str(answer.json()["error_code"]) + ": " + str(answer.json()["message"])

    base = reliability_alert(path)
    assert "not an allowed destination" in refused(
        {"alert": {**base["alert"], "subscriptions": [{"webhook": {"url": f"{RECEIVER}/elsewhere"}}]}}, 403
    )
    assert "Quartz" in refused({"alert": {**base["alert"], "schedule": {"quartz_cron_schedule": "every minute"}}})
    assert "INVALID_PARAMETER_VALUE" in refused({"alert": {**base["alert"], "query_text": "DELETE FROM x"}})
    assert "condition.op" in refused(
        {"alert": {**base["alert"], "condition": {**base["alert"]["condition"], "op": "LIKE"}}}
    )
    assert "e-mail address" in refused({"alert": {**base["alert"], "subscriptions": [{"user_email": "nobody"}]}})
    assert "query" in refused({"alert": {"display_name": "x", "condition": base["alert"]["condition"]}})
    assert "INVALID_PARAMETER_VALUE" in refused({"alert": {"display_name": 5}})
    # A name is printable text, as a saved query's: no bidirectional override (which showed the list's name, and
    # the subject's "is TRIGGERED" after it, reversed), no zero-width space, no line break.
    for name in ("nightly \u202edetaeggirt", "reliab\u200bility", "two\nlines"):
        assert "printable" in refused({"alert": {**base["alert"], "display_name": name}})


def mail_alert(*addresses: str) -> dict[str, Any]:
    """The documented reliability alert, e-mailing `addresses` only."""
    body = reliability_alert("/never")
    body["alert"]["subscriptions"] = [{"user_email": address} for address in addresses]
    return body


def settled(alerting: Alerting, alert_id: str, count: int) -> dict[str, tuple[str, str | None]]:
    """The alert's e-mail deliveries once `count` have settled: address → (state, last_error)."""
    rows = until(
        lambda: query(
            alerting.database_url,
            "SELECT destination, state, last_error FROM sql_alert_deliveries WHERE alert_id = $1",
            alert_id,
        ),
        lambda found: len(found) == count and all(row["state"] != "pending" for row in found),
        "the alert's e-mails settled",
        seconds=30,
    )
    return {row["destination"]: (row["state"], row["last_error"]) for row in rows}


def test_an_alert_emails_only_users_of_the_account_and_allowed_addresses(alerting: Alerting) -> None:
    """The gateway's e-mail is no open relay: an alert's owner writes its subject and body, and it goes out from the
    operator's sender address, so an e-mail subscription names a user of the account or an address the operator
    allows (`alerts.allowed_recipients`), as Databricks' alerts notify account users or admin-made destinations."""
    token = alerting.analyst.token
    stranger = unique("victim") + "@elsewhere.test"
    refused = requests.post(
        alerting.url + ALERTS,
        headers={"Authorization": f"Bearer {token}"},
        json=mail_alert(alerting.outsider.name, stranger),
        timeout=30,
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert stranger in refused.json()["message"] and "allowed_recipients" in refused.json()["message"]

    # A user of the account (another one) and an address of an allowed domain (its case aside) are.
    listed = unique("team") + "@" + LISTS.upper()
    created = call(alerting.url, token, "POST", ALERTS, json=mail_alert(alerting.outsider.name, listed))
    assert [s["user_email"] for s in created["subscriptions"]] == [alerting.outsider.name, listed.lower()]
    # Nor may an update add a stranger; the alert stays as it was.
    patched = requests.patch(
        f"{alerting.url}{ALERTS}/{created['id']}",
        headers={"Authorization": f"Bearer {token}"},
        json={**mail_alert(listed, stranger), "update_mask": "subscriptions"},
        timeout=30,
    )
    assert patched.status_code == 400, patched.text
    assert patched.json()["error_code"] == "INVALID_PARAMETER_VALUE" and stranger in patched.json()["message"]
    assert call(alerting.url, token, "GET", f"{ALERTS}/{created['id']}")["subscriptions"] == created["subscriptions"]

    seed_runs(alerting.url, unique("mailed"), finished=0, failed=1)  # some experiment's ratio is 0: TRIGGERED
    fired = call(alerting.url, token, "POST", f"{ALERTS}/{created['id']}/run")
    assert (fired["state"], fired["notifications"]) == ("TRIGGERED", 2), fired
    states = settled(alerting, created["id"], 2)
    assert {state for state, _ in states.values()} == {"delivered"}, states
    mailed = {",".join(to).lower() for to, _ in list(alerting.mailbox.messages)}
    assert {alerting.outsider.name, listed.lower()} <= mailed
    assert not any(stranger in to for to, _ in list(alerting.mailbox.messages))
    call(alerting.url, token, "DELETE", f"{ALERTS}/{created['id']}")


def test_an_address_no_longer_allowed_is_not_mailed(alerting: Alerting) -> None:
    """Checked again before each e-mail: a user disabled since the alert was saved, or an address an alert holds from
    before the rule (written here straight into the database), is not mailed; the delivery fails saying why."""
    admin = Admin(alerting.url)
    leaver = unique("leaver") + "@example.com"
    leaver_id = admin.user(leaver)
    listed = unique("kept") + "@" + LISTS
    token = alerting.analyst.token
    created = call(alerting.url, token, "POST", ALERTS, json=mail_alert(leaver, listed))
    disabled = admin.http().patch(
        f"{alerting.url}{SCIM}/Users/{leaver_id}",
        json={"Operations": [{"op": "replace", "path": "active", "value": False}]},
        timeout=30,
    )
    assert disabled.status_code == 200, disabled.text
    stranger = unique("before-the-rule") + "@elsewhere.test"
    query(
        alerting.database_url,
        "UPDATE sql_alerts SET subscriptions = subscriptions || $2::jsonb WHERE id = $1",
        created["id"],
        json.dumps([{"user_email": stranger}]),
    )

    seed_runs(alerting.url, unique("left"), finished=0, failed=1)  # some experiment's ratio is 0: TRIGGERED
    fired = call(alerting.url, token, "POST", f"{ALERTS}/{created['id']}/run")
    assert (fired["state"], fired["notifications"]) == ("TRIGGERED", 3), fired
    states = settled(alerting, created["id"], 3)
    assert states[listed] == ("delivered", None)
    for address in (leaver, stranger):
        state, error = states[address]
        assert state == "failed" and error is not None and "allowed_recipients" in error, states
    messages = list(alerting.mailbox.messages)
    assert any(to == [listed] for to, _ in messages)
    assert not any(leaver in to or stranger in to for to, _ in messages)
    call(alerting.url, token, "DELETE", f"{ALERTS}/{created['id']}")


def test_an_address_is_saved_exactly_as_it_is_mailed(alerting: Alerting) -> None:
    """One bare address, in the form the message's `To` and envelope carry: Python's e-mail parser reads
    `a(b@domain` as the address `a` (a comment follows), so an alert saved with it passed the allowed domain's check
    and was mailed to `a`. Anything a mailer could read otherwise is refused on save; such an address stored before
    (written here straight into the database) is never mailed."""
    token = alerting.analyst.token
    for bad in (
        f"a(b@{LISTS}",
        f"a)b@{LISTS}",
        f'a"b@{LISTS}',
        f"a..b@{LISTS}",
        f".a@{LISTS}",
        f"\u00fcber@{LISTS}",
        f"a@{LISTS}.",
        f"a@{LISTS}\u2028",
        f"=?utf-8?q?a?=@{LISTS}",
    ):
        answer = requests.post(
            alerting.url + ALERTS, headers={"Authorization": f"Bearer {token}"}, json=mail_alert(bad), timeout=30
        )
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", answer.text
        assert "e-mail address" in answer.json()["message"]
    # A domain is stored lower-cased, the local part as given: what is shown is what the envelope and `To` name.
    given = unique("Team.On-Call") + "@" + LISTS.upper()
    stored = given.rpartition("@")[0] + "@" + LISTS
    created = call(alerting.url, token, "POST", ALERTS, json=mail_alert(given))
    assert [item["user_email"] for item in created["subscriptions"]] == [stored]
    sneaked = f"a(b-{uuid.uuid4().hex[:6]}@{LISTS}"
    query(
        alerting.database_url,
        "UPDATE sql_alerts SET subscriptions = subscriptions || $2::jsonb WHERE id = $1",
        created["id"],
        json.dumps([{"user_email": sneaked}]),
    )
    seed_runs(alerting.url, unique("exact"), finished=0, failed=1)  # some experiment's ratio is 0: TRIGGERED
    before = len(alerting.mailbox.messages)
    fired = call(alerting.url, token, "POST", f"{ALERTS}/{created['id']}/run")
    assert (fired["state"], fired["notifications"]) == ("TRIGGERED", 2), fired
    states = settled(alerting, created["id"], 2)
    assert states[stored] == ("delivered", None), states
    state, error = states[sneaked]
    assert state == "failed" and error is not None and "plain e-mail address" in error, states
    mine = [
        (to, email.message_from_bytes(content, policy=email.policy.default))
        for to, content in list(alerting.mailbox.messages)[before:]
        if any(stored in address or address in ("a", sneaked) for address in to)
    ]
    assert [to for to, _ in mine] == [[stored]]
    assert str(mine[0][1]["To"]) == stored
    call(alerting.url, token, "DELETE", f"{ALERTS}/{created['id']}")


def test_a_deleted_users_address_leaves_the_alerts_and_a_renamed_ones_follows(alerting: Alerting) -> None:
    """A deleted user's address was kept on the alert, shown by GET, never mailed, and mailed again to whoever was
    given the name next; it now leaves every alert with the user. A renamed user's alerts follow the new name."""
    admin = Admin(alerting.url)
    leaver, mover = unique("leaver") + "@example.com", unique("mover") + "@example.com"
    leaver_id, mover_id = admin.user(leaver), admin.user(mover)
    listed = unique("kept") + "@" + LISTS
    token = alerting.analyst.token
    created = call(alerting.url, token, "POST", ALERTS, json=mail_alert(leaver, mover, listed))
    gone = admin.http().delete(f"{alerting.url}{SCIM}/Users/{leaver_id}", timeout=30)
    assert gone.status_code == 204, gone.text
    moved = unique("moved") + "@example.com"
    renamed = admin.http().patch(
        f"{alerting.url}{SCIM}/Users/{mover_id}",
        json={"Operations": [{"op": "replace", "path": "userName", "value": moved.upper()}]},
        timeout=30,
    )
    assert renamed.status_code == 200, renamed.text
    shown = call(alerting.url, token, "GET", f"{ALERTS}/{created['id']}")
    assert [item["user_email"] for item in shown["subscriptions"]] == [moved, listed]
    # Someone later given the leaver's name is not mailed by the alert.
    admin.user(leaver)
    seed_runs(alerting.url, unique("left"), finished=0, failed=1)  # some experiment's ratio is 0: TRIGGERED
    fired = call(alerting.url, token, "POST", f"{ALERTS}/{created['id']}/run")
    assert (fired["state"], fired["notifications"]) == ("TRIGGERED", 2), fired
    assert settled(alerting, created["id"], 2) == {moved: ("delivered", None), listed: ("delivered", None)}
    assert not any(leaver in to or mover in to for to, _ in list(alerting.mailbox.messages))
    call(alerting.url, token, "DELETE", f"{ALERTS}/{created['id']}")


def test_a_refused_notification_is_retried_until_accepted(
    alerting: Alerting,
    receiver: Receiver,  # noqa: F811
) -> None:
    seed_runs(alerting.url, unique("retried"), finished=0, failed=1)  # some experiment's ratio is 0: TRIGGERED
    path = f"/allowed/retried-{uuid.uuid4().hex[:6]}"
    receiver.answers[path] = [500, 503, 200]
    created = call(alerting.url, alerting.analyst.token, "POST", ALERTS, json=reliability_alert(path))
    fired = call(alerting.url, alerting.analyst.token, "POST", f"{ALERTS}/{created['id']}/run")
    assert (fired["state"], fired["notifications"]) == ("TRIGGERED", 1)
    seen = receiver.wait_for(path, 3)
    assert len({r.headers["X-Fedgate-Delivery"] for r in seen}) == 1 and len({r.body for r in seen}) == 1
    assert all(signed(r, SECRET) for r in seen)
    deadline = time.monotonic() + 30
    while True:  # the third answer is recorded once the sender has read it
        [row] = query(
            alerting.database_url,
            "SELECT state, attempts, last_status FROM sql_alert_deliveries WHERE alert_id = $1",
            created["id"],
        )
        if row["state"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 3, 200)
    call(alerting.url, alerting.analyst.token, "DELETE", f"{ALERTS}/{created['id']}")


def test_a_line_break_someone_else_puts_in_the_result_never_holds_back_an_alerts_email(alerting: Alerting) -> None:
    """An e-mail's subject is one line: an alert's subject carries its query's value ({{QUERY_RESULT_VALUE}}) and its
    name, and a run's name is anybody's to choose who may log a run. A line break there (CR, LF or any other that
    Python's e-mail headers refuse) made building the message fail, so the e-mail was tried again at every lease, for
    ever, and never sent: any workspace user held back the alerts of everyone whose query read their run. Now the
    subject is sent on one line, its breaks as spaces, to the subscription's address alone (no header is injected).
    An alert's own name is printable text now, but one named before the rule may hold a line break."""
    admin = Admin(alerting.url)
    mallory = admin.person(unique("mallory") + "@example.com")
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=mallory.name)
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {mallory.token}", "X-MLFLOW-WORKSPACE": WORKSPACE})
    api = f"{alerting.url}/api/2.0/mlflow"
    made = http.post(f"{api}/experiments/create", json={"name": unique("nightly")}, timeout=30)
    assert made.status_code == 200, made.text
    experiment_id = made.json()["experiment_id"]
    name = "nightly\r\nBcc: mallory@evil.test\u2028X-Priority: 1"
    run = http.post(f"{api}/runs/create", json={"experiment_id": experiment_id, "run_name": name}, timeout=30)
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    ended = http.post(f"{api}/runs/update", json={"run_id": run_id, "status": "FAILED", "end_time": 1}, timeout=30)
    assert ended.status_code == 200, ended.text

    def alert(display_name: str, subject: str | None) -> dict[str, Any]:
        return {
            "alert": {
                "display_name": display_name,
                "query_text": "SELECT run_name FROM system.mlflow.runs_latest "
                f"WHERE run_id = '{run_id}' AND status = 'FAILED'",
                "condition": {
                    "op": "NOT_EQUAL",
                    "operand": {"column": {"name": "run_name"}},
                    "threshold": {"value": {"string_value": ""}},
                },
                "subscriptions": [{"user_email": "nightly-oncall@example.com"}],
                **({"custom_subject": subject} if subject is not None else {}),
            }
        }

    failed = {
        "statement": f"SELECT run_name FROM system.mlflow.runs_latest WHERE run_id = '{run_id}' AND status = 'FAILED'",
        "wait_timeout": "30s",
    }
    until(  # the account index has the ended run
        lambda: call(alerting.url, alerting.analyst.token, "POST", STATEMENTS, json=failed),
        lambda answer: answer.get("result", {}).get("data_array") == [[name]],
        "the failed run in system.mlflow.runs_latest",
    )
    # The analyst's alert names the failed run in its subject; another's default subject carries its own name.
    created = [
        call(
            alerting.url,
            alerting.analyst.token,
            "POST",
            ALERTS,
            json=alert("nightly runs", "Failed: {{QUERY_RESULT_VALUE}}"),
        ),
        call(alerting.url, alerting.analyst.token, "POST", ALERTS, json=alert("nightly runs", None)),
    ]
    # A name is printable now (the API refuses a line break in it); an alert named before keeps its name.
    query(
        alerting.database_url,
        "UPDATE sql_alerts SET display_name = $2 WHERE id = $1 RETURNING id",
        created[1]["id"],
        "nightly\nruns",
    )
    for made_alert in created:
        fired = call(alerting.url, alerting.analyst.token, "POST", f"{ALERTS}/{made_alert['id']}/run")
        assert (fired["state"], fired["notifications"]) == ("TRIGGERED", 1), fired
    mails = until(  # the module's other alerts mail elsewhere
        lambda: [(to, m) for to, m in list(alerting.mailbox.messages) if b"nightly-oncall@example.com" in m],
        lambda found: len(found) >= 2,
        "both alerts' e-mails",
        seconds=30,
    )
    subjects = set()
    for recipients, message in mails:
        assert recipients == ["nightly-oncall@example.com"]
        read = email.message_from_bytes(message, policy=email.policy.default)
        assert (read["Bcc"], read["X-Priority"]) == (None, None)
        subjects.add(str(read["Subject"]))
    assert subjects == {"Failed: nightly Bcc: mallory@evil.test X-Priority: 1", "[fedgate] nightly runs is TRIGGERED"}
    for made_alert in created:
        until(  # recorded once the SMTP server's answer is read
            lambda alert_id=made_alert["id"]: query(
                alerting.database_url, "SELECT state FROM sql_alert_deliveries WHERE alert_id = $1", alert_id
            ),
            lambda rows: [row["state"] for row in rows] == ["delivered"],
            "the e-mail recorded as delivered",
        )
        call(alerting.url, alerting.analyst.token, "DELETE", f"{ALERTS}/{made_alert['id']}")


def test_an_alert_runs_with_its_owners_grants_at_each_evaluation(alerting: Alerting) -> None:
    owner = system_reader(alerting.url, "owner")
    created = call(alerting.url, owner.token, "POST", ALERTS, json=reliability_alert("/allowed/grants"))
    first = call(alerting.url, owner.token, "POST", f"{ALERTS}/{created['id']}/run")
    assert first["state"] != "ERROR" and "error_message" not in first

    # SELECT revoked: the evaluation fails, even when an account admin (who could read it all) runs it.
    sql(alerting.url, ADMIN_TOKEN, f"REVOKE SELECT ON SCHEMA system.mlflow FROM `{owner.name}`")
    failed = call(alerting.url, ADMIN_TOKEN, "POST", f"{ALERTS}/{created['id']}/run")
    assert failed["state"] == "ERROR" and failed["notifications"] == 0
    assert failed["error_message"] == f"{owner.name} lacks SELECT on table system.mlflow.runs_latest."
    read = call(alerting.url, owner.token, "GET", f"{ALERTS}/{created['id']}")
    assert (read["state"], read["evaluation_state"]) == ("UNKNOWN", "ERROR")
    assert read["error_message"] == failed["error_message"]

    # Granted again, then the owner disabled: refused with that reason, not run with someone else's grants.
    sql(alerting.url, ADMIN_TOKEN, f"GRANT SELECT ON SCHEMA system.mlflow TO `{owner.name}`")
    assert call(alerting.url, owner.token, "POST", f"{ALERTS}/{created['id']}/run")["state"] != "ERROR"
    disabled = requests.patch(
        f"{alerting.url}/api/2.0/preview/scim/v2/Users/{owner.id}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"Operations": [{"op": "replace", "path": "active", "value": False}]},
        timeout=30,
    )
    assert disabled.status_code == 200, disabled.text
    gone = call(alerting.url, ADMIN_TOKEN, "POST", f"{ALERTS}/{created['id']}/run")
    assert gone["state"] == "ERROR" and "is disabled or deleted" in gone["error_message"]
    # An account admin hands it to the analyst: it runs with the analyst's grants from then on.
    moved = call(
        alerting.url,
        ADMIN_TOKEN,
        "PATCH",
        f"{ALERTS}/{created['id']}",
        json={"alert": {"owner_user_name": alerting.analyst.name}, "update_mask": "owner_user_name"},
    )
    assert moved["owner_user_name"] == alerting.analyst.name
    assert call(alerting.url, alerting.analyst.token, "POST", f"{ALERTS}/{created['id']}/run")["state"] != "ERROR"
    call(alerting.url, alerting.analyst.token, "DELETE", f"{ALERTS}/{created['id']}")


def test_an_alert_run_by_hand_counts_against_whoever_pressed_run(alerting: Alerting) -> None:
    """A run by hand is the request of whoever pressed run: it counts against their statement cap, not the owner's.
    An account admin running someone's alert is not refused because the owner is busy, and spends no place of
    theirs; an admin at their own cap is refused. The statement stays the owner's (only they read its result)."""
    owner = system_reader(alerting.url, "busy")
    created = call(alerting.url, owner.token, "POST", ALERTS, json=reliability_alert("/allowed/cap"))
    run = f"{ALERTS}/{created['id']}/run"
    cap = ServerSettings().sql_max_statements_per_principal
    seed = f"busy-{uuid.uuid4().hex[:8]}-"

    def running(principal_id: int, count: int) -> None:
        """`count` statements RUNNING for the principal, as a process running them records them."""
        query(
            alerting.database_url,
            "INSERT INTO sql_statements (statement_id, principal_id, state, statement) "
            "SELECT $1 || i, $2, 'RUNNING', 'SELECT 1' FROM generate_series(1, $3) AS i",
            f"{seed}{principal_id}-",
            principal_id,
            count,
        )

    try:
        running(owner.id, cap)  # the owner's cap is full
        own = call(alerting.url, owner.token, "POST", run)
        assert own["state"] == "ERROR" and "Too many SQL statements" in own["error_message"], own
        by_admin = call(alerting.url, ADMIN_TOKEN, "POST", run)
        assert by_admin["state"] != "ERROR", by_admin
        [recorded] = query(
            alerting.database_url,
            "SELECT principal_id, counted_principal_id FROM sql_statements WHERE statement_id = $1",
            by_admin["statement_id"],
        )
        assert tuple(recorded) == (owner.id, 0)  # the owner's statement, counted for the bootstrap admin (id 0)

        running(0, cap)  # the admin's cap is full: the admin's run is refused, whoever owns the alert
        refused = call(alerting.url, ADMIN_TOKEN, "POST", run)
        assert refused["state"] == "ERROR" and "Too many SQL statements" in refused["error_message"], refused
    finally:
        query(
            alerting.database_url,
            "UPDATE sql_statements SET state = 'CANCELED' WHERE starts_with(statement_id, $1)",
            seed,
        )
        call(alerting.url, owner.token, "DELETE", f"{ALERTS}/{created['id']}")


def test_a_dynamic_view_is_judged_for_the_owner_at_each_evaluation(alerting: Alerting) -> None:
    """A view that shows rows to members of a group: the owner's alert sees none until the owner joins it."""
    admin = Admin(alerting.url)
    suite = uuid.uuid4().hex[:8]
    watchers = f"watchers-{suite}"
    group_id = admin.group(watchers)
    catalog = f"gov_{suite}"
    seed_runs(alerting.url, unique("watched"), finished=1, failed=0)
    for statement in (
        f"CREATE VIEW {catalog}.mlflow.watched AS SELECT * FROM system.mlflow.runs_latest "
        f"WHERE is_account_group_member('{watchers}')",
        f"GRANT USE CATALOG ON CATALOG {catalog} TO `{alerting.analyst.name}`",
        f"GRANT USE SCHEMA ON SCHEMA {catalog}.mlflow TO `{alerting.analyst.name}`",
        f"GRANT SELECT ON VIEW {catalog}.mlflow.watched TO `{alerting.analyst.name}`",
    ):
        sql(alerting.url, ADMIN_TOKEN, statement)
    body = {
        "alert": {
            "display_name": "watched runs",
            "query_text": f"SELECT COUNT(*) AS runs FROM {catalog}.mlflow.watched",
            "condition": {
                "op": "GREATER_THAN",
                "operand": {"column": {"name": "runs"}},
                "threshold": {"value": {"double_value": 0}},
            },
        }
    }
    created = call(alerting.url, alerting.analyst.token, "POST", ALERTS, json=body)
    run = f"{ALERTS}/{created['id']}/run"
    # Run by an account admin, judged for the owner: not in the group, the view shows the owner no rows.
    first = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert (first["state"], first["value"]) == ("OK", "0")
    joined = requests.patch(
        f"{alerting.url}/api/2.0/preview/scim/v2/Groups/{group_id}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"Operations": [{"op": "add", "path": "members", "value": [{"value": str(alerting.analyst.id)}]}]},
        timeout=30,
    )
    assert joined.status_code == 200, joined.text
    fired = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert fired["state"] == "TRIGGERED" and int(fired["value"]) >= 1
    call(alerting.url, alerting.analyst.token, "DELETE", f"{ALERTS}/{created['id']}")


def idp_token(alerting: Alerting, email: str, groups: list[str]) -> str:
    """An access token of the local identity provider's, naming `groups`."""
    verified = {"email_verified": True}
    return alerting.issuer.token(email, audience=AUDIENCE, email=email, groups=groups, extra_claims=verified)


def browser_sign_in(alerting: Alerting, email: str) -> None:
    """The UI's sign-in through the identity provider, the code flow as a browser follows it."""
    browser = requests.Session()
    started = browser.get(
        f"{alerting.url}/fedgate/sign-in/oidc", params={"next": "/"}, allow_redirects=False, timeout=30
    )
    assert started.status_code == 302, started.text
    form = dict(parse_qsl(urlsplit(started.headers["Location"]).query))
    answered = requests.post(
        f"{alerting.issuer.url}/authorize",
        data={**form, "username": email, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    assert answered.status_code == 302, answered.text
    back = browser.get(answered.headers["Location"], allow_redirects=False, timeout=30)
    assert back.status_code == 303 and back.headers["Location"] == "/", back.text
    me = browser.get(f"{alerting.url}/api/2.0/preview/scim/v2/Me", timeout=30)
    assert me.status_code == 200 and me.json()["userName"] == email, me.text


def test_an_alert_counts_the_groups_its_owners_identity_provider_names(alerting: Alerting) -> None:
    """An owner whose access to a view comes from a group the identity provider names (the gateway group has no
    members): the alert, evaluated in the background, sees what the owner sees interactively, as recorded at
    their last change or sign-in; the group's grant revoked, or the owner disabled, stops it."""
    suite = uuid.uuid4().hex[:8]
    group, catalog, email = f"idp-watchers-{suite}", f"idp_{suite}", f"idp-owner-{suite}@example.com"
    Admin(alerting.url).group(group)
    seed_runs(alerting.url, unique("idp-watched"), finished=2, failed=0)
    view = f"{catalog}.mlflow.watched"
    for statement in (
        f"CREATE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest WHERE is_account_group_member('{group}')",
        f"GRANT USE CATALOG ON CATALOG {catalog} TO `{group}`",
        f"GRANT USE SCHEMA ON SCHEMA {catalog}.mlflow TO `{group}`",
        f"GRANT SELECT ON VIEW {view} TO `{group}`",
    ):
        sql(alerting.url, ADMIN_TOKEN, statement)
    named, unnamed = idp_token(alerting, email, [group]), idp_token(alerting, email, [])
    counting = f"SELECT COUNT(*) AS runs FROM {view}"

    # Interactively the owner counts the runs through the group, and without it may not read the view.
    asked = call(alerting.url, named, "POST", STATEMENTS, json={"statement": counting, "wait_timeout": "30s"})
    assert asked["status"]["state"] == "SUCCEEDED", asked
    runs = asked["result"]["data_array"][0][0]
    assert int(runs) >= 2
    refused = call(alerting.url, unnamed, "POST", STATEMENTS, 403, json={"statement": counting, "wait_timeout": "30s"})
    assert refused["message"] == f"{email} lacks USE CATALOG on catalog {catalog}."

    body = {
        "alert": {
            "display_name": "runs the identity provider's group watches",
            "query_text": counting,
            "condition": {
                "op": "GREATER_THAN",
                "operand": {"column": {"name": "runs"}},
                "threshold": {"value": {"double_value": 0}},
            },
        }
    }
    created = call(alerting.url, named, "POST", ALERTS, json=body)
    alert, run = f"{ALERTS}/{created['id']}", f"{ALERTS}/{created['id']}/run"
    # Run by an account admin, evaluated as the owner without the owner's credential: the group counts.
    fired = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert (fired["state"], fired["value"]) == ("TRIGGERED", runs), fired

    # A personal access token names no groups and changes nothing of them.
    pat = Admin(alerting.url).token_for(email)
    renamed = {"alert": {"display_name": "watched by the group"}, "update_mask": "display_name"}
    call(alerting.url, pat, "PATCH", alert, json=renamed)
    assert call(alerting.url, ADMIN_TOKEN, "POST", run)["state"] == "TRIGGERED"

    # The owner changes it with a token that no longer names the group: the alert no longer has it.
    call(alerting.url, unnamed, "PATCH", alert, json=renamed)
    lost = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert (lost["state"], lost["error_message"]) == ("ERROR", refused["message"])

    # The owner signs in through the identity provider, which names the group again.
    alerting.issuer.person(email, PASSWORD, groups=[group])
    browser_sign_in(alerting, email)
    again = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert (again["state"], again["value"]) == ("TRIGGERED", runs), again

    # Handed to another owner and back by an account admin: the groups were the owner's identity provider's word
    # on the owner and went with the hand-over; none count until the owner signs in, changes or runs it again.
    for owner in (alerting.analyst.name, email):
        handed = {"alert": {"owner_user_name": owner}, "update_mask": "owner_user_name"}
        assert call(alerting.url, ADMIN_TOKEN, "PATCH", alert, json=handed)["owner_user_name"] == owner
    handed_back = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert (handed_back["state"], handed_back["error_message"]) == ("ERROR", refused["message"])
    ran = call(alerting.url, named, "POST", run)  # the owner runs it with a token naming the group
    assert (ran["state"], ran["value"]) == ("TRIGGERED", runs), ran

    # Deny by default: the group's grant revoked stops the alert, as it stops the owner's own calls ...
    sql(alerting.url, ADMIN_TOKEN, f"REVOKE SELECT ON VIEW {view} FROM `{group}`")
    revoked = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert (revoked["state"], revoked["error_message"]) == ("ERROR", f"{email} lacks SELECT on view {view}."), revoked
    sql(alerting.url, ADMIN_TOKEN, f"GRANT SELECT ON VIEW {view} TO `{group}`")
    assert call(alerting.url, ADMIN_TOKEN, "POST", run)["state"] == "TRIGGERED"
    # ... and so does the owner's removal.
    me = call(alerting.url, named, "GET", "/api/2.0/preview/scim/v2/Me")
    disabled = requests.patch(
        f"{alerting.url}/api/2.0/preview/scim/v2/Users/{me['id']}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"Operations": [{"op": "replace", "path": "active", "value": False}]},
        timeout=30,
    )
    assert disabled.status_code == 200, disabled.text
    gone = call(alerting.url, ADMIN_TOKEN, "POST", run)
    assert gone["state"] == "ERROR" and "is disabled or deleted" in gone["error_message"]
    call(alerting.url, ADMIN_TOKEN, "DELETE", alert)


def logged(alerting: Alerting) -> str:
    """Every line the module's gateway processes logged (those stopped since included)."""
    return "".join(
        path.read_text(errors="replace") for path in alerting.config.parent.glob(f"{alerting.config.stem}.*.log")
    )


def test_a_webhook_urls_token_is_in_no_log_line_or_audit_row_and_only_its_managers_read_it(
    alerting: Alerting,
    receiver: Receiver,  # noqa: F811
) -> None:
    """A webhook URL may carry a token (`?token=`, a path of Slack's): the alert's owner and account admins read it,
    as registry webhooks' and MLflow's managers read theirs; nobody else, no audit row and no log line has it, not
    even when the database refuses a scheduled evaluation's record and the scheduler logs why."""
    token = f"tok-{uuid.uuid4().hex}"
    path = f"/allowed/tokened-{uuid.uuid4().hex[:6]}?token={token}"
    url = RECEIVER + path
    seed_runs(alerting.url, unique("tokened"), finished=1, failed=1)  # a success ratio of 0.5: TRIGGERED
    receiver.answers[path] = [503, 200]  # the first attempt is refused, and the refusal logged
    created = call(alerting.url, alerting.analyst.token, "POST", ALERTS, json=reliability_alert(path))
    alert = f"{ALERTS}/{created['id']}"
    assert created["subscriptions"][0]["webhook"] == {"url": url, "has_secret": True}
    assert url in json.dumps(call(alerting.url, ADMIN_TOKEN, "GET", ALERTS))
    call(alerting.url, alerting.outsider.token, "GET", alert, 404)
    assert token not in json.dumps(call(alerting.url, alerting.outsider.token, "GET", ALERTS))
    assert call(alerting.url, alerting.analyst.token, "POST", f"{alert}/run")["state"] == "TRIGGERED"
    assert [signed(r, SECRET) for r in receiver.wait_for(path, 2)] == [True, True]  # refused once, then taken
    again = {"alert": {"subscriptions": [{"webhook": {"url": url}}]}, "update_mask": "subscriptions"}
    assert (
        call(alerting.url, alerting.analyst.token, "PATCH", alert, json=again)["subscriptions"]
        == (created["subscriptions"])
    )

    # The database refuses to record the scheduled evaluations' notifications (a trigger of the test's own): the
    # scheduler logs each failure, with the statement it ran and without the values bound to it.
    refuse = (
        "CREATE FUNCTION refuse_for_the_test() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$",
        "CREATE TRIGGER refuse_for_the_test BEFORE INSERT ON sql_alert_deliveries "
        "FOR EACH ROW EXECUTE FUNCTION refuse_for_the_test()",
    )
    for statement in refuse:
        query(alerting.database_url, statement)
    try:
        every = {
            "alert": {
                "schedule": {"quartz_cron_schedule": "*/2 * * * * ?", "timezone_id": "UTC"},
                "seconds_to_retrigger": 1,
            },
            "update_mask": "schedule,seconds_to_retrigger",
        }
        call(alerting.url, alerting.analyst.token, "PATCH", alert, json=every)
        deadline = time.monotonic() + 90
        while "scheduled evaluation failed" not in logged(alerting):
            assert time.monotonic() < deadline, "no scheduled evaluation failed"
            time.sleep(0.2)
    finally:
        call(alerting.url, alerting.analyst.token, "DELETE", alert)
        query(alerting.database_url, "DROP FUNCTION refuse_for_the_test() CASCADE")
    lines = logged(alerting)
    assert "refused for the test" in lines and "INSERT INTO sql_alert_deliveries" in lines
    assert f"alert {created['id']}: scheduled evaluation failed" in lines
    assert "a delivery was not accepted" in lines  # the refused attempt, logged by the alert and delivery ids
    assert token not in lines

    audited = query(
        alerting.database_url,
        "SELECT action, details::text AS d FROM audit_log WHERE target = $1 ORDER BY id",
        f"sql_alert:{created['id']}",
    )
    saved = [row["d"] for row in audited if row["action"] in ("sql.alert.create", "sql.alert.update")]
    assert len(saved) == 3 and all(token not in row["d"] for row in audited)
    assert all(f"{RECEIVER}/..." in details for details in saved)  # where its webhook posts: the origin


# -- the scheduler ------------------------------------------------------------------------------------------


def scheduled(url: str, alert_id: str) -> list[asyncpg.Record]:
    return query(
        url,
        "SELECT scheduled_for, evaluated_by, finished_at FROM sql_alert_evaluations "
        "WHERE alert_id = $1 AND trigger = 'SCHEDULE' ORDER BY id",
        alert_id,
    )


def wait_scheduled(url: str, alert_id: str, count: int, timeout: float = 90.0) -> list[asyncpg.Record]:
    deadline = time.monotonic() + timeout
    while True:
        found = scheduled(url, alert_id)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} scheduled evaluations"
        time.sleep(0.2)


def every_two_seconds(alerting: Alerting, path: str) -> str:
    body = reliability_alert(path, seconds_to_retrigger=1)
    body["alert"]["schedule"] = {"quartz_cron_schedule": "*/2 * * * * ?", "timezone_id": "UTC"}
    created = call(alerting.url, alerting.analyst.token, "POST", ALERTS, json=body)
    assert created["schedule"]["pause_status"] == "UNPAUSED" and created["next_run_time"]
    return str(created["id"])


def pause(alerting: Alerting, alert_id: str) -> None:
    body = {
        "alert": {"schedule": {"quartz_cron_schedule": "*/2 * * * * ?", "pause_status": "PAUSED"}},
        "update_mask": "schedule",
    }
    paused = call(alerting.url, alerting.analyst.token, "PATCH", f"{ALERTS}/{alert_id}", json=body)
    assert paused["schedule"]["pause_status"] == "PAUSED" and paused.get("next_run_time") is None


def test_two_gateway_processes_evaluate_each_fire_time_once(alerting: Alerting, receiver: Receiver) -> None:  # noqa: F811
    while len(alerting.gateways) < 2:
        alerting.start()
    seed_runs(alerting.url, unique("flaky"), finished=1, failed=1)  # some experiment's ratio is 0.5: TRIGGERED
    path = f"/allowed/ticks-{uuid.uuid4().hex[:6]}"
    alert_id = every_two_seconds(alerting, path)
    wait_scheduled(alerting.database_url, alert_id, 8)
    pause(alerting, alert_id)
    found = scheduled(alerting.database_url, alert_id)
    ticks = [row["scheduled_for"] for row in found]
    # One evaluation per fire time: each a distinct 2-second boundary, in order.
    assert len(set(ticks)) == len(ticks), ticks
    assert ticks == sorted(ticks)
    assert all(tick.microsecond == 0 and tick.second % 2 == 0 for tick in ticks)
    # Evaluations notified (again after 1 s while TRIGGERED), and the receiver saw each delivery once. An evaluation
    # claimed before the pause is recorded after it, so the count is read again until the receiver has seen them all:
    # the receiver first, then the count, which then holds every notification the receiver can have seen.

    def notified_and_seen() -> tuple[int, list[Received]]:
        seen = receiver.at(path)
        notified = query(
            alerting.database_url,
            "SELECT coalesce(sum(notifications), 0) AS n FROM sql_alert_evaluations WHERE alert_id = $1",
            alert_id,
        )[0]["n"]
        return int(notified), seen

    notified, seen = until(
        notified_and_seen, lambda found: len(found[1]) >= found[0] >= 1, "the receiver seeing every notification"
    )
    assert len({r.headers["X-Fedgate-Delivery"] for r in seen}) == len(seen) == notified
    assert all(signed(r, SECRET) for r in seen)


def test_fire_times_missed_while_every_gateway_was_down_run_once(alerting: Alerting) -> None:
    if not alerting.gateways:
        alerting.start()
    alert_id = every_two_seconds(alerting, f"/allowed/catchup-{uuid.uuid4().hex[:6]}")
    wait_scheduled(alerting.database_url, alert_id, 1)
    alerting.stop_all()
    # Read once every gateway is gone: a fire time may come while they stop, and its evaluation is one of before.
    before = scheduled(alerting.database_url, alert_id)
    [row] = query(alerting.database_url, "SELECT next_run_at FROM sql_alerts WHERE id = $1", alert_id)
    missed_from: datetime = row["next_run_at"]
    # Three fire times pass with no gateway running (the database's clock, polled).
    deadline = time.monotonic() + 60
    while (
        query(alerting.database_url, "SELECT now() > $1::timestamptz + interval '6 seconds' AS past", missed_from)[0][
            "past"
        ]
        is not True
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    restarted_at = query(alerting.database_url, "SELECT now() AS t")[0]["t"]
    alerting.start()
    after = wait_scheduled(alerting.database_url, alert_id, len(before) + 2)[len(before) :]
    pause(alerting, alert_id)
    # The missed fire times gave one evaluation, standing for the first of them; the next is a fresh one.
    assert after[0]["scheduled_for"] == missed_from
    assert after[1]["scheduled_for"] > restarted_at


# -- the console page (last in the module: Playwright's sync API holds the event loop until the module ends) --


def test_the_console_page_creates_and_runs_the_reliability_alert(
    alerting: Alerting,
    receiver: Receiver,  # noqa: F811
    chromium: Any,
) -> None:
    from tests.integration.test_console import sign_in_at
    from tests.support.browser import new_tab, shot

    seed_runs(alerting.url, unique("browser"), finished=1, failed=3)  # a success ratio of 0.25
    path = f"/allowed/browser-{uuid.uuid4().hex[:6]}"
    name = unique("reliability in the browser")
    saved_name = unique("saved reliability")
    call(
        alerting.url,
        alerting.analyst.token,
        "POST",
        "/api/2.0/sql/queries",
        json={"query": {"display_name": saved_name, "query_text": SUCCESS_RATIO}},
    )
    with new_tab(chromium, alerting.url) as tab:
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sign_in_at(tab, "/fedgate/console/alerts", alerting.analyst.token)
        tab.wait_for_selector("#fg-alerts-list table, #fg-alerts-list p")
        tab.click("#fg-alert-reliability")
        assert tab.input_value("#fg-alert-column") == "success_ratio"
        assert "success_ratio" in tab.input_value("#fg-alert-query")
        tab.fill("#fg-alert-name", name)
        tab.fill("#fg-alert-webhook", RECEIVER + path)
        tab.fill("#fg-alert-secret", SECRET)
        shot(tab, "40-console-alert-form")
        tab.click("#fg-alert-save")
        row = tab.locator("#fg-alerts-table tr", has_text=name)
        row.wait_for()
        assert row.locator(".fg-state").inner_text() == "UNKNOWN"
        row.locator("button.fg-alert-run").click()
        tab.wait_for_selector(f"#fg-alerts-table tr:has-text('{name}') .fg-state-TRIGGERED")
        tab.wait_for_selector("#fg-alert-history-card:not(.fg-hidden) table")
        history = tab.locator("#fg-alert-history tbody tr").all_inner_texts()
        assert len(history) == 1 and "TRIGGERED" in history[0] and "MANUAL" in history[0]
        shot(tab, "41-console-alert-triggered")

        # The same alert on a saved query of the analyst's, chosen in the form.
        tab.click("#fg-alert-new")
        tab.select_option("#fg-alert-saved", label=saved_name)
        assert "success_ratio" in tab.input_value("#fg-alert-query")
        tab.fill("#fg-alert-name", saved_name)
        tab.fill("#fg-alert-column", "success_ratio")
        tab.select_option("#fg-alert-aggregation", "MIN")
        tab.select_option("#fg-alert-op", "LESS_THAN")
        tab.fill("#fg-alert-threshold", "0.9")
        tab.click("#fg-alert-save")
        on_saved = tab.locator("#fg-alerts-table tr", has_text=saved_name)
        on_saved.wait_for()
        on_saved.locator("button.fg-alert-run").click()
        tab.wait_for_selector(f"#fg-alerts-table tr:has-text('{saved_name}') .fg-state-TRIGGERED")
        shot(tab, "42-console-alert-on-a-saved-query")
        errors_seen = list(errors)
    [hook] = receiver.wait_for(path, 1)
    assert signed(hook, SECRET)
    assert (hook.event["display_name"], hook.event["state"]) == (name, "TRIGGERED")
    assert float(hook.event["value"]) <= 0.25  # the browser's experiment, or a worse one of an earlier test
    assert errors_seen == []  # the page's CSP refused nothing it asked for
    [on_query] = [
        a
        for a in call(alerting.url, alerting.analyst.token, "GET", ALERTS)["results"]
        if a["display_name"] == saved_name
    ]
    assert on_query["query_id"] and "query_text" not in on_query
