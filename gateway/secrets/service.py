"""Secret scopes of a workspace, their secrets and their ACLs (the Databricks secrets API), over any vault.

A scope is a row of `secret_scopes` (which vault keeps its values, and where: `w<workspace id>/<scope>`);
its ACL is grants of the policy on `secret_scope:w<id>/<scope>` in the workspace's domain, so users,
service principals and (nested) groups hold READ < WRITE < MANAGE exactly as they hold other grants,
and the grants follow their workspace when it is renumbered or unlinked (gateway/authz/moves.py).

Who may do what, as in Databricks:

- any workspace user (CAN_USE on the workspace) creates a scope and gets MANAGE on it; in a workspace whose vault
  is read-only (Azure Key Vault: values set in Azure, under names that follow from the scope's) workspace admins
  only, since creating a scope there claims the values Azure holds for its name;
- the principal name `users` in a scope's ACL (and as `initial_manage_principal`) stands for every user of
  the workspace, as in Databricks: whoever holds CAN_USE or more on the workspace, directly or through a
  group, now or later. That entry is not a grant to a principal but `users_permission` on the scope's row;
- READ lists a scope's secrets (names and update times), WRITE puts and deletes them, MANAGE deletes
  the scope and reads and changes its ACL;
- workspace admins (CAN_MANAGE on the workspace) and account admins manage every scope;
- a caller holding nothing on a scope is told it does not exist, as if it did not.

Every change is audited without its value. A vault that does not answer is 503 with Retry-After.

A run's read is decided, audited and noted (scope and keys asked for, never a value) in one statement
(`checked_read`, repository.py), the run's state from this worker's recent check of its store while nothing
changed it (runstate.py); the run is known to this worker as one that read a secret before the value is
answered: the leak guard (leaks.py) then refuses writes of the run that carry the value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TypeVar
from urllib.parse import quote

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.authz.decide import Authorizer
from gateway.authz.levels import Level, experiment_object, workspace_domain, workspace_object
from gateway.authz.live import LivePolicy
from gateway.authz.policy import Grant, PrincipalInfo
from gateway.authz.ports import Workspaces
from gateway.authz.reach import for_workspace
from gateway.authz.repository import GrantRepository, PolicyVersionRepository
from gateway.authz.service import resolve_principal
from gateway.core.bounded import BoundedCache
from gateway.core.config import BUILTIN_VAULT, SECRET_NAME_RE, SECRET_NAME_RULE, VAULT_KEYS_ENV
from gateway.core.errors import (
    AlreadyExists,
    GatewayError,
    InvalidParameter,
    InvalidState,
    PermissionDenied,
    ResourceNotFound,
    StoreUnavailable,
    hidden,
)
from gateway.core.links import WorkspaceLink
from gateway.core.policy_changes import PolicyChange
from gateway.core.ports import Vault, VaultDenied, VaultNameRefused, VaultReadOnly, VaultUnavailable
from gateway.core.principal import Principal
from gateway.core.sealing import SealError
from gateway.federation.locate import RunDirectory
from gateway.secrets.repository import ScopeRepository, StoredScope, checked_read
from gateway.secrets.runstate import IN_FLIGHT_SECONDS, PoolSource, RunChecks, subjects
from gateway.secrets.schemas import (
    AclItem,
    ListAclsResponse,
    ListScopesResponse,
    ListSecretsResponse,
    SecretMetadata,
    SecretScope,
    SecretValue,
    SecretValues,
)
from gateway.secrets.taint import TaintedRuns, run_key

log = logging.getLogger(__name__)

NAME_RE = SECRET_NAME_RE  # scope and key names: [A-Za-z0-9_.-]{1,128}, not . or ..
MAX_VALUE_BYTES = 128 * 1024
RETRY_AFTER_SECONDS = 5
MAX_KEYS_PER_READ = 100
MAX_KNOWN_SCOPES = 10_000  # scope rows a worker remembers (vault and location) to ask a vault early
# MLflow's run ids (mlflow.utils.validation._RUN_ID_REGEX, `^[a-zA-Z0-9][\w\-]{0,255}$`), read strictly: ASCII only and
# nothing after the last character (Python's `$` lets a final newline through, its `\w` any letter of any script).
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,255}", re.ASCII)
T = TypeVar("T")
Fetch = Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]]


class _RunInfo(msgspec.Struct):
    experiment_id: str = ""
    status: str = ""
    lifecycle_stage: str = "active"


class _Run(msgspec.Struct):
    info: _RunInfo = msgspec.field(default_factory=_RunInfo)


class _RunBody(msgspec.Struct):
    run: _Run = msgspec.field(default_factory=_Run)


@dataclass(frozen=True, slots=True)
class _Prediction:
    """What a worker knows of a run's read before its statement decides it, from the live policy and its memory.

    `own`: per scope, whether the caller's own grants (or an admin's rights) give READ; `user`: whether it is a
    user of the workspace (for a scope's `users` entry); `version`: the run's state version at this worker's
    recent check that it is RUNNING, when that check stands and the caller may edit the run, else None (the
    statement then refuses and the store is asked); `scopes`: the scopes as last seen, when all of this says the
    read will be allowed, so the vaults may be asked at once; None otherwise.
    """

    own: list[bool]
    user: bool
    version: int | None
    scopes: dict[str, StoredScope] | None


class _Refused(Exception):
    """A read refused for a reason the caller must not learn (scope, ACL, run): audited, answered as missing."""

    def __init__(self, reason: str, scope: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.scope = scope  # the scope refused; None when the workspace or the run is


class SecretPermission:
    READ = "READ"
    WRITE = "WRITE"
    MANAGE = "MANAGE"


PERMISSIONS = (SecretPermission.READ, SecretPermission.WRITE, SecretPermission.MANAGE)
PERMISSION_RANK = {permission: rank for rank, permission in enumerate(PERMISSIONS)}
# The name that stands for every user of the workspace in a scope's ACL (Databricks' built-in `users` group).
WORKSPACE_USERS = "users"


class VaultUnreachable(GatewayError):
    """The scope's vault did not answer, refused the gateway, or is not configured here: 503 with Retry-After."""

    error_code = "TEMPORARILY_UNAVAILABLE"
    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def scope_object(workspace_id: int, scope: str) -> str:
    """The policy object of a secret scope: `secret_scope:w<id>/<scope>` (moves.py renumbers the `w<id>`)."""
    return f"secret_scope:{workspace_domain(workspace_id)}/{scope}"


def scope_location(workspace_id: int, scope: str) -> str:
    return f"{workspace_domain(workspace_id)}/{scope}"


def _missing_scope(scope: str) -> str:
    return f"Scope {scope} does not exist!"


def _check_name(what: str, value: str, *, made_before: bool = False) -> None:
    """One rule for the names of every vault. `made_before`: a scope the rule let through before it refused `.` and
    `..` (the built-in vault kept them) can still be deleted."""
    if not NAME_RE.match(value) and not (made_before and value in (".", "..")):
        raise InvalidParameter(
            f"{what} '{value[:140]}' is not valid: use {SECRET_NAME_RULE}."
            if len(value) <= 140
            else f"{what} is not valid: use {SECRET_NAME_RULE}."
        )


class SecretScopes:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: LivePolicy,
        authorizer: Authorizer,
        audit: AuditTrail,
        vaults: Mapping[str, Vault],
        runs: RunDirectory | None = None,
        fetch: Fetch | None = None,
        tainted: TaintedRuns | None = None,
        *,
        pool: PoolSource | None = None,
        checks: RunChecks | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._policy = policy
        self._authorizer = authorizer
        self._audit = audit
        self._vaults = vaults
        self._runs = runs  # which workspace a run the gateway saw created is in
        self._fetch = fetch  # the gateway's own reads of a workspace's store (the run's status and experiment)
        self._tainted = tainted  # the runs that read a secret, as this worker knows them (the leak guard's)
        self._pool = pool  # a run's read: decided, audited and noted in one statement on a connection of this pool
        self._checks = checks  # this worker's recent checks that runs are RUNNING (runstate.py)
        # Scopes as the last read's statement found them: a predicted read asks their vaults early.
        self._known_scopes: BoundedCache[tuple[int, str], StoredScope] = BoundedCache(MAX_KNOWN_SCOPES)
        # The served workspaces (the request pipeline's), which name the workspace of a call: set by the app.
        self.workspaces: Workspaces | None = None

    @property
    def authorizer(self) -> Authorizer:
        return self._authorizer

    # -- decisions --------------------------------------------------------------------------------------

    def _enter(self, principal: Principal, link: WorkspaceLink) -> None:
        if not self._authorizer.enters(principal, link.workspace_id):
            raise hidden(f"Workspace '{link.name}' not found")

    def permission(
        self, principal: Principal, link: WorkspaceLink, scope: str, users_permission: str | None
    ) -> str | None:
        """The caller's permission on a scope: its own grants, its groups', what every user of the workspace
        holds (`users_permission`, the scope row's) when it is one (CAN_USE on the workspace), or MANAGE as an
        admin."""
        if principal.account_admin:
            return SecretPermission.MANAGE
        held = self._policy.snapshot.held(
            principal.subjects, workspace_domain(link.workspace_id), scope_object(link.workspace_id, scope)
        )
        if Level.CAN_MANAGE.value in held:  # held on the workspace: a workspace admin
            return SecretPermission.MANAGE
        if users_permission in PERMISSION_RANK and self._workspace_user(principal, link):
            held.add(str(users_permission))
        ranked = [PERMISSION_RANK[p] for p in held if p in PERMISSION_RANK]
        return PERMISSIONS[max(ranked)] if ranked else None

    def _workspace_admin(self, principal: Principal, link: WorkspaceLink) -> bool:
        """An admin of every scope of the workspace: an account admin, or CAN_MANAGE on the workspace."""
        return principal.account_admin or self._authorizer.allows(
            principal, link.workspace_id, workspace_object(link.workspace_id), Level.CAN_MANAGE
        )

    def _workspace_user(self, principal: Principal, link: WorkspaceLink) -> bool:
        """A user of the workspace, as `users` in an ACL means it: CAN_USE or more on the workspace."""
        return self._authorizer.allows(principal, link.workspace_id, workspace_object(link.workspace_id), "CAN_USE")

    async def _scope(
        self, principal: Principal, link: WorkspaceLink, scope: str, wanted: str, *, made_before: bool = False
    ) -> StoredScope:
        """The scope, when the caller holds `wanted` on it; hidden when it holds nothing."""
        self._enter(principal, link)
        _check_name("Scope name", scope, made_before=made_before)
        async with self._sessionmaker() as session:
            stored = await ScopeRepository(session).get(link.workspace_id, scope)
        held = self.permission(principal, link, scope, stored.users_permission) if stored is not None else None
        if held is None or stored is None:
            error = ResourceNotFound(_missing_scope(scope))
            if stored is not None:
                error.denied = True
            raise error
        if PERMISSION_RANK[held] < PERMISSION_RANK[wanted]:
            raise PermissionDenied(f"{principal.name} lacks {wanted} on secret scope {scope} (holds {held}).")
        return stored

    def _vault(self, name: str) -> Vault:
        vault = self._vaults.get(name)
        if vault is not None:
            return vault
        if name == BUILTIN_VAULT:
            raise VaultUnreachable(
                f"The built-in vault is not available: the gateway was started without its keys ({VAULT_KEYS_ENV})."
            )
        raise VaultUnreachable(f"The vault '{name}' is not available on this gateway.")

    @staticmethod
    def vault_of(link: WorkspaceLink) -> str:
        """The vault a new scope of the workspace keeps its values in (the workspace's `vault`, else built-in)."""
        return link.vault or BUILTIN_VAULT

    async def _audited(self, principal: Principal, action: str, target: str, details: dict[str, object]) -> None:
        async with self._sessionmaker() as session, session.begin():
            await self._audit.write(session, entry(principal.name, action, target, "ok", details))

    # -- scopes -----------------------------------------------------------------------------------------

    async def create_scope(
        self, principal: Principal, link: WorkspaceLink, scope: str, initial_manage_principal: str | None
    ) -> None:
        self._enter(principal, link)
        if not self._workspace_user(principal, link):
            raise PermissionDenied(f"{principal.name} lacks CAN_USE on workspace '{link.name}'.")
        _check_name("Scope name", scope)
        vault_name = self.vault_of(link)
        vault = self._vault(vault_name)  # 503 now, rather than a scope whose values cannot be kept
        if vault.read_only and not self._workspace_admin(principal, link):
            # A read-only vault's values are set outside the gateway under names that follow from the scope's
            # name alone, so creating a scope claims whatever that vault holds or will hold for it (values an
            # operator set before creating the scope, a deleted scope's values, which stay there): only those
            # who manage every scope anyway may create one (Databricks asks the creator of a Key Vault-backed
            # scope for rights on the Key Vault itself).
            raise PermissionDenied(
                f"{principal.name} lacks CAN_MANAGE on workspace '{link.name}': the workspace's vault is read-only "
                "(its values are set outside the gateway), so only workspace admins create its scopes."
            )
        everyone = initial_manage_principal is not None and _workspace_users(initial_manage_principal)
        manager = (
            await self._principal(principal, link, initial_manage_principal)
            if initial_manage_principal and not everyone
            else None
        )
        obj = scope_object(link.workspace_id, scope)
        domain = workspace_domain(link.workspace_id)
        async with self._sessionmaker() as session, session.begin():
            grants = GrantRepository(session)
            await grants.hold(link)  # the scope and its grants are made in the workspace as the call found it
            stored = StoredScope(
                link.workspace_id,
                scope,
                vault_name,
                scope_location(link.workspace_id, scope),
                principal.name,
                SecretPermission.MANAGE if everyone else None,
            )
            scopes = ScopeRepository(session)
            if not await scopes.add(stored):
                if await scopes.get(link.workspace_id, scope) is not None:
                    raise AlreadyExists(f"Scope {scope} already exists!")
                raise InvalidState(
                    f"The vault location of scope {scope} is still used by a scope of a workspace that had this "
                    "workspace's id before it was renumbered; choose another scope name."
                )
            if not vault.read_only:
                # A new scope starts empty. Whatever its vault holds at the location is no scope's now, but
                # another's once: a workspace unlinked under this id (an external vault keeps its values, and the
                # next workspace linked may get the id), or a put that raced a delete. Emptied while this
                # transaction holds the location, so a concurrent create of the same name (which fails on it)
                # never empties a scope that exists; a vault that does not answer creates no scope (503).
                await _call(vault.drop(stored.location))
            # A new scope starts with no grants but its managers': any row left on its name is another scope's
            # (one written before deletions waited for grants being added, `ScopeRepository.held`).
            changes: list[PolicyChange] = await grants.clear(domain, obj)
            holders = [manager.id] if manager is not None else []
            if principal.id is not None:
                holders.append(principal.id)
            for holder in dict.fromkeys(holders):
                changes += await grants.add(
                    Grant(holder, domain, obj, SecretPermission.MANAGE), created_by=principal.name
                )
            details: dict[str, object] = {"vault": vault_name}
            if manager is not None or everyone:
                details["initial_manage_principal"] = manager.name if manager is not None else WORKSPACE_USERS
            await self._audit.write(session, entry(principal.name, "secrets.scope.create", obj, "ok", details))
            if holders or changes:
                await PolicyVersionRepository(session).bump(changes)
        await self._policy.reload()

    async def delete_scope(self, principal: Principal, link: WorkspaceLink, scope: str) -> None:
        stored = await self._scope(principal, link, scope, SecretPermission.MANAGE, made_before=True)
        vault = self._vault(stored.vault)
        if not vault.read_only:  # the values go first: a scope re-created later must not find them
            await _call(vault.drop(stored.location))
        obj = scope_object(link.workspace_id, scope)
        async with self._sessionmaker() as session, session.begin():
            await ScopeRepository(session).remove(link.workspace_id, scope)
            changes = await GrantRepository(session).clear(workspace_domain(link.workspace_id), obj)
            await self._audit.write(session, entry(principal.name, "secrets.scope.delete", obj, "ok"))
            await PolicyVersionRepository(session).bump(changes)
        await self._policy.reload()

    async def list_scopes(self, principal: Principal, link: WorkspaceLink) -> ListScopesResponse:
        self._enter(principal, link)
        async with self._sessionmaker() as session:
            stored = await ScopeRepository(session).all(link.workspace_id)
        scopes = []
        for scope in stored:
            if self.permission(principal, link, scope.name, scope.users_permission) is None:
                continue
            vault = self._vaults.get(scope.vault)
            backend = "AZURE_KEYVAULT" if vault is not None and vault.read_only else "DATABRICKS"
            scopes.append(SecretScope(name=scope.name, backend_type=backend))
        return ListScopesResponse(scopes=scopes)

    # -- secrets ----------------------------------------------------------------------------------------

    async def put_secret(
        self,
        principal: Principal,
        link: WorkspaceLink,
        scope: str,
        key: str,
        string_value: str | None,
        bytes_value: str | None,
    ) -> None:
        _check_name("Secret key", key)
        value = _value(string_value, bytes_value)
        stored = await self._scope(principal, link, scope, SecretPermission.WRITE)
        vault = self._vault(stored.vault)
        await _call(vault.put(stored.location, key, value))
        await self._audited(principal, "secrets.put", scope_object(link.workspace_id, scope), {"key": key})

    async def delete_secret(self, principal: Principal, link: WorkspaceLink, scope: str, key: str) -> None:
        _check_name("Secret key", key)
        stored = await self._scope(principal, link, scope, SecretPermission.WRITE)
        vault = self._vault(stored.vault)
        if not await _call(vault.delete(stored.location, key)):
            raise ResourceNotFound(f"Secret {key} does not exist in scope {scope}!")
        await self._audited(principal, "secrets.delete", scope_object(link.workspace_id, scope), {"key": key})

    async def list_secrets(self, principal: Principal, link: WorkspaceLink, scope: str) -> ListSecretsResponse:
        stored = await self._scope(principal, link, scope, SecretPermission.READ)
        infos = await _call(self._vault(stored.vault).list(stored.location))
        ordered = sorted(infos, key=lambda info: info.key)
        return ListSecretsResponse(
            secrets=[SecretMetadata(key=i.key, last_updated_timestamp=i.updated_ms) for i in ordered]
        )

    # -- a run's read of its secrets -------------------------------------------------------------------

    def _named(self, principal: Principal, link: WorkspaceLink, name: str, scope: str | None) -> tuple[str, str]:
        """Scope and key of a secret a run reads: `scope/key` names its scope; else the request's `scope`, else
        the workspace's default scope; none of them: 400 saying how to name one."""
        prefix, qualified, key = name.partition("/")
        if qualified:
            chosen = prefix
        elif scope is not None:
            chosen, key = scope, name
        elif link.default_secret_scope:
            chosen, key = link.default_secret_scope, name
        else:
            self._enter(principal, link)  # a caller who may not enter the workspace learns nothing of it
            raise InvalidParameter(
                f"No scope named for secret '{name[:140]}' and workspace '{link.name}' has no default secret "
                "scope. Name the scope: the key as 'scope/key', or the request's 'scope' field (the client "
                "module: FEDGATE_SECRET_SCOPE), or have an account admin set the workspace's "
                "default_secret_scope (docs/secrets.md)."
            )
        _check_name("Scope name", chosen)
        _check_name("Secret key", key)
        return chosen, key

    async def get_secret(
        self, principal: Principal, link: WorkspaceLink, scope: str | None, key: str, run_id: str
    ) -> SecretValue:
        """One value, for a RUNNING run of the scope's workspace that the caller may edit, holding READ.

        The scope is the key's `scope/` prefix, else `scope`, else the workspace's default scope. Every refusal
        (no such scope or secret, no READ, unknown, finished, foreign or not editable run) is the same
        RESOURCE_DOES_NOT_EXIST naming only scope and key; the audit log records which it was.
        """
        _check_run_id(run_id)
        scope, key = self._named(principal, link, key, scope)
        missing = f"Secret {key} does not exist in scope {scope}!"
        values = await self._read(principal, link, {scope: [key]}, run_id, "secrets.get", lambda _: missing)
        value = values.get((scope, key))
        if value is None:
            raise ResourceNotFound(missing)
        return SecretValue(key=key, value=base64.b64encode(value).decode())

    async def get_secrets(
        self, principal: Principal, link: WorkspaceLink, scope: str | None, keys: list[str], run_id: str
    ) -> SecretValues:
        """Several values in one call, keyed by the names as asked: None for a missing key.

        Each name is a key of `scope` (else of the workspace's default scope) or `scope/key` of a scope of its
        own; a refused scope or run refuses the whole call, naming a scope only.
        """
        _check_run_id(run_id)
        if not keys or len(keys) > MAX_KEYS_PER_READ:
            raise InvalidParameter(f"Name 1 to {MAX_KEYS_PER_READ} keys.")
        names = list(dict.fromkeys(keys))
        resolved = {name: self._named(principal, link, name, scope) for name in names}
        wanted: dict[str, list[str]] = {}
        for chosen, key in resolved.values():
            if key not in wanted.setdefault(chosen, []):
                wanted[chosen].append(key)
        values = await self._read(principal, link, wanted, run_id, "secrets.get_many", _missing_scope)
        return SecretValues(
            values={
                name: (base64.b64encode(v).decode() if (v := values.get(resolved[name])) is not None else None)
                for name in names
            }
        )

    async def _read(
        self,
        principal: Principal,
        link: WorkspaceLink,
        wanted: Mapping[str, list[str]],
        run_id: str,
        action: str,
        missing: Callable[[str], str],
        *,
        again: bool = True,
    ) -> dict[tuple[str, str], bytes | None]:
        """The values of `wanted` (scope -> keys) when the run may read every scope of it; one audit row per scope.

        The read is decided, audited and noted for the leak guard (the keys asked for) in one statement,
        committed before any value goes out; a refusal is RESOURCE_DOES_NOT_EXIST with `missing` of the scope
        refused (or of the first scope, when the run is). The vaults are asked once the statement allowed the
        read, or at the same time as the statement when this worker can tell that it will (`_Prediction`):
        those values are dropped unless it did, for the scopes' vaults and locations as the statement found them.
        """
        details: dict[str, object] = {"run_id": run_id[:64]}
        ahead = self._predict(principal, link, wanted, run_id)
        early = asyncio.create_task(self._values(ahead.scopes, wanted)) if ahead.scopes is not None else None
        try:
            stored = await self._readable(principal, link, wanted, run_id, action, details, ahead)
        except _Refused as refused:
            await _drop(early)
            if again:
                # A READ on the scope, CAN_EDIT on the run's experiment, a group joined or a role given through
                # another replica moments ago: refused only by the stored policy, decided again with the caller
                # as that policy has it (`Authorizer.caught_up`); nothing was read or audited yet.
                newer = await self._authorizer.caught_up(principal)
                if newer is not None:
                    return await self._read(newer, link, wanted, run_id, action, missing, again=False)
            for scope, keys in wanted.items():
                reason = refused.reason
                if refused.scope is not None and refused.scope != scope:
                    reason = f"scope {refused.scope} of the same read was refused"
                target = scope_object(link.workspace_id, scope)
                await self._record(principal, action, target, "denied", {**details, "keys": keys, "reason": reason})
            raise ResourceNotFound(missing(refused.scope or next(iter(wanted)))) from None
        except BaseException:
            await _drop(early)
            raise
        # Noted before any value goes out: from now on the leak guard checks the run's writes for it.
        if self._tainted is not None:
            self._tainted.add(run_id)
        if (
            early is not None
            and ahead.scopes is not None
            and all(
                (ahead.scopes[s].vault, ahead.scopes[s].location) == (stored[s].vault, stored[s].location)
                for s in wanted
            )
        ):
            return await early
        await _drop(early)
        return await self._values(stored, wanted)

    async def _values(
        self, stored: Mapping[str, StoredScope], wanted: Mapping[str, list[str]]
    ) -> dict[tuple[str, str], bytes | None]:
        """The values of `wanted` from each scope's vault, the scopes' vaults asked at once."""

        async def fetch(scope: str, keys: list[str]) -> dict[str, bytes | None]:
            return await _call(self._vault(stored[scope].vault).get_many(stored[scope].location, keys))

        if len(wanted) == 1:
            found = [await fetch(*next(iter(wanted.items())))]
        else:
            found = list(await asyncio.gather(*(fetch(scope, keys) for scope, keys in wanted.items())))
        values: dict[tuple[str, str], bytes | None] = {}
        for (scope, keys), answer in zip(wanted.items(), found, strict=True):
            values.update({(scope, k): answer.get(k) for k in keys})
        return values

    def _predict(
        self, principal: Principal, link: WorkspaceLink, wanted: Mapping[str, list[str]], run_id: str
    ) -> _Prediction:
        """What this worker knows of the read before the statement decides it (see `_Prediction`)."""
        if self._checks is None or not self._authorizer.enters(principal, link.workspace_id):
            return _Prediction([], False, None, None)
        scopes = list(wanted)
        own = [self.permission(principal, link, scope, None) is not None for scope in scopes]
        user = not all(own) and self._workspace_user(principal, link)
        checked = self._checks.get(link, run_id) if 0 < len(run_id) <= 256 else None
        if checked is None or not self._editable(principal, link, checked.experiment_id):
            return _Prediction(own, user, None, None)
        known = [self._known_scopes.peek((link.workspace_id, scope)) for scope in scopes]
        readable = all(
            row is not None and (mine or (user and row.users_permission in PERMISSION_RANK))
            for row, mine in zip(known, own, strict=True)
        )
        rows = {scope: row for scope, row in zip(scopes, known, strict=True) if row is not None}
        return _Prediction(own, user, checked.version, rows if readable else None)

    def _know_scopes(self, workspace_id: int, found: list[tuple[str, StoredScope | None, bool]]) -> None:
        # Scopes found gone are dropped before the others are kept: the bound forgets the oldest of the rest.
        for scope, stored, _ in found:
            if stored is None:
                self._known_scopes.pop((workspace_id, scope))
        for scope, stored, _ in found:
            if stored is not None:
                self._known_scopes.put((workspace_id, scope), stored)

    async def _readable(
        self,
        principal: Principal,
        link: WorkspaceLink,
        wanted: Mapping[str, list[str]],
        run_id: str,
        action: str,
        details: dict[str, object],
        ahead: _Prediction,
    ) -> dict[str, StoredScope]:
        """The scopes, once the read is allowed, audited and noted (one statement); else `_Refused`.

        The scopes and the caller's READ on each are decided first, then the run: from this worker's recent
        check of it (runstate.py) when the run's state version says nothing changed since, else by asking the
        run's store, as `_running_run` does.
        """
        if self._pool is None or self._checks is None:
            raise _Refused("run reads not wired")
        if not self._authorizer.enters(principal, link.workspace_id):
            raise _Refused("workspace")
        scopes = list(wanted)
        valid_run = 0 < len(run_id) <= 256
        expected = ahead.version
        audit = [entry(principal.name, action, scope_object(link.workspace_id, s), "ok", {**details, "keys": k})
                 for s, k in wanted.items()]  # fmt: skip
        checked_now = False
        pool = await self._pool()
        for _ in range(3):
            decision = await checked_read(
                pool,
                workspace_id=link.workspace_id,
                scopes=scopes,
                own=ahead.own,
                workspace_user=ahead.user,
                run_id=run_key(run_id) if valid_run else "",
                subjects=subjects(link, run_id) if valid_run else [],
                expected_version=expected if valid_run else None,
                checked_now=checked_now,
                actor=audit[0]["actor"],
                action=audit[0]["action"],
                audit_targets=[row["target"] for row in audit],
                audit_details=[msgspec.json.encode(row["details"]).decode() for row in audit],
                read_scopes=[s for s, keys in wanted.items() for _ in keys],
                read_keys=[k for keys in wanted.values() for k in keys],
                in_flight_seconds=float(IN_FLIGHT_SECONDS),
            )
            self._know_scopes(link.workspace_id, decision.scopes)
            for scope, stored, readable in decision.scopes:
                if stored is None:
                    raise _Refused("no scope", scope)
                if not readable:
                    raise _Refused("no READ on the scope", scope)
            if decision.ok:
                return {scope: stored for scope, stored, _ in decision.scopes if stored is not None}
            # The run is not known to be RUNNING since its state version: its store is asked.
            self._checks.forget(link, run_id)
            experiment_id = await self._running_run(principal, link, run_id)
            if decision.steady:
                self._checks.keep(link, run_id, experiment_id, decision.version)
            expected, checked_now = decision.version, True
        raise StoreUnavailable("The run's state kept changing while it was checked; try again.")

    def _editable(self, principal: Principal, link: WorkspaceLink, experiment_id: str) -> bool:
        obj = experiment_object(link.workspace_id, experiment_id)
        return self._authorizer.allows(principal, link.workspace_id, obj, Level.CAN_EDIT)

    async def _running_run(self, principal: Principal, link: WorkspaceLink, run_id: str) -> str:
        """The run's experiment, if the run is in this workspace, RUNNING, active, and the caller may edit it;
        else `_Refused`. Asks the run's store."""
        if self._runs is None or self._fetch is None:
            raise _Refused("run reads not wired")
        if not run_id or len(run_id) > 256:
            raise _Refused("unknown run")
        home = await self._runs.workspace_of(run_id)
        if home is not None and home != link.name:
            raise _Refused("run of another workspace")
        # A store that does not answer is 503 (StoreUnavailable), not a refusal.
        status, body = await self._fetch(link, "/api/2.0/mlflow/runs/get", f"run_id={quote(run_id, safe='')}")
        if status != 200:
            raise _Refused("unknown run")
        try:
            info = msgspec.json.decode(body, type=_RunBody).run.info
        except msgspec.DecodeError:
            raise _Refused("unknown run") from None
        if not info.experiment_id:
            raise _Refused("unknown run")
        if info.status != "RUNNING" or info.lifecycle_stage != "active":
            raise _Refused("run not running")
        if not self._editable(principal, link, info.experiment_id):
            raise _Refused("run not editable")
        return info.experiment_id

    async def _record(
        self, principal: Principal, action: str, target: str, outcome: str, details: dict[str, object]
    ) -> None:
        async with self._sessionmaker() as session, session.begin():
            await self._audit.write(session, entry(principal.name, action, target, outcome, details))

    # -- ACLs -------------------------------------------------------------------------------------------

    async def put_acl(self, principal: Principal, link: WorkspaceLink, scope: str, name: str, permission: str) -> None:
        wanted = permission.strip().upper()
        if wanted not in PERMISSION_RANK:
            raise InvalidParameter(f"permission '{permission[:40]}' is not valid; use READ, WRITE or MANAGE.")
        stored = await self._scope(principal, link, scope, SecretPermission.MANAGE)
        if _workspace_users(name):
            await self._set_users_permission(principal, link, stored, wanted)
            return
        target = await self._principal(principal, link, name)
        obj, domain = scope_object(link.workspace_id, scope), workspace_domain(link.workspace_id)
        async with self._sessionmaker() as session, session.begin():
            # The scope checked must still be there when the grant is added, and stay until it is committed: a
            # deletion of it meanwhile would leave the grant behind, and a scope created again under the name
            # would inherit it (its new owner's secrets readable by whom the old scope's manager named).
            grants = GrantRepository(session)
            await grants.hold(link)
            if not await ScopeRepository(session).held(stored):
                raise ResourceNotFound(_missing_scope(scope))
            changes = await grants.clear(domain, obj, principal_id=target.id)
            changes += await grants.add(Grant(target.id, domain, obj, wanted), created_by=principal.name)
            await self._audit.write(
                session,
                entry(
                    principal.name,
                    "secrets.acl.put",
                    obj,
                    "ok",
                    {"principal": target.name, "kind": target.kind, "permission": wanted},
                ),
            )
            await PolicyVersionRepository(session).bump(changes)
        await self._policy.reload()

    async def delete_acl(self, principal: Principal, link: WorkspaceLink, scope: str, name: str) -> None:
        stored = await self._scope(principal, link, scope, SecretPermission.MANAGE)
        if _workspace_users(name):
            if stored.users_permission is None:
                raise ResourceNotFound(f"No ACL for {WORKSPACE_USERS} on scope {scope}.")
            await self._set_users_permission(principal, link, stored, None)
            return
        target = await self._principal(principal, link, name)
        obj, domain = scope_object(link.workspace_id, scope), workspace_domain(link.workspace_id)
        async with self._sessionmaker() as session, session.begin():
            # Whether there is an entry to delete is the stored policy's to say: one put through another replica
            # moments ago is deleted, one deleted there is not found (the snapshot in use may not know either yet).
            changes = await GrantRepository(session).clear(domain, obj, principal_id=target.id)
            if not changes:
                raise ResourceNotFound(f"No ACL for {target.name} on scope {scope}.")
            await self._audit.write(
                session,
                entry(principal.name, "secrets.acl.delete", obj, "ok", {"principal": target.name, "kind": target.kind}),
            )
            await PolicyVersionRepository(session).bump(changes)
        await self._policy.reload()

    async def get_acl(self, principal: Principal, link: WorkspaceLink, scope: str, name: str) -> AclItem:
        stored = await self._scope(principal, link, scope, SecretPermission.MANAGE)
        wanted = WORKSPACE_USERS if _workspace_users(name) else (await self._principal(principal, link, name)).name
        for item in self._acl(link, stored):
            if item.principal == wanted:
                return item
        raise ResourceNotFound(f"No ACL for {wanted} on scope {scope}.")

    async def list_acls(self, principal: Principal, link: WorkspaceLink, scope: str) -> ListAclsResponse:
        stored = await self._scope(principal, link, scope, SecretPermission.MANAGE)
        return ListAclsResponse(items=self._acl(link, stored))

    def _acl(self, link: WorkspaceLink, stored: StoredScope) -> list[AclItem]:
        snapshot = self._policy.snapshot
        on = snapshot.grants_on(workspace_domain(link.workspace_id), scope_object(link.workspace_id, stored.name))
        items = []
        for sub, privileges in sorted(on.items()):
            info = snapshot.principal(sub)
            ranked = [PERMISSION_RANK[p] for p in privileges if p in PERMISSION_RANK]
            if info is not None and ranked:
                items.append(AclItem(principal=info.name, permission=PERMISSIONS[max(ranked)]))
        if stored.users_permission in PERMISSION_RANK:
            items.append(AclItem(principal=WORKSPACE_USERS, permission=stored.users_permission))
        return items

    async def _set_users_permission(
        self, principal: Principal, link: WorkspaceLink, stored: StoredScope, permission: str | None
    ) -> None:
        """The ACL entry of `users`: what every user of the workspace holds on the scope (None: nothing). Set on
        the scope checked (`stored`) alone: not on one created again under its name since."""
        obj = scope_object(link.workspace_id, stored.name)
        action, details = "secrets.acl.delete", {"principal": WORKSPACE_USERS, "kind": "workspace users"}
        if permission is not None:
            action, details = "secrets.acl.put", {**details, "permission": permission}
        async with self._sessionmaker() as session, session.begin():
            if not await ScopeRepository(session).set_users_permission(stored, permission):
                raise ResourceNotFound(_missing_scope(stored.name))
            await self._audit.write(session, entry(principal.name, action, obj, "ok", details))

    async def _principal(self, caller: Principal, link: WorkspaceLink, name: str) -> PrincipalInfo:
        """The principal an ACL (or a new scope's `initial_manage_principal`) names.

        Those who manage every scope of the workspace (account admins, CAN_MANAGE on the workspace) may name any
        principal. Any other caller, a scope's manager (every workspace user may create a scope and manage it),
        may name itself and the principals of the workspace, and meets every other principal as a name nobody
        has (gateway/authz/reach.py): the answer for a name told apart who exists in the whole account, another
        workspace's people and groups too. One made through another replica moments ago is found in the stored
        policy."""
        reach = for_workspace(caller, workspace_domain(link.workspace_id), admin=self._workspace_admin(caller, link))
        info = await self._policy.found(partial(resolve_principal, name=name, reach=reach))
        if info is None:
            raise ResourceNotFound(f"No principal named '{name.strip()[:200]}'.")
        return info


def _check_run_id(run_id: str) -> None:
    """400 for a run id outside MLflow's pattern, in MLflow's words (`validation.invalid_value`).

    The run is looked up in its store by the id as sent, and the read is noted for the leak guard under it: a store
    whose database compares text loosely (MySQL's default collations ignore case, some trailing spaces, and fold
    look-alike letters) finds the run under another spelling of its id (`<id> `), which the leak guard's record of
    the read would not match when the run's writes name it as it is."""
    if RUN_ID_RE.fullmatch(run_id) is None:
        shown = json.dumps(run_id[:64], sort_keys=True, separators=(",", ":"))
        raise InvalidParameter(f"Invalid value {shown} for parameter 'run_id' supplied.")


def _workspace_users(name: str) -> bool:
    """Whether an ACL's principal is `users`: every user of the workspace, not a principal of that name."""
    return name.strip() == WORKSPACE_USERS


def _value(string_value: str | None, bytes_value: str | None) -> bytes:
    if (string_value is None) == (bytes_value is None):
        raise InvalidParameter("Give exactly one of string_value and bytes_value.")
    if string_value is not None:
        value = string_value.encode()
    else:
        try:
            value = base64.b64decode(str(bytes_value), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameter("bytes_value is not valid base64.") from None
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidParameter(f"A secret's value is at most {MAX_VALUE_BYTES} bytes ({MAX_VALUE_BYTES // 1024} KB).")
    return value


async def _drop(task: asyncio.Task[T] | None) -> None:
    """A vault read asked early whose values are not used: cancelled, its outcome (values, failure) dropped."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: a failure of a read whose values are not used is not reported


async def _call(operation: Awaitable[T]) -> T:
    """Await a vault operation, turning the vault's failures into the API's answers (never with a value)."""
    try:
        return await operation
    except VaultUnavailable:
        raise VaultUnreachable("The scope's vault did not answer; try again later.") from None
    except VaultDenied:
        log.warning("a vault refused the gateway's credentials; `fedgate vaults check` tells which")
        raise VaultUnreachable("The vault refused the gateway's credentials; an operator must fix that.") from None
    except VaultReadOnly:
        raise InvalidParameter(
            "This scope is backed by Azure Key Vault and is read-only through the gateway: set its secrets in Azure."
        ) from None
    except VaultNameRefused:
        raise InvalidParameter("The scope's vault cannot store this name (it would collide with another).") from None
    except SealError as exc:
        raise unopened(exc) from None


def unopened(exc: SealError) -> VaultUnreachable:
    """A built-in vault value that does not open: sealed under a key id no longer configured, or changed or moved in
    the database (its scope and key are bound to it). Logged with the secret's name and key id, never a value; the
    caller learns only that an operator must act."""
    log.warning("a secret value cannot be opened: %s", exc)
    return VaultUnreachable(
        "A value of this scope cannot be opened with the gateway's keys (its key was removed, or it was changed "
        "in the database); an operator must fix that."
    )
