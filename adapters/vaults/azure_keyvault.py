"""Azure Key Vault as a vault of secret scopes, read-only, over the Key Vault secrets REST API (7.4).

As Databricks does for Key Vault-backed scopes, values are managed in Azure Key Vault and only read
through fedgate: `put`, `delete` and `drop` raise `VaultReadOnly`. The gateway authenticates with the
OAuth2 client-credentials grant of Microsoft Entra ID (`{authority}/{tenant}/oauth2/v2.0/token`, scope
`https://vault.azure.net/.default`); the token is cached until shortly before it expires and fetched
again when the vault answers 401.

Names. A Key Vault secret name is `[0-9a-zA-Z-]{1,127}` and case-insensitive; a fedgate secret is a
location `w<id>/<scope>` and a key, scope and key `[A-Za-z0-9_.-]{1,128}` and case-sensitive. The
secret `key` of `w<id>/<scope>` is stored under

    w<id>-<scope encoded>--<key encoded>

where scope and key are encoded character by character, each starting in lower case:

    a-z, 0-9   themselves
    A-Z        the lower-case letter, preceded by `-9` (shift) whenever the case changes: `-9` switches
               between lower and upper case until the next `-9` or the end of the part
    -          itself when a letter of the current case follows it (`db-password`), else `-2`
    _          `-0`
    .          `-1`

So `w1001/db-creds` + `password` is `w1001-db-creds--password`, `w1001/ci` + `DB_PASSWORD` is
`w1001-ci---9db-0password`, `myKey` is `my-9k-9ey` and `tls.crt` is `tls-1crt`. Every produced name is
lower case and an encoded part never contains `--`, so `--` separates scope and key and the mapping can
be read back: it is injective, also under Key Vault's case-insensitivity (names in the vault may be in
any case; `W1001-DB-CREDS--PASSWORD` is the same secret). No two (location, key) pairs collide; a vault
name that is not exactly the encoding of the pair it reads back as (`db--x-9-9`, a stray shift) belongs
to no scope and is never listed. A pair whose name would exceed 127 characters, or a malformed
location or key, is refused with `VaultNameRefused`.

Reads: `get` is `GET /secrets/{name}`, 404 `SecretNotFound` and a disabled secret read as missing (a 404
of another body is no answer of the vault's, nor is a bundle whose `id` names another secret: both are
`VaultUnavailable`); `list` pages through `GET /secrets` (`nextLink`, followed only on the vault's own origin
so the token goes nowhere else) and keeps the enabled secrets of the location, `attributes.updated` (seconds)
as ms. Values are the secret's string value as UTF-8 bytes.

Failures: connection errors, timeouts and 5xx are retried with a bounded back-off, then
`VaultUnavailable`; 429 waits for Retry-After when it fits in the same bound; 403 (and a token endpoint
refusing the client) is `VaultDenied`. No value, token or client secret is ever part of an exception
message or a log line: answers are described by status and Key Vault's error code only.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp
from yarl import URL

from gateway.core.ports import SecretInfo, VaultDenied, VaultNameRefused, VaultReadOnly, VaultUnavailable

log = logging.getLogger(__name__)

API_VERSION = "7.4"
KEYVAULT_SCOPE = "https://vault.azure.net/.default"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
MAX_NAME_LENGTH = 127
LIST_PAGE_SIZE = 25
CONCURRENT_GETS = 8
READ_ONLY_MESSAGE = (
    "values of a Key Vault-backed scope are managed in Azure Key Vault {vault}, not through fedgate: {action} there"
)

# -- names -------------------------------------------------------------------------------------------

_LOCATION = re.compile(r"w([0-9]{1,19})/([A-Za-z0-9_.-]{1,128})")
_PART = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_KEYVAULT_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_NAME_HEAD = re.compile(r"w([0-9]{1,19})-")
_SHIFT = "-9"
_HYPHEN = "-2"
_ESCAPES = {"_": "-0", ".": "-1"}
_UNESCAPES = {"0": "_", "1": ".", "2": "-"}
_SEPARATOR = "--"


def _is_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()


def _encode_part(part: str) -> str:
    out: list[str] = []
    upper = False
    for index, char in enumerate(part):
        if _is_letter(char):
            if char.isupper() != upper:
                out.append(_SHIFT)
                upper = not upper
            out.append(char.lower())
        elif char.isdigit():
            out.append(char)
        elif char == "-":
            following = part[index + 1 : index + 2]
            plain = following != "" and _is_letter(following) and following.isupper() == upper
            out.append("-" if plain else _HYPHEN)
        else:
            out.append(_ESCAPES[char])
    return "".join(out)


def _location(location: str) -> tuple[str, str]:
    match = _LOCATION.fullmatch(location)
    if match is None:
        raise VaultNameRefused(f"location {location!r} is not w<id>/<scope> with a scope of [A-Za-z0-9_.-]{{1,128}}")
    workspace, scope = match.groups()
    return workspace, scope


def keyvault_name(location: str, key: str) -> str:
    """The Key Vault secret name of `key` in `location` (`w<id>/<scope>`); see the module docstring."""
    workspace, scope = _location(location)
    if _PART.fullmatch(key) is None:
        raise VaultNameRefused(f"secret key {key!r} is not [A-Za-z0-9_.-]{{1,128}}")
    name = f"w{workspace}-{_encode_part(scope)}{_SEPARATOR}{_encode_part(key)}"
    if len(name) > MAX_NAME_LENGTH:
        raise VaultNameRefused(
            f"secret {key!r} of scope {scope!r} would be the Key Vault secret name {name[:40]}... of "
            f"{len(name)} characters; Key Vault allows at most {MAX_NAME_LENGTH} (w<id>-<scope>--<key>, "
            "with _ . - and upper case escaped): use a shorter scope or key"
        )
    return name


def _decode_part(encoded: str) -> str | None:
    out: list[str] = []
    upper = False
    index = 0
    while index < len(encoded):
        char = encoded[index]
        if char != "-":
            out.append(char.upper() if upper else char)
            index += 1
            continue
        following = encoded[index + 1 : index + 2]
        if _is_letter(following):
            out.append("-")
            index += 1
        elif following == _SHIFT[1]:
            upper = not upper
            index += 2
        elif following in _UNESCAPES:
            out.append(_UNESCAPES[following])
            index += 2
        else:
            return None
    return "".join(out)


def location_key(name: str) -> tuple[str, str] | None:
    """The (location, key) whose Key Vault name is `name` (in any case), or None when there is none."""
    if _KEYVAULT_NAME.fullmatch(name) is None:
        return None
    lowered = name.lower()
    head = _NAME_HEAD.match(lowered)
    if head is None:
        return None
    scope_part, separator, key_part = lowered[head.end() :].partition(_SEPARATOR)
    if not separator:
        return None
    scope, key = _decode_part(scope_part), _decode_part(key_part)
    if scope is None or key is None or _PART.fullmatch(scope) is None or _PART.fullmatch(key) is None:
        return None
    location = f"w{head.group(1)}/{scope}"
    # Only the canonical spelling of a pair belongs to it: a stray shift or a `-2` where `-` would do
    # reads back as the same pair but is another secret in the vault.
    try:
        if keyvault_name(location, key) != lowered:
            return None
    except VaultNameRefused:
        return None
    return location, key


# -- the adapter -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyVaultSettings:
    """Where the vault is and how the gateway signs in. The caller reads the client secret from the
    environment or a file; it is never part of the repr."""

    vault_url: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    authority_host: str = DEFAULT_AUTHORITY
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 5.0
    # Retries of connection errors, timeouts, 5xx and 429: at most `attempts` tries within `retry_seconds`
    # of waiting in all, the back-off doubling from `backoff_seconds`.
    attempts: int = 4
    retry_seconds: float = 5.0
    backoff_seconds: float = 0.2
    # A token is used until this long before it expires (at most half its lifetime).
    refresh_leeway_seconds: float = 300.0


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float


class _Retry(Exception):
    """An answer or failure worth another try, after `wait` seconds at least."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class AzureKeyVault:
    """A read-only `Vault` over one Azure Key Vault (the secrets REST API, api-version 7.4)."""

    read_only = True

    def __init__(self, name: str, settings: KeyVaultSettings) -> None:
        self.name = name
        self.settings = settings
        vault = URL(settings.vault_url.rstrip("/"))
        if vault.scheme not in ("https", "http") or not vault.host:
            raise ValueError(f"vault {name}: vault URL {settings.vault_url!r} is not an http(s) URL")
        self._vault = vault
        self._origin = vault.origin()
        authority = settings.authority_host.rstrip("/")
        self._token_url = f"{authority}/{quote(settings.tenant_id, safe='')}/oauth2/v2.0/token"
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds, connect=settings.connect_timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"AzureKeyVault({self.name!r}, {str(self._vault)!r})"

    # -- reads ----------------------------------------------------------------------------------------

    async def get(self, location: str, key: str) -> bytes | None:
        return await self._get(keyvault_name(location, key))

    async def get_many(self, location: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        # Key Vault has no batch read: one GET per key, a few at a time; every name is checked first.
        names = {key: keyvault_name(location, key) for key in dict.fromkeys(keys)}
        bound = asyncio.Semaphore(CONCURRENT_GETS)

        async def read(name: str) -> bytes | None:
            async with bound:
                return await self._get(name)

        values = await asyncio.gather(*(read(name) for name in names.values()))
        return dict(zip(names, values, strict=True))

    async def _get(self, name: str) -> bytes | None:
        url = (self._vault / "secrets" / name).with_query({"api-version": API_VERSION})
        payload = await self._call(url, missing_ok=True)
        if payload is None:
            return None
        value = payload.get("value")
        if _object(payload.get("attributes")).get("enabled") is False:
            return None
        if not isinstance(value, str):
            # Read as missing, a value would not be looked for in the run's writes (the leak guard): a failure.
            raise VaultUnavailable(f"vault {self.name}: its answer for secret {name} is not a secret bundle")
        if _bundle_name(payload).lower() != name.lower():
            # Another secret's bundle (a cache or proxy in front of the vault mixing answers up) would hand a reader
            # a value of another scope, or of another workspace: the bundle's id names the secret it holds.
            raise VaultUnavailable(f"vault {self.name}: its answer for secret {name} is the bundle of another secret")
        return value.encode("utf-8")

    async def list(self, location: str) -> list[SecretInfo]:
        _location(location)
        found: dict[str, SecretInfo] = {}
        async for item in self._secrets():
            attributes = _object(item.get("attributes"))
            if attributes.get("enabled") is False:
                continue
            pair = location_key(_name_of(item))
            if pair is None or pair[0] != location:
                continue
            updated = attributes.get("updated")
            seconds = updated if isinstance(updated, int | float) and not isinstance(updated, bool) else 0
            found[pair[1]] = SecretInfo(key=pair[1], updated_ms=int(seconds * 1000))
        return [found[key] for key in sorted(found)]

    async def check(self) -> str:
        await self._call((self._vault / "secrets").with_query({"api-version": API_VERSION, "maxresults": "1"}))
        return (
            f"Azure Key Vault {self._vault} (tenant {self.settings.tenant_id}, client {self.settings.client_id}): "
            "reachable, token accepted, secrets listable (read-only through fedgate)"
        )

    # -- writes: managed in Azure ---------------------------------------------------------------------

    async def put(self, location: str, key: str, value: bytes) -> None:
        self._read_only("set", location, key)

    async def delete(self, location: str, key: str) -> bool:
        self._read_only("delete or disable", location, key)

    async def drop(self, location: str) -> None:
        self._read_only("delete", location, None)

    def _read_only(self, verb: str, location: str, key: str | None) -> NoReturn:
        try:
            if key is None:
                workspace, scope = _location(location)
                what = f"the secrets named w{workspace}-{_encode_part(scope)}--*"
            else:
                what = f"the secret {keyvault_name(location, key)}"
        except VaultNameRefused:
            what = "the secret"
        raise VaultReadOnly(READ_ONLY_MESSAGE.format(vault=self._vault, action=f"{verb} {what}"))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- HTTP -----------------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        return self._session

    async def _secrets(self) -> AsyncIterator[dict[str, Any]]:
        url: URL | None = (self._vault / "secrets").with_query(
            {"api-version": API_VERSION, "maxresults": str(LIST_PAGE_SIZE)}
        )
        while url is not None:
            payload = await self._call(url) or {}
            items = payload.get("value")
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    yield item
            url = self._next_page(payload.get("nextLink"))

    def _next_page(self, link: object) -> URL | None:
        if not link or not isinstance(link, str):
            return None
        try:
            url = URL(link)
            origin = url.origin()
        except ValueError:
            raise VaultUnavailable(f"vault {self.name}: a list page's next link is not a URL") from None
        if origin != self._origin:
            # The bearer token is only ever sent to the configured vault.
            raise VaultUnavailable(f"vault {self.name}: a list page points outside {self._origin}")
        if "api-version" not in url.query:
            url = url.update_query({"api-version": API_VERSION})
        return url

    async def _call(self, url: URL, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """GET `url` with the bearer token: the JSON answer, or None for a missing secret (`missing_ok`).
        Retries what may pass and maps the rest to the port's errors."""
        settings = self.settings
        deadline = time.monotonic() + settings.retry_seconds
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                token = await self._bearer()
                return await self._once(url, token, missing_ok=missing_ok)
            except _Unauthorised as exc:
                if refreshed:
                    raise VaultDenied(f"vault {self.name}: the vault refused a fresh token (401)") from None
                refreshed = True
                self._forget(exc.token)
                attempt -= 1
                continue
            except _Retry as exc:
                backoff = settings.backoff_seconds * 2 ** (attempt - 1)
                wait = max(backoff, exc.wait or 0.0)
                if attempt >= settings.attempts or time.monotonic() + wait > deadline:
                    raise VaultUnavailable(
                        f"vault {self.name} is unavailable: {exc.reason} (after {attempt} attempts)"
                    ) from None
                log.warning("vault %s: %s, trying again in %.2f s", self.name, exc.reason, wait)
                await asyncio.sleep(wait)

    async def _once(self, url: URL, token: _Token, *, missing_ok: bool) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {token.value}", "Accept": "application/json"}
        try:
            async with self._client().get(url, headers=headers, allow_redirects=False) as response:
                status = response.status
                payload = await _json(response)
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(_failure(exc)) from None
        code = _error_code(payload)
        if status == 200:
            if payload is None:
                raise VaultUnavailable(f"vault {self.name} answered 200 without a JSON object")
            return payload
        if status == 401:
            raise _Unauthorised(token)
        if status == 404 and missing_ok and code == "SecretNotFound":
            # Key Vault's own answer for a missing (or deleted) secret. Another 404 (an ingress's default backend, a
            # proxy's HTML page) taken for "missing" would keep the value out of the leak guard's sight: a failure.
            return None
        if status == 403 and missing_ok and _inner_code(payload) == "SecretDisabled":
            return None  # a disabled secret reads as missing
        if status == 403:
            raise VaultDenied(
                f"vault {self.name} refused the gateway's client {self.settings.client_id} (403 {code}): "
                "grant it the secrets get and list permissions (or the Key Vault Secrets User role)"
            )
        if status == 429:
            raise _Retry(f"throttled (429 {code})", wait=_seconds(retry_after))
        if status >= 500:
            raise _Retry(f"answered {status} {code}", wait=_seconds(retry_after))
        raise VaultUnavailable(f"vault {self.name} answered {status} {code}")

    # -- token ----------------------------------------------------------------------------------------

    async def _bearer(self) -> _Token:
        token = self._token
        if token is not None and time.monotonic() < token.refresh_at:
            return token
        async with self._token_lock:
            token = self._token
            if token is None or time.monotonic() >= token.refresh_at:
                token = self._token = await self._fetch_token()
            return token

    def _forget(self, token: _Token) -> None:
        if self._token is token:
            self._token = None

    async def _fetch_token(self) -> _Token:
        settings = self.settings
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            "scope": KEYVAULT_SCOPE,
        }
        started = time.monotonic()
        try:
            async with self._client().post(
                self._token_url, data=form, headers={"Accept": "application/json"}, allow_redirects=False
            ) as response:
                status = response.status
                payload = await _json(response)
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(f"token endpoint: {_failure(exc)}") from None
        error = _safe_code((payload or {}).get("error"), "no token")
        if status == 429:
            raise _Retry(f"token endpoint throttled (429 {error})", wait=_seconds(retry_after))
        if status >= 500:
            raise _Retry(f"token endpoint answered {status} {error}")
        access = (payload or {}).get("access_token")
        if status != 200 or not isinstance(access, str) or not access:
            # Entra's `error` code names the fault (invalid_client, unauthorized_client, invalid_scope);
            # its description is left out, the client secret never is part of either.
            raise VaultDenied(
                f"vault {self.name}: the token endpoint refused client {settings.client_id} of tenant "
                f"{settings.tenant_id} ({status} {error})"
            )
        try:
            lifetime = float((payload or {}).get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        leeway = min(settings.refresh_leeway_seconds, lifetime / 2)
        return _Token(value=access, refresh_at=started + lifetime - leeway)


class _Unauthorised(Exception):
    def __init__(self, token: _Token) -> None:
        super().__init__("401")
        self.token = token


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    try:
        payload = await response.json(content_type=None)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _object(value: Any) -> dict[str, Any]:
    """`value` when the answer has a JSON object there, else an empty one: a field of another shape holds nothing."""
    return value if isinstance(value, dict) else {}


def _safe_code(code: object, otherwise: str) -> str:
    """An error code as the service spells it (`SecretNotFound`, `invalid_client`), never free text."""
    return code if isinstance(code, str) and code.isidentifier() and len(code) <= 64 else otherwise


def _error_code(payload: dict[str, Any] | None) -> str:
    error = (payload or {}).get("error")
    return _safe_code(error.get("code") if isinstance(error, dict) else None, "(no error code)")


def _inner_code(payload: dict[str, Any] | None) -> str | None:
    error = (payload or {}).get("error")
    inner = error.get("innererror") if isinstance(error, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    return code if isinstance(code, str) else None


def _failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    return f"unreachable ({type(exc).__name__})"


def _seconds(retry_after: str | None) -> float | None:
    try:
        return max(0.0, float(retry_after)) if retry_after else None
    except ValueError:
        return None


def _bundle_name(bundle: dict[str, Any]) -> str:
    """The secret name in a secret bundle's id, `https://{vault}/secrets/{name}/{version}` (the vault's own host,
    which a private endpoint's address need not be); "" when the id names no secret."""
    identifier = bundle.get("id")
    if not isinstance(identifier, str):
        return ""
    try:
        parts = URL(identifier).path.strip("/").split("/")
    except ValueError:
        return ""
    return parts[1] if len(parts) == 3 and parts[0] == "secrets" else ""


def _name_of(item: dict[str, Any]) -> str:
    """The secret name in a list item's id, `https://{vault}/secrets/{name}`."""
    identifier = item.get("id")
    if not isinstance(identifier, str):
        return ""
    try:
        path = URL(identifier).path.rstrip("/")
    except ValueError:
        return ""  # names no secret
    head, _, name = path.rpartition("/")
    return name if head.endswith("/secrets") else ""
