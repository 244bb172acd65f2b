"""OpenBao / HashiCorp Vault as a vault of secret scopes: the KV v2 HTTP API (GETs over keepalive.py, the rest aiohttp).

One KV secret per key, at `<mount>/data/<prefix>/<location>/<key>`, its value base64 in the field
`value` (so any bytes round-trip) with `encoding = "base64"` beside it; a secret written by hand
without that marker (`bao kv put secret/fedgate/w1/db/k value=...`) is read as UTF-8 text.

The gateway's own token comes from one of three logins: a token the operator gives (read from the
environment or a file by the caller), AppRole (role id, secret id) or Kubernetes (role, the service
account's JWT file). A token with a lease is renewed in the background before the lease runs out; a
login-based token that cannot be renewed any more, or that the server refuses (403: revoked or
expired), is replaced by a new login, once per refused call.

Values and tokens never appear in an exception's message or a log line: errors name the vault, the
operation, the location and key, and the HTTP status only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from adapters.keepalive import HttpFailure, KeepAliveGets
from gateway.core.ports import SecretInfo, VaultDenied, VaultNameRefused, VaultUnavailable

log = logging.getLogger(__name__)

NAMESPACE_HEADER = "X-Vault-Namespace"
TOKEN_HEADER = "X-Vault-Token"
SERVICE_ACCOUNT_JWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# A lease is renewed when this share of it has passed (`OpenBaoSettings.renew_at`); a failed renewal is tried
# again after a tenth of what is left (at least RETRY_FLOOR_SECONDS), until a login replaces it or it runs out.
RENEW_AT = 2 / 3
RETRY_FLOOR_SECONDS = 1.0
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """A token the operator gives (the caller reads it from the environment or a file)."""

    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppRoleAuth:
    """AppRole login: `POST auth/<mount>/login` with the role id and a secret id."""

    role_id: str
    secret_id: str = field(repr=False)
    mount: str = "approle"


@dataclass(frozen=True, slots=True)
class KubernetesAuth:
    """Kubernetes login: `POST auth/<mount>/login` with the role and the pod's service-account JWT,
    read from `jwt_path` at every login (projected tokens rotate)."""

    role: str
    jwt_path: str = SERVICE_ACCOUNT_JWT
    mount: str = "kubernetes"


OpenBaoAuth = TokenAuth | AppRoleAuth | KubernetesAuth


@dataclass(frozen=True, slots=True)
class OpenBaoSettings:
    """Where the secrets live and how the gateway logs in.

    `attempts` bounds the tries of an idempotent call on a connection error or a 5xx/429 answer, with
    `backoff_seconds` doubled between them; `concurrency` bounds the requests of one get_many, list or
    drop in flight at once. `renew_at`: the share of a lease after which the token is renewed (between 0 and 1;
    the rest is the margin a slow renewal has before the token runs out).
    """

    address: str
    auth: OpenBaoAuth
    mount: str = "secret"
    prefix: str = "fedgate"
    namespace: str | None = None
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0
    attempts: int = 3
    backoff_seconds: float = 0.1
    concurrency: int = 16
    max_connections: int = 64
    renew_at: float = RENEW_AT

    def __post_init__(self) -> None:
        if not 0 < self.renew_at < 1:
            raise ValueError(f"renew_at is a share of the lease, between 0 and 1; got {self.renew_at}")


@dataclass(slots=True)
class _Lease:
    """The gateway's current token and what the server said of its lifetime (monotonic clock)."""

    token: str = field(repr=False)
    generation: int
    ttl: float  # seconds, 0: does not expire
    renewable: bool
    obtained: float

    @property
    def expires(self) -> float | None:
        return self.obtained + self.ttl if self.ttl > 0 else None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any] | None


class OpenBaoVault:
    """The Vault port over an OpenBao or HashiCorp Vault KV v2 mount."""

    read_only = False

    def __init__(self, name: str, settings: OpenBaoSettings) -> None:
        self.name = name
        self.settings = settings
        self._base = settings.address.rstrip("/") + "/v1/"
        self._mount = settings.mount.strip("/")
        self._prefix = settings.prefix.strip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout_seconds, sock_read=settings.timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None
        # GETs (a run's reads above all) go over connections of their own, without aiohttp's per-request work.
        self._gets = KeepAliveGets(
            self._base,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.timeout_seconds,
            max_idle=settings.max_connections,
        )
        self._lease: _Lease | None = None
        self._generation = 0
        self._login_lock = asyncio.Lock()
        self._limit = asyncio.Semaphore(max(1, settings.concurrency))
        self._keeper: asyncio.Task[None] | None = None

    # -- the Vault port ------------------------------------------------------------------------------

    async def get(self, location: str, key: str) -> bytes | None:
        answer = await self._call("GET", self._data(location, key), what=f"read {location}/{key}")
        if answer.status == 404:
            return None
        return self._value(answer.body, location, key)

    async def get_many(self, location: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        unique = list(dict.fromkeys(keys))
        values = await self._each(unique, lambda key: self.get(location, key))
        return dict(zip(unique, values, strict=True))

    async def put(self, location: str, key: str, value: bytes) -> None:
        payload = {"data": {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}}
        # Writing the same value again leaves the same value (one more version): safe to retry.
        await self._call("POST", self._data(location, key), payload=payload, what=f"write {location}/{key}")

    async def delete(self, location: str, key: str) -> bool:
        # DELETE of the metadata answers 204 whether or not there was a secret: ask first.
        found = await self._call("GET", self._metadata(location, key), what=f"look up {location}/{key}")
        if found.status == 404:
            return False
        await self._call("DELETE", self._metadata(location, key), what=f"delete {location}/{key}")
        return self._current(found.body) is not None

    async def list(self, location: str) -> list[SecretInfo]:
        keys = await self._keys(location)
        infos = await self._each(keys, lambda key: self._info(location, key))
        return sorted((info for info in infos if info is not None), key=lambda info: info.key)

    async def drop(self, location: str) -> None:
        keys = await self._keys(location)

        async def remove(key: str) -> None:
            await self._call("DELETE", self._metadata(location, key), what=f"delete {location}/{key}")

        await self._each(keys, remove)

    async def check(self) -> str:
        looked = await self._call("GET", "auth/token/lookup-self", what="look up its own token")
        token = _object((looked.body or {}).get("data"))
        # Authorisation on the prefix itself: a LIST the gateway's policy must allow (404: nothing yet).
        await self._call("LIST", self._folder(self._prefix), what=f"list {self._prefix}/")
        kind = await self._mount_kind()
        ttl = _seconds(token.get("ttl"))
        parts = [
            f"OpenBao/Vault at {self.settings.address}",
            f"namespace {self.settings.namespace}" if self.settings.namespace else None,
            f"mount {self._mount}/ ({kind})",
            f"prefix {self._prefix}/",
            f"token {_text(token.get('display_name')) or '?'} with policies {_policies(token.get('policies')) or '-'}",
            f"expires in {ttl:g}s" if ttl else "no expiry",
            "renewable" if token.get("renewable") else None,
        ]
        return ", ".join(part for part in parts if part)

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        await self._gets.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- KV v2 paths and bodies ----------------------------------------------------------------------

    def _relative(self, location: str, key: str | None = None) -> str:
        segments = [*location.split("/"), *([key] if key is not None else [])]
        if any(segment in ("", ".", "..") for segment in segments):
            raise VaultNameRefused(f"vault {self.name} cannot store {location}/{key or ''}: empty, . or .. segment")
        return "/".join(quote(segment, safe="") for segment in segments)

    def _data(self, location: str, key: str) -> str:
        return f"{self._mount}/data/{self._prefix}/{self._relative(location, key)}"

    def _metadata(self, location: str, key: str) -> str:
        return f"{self._mount}/metadata/{self._prefix}/{self._relative(location, key)}"

    def _folder(self, relative: str) -> str:
        return f"{self._mount}/metadata/{relative}/"

    def _value(self, body: dict[str, Any] | None, location: str, key: str) -> bytes | None:
        secret = (body or {}).get("data")
        if not isinstance(secret, dict):
            # Read as missing, a value would not be looked for in the run's writes (the leak guard): a failure.
            raise VaultUnavailable(f"vault {self.name}: its answer for secret {location}/{key} is not a KV v2 secret")
        data = secret.get("data")
        if data is None:  # the current version is deleted or destroyed
            return None
        value = data.get("value") if isinstance(data, dict) else None
        if not isinstance(value, str):
            raise VaultUnavailable(f"vault {self.name}: secret {location}/{key} has no text field 'value'")
        if data.get("encoding") != "base64":
            return value.encode("utf-8")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise VaultUnavailable(f"vault {self.name}: secret {location}/{key} is not valid base64") from None

    @staticmethod
    def _current(body: dict[str, Any] | None) -> dict[str, Any] | None:
        """The metadata of the current version, None when it is deleted or destroyed (or there is none)."""
        data = _object((body or {}).get("data"))
        version = _object(data.get("versions")).get(str(data.get("current_version")))
        if not isinstance(version, dict) or version.get("destroyed") or version.get("deletion_time"):
            return None
        return version

    async def _keys(self, location: str) -> builtins.list[str]:
        answer = await self._call(
            "LIST", self._folder(f"{self._prefix}/{self._relative(location)}"), what=f"list {location}"
        )
        keys = _object((answer.body or {}).get("data")).get("keys")
        if answer.status != 404 and not isinstance(keys, list):
            # Taken for an empty scope, a drop would leave values that a scope created later would read.
            raise VaultUnavailable(f"vault {self.name} could not list {location}: its answer is not a KV v2 listing")
        # A trailing slash names a folder below: never a key of the scope (keys have no slash).
        return [key for key in keys or [] if isinstance(key, str) and not key.endswith("/")]

    async def _info(self, location: str, key: str) -> SecretInfo | None:
        answer = await self._call("GET", self._metadata(location, key), what=f"look up {location}/{key}")
        if answer.status == 404:
            return None
        version = self._current(answer.body)
        if version is None:
            return None
        stamp = version.get("created_time") or _object((answer.body or {}).get("data")).get("updated_time") or ""
        return SecretInfo(key=key, updated_ms=_epoch_ms(stamp if isinstance(stamp, str) else ""))

    async def _mount_kind(self) -> str:
        """What the mount is, when the token may see it; refuses a mount that is not KV version 2."""
        answer = await self._call(
            "GET", f"sys/internal/ui/mounts/{self._mount}", what=f"look up mount {self._mount}/", tolerate=(400, 403)
        )
        if answer.status != 200 or answer.body is None:
            return "kv, version not visible to the token"
        data = _object(answer.body.get("data"))
        kind, version = _text(data.get("type")), _text(_object(data.get("options")).get("version"))
        if kind != "kv" or str(version) != "2":
            raise VaultUnavailable(
                f"vault {self.name}: mount {self._mount}/ is {kind} version {version}, not kv version 2"
            )
        return "kv v2"

    async def _each(self, items: Sequence[str], act: Callable[[str], Awaitable[_T]]) -> builtins.list[_T]:
        async def one(item: str) -> _T:
            async with self._limit:
                return await act(item)

        return list(await asyncio.gather(*(one(item) for item in items)))

    # -- HTTP ----------------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.settings.max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False)
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        payload: dict[str, Any] | None = None,
        idempotent: bool = True,
        tolerate: tuple[int, ...] = (),
    ) -> _Answer:
        """One API call with the gateway's token: the vault's own 404 (and `tolerate`d statuses) answered, 403 once
        more after a new login where the auth allows one, connection errors and 5xx/429 retried."""
        relogged = False
        attempt = 0
        while True:
            lease = await self._current_lease()
            answer = await self._send(
                method, path, what=what, payload=payload, token=lease.token, idempotent=idempotent
            )
            if answer.status in (401, 403) and answer.status not in tolerate:
                if not relogged and not isinstance(self.settings.auth, TokenAuth):
                    relogged = True
                    await self._login(refused=lease)
                    continue
                raise VaultDenied(f"vault {self.name} refused the gateway's token to {what} ({answer.status})")
            if answer.status >= 500 or answer.status == 429:
                attempt += 1
                if idempotent and attempt < self.settings.attempts:
                    await asyncio.sleep(self.settings.backoff_seconds * 2 ** (attempt - 1))
                    continue
                raise VaultUnavailable(f"vault {self.name} could not {what}: it answered {answer.status}")
            if answer.status == 404 and _no_route(answer.body):
                raise VaultUnavailable(f"vault {self.name} could not {what}: no mount {self._mount}/ there")
            if answer.status == 404 and not _vault_not_found(answer.body):
                # Not the vault's 404 (an ingress's default backend, a proxy's HTML page): taken for "missing", a
                # value would not be looked for by the leak guard, and a scope's values would look already gone.
                raise VaultUnavailable(f"vault {self.name} could not {what}: it answered 404 without the vault's body")
            if answer.status >= 400 and answer.status != 404 and answer.status not in tolerate:
                raise VaultUnavailable(f"vault {self.name} could not {what}: it answered {answer.status}")
            return answer

    async def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        payload: dict[str, Any] | None = None,
        token: str | None = None,
        idempotent: bool = True,
    ) -> _Answer:
        """One request, retried on connection errors (any call when nothing could be sent, idempotent
        ones also when the answer was lost); the status and the JSON body, whatever the status."""
        headers = {}
        if self.settings.namespace:
            headers[NAMESPACE_HEADER] = self.settings.namespace
        if token:
            headers[TOKEN_HEADER] = token
        attempt = 0
        while True:
            try:
                if method == "GET" and payload is None:
                    status, raw = await self._gets.get(path, headers)
                else:
                    async with self._client().request(
                        method, self._base + path, json=payload, headers=headers, allow_redirects=False
                    ) as response:
                        raw = await response.read()
                        status = response.status
                break
            except (aiohttp.ClientError, TimeoutError, HttpFailure) as exc:
                attempt += 1
                unsent = isinstance(exc, aiohttp.ClientConnectorError) or (isinstance(exc, HttpFailure) and exc.unsent)
                if (idempotent or unsent) and attempt < self.settings.attempts:
                    await asyncio.sleep(self.settings.backoff_seconds * 2 ** (attempt - 1))
                    continue
                timed_out = isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError) or (
                    isinstance(exc, HttpFailure) and exc.timed_out
                )
                reason = "timed out" if timed_out else "unreachable"
                raise VaultUnavailable(
                    f"vault {self.name} could not {what}: {reason} ({type(exc).__name__}) after {attempt} tries"
                ) from None
        body: dict[str, Any] | None = None
        if raw:
            try:
                parsed = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        return _Answer(status, body)

    # -- the gateway's token -------------------------------------------------------------------------

    async def _current_lease(self) -> _Lease:
        lease = self._lease
        if lease is not None:
            expires = lease.expires
            if expires is None or time.monotonic() < expires or isinstance(self.settings.auth, TokenAuth):
                return lease
        return await self._login(refused=lease)

    async def _login(self, *, refused: _Lease | None) -> _Lease:
        """A new token, unless another call already replaced the refused one meanwhile."""
        async with self._login_lock:
            current = self._lease
            # A renewal keeps the generation: only a token that is still the refused one is replaced.
            if current is not None and (refused is None or current.generation != refused.generation):
                return current
            auth = self.settings.auth
            if isinstance(auth, TokenAuth):
                lease = await self._adopt(auth.token)
            else:
                lease = await self._log_in(auth)
            self._lease = lease
            self._keep(lease)
            return lease

    async def _adopt(self, token: str) -> _Lease:
        """A given token: its lease as lookup-self tells (a token whose policy forbids that is used as it is)."""
        what = "look up its own token"
        answer = await self._send("GET", "auth/token/lookup-self", what=what, token=token)
        if answer.status >= 500 or answer.status == 429:
            raise VaultUnavailable(f"vault {self.name} could not {what}: it answered {answer.status}")
        self._generation += 1
        data = _object((answer.body or {}).get("data")) if answer.status == 200 else {}
        return _Lease(
            token=token,
            generation=self._generation,
            ttl=_seconds(data.get("ttl")),
            renewable=bool(data.get("renewable")),
            obtained=time.monotonic(),
        )

    async def _log_in(self, auth: AppRoleAuth | KubernetesAuth) -> _Lease:
        if isinstance(auth, AppRoleAuth):
            payload = {"role_id": auth.role_id, "secret_id": auth.secret_id}
            kind = "AppRole"
        else:
            try:
                jwt = (await asyncio.to_thread(Path(auth.jwt_path).read_text, encoding="utf-8")).strip()
            except OSError as exc:
                raise VaultDenied(
                    f"vault {self.name}: cannot read the service-account token file {auth.jwt_path} "
                    f"({type(exc).__name__})"
                ) from None
            payload = {"role": auth.role, "jwt": jwt}
            kind = "Kubernetes"
        what = f"log in with {kind} at auth/{auth.mount.strip('/')}"
        # A login may use up a secret id: sent again only when it could not be sent at all.
        answer = await self._send(
            "POST", f"auth/{auth.mount.strip('/')}/login", what=what, payload=payload, idempotent=False
        )
        if answer.status in (400, 401, 403):
            raise VaultDenied(f"vault {self.name} refused to {what} ({answer.status})")
        if answer.status != 200:
            raise VaultUnavailable(f"vault {self.name} could not {what}: it answered {answer.status}")
        granted = _object((answer.body or {}).get("auth"))
        token = granted.get("client_token")
        if not isinstance(token, str) or not token:
            raise VaultUnavailable(f"vault {self.name} could not {what}: no token in the answer")
        self._generation += 1
        log.info("vault %s: logged in with %s (lease %ss)", self.name, kind, granted.get("lease_duration"))
        return _Lease(
            token=token,
            generation=self._generation,
            ttl=_seconds(granted.get("lease_duration")),
            renewable=bool(granted.get("renewable")),
            obtained=time.monotonic(),
        )

    def _keep(self, lease: _Lease) -> None:
        """Renew (or replace) the token in the background before its lease runs out."""
        if self._keeper is not None and not self._keeper.done():
            return
        if lease.ttl <= 0 or (isinstance(self.settings.auth, TokenAuth) and not lease.renewable):
            return
        self._keeper = asyncio.get_running_loop().create_task(self._keep_alive(), name=f"vault-{self.name}-token")

    async def _keep_alive(self) -> None:
        """Renews (or replaces) the token at `renew_at` of its lease, for as long as there is one to keep."""
        while True:
            lease = self._lease
            expires = lease.expires if lease is not None else None
            if lease is None or expires is None:
                return
            if isinstance(self.settings.auth, TokenAuth) and not lease.renewable:
                return
            await asyncio.sleep(max(0.0, lease.obtained + lease.ttl * self.settings.renew_at - time.monotonic()))
            if self._lease is not lease:
                continue  # replaced meanwhile (a login after a refusal): keep the new one
            try:
                await self._refresh(lease)
            except (VaultUnavailable, VaultDenied) as exc:
                left = expires - time.monotonic()
                if left <= 0:
                    # A login-based vault logs in again at its next call, which starts a new keeper.
                    log.warning("vault %s: the gateway's token ran out unrenewed: %s", self.name, exc)
                    return
                log.warning("vault %s: renewing the gateway's token failed, trying again: %s", self.name, exc)
                await asyncio.sleep(max(RETRY_FLOOR_SECONDS, left / 10))

    async def _refresh(self, lease: _Lease) -> None:
        auth = self.settings.auth
        login = not isinstance(auth, TokenAuth)
        if lease.renewable:
            answer = await self._send(
                "POST", "auth/token/renew-self", what="renew its own token", payload={}, token=lease.token
            )
            granted = _object((answer.body or {}).get("auth"))
            ttl = _seconds(granted.get("lease_duration"))
            # A renewal cut short by the token's max TTL: a new login lasts longer, where there is one.
            if answer.status == 200 and (ttl >= lease.ttl / 2 or not login):
                async with self._login_lock:
                    if self._lease is lease:
                        self._lease = _Lease(
                            lease.token, lease.generation, ttl, bool(granted.get("renewable")), time.monotonic()
                        )
                return
            if not login:
                raise VaultDenied(f"vault {self.name} refused to renew the gateway's token ({answer.status})")
        if not isinstance(auth, TokenAuth):
            async with self._login_lock:
                if self._lease is lease:
                    self._lease = await self._log_in(auth)


def _no_route(body: dict[str, Any] | None) -> bool:
    """Whether a 404 says that nothing is mounted at the path (rather than that the secret is missing)."""
    errors = (body or {}).get("errors")
    if not isinstance(errors, list):
        return False
    return any(isinstance(error, str) and "no handler for route" in error for error in errors)


def _vault_not_found(body: dict[str, Any] | None) -> bool:
    """Whether a 404 is the vault's own: `{"errors": []}` for nothing at the path, or a KV v2 secret whose current
    version is deleted (`{"data": {"data": null, "metadata": ...}}`). Anything else answered 404 from elsewhere."""
    if body is None:
        return False
    return isinstance(body.get("errors"), list) or isinstance(body.get("data"), dict)


def _object(value: Any) -> dict[str, Any]:
    """`value` when the answer has a JSON object there, else an empty one: a field of another shape holds nothing."""
    return value if isinstance(value, dict) else {}


def _seconds(value: Any) -> float:
    """A lease's or TTL's seconds as the server gives them (a number, or its text); 0 (no expiry) for anything else."""
    if isinstance(value, bool):
        return 0.0
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _text(value: Any) -> str:
    """A name or number of the server's answer for a message: text and numbers only, at most 64 characters."""
    return str(value)[:64] if isinstance(value, str | int | float) and not isinstance(value, bool) else ""


def _policies(value: Any) -> str:
    return ",".join(_text(p) for p in value if _text(p)) if isinstance(value, list) else ""


def _epoch_ms(stamp: str) -> int:
    """RFC 3339 with up to nanoseconds (`2026-12-02T11:50:02.437397408Z`) as ms since the epoch; 0 if unreadable."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp.strip())
    if match is None:
        return 0
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    return int(moment.timestamp()) * 1000 + millis
