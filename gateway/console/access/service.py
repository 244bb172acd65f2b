"""Who can see what, computed from what the gateway decides with.

Every answer is read from the policy snapshot in force (`LivePolicy.snapshot`): the level or permission
shown as effective is the enforcer's own answer (`Authorizer.level`, `SecretScopes.permission`,
`PolicySnapshot.held` and `allows` for Unity Catalog), and where it comes from is the explanation of the
same snapshot (`gateway.authz.explain`): the stored grants behind it, held by the principal or by a group
it is in (through which groups), on the object or on one that covers it. A revoke removes one of those
grants through `AccessService.revoke` (or a secret scope's `users` entry through `SecretScopes`), audited
in the change's transaction and in force on every replica as any grant change is.

Who may look: account admins see everyone and everything; a workspace admin (CAN_MANAGE on a workspace)
sees the principals of the workspaces it administers, as the rule every call that names a principal follows
defines them (`gateway.authz.reach.for_workspaces`: itself and its groups, those holding something there
directly or through a group, and groups with such a member at any depth), their permissions there, and the
audit rows about those workspaces, and revokes only there. A principal outside what the viewer may see
answers as one that does not exist, and is left out of every list (a group's members and nested groups too)
and of every count (a group's member count, how many principals a group's grant affects).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.pages import AuditPageTokens, PageTokenInvalid
from gateway.audit.repository import AuditRepository, Places
from gateway.authz.explain import Explainer, Source
from gateway.authz.levels import (
    ACCOUNT_DOMAIN,
    EXPERIMENT_LEVELS,
    MODEL_LEVELS,
    RANK,
    Level,
    Privilege,
    uc_parents,
    workspace_domain,
    workspace_object,
)
from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
from gateway.authz.ports import Workspaces
from gateway.authz.reach import Reach, for_workspaces
from gateway.authz.repository import GrantRepository, ModelIdRepository
from gateway.authz.schemas import AuditEntries, audit_entries
from gateway.authz.service import AccessService
from gateway.console.access.schemas import (
    ConsoleViewer,
    EffectivePermissions,
    GrantRef,
    GroupPath,
    NestedGroup,
    ObjectAccess,
    PrincipalDetail,
    PrincipalPage,
    PrincipalRef,
    PrincipalSummary,
    RevokeRequest,
    RevokeResponse,
    SourceItem,
)
from gateway.core.errors import InvalidParameter, PermissionDenied, ResourceNotFound
from gateway.core.links import WorkspaceLink
from gateway.core.numbers import is_number
from gateway.core.principal import Principal
from gateway.index.search import experiment_names as indexed_experiment_names
from gateway.principals.groups import MAX_GROUP_DEPTH
from gateway.secrets.repository import ScopeRepository, StoredScope
from gateway.secrets.service import PERMISSION_RANK, WORKSPACE_USERS, SecretScopes, scope_object
from gateway.sql.repository import StoredView, ViewRepository

NOT_ALLOWED = "Only account admins and workspace admins may see who can see what."
KIND_ORDER = {"user": 0, "service_principal": 1, "group": 2}
SECRET_PERMISSIONS = tuple(PERMISSION_RANK)
UC_PRIVILEGES = tuple(p.value for p in Privilege)
SYSTEM_CATALOG = "system"
MAX_PAGE = 500


@dataclass(frozen=True)
class Viewer:
    """The person looking, and the workspaces it administers (every one for an account admin)."""

    principal: Principal
    workspaces: dict[int, WorkspaceLink]

    @property
    def reach(self) -> Reach:
        """The principals it sees: those of its workspaces (gateway/authz/reach.py); everyone for an account admin."""
        return for_workspaces(self.principal, (workspace_domain(w) for w in self.workspaces))

    @property
    def account_admin(self) -> bool:
        return self.principal.account_admin

    def administers(self, workspace_id: int) -> bool:
        return self.account_admin or workspace_id in self.workspaces


@dataclass
class _Tree:
    """Who is directly in which group, read off the snapshot once per answer; counted as the viewer sees them.

    A count takes in only the members the viewer may see (`visible`, the viewer's reach): counting the others
    would tell a workspace admin that a group has members beyond its workspaces, which the API tells no workspace
    admin either (SCIM is the account admins')."""

    snapshot: PolicySnapshot
    visible: Callable[[PrincipalInfo], bool]
    members: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    _everyone_in: dict[int, int] = field(default_factory=dict)
    _seen: dict[int, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for info in self.snapshot.principals.values():
            for group in self.snapshot.direct_groups(info.id):
                self.members[group].append(info.id)

    def sees(self, principal_id: int) -> bool:
        seen = self._seen.get(principal_id)
        if seen is None:
            info = self.snapshot.principal(principal_id)
            seen = self._seen[principal_id] = info is not None and self.visible(info)
        return seen

    def member_count(self, group: int) -> int:
        """How many of the group's direct members the viewer sees."""
        return sum(1 for member in self.members.get(group, ()) if self.sees(member))

    def everyone_in(self, group: int) -> int:
        """How many principals the viewer sees are in the group, directly or through groups inside it."""
        count = self._everyone_in.get(group)
        if count is None:
            seen: set[int] = set()
            frontier = [group]
            for _ in range(MAX_GROUP_DEPTH + 1):
                frontier = [m for g in frontier for m in self.members.get(g, ()) if m not in seen]
                if not frontier:
                    break
                seen.update(frontier)
            count = self._everyone_in[group] = sum(1 for member in seen if self.sees(member))
        return count


def _ref(info: PrincipalInfo) -> PrincipalRef:
    return PrincipalRef(id=info.id, kind=info.kind, name=info.name)


def _summary(info: PrincipalInfo, member_count: int | None = None) -> PrincipalSummary:
    return PrincipalSummary(
        id=info.id,
        kind=info.kind,
        name=info.name,
        display_name=info.display_name,
        active=info.active,
        account_admin=info.account_admin,
        member_count=member_count,
    )


def _kind_word(info: PrincipalInfo) -> str:
    return {"group": "group ", "service_principal": "service principal "}.get(info.kind, "")


class AccessConsole:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        access: AccessService,
        secrets: SecretScopes,
        workspaces: Workspaces,
        audit_pages: AuditPageTokens,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._access = access
        self._secrets = secrets
        self._workspaces = workspaces
        self._audit_pages = audit_pages

    @property
    def _snapshot(self) -> PolicySnapshot:
        return self._access.policy.snapshot

    # -- who looks --------------------------------------------------------------------------------------

    def viewer(self, principal: Principal) -> Viewer | None:
        """The viewer, or None when the principal may not open the access console at all."""
        links = self._workspaces.links.all()
        if principal.account_admin:
            return Viewer(principal, {link.workspace_id: link for link in links})
        authorizer = self._access.authorizer
        administered = {
            link.workspace_id: link
            for link in links
            if authorizer.allows(principal, link.workspace_id, workspace_object(link.workspace_id), Level.CAN_MANAGE)
        }
        return Viewer(principal, administered) if administered else None

    async def caught_up(self, principal: Principal) -> Principal | None:
        """The principal as the stored policy has it, when this replica was behind it (`Authorizer.caught_up`)."""
        return await self._access.authorizer.caught_up(principal)

    def require(self, principal: Principal) -> Viewer:
        viewer = self.viewer(principal)
        if viewer is None:
            raise PermissionDenied(NOT_ALLOWED)
        return viewer

    def describe(self, viewer: Viewer) -> ConsoleViewer:
        return ConsoleViewer(
            account_admin=viewer.account_admin,
            workspaces=sorted(link.name for link in viewer.workspaces.values()),
        )

    def _target(self, viewer: Viewer, principal_id: int) -> PrincipalInfo:
        info = self._snapshot.principal(principal_id)
        if info is None or not viewer.reach.sees(self._snapshot, info):
            raise ResourceNotFound(f"No principal with id {principal_id}.")
        return info

    # -- principals and groups --------------------------------------------------------------------------

    def principals(
        self, viewer: Viewer, *, kind: str | None, text: str | None, page_token: str | None, max_results: int
    ) -> PrincipalPage:
        if kind is not None and kind not in KIND_ORDER:
            raise InvalidParameter(f"kind '{kind[:40]}' is not valid; use user, service_principal or group.")
        offset = _offset(page_token)
        wanted = (text or "").strip().casefold()
        visible = viewer.reach.judge(self._snapshot)
        tree = _Tree(self._snapshot, visible)
        # Only what the viewer sees is listed, and paged: a page token counting the others too would tell a
        # workspace admin how many principals beyond its reach match and where they sort among those it sees.
        found = sorted(
            (
                info
                for info in self._snapshot.principals.values()
                if (kind is None or info.kind == kind)
                and (not wanted or wanted in info.name.casefold() or wanted in info.display_name.casefold())
                and visible(info)
            ),
            key=lambda info: (KIND_ORDER.get(info.kind, 9), info.name),
        )
        end = offset + max_results
        page = [
            _summary(info, tree.member_count(info.id) if info.kind == "group" else None) for info in found[offset:end]
        ]
        return PrincipalPage(principals=page, next_page_token=str(end) if end < len(found) else None)

    def principal(self, viewer: Viewer, principal_id: int) -> PrincipalDetail:
        info = self._target(viewer, principal_id)
        snapshot = self._snapshot
        visible = viewer.reach.judge(snapshot)
        explainer = Explainer(snapshot, principal_id)
        groups = []
        for group_id in sorted(explainer.subjects - {principal_id}, key=lambda g: (len(explainer.chain(g)), g)):
            group = snapshot.principal(group_id)
            if group is None or not visible(group):
                continue
            via = [snapshot.principal(g) for g in explainer.chain(group_id)[:-1]]
            groups.append(GroupPath(group=_ref(group), via=[_ref(g) for g in via if g is not None]))
        detail = PrincipalDetail(principal=_summary(info), groups=groups)
        if info.kind == "group":
            tree = _Tree(snapshot, visible)
            members = [snapshot.principal(m) for m in tree.members.get(principal_id, ())]
            detail.members = sorted(
                (
                    _summary(m, tree.member_count(m.id) if m.kind == "group" else None)
                    for m in members
                    if m is not None and visible(m)
                ),
                key=lambda s: (KIND_ORDER.get(s.kind, 9), s.name),
            )
            detail.principal.member_count = tree.member_count(principal_id)
            detail.nested_groups = self._nested(tree, visible, principal_id, depth=0)
        return detail

    def _nested(
        self, tree: _Tree, visible: Callable[[PrincipalInfo], bool], group_id: int, depth: int
    ) -> list[NestedGroup]:
        if depth >= MAX_GROUP_DEPTH:
            return []
        found = []
        for member in sorted(tree.members.get(group_id, ())):
            info = self._snapshot.principal(member)
            if info is not None and info.kind == "group" and visible(info):
                found.append(NestedGroup(group=_ref(info), members=self._nested(tree, visible, member, depth + 1)))
        return found

    # -- effective permissions --------------------------------------------------------------------------

    async def effective(self, viewer: Viewer, principal_id: int) -> EffectivePermissions:
        info = self._target(viewer, principal_id)
        snapshot = self._snapshot
        target = Principal(
            name=info.name,
            kind=info.kind,
            account_admin=info.account_admin,
            id=info.id,
            subjects=snapshot.subjects(info.id),
        )
        explainer = Explainer(snapshot, info.id)
        links = sorted(viewer.workspaces.values(), key=lambda link: link.name)
        # Only where it holds anything can it have anything (an account admin's everything is said once).
        holding = [w for w in links if snapshot.holds_in(explainer.subjects, workspace_domain(w.workspace_id))]
        async with self._sessionmaker() as session:
            owned = await GrantRepository(session).self_granted(info.id, info.name)
            scopes = {link.workspace_id: await ScopeRepository(session).all(link.workspace_id) for link in holding}
            view_names = [obj.split(":", 1)[1] for obj in snapshot.securables if _is_view(obj)]
            views = await ViewRepository(session).get(view_names)
            model_ids = {
                link.workspace_id: {
                    obj.split("/", 1)[1]
                    for obj in explainer.objects(workspace_domain(link.workspace_id), ["CAN_USE"], "registered_model:")
                }
                for link in holding
            }
            model_names = {
                workspace_id: await ModelIdRepository(session).names_by_id(workspace_id, ids)
                for workspace_id, ids in model_ids.items()
            }
            experiment_names = {
                link.workspace_id: await indexed_experiment_names(
                    session,
                    link.workspace_id,
                    [
                        obj.split("/", 1)[1]
                        for obj in explainer.objects(workspace_domain(link.workspace_id), ["CAN_USE"], "experiment:")
                    ],
                )
                for link in holding
            }
        words = _Words(
            snapshot,
            info,
            _Tree(snapshot, viewer.reach.judge(snapshot)),
            owned,
            {link.workspace_id: link.name for link in links},
        )
        result = EffectivePermissions(
            principal=_summary(info),
            account_admin=info.account_admin,
            workspaces=[],
            experiments=[],
            registered_models=[],
            secret_scopes=[],
            system_tables=[],
            limited_to=None if viewer.account_admin else [link.name for link in links],
        )
        authorizer = self._access.authorizer
        for link in links:
            workspace_id, domain = link.workspace_id, workspace_domain(link.workspace_id)
            obj = workspace_object(workspace_id)
            sources = explainer.sources(domain, obj)
            if sources or snapshot.holds_in(explainer.subjects, domain) or info.account_admin:
                level = authorizer.level(target, workspace_id, obj)
                result.workspaces.append(
                    ObjectAccess(
                        kind="workspace",
                        name=link.name,
                        workspace=link.name,
                        object=obj,
                        effective=level,
                        covers=_covers(level),
                        sources=[words.item(s) for s in sources],
                    )
                )
            for found in sorted(explainer.objects(domain, ["CAN_USE"]), key=_natural):
                kind, _, rest = found.partition(":")
                object_id = rest.partition("/")[2]
                levels: tuple[Level, ...]
                if kind == "experiment":
                    levels, bucket = EXPERIMENT_LEVELS, result.experiments
                    named = experiment_names.get(workspace_id, {}).get(object_id)
                    label = f"{named} (experiment {object_id})" if named else f"experiment {object_id}"
                elif kind == "registered_model":
                    levels, bucket = MODEL_LEVELS, result.registered_models
                    label = model_names.get(workspace_id, {}).get(object_id, f"model {object_id}")
                else:
                    continue
                applicable = {level.value for level in levels}
                bucket.append(
                    ObjectAccess(
                        kind=kind,
                        name=label,
                        workspace=link.name,
                        object=found,
                        effective=_at_least_read(authorizer.level(target, workspace_id, found)),
                        sources=[words.item(s) for s in explainer.sources(domain, found) if s.privilege in applicable],
                    )
                )
            for scope in scopes.get(workspace_id, []):
                access = self._scope_access(target, explainer, words, link, scope)
                if access is not None:
                    result.secret_scopes.append(access)
        result.system_tables = self._securables(viewer, target, explainer, words, views)
        return result

    def _scope_access(
        self, target: Principal, explainer: Explainer, words: _Words, link: WorkspaceLink, scope: StoredScope
    ) -> ObjectAccess | None:
        permission = self._secrets.permission(target, link, scope.name, scope.users_permission)
        domain, obj = workspace_domain(link.workspace_id), scope_object(link.workspace_id, scope.name)
        items = []
        for source in explainer.sources(domain, obj):
            if source.privilege in PERMISSION_RANK:
                items.append(words.item(source))
            elif source.privilege == Level.CAN_MANAGE.value:  # a workspace admin manages every scope
                items.append(words.item(source, gives="MANAGE"))
        if scope.users_permission in PERMISSION_RANK and self._secrets_user(target, link):
            items.append(words.workspace_users(link, obj, str(scope.users_permission)))
        if permission is None or (not items and target.account_admin):
            return None
        return ObjectAccess(
            kind="secret_scope",
            name=scope.name,
            workspace=link.name,
            object=obj,
            effective=permission,
            sources=items,
        )

    def _secrets_user(self, target: Principal, link: WorkspaceLink) -> bool:
        return self._access.authorizer.allows(
            target, link.workspace_id, workspace_object(link.workspace_id), Level.CAN_USE
        )

    def _securables(
        self, viewer: Viewer, target: Principal, explainer: Explainer, words: _Words, views: dict[str, StoredView]
    ) -> list[ObjectAccess]:
        snapshot = self._snapshot
        found = []
        for obj in sorted(snapshot.securables, key=_securable_order):
            if not self._may_see_grants(viewer, obj):
                continue
            kind, _, name = obj.partition(":")
            view = views.get(name) if _is_view(obj) else None
            owner = view.owner if view is not None else None
            sources = explainer.sources(ACCOUNT_DOMAIN, obj)
            if _is_view(obj) and not sources and owner != target.name:
                continue
            held = sorted(snapshot.held(target.subjects, ACCOUNT_DOMAIN, obj))
            can_read = None
            if kind == "table":
                can_read = target.account_admin or all(
                    snapshot.allows(target.subjects, ACCOUNT_DOMAIN, securable, privilege)
                    for securable, privilege in _read_needs(obj)
                )
            found.append(
                ObjectAccess(
                    kind="view" if _is_view(obj) else kind,
                    name=name,
                    object=obj,
                    effective=", ".join(held) or None,
                    privileges=held,
                    can_read=can_read,
                    owner=owner,
                    sources=[words.item(s) for s in sources],
                )
            )
        return found

    def _may_see_grants(self, viewer: Viewer, obj: str) -> bool:
        try:
            self._access.check_uc_manager(viewer.principal, obj)
        except PermissionDenied:
            return False
        return True

    # -- revoke -----------------------------------------------------------------------------------------

    async def revoke(self, viewer: Viewer, request: RevokeRequest) -> RevokeResponse:
        obj = request.object.strip()
        if request.workspace_users:
            link, scope = self._scope_of(viewer, obj)
            await self._secrets.delete_acl(viewer.principal, link, scope, WORKSPACE_USERS)
            return RevokeResponse(
                revoked=GrantRef(principal_id=0, domain=workspace_domain(link.workspace_id), object=obj, privilege=""),
                holder=None,
            )
        if request.principal_id is None or not obj or not request.privilege or not request.domain:
            raise InvalidParameter("Name the grant to revoke: principal_id, domain, object and privilege.")
        grant = Grant(request.principal_id, request.domain, obj, request.privilege)
        if not grant.valid():
            raise InvalidParameter("That is not a grant: its domain, object or privilege is malformed.")
        if grant.domain == ACCOUNT_DOMAIN:
            self._access.check_uc_manager(viewer.principal, grant.object)
        else:
            workspace_id = _workspace_id(grant.domain)
            place = grant.object.split(":", 1)[-1]
            if workspace_id is None or not (place == grant.domain or place.startswith(f"{grant.domain}/")):
                raise InvalidParameter(f"The object {grant.object} is not in the domain {grant.domain}.")
            if not viewer.administers(workspace_id):
                raise PermissionDenied(f"{viewer.principal.name} does not administer the workspace of {grant.object}.")
        holder = await self._access.revoke(viewer.principal, grant)
        return RevokeResponse(
            revoked=GrantRef(
                principal_id=grant.principal_id, domain=grant.domain, object=grant.object, privilege=grant.privilege
            ),
            holder=_ref(holder) if holder is not None else None,
        )

    def _scope_of(self, viewer: Viewer, obj: str) -> tuple[WorkspaceLink, str]:
        kind, _, rest = obj.partition(":")
        domain, _, scope = rest.partition("/")
        workspace_id = _workspace_id(domain)
        if kind != "secret_scope" or workspace_id is None or not scope:
            raise InvalidParameter("workspace_users revokes a secret scope's `users` entry: name the scope's object.")
        # Whether the viewer administers it comes first, in words of the request alone: a workspace of another's
        # and an id nobody has answer alike, neither telling the other workspace's name.
        if not viewer.administers(workspace_id):
            raise PermissionDenied(f"{viewer.principal.name} does not administer the workspace of {obj[:300]}.")
        link = self._workspaces.links.by_id(workspace_id)
        if link is None:
            raise ResourceNotFound(f"No workspace with id {workspace_id}.")
        return link, scope

    # -- the audit log ----------------------------------------------------------------------------------

    async def audit(
        self,
        viewer: Viewer,
        *,
        actor: str | None,
        action: str | None,
        target: str | None,
        workspace: str | None,
        outcome: str | None,
        since: datetime | None,
        until: datetime | None,
        page_token: str | None,
        max_results: int,
    ) -> AuditEntries:
        links: Iterable[WorkspaceLink] | None = None if viewer.account_admin else viewer.workspaces.values()
        if workspace:
            chosen = self._workspaces.links.get(workspace.strip())
            if chosen is None or not viewer.administers(chosen.workspace_id):
                # A workspace the viewer may not see is one with no rows, as one that does not exist.
                return AuditEntries(entries=[])
            links = [chosen]
        before = self._audit_row(page_token) if page_token else None
        async with self._sessionmaker() as session:
            rows = await AuditRepository(session).search(
                before_id=before,
                since=since,
                until=until,
                actor=(actor or "").strip() or None,
                action=(action or "").strip() or None,
                target_prefix=(target or "").strip() or None,
                outcome=(outcome or "").strip() or None,
                within=_places(links) if links is not None else None,
                limit=max_results,
            )
        # Ids and tokens that are ids are the account's whole sequence: a workspace admin's page shows neither.
        return audit_entries(rows, max_results, ids=viewer.account_admin, token=self._audit_pages.seal)

    def _audit_row(self, page_token: str) -> int:
        try:
            return self._audit_pages.open(page_token)
        except PageTokenInvalid:
            raise InvalidParameter("page_token is not one this API gave.") from None


class _Words:
    """A source in a person's words, with the grant that revokes it."""

    def __init__(
        self,
        snapshot: PolicySnapshot,
        info: PrincipalInfo,
        tree: _Tree,
        owned: set[tuple[str, str, str]],
        workspace_names: dict[int, str],
    ) -> None:
        self._snapshot = snapshot
        self._info = info
        self._tree = tree
        self._owned = owned
        self._workspace_names = workspace_names

    def _object_words(self, obj: str) -> str:
        kind, _, rest = obj.partition(":")
        if kind == "workspace":
            workspace_id = _workspace_id(rest)
            return f"/workspaces/{self._workspace_names.get(workspace_id or -1, rest)}"
        return f"{kind} {rest}"

    def item(self, source: Source, gives: str | None = None) -> SourceItem:
        holder = self._snapshot.principal(source.holder)
        via = [self._snapshot.principal(g) for g in source.chain[:-1]]
        grant = source.grant
        owner = (
            not source.chain
            and source.inherited_from is None
            and (grant.domain, grant.object, grant.privilege) in self._owned
            and grant.privilege in (Level.CAN_MANAGE.value, "MANAGE")
        )
        origin = "owner" if owner else source.origin
        holder_name = f"{_kind_word(holder)}{holder.name}" if holder is not None else f"principal {source.holder}"
        if not source.chain:
            whom = f"granted to {self._info.name} directly"
        else:
            path = ", ".join(p.name for p in via if p is not None)
            whom = f"granted to {holder_name}" + (
                f", which {self._info.name} is in through {path}" if path else f", which {self._info.name} is in"
            )
        if owner:
            description = f"{self._info.name} created it: the owner's {grant.privilege}, granted at creation"
        elif source.inherited_from is not None:
            description = f"{grant.privilege} on {self._object_words(source.inherited_from)}, {whom}"
        else:
            description = f"{grant.privilege} {whom}"
        if gives is not None:
            description += f" (gives {gives} here)"
        return SourceItem(
            privilege=source.privilege,
            origin=origin,
            holder=_ref(holder) if holder is not None else None,
            via=[_ref(p) for p in via if p is not None],
            inherited_from=self._object_words(source.inherited_from) if source.inherited_from else None,
            gives=gives,
            grant=GrantRef(
                principal_id=grant.principal_id, domain=grant.domain, object=grant.object, privilege=grant.privilege
            ),
            affects=self._tree.everyone_in(source.holder) if holder is not None and holder.kind == "group" else None,
            description=description,
        )

    def workspace_users(self, link: WorkspaceLink, obj: str, permission: str) -> SourceItem:
        return SourceItem(
            privilege=permission,
            origin="workspace users",
            via=[],
            inherited_from=f"/workspaces/{link.name}",
            description=(
                f"the scope's `{WORKSPACE_USERS}` entry: every user of {link.name} (CAN_USE or more on the "
                f"workspace) holds {permission}"
            ),
        )


def _offset(token: str | None) -> int:
    if not token:
        return 0
    if not is_number(token):
        raise InvalidParameter("page_token is not one this API gave.")
    return int(token)


def _workspace_id(domain: str) -> int | None:
    if domain.startswith("w") and is_number(domain[1:]):
        return int(domain[1:])
    return None


def _covers(level: str | None) -> str | None:
    if level is None:
        return "nothing on the workspace itself: it sees the workspace because it holds grants inside it"
    if level == Level.CAN_USE.value:
        return "enters the workspace and creates experiments and models of its own"
    if level == Level.CAN_MANAGE.value:
        return "CAN_MANAGE on every experiment and registered model, and MANAGE on every secret scope, in it"
    return f"{level} on every experiment and registered model in it"


def _at_least_read(level: str | None) -> str | None:
    return level if level is not None and RANK[level] >= RANK[Level.CAN_READ] else None


def _natural(obj: str) -> tuple[str, int, str]:
    rest = obj.rsplit("/", 1)[-1]
    return (obj.split("/", 1)[0], int(rest) if is_number(rest) else 1 << 62, rest)


def _is_view(obj: str) -> bool:
    kind, _, name = obj.partition(":")
    return kind == "table" and not name.startswith(f"{SYSTEM_CATALOG}.")


def _securable_order(obj: str) -> tuple[int, str]:
    kind, _, name = obj.partition(":")
    return ({"catalog": 0, "schema": 1}.get(kind, 2), name)


def _read_needs(obj: str) -> Sequence[tuple[str, str]]:
    """What reading a table or view takes (docs/access-control.md): SELECT on it, USE SCHEMA, USE CATALOG."""
    schema, catalog = uc_parents(obj)
    return ((catalog, Privilege.USE_CATALOG), (schema, Privilege.USE_SCHEMA), (obj, Privilege.SELECT))


def _places(links: Iterable[WorkspaceLink]) -> Places:
    targets: set[str] = set()
    prefixes: set[str] = set()
    details: set[tuple[str, str]] = set()
    for link in links:
        domain = workspace_domain(link.workspace_id)
        targets.add(workspace_object(link.workspace_id))
        prefixes.update(f"{kind}:{domain}/" for kind in ("experiment", "registered_model", "secret_scope"))
        details.update({("workspace", link.name), ("workspace_id", str(link.workspace_id))})
    return Places(frozenset(targets), frozenset(prefixes), frozenset(details))
