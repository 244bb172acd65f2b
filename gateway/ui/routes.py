"""The web UI's routes: MLflow's page and files, UI telemetry, and the browser sign-in and sign-out.

MLflow's page (`/`) needs a signed-in browser and sends any other to the sign-in page; its files are the
public MLflow build. Sign-in takes a personal access token (a form post) or goes through the identity
provider (authn/sign_in.py); either way a new session is made (authn/sessions.py) and its id set in an
HttpOnly, SameSite=Lax cookie (Secure, `__Host-`, behind https). Sign-out ends the session for every
replica and, after an identity provider's sign-in, at the provider too. Every form post must come from
the gateway's own pages (authn/browser.py).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler

from gateway.audit.trail import AuditTrail, entry
from gateway.authn.browser import BrowserOrigin, cookie_values, local_path, session_value
from gateway.authn.middleware import DenialLimiter
from gateway.authn.service import Authenticator
from gateway.authn.sessions import BrowserSessions, SignInAttempt, well_formed
from gateway.authn.sign_in import CALLBACK_PATH, ProviderSignIn
from gateway.core.errors import Unauthenticated
from gateway.core.principal import Principal
from gateway.core.route_table import UI_BUILD_FILES, UI_PAGE, UI_STATIC_FILES, UI_TELEMETRY_GET, UI_TELEMETRY_POST
from gateway.observability.access import REQUEST_ID_KEY
from gateway.observability.metrics import RATE_LIMITED
from gateway.principals.tokens import TOKEN_PREFIX
from gateway.ui.pages import (
    APP_HEADERS,
    OIDC_SIGN_IN_PATH,
    PAGE_HEADERS,
    RESUME_HEADERS,
    RESUME_PATH,
    SIGN_IN_PATH,
    SIGN_OUT_PATH,
    TOKEN_SIGN_IN_PATH,
    resume_page,
    sign_in_page,
    with_bar,
)
from gateway.ui.static import UiBuild, app_policy

SIGN_IN_ACCESS = "anyone: the browser sign-in and sign-out of the web UI"
# Litestar adds `; charset=utf-8` to a text media type itself (naming it here too sent it twice).
HTML = "text/html"
TELEMETRY_OFF = {"disable_ui_telemetry": True, "disable_ui_events": [], "ui_rollout_percentage": 0}
# What an anonymous caller may make the gateway read: the sign-in form's body (a token and a path) and nothing
# else. Larger is refused (413, the sign-in page again) before it is read when its length says so, else once
# that much has come; the app's `max_json_body_bytes` (32 MB) is for authenticated API calls.
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 8  # the page posts two (`next`, `token`)
UNREADABLE_FORM = "The sign-in form could not be read; sign in from this page."
OVERSIZED_FORM = "The sign-in form is larger than this page ever posts; sign in from this page."
NOT_A_PERSON = (
    "This is a service principal's token. A service principal is not a person and cannot sign in to the web UI; "
    "sign in with a token of your own user."
)
NOT_A_PERSON_REASON = "a service principal's token"
# The shape of the error codes of OAuth 2.0 and OpenID Connect (`access_denied`, `login_required`).
ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class WebUi:
    """What the UI's handlers share: the build, sessions, sign-in, the browser's origin and the audit trail."""

    def __init__(
        self,
        build: UiBuild,
        authenticator: Authenticator,
        sessions: BrowserSessions,
        browser: BrowserOrigin,
        audit: AuditTrail,
        provider: ProviderSignIn | None = None,
        provider_name: str = "",
        limiter: DenialLimiter | None = None,
    ) -> None:
        self.build = build
        self.authenticator = authenticator
        self.sessions = sessions
        self.browser = browser
        self.audit = audit
        self.provider = provider
        self.provider_name = provider_name
        self.limiter = limiter  # failed sign-ins spend the address's anonymous-denial budget, as 401s do
        self._index = build.index_html()
        # The page's policy, its inline scripts' hashes read from the file served (the bar adds no script).
        self._headers = {**APP_HEADERS, "Content-Security-Policy": app_policy(self._index)}

    # -- pages ------------------------------------------------------------------------------------------

    def page(self, next_path: str, error: str | None = None, status: int = 200) -> Response[str]:
        provider = self.provider_name if self.provider is not None else None
        body = sign_in_page(next_path, provider=provider, error=error)
        return Response(body, status_code=status, media_type=HTML, headers=PAGE_HEADERS)

    def redirect(self, location: str, *cookies: Cookie) -> Response[str]:
        return Response(
            "", status_code=303, headers={"Location": location, "Cache-Control": "no-store"}, cookies=list(cookies)
        )

    def session_cookie(self, scope: Mapping[str, Any], value: str, expires_at: datetime) -> Cookie:
        max_age = max(0, int((expires_at - datetime.now(UTC)).total_seconds()))
        return self._cookie(scope, self.browser.session_cookie(scope), value, max_age)

    def _cookie(self, scope: Mapping[str, Any], name: str, value: str, max_age: int) -> Cookie:
        return Cookie(
            key=name,
            value=value,
            max_age=max_age,
            path="/",
            secure=self.browser.secure(scope),
            httponly=True,
            samesite="lax",
        )

    def cleared(self, scope: Mapping[str, Any], name: str) -> Cookie:
        return self._cookie(scope, name, "", 0)

    def note(self, request: Request[Any, Any, Any], actor: str, action: str, outcome: str, reason: str = "") -> None:
        details = {"client": str((request.scope.get("client") or ("",))[0])}
        if reason:
            details["reason"] = reason
        request_id = str(request.scope.get(REQUEST_ID_KEY, ""))  # type: ignore[call-overload,unused-ignore]
        self.audit.record(entry(actor, action, SIGN_IN_PATH, outcome, details, request_id))

    def limited(self, request: Request[Any, Any, Any], next_path: str, what: str) -> Response[str] | None:
        """429 with Retry-After once the address's anonymous-denial budget is spent; else None, one unit spent."""
        wait = self.limiter.take(client_address(request) or "") if self.limiter is not None else 0.0
        if wait <= 0:
            return None
        RATE_LIMITED.inc()
        seconds = max(1, int(wait + 0.999))
        response = self.page(next_path, f"Too many {what}; try again in {seconds} s.", 429)
        response.headers["Retry-After"] = str(seconds)
        return response

    def refused(self, request: Request[Any, Any, Any], next_path: str, message: str, reason: str) -> Response[str]:
        """A failed sign-in: audited and answered 401, or 429 once the address's denial budget is spent (a
        flood of guesses then no longer fills the audit log). A sign-in that succeeds is never limited."""
        limited = self.limited(request, next_path, "failed sign-ins")
        if limited is not None:
            return limited
        if reason:
            self.note(request, "anonymous", "ui.sign_in", "denied", reason)
        return self.page(next_path, message, 401)

    # -- sign-in ----------------------------------------------------------------------------------------

    async def token_sign_in(self, request: Request[Any, Any, Any]) -> Response[str]:
        scope = request.scope
        self.browser.require_same_origin(scope)  # a sign-in another site posts would sign its owner in here
        try:
            raw = await request.body()  # at most MAX_FORM_BYTES (the route's limit)
        except RequestEntityTooLarge:
            # No form of the page: a failed sign-in, which spends the address's budget like a guessed token.
            return self.limited(request, "/", "failed sign-ins") or self.page("/", OVERSIZED_FORM, 413)
        try:
            form = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
        except ValueError:  # more fields than the page posts: no form of the sign-in page (a 500 before)
            return self.page("/", UNREADABLE_FORM, 400)
        next_path = local_path((form.get("next") or ["/"])[0])
        token = (form.get("token") or [""])[0].strip()
        if not token.startswith(TOKEN_PREFIX):
            return self.refused(request, next_path, "Enter a personal access token (it starts with fgt_).", "")
        try:
            principal = await self.authenticator.authenticate(f"Bearer {token}")
        except Unauthenticated as exc:
            return self.refused(request, next_path, exc.message, exc.message)
        if principal.id is None or principal.via != "token":
            return self.page(next_path, "Sign in with a personal access token of a user.", 401)
        if principal.kind != "user":
            # A valid token, but of a machine: a browser session is a person's. Not a guess, so no budget spent.
            self.note(request, principal.name, "ui.sign_in", "denied", NOT_A_PERSON_REASON)
            return self.page(next_path, NOT_A_PERSON, 403)
        value, expires_at = await self.sessions.begin(
            principal.id,
            "token",
            ends_by=principal.credential_expires_at,
            token_hash=self.authenticator.token_hash(token),
            replacing=cookie_values(scope, self.browser.session_cookie(scope)),
            actor=principal.name,
            user_agent=request.headers.get("user-agent"),
            ip_address=client_address(request),
        )
        self.note(request, principal.name, "ui.sign_in", "allowed", "personal access token")
        return self.redirect(next_path, self.session_cookie(scope, value, expires_at))

    async def oidc_start(self, request: Request[Any, Any, Any]) -> Response[str]:
        scope = request.scope
        next_path = local_path(request.query_params.get("next"))
        if self.provider is None:
            return self.page(next_path, "This gateway has no identity provider; use a personal access token.", 404)
        # Each start stores a sign-in attempt for an anonymous caller: the address's budget bounds how many.
        limited = self.limited(request, next_path, "sign-ins started")
        if limited is not None:
            return limited
        try:
            attempt, url = await self.provider.start(self.browser.origin(scope), next_path)
        except Unauthenticated as exc:
            return self.page(next_path, exc.message, 503)
        value = await self.sessions.begin_sign_in(attempt)
        cookie = self._cookie(scope, self.browser.sign_in_cookie(scope), value, 600)
        return Response("", status_code=302, headers={"Location": url, "Cache-Control": "no-store"}, cookies=[cookie])

    async def oidc_callback(self, request: Request[Any, Any, Any]) -> Response[str]:
        scope = request.scope
        params = request.query_params
        sign_in_cookie = self.browser.sign_in_cookie(scope)
        held = session_value(scope, sign_in_cookie)
        attempt = await self.sessions.take_sign_in(held) if held else None
        spent = self.cleared(scope, sign_in_cookie)
        if attempt is None and held and well_formed(held):
            # A sign-in cookie that names no attempt cost a lookup: it spends the address's budget like any
            # credential that fails, else a flood of made-up ones would never be limited.
            limited = self.limited(request, "/", "failed sign-ins")
            if limited is not None:
                limited.cookies.append(spent)
                return limited
        if self.provider is None:
            return self.page("/", "This gateway has no identity provider.", 404)
        if attempt is None:
            response = self.page("/", "This sign-in has expired or was not started here; sign in again.", 401)
            response.cookies.append(spent)
            return response
        if params.get("error"):
            # Only an answer to this browser's own sign-in (its state) is the provider's, and only its error code
            # is shown: anyone can send a browser here with `?error=<any words>`, which the sign-in page would
            # otherwise show as the provider's ("Your account is locked; call +1 555 ...").
            response = self.page(
                attempt.next_path, provider_error(attempt, params.get("state"), params.get("error")), 401
            )
            response.cookies.append(spent)
            return response
        try:
            identity = await self.provider.finish(
                self.browser.origin(scope), attempt, str(params.get("code") or ""), str(params.get("state") or "")
            )
            principal = await self.authenticator.identity_principal(identity)
        except Unauthenticated as exc:
            self.note(request, "anonymous", "ui.sign_in", "denied", exc.message)
            response = self.page(attempt.next_path, exc.message, 401)
            response.cookies.append(spent)
            return response
        assert principal.id is not None  # identity_principal provisions the user
        value, expires_at = await self.sessions.begin(
            principal.id,
            "oidc",
            groups=sorted(identity.groups),
            replacing=cookie_values(scope, self.browser.session_cookie(scope)),
            actor=principal.name,
            user_agent=request.headers.get("user-agent"),
            ip_address=client_address(request),
        )
        await self.authenticator.signed_in(principal)
        self.note(request, principal.name, "ui.sign_in", "allowed", "identity provider")
        return self.redirect(attempt.next_path, self.session_cookie(scope, value, expires_at), spent)

    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[str]:
        scope = request.scope
        self.browser.require_same_origin(scope)
        cookie_name = self.browser.session_cookie(scope)
        # Every session id the browser presents ends, not only an unambiguous one: with a second cookie of the
        # name planted beside its own (possible without `__Host-`, on plain http), the browser's session used to
        # live on after sign-out.
        user = request.scope.get("user")
        actor = user.name if isinstance(user, Principal) else "anonymous"
        ended = await self.sessions.end_presented(cookie_values(scope, cookie_name), actor=actor)
        target = SIGN_IN_PATH
        if ended:
            self.note(request, actor, "ui.sign_out", "allowed")
            if any(one.via == "oidc" for one in ended) and self.provider is not None:
                after = self.browser.origin(scope) + SIGN_IN_PATH
                target = await self.provider.sign_out_url(after) or SIGN_IN_PATH
        return self.redirect(target, self.cleared(scope, cookie_name))

    # -- MLflow's page and files ------------------------------------------------------------------------

    async def index(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        user = request.scope.get("user")
        if not isinstance(user, Principal):
            # To the hop that keeps the link's `#` part (which the browser carries over this redirect).
            return Response(b"", status_code=303, headers={"Location": RESUME_PATH, "Cache-Control": "no-store"})
        return Response(with_bar(self._index, user.name), media_type=HTML, headers=self._headers)

    async def static(self, request: Request[Any, Any, Any], relative: str) -> Response[bytes]:
        found = await self.build.file(relative, request.headers.get("accept-encoding", ""))
        if found is None:
            return Response(b"Not found", status_code=404, media_type="text/plain")
        return Response(found.body, headers=found.headers)


def provider_error(attempt: SignInAttempt, state: object, error: object) -> str:
    """What the sign-in page says about the provider's error answer (RFC 6749 4.1.2.1): its code when the answer
    names this sign-in's state and the code is of the plain shape the specifications use (`access_denied`)."""
    if not isinstance(state, str) or not secrets.compare_digest(state.encode(), attempt.state.encode()):
        return "The identity provider's answer does not belong to this sign-in (state); sign in again."
    code = str(error)
    if ERROR_CODE.fullmatch(code) is None:
        return "The identity provider refused the sign-in; sign in again."
    return f"The identity provider said: {code}."


def client_address(request: Request[Any, Any, Any]) -> str | None:
    """Where a browser signs in from, for its owner's list of sessions."""
    client = request.scope.get("client")
    return str(client[0]) if client else None


def ui_handlers(ui: WebUi) -> list[HTTPRouteHandler]:
    """The Litestar handlers of the web UI (each MLflow route with its route-table entry)."""
    page = {"route": UI_PAGE, "public": True}

    @get("/", opt=page, name="ui page", include_in_schema=False)
    async def index(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await ui.index(request)

    @get("/static-files/{path:path}", opt={"route": UI_STATIC_FILES, "public": True}, include_in_schema=False)
    async def static_files(request: Request[Any, Any, Any], path: str) -> Response[bytes]:
        return await ui.static(request, path)

    @get("/build/{filename:path}", opt={"route": UI_BUILD_FILES, "public": True}, include_in_schema=False)
    async def build_files(request: Request[Any, Any, Any], filename: str) -> Response[bytes]:
        return await ui.static(request, filename)

    @get(UI_TELEMETRY_GET.paths(), opt={"route": UI_TELEMETRY_GET}, include_in_schema=False)
    async def telemetry_config() -> dict[str, Any]:
        return TELEMETRY_OFF  # the UI's usage events go nowhere through the gateway

    @post(UI_TELEMETRY_POST.paths(), opt={"route": UI_TELEMETRY_POST}, status_code=200, include_in_schema=False)
    async def telemetry_records() -> dict[str, str]:
        return {"status": "disabled"}

    own = {"access": SIGN_IN_ACCESS, "public": True}

    @get(SIGN_IN_PATH, opt=own, include_in_schema=False, name="ui sign-in page")
    async def sign_in(request: Request[Any, Any, Any]) -> Response[str]:
        next_path = local_path(request.query_params.get("next"))
        if isinstance(request.scope.get("user"), Principal):
            return ui.redirect(next_path)
        return ui.page(next_path)

    @get(RESUME_PATH, opt=own, include_in_schema=False, name="ui sign-in from a link")
    async def resume() -> Response[str]:
        return Response(resume_page(), media_type=HTML, headers=RESUME_HEADERS)

    # The only routes anyone may post to without a credential: no body larger than the sign-in form is read.
    @post(
        TOKEN_SIGN_IN_PATH,
        opt=own,
        include_in_schema=False,
        name="ui sign-in with a token",
        request_max_body_size=MAX_FORM_BYTES,
    )
    async def token_sign_in(request: Request[Any, Any, Any]) -> Response[str]:
        return await ui.token_sign_in(request)

    @get(OIDC_SIGN_IN_PATH, opt=own, include_in_schema=False, name="ui sign-in with the provider")
    async def oidc_start(request: Request[Any, Any, Any]) -> Response[str]:
        return await ui.oidc_start(request)

    @get(CALLBACK_PATH, opt=own, include_in_schema=False, name="ui sign-in callback")
    async def oidc_callback(request: Request[Any, Any, Any]) -> Response[str]:
        return await ui.oidc_callback(request)

    @post(SIGN_OUT_PATH, opt=own, include_in_schema=False, name="ui sign-out", request_max_body_size=MAX_FORM_BYTES)
    async def sign_out(request: Request[Any, Any, Any]) -> Response[str]:
        return await ui.sign_out(request)

    return [
        index,
        static_files,
        build_files,
        telemetry_config,
        telemetry_records,
        sign_in,
        resume,
        token_sign_in,
        oidc_start,
        oidc_callback,
        sign_out,
    ]
