"""Browser sessions over REST: a person lists and ends their own, an account admin anyone's.

- `GET /api/2.0/fedgate/sessions[?user_name=...]`: the live sessions, newest first: a public `session_id`
  (a handle of its own that authenticates nothing; never the cookie's id or its hash), how it signed in,
  when it was made, last used (to within a minute) and ends, the browser's user agent and address at
  sign-in, and `current` for the session the asking browser holds. Another user's: account admins.
- `POST /api/2.0/fedgate/sessions/end {"session_id"}`: that session ends for every replica at once (its
  cookie authenticates nothing from the next request). A session of someone else is, for anyone but an
  account admin, one that does not exist (404).
- `POST /api/2.0/fedgate/sessions/end-all {"user_name"?}`: every other session of the caller (the one the
  asking browser holds stays); with another user's name (account admins) every session of that user, e.g.
  after an incident.

Each end, and an admin's list of another user's sessions, is audited. Cookie-authenticated calls that
change something must come from the gateway's own pages, as every such call (authn/browser.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler

from gateway.audit.trail import entry
from gateway.authn.browser import session_value
from gateway.authn.sessions import SessionInfo
from gateway.core.errors import InvalidParameter, PermissionDenied, ResourceNotFound
from gateway.core.principal import Principal
from gateway.observability.access import REQUEST_ID_KEY
from gateway.principals.guards import CATCH_UP, CatchUp
from gateway.ui.routes import WebUi

SESSIONS_PATH = "/api/2.0/fedgate/sessions"
SESSIONS_ACCESS = "any user: its own browser sessions; account admins: any user's"
OTHERS_REFUSED = "Only account admins may list or end another user's sessions."


class Session(msgspec.Struct):
    session_id: str
    user_name: str
    signed_in_with: str  # "token" or "oidc"
    created_time: int  # epoch milliseconds, as MLflow's and Databricks' APIs give times
    last_used_time: int
    expiry_time: int
    user_agent: str | None
    ip_address: str | None
    current: bool


class SessionList(msgspec.Struct):
    sessions: list[Session]


class EndSession(msgspec.Struct):
    session_id: str = ""


class EndSessions(msgspec.Struct):
    user_name: str | None = None


class Ended(msgspec.Struct):
    ended: int


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _shown(info: SessionInfo) -> Session:
    return Session(
        session_id=info.handle,
        user_name=info.principal_name,
        signed_in_with=info.via,
        created_time=_ms(info.created_at),
        last_used_time=_ms(info.last_used_at),
        expiry_time=_ms(info.expires_at),
        user_agent=info.user_agent,
        ip_address=info.ip_address,
        current=info.current,
    )


def _decode(raw: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(raw.strip() or b"{}", type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidParameter(f"Invalid request body: {exc}") from None


class SessionsApi:
    def __init__(self, ui: WebUi) -> None:
        self.ui = ui
        self.sessions = ui.sessions

    def held(self, request: Request[Any, Any, Any]) -> str | None:
        """The session id of the asking browser (None when the call carries a token)."""
        if request.headers.get("authorization") is not None:
            return None
        return session_value(request.scope, self.ui.browser.session_cookie(request.scope))

    async def admin(self, request: Request[Principal, Any, Any]) -> bool:
        """Whether the caller is an account admin; one who is not as the policy in use has it is asked of the stored
        policy (`Authorizer.caught_up`, one query when this replica is not behind): a role given through another
        replica moments ago counts at once."""
        if request.user.account_admin:
            return True
        catch_up: CatchUp | None = request.app.state.get(CATCH_UP)
        newer = await catch_up.caught_up(request.user) if catch_up is not None else None
        return newer is not None and newer.account_admin

    async def whose(self, request: Request[Principal, Any, Any], user_name: str | None) -> tuple[int | None, bool]:
        """(the principal id whose sessions are meant, whether it is another user than the caller)."""
        caller = request.user
        if user_name is None or not user_name.strip() or user_name.strip().casefold() == caller.name.casefold():
            return caller.id, False
        if not await self.admin(request):
            raise PermissionDenied(OTHERS_REFUSED)
        found = await self.sessions.user_id(user_name)
        if found is None:
            raise ResourceNotFound(f"User '{user_name.strip()}' not found.")
        return found, True

    def audit(self, request: Request[Any, Any, Any], action: str, target: str, details: dict[str, Any]) -> None:
        caller = request.user
        request_id = str(request.scope.get(REQUEST_ID_KEY, ""))  # type: ignore[call-overload,unused-ignore]
        self.ui.audit.record(entry(caller.name, action, target, "allowed", details, request_id))

    async def listed(self, request: Request[Principal, Any, Any], user_name: str | None) -> SessionList:
        principal_id, other = await self.whose(request, user_name)
        if principal_id is None:  # the bootstrap admin token signs no browser in
            return SessionList(sessions=[])
        infos = await self.sessions.listed(principal_id, self.held(request))
        if other:
            self.audit(request, "session.list", f"user:{principal_id}", {"sessions": len(infos)})
        return SessionList(sessions=[_shown(info) for info in infos])

    async def end(self, request: Request[Principal, Any, Any]) -> dict[str, Any]:
        asked: EndSession = _decode(await request.body(), EndSession)
        if not asked.session_id:
            raise InvalidParameter("Missing value for required parameter 'session_id'.")
        caller = request.user
        owner = None if caller.account_admin else (caller.id if caller.id is not None else -1)
        ended = await self.sessions.end_handle(asked.session_id, owner, actor=caller.name)
        if ended is None and owner is not None and await self.admin(request):
            ended = await self.sessions.end_handle(
                asked.session_id, None, actor=caller.name
            )  # an admin role given elsewhere just now
        if ended is None:
            raise ResourceNotFound(f"Session '{asked.session_id}' not found.")
        self.audit(request, "session.end", f"session:{asked.session_id}", {"user_id": ended.principal_id})
        return {}

    async def end_all(self, request: Request[Principal, Any, Any]) -> Ended:
        asked: EndSessions = _decode(await request.body(), EndSessions)
        principal_id, other = await self.whose(request, asked.user_name)
        if principal_id is None:
            return Ended(ended=0)
        keeping = None if other else self.held(request)
        count = await self.sessions.end_all(principal_id, keeping=keeping, actor=request.user.name)
        self.audit(request, "session.end_all", f"user:{principal_id}", {"ended": count, "kept_current": not other})
        return Ended(ended=count)


def session_handlers(ui: WebUi) -> list[HTTPRouteHandler]:
    """The handlers of the sessions API (served with the web UI, whose sign-in makes the sessions)."""
    api = SessionsApi(ui)
    opt = {"access": SESSIONS_ACCESS}

    @get(SESSIONS_PATH, opt=opt, name="browser sessions list")
    async def list_sessions(request: Request[Principal, Any, Any], user_name: str | None = None) -> SessionList:
        return await api.listed(request, user_name)

    @post(f"{SESSIONS_PATH}/end", opt=opt, name="browser session end", status_code=200)
    async def end_session(request: Request[Principal, Any, Any]) -> dict[str, Any]:
        return await api.end(request)

    @post(f"{SESSIONS_PATH}/end-all", opt=opt, name="browser sessions end all", status_code=200)
    async def end_sessions(request: Request[Principal, Any, Any]) -> Ended:
        return await api.end_all(request)

    return [list_sessions, end_session, end_sessions]
