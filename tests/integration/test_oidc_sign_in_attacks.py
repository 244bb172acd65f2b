"""Browser sign-in at the identity provider, under attack: state, nonce, the ID token, the code, `next`, cookies.

A real gateway process configured as an OIDC client of the local issuer (tests/support/oidc.py), which signs
real RS256 JWTs, checks PKCE and redirect URIs, and lets a test replace the ID token its token endpoint sends.
Protocol-level flows use `requests` sessions (one per browser); what a person's browser does with cookies and
redirects is checked in a real headless Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import requests
from joserfc.jwk import RSAKey

from gateway.devstack import LOOPBACK, GatewayProcess, free_port
from tests.conftest import GATEWAY_ENV, Stack
from tests.support.browser import new_tab
from tests.support.identity import Admin, Person, unique
from tests.support.oidc import OidcIssuer
from tests.support.waiting import until

pytestmark = pytest.mark.integration
CLIENT_ID = "fedgate-ui-attacks"
CLIENT_SECRET = "attacks-client-secret-9c2"
PASSWORD = "open sesame, twice"
TIMEOUT = 30
CALLBACK = "/fedgate/sign-in/callback"


@dataclass
class Site:
    gateway: GatewayProcess
    issuer: OidcIssuer
    victim: str  # e-mail of a person at the issuer
    attacker: str  # e-mail of another person at the issuer
    person: Person  # a user with a personal access token
    database_url: str

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def redirect_uri(self) -> str:
        return self.url + CALLBACK


@pytest.fixture(scope="module")
def site(stack: Stack, workdir: Path) -> Iterator[Site]:
    issuer = OidcIssuer().start()
    gateway: GatewayProcess | None = None
    try:
        port = free_port()
        issuer.register(CLIENT_ID, f"http://{LOOPBACK}:{port}{CALLBACK}", CLIENT_SECRET)
        issuer.register(CLIENT_ID, f"http://{LOOPBACK}:{port}/elsewhere")  # a second URI of the same client
        env = {
            **GATEWAY_ENV,
            "FEDGATE_OIDC_ISSUER": issuer.url,
            "FEDGATE_OIDC_AUDIENCE": "fedgate",
            "FEDGATE_OIDC_CLIENT_ID": CLIENT_ID,
            "FEDGATE_OIDC_CLIENT_SECRET_ENV": "ATTACKS_CLIENT_SECRET",
            "ATTACKS_CLIENT_SECRET": CLIENT_SECRET,
        }
        gateway = GatewayProcess(workdir / "fedgate.toml", env, port=port).start()
        suite = unique("oidc-attack")
        victim, attacker = f"{suite}-victim@example.com", f"{suite}-mallory@example.com"
        issuer.person(victim, PASSWORD)
        issuer.person(attacker, PASSWORD)
        person = Admin.of(stack).person(f"{suite}-pat@example.com")
        yield Site(gateway, issuer, victim, attacker, person, stack.database_url)
    finally:
        if gateway is not None:
            gateway.stop()
        issuer.stop()


@pytest.fixture
def hooked(site: Site) -> Iterator[OidcIssuer]:
    """The issuer, its ID token hook reset after the test."""
    yield site.issuer
    site.issuer.id_token_hook = None


# -- the flow, one step at a time -------------------------------------------------------------------------


def start(site: Site, http: requests.Session, next_path: str = "/") -> dict[str, str]:
    """Start a sign-in in this browser; the authorization request's parameters the gateway sent it with."""
    answer = http.get(f"{site.url}/fedgate/sign-in/oidc", params={"next": next_path}, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(site.issuer.url + "/authorize?"), location
    return query_of(location)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def authorize(site: Site, params: dict[str, str], email: str) -> str:
    """The person signs in at the issuer; the callback URL it sends the browser to (not followed)."""
    answer = requests.post(
        f"{site.issuer.url}/authorize",
        data={**params, "username": email, "password": PASSWORD},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


def code_of(callback_url: str) -> str:
    return parse_qs(urlsplit(callback_url).query)["code"][0]


def follow(http: requests.Session, url: str) -> requests.Response:
    return http.get(url, allow_redirects=False, timeout=TIMEOUT)


def who(site: Site, http: requests.Session) -> str | None:
    """The user this browser's session cookie signs in, or None."""
    answer = http.get(f"{site.url}/api/2.0/preview/scim/v2/Me", timeout=TIMEOUT)
    return str(answer.json()["userName"]) if answer.status_code == 200 else None


def signed_in_by_provider(site: Site, email: str, next_path: str = "/") -> tuple[requests.Session, requests.Response]:
    http = requests.Session()
    answer = follow(http, authorize(site, start(site, http, next_path), email))
    assert answer.status_code == 303, answer.text
    return http, answer


def refused(answer: requests.Response, words: str) -> None:
    """A failed sign-in: the sign-in page with 401 and the reason, no session cookie, the sign-in cookie cleared."""
    assert answer.status_code == 401, (answer.status_code, answer.text[:300])
    assert words in answer.text, answer.text[:2000]
    assert "fedgate_session=" not in answer.headers.get("set-cookie", "")


def tokens_sent(issuer: OidcIssuer, code: str) -> int:
    return sum(1 for form in issuer.token_requests if form.get("code") == code)


# -- state: whose sign-in is this? ------------------------------------------------------------------------


def test_a_callback_without_this_browsers_state_signs_nobody_in_and_spends_no_code(site: Site) -> None:
    """A good code, delivered to a browser with a sign-in under way but without that sign-in's state."""
    code = code_of(authorize(site, start(site, requests.Session()), site.victim))
    for state in (None, "", "x" * 43):
        http = requests.Session()
        params = start(site, http)
        query = {"code": code} if state is None else {"code": code, "state": state}
        answer = http.get(site.redirect_uri, params=query, allow_redirects=False, timeout=TIMEOUT)
        refused(answer, "does not belong to this sign-in (state)")
        assert who(site, http) is None and state != params["state"]
    # The code never reached the token endpoint: no answer of the gateway's spent it.
    assert tokens_sent(site.issuer, code) == 0


def test_an_attackers_callback_in_the_victims_browser_does_not_sign_the_victim_in_as_the_attacker(
    site: Site,
) -> None:
    """Login CSRF: the attacker signs in at the provider as themself, stops before the callback, and gets the
    victim's browser to load that callback URL. Neither a browser without a sign-in under way, nor one in the
    middle of its own, is signed in by it; the URL still works in the attacker's browser (it was a good one)."""
    attacker = requests.Session()
    evil_url = authorize(site, start(site, attacker), site.attacker)
    idle_victim = requests.Session()
    refused(follow(idle_victim, evil_url), "expired or was not started here")
    busy_victim = requests.Session()
    start(site, busy_victim)
    refused(follow(busy_victim, evil_url), "does not belong to this sign-in (state)")
    assert who(site, idle_victim) is None and who(site, busy_victim) is None
    assert tokens_sent(site.issuer, code_of(evil_url)) == 0
    own = follow(attacker, evil_url)
    assert own.status_code == 303, own.text
    assert who(site, attacker) == site.attacker


def test_in_chromium_an_attackers_callback_opened_from_another_site_signs_nobody_in(tab: Any, site: Site) -> None:
    """Login CSRF as a person's browser meets it: mid-way through their own sign-in (at the provider's page, the
    SameSite=Lax sign-in cookie held), a page of another site sends the browser to the attacker's callback URL.
    The top-level navigation carries the sign-in cookie, and the state refuses it."""
    attacker = requests.Session()
    evil_url = authorize(site, start(site, attacker), site.attacker)
    tab.goto("/fedgate/sign-in")
    tab.click("#sign-in-oidc")
    tab.wait_for_selector("#username")  # the provider's page: this browser's sign-in is under way
    trap = f"<script>location.href = {json.dumps(evil_url)}</script>"
    tab.route("http://attacker.test/**", lambda route: route.fulfill(body=trap, content_type="text/html"))
    with tab.expect_response(lambda r: r.url.startswith(site.redirect_uri)) as answer:
        tab.goto("http://attacker.test/")
    assert answer.value.status == 401
    tab.wait_for_selector("text=does not belong to this sign-in (state)")
    assert not [c for c in tab.context.cookies() if c["name"] == "fedgate_session"]
    assert tokens_sent(site.issuer, code_of(evil_url)) == 0


def test_an_attempt_is_used_once_and_not_after_it_timed_out(site: Site) -> None:
    http = requests.Session()
    params = start(site, http)
    kept = str(http.cookies["fedgate_sign_in"])
    url = authorize(site, params, site.victim)
    assert follow(http, url).status_code == 303
    assert who(site, http) == site.victim and "fedgate_sign_in" not in http.cookies
    # The browser loads the callback again (back button, reload, a copied URL): the attempt is used up.
    refused(follow(http, url), "expired or was not started here")
    replay = requests.Session()
    replay.cookies.set("fedgate_sign_in", kept)  # a browser that kept the sign-in cookie the gateway cleared
    refused(follow(replay, url), "expired or was not started here")
    assert tokens_sent(site.issuer, code_of(url)) == 1 and who(site, replay) is None
    # An attempt older than its ten minutes: its row says so (set back in time in the database).
    late = requests.Session()
    params = start(site, late)
    url = authorize(site, params, site.victim)

    async def expire() -> None:
        connection = await asyncpg.connect(site.database_url)
        try:
            done = await connection.execute(
                "UPDATE sign_in_attempts SET expires_at = now() - interval '1 second' WHERE state = $1",
                params["state"],
            )
            assert done == "UPDATE 1", done
        finally:
            await connection.close()

    # Playwright's sync API keeps an event loop running in this thread while the module's browser is open (its
    # Chromium tests may run first): the row is changed from a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, expire()).result()
    refused(follow(late, url), "expired or was not started here")
    assert who(site, late) is None and tokens_sent(site.issuer, code_of(url)) == 0


# -- the code: once, for this redirect URI, with this browser's verifier -----------------------------------


def test_a_code_for_another_redirect_uri_or_another_browsers_verifier_is_refused(site: Site) -> None:
    # Issued for the client's other redirect URI, delivered to the callback with this browser's own state.
    http = requests.Session()
    params = start(site, http)
    elsewhere = authorize(site, {**params, "redirect_uri": f"{site.url}/elsewhere"}, site.victim)
    assert elsewhere.startswith(f"{site.url}/elsewhere?")
    code = code_of(elsewhere)
    answer = http.get(site.redirect_uri, params={"code": code, "state": params["state"]}, allow_redirects=False)
    refused(answer, "refused the sign-in")
    assert tokens_sent(site.issuer, code) == 1 and who(site, http) is None
    # Code injection: a code issued to the victim's sign-in (the victim's PKCE challenge), taken to the
    # attacker's own browser and delivered with the attacker's state. The attacker's verifier does not fit.
    victim = requests.Session()
    victim_params = start(site, victim)
    attacker = requests.Session()
    attacker_params = start(site, attacker)
    stolen = code_of(authorize(site, victim_params, site.victim))
    answer = attacker.get(
        site.redirect_uri, params={"code": stolen, "state": attacker_params["state"]}, allow_redirects=False
    )
    refused(answer, "refused the sign-in")
    assert who(site, attacker) is None
    verifier = site.issuer.token_requests[-1]["code_verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == attacker_params["code_challenge"] != victim_params["code_challenge"]


# -- the ID token ---------------------------------------------------------------------------------------


def b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def hs256_with_public_key(issuer: OidcIssuer, claims: dict[str, Any]) -> str:
    """An HMAC "signed" with the provider's public key (PEM), the classic key-confusion forgery."""
    secret = issuer.key.as_pem(private=False)
    head = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid})}.{b64(claims)}"
    mac = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def another_key(claims: dict[str, Any], kid: str) -> str:
    from joserfc import jwt

    key = RSAKey.generate_key(2048, parameters={"kid": kid})
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, key, algorithms=["RS256"])


def tampered(token: str, claims: dict[str, Any]) -> str:
    """The token's header and signature around other claims."""
    head, _, signature = token.split(".")
    return f"{head}.{b64(claims)}.{signature}"


def without(claims: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in names}


ID_TOKEN_ATTACKS: dict[str, tuple[Callable[[OidcIssuer, dict[str, Any]], str | None], str]] = {
    "nonce of another sign-in": (lambda i, c: i.sign({**c, "nonce": "n-" + uuid.uuid4().hex}), "(nonce)"),
    "no nonce": (lambda i, c: i.sign(without(c, "nonce")), "(nonce)"),
    "nonce not a string": (lambda i, c: i.sign({**c, "nonce": [c["nonce"]]}), "(nonce)"),
    "another client's audience": (lambda i, c: i.sign({**c, "aud": "someone-else"}), "(audience)"),
    "the API's audience": (lambda i, c: i.sign({**c, "aud": "fedgate"}), "(audience)"),
    "another client's azp": (lambda i, c: i.sign({**c, "azp": "someone-else"}), "(azp)"),
    "several audiences, no azp": (lambda i, c: i.sign({**c, "aud": [c["aud"], "someone-else"]}), "(azp)"),
    "several audiences, azp null": (lambda i, c: i.sign({**c, "aud": [c["aud"], "x"], "azp": None}), "(azp)"),
    "another issuer": (lambda i, c: i.sign({**c, "iss": "http://127.0.0.1:1/evil"}), "(issuer)"),
    "expired": (lambda i, c: i.sign({**c, "exp": int(time.time()) - 600}), "expired"),
    "no exp": (lambda i, c: i.sign(without(c, "exp")), "lacks required claims"),
    "alg none": (lambda i, c: unsigned(c), "algorithm"),
    "HS256 with the public key": (hs256_with_public_key, "algorithm"),
    "an unknown kid": (lambda i, c: another_key(c, "kid-nobody-publishes"), "key the identity provider does not"),
    "the provider's kid, another key": (lambda i, c: another_key(c, i.kid), "signature is not valid"),
    "a tampered payload": (lambda i, c: tampered(i.sign(c), {**c, "email": "boss@example.com"}), "signature"),
    "an access token's type": (lambda i, c: i.sign(c, {"typ": "at+jwt"}), "unexpected type"),
    "no email_verified": (lambda i, c: i.sign(without(c, "email_verified")), "not verified"),
    "email_verified false": (lambda i, c: i.sign({**c, "email_verified": False}), "not verified"),
    "email_verified a string": (lambda i, c: i.sign({**c, "email_verified": "true"}), "not verified"),
    "no id_token": (lambda i, c: None, "sent no ID token"),
    "an empty id_token": (lambda i, c: "", "malformed"),
}


@pytest.mark.parametrize("attack", list(ID_TOKEN_ATTACKS))
def test_an_id_token_that_does_not_answer_this_sign_in_signs_nobody_in(
    site: Site, hooked: OidcIssuer, attack: str
) -> None:
    forge, words = ID_TOKEN_ATTACKS[attack]
    hooked.id_token_hook = lambda claims: forge(hooked, claims)
    http = requests.Session()
    params = start(site, http)
    answer = follow(http, authorize(site, params, site.victim))
    refused(answer, words)
    assert who(site, http) is None
    # The same browser, with the provider's own ID token, signs in: the refusal was the token's doing.
    hooked.id_token_hook = None
    http, _ = signed_in_by_provider(site, site.victim)
    assert who(site, http) == site.victim


def test_an_id_token_for_several_audiences_signs_in_only_with_this_client_as_its_authorized_party(
    site: Site, hooked: OidcIssuer, stack: Stack
) -> None:
    """OIDC Core 3.1.3.7: an ID token the provider also addressed to another client proves a sign-in here only
    when `azp` names this client. Refused without it, audited as every refused sign-in is."""
    several = [CLIENT_ID, "another-client-of-the-provider"]
    hooked.id_token_hook = lambda claims: hooked.sign({**claims, "aud": several})
    http = requests.Session()
    request_id = "azp-" + uuid.uuid4().hex
    answer = http.get(
        authorize(site, start(site, http), site.victim),
        headers={"X-Request-Id": request_id},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    refused(answer, "names several audiences but not this client as its authorized party (azp)")
    assert who(site, http) is None

    def denials() -> list[dict[str, Any]]:
        log = stack.http().get(
            f"{stack.url}/api/2.0/fedgate/audit-log",
            params={"max_results": 1000, "actor": "anonymous", "action": "ui.sign_in"},
            timeout=TIMEOUT,
        )
        assert log.status_code == 200, log.text
        return [row for row in log.json()["entries"] if row["request_id"] == request_id]

    (row,) = until(denials, bool, "the refused sign-in's audit row")
    assert row["outcome"] == "denied" and "(azp)" in row["details"]["reason"], row
    # The same audiences with this client as the authorized party: the person signs in.
    hooked.id_token_hook = lambda claims: hooked.sign({**claims, "aud": several, "azp": CLIENT_ID})
    http, _ = signed_in_by_provider(site, site.victim)
    assert who(site, http) == site.victim


# -- cookies ----------------------------------------------------------------------------------------------


def flags(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")]
    found = {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else "") for p in parts[1:]}
    found["name"] = parts[0].split("=", 1)[0]
    return found


def set_cookies(answer: requests.Response) -> list[str]:
    return list(answer.raw.headers.getlist("set-cookie"))


def test_the_sign_in_and_session_cookies_are_httponly_lax_host_only_and_secure_behind_https(
    site: Site, behind: Behind
) -> None:
    http = requests.Session()
    started = http.get(f"{site.url}/fedgate/sign-in/oidc", allow_redirects=False, timeout=TIMEOUT)
    (sign_in,) = set_cookies(started)
    url = authorize(
        site, {k: v[0] for k, v in parse_qs(urlsplit(started.headers["location"]).query).items()}, site.victim
    )
    finished = follow(http, url)
    assert finished.status_code == 303
    cookies = {flags(c)["name"]: flags(c) for c in set_cookies(finished)}
    assert set(cookies) == {"fedgate_session", "fedgate_sign_in"}
    assert cookies["fedgate_sign_in"]["max-age"] == "0"  # the attempt's cookie is cleared with its use
    for made in (flags(sign_in), cookies["fedgate_session"]):
        assert "httponly" in made and made["samesite"].lower() == "lax" and made["path"] == "/", made
        assert "domain" not in made and "secure" not in made, made  # host-only; plain http here
        assert 0 < int(made["max-age"]) <= 12 * 3600, made
    # Behind a TLS proxy (ui.public_url https): Secure, and the __Host- prefix no other host can set.
    attempt, params = started_behind(behind)
    assert params["redirect_uri"] == behind.public + CALLBACK
    sign_in = attempt.set_cookie
    url = authorize(site, params, site.victim).replace(behind.public, behind.url)
    # requests would not send a Secure cookie over http: the proxy's leg is plain http, so send it by hand.
    held = sign_in.split(";")[0]
    finished = requests.get(url, headers={"Cookie": held}, allow_redirects=False, timeout=TIMEOUT)
    assert finished.status_code == 303, finished.text
    cookies = {flags(c)["name"]: flags(c) for c in set_cookies(finished)}
    assert set(cookies) == {"__Host-fedgate_session", "__Host-fedgate_sign_in"}
    for made in (flags(sign_in), cookies["__Host-fedgate_session"]):
        assert made["name"].startswith("__Host-") and "secure" in made and made["path"] == "/", made
        assert "domain" not in made and "httponly" in made and made["samesite"].lower() == "lax", made


@dataclass
class Behind:
    """The gateway behind a TLS proxy: `ui.public_url` is https, the proxy's leg to it plain http."""

    gateway: GatewayProcess
    public: str  # the https origin people open

    @property
    def url(self) -> str:
        return self.gateway.url


@pytest.fixture(scope="module")
def behind(site: Site) -> Iterator[Behind]:
    port = free_port()
    public = f"https://{LOOPBACK}:{port}"
    site.issuer.register(CLIENT_ID, public + CALLBACK)
    env = {
        **GATEWAY_ENV,
        "FEDGATE_UI_PUBLIC_URL": public,
        "FEDGATE_OIDC_ISSUER": site.issuer.url,
        "FEDGATE_OIDC_AUDIENCE": "fedgate",
        "FEDGATE_OIDC_CLIENT_ID": CLIENT_ID,
        "FEDGATE_OIDC_CLIENT_SECRET_ENV": "ATTACKS_CLIENT_SECRET",
        "ATTACKS_CLIENT_SECRET": CLIENT_SECRET,
    }
    gateway = GatewayProcess(site.gateway.config_path, env, port=port).start()
    try:
        yield Behind(gateway, public)
    finally:
        gateway.stop()


@dataclass
class HostCookie:
    set_cookie: str  # the Set-Cookie line as the gateway sent it

    @property
    def value(self) -> str:
        return self.set_cookie.split(";")[0].partition("=")[2]


def started_behind(behind: Behind) -> tuple[HostCookie, dict[str, str]]:
    """A sign-in started at the gateway behind https: its `__Host-` attempt cookie and the authorization request."""
    started = requests.get(f"{behind.url}/fedgate/sign-in/oidc", allow_redirects=False, timeout=TIMEOUT)
    assert started.status_code == 302, started.text
    (sign_in,) = set_cookies(started)
    assert flags(sign_in)["name"] == "__Host-fedgate_sign_in", sign_in
    return HostCookie(sign_in), query_of(started.headers["location"])


def signed_in_behind(site: Site, behind: Behind, email: str) -> str:
    """The `__Host-fedgate_session` id of a sign-in at the provider, behind https."""
    attempt, params = started_behind(behind)
    url = authorize(site, params, email).replace(behind.public, behind.url)
    finished = requests.get(
        url, headers={"Cookie": f"__Host-fedgate_sign_in={attempt.value}"}, allow_redirects=False, timeout=TIMEOUT
    )
    assert finished.status_code == 303, finished.text
    (session,) = [c for c in set_cookies(finished) if flags(c)["name"] == "__Host-fedgate_session"]
    return HostCookie(session).value


class SiblingHost:
    """Another host of the gateway's site on plain http, which sets whatever cookie it likes, byte for byte.
    Another port of the gateway's address is one: cookies do not tell ports apart."""

    def __init__(self) -> None:
        self.planting: tuple[str, str] = ("", "")
        sibling = self

        class Planter(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name, value = sibling.planting
                self.send_response(200)
                self.send_header("Set-Cookie", f"{name}={value}; Path=/")  # written as latin-1: raw bytes
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"planted")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, free_port()), Planter)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def plant(self, tab: Any, name: str, value: str) -> None:
        """The browser of `tab` visits this host, which sets a cookie `name` (a fresh context: no other)."""
        tab.context.clear_cookies()
        self.planting = (name, value)
        tab.goto(f"http://{LOOPBACK}:{self.server.server_port}/")
        assert [c["value"] for c in tab.context.cookies()] == [value], (name, tab.context.cookies())

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def sibling() -> Iterator[SiblingHost]:
    host = SiblingHost()
    try:
        yield host
    finally:
        host.stop()


def test_in_chromium_a_sibling_hosts_look_alikes_of_the_host_cookies_are_never_read_behind_https(
    chromium: Any, site: Site, behind: Behind, sibling: SiblingHost
) -> None:
    """Behind https the gateway reads only `__Host-` cookies, which no other host can set. A plain-http sibling
    host could set one whose name begins with a byte before the prefix (`\x85__Host-fedgate_session`): to
    Chromium not a prefixed name, so held to none of its rules, and sent back byte for byte; the gateway, which
    trimmed names with Python's `strip()` (dropping U+0085 and U+00A0), read it as its own. The browser was then
    signed in as whoever planted the session, or, with a planted sign-in attempt, finished the planter's sign-in
    at the provider (login CSRF). The twins without the prefix are never read either."""
    planted = signed_in_behind(site, behind, site.attacker)
    with new_tab(chromium, behind.url) as tab:
        for name in ("\x85__Host-fedgate_session", "\xa0__Host-fedgate_session", "fedgate_session"):
            sibling.plant(tab, name, planted)
            me = tab.goto("/api/2.0/preview/scim/v2/Me")
            assert me is not None and me.status == 401, (repr(name), me and me.text())
            assert site.attacker not in me.text()
        for name in ("\x85__Host-fedgate_sign_in", "\xa0__Host-fedgate_sign_in", "fedgate_sign_in"):
            # The attacker's own sign-in at the provider, stopped before its callback: its attempt and code.
            attempt, params = started_behind(behind)
            callback = authorize(site, params, site.attacker).replace(behind.public, behind.url)
            sibling.plant(tab, name, attempt.value)
            answer = tab.goto(callback)
            assert answer is not None and answer.status == 401, (repr(name), answer and answer.url)
            assert "was not started here" in answer.text()
            assert tokens_sent(site.issuer, code_of(callback)) == 0  # the attacker's code went nowhere


# -- next: only a path of this gateway ----------------------------------------------------------------------

OFF_SITE = (
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "https:evil.example",
    "https://evil.example",
    "HTTPS://evil.example",
    "javascript:alert(document.domain)",
    "JaVaScRiPt:alert(1)",
    "/\t/evil.example",
    "/\n/evil.example",
    " /\\evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%5C%5Cevil.example",
    "/%09/evil.example",
    "/.//evil.example",
    "/..//evil.example",
    "\u3002//evil.example",
    "/\uff0f\uff0fevil.example",
    "/\u2215\u2215evil.example",
    "/\r\nX-Injected: 1",
    "/%0d%0aX-Injected:%201",
    "/\u010d\u010aX-Injected: 1",  # latin-1 CR LF look-alikes, the high bytes of a header
)


def test_next_after_a_sign_in_at_the_provider_stays_on_this_gateway(site: Site) -> None:
    for target in (*OFF_SITE[:6], "/\r\nX-Injected: 1", "/#/experiments/1?x=%2F%2Fevil"):
        _, answer = signed_in_by_provider(site, site.victim, target)
        location = answer.headers["location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\")), (target, location)
        assert "x-injected" not in {k.lower() for k in answer.headers}, (target, answer.headers)
    assert location == "/#/experiments/1?x=%2F%2Fevil"  # a path of the gateway is kept as it was


@pytest.fixture
def tab(chromium: Any, site: Site) -> Iterator[Any]:
    with new_tab(chromium, site.url) as page:
        yield page


def test_in_chromium_next_never_takes_the_browser_off_the_gateway(tab: Any, site: Site) -> None:
    """The person's browser follows the gateway's 303 after a token sign-in: whatever `next` the form posted
    (set in the page, as a script of the gateway's origin or a tampered form could), the browser ends up on the
    gateway. Chromium, not a reading of Location, decides what `/%5Cevil` or `/.//evil` mean."""
    gateway = urlsplit(site.url).netloc
    tab.route("http://evil.example/**", lambda route: route.fulfill(body="evil", content_type="text/plain"))
    for target in OFF_SITE:
        tab.context.clear_cookies()
        tab.goto("/fedgate/sign-in")
        tab.fill("#token", site.person.token)
        tab.eval_on_selector("input[name=next]", "(field, value) => { field.value = value }", target)
        with tab.expect_navigation():
            tab.click("#sign-in-token")
        landed = urlsplit(tab.url)
        assert landed.netloc == gateway and landed.scheme == "http", (target, tab.url)
        assert not any(urlsplit(u).hostname == "evil.example" for u in tab.urls), (target, tab.urls)


# -- session cookies the browser brings: replaced at sign-in, all ended at sign-out ---------------------------


def session_alive(site: Site, value: str) -> bool:
    http = requests.Session()
    http.cookies.set("fedgate_session", value)
    return who(site, http) is not None


def test_sign_in_ends_every_session_the_browser_brings_and_never_keeps_a_planted_one(site: Site) -> None:
    # A person signed in; a sibling host (plain http: no __Host-) plants a second cookie of the same name,
    # say its own account's session, with a narrower path. Both reach /fedgate/...
    http, _ = signed_in_by_provider(site, site.victim)
    own = str(http.cookies["fedgate_session"])
    planted_http, _ = signed_in_by_provider(site, site.attacker)
    planted = str(planted_http.cookies["fedgate_session"])
    http.cookies.set("fedgate_session", planted, domain=LOOPBACK, path="/fedgate")
    # The person signs in again: neither id the browser brought is signed in, neither lives on.
    again = follow(http, authorize(site, start(site, http), site.victim))
    assert again.status_code == 303
    fresh = str(again.cookies["fedgate_session"])
    assert fresh not in (own, planted)
    assert not session_alive(site, own) and not session_alive(site, planted)
    assert session_alive(site, fresh)


def test_sign_out_ends_every_session_the_browser_presents_in_chromium(tab: Any, site: Site) -> None:
    """Reproduced: on plain http a planted second session cookie (a sibling host's, or one with a narrower path)
    made the sign-out's cookie ambiguous, so it ended nothing and the person's session lived on server-side
    after they signed out. Sign-out now ends every session id the browser presents with it."""
    tab.goto("/fedgate/sign-in")
    tab.click("#sign-in-oidc")
    tab.fill("#username", site.victim)
    tab.fill("#password", PASSWORD)
    tab.click("#submit")
    tab.wait_for_selector("#fedgate-sign-out")
    assert tab.evaluate("document.cookie") == ""  # HttpOnly: no script of the page reads the session
    (own,) = [c["value"] for c in tab.context.cookies() if c["name"] == "fedgate_session"]
    assert session_alive(site, own)
    planted = "p" + uuid.uuid4().hex[:42]  # a well-formed id that names nothing
    tab.context.add_cookies([{"name": "fedgate_session", "value": planted, "domain": LOOPBACK, "path": "/fedgate"}])
    logouts = len(site.issuer.logouts)
    tab.click("#fedgate-sign-out")  # the bar's button: a POST to /fedgate/sign-out, which gets both cookies
    tab.wait_for_url(f"{site.url}/fedgate/sign-in")
    assert not session_alive(site, own)
    assert len(site.issuer.logouts) == logouts + 1  # signed out at the provider too
    assert [c["value"] for c in tab.context.cookies() if c["name"] == "fedgate_session"] == [planted]


def test_sign_out_over_http_ends_every_session_presented(site: Site) -> None:
    http = requests.Session()
    answer = http.post(
        f"{site.url}/fedgate/sign-in/token",
        data={"token": site.person.token},
        headers={"Origin": site.url},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 303
    own = str(http.cookies["fedgate_session"])
    other, _ = signed_in_by_provider(site, site.attacker)
    planted = str(other.cookies["fedgate_session"])
    http.cookies.set("fedgate_session", planted, domain=LOOPBACK, path="/fedgate")
    out = http.post(f"{site.url}/fedgate/sign-out", headers={"Origin": site.url}, allow_redirects=False)
    assert out.status_code == 303, out.text
    assert not session_alive(site, own) and not session_alive(site, planted)
    # A sign-out another site posts still ends nothing, however many cookies it carries.
    http, _ = signed_in_by_provider(site, site.victim)
    own = str(http.cookies["fedgate_session"])
    http.cookies.set("fedgate_session", "q" * 43, domain=LOOPBACK, path="/fedgate")
    assert http.post(f"{site.url}/fedgate/sign-out", headers={"Origin": "http://evil.example"}).status_code == 403
    assert session_alive(site, own)
