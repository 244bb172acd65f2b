"""Grants: owners of new objects, the permissions API (experiments, registered models, workspaces) and
Unity Catalog grants on the system tables. Every change bumps the policy version, is audited in the same
transaction, and is in force on this replica before the call answers (other replicas follow on NOTIFY).

Principals in grants are typed, never guessed: the permissions API names the kind (`user_name`,
`group_name`, `service_principal_name`), and a Unity Catalog `principal` (also SQL `GRANT ... TO`) is a
bare string whose kind its shape decides (`resolve_principal`): a user when it contains '@', otherwise
the group or service principal of that name, which the name rules make unique. A name that two
principals still share (rows older than the rules) is refused rather than resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.trail import AuditTrail, entry
from gateway.authz.decide import Authorizer, UnknownHere
from gateway.authz.levels import (
    ACCOUNT_DOMAIN,
    EXPERIMENT_LEVELS,
    MODEL_LEVELS,
    UC_PRIVILEGES,
    WORKSPACE_LEVELS,
    Level,
    Privilege,
    experiment_object,
    model_object,
    uc_parents,
    valid_value,
    workspace_domain,
    workspace_object,
)
from gateway.authz.live import LivePolicy
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from gateway.authz.ports import ObjectExists
from gateway.authz.reach import EVERYONE, Reach, for_account, for_workspace
from gateway.authz.repository import GrantRepository, ModelIdRepository, PolicyVersionRepository
from gateway.authz.schemas import (
    AccessControlRequest,
    AccessControlResponse,
    EffectivePermissionsList,
    EffectivePrivilege,
    EffectivePrivilegeAssignment,
    ObjectPermissions,
    Permission,
    PermissionLevel,
    PermissionLevels,
    PermissionsChange,
    PermissionsList,
    PrivilegeAssignment,
)
from gateway.core.errors import InvalidParameter, InvalidState, PermissionDenied, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.numbers import is_number
from gateway.core.policy_changes import PolicyChange
from gateway.core.principal import Principal
from gateway.principals import names

LEVEL_DESCRIPTIONS = {
    Level.CAN_USE: "Can enter the workspace and create experiments and models of its own",
    Level.CAN_READ: "Can view, search and download",
    Level.CAN_EDIT: "Can log runs, metrics and artifacts, and edit tags and descriptions",
    Level.CAN_MANAGE_STAGING_VERSIONS: "Can move versions between None, Staging and Archived",
    Level.CAN_MANAGE_PRODUCTION_VERSIONS: "Can move versions into and out of Production",
    Level.CAN_MANAGE: "Can delete, purge and change permissions",
}
PRINCIPAL_FIELDS = {"user_name": "user", "group_name": "group", "service_principal_name": "service_principal"}


@dataclass(frozen=True, slots=True)
class Securable:
    """An object permissions are managed on, in the words of the permissions API."""

    link: WorkspaceLink
    object_type: str  # mlflowExperiment | registeredModel | workspace
    object_path: str  # /experiments/5
    obj: str
    levels: tuple[Level, ...]

    @property
    def domain(self) -> str:
        return workspace_domain(self.link.workspace_id)


class AccessService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: LivePolicy,
        authorizer: Authorizer,
        audit: AuditTrail,
        exists: ObjectExists,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.policy = policy
        self.authorizer = authorizer
        self._audit = audit
        self._exists = exists  # asks the store whether an experiment exists

    # -- owners and registered-model ids ---------------------------------------------------------------

    async def model_id(self, link: WorkspaceLink, name: str, *, adopt: bool) -> str | None:
        """The immutable id of a registered model; one created outside the gateway gets an id on first sight."""
        async with self._sessionmaker() as session, session.begin():
            repository = ModelIdRepository(session)
            model_id = await repository.id_of(link.workspace_id, name)
            if model_id is None and adopt and await self._exists(link, "registered_model", name):
                model_id = await repository.assign(link.workspace_id, name)
            return model_id

    async def model_names(self, link: WorkspaceLink, model_ids: set[str]) -> list[str]:
        async with self._sessionmaker() as session:
            return await ModelIdRepository(session).names(link.workspace_id, model_ids)

    async def record_owner(self, principal: Principal, link: WorkspaceLink, kind: str, created: str) -> None:
        """`principal` owns what the store has just created (CAN_MANAGE on it).

        A registered model the store has just created under a name is a new model: an id the gateway still keeps
        for the name is a model deleted without the gateway seeing it (at the store itself, or a deletion whose
        answer was lost), and goes with its grants, so the new model gets an id of its own.
        """
        async with self._sessionmaker() as session, session.begin():
            grants = GrantRepository(session)
            changes: list[PolicyChange] = []
            if kind == "registered_model":
                models = ModelIdRepository(session)
                stale = await models.forget(link.workspace_id, created)
                if stale is not None:
                    domain = workspace_domain(link.workspace_id)
                    changes += await grants.clear(domain, model_object(link.workspace_id, stale))
                object_id = await models.assign(link.workspace_id, created)
                obj = model_object(link.workspace_id, object_id)
            else:
                obj = experiment_object(link.workspace_id, created)
            if principal.id is not None:  # the bootstrap admin can do everything anyway
                grant = Grant(principal.id, workspace_domain(link.workspace_id), obj, Level.CAN_MANAGE.value)
                await grants.hold(link)
                changes += await grants.add(grant, created_by=principal.name)
                await self._audit.write(
                    session, entry(principal.name, "grant.owner", obj, "ok", {"level": "CAN_MANAGE"})
                )
            elif not changes:
                return
            await PolicyVersionRepository(session).bump(changes)
        await self.policy.reload()

    async def model_changed(self, link: WorkspaceLink, action: str, name: str, new_name: str | None) -> None:
        async with self._sessionmaker() as session, session.begin():
            repository = ModelIdRepository(session)
            if action == "rename" and new_name:
                await repository.rename(link.workspace_id, name, new_name)
                return
            model_id = await repository.forget(link.workspace_id, name)
            if model_id is None:
                return
            # A model re-created under the same name is a new object: the old grants go with the old one.
            changes = await GrantRepository(session).clear(
                workspace_domain(link.workspace_id), model_object(link.workspace_id, model_id)
            )
            await PolicyVersionRepository(session).bump(changes)
        await self.policy.reload()

    # -- the permissions API ----------------------------------------------------------------------------

    async def experiment(self, link: WorkspaceLink, experiment_id: str) -> Securable:
        if not is_number(experiment_id) or not await self._exists(link, "experiment", experiment_id):
            raise ResourceNotFound(f"No Experiment with id={experiment_id} exists")
        return Securable(
            link,
            "mlflowExperiment",
            f"/experiments/{experiment_id}",
            experiment_object(link.workspace_id, experiment_id),
            EXPERIMENT_LEVELS,
        )

    async def registered_model(self, link: WorkspaceLink, model_id: str) -> Securable:
        async with self._sessionmaker() as session:
            name = await ModelIdRepository(session).name_of(link.workspace_id, model_id)
        if name is None:
            raise ResourceNotFound(f"Registered model with id={model_id} not found")
        return Securable(
            link,
            "registeredModel",
            f"/registered-models/{model_id}",
            model_object(link.workspace_id, model_id),
            MODEL_LEVELS,
        )

    def workspace(self, link: WorkspaceLink) -> Securable:
        return Securable(
            link, "workspace", f"/workspaces/{link.name}", workspace_object(link.workspace_id), WORKSPACE_LEVELS
        )

    def check_can_view(self, principal: Principal, target: Securable) -> None:
        self._check(principal, target, Level.CAN_USE if target.object_type == "workspace" else Level.CAN_READ)

    def check_can_manage(self, principal: Principal, target: Securable) -> None:
        self._check(principal, target, Level.CAN_MANAGE)

    def _check(self, principal: Principal, target: Securable, wanted: Level) -> None:
        link = target.link
        if target.object_type == "workspace":
            self.authorizer.require_workspace(principal, link.workspace_id, link.name, wanted)
        else:
            self.authorizer.require(principal, link.workspace_id, target.obj, wanted, f"{target.object_path} not found")

    def acl(self, target: Securable) -> ObjectPermissions:
        snapshot = self.policy.snapshot
        entries: dict[int, list[Permission]] = {}
        for sub, privileges in snapshot.grants_on(target.domain, target.obj).items():
            for level in privileges:
                entries.setdefault(sub, []).append(Permission(permission_level=level, inherited=False))
        fallback = workspace_object(target.link.workspace_id)
        if target.obj != fallback:
            for sub, privileges in snapshot.grants_on(target.domain, fallback).items():
                for level in privileges:
                    if level != Level.CAN_USE:
                        entries.setdefault(sub, []).append(
                            Permission(
                                permission_level=level,
                                inherited=True,
                                inherited_from_object=[f"/workspaces/{target.link.name}"],
                            )
                        )
        acl = []
        for sub, permissions in sorted(entries.items()):
            info = snapshot.principal(sub)
            if info is None:
                continue
            acl.append(
                AccessControlResponse(
                    **_principal_field(info), display_name=info.display_name, all_permissions=permissions
                )
            )
        return ObjectPermissions(object_id=target.object_path, object_type=target.object_type, access_control_list=acl)

    async def set_acl(
        self, principal: Principal, target: Securable, items: list[AccessControlRequest], *, replace: bool
    ) -> ObjectPermissions:
        """PUT (replace=True) sets the direct grants to exactly `items`; PATCH adds or changes levels."""

        def resolved(snapshot: PolicySnapshot) -> list[tuple[PrincipalInfo, str]]:
            reach = self.workspace_reach(principal, target.link)
            return [(resolve_typed(snapshot, item, reach), self._level(item, target)) for item in items]

        # A principal made on another replica moments ago is not found only in the stored policy.
        wanted = await self.policy.found(resolved)
        async with self._sessionmaker() as session, session.begin():
            grants = GrantRepository(session)
            await grants.hold(target.link)
            changes: list[PolicyChange] = []
            if replace:
                changes += await grants.clear(target.domain, target.obj)
            for info, level in wanted:
                changes += await grants.clear(target.domain, target.obj, principal_id=info.id)
                changes += await grants.add(Grant(info.id, target.domain, target.obj, level), created_by=principal.name)
            await self._audit.write(
                session,
                entry(
                    principal.name,
                    "permissions.set" if replace else "permissions.update",
                    target.obj,
                    "ok",
                    {"acl": [{"principal": info.name, "kind": info.kind, "level": level} for info, level in wanted]},
                ),
            )
            await PolicyVersionRepository(session).bump(changes)
        await self.policy.reload()
        return self.acl(target)

    def workspace_reach(self, principal: Principal, link: WorkspaceLink) -> Reach:
        """Whom a manager of an object of the workspace may name in its ACL (gateway/authz/reach.py): anyone for
        the workspace's admins (account admins, CAN_MANAGE on it), else itself and the workspace's principals."""
        admin = self.authorizer.allows(
            principal, link.workspace_id, workspace_object(link.workspace_id), Level.CAN_MANAGE
        )
        return for_workspace(principal, workspace_domain(link.workspace_id), admin=admin)

    @staticmethod
    def _level(item: AccessControlRequest, target: Securable) -> str:
        level = item.permission_level
        if level not in {lv.value for lv in target.levels}:
            allowed = ", ".join(lv.value for lv in target.levels)
            raise InvalidParameter(f"permission_level '{level}' is not valid here; use one of {allowed}.")
        return level

    @staticmethod
    def levels(target: Securable) -> PermissionLevels:
        return PermissionLevels(
            permission_levels=[
                PermissionLevel(permission_level=lv.value, description=LEVEL_DESCRIPTIONS[lv]) for lv in target.levels
            ]
        )

    # -- Unity Catalog grants ---------------------------------------------------------------------------

    async def view_owner(self, securable_type: str, full_name: str) -> int | None:
        """The id of the owner of the view `full_name` when `securable_type` is a table (else None), for `securable`:
        read before deciding, as `decide` may read the policy alone."""
        name = full_name.lower()
        if securable_type.lower() != "table" or name.startswith("system.") or len(name.split(".")) != 3:
            return None
        if not valid_value("object", f"table:{name}"):  # no view has such a name (a NUL, a comma, 300 characters)
            return None
        async with self._sessionmaker() as session:
            return await GrantRepository(session).view_owner(name)

    def securable(self, caller: Principal, securable_type: str, full_name: str, *, owner_id: int | None = None) -> str:
        """The securable a grants call names, once `caller` may learn whether it exists.

        As in Unity Catalog, USE CATALOG and USE SCHEMA come before the name is looked up: to a caller who holds
        neither those of its containers (a catalog: USE CATALOG on it; a schema: USE CATALOG on its catalog and
        USE SCHEMA on it; a view: both, on its catalog and schema) nor another privilege on it (MANAGE, SELECT,
        held on it or inherited; any privilege granted on it), and is neither its owner (`owner_id`) nor an
        account admin, a securable and a name nobody made answer alike: 403 naming the first usage privilege
        missing. Before, the one answered 403 "needs MANAGE" and the other 404, to anyone signed in. The system
        catalog holds the documented tables alone, so what exists there is no secret: answered as before."""
        obj = f"{securable_type.lower()}:{full_name.lower()}"
        self._check_sees(caller, obj, owner_id)
        if obj not in self.policy.snapshot.securables:  # the system tables and the views made with CREATE VIEW
            # A view created through another replica moments ago: decided again on the stored policy (`deciding`).
            raise UnknownHere(f"{securable_type} '{full_name}' does not exist.")
        return obj

    def _check_sees(self, caller: Principal, obj: str, owner_id: int | None) -> None:
        kind, _, name = obj.partition(":")
        parts = name.split(".")
        depth = {"catalog": 1, "schema": 2, "table": 3}.get(kind)
        if caller.account_admin or depth is None or len(parts) != depth or parts[0] == "system":
            return  # no securable has such a name, or the system catalog's, which are documented: nothing to tell
        if owner_id is not None and caller.id == owner_id:
            return
        snapshot = self.policy.snapshot
        subjects = caller.subjects
        if any(sub in subjects for sub in snapshot.grants_on(ACCOUNT_DOMAIN, obj)):
            return
        if snapshot.held(subjects, ACCOUNT_DOMAIN, obj) - {Privilege.USE_CATALOG, Privilege.USE_SCHEMA}:
            return
        usage = [(f"catalog:{parts[0]}", Privilege.USE_CATALOG, f"catalog {parts[0]}")]
        if depth > 1:
            usage.append((f"schema:{parts[0]}.{parts[1]}", Privilege.USE_SCHEMA, f"schema {parts[0]}.{parts[1]}"))
        for container, privilege, what in usage:
            if not snapshot.allows(subjects, ACCOUNT_DOMAIN, container, privilege):
                raise PermissionDenied(f"{caller.name} lacks {privilege.replace('_', ' ')} on {what}.")

    def check_uc_manager(self, principal: Principal, obj: str) -> None:
        if principal.account_admin:
            return
        snapshot = self.policy.snapshot
        if not snapshot.allows(principal.subjects, ACCOUNT_DOMAIN, obj, Privilege.MANAGE):
            raise PermissionDenied(
                f"{principal.name} needs MANAGE on {obj.split(':', 1)[1]} to see or change its grants."
            )

    def is_self(self, principal: Principal, name: str | None) -> bool:
        """Whether `name`, a principal as a UC request writes it, is the caller: the one principal it denotes is the
        caller's, by id. Never by comparing names: group and service principal names keep their case, so
        `Robot-x` and `robot-x` are two principals (and case-folding would equate more than that)."""
        if not name or principal.id is None:
            return False
        try:
            info = resolve_principal(self.policy.snapshot, name)
        except InvalidState:
            return False
        return info is not None and info.id == principal.id

    def uc_assignments(self, caller: Principal, obj: str, principal_name: str | None = None) -> PermissionsList:
        snapshot = self.policy.snapshot
        only = self._uc_principal(caller, principal_name, snapshot).id if principal_name else None
        assignments = []
        for sub, privileges in sorted(snapshot.grants_on(ACCOUNT_DOMAIN, obj).items()):
            info = snapshot.principal(sub)
            if info is None or (only is not None and sub != only):
                continue
            assignments.append(PrivilegeAssignment(principal=info.name, privileges=sorted(privileges)))
        return PermissionsList(privilege_assignments=assignments)

    def uc_effective(self, caller: Principal, obj: str, principal_name: str | None = None) -> EffectivePermissionsList:
        """Every privilege that applies to `obj`, with the securable (and group) it comes from."""
        snapshot = self.policy.snapshot
        holders: dict[int, list[EffectivePrivilege]] = {}
        for source in [obj, *uc_parents(obj)]:
            kind, _, name = source.partition(":")
            for sub, privileges in snapshot.grants_on(ACCOUNT_DOMAIN, source).items():
                for privilege in sorted(privileges):
                    item = EffectivePrivilege(privilege=privilege)
                    if source != obj:
                        item.inherited_from_type, item.inherited_from_name = kind.upper(), name
                    holders.setdefault(sub, []).append(item)
        if principal_name:
            target = self._uc_principal(caller, principal_name, snapshot)
            effective: list[EffectivePrivilege] = []
            for sub in sorted(snapshot.subjects(target.id)):
                for item in holders.get(sub, []):
                    via = snapshot.principal(sub)
                    if sub != target.id and via is not None:
                        item = msgspec.structs.replace(item, inherited_from_principal=via.name)
                    effective.append(item)
            return EffectivePermissionsList(
                privilege_assignments=[EffectivePrivilegeAssignment(principal=target.name, privileges=effective)]
            )
        assignments = []
        for sub, items in sorted(holders.items()):
            info = snapshot.principal(sub)
            if info is not None:
                assignments.append(EffectivePrivilegeAssignment(principal=info.name, privileges=items))
        return EffectivePermissionsList(privilege_assignments=assignments)

    async def uc_update(self, principal: Principal, obj: str, changes: list[PermissionsChange]) -> PermissionsList:
        kind = obj.split(":", 1)[0]
        applicable = {p.value for p in UC_PRIVILEGES[kind]}
        plan: list[tuple[PrincipalInfo, set[str], set[str]]] = []
        for change in changes:
            # Made on another replica moments ago? Not found only in the stored policy.
            target = await self.policy.found(partial(self._uc_principal, principal, change.principal))
            add = _privileges(change.add, applicable)
            remove = _privileges(change.remove, applicable)
            plan.append((target, add, remove))
        async with self._sessionmaker() as session, session.begin():
            grants = GrantRepository(session)
            recorded: list[PolicyChange] = []
            for target, add, remove in plan:
                for privilege in remove:
                    recorded += await grants.remove(Grant(target.id, ACCOUNT_DOMAIN, obj, privilege))
                for privilege in add:
                    recorded += await grants.add(
                        Grant(target.id, ACCOUNT_DOMAIN, obj, privilege), created_by=principal.name
                    )
            await self._audit.write(
                session,
                entry(
                    principal.name,
                    "grants.update",
                    obj,
                    "ok",
                    {"changes": [{"principal": t.name, "add": sorted(a), "remove": sorted(r)} for t, a, r in plan]},
                ),
            )
            await PolicyVersionRepository(session).bump(recorded)
        await self.policy.reload()
        return self.uc_assignments(principal, obj)

    # -- one grant --------------------------------------------------------------------------------------

    async def revoke(self, principal: Principal, grant: Grant) -> PrincipalInfo | None:
        """Remove one stored grant (any kind: a level, a Unity Catalog privilege, a secret scope permission).

        The caller decided that `principal` may; audited as `grants.revoke` in the transaction of the change,
        in force on this replica before it returns and on the others once they reload (NOTIFY). A grant that
        is not (or no longer) there answers 404. Returns the principal that held it.
        """
        holder = self.policy.snapshot.principal(grant.principal_id)
        async with self._sessionmaker() as session, session.begin():
            changes = await GrantRepository(session).remove(grant)
            if not changes:
                raise ResourceNotFound(
                    f"No grant of {grant.privilege} on {grant.object} to principal {grant.principal_id} "
                    "(it may have been revoked already)."
                )
            await self._audit.write(
                session,
                entry(
                    principal.name,
                    "grants.revoke",
                    grant.object,
                    "ok",
                    {
                        "principal": holder.name if holder is not None else str(grant.principal_id),
                        "kind": holder.kind if holder is not None else "",
                        "privilege": grant.privilege,
                        "domain": grant.domain,
                    },
                ),
            )
            await PolicyVersionRepository(session).bump(changes)
        await self.policy.reload()
        return holder

    @staticmethod
    def _uc_principal(caller: Principal, name: str, snapshot: PolicySnapshot) -> PrincipalInfo:
        """The principal a Unity Catalog grant, grants list or SHOW GRANTS names. Account admins name anyone; another
        manager (MANAGE need not make an admin) itself and the principals of every domain it holds something in
        (gateway/authz/reach.py): the account's, where its MANAGE is held and every grant the securable's effective
        permissions show it, and its workspaces'. Anyone else it meets as a name nobody has."""
        info = resolve_principal(snapshot, name, for_account(snapshot, caller))
        if info is None:
            # Made through another replica moments ago? Decided again on the stored policy (`found`, `deciding`).
            raise UnknownHere(f"No principal named '{name.strip()}'.")
        return info


def resolve_principal(snapshot: PolicySnapshot, name: str, reach: Reach = EVERYONE) -> PrincipalInfo | None:
    """The one principal a bare name denotes (a UC `principal`, a SQL grantee, a view owner), or None: also
    when it is beyond the caller's `reach` (gateway/authz/reach.py).

    A name with '@' can only be a user; one without is a group or a service principal, and names are
    unique across kinds. Should two principals still share the name (data older than the name rules),
    the name is refused (409) instead of resolved in some order that a newcomer could exploit.
    """
    found = []
    for kind in names.kinds_for(name.strip()):
        info = reach.find(snapshot, kind, name)
        if info is not None:
            found.append(info)
    if len(found) > 1:
        raise InvalidState(
            f"The name '{name.strip()}' is held by principals of several kinds; rename one of them before granting."
        )
    if found and names.reserved(found[0].kind, found[0].name):
        # Given before the name was reserved (gateway/principals/names.py): what it would reach is not what the
        # system group's name means.
        raise InvalidState(
            f"The name '{name.strip()}' is a system group's, reserved, yet held by a {found[0].kind.replace('_', ' ')}"
            " made before it was; rename that principal first."
        )
    return found[0] if found else None


def resolve_typed(snapshot: PolicySnapshot, item: AccessControlRequest, reach: Reach) -> PrincipalInfo:
    """The principal an entry of the permissions API names by kind (`user_name`, `group_name`,
    `service_principal_name`); 404 for a name nobody holds and, alike, for one beyond the caller's `reach`."""
    named = [(field, getattr(item, field)) for field in PRINCIPAL_FIELDS if getattr(item, field)]
    if len(named) != 1:
        raise InvalidParameter("Each entry names exactly one of user_name, group_name, service_principal_name.")
    field, name = named[0]
    kind = PRINCIPAL_FIELDS[field]
    info = reach.find(snapshot, kind, str(name))
    if info is None:
        raise ResourceNotFound(f"No {kind.replace('_', ' ')} named '{str(name)[:200]}'.")
    return info


def _principal_field(info: PrincipalInfo) -> dict[str, str]:
    field = {"user": "user_name", "group": "group_name", "service_principal": "service_principal_name"}[info.kind]
    return {field: info.name}


def _privileges(raw: list[str] | None, applicable: set[str]) -> set[str]:
    if raw is None:
        return set()
    result: set[str] = set()
    for privilege in raw:
        normalised = privilege.strip().upper().replace(" ", "_")
        if normalised == "ALL_PRIVILEGES":
            # Expanded when granted; MANAGE is not part of ALL PRIVILEGES (as in Unity Catalog).
            result |= applicable - {Privilege.MANAGE.value}
            continue
        if normalised not in applicable:
            raise InvalidParameter(
                f"Privilege '{privilege}' does not apply here; use one of {', '.join(sorted(applicable))}."
            )
        result.add(normalised)
    return result
