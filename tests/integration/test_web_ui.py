"""The MLflow web UI through the gateway, in a real headless Chromium, behind browser sign-in.

Real mlflow stores behind a real gateway process, the local OIDC issuer's sign-in page, and Debian's
chromium driven by Playwright. Screenshots of each step: test-artifacts/ui/ (README, "The web UI").
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric

from gateway.devstack import LOOPBACK, GatewayProcess, free_port
from gateway.ui.static import app_policy
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack
from tests.support.browser import answered_missing, image_shown, new_tab, png, reload_catching, shot, sign_in_with_token
from tests.support.identity import Admin, Person, unique
from tests.support.oidc import OidcIssuer
from tests.support.stock_client import stock_client_env
from tests.support.waiting import until

pytestmark = pytest.mark.integration
CLIENT_ID = "fedgate-ui"
CLIENT_SECRET = "ui-client-secret-5d1e"
PASSWORD = "correct horse battery staple"


@dataclass
class World:
    gateway: GatewayProcess
    issuer: OidcIssuer
    email: str  # signs in through the issuer; may read team-a's `visible` experiment and all of team-b
    person: Person  # the same kind of access, signing in with a personal access token
    visible: str  # experiment id in team-a
    hidden: str  # experiment id in team-a nobody of the above may read
    team_b: str  # experiment id in team-b
    team_c: str  # experiment id in team-c, a workspace nobody of the above may enter
    run_id: str  # of `visible`: a metric chart and an image artifact
    run_b: str  # of `team_b`
    names: dict[str, str]


@pytest.fixture(scope="module")
def world(stack: Stack, workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    issuer = OidcIssuer().start()
    gateway: GatewayProcess | None = None
    try:  # a setup that fails partway still stops what it started
        port = free_port()
        issuer.register(CLIENT_ID, f"http://{LOOPBACK}:{port}/fedgate/sign-in/callback", CLIENT_SECRET)
        env = {
            **GATEWAY_ENV,
            "FEDGATE_OIDC_ISSUER": issuer.url,
            "FEDGATE_OIDC_AUDIENCE": "fedgate",
            "FEDGATE_OIDC_CLIENT_ID": CLIENT_ID,
            "FEDGATE_OIDC_CLIENT_SECRET_ENV": "UI_CLIENT_SECRET",
            "UI_CLIENT_SECRET": CLIENT_SECRET,
        }
        gateway = GatewayProcess(workdir / "fedgate.toml", env, port=port).start()
        admin = Admin.of(stack)
        suite = unique("ui")
        group = f"{suite}-readers"
        email = f"{suite}@example.com"
        issuer.person(email, PASSWORD, groups=[group])
        admin.group(group)
        person = admin.person(f"{suite}-pat@example.com")
        admin.group(f"{suite}-pat-readers", members=[person.id])
        names = {
            "visible": f"{suite} churn model",
            "hidden": f"{suite} secret project",
            "team_b": f"{suite} forecasts",
            "team_c": f"{suite} payroll",
        }
        with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
            mlflow.set_tracking_uri(stack.url)
            image = tmp_path_factory.mktemp("ui") / "confusion_matrix.png"
            image.write_bytes(png(96, 72))
            mlflow.set_workspace("team-a")
            client = MlflowClient()
            visible = client.create_experiment(names["visible"])
            hidden = client.create_experiment(names["hidden"])
            with mlflow.start_run(experiment_id=visible, run_name="gradient-boosting") as run:
                at = int(time.time() * 1000)
                losses = [Metric("loss", 1.0 / (step + 1), at + step, step) for step in range(20)]
                client.log_batch(run.info.run_id, losses, [], [])
                mlflow.log_params({"learning_rate": "0.05", "max_depth": "6"})
                mlflow.log_metric("accuracy", 0.93)
                mlflow.log_artifact(str(image))
            with mlflow.start_run(experiment_id=hidden, run_name="do-not-show"):
                mlflow.log_metric("loss", 0.5)
            mlflow.set_workspace("team-b")
            team_b = MlflowClient().create_experiment(names["team_b"])
            with mlflow.start_run(experiment_id=team_b, run_name="arima") as run_b:
                for step in range(5):
                    mlflow.log_metric("mape", 0.12 + step / 100, step=step)
            mlflow.set_workspace("team-c")
            team_c = MlflowClient().create_experiment(names["team_c"])
            with mlflow.start_run(experiment_id=team_c, run_name="salaries"):
                mlflow.log_metric("total", 1.0)
        for name in (group, f"{suite}-pat-readers"):
            admin.grant(f"experiments/{visible}", "CAN_READ", group=name, workspace="team-a")
            admin.grant("workspaces/team-b", "CAN_READ", group=name)
        yield World(
            gateway, issuer, email, person, visible, hidden, team_b, team_c, run.info.run_id, run_b.info.run_id, names
        )
    finally:
        if gateway is not None:
            gateway.stop()
        issuer.stop()


@pytest.fixture
def page(chromium: Any, world: World) -> Iterator[Any]:
    """A fresh browser context (no cookies) of the module's Chromium; every URL it asks for is kept."""
    with new_tab(chromium, world.gateway.url) as tab:
        yield tab


def assistant_hidden(page: Any) -> bool:
    """MLflow's assistant (never served through the gateway) is on the page but not shown. At 127.0.0.1 the
    UI renders it, and opens its panel by itself, as soon as the page has loaded."""
    assistant = page.locator("[data-assistant-ui]")
    assistant.first.wait_for(state="attached")
    return (
        all(not element.is_visible() for element in assistant.all())
        and not page.get_by_text("Welcome to MLflow Assistant").is_visible()
    )


def workspaces_listed(page: Any) -> list[str]:
    page.get_by_text("Select a workspace").wait_for()
    rows = page.locator("table tbody tr td:first-child, [role=row] [role=cell]:first-child")
    rows.first.wait_for()
    return sorted({text.strip() for text in rows.all_inner_texts() if text.strip()})


def test_a_person_signs_in_at_the_identity_provider_and_uses_the_ui_across_workspaces(page: Any, world: World) -> None:
    # Signed out, the gateway's URL is the sign-in page; the identity provider signs the person in.
    page.goto("/")
    assert page.url.startswith(f"{world.gateway.url}/fedgate/sign-in")
    shot(page, "01-sign-in")
    page.click("#sign-in-oidc")
    page.wait_for_url(f"{world.issuer.url}/authorize*")
    page.fill("#username", world.email)
    page.fill("#password", PASSWORD)
    shot(page, "02-identity-provider")
    page.click("#submit")
    page.wait_for_selector("#fedgate-user")
    assert page.url.startswith(f"{world.gateway.url}/")
    assert page.inner_text("#fedgate-user") == world.email
    # Exactly the workspaces the person may read, and the read-only account scope.
    assert workspaces_listed(page) == ["account", "team-a", "team-b"]
    assert assistant_hidden(page)
    shot(page, "03-workspaces")

    # team-a: the readable experiment is listed, the hidden one is not.
    page.goto("/#/experiments?workspace=team-a")
    page.get_by_text(world.names["visible"]).first.wait_for()
    assert page.get_by_text(world.names["hidden"]).count() == 0
    shot(page, "04-experiments-team-a")

    # A run: its metric chart and its image artifact.
    run_page = f"/#/experiments/{world.visible}/runs/{world.run_id}"
    page.goto(f"{run_page}/model-metrics?workspace=team-a")
    page.get_by_text("gradient-boosting").first.wait_for()
    page.get_by_text("loss").first.wait_for()
    page.locator("canvas, svg.main-svg").first.wait_for()
    shot(page, "05-run-metric-chart")
    page.goto(f"{run_page}/artifacts?workspace=team-a")
    with page.expect_response(lambda r: "get-artifact" in r.url and "confusion_matrix.png" in r.url) as fetched:
        page.get_by_text("confusion_matrix.png").first.click()
    assert fetched.value.status == 200 and fetched.value.headers["content-type"] == "image/png"
    # The image the UI shows is the artifact (96 x 72 pixels), fetched through the gateway.
    image_shown(page, 96)
    shot(page, "06-run-artifact-image")

    # Another workspace.
    page.goto("/#/experiments?workspace=team-b")
    page.get_by_text(world.names["team_b"]).first.wait_for()
    shot(page, "07-experiments-team-b")

    # The hidden experiment, by its URL: the gateway answers as if it did not exist, and the UI says so.
    def asks_for_hidden(response: Any) -> bool:
        """A read of the hidden experiment in team-a: REST (`experiment_id=` in the URL) or GraphQL (the body).
        (Right after a switch the UI may still ask the workspace it came from, where that id is another one.)"""
        body = response.request.post_data or ""
        if response.request.headers.get("x-mlflow-workspace") != "team-a":
            return False
        return f"experiment_id={world.hidden}" in response.url or (
            "/graphql" in response.url and "mlflowGetExperiment" in body and f'"{world.hidden}"' in body
        )

    page.goto(f"/#/experiments/{world.hidden}?workspace=team-a")
    refused = reload_catching(page, asks_for_hidden)  # a fresh page reads its workspace from the URL
    assert answered_missing(refused, f"No Experiment with id={world.hidden} exists")
    # The UI's words for an experiment that does not exist (GraphQL's answer, as a store gives it).
    page.get_by_text(f"No Experiment with id={world.hidden} exists").first.wait_for()
    assert page.get_by_text(world.names["hidden"]).count() == 0
    shot(page, "08-hidden-experiment-refused")

    # Sign out: the session ends at the gateway and at the provider, and the browser is at the sign-in page.
    page.click("#fedgate-sign-out")
    page.wait_for_url(f"{world.gateway.url}/fedgate/sign-in*")
    assert world.issuer.logouts and world.issuer.logouts[-1]["client_id"] == CLIENT_ID
    shot(page, "09-signed-out")
    page.goto("/")
    assert page.url.startswith(f"{world.gateway.url}/fedgate/sign-in")
    # No token ever travelled in a URL.
    assert not [url for url in page.urls if "fgt_" in url or "eyJ" in url]


# Every document of the tab (frames included) reports the Content-Security-Policy violations it sees.
REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => window.fedgateViolation(
    `${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} in ${e.documentURI} (${e.sample})`));
"""


def policy_watched(page: Any) -> list[str]:
    """What the tab reports breaking its pages' policies from now on: `securitypolicyviolation` events of every
    document in it, and its console's errors about the policy (Chromium logs each refusal there too)."""
    seen: list[str] = []
    page.expose_function("fedgateViolation", lambda text: seen.append(str(text)))
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    return seen


def reported(page: Any, seen: list[str], what: str, *words: str) -> None:
    """Waits (bounded) until the tab has reported a violation naming all of `words`; the tab's events are
    taken in while it waits."""

    def pumped() -> list[str]:
        page.wait_for_timeout(50)  # lets Playwright hand over the tab's events; not a timed assertion
        return list(seen)

    until(pumped, lambda now: any(all(word in each for word in words) for each in now), what)


def test_mlflows_page_runs_under_its_script_policy_without_a_violation(page: Any, world: World, stack: Stack) -> None:
    """MLflow's page has a Content-Security-Policy that allows its own scripts, workers and calls to the gateway
    and nothing else (no 'unsafe-eval', no inline script but by hash). In Chromium the UI works under it
    with no violation: experiments, a run's metric chart, its artifacts (an image; an HTML file, whose
    scripts do not run in its frame)."""
    violations = policy_watched(page)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace("team-a")
        with mlflow.start_run(experiment_id=world.visible, run_name="report-page") as run:
            mlflow.log_text(
                "<p id='written'>written by the page</p><script>document.title = 'ran'</script>", "report.html"
            )
            mlflow.log_dict({"threshold": 0.5}, "settings.json")
    sign_in_with_token(page, world.person.token)
    policy = page.evaluate("fetch('/').then(r => r.headers.get('content-security-policy'))")
    assert "script-src 'self';" in policy and "unsafe-eval" not in policy and "default-src 'none'" in policy

    page.goto("/#/experiments?workspace=team-a")
    page.get_by_text(world.names["visible"]).first.wait_for()
    run_page = f"/#/experiments/{world.visible}/runs/{world.run_id}"
    page.goto(f"{run_page}?workspace=team-a")
    page.get_by_text("gradient-boosting").first.wait_for()
    page.get_by_text("learning_rate").first.wait_for()
    page.goto(f"{run_page}/model-metrics?workspace=team-a")
    page.get_by_text("loss").first.wait_for()
    page.locator("canvas, svg.main-svg").first.wait_for()
    page.goto(f"{run_page}/artifacts?workspace=team-a")
    page.get_by_text("confusion_matrix.png").first.click()
    image_shown(page, 96)
    shot(page, "csp-run-artifact-image")
    assert violations == [] and errors == [], (violations, errors)

    # Artifacts a person uploaded: a JSON file, and an HTML page shown in a frame, without its script.
    page.goto(f"/#/experiments/{world.visible}/runs/{run.info.run_id}/artifacts?workspace=team-a")
    page.get_by_text("settings.json").first.click()
    page.get_by_text("threshold").first.wait_for()
    assert violations == [] and errors == [], (violations, errors)
    page.get_by_text("report.html").first.click()
    page.frame_locator("iframe#html").locator("#written").wait_for()
    shown = next(frame for frame in page.frames if frame.url.startswith("blob:"))
    assert shown.locator("#written").inner_text() == "written by the page"
    reported(page, violations, "the HTML artifact's script refused", "script-src", "inline")
    assert shown.title() != "ran"
    shot(page, "csp-html-artifact")


def test_a_script_put_into_mlflows_page_does_not_run(page: Any, world: World) -> None:
    """The page as the gateway serves it, with one inline script more (as an injection into the page would
    put it there), keeps the gateway's policy: Chromium refuses the script and reports it."""
    violations = policy_watched(page)
    sign_in_with_token(page, world.person.token)

    def injected(route: Any) -> None:
        served = route.fetch()
        body = served.text().replace("</head>", "<script>window.fedgateInjected = true</script></head>", 1)
        assert "fedgateInjected" in body and "content-security-policy" in served.headers
        route.fulfill(response=served, body=body)

    page.route(f"{world.gateway.url}/", injected)
    page.goto("/")
    page.wait_for_selector("#fedgate-user")
    page.get_by_text("Select a workspace").wait_for()  # MLflow's own scripts run
    assert page.evaluate("window.fedgateInjected") is None
    reported(page, violations, "the injected script refused", "script-src", "inline")

    # A page that holds the script in the file served gets the policy the gateway makes from that file: the
    # script is pinned by a hash Chromium agrees with (line ends included), and runs.
    page.unroute(f"{world.gateway.url}/")

    def built_with_it(route: Any) -> None:
        served = route.fetch()
        body = served.text().replace("</head>", "<script>\r\nwindow.fedgateInjected = true\r\n</script></head>", 1)
        route.fulfill(
            response=served, body=body, headers={**served.headers, "content-security-policy": app_policy(body.encode())}
        )

    page.route(f"{world.gateway.url}/", built_with_it)
    page.goto("/")
    page.get_by_text("Select a workspace").wait_for()
    assert page.evaluate("window.fedgateInjected") is True


def test_a_person_signs_in_with_a_token_and_searches_the_account_scope(page: Any, world: World) -> None:
    page.goto("/")
    page.fill("#token", world.person.token)
    page.click("#sign-in-token")
    page.wait_for_selector("#fedgate-user")
    assert workspaces_listed(page) == ["account", "team-a", "team-b"]
    page.goto("/#/experiments?workspace=account")
    page.get_by_text(world.names["visible"]).first.wait_for()
    page.get_by_text(world.names["team_b"]).first.wait_for()
    assert page.get_by_text(world.names["hidden"]).count() == 0
    page.set_viewport_size({"width": 1100, "height": 560})
    page.wait_for_timeout(500)
    shot(page, "10-account-scope")
    assert not [url for url in page.urls if world.person.token in url]


def test_in_the_account_scope_a_person_opens_an_experiment_and_its_run_read_only(page: Any, world: World) -> None:
    page.goto("/")
    page.fill("#token", world.person.token)
    page.click("#sign-in-token")
    page.wait_for_selector("#fedgate-user")
    # Experiments of both readable workspaces; none of team-c, which the person may not enter.
    page.goto("/#/experiments?workspace=account")
    page.get_by_text(world.names["visible"]).first.wait_for()
    page.get_by_text(world.names["team_b"]).first.wait_for()
    assert page.get_by_text(world.names["team_c"]).count() == 0
    assert page.get_by_text(world.names["hidden"]).count() == 0
    # Opened from the list: the experiment's page, named by its account id.
    experiment = f"1002-{world.team_b}"
    page.get_by_text(world.names["team_b"]).first.click()
    page.wait_for_url(f"**/#/experiments/{experiment}**")
    page.get_by_text(world.names["team_b"]).first.wait_for()
    # What the page read over GraphQL: the experiment, from team-b, with its account id.
    assert graphql_in_page(page, "mlflowGetExperiment", {"experimentId": experiment}) == {
        "data": {"mlflowGetExperiment": {"experiment": {"experimentId": experiment, "name": world.names["team_b"]}}},
        "errors": None,
    }
    shot(page, "11-account-scope-experiment")
    # Its runs, and a run with its metric chart.
    page.goto(f"/#/experiments/{experiment}/runs?workspace=account")
    page.get_by_text("arima").first.wait_for()
    shot(page, "12-account-scope-runs")
    page.get_by_text("arima").first.click()
    page.wait_for_url(f"**/runs/{world.run_b}**")
    page.goto(f"/#/experiments/{experiment}/runs/{world.run_b}/model-metrics?workspace=account")
    page.get_by_text("mape").first.wait_for()
    page.locator("canvas, svg.main-svg").first.wait_for()
    shot(page, "13-account-scope-run-metric-chart")
    assert graphql_in_page(page, "mlflowGetRun", {"runId": world.run_b}) == {
        "data": {"mlflowGetRun": {"run": {"info": {"runUuid": world.run_b, "experimentId": experiment}}}},
        "errors": None,
    }
    # team-c's experiment by URL: as if it did not exist.
    hidden = f"1003-{world.team_c}"
    page.goto(f"/#/experiments/{hidden}?workspace=account")
    page.reload()
    page.get_by_text(f"No Experiment with id={hidden} exists").first.wait_for()
    assert graphql_in_page(page, "mlflowGetExperiment", {"experimentId": hidden}) == {
        "data": {"mlflowGetExperiment": None},
        "errors": [f"No Experiment with id={hidden} exists"],
    }
    assert page.get_by_text(world.names["team_c"]).count() == 0
    # Read-only: a write in the account scope is refused with words that say so, and changes nothing.
    status, answer = page.evaluate(
        """async (runId) => {
            const r = await fetch('/ajax-api/2.0/mlflow/runs/set-tag', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-MLFLOW-WORKSPACE': 'account'},
                body: JSON.stringify({run_id: runId, key: 'note', value: 'from the account scope'})});
            return [r.status, await r.json()];
        }""",
        world.run_b,
    )
    assert status == 400 and answer["message"] == "The account scope is read-only; choose a workspace.", answer
    # The pages asked nothing the account scope refused (the write above aside).
    refused = [(status, url) for status, method, url in page.answers if status == 400 and "runs/set-tag" not in url]
    assert not refused, refused


def graphql_in_page(page: Any, field: str, given: dict[str, Any]) -> Any:
    """A GraphQL read sent by the page (its session cookie) in the account scope, as the UI sends one."""
    selection = {
        "mlflowGetExperiment": "experiment { experimentId name }",
        "mlflowGetRun": "run { info { runUuid experimentId } }",
    }[field]
    kind = field.removeprefix("mlflow")
    query = f"query {kind}($input: Mlflow{kind}Input!) {{ {field}(input: $input) {{ {selection} }} }}"
    return page.evaluate(
        """async ([query, input]) => {
            const r = await fetch('/graphql', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-MLFLOW-WORKSPACE': 'account'},
                body: JSON.stringify({query, variables: {input}})});
            return await r.json();
        }""",
        [query, given],
    )


@pytest.mark.parametrize("how", ["token", "identity provider"])
def test_a_link_opened_signed_out_leads_there_after_sign_in(page: Any, world: World, how: str) -> None:
    link = f"/#/experiments/{world.visible}/runs/{world.run_id}/model-metrics?workspace=team-a"
    page.goto(link)
    # The part after `#` never reaches the server; the sign-in page gets it as `next` all the same.
    page.wait_for_url(lambda url: url.startswith(f"{world.gateway.url}/fedgate/sign-in?"))
    assert parse_qs(urlsplit(page.url).query)["next"] == [link]
    if how == "token":
        page.fill("#token", world.person.token)
        page.click("#sign-in-token")
    else:
        page.click("#sign-in-oidc")
        page.wait_for_url(f"{world.issuer.url}/authorize*")
        page.fill("#username", world.email)
        page.fill("#password", PASSWORD)
        page.click("#submit")
    page.wait_for_selector("#fedgate-user")
    assert page.url.startswith(f"{world.gateway.url}/#/experiments/{world.visible}/runs/{world.run_id}")
    page.get_by_text("gradient-boosting").first.wait_for()
    page.locator("canvas, svg.main-svg").first.wait_for()
    if how == "token":
        shot(page, "23-deep-link-after-sign-in")


# -- the session's security, over plain HTTP ------------------------------------------------------------


def signed_in(world: World, **headers: str) -> requests.Session:
    """A browser-like client signed in with the person's token (its cookie jar holds the session)."""
    http = requests.Session()
    answer = http.post(
        f"{world.gateway.url}/fedgate/sign-in/token",
        data={"token": world.person.token, "next": "/"},
        headers={"Origin": world.gateway.url, **headers},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303, answer.text
    return http


def search(http: requests.Session, world: World, **headers: str) -> requests.Response:
    return http.post(
        f"{world.gateway.url}/ajax-api/2.0/mlflow/experiments/search",
        json={"max_results": 10},
        headers={"X-MLFLOW-WORKSPACE": "team-a", **headers},
        timeout=30,
    )


def test_the_session_cookie_is_httponly_lax_and_secure_with_the_host_prefix_behind_https(world: World) -> None:
    answer = requests.post(
        f"{world.gateway.url}/fedgate/sign-in/token",
        data={"token": world.person.token},
        headers={"Origin": world.gateway.url},
        allow_redirects=False,
        timeout=30,
    )
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("fedgate_session=")
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in flags and flags["samesite"].lower() == "samesite=lax" and flags["path"] == "Path=/"
    assert "secure" not in flags
    assert world.person.token not in cookie and world.person.token not in answer.headers.get("location", "")
    # Behind a TLS proxy: the operator names the https URL people open (ui.public_url).
    port = free_port()
    public = f"https://{LOOPBACK}:{port}"
    env = {**GATEWAY_ENV, "FEDGATE_UI_PUBLIC_URL": public}
    behind_tls = GatewayProcess(world.gateway.config_path, env, port=port).start()
    try:
        answer = requests.post(
            f"{behind_tls.url}/fedgate/sign-in/token",
            data={"token": world.person.token},
            headers={"Origin": public},
            allow_redirects=False,
            timeout=30,
        )
    finally:
        behind_tls.stop()
    assert answer.status_code == 303, answer.text
    secure = answer.headers["set-cookie"]
    assert secure.startswith("__Host-fedgate_session=") and "Secure" in secure and "Domain" not in secure


def test_a_cross_site_request_with_the_session_cookie_is_refused(world: World) -> None:
    http = signed_in(world)
    assert search(http, world, Origin=world.gateway.url).status_code == 200
    assert search(http, world, **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": world.gateway.url},
        {"Sec-Fetch-Site": "same-site"},
        {},  # a request that cannot say where it comes from
    ):
        refused = search(http, world, **headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
    # A sign-out another site posts does not end the session.
    assert (
        http.post(f"{world.gateway.url}/fedgate/sign-out", headers={"Origin": "http://evil.example"}).status_code == 403
    )
    assert search(http, world, Origin=world.gateway.url).status_code == 200


def test_a_cross_site_form_post_from_another_site_changes_nothing(page: Any, world: World) -> None:
    """In Chromium: the person is signed in, another site's page posts a form to the gateway."""
    page.goto("/")
    page.fill("#token", world.person.token)
    page.click("#sign-in-token")
    page.wait_for_selector("#fedgate-user")
    target = f"{world.gateway.url}/ajax-api/2.0/mlflow/experiments/create"
    attack = (
        f"<form id='f' method='post' action='{target}' enctype='text/plain'>"
        '<input name=\'{"name":"pwned","x":"\' value=\'"}\'></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route("http://attacker.test/**", lambda route: route.fulfill(body=attack, content_type="text/html"))
    with page.expect_response(target) as answer:
        page.goto("http://attacker.test/")
    assert answer.value.status in (401, 403), answer.value.status
    found = requests.get(
        f"{world.gateway.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "pwned"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": "team-a"},
        timeout=30,
    )
    assert found.status_code == 404


def test_a_cross_site_form_post_with_the_browsers_basic_credentials_changes_nothing(world: World, stack: Stack) -> None:
    """A person once answered the browser's prompt for the gateway's Basic challenge with their token (an API
    URL opened in the browser). The browser then adds that header by itself to every request to the gateway,
    a form another site's page posts included (Chromium does, with Sec-Fetch-Site: cross-site): what it
    sends then is refused. A client's Basic credentials (no Sec-Fetch-Site, no Origin) still work."""
    admin = Admin.of(stack)
    person = admin.person(unique("ui-basic") + "@example.com")
    admin.grant("workspaces/team-b", "CAN_MANAGE", user=person.name)
    basic = "Basic " + base64.b64encode(f"token:{person.token}".encode()).decode()
    target = f"{world.gateway.url}/api/2.0/mlflow/experiments/create"
    name = unique("basic-pwned")
    body = '{"name":"' + name + '","x":"="}'  # a text/plain form field name=value, read as JSON
    for headers in (
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://attacker.test"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.attacker.test"},
        {"Origin": "http://attacker.test"},  # a browser that sends no Sec-Fetch-* (plain http)
        {"Origin": "null"},  # a sandboxed frame or a data: page
    ):
        refused = requests.post(
            target,
            data=body,
            headers={"Authorization": basic, "Content-Type": "text/plain", "X-MLFLOW-WORKSPACE": "team-b", **headers},
            timeout=30,
        )
        assert refused.status_code == 403, (headers, refused.status_code, refused.text)
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
    found = requests.get(
        f"{world.gateway.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": "team-b"},
        timeout=30,
    )
    assert found.status_code == 404, found.text
    created = requests.post(
        target,
        json={"name": name},
        headers={"Authorization": basic, "X-MLFLOW-WORKSPACE": "team-b"},
        timeout=30,
    )
    assert created.status_code == 200, created.text


def test_sign_in_always_makes_a_new_session_id(world: World) -> None:
    """Session fixation: an id planted in the browser before sign-in is never the one signed in."""
    planted = "planted-" + uuid.uuid4().hex
    http = requests.Session()
    http.cookies.set("fedgate_session", planted)
    assert search(http, world, Origin=world.gateway.url).status_code == 401
    answer = http.post(
        f"{world.gateway.url}/fedgate/sign-in/token",
        data={"token": world.person.token},
        headers={"Origin": world.gateway.url},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303
    issued = answer.cookies["fedgate_session"]
    assert issued != planted
    # Signing in again from a signed-in browser rotates the id: the old one is dead.
    again = requests.post(
        f"{world.gateway.url}/fedgate/sign-in/token",
        data={"token": world.person.token},
        headers={"Origin": world.gateway.url},
        cookies={"fedgate_session": issued},
        allow_redirects=False,
        timeout=30,
    )
    rotated = again.cookies["fedgate_session"]
    assert rotated != issued
    old = requests.Session()
    old.cookies.set("fedgate_session", issued)
    assert search(old, world, Origin=world.gateway.url).status_code == 401


def test_next_never_leads_to_another_site(world: World) -> None:
    for target in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "http:evil.example",
        "/%0d%0aLocation:%20http://evil.example",
        " //evil.example",
        "/#/models/modèle-✓",  # beyond latin-1: percent-encoded for the Location header, not a 500
    ):
        answer = requests.post(
            f"{world.gateway.url}/fedgate/sign-in/token",
            data={"token": world.person.token, "next": target},
            headers={"Origin": world.gateway.url},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 303, target
        location = answer.headers["location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\")), (target, location)
        assert "evil.example" not in location or location.startswith("/%"), (target, location)
    page = requests.get(f"{world.gateway.url}/fedgate/sign-in", params={"next": "//evil.example"}, timeout=30)
    assert "value='/'" in page.text and "evil.example" not in page.text
    assert (
        requests.get(
            f"{world.gateway.url}/fedgate/sign-in/oidc", params={"next": "https://evil.example"}, allow_redirects=False
        ).status_code
        == 302
    )  # to the provider; the attempt keeps "/" (checked by the callback's redirect)


def test_a_stolen_session_cookie_is_dead_after_sign_out(world: World) -> None:
    http = signed_in(world)
    stolen = http.cookies["fedgate_session"]
    assert search(http, world, Origin=world.gateway.url).status_code == 200
    out = http.post(
        f"{world.gateway.url}/fedgate/sign-out", headers={"Origin": world.gateway.url}, allow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"] == "/fedgate/sign-in"
    thief = requests.Session()
    thief.cookies.set("fedgate_session", stolen)
    refused = search(thief, world, Origin=world.gateway.url)
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"
    assert thief.get(f"{world.gateway.url}/", allow_redirects=False).headers["location"].startswith("/fedgate/sign-in")


def test_the_ui_files_are_served_with_types_caching_and_gzip(world: World) -> None:
    index = requests.get(f"{world.gateway.url}/", allow_redirects=False, timeout=30)
    assert index.status_code == 303
    # The hop that keeps a link's `#` part runs its one script, allowed by hash; nothing else runs there.
    hop = requests.get(f"{world.gateway.url}{index.headers['location']}", timeout=30)
    policy = hop.headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "unsafe" not in policy and "<form" not in hop.text
    page = requests.get(f"{world.gateway.url}/fedgate/sign-in", timeout=30)
    assert (
        "script-src" not in page.headers["content-security-policy"]
        and "default-src 'none'" in page.headers["content-security-policy"]
    )
    http = signed_in(world)
    html = http.get(f"{world.gateway.url}/", timeout=30)
    assert html.status_code == 200 and html.headers["cache-control"] == "no-store"
    script = html.text.split('src="', 1)[1].split('"', 1)[0]
    js = requests.get(f"{world.gateway.url}/{script}", headers={"Accept-Encoding": "gzip"}, timeout=30)
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert js.headers["content-encoding"] == "gzip" and "immutable" in js.headers["cache-control"]
    assert js.headers["x-content-type-options"] == "nosniff"
    plain = requests.get(f"{world.gateway.url}/{script}", headers={"Accept-Encoding": "identity"}, timeout=30)
    assert "content-encoding" not in plain.headers and len(plain.content) > len(js.raw.data or b"")
    manifest = requests.get(f"{world.gateway.url}/static-files/manifest.json", timeout=30)
    assert manifest.headers["cache-control"] == "no-cache" and manifest.headers["content-type"] == "application/json"
    for escape in ("/static-files/../../../../etc/passwd", "/static-files/%2e%2e/index.html"):
        assert requests.get(f"{world.gateway.url}{escape}", timeout=30).status_code in (400, 404)


def test_answers_holding_a_persons_data_are_never_kept_by_the_browser(world: World) -> None:
    """The UI's reads (MLflow's JSON forwarded from the store, the gateway's own APIs) came without Cache-Control:
    a browser keeps such GET answers in its disk cache, where the experiments, runs and sessions of a person who
    signed out stayed readable to the next user of the machine. Every answer that says nothing of caching is
    `no-store`; the build's files keep their own caching."""
    http = signed_in(world)
    workspace = {"X-MLFLOW-WORKSPACE": "team-a"}
    for path in (
        "/ajax-api/2.0/mlflow/experiments/search?max_results=5",
        f"/ajax-api/2.0/mlflow/runs/get?run_id={world.run_id}",
        f"/ajax-api/2.0/mlflow/experiments/get?experiment_id={world.hidden}",  # refused: an error says nothing either
        "/api/2.0/fedgate/sessions",
        "/ajax-api/3.0/mlflow/workspaces",
    ):
        answer = http.get(f"{world.gateway.url}{path}", headers=workspace, timeout=30)
        assert answer.status_code in (200, 404), (path, answer.text)
        assert answer.raw.headers.getlist("Cache-Control") == ["no-store"], (path, answer.headers)
    assert search(http, world, Origin=world.gateway.url).headers["Cache-Control"] == "no-store"
    html = http.get(f"{world.gateway.url}/", timeout=30)
    script = html.text.split('src="', 1)[1].split('"', 1)[0]
    js = requests.get(f"{world.gateway.url}/{script}", timeout=30)
    assert js.raw.headers.getlist("Cache-Control") == ["public, max-age=31536000, immutable"], js.headers


def test_every_html_page_and_text_answer_names_its_charset_once(world: World) -> None:
    """The Content-Type of each page the gateway makes (its sign-in pages, errors included, MLflow's page and
    the build's HTML files, the console) and of its text answers, as it arrives: `charset` once, not twice."""
    gateway = world.gateway.url
    http = signed_in(world)
    wrong = {"token": "fgt_" + "0" * 40, "next": "/"}
    answers = {
        "sign-in": requests.get(f"{gateway}/fedgate/sign-in", timeout=30),
        "sign-in refused": requests.post(
            f"{gateway}/fedgate/sign-in/token", data=wrong, headers={"Origin": gateway}, timeout=30
        ),
        "provider error": requests.get(f"{gateway}/fedgate/sign-in/callback?state=x&error=access_denied", timeout=30),
        "resume": requests.get(f"{gateway}/fedgate/sign-in/resume", timeout=30),
        "mlflow page": http.get(f"{gateway}/", timeout=30),
        "build index": requests.get(f"{gateway}/static-files/index.html", timeout=30),
        "build index (gzip)": requests.get(
            f"{gateway}/build/index.html", headers={"Accept-Encoding": "gzip"}, timeout=30
        ),
        "trace renderer": requests.get(f"{gateway}/static-files/lib/notebook-trace-renderer/index.html", timeout=30),
        "console": http.get(f"{gateway}/fedgate/console", timeout=30),
        "health": requests.get(f"{gateway}/health", timeout=30),
        "metrics": requests.get(f"{gateway}/metrics", timeout=30),
    }
    html = {"sign-in", "sign-in refused", "provider error", "resume", "mlflow page", "build index"}
    html |= {"build index (gzip)", "trace renderer", "console"}
    for name, answer in answers.items():
        types = answer.raw.headers.getlist("Content-Type")
        assert answer.status_code in (200, 400, 401), (name, answer.status_code)
        assert len(types) == 1 and types[0].count("charset") == 1, (name, types)
        if name in html:
            assert types == ["text/html; charset=utf-8"], (name, types)


# -- the sessions API -----------------------------------------------------------------------------------


def sessions_of(http: requests.Session, world: World, **params: str) -> requests.Response:
    return http.get(
        f"{world.gateway.url}/api/2.0/fedgate/sessions",
        params=params,
        headers={"Origin": world.gateway.url},
        timeout=30,
    )


def test_a_person_lists_their_sessions_and_ends_another_whose_cookie_is_dead_at_once(world: World) -> None:
    laptop = signed_in(world, **{"User-Agent": "laptop-browser/1.0"})
    phone = signed_in(world, **{"User-Agent": "phone-browser/2.0"})
    listed = sessions_of(laptop, world)
    assert listed.status_code == 200, listed.text
    mine = {s["user_agent"]: s for s in listed.json()["sessions"]}
    assert {"laptop-browser/1.0", "phone-browser/2.0"} <= set(mine)
    assert mine["laptop-browser/1.0"]["current"] and not mine["phone-browser/2.0"]["current"]
    assert mine["phone-browser/2.0"]["ip_address"] == LOOPBACK
    assert all(s["user_name"] == world.person.name for s in listed.json()["sessions"])
    assert mine["laptop-browser/1.0"]["created_time"] <= mine["laptop-browser/1.0"]["last_used_time"]
    # Never the cookie's id, nor its hash.
    for http in (laptop, phone):
        value = http.cookies["fedgate_session"]
        assert value not in listed.text and hashlib.sha256(value.encode()).hexdigest() not in listed.text
    # The laptop ends the phone's session: the phone's very next request is refused.
    assert search(phone, world, Origin=world.gateway.url).status_code == 200
    ended = laptop.post(
        f"{world.gateway.url}/api/2.0/fedgate/sessions/end",
        json={"session_id": mine["phone-browser/2.0"]["session_id"]},
        headers={"Origin": world.gateway.url},
        timeout=30,
    )
    assert ended.status_code == 200, ended.text
    refused = search(phone, world, Origin=world.gateway.url)
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"
    assert search(laptop, world, Origin=world.gateway.url).status_code == 200
    # End every other session: the laptop's stays.
    tablet = signed_in(world, **{"User-Agent": "tablet-browser/3.0"})
    all_others = laptop.post(
        f"{world.gateway.url}/api/2.0/fedgate/sessions/end-all", json={}, headers={"Origin": world.gateway.url}
    )
    assert all_others.status_code == 200 and all_others.json()["ended"] >= 1
    assert search(tablet, world, Origin=world.gateway.url).status_code == 401
    assert [s["current"] for s in sessions_of(laptop, world).json()["sessions"]] == [True]
    # Another site cannot end a session with the person's cookie.
    cross = laptop.post(
        f"{world.gateway.url}/api/2.0/fedgate/sessions/end-all", json={}, headers={"Origin": "http://evil.example"}
    )
    assert cross.status_code == 403

    # Audited (from a queue, after the answer).
    def ended_sessions() -> list[dict[str, Any]]:
        audit = requests.get(
            f"{world.gateway.url}/api/2.0/fedgate/audit-log",
            params={"actor": world.person.name, "action": "session.end"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert audit.status_code == 200, audit.text
        return list(audit.json()["entries"])

    phones = f"session:{mine['phone-browser/2.0']['session_id']}"
    until(ended_sessions, lambda entries: any(e["target"] == phones for e in entries), "the phone's session.end")


def test_only_an_account_admin_lists_and_ends_another_users_sessions(world: World, stack: Stack) -> None:
    victim = signed_in(world, **{"User-Agent": "victim-browser/1.0"})
    other = Admin.of(stack).person(f"{unique('other')}@example.com")
    as_other = {"Authorization": f"Bearer {other.token}"}
    refused = requests.get(
        f"{world.gateway.url}/api/2.0/fedgate/sessions", params={"user_name": world.person.name}, headers=as_other
    )
    assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"
    handle = next(
        s["session_id"]
        for s in sessions_of(victim, world).json()["sessions"]
        if s["user_agent"] == "victim-browser/1.0"
    )
    hidden = requests.post(
        f"{world.gateway.url}/api/2.0/fedgate/sessions/end", json={"session_id": handle}, headers=as_other
    )
    assert hidden.status_code == 404 and hidden.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    forced = requests.post(
        f"{world.gateway.url}/api/2.0/fedgate/sessions/end-all",
        json={"user_name": world.person.name},
        headers=as_other,
    )
    assert forced.status_code == 403
    assert search(victim, world, Origin=world.gateway.url).status_code == 200
    # After an incident: an account admin sees the person's sessions and ends every one of them.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    seen = requests.get(
        f"{world.gateway.url}/api/2.0/fedgate/sessions", params={"user_name": world.person.name}, headers=admin
    )
    assert handle in {s["session_id"] for s in seen.json()["sessions"]}
    assert not any(s["current"] for s in seen.json()["sessions"])
    ended = requests.post(
        f"{world.gateway.url}/api/2.0/fedgate/sessions/end-all", json={"user_name": world.person.name}, headers=admin
    )
    assert ended.status_code == 200 and ended.json()["ended"] >= 1
    assert search(victim, world, Origin=world.gateway.url).status_code == 401


def test_no_page_of_the_gateway_can_be_framed_by_another_site(page: Any, world: World, stack: Stack) -> None:
    """Clickjacking, in Chromium. A page of another origin on the same site (another port of 127.0.0.1, as a
    sibling host of the gateway's domain would be) frames the gateway's HTML pages while the person is signed in:
    SameSite=Lax sends the session cookie into a same-site frame, and what the framed page does comes from the
    gateway's own origin, so the cross-site checks would let its clicks through. Each frame must stay empty: the
    MLflow page, the sign-in page, and the HTML files of MLflow's build (its notebook trace renderer, which shows
    a trace from its URL alone, and the build's index.html)."""
    with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace("team-a")
        mlflow.set_experiment(experiment_id=world.visible)
        with mlflow.start_span("framed") as span:
            span.set_inputs({"question": "q"})
        trace_id = span.trace_id
        mlflow.flush_trace_async_logging()
    sign_in_with_token(page, world.person.token)
    gateway = world.gateway.url
    renderer = (
        f"{gateway}/static-files/lib/notebook-trace-renderer/index.html"
        f"?trace_id={trace_id}&experiment_id={world.visible}&workspace=team-a"
    )
    targets = [renderer, f"{gateway}/static-files/index.html", f"{gateway}/build/index.html", f"{gateway}/"]
    targets.append(f"{gateway}/fedgate/sign-in")
    frames = "".join(f"<iframe src='{url}' width='600' height='300'></iframe>" for url in targets)
    # A real server on loopback (Chromium refuses a public page's frames of loopback addresses).
    with serving(f"<!doctype html><html><body>{frames}</body></html>") as attacker:
        # The page's load event waits for every frame's (a frame the browser refuses to show fires it too).
        page.goto(attacker, wait_until="load")
    shot(page, "framed-by-a-sibling-site")
    shown = [frame.url for frame in page.frames if frame.url.startswith(gateway)]
    assert shown == [], shown
    assert not any("/notebook-trace-renderer/js/" in url for url in page.urls), page.urls


@contextlib.contextmanager
def serving(document: str) -> Iterator[str]:
    """An HTML page served by a real HTTP server on a free loopback port; its URL."""
    body = document.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_sign_in_page_shows_only_the_providers_error_code_for_this_browsers_sign_in(world: World) -> None:
    """Anyone can send a person to the callback with `?error=<any words>`: the gateway's sign-in page must not
    show them as the identity provider's ("call this number"). Only an error answering this browser's own sign-in
    (its state) is shown, and only as the code the specifications define."""
    spoof = "Your account is locked. Call +1 555 0100 or sign in at https://evil.example/login"
    callback = f"{world.gateway.url}/fedgate/sign-in/callback"

    def started() -> tuple[requests.Session, str]:
        http = requests.Session()
        start = http.get(f"{world.gateway.url}/fedgate/sign-in/oidc?next=/", allow_redirects=False, timeout=30)
        assert start.status_code == 302, start.text
        return http, parse_qs(urlsplit(start.headers["location"]).query)["state"][0]

    nobody = requests.get(callback, params={"error": spoof}, timeout=30)
    assert nobody.status_code == 401 and spoof not in nobody.text and "evil.example" not in nobody.text
    assert "expired or was not started here" in nobody.text
    http, _ = started()
    wrong_state = http.get(callback, params={"error": spoof, "state": "not-the-state"}, timeout=30)
    assert wrong_state.status_code == 401 and "evil.example" not in wrong_state.text
    assert "does not belong to this sign-in" in wrong_state.text
    http, state = started()
    words = http.get(callback, params={"error": spoof, "state": state}, timeout=30)
    assert words.status_code == 401 and "evil.example" not in words.text and "refused the sign-in" in words.text
    http, state = started()
    denied = http.get(callback, params={"error": "access_denied", "state": state}, timeout=30)
    assert denied.status_code == 401 and "The identity provider said: access_denied." in denied.text


# Loads each URL in the tab's page as a script or a style sheet; what each came to: "ran" (its load event), or
# "refused" (its error event: the browser would not use it). Events, not time: the promise settles on each.
LOAD_AS = """([kind, urls]) => Promise.all(urls.map((url) => new Promise((settled) => {
    const node = document.createElement(kind === 'script' ? 'script' : 'link');
    if (kind === 'script') node.src = url; else { node.rel = 'stylesheet'; node.href = url; }
    node.onload = () => settled('ran');
    node.onerror = () => settled('refused');
    document.head.appendChild(node);
})))"""


def test_a_file_a_person_uploaded_is_no_script_or_style_sheet_of_the_gateways_pages(
    page: Any, world: World, stack: Stack
) -> None:
    """The pages' policies allow scripts and style sheets from the gateway's origin (`script-src 'self'`), and an
    artifact is a file of that origin. MLflow serves a `.mjs` or `.es` file as `text/javascript` and a `.css` file
    as `text/css`, with `nosniff`, and a browser runs such a file as a script wherever a page of the origin names
    it: markup put into MLflow's page or the console (a flaw rendering a name) would then run a person's upload
    with the viewer's session, whatever the policy. Every download answers with a type no page runs or applies."""
    with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace("team-a")
        with mlflow.start_run(experiment_id=world.visible, run_name="uploaded-code") as run:
            mlflow.log_text("window.fedgateUploaded = (window.fedgateUploaded || 0) + 1;", "payload.mjs")
            mlflow.log_text("window.fedgateUploaded = (window.fedgateUploaded || 0) + 1;", "payload.es")
            mlflow.log_text("#fedgate-user, #fg-user { visibility: hidden }", "payload.css")
    files = f"/get-artifact?run_uuid={run.info.run_id}&path="
    scripts = [f"{files}payload.mjs", f"{files}payload.es"]
    for name in ("payload.mjs", "payload.es", "payload.css"):
        answer = requests.get(
            f"{world.gateway.url}{files}{name}", headers={"Authorization": f"Bearer {world.person.token}"}, timeout=30
        )
        assert answer.status_code == 200 and answer.text.startswith(("window.", "#fedgate"))  # the file, readable
        assert answer.headers["content-type"].startswith("text/plain"), (name, answer.headers["content-type"])
        assert answer.headers["x-content-type-options"] == "nosniff"
    sign_in_with_token(page, world.person.token)
    for where, marker in (("/", "#fedgate-user"), ("/fedgate/console", "#fg-user")):
        page.goto(where)
        page.wait_for_selector(marker)
        assert page.evaluate(LOAD_AS, ["script", scripts]) == ["refused", "refused"], where
        assert page.evaluate("window.fedgateUploaded") is None
        assert page.evaluate(LOAD_AS, ["style", [f"{files}payload.css"]]) == ["refused"], where
        assert page.locator(marker).is_visible()
