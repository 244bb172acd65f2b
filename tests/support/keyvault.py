"""A local stand-in for Azure Key Vault and its Entra ID token endpoint, for contract tests of the adapter.

It implements the documented subset the adapter relies on, as the services answer it:

- `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant (form body), checking the tenant,
  client id, client secret and the scope `https://vault.azure.net/.default`; errors as Entra answers them
  (`{"error": "invalid_client", ...}`).
- `GET /secrets/{name}?api-version=7.4`: a secret bundle (`value`, `id`, `attributes`); names are
  case-insensitive; 404 `SecretNotFound`; a disabled secret is 403 `Forbidden` with the inner error
  `SecretDisabled`.
- `GET /secrets?api-version=7.4&maxresults=N`: pages of secret items (no values) with an absolute
  `nextLink` carrying `$skiptoken`, null on the last page.
- Bearer tokens: a missing, unknown or expired one is 401 with a `WWW-Authenticate` challenge; `deny`
  makes every vault call 403 `Forbidden` (`AccessDenied`), as a missing access policy or role does.

Tests drive it through its attributes: `expire_tokens()`, `fail_next` (failing answers to come, with
`failure_body`: Key Vault's JSON or a page of HTML), `mixed_up` (another secret's bundle answered), `throttle`
(429 with Retry-After), `deny`, and read what it saw in `token_requests` and `calls`.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.devstack import LOOPBACK, free_port

API_VERSION = "7.4"
SCOPE = "https://vault.azure.net/.default"
NAME = re.compile(r"[0-9A-Za-z-]{1,127}")


@dataclass
class StoredSecret:
    name: str
    value: str
    enabled: bool = True
    updated: int = field(default_factory=lambda: int(time.time()))


def _error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return web.json_response({"error": error}, status=status)


class KeyVaultServer:
    """Key Vault's secrets API and an Entra ID token endpoint on one free loopback port."""

    def __init__(self, tenant_id: str, client_id: str, client_secret: str, *, page_size: int = 3) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.page_size = page_size
        self.token_lifetime = 3599
        self.secrets: dict[str, StoredSecret] = {}
        self.tokens: dict[str, float] = {}
        self.token_requests: list[dict[str, str]] = []
        self.calls: list[str] = []
        self.deny = False
        self.fail_next: list[int] = []
        # A dict: Key Vault's JSON; a str: a page of HTML, as a proxy or an ingress in front of the vault answers.
        self.failure_body: dict[str, Any] | str = {"error": {"code": "InternalServerError", "message": "try again"}}
        self.throttle: list[float] = []
        self.next_link_base: str | None = None  # where `nextLink` points; the server itself by default
        # A cache or proxy in front of the vault that mixes answers up: a read of the first name (lower case) is
        # answered with the bundle of the second.
        self.mixed_up: dict[str, str] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # -- test controls ----------------------------------------------------------------------------------

    def set(self, name: str, value: str, *, enabled: bool = True, updated: int | None = None) -> None:
        assert NAME.fullmatch(name), name
        self.secrets[name.lower()] = StoredSecret(name, value, enabled, updated or int(time.time()))

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    # -- life cycle -------------------------------------------------------------------------------------

    async def start(self) -> KeyVaultServer:
        app = web.Application()
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/secrets", self._list)
        app.router.add_get("/secrets/{name}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- Entra ID ---------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.token_requests.append(form)
        if request.match_info["tenant"] != self.tenant_id:
            return web.json_response({"error": "invalid_tenant", "error_description": "AADSTS90002"}, status=400)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                status=401,
            )
        if form.get("scope") != SCOPE:
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.token_lifetime
        return web.json_response(
            {"token_type": "Bearer", "expires_in": self.token_lifetime, "ext_expires_in": 3599, "access_token": token}
        )

    # -- Key Vault --------------------------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.calls.append(request.path_qs)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if self.tokens.get(token, 0.0) <= time.time():
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                status=401,
                headers={
                    "WWW-Authenticate": f'Bearer authorization="{self.url}/{self.tenant_id}", resource="https://vault.azure.net"'
                },
            )
        if request.query.get("api-version") != API_VERSION:
            return _error(400, "BadParameter", "The specified version is not supported")
        if self.throttle:
            return web.json_response(
                {"error": {"code": "Throttled", "message": "Request was not processed because too many requests"}},
                status=429,
                headers={"Retry-After": str(self.throttle.pop(0))},
            )
        if self.fail_next:
            status = self.fail_next.pop(0)
            if isinstance(self.failure_body, str):
                return web.Response(status=status, text=self.failure_body, content_type="text/html")
            return web.json_response(self.failure_body, status=status)
        if self.deny:
            return _error(
                403,
                "Forbidden",
                f"The user, group or application 'appid={self.client_id}' does not have secrets get permission",
                "AccessDenied",
            )
        return None

    async def _get(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        name = request.match_info["name"]
        if not NAME.fullmatch(name):
            return _error(400, "BadParameter", "The request URI contains an invalid name")
        stored = self.secrets.get(self.mixed_up.get(name.lower(), name.lower()))
        if stored is None:
            return _error(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault.")
        if not stored.enabled:
            return _error(403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
        return web.json_response(
            {
                "value": stored.value,
                "id": f"{self.url}/secrets/{stored.name}/{'0' * 32}",
                "attributes": self._attributes(stored),
                "tags": {},
            }
        )

    async def _list(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        size = min(int(request.query.get("maxresults", "25")), self.page_size)
        start = int(request.query.get("$skiptoken", "0"))
        ordered = sorted(self.secrets.values(), key=lambda s: s.name.lower())
        page = ordered[start : start + size]
        more = start + size < len(ordered)
        return web.json_response(
            {
                "value": [
                    {"id": f"{self.url}/secrets/{s.name}", "attributes": self._attributes(s), "tags": {}} for s in page
                ],
                "nextLink": (
                    f"{self.next_link_base or self.url}/secrets?api-version={API_VERSION}"
                    f"&$skiptoken={start + size}&maxresults={size}"
                    if more
                    else None
                ),
            }
        )

    @staticmethod
    def _attributes(stored: StoredSecret) -> dict[str, Any]:
        return {
            "enabled": stored.enabled,
            "created": stored.updated,
            "updated": stored.updated,
            "recoveryLevel": "Recoverable+Purgeable",
        }
