"""Users, service principals and groups (SCIM semantics), and personal access tokens.

Every change bumps the policy version (memberships and disabled principals take effect on every
replica at once) and is audited in the same transaction.

Names follow `gateway.principals.names`: one character set per kind, and a name held by a principal of
any kind cannot be given to another (409), so a bare name in a grant denotes exactly one principal.

A token created with another token (directly, or from a browser session made with one) records it as its
parent, and is revoked with it (a foreign key's cascade, at any depth): revoking a leaked token also ends
whatever was minted with it.

A token's expiry is the earliest of now + its lifetime (`tokens.default_lifetime_seconds` when none is
asked for, at most `tokens.max_lifetime_seconds`) and the expiry of the credential its creator presented
(a token's, an OIDC access token's `exp`): nothing minted outlives what minted it, and no token is
without an expiry.

A service principal's application id is fixed once it is made, as Databricks keeps it: a change is refused
(400) and repeating the same value is accepted: whatever names a service principal by its application id (an
identity provider, a client's configuration, a SQL statement) would otherwise lose it, or, once another principal
takes the freed id, name that one. The one exception is a name the rules refuse (quarantined by migration 0008,
or reserved since it was given): giving it a valid one is the only way to enable it again.

Every refused change of a principal (SCIM create, update or delete: a name the rules refuse or another principal
holds, a member that does not exist, an operation the gateway does not keep, a principal not found, the last admin
below) is audited as the action denied (`refusals`), queued as denials are since the change's own transaction is
rolled back: the caller, the target, the attributes the request named (their names, never their values: a SCIM
client may send a `password`), the members added or removed, and the refusal's reason, status and error code.

The account always keeps an active account admin with a row: a change that would leave it none (the last one's
admin role taken away, the last one deactivated or deleted) is refused, 409 `INVALID_STATE`, and nothing
changes. The bootstrap admin token (configuration, no row) does not count: it is to be locked away. Each such
change takes the account-admins lock before it reads the principal, so that of two replicas demoting the last
two admins at once the second sees the first's change and is refused.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.core.config import TokenSettings
from gateway.core.errors import (
    AlreadyExists,
    GatewayError,
    InvalidParameter,
    InvalidState,
    PermissionDenied,
    ResourceNotFound,
    Unauthenticated,
)
from gateway.core.policy_changes import PolicyChange
from gateway.core.principal import Principal
from gateway.db.models import PrincipalRow, TokenRow
from gateway.principals import names
from gateway.principals.groups import nesting_problem
from gateway.principals.ports import Policy
from gateway.principals.repository import PrincipalRepository, TokenRepository, principal_set
from gateway.principals.tokens import hash_token, new_token

KINDS = ("user", "service_principal", "group")
# A token is refused when the credential minting it has less than this left: it would be dead on arrival.
MIN_TOKEN_LIFETIME = timedelta(seconds=1)


# The reason written for a SCIM change whose body does not decode into a SCIM document.
UNDECODED = "The request body is not a SCIM document of this change."


class LastAdmin(InvalidState):
    """A change refused because it would leave the account without an active account admin."""

    reason = "last active account admin"


class PrincipalService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], policy: Policy, audit: AuditTrail) -> None:
        self._sessionmaker = sessionmaker
        self.policy = policy
        self._audit = audit

    @staticmethod
    def normalise(kind: str, name: str) -> str:
        name = names.canonical(kind, name)
        problem = names.problem(kind, name)
        if problem is not None:
            raise InvalidParameter(problem)
        return name

    async def create(
        self,
        actor: Principal,
        kind: str,
        name: str,
        *,
        display_name: str = "",
        active: bool = True,
        account_admin: bool = False,
        external_id: str | None = None,
        members: Sequence[int] = (),
        groups: Sequence[int] = (),
    ) -> PrincipalRow:
        """The new principal, with its `members` (a group's) and in its `groups`, all in one transaction: a member or
        group that does not exist refuses the whole (400), never leaving the principal made without them."""
        if kind == "service_principal" and not name:
            name = str(uuid.uuid4())  # the application id
        name = self.normalise(kind, name)
        async with self._sessionmaker() as session, session.begin():
            repository = PrincipalRepository(session)
            await _name_free(repository, name)
            try:
                row = await repository.add(
                    PrincipalRow(
                        kind=kind,
                        name=name,
                        display_name=display_name or name,
                        active=active,
                        account_admin=account_admin and kind != "group",
                        external_id=external_id,
                    )
                )
            except IntegrityError:  # another replica took the name since the check above
                raise AlreadyExists(f"A principal named '{name}' already exists.", status=409) from None
            changes: builtins.list[PolicyChange] = [principal_set(row)]
            for member in members:
                changes += await self._add_member(repository, row.id, member)
            for group in groups:
                holder = await repository.held(group)  # not deleted before this membership is committed
                if holder is None or holder.kind != "group":
                    raise InvalidParameter(f"Group {group} does not exist.")
                if names.problem("group", holder.name) is not None:  # as `update` refuses a change to it
                    raise InvalidParameter(f"Group {group}'s name breaks the name rules; rename it first.")
                changes += await self._add_member(repository, group, row.id)
            details: dict[str, Any] = {"name": name}
            if groups:
                details["groups"] = list(groups)
            await self._changed(session, actor, f"{kind}.create", f"{kind}:{row.id}", details, changes)
        await self.policy.reload()
        return row

    async def get(self, kind: str, principal_id: int) -> tuple[PrincipalRow, list[PrincipalRow], list[PrincipalRow]]:
        """The principal, its direct groups and (for groups) its direct members."""
        async with self._sessionmaker() as session:
            repository = PrincipalRepository(session)
            row = await repository.get(principal_id, kind)
            if row is None:
                raise ResourceNotFound(f"{kind.replace('_', ' ').capitalize()} {principal_id} not found.")
            groups = list(await repository.groups_of(principal_id))
            members = list(await repository.members(principal_id)) if kind == "group" else []
            return row, groups, members

    async def list(self, kind: str) -> list[tuple[PrincipalRow, list[PrincipalRow], list[PrincipalRow]]]:
        """Every principal of a kind with its direct groups and members, in three queries whatever the count."""
        async with self._sessionmaker() as session:
            repository = PrincipalRepository(session)
            rows = await repository.of_kind(kind)
            everyone = {row.id: row for row in await repository.all()}
            groups: dict[int, list[PrincipalRow]] = {}
            members: dict[int, list[PrincipalRow]] = {}
            for member, group in sorted(await repository.memberships()):
                groups.setdefault(member, []).append(everyone[group])
                members.setdefault(group, []).append(everyone[member])
            return [(row, groups.get(row.id, []), members.get(row.id, [])) for row in rows]

    async def update(
        self,
        actor: Principal,
        kind: str,
        principal_id: int,
        *,
        fields: dict[str, Any],
        add_members: Sequence[int] = (),
        remove_members: Sequence[int] = (),
        replace_members: Sequence[int] | None = None,
    ) -> None:
        async with self._sessionmaker() as session, session.begin():
            repository = PrincipalRepository(session)
            if kind != "group" and ("account_admin" in fields or "active" in fields):
                await repository.lock_admins()  # before the row is read: its state is then that of the last change
            # Locked from here to the commit: a deletion of the principal (a group being given members) waits for
            # this change and takes its memberships along, or came first and it is not found (404); before, the
            # new membership's foreign key failed: 500.
            row = await repository.changing(principal_id, kind)
            if row is None:
                raise ResourceNotFound(f"{kind.replace('_', ' ').capitalize()} {principal_id} not found.")
            was_admin = row.active and row.account_admin
            was_active = row.active
            readdressed = 0
            for key, value in fields.items():
                if key == "name":
                    value = self.normalise(kind, str(value))
                    if value != row.name and kind == "service_principal" and names.problem(kind, row.name) is None:
                        raise InvalidParameter(
                            f"Service principal {principal_id}'s applicationId cannot be changed; "
                            "create another service principal for another application id."
                        )
                    if value != row.name:
                        await _name_free(repository, value)
                        if kind == "user":  # the alerts that e-mail the user follow it to its new address
                            readdressed = await repository.readdress_alerts(row.name, value)
                if key == "account_admin" and kind == "group":
                    raise InvalidParameter("Groups cannot be account admins; make their members admins instead.")
                setattr(row, key, value)
            problem = names.problem(kind, row.name)
            if problem is not None:
                # A name older than the rules (the database refuses any change to the row but a valid new name), or
                # a reserved one given before it was: nothing changes but the name.
                label = kind.replace("_", " ")
                raise InvalidParameter(f"This {label}'s name breaks the name rules; rename it first. {problem}")
            changes: builtins.list[PolicyChange] = []
            if replace_members is not None:
                changes += await repository.clear_members(principal_id)
                add_members = list(replace_members)
            for member in remove_members:
                changes += await repository.remove_member(principal_id, member)
            for member in add_members:
                changes += await self._add_member(repository, principal_id, member)
            try:
                await session.flush()
            except IntegrityError:
                raise AlreadyExists("A principal with that name already exists.", status=409) from None
            if was_admin and not (row.active and row.account_admin) and await repository.count_admins() == 0:
                raise _last_admin(
                    kind, principal_id, "be deactivated" if not row.active else "lose the account_admin role"
                )
            changes.append(principal_set(row))
            details = {"fields": sorted(fields), "added": list(add_members), "removed": list(remove_members)}
            if readdressed:
                details["alerts_readdressed"] = readdressed
            if kind != "group" and was_active and not row.active:
                # Deactivation ends its browser sessions, with the tokens made in them, as an admin's end-all
                # does: reactivating it later brings back its personal access tokens, never a session (nor what a
                # stolen cookie minted in one).
                ended = await repository.end_sessions(principal_id)
                await revoke_session_tokens(session, self._audit, ended, actor.name, f"deactivated by {actor.name}")
                details["sessions_ended"] = len(ended)
            await self._changed(session, actor, f"{kind}.update", f"{kind}:{principal_id}", details, changes)
        await self.policy.reload()

    async def delete(self, actor: Principal, kind: str, principal_id: int) -> None:
        async with self._sessionmaker() as session, session.begin():
            repository = PrincipalRepository(session)
            if kind != "group":
                await repository.lock_admins()  # before the row is read, as `update` does
            row = await repository.get(principal_id, kind)
            if row is None:
                raise ResourceNotFound(f"{kind.replace('_', ' ').capitalize()} {principal_id} not found.")
            if row.active and row.account_admin and await repository.count_admins() <= 1:
                raise _last_admin(kind, principal_id, "be deleted")
            changes = await repository.delete(principal_id)  # its grants and memberships, its tokens by cascade
            # Its address leaves the alerts that e-mail it: never mailed again, and not whoever gets the name next.
            details = (
                {"alerts_unsubscribed": await repository.readdress_alerts(row.name, None)} if kind == "user" else {}
            )
            await self._changed(session, actor, f"{kind}.delete", f"{kind}:{principal_id}", details, changes)
        await self.policy.reload()

    @contextmanager
    def refusals(self, actor: Principal, action: str, target: str, request_id: str = "") -> Iterator[dict[str, Any]]:
        """Audit a refusal of the change the block makes as `action` denied, with the details the block has put in
        the dict it is given by then (the names of the attributes the request named, members added or removed: never
        a value the caller sent) and the refusal's reason, status and error code; the refusal goes on. A refusal by
        authentication or authorization is audited where it is decided, as every denial is."""
        details: dict[str, Any] = {}
        try:
            yield details
        except GatewayError as error:
            if not (error.denied or isinstance(error, Unauthenticated | PermissionDenied)):
                reason = error.reason if isinstance(error, LastAdmin) else error.message
                outcome = {"reason": reason, "status": error.status, "error_code": error.error_code}
                self._audit.record(entry(actor.name, action, target, "denied", {**details, **outcome}, request_id))
            raise

    def refused_body(
        self, actor: Principal, action: str, target: str, request_id: str, status: int, error_code: str
    ) -> None:
        """Audit a change refused because its body does not decode into a SCIM document (before its handler runs)
        as `action` denied: the refusal's status and error code, and no value the caller sent (the decoder's message
        may quote one, so it is not written)."""
        outcome = {"reason": UNDECODED, "status": status, "error_code": error_code}
        self._audit.record(entry(actor.name, action, target, "denied", outcome, request_id))

    async def _add_member(
        self, repository: PrincipalRepository, group_id: int, member_id: int
    ) -> builtins.list[PolicyChange]:
        member = await repository.held(member_id)  # not deleted before this membership is committed
        if member is None:
            raise InvalidParameter(f"Member {member_id} does not exist.")
        if member_id == group_id:
            raise InvalidParameter("A group cannot contain itself.")
        if member.kind == "group":
            # Under the nesting lock, taken before the check and held until this transaction commits: two replicas
            # putting A into B and B into A at once cannot both pass the check (READ COMMITTED: the memberships
            # read below are those committed when the lock was got).
            await repository.lock_nesting()
            problem = nesting_problem(await repository.memberships(), group_id, member_id)
            if problem is not None:
                raise InvalidParameter(problem)
        return await repository.add_member(group_id, member_id)

    async def _changed(
        self,
        session: AsyncSession,
        actor: Principal,
        action: str,
        target: str,
        details: dict[str, Any],
        changes: Sequence[PolicyChange] | None,
    ) -> None:
        """Audit the change and move the policy version with the rows it changed (None: reload whole)."""
        await self._audit.write(session, entry(actor.name, action, target, "ok", details))
        await self.policy.bump(session, changes)


async def revoke_session_tokens(
    session: AsyncSession, audit: AuditTrail | None, session_hashes: Sequence[bytes], actor: str, reason: str
) -> bool:
    """In the transaction that ended these browser sessions (their id hashes), revoke the tokens created in them,
    with every token minted with them, and audit each as `token.revoke` by `actor` for `reason`, shaped as an
    owner's or an admin's revocation and never with the token or its hash; whether there were any (the caller
    moves the policy so every replica drops its token cache)."""
    if not session_hashes:
        return False
    repository = TokenRepository(session)
    rows = []
    for token_id, token_hash in await repository.of_sessions(session_hashes):
        minted = await repository.minted_with(token_hash)
        details: dict[str, Any] = {"reason": reason}
        if minted:
            details["minted_with_it"] = list(minted)
        rows.append(entry(actor, "token.revoke", f"token:{token_id}", "ok", details))
    revoked = await repository.delete_of_sessions(session_hashes)
    if rows and audit is not None:
        await audit.write(session, *rows)
    return bool(revoked)


class TokenService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: Policy,
        audit: AuditTrail,
        key: Any,
        settings: TokenSettings | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.policy = policy
        self._audit = audit
        self._key = key  # a callable returning the hashing key (loaded at start-up)
        self.settings = settings or TokenSettings()

    def expiry(self, actor: Principal, lifetime_seconds: int | None, now: datetime) -> datetime:
        """When a token `actor` creates now expires: never later than the actor's own credential."""
        settings = self.settings
        if lifetime_seconds is None or lifetime_seconds <= 0:
            lifetime_seconds = settings.default_lifetime_seconds  # Databricks' "no lifetime" and -1
        if lifetime_seconds > settings.max_lifetime_seconds:
            raise InvalidParameter(f"lifetime_seconds may be at most {settings.max_lifetime_seconds}.")
        expires_at = now + timedelta(seconds=lifetime_seconds)
        limit = actor.credential_expires_at
        if limit is not None and limit < expires_at:
            if limit - now < MIN_TOKEN_LIFETIME:
                raise PermissionDenied("The credential of this request expires now; it cannot create tokens.")
            expires_at = limit
        return expires_at

    async def create(
        self, actor: Principal, owner_id: int, *, comment: str = "", lifetime_seconds: int | None = None
    ) -> tuple[str, TokenRow]:
        now = datetime.now(UTC)
        expires_at = self.expiry(actor, lifetime_seconds, now)
        info = self.policy.snapshot.principal(owner_id)
        if info is None or info.kind == "group" or not info.active:
            raise InvalidParameter("Tokens are issued to active users and service principals only.")
        token_id, value = new_token()
        row = TokenRow(
            token_id=token_id,
            principal_id=owner_id,
            token_hash=hash_token(self._key(), value),
            comment=comment[:1000],
            created_by=actor.id,
            created_at=now,
            expires_at=expires_at,
            parent_hash=actor.minted_with,
            session_hash=actor.session_hash,
        )
        async with self._sessionmaker() as session, session.begin():
            await TokenRepository(session).add(row)
            await self._audit.write(
                session, entry(actor.name, "token.create", f"token:{token_id}", "ok", {"owner": info.name})
            )
        return value, row

    async def list(self, owner_id: int | None) -> Sequence[TokenRow]:
        async with self._sessionmaker() as session:
            return await TokenRepository(session).list(owner_id)

    async def get(self, token_id: str) -> TokenRow:
        async with self._sessionmaker() as session:
            row = await TokenRepository(session).get(token_id)
        if row is None:
            raise ResourceNotFound(f"Token {token_id} not found.")
        return row

    async def revoke(self, actor: Principal, token_id: str, *, owner_id: int | None) -> None:
        """`owner_id` limits revocation to the caller's own tokens; None (admins) revokes any."""
        async with self._sessionmaker() as session, session.begin():
            repository = TokenRepository(session)
            row = await repository.get(token_id)
            if row is None or (owner_id is not None and row.principal_id != owner_id):
                raise ResourceNotFound(f"Token {token_id} not found.")
            minted = await repository.minted_with(row.token_hash)
            await repository.delete(token_id)  # and, by cascade, every token minted with it, at any depth
            details = {"minted_with_it": list(minted)} if minted else {}
            await self._audit.write(session, entry(actor.name, "token.revoke", f"token:{token_id}", "ok", details))
            # Every replica drops its token cache when the version moves: revocation is immediate. No
            # grant or membership changed: the version moves with an empty change.
            await self.policy.bump(session, [])
        await self.policy.reload()


def _last_admin(kind: str, principal_id: int, what: str) -> LastAdmin:
    label = kind.replace("_", " ").capitalize()
    return LastAdmin(
        f"{label} {principal_id} is the account's last active account admin and cannot {what}; "
        "make another user or service principal an account admin first."
    )


async def _name_free(repository: PrincipalRepository, name: str) -> None:
    """Names are unique across kinds (the database's unique index backs this up against races)."""
    holder = await repository.by_any_name(name)
    if holder is not None:
        kind = holder.kind.replace("_", " ")
        raise AlreadyExists(
            f"A {kind} named '{name}' already exists; names are unique across users, groups and service principals.",
            status=409,
        )
