"""Link, relink and unlink workspaces; keep the live link table in step with the database.

No two workspaces share a store namespace (gateway/core/links.py): a link or relink into a
namespace another workspace reads or writes is refused with 409 RESOURCE_ALREADY_EXISTS, checked
under a transaction-scoped advisory lock so that two replicas linking at once cannot both pass.

A link change asks the store first (`verify_link`, over HTTP) with no database transaction open, then
opens the one transaction that takes the links lock, checks again what may have changed meanwhile,
moves the rows other packages keep for the workspace (their `WorkspaceMoveHook`s, gateway/db/moves.py)
and writes the link.

A workspace's vault (where its new secret scopes keep their values) changes only while it has no scopes:
the hooks refuse it otherwise (409 INVALID_STATE, gateway/secrets/moves.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.config import (
    BUILTIN_VAULT,
    ConfigError,
    Settings,
    check_default_secret_scope,
    check_link,
    check_workspace_name,
    check_workspace_vault,
    link_namespaces,
)
from gateway.core.errors import AlreadyExists, InvalidParameter, InvalidState, ResourceNotFound
from gateway.core.links import LinkTable, WorkspaceLink, conflict_message, overlap, self_overlap
from gateway.core.numbers import whole
from gateway.core.ports import Store
from gateway.core.route_table import declared
from gateway.db.models import WorkspaceLinkRow
from gateway.db.moves import WorkspaceMoveHook
from gateway.federation.store_answers import FeatureNotServed, known_failure
from gateway.stores.client import StoreClient, Transient
from gateway.workspaces.repository import WorkspaceRepository
from gateway.workspaces.schemas import Workspace, WorkspaceChanges, WorkspaceCreate

log = logging.getLogger(__name__)

MODES = ("workspace", "dual", "central")
# What `verify_link` asks a store (both reads).
_SEARCH = declared("POST /mlflow/experiments/search")
_LIST_ARTIFACTS = declared("GET /mlflow-artifacts/artifacts")
_COLUMNS = (
    "name",
    "workspace_id",
    "mode",
    "store",
    "upstream_workspace",
    "description",
    "default_artifact_root",
    "vault",
    "default_secret_scope",
)


@dataclass(frozen=True, slots=True)
class _Relink:
    """What a PATCH would make of a workspace: the values to write and the link before and after."""

    values: dict[str, object]
    before: WorkspaceLink | None
    after: WorkspaceLink
    verify: bool  # the store must be asked (new store, mode or upstream workspace)


class WorkspaceService:
    def __init__(
        self,
        settings: Settings,
        stores: Mapping[str, Store],
        links: LinkTable,
        move_hooks: Sequence[WorkspaceMoveHook] = (),
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.links = links
        # Each package that keeps rows keyed by a workspace's id carries or drops them on a move.
        self.move_hooks = tuple(move_hooks)
        # Called when a reload finds a workspace in another store or under another id: in-process
        # caches keyed by the old store's ids (the index writer's run keys) must go.
        self.rehomed: Callable[[], None] = lambda: None
        # Awaited after a committed change that may have moved or dropped grants (the hooks moved the
        # policy version): this replica's policy reloads before the admin hears the answer.
        self.settled: Callable[[], Awaitable[object]] = _nothing

    # -- the live link table -------------------------------------------------------------------------

    def to_link(self, row: WorkspaceLinkRow) -> WorkspaceLink | None:
        store_name = self.settings.central.store if row.mode == "central" else row.store
        if not store_name or store_name not in self.settings.stores:
            log.error("workspace %s is linked to unknown store %r; it is not served", row.name, store_name)
            return None
        store = self.settings.stores[store_name]
        mirror = self.settings.central.store if row.mode == "dual" else None
        central_has_workspaces = bool(mirror) and self.settings.stores[mirror or ""].workspaces
        return WorkspaceLink(
            name=row.name,
            workspace_id=int(row.workspace_id),
            mode=row.mode,
            store=store_name,
            configured_store=row.store,
            upstream_workspace=(row.upstream_workspace or row.name) if store.workspaces else None,
            description=row.description,
            default_artifact_root=row.default_artifact_root,
            managed_by=row.managed_by,
            mirror=mirror,
            mirror_workspace=row.name if mirror and central_has_workspaces else None,
            mirror_prefix=f"{row.name}/" if mirror and not central_has_workspaces else "",
            namespaces=link_namespaces(row.name, row.mode, row.store, row.upstream_workspace, self.settings),
            vault=row.vault or "",
            default_secret_scope=row.default_secret_scope or "",
        )

    async def reload(self, session: AsyncSession) -> None:
        rows = await WorkspaceRepository(session).list()
        before = {link.name: _home(link) for link in self.links.all()}
        self.links.replace(link for row in rows if (link := self.to_link(row)) is not None)
        for link, reason in self.links.withheld():
            log.error("workspace %s is not served: %s", link.name, reason)
        if any(before.get(link.name, _home(link)) != _home(link) for link in self.links.all()):
            self.rehomed()

    async def _check_move(self, session: AsyncSession, before: WorkspaceLink | None, after: WorkspaceLink) -> None:
        """Refuses (through the hooks) a move to another store that rows still waiting would not survive."""
        if before is not None and _store_moved(before, after):
            for hook in self.move_hooks:
                await hook.check_store_move(session, before.name, before.workspace_id)

    async def _check_vault(self, session: AsyncSession, before: WorkspaceLink | None, after: WorkspaceLink) -> None:
        """Refuses (through the hooks) another vault for a workspace whose scopes keep values in the old one."""
        if before is not None and _vault(before.vault) != _vault(after.vault):
            for hook in self.move_hooks:
                await hook.check_vault_change(
                    session, before.name, before.workspace_id, _vault(before.vault), _vault(after.vault)
                )

    async def _move(
        self, session: AsyncSession, before: WorkspaceLink | None, after: WorkspaceLink | None
    ) -> str | None:
        """Each package carries or drops its rows of a moved workspace, in the caller's transaction.

        Another store (or upstream workspace): what was derived from the old one goes; another id:
        what is left carries over. Returns what the hooks tell the caller (dead letters dropped).
        """
        if before is None or after is None or _home(before) == _home(after):
            return None
        notes: list[str] = []
        if _store_moved(before, after):
            await self._check_move(session, before, after)
            for hook in self.move_hooks:
                if (note := await hook.store_moved(session, before.workspace_id)) is not None:
                    notes.append(note)
        if before.workspace_id != after.workspace_id:
            for hook in self.move_hooks:
                await hook.renumbered(session, before.workspace_id, after.workspace_id)
        log.info("workspace rehomed", extra={"ws": after.name, "store": after.store, "id": after.workspace_id})
        return " ".join(notes) or None

    async def seed_from_config(self, session: AsyncSession) -> None:
        """Config-declared workspaces are declarative: inserted or brought back to what the file says."""
        repo = WorkspaceRepository(session)
        for ws in self.settings.workspaces:
            owner = await repo.get_by_id(int(ws.id))
            if owner is not None and owner.name != ws.name:
                raise ConfigError(f"workspaces: id {ws.id} of {ws.name!r} already belongs to workspace {owner.name!r}")
            values: dict[str, object] = {
                "name": ws.name,
                "workspace_id": int(ws.id),
                "mode": ws.mode,
                "store": ws.store or None,
                "upstream_workspace": ws.upstream_workspace or None,
                "description": ws.description,
                "default_artifact_root": "",
                "managed_by": "config",
                "vault": _stored_vault(ws.vault),
                "default_secret_scope": ws.default_secret_scope,
            }
            existing = await repo.locked(ws.name)  # as an API relink locks it (GrantRepository.hold)
            if existing is not None:
                before = self.to_link(existing)
                try:
                    after = self.to_link(WorkspaceLinkRow(**values))
                    if after is not None:
                        await self._check_vault(session, before, after)
                    await self._move(session, before, after)
                except InvalidState as exc:
                    raise ConfigError(f"workspaces: {exc.message}") from exc
            await repo.upsert(values)
        await repo.notify_change()

    # -- the API -------------------------------------------------------------------------------------

    def describe(self, link: WorkspaceLink) -> Workspace:
        return Workspace(
            name=link.name,
            description=link.description,
            default_artifact_root=link.default_artifact_root,
            workspace_id=str(link.workspace_id),
            mode=link.mode,
            store=link.configured_store or "",
            upstream_workspace=link.upstream_workspace or "",
            vault=link.vault,  # absent: the built-in vault
            default_secret_scope=link.default_secret_scope,
        )

    def list(self) -> list[Workspace]:
        return [self.describe(link) for link in self.links.all()]

    def get(self, name: str) -> Workspace:
        link = self.links.get(name)
        if link is None:
            raise ResourceNotFound(f"Workspace '{name}' not found")
        return self.describe(link)

    async def create(
        self, sessionmaker: async_sessionmaker[AsyncSession], body: WorkspaceCreate
    ) -> tuple[Workspace, str | None]:
        """Link a new workspace; returns it and a warning when the store could not be checked.

        The store is asked with no transaction open; the checks are made again in the transaction
        that inserts the link, under the links lock.
        """
        try:
            check_workspace_name(body.name, where="name")
        except ConfigError as exc:
            raise InvalidParameter(str(exc)) from exc
        async with sessionmaker() as session:
            row = await self._new_row(WorkspaceRepository(session), body)
        link = self.to_link(row)
        assert link is not None  # _check_link guarantees the store exists
        warning = await self.verify_link(link)
        async with sessionmaker() as session, session.begin():
            repo = WorkspaceRepository(session)
            await repo.lock_links()
            row = await self._new_row(repo, body)
            link = self.to_link(row)
            assert link is not None
            await self._refuse_shared_namespace(repo, link)
            await repo.insert(row)
            await repo.notify_change()
        return self.describe(link), warning

    async def _new_row(self, repo: WorkspaceRepository, body: WorkspaceCreate) -> WorkspaceLinkRow:
        if await repo.get(body.name) is not None:
            raise AlreadyExists(f"Workspace '{body.name}' already exists.")
        _reject_trace_archival(body)
        mode = body.mode or ("workspace" if body.store else "central")
        store = body.store or None
        self._check_link(mode, store)
        vault = self._checked_vault(body.vault or "")
        default_scope = _checked_scope(body.default_secret_scope or "")
        workspace_id = _parse_workspace_id(body.workspace_id) or await repo.next_workspace_id()
        if await repo.get_by_id(workspace_id) is not None:
            raise AlreadyExists(f"Workspace id {workspace_id} is already used by another workspace.")
        return WorkspaceLinkRow(
            name=body.name,
            workspace_id=workspace_id,
            mode=mode,
            store=store,
            upstream_workspace=body.upstream_workspace or None,
            description=body.description or "",
            default_artifact_root=body.default_artifact_root or "",
            managed_by="api",
            vault=vault,
            default_secret_scope=default_scope,
        )

    async def update(
        self, sessionmaker: async_sessionmaker[AsyncSession], name: str, changes: WorkspaceChanges
    ) -> tuple[Workspace, str | None]:
        """Relink (store, mode, upstream workspace, id), describe a workspace or change its secret settings (vault,
        default secret scope); returns it and any warnings.

        Checked first in a short read (so a refused change never reaches the store), then the store is
        asked with no transaction open, then everything is checked again in the one transaction that
        moves the workspace's rows and writes the link.
        """
        async with sessionmaker() as session:
            repo = WorkspaceRepository(session)
            relink = await self._relink(repo, name, changes)
            await self._refuse_shared_namespace(repo, relink.after)
            await self._check_move(session, relink.before, relink.after)
            await self._check_vault(session, relink.before, relink.after)
        warning = await self.verify_link(relink.after) if relink.verify else None
        async with sessionmaker() as session, session.begin():
            repo = WorkspaceRepository(session)
            await repo.lock_links()
            await repo.locked(name)  # grants being added in it are committed first (GrantRepository.hold)
            verified = relink.after
            relink = await self._relink(repo, name, changes)
            if relink.verify and _target(relink.after) != _target(verified):
                raise InvalidState(f"Workspace '{name}' was relinked while its store was checked; try again.")
            await self._refuse_shared_namespace(repo, relink.after)
            await self._check_vault(session, relink.before, relink.after)
            note = await self._move(session, relink.before, relink.after)
            await repo.update(name, relink.values)
            await repo.notify_change()
        if relink.before is not None and _home(relink.before) != _home(relink.after):
            await self.settled()
        return self.describe(relink.after), " ".join(w for w in (warning, note) if w) or None

    async def _relink(self, repo: WorkspaceRepository, name: str, changes: WorkspaceChanges) -> _Relink:
        """Reads the workspace and refuses changes that cannot be made; the stored row is left as it is."""
        row = await repo.get(name)
        if row is None:
            raise ResourceNotFound(f"Workspace '{name}' not found")
        _refuse_config_managed(row)
        _reject_trace_archival(changes)
        values: dict[str, object] = {}
        if changes.description is not None:
            values["description"] = changes.description
        if changes.default_artifact_root is not None:
            values["default_artifact_root"] = changes.default_artifact_root
        if changes.upstream_workspace is not None:
            values["upstream_workspace"] = changes.upstream_workspace or None
        if changes.vault is not None:
            values["vault"] = self._checked_vault(changes.vault)
        if changes.default_secret_scope is not None:
            values["default_secret_scope"] = _checked_scope(changes.default_secret_scope)
        if changes.workspace_id is not None:
            workspace_id = _parse_workspace_id(changes.workspace_id)
            owner = await repo.get_by_id(workspace_id) if workspace_id else None
            if owner is not None and owner.name != name:
                raise AlreadyExists(f"Workspace id {workspace_id} is already used by another workspace.")
            values["workspace_id"] = workspace_id
        relink = changes.store is not None or changes.mode is not None
        if relink:
            store = (changes.store if changes.store is not None else row.store) or None
            mode = changes.mode or row.mode
            if changes.store and changes.mode is None and row.mode == "central":
                mode = "workspace"
            self._check_link(mode, store)
            values["store"] = store
            values["mode"] = mode
        # A transient copy: the session never sees the change before the link is written.
        changed = WorkspaceLinkRow(**{column: getattr(row, column) for column in _COLUMNS}, managed_by=row.managed_by)
        for key, value in values.items():
            setattr(changed, key, value)
        after = self.to_link(changed)
        assert after is not None
        return _Relink(values, self.to_link(row), after, relink or "upstream_workspace" in values)

    async def delete(self, sessionmaker: async_sessionmaker[AsyncSession], name: str) -> None:
        """Unlink the workspace; the store and everything in it are left untouched.

        What the gateway keeps of the workspace goes with the link (its hooks' `unlinked`: grants, index
        rows, id map), so nothing of it is inherited by a workspace linked later under the same id. A
        dual workspace with entries still pending for the central store is not unlinked.
        """
        async with sessionmaker() as session, session.begin():
            repo = WorkspaceRepository(session)
            await repo.lock_links()
            row = await repo.locked(name)
            if row is None:
                raise ResourceNotFound(f"Workspace '{name}' not found")
            _refuse_config_managed(row)
            for hook in self.move_hooks:
                await hook.check_store_move(session, name, int(row.workspace_id))
            notes = [note for hook in self.move_hooks if (note := await hook.unlinked(session, int(row.workspace_id)))]
            await repo.delete(name)
            await repo.notify_change()
        log.info("workspace unlinked", extra={"ws": name, "id": row.workspace_id, "dropped": " ".join(notes)})
        await self.settled()

    async def _refuse_shared_namespace(self, repo: WorkspaceRepository, link: WorkspaceLink) -> None:
        """409 when the link would read or write a namespace another workspace already does."""
        if (space := self_overlap(link)) is not None:
            raise AlreadyExists(conflict_message(link, None, space), status=409)
        for row in await repo.list():
            other = self.to_link(row) if row.name != link.name else None
            if other is not None and (shared := overlap(link, other)) is not None:
                raise AlreadyExists(
                    f"Workspace '{other.name}' already uses {shared[0].describe()}; a store cannot keep two "
                    f"workspaces apart in one namespace, so '{link.name}' cannot be linked there. Give it a store "
                    "of its own, or its own upstream_workspace on a store with workspaces enabled.",
                    status=409,
                )

    def _checked_vault(self, vault: str) -> str:
        """A vault the gateway is configured with, as stored ("" for the built-in one)."""
        try:
            check_workspace_vault(vault, self.settings, where="vault")
        except ConfigError as exc:
            raise InvalidParameter(str(exc)) from exc
        return _stored_vault(vault)

    def _check_link(self, mode: str, store: str | None) -> None:
        if mode not in MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        try:
            check_link(mode, store or "", self.settings, where="workspace")
        except ConfigError as exc:
            raise InvalidParameter(str(exc)) from exc

    async def verify_link(self, link: WorkspaceLink) -> str | None:
        """Prepare the store for the link and refuse one whose artifacts clients would reach around the gateway.

        Proxied artifacts (`mlflow-artifacts:/...` without a host) bring clients back to the tracking
        URI, i.e. the gateway. Any other location (s3://, file:, mlflow-artifacts://host) would let
        clients read and write artifacts past every check of the gateway.
        """
        store = StoreClient(self.stores[link.store], link.upstream_workspace)
        try:
            await self._ensure_upstream_workspace(self.stores[link.store], link)
            if link.mirror is not None and link.mirror_workspace is not None:
                # Dual: the central copies live in a namespace of their own on the central store.
                await self._ensure_upstream_workspace(self.stores[link.mirror], link, link.mirror_workspace)
            info_status, info_body = await store.fetch("GET", "/api/3.0/mlflow/server-info", idempotent=True)
            status, body = await store.fetch(
                "POST",
                _SEARCH.paths()[0],
                headers=[("Content-Type", "application/json")],
                body=b'{"max_results": 20, "view_type": "ALL"}',
                idempotent=True,
            )
            # A read of the artifact root: how a store started with --no-serve-artifacts tells it (MLflow 3.17.2's
            # server-info does not).
            listed, listing = await store.fetch("GET", _LIST_ARTIFACTS.paths()[0], idempotent=True)
        except Transient:
            message = f"store {link.store!r} is unreachable; artifact proxying could not be verified"
            log.warning("linking workspace %s: %s", link.name, message)
            return message
        if info_status == 200:
            capabilities = _json_object(info_body)
            if capabilities.get("artifact_serving_enabled") is False:
                raise InvalidParameter(
                    f"Store {link.store!r} does not serve artifacts (start it with --serve-artifacts); "
                    "clients would write artifacts around the gateway."
                )
            if link.upstream_workspace is not None and capabilities.get("workspaces_enabled") is False:
                # MLflow would refuse every call of the link (500 FEATURE_DISABLED, answered 501 NOT_IMPLEMENTED).
                raise InvalidParameter(
                    f"Store {link.store!r} runs without workspaces (start it with --enable-workspaces), but the "
                    "gateway's configuration addresses it by workspace (workspaces = true)."
                )
        # MLflow's own refusal of a feature the store was started without, matched exactly as the forwarder matches
        # it (federation/store_answers.py). A store that refuses a tracking read so (--artifacts-only; a refused
        # workspace header its server-info did not tell) refuses every call of the link: no link, naming the flag.
        if isinstance(refusal := known_failure(_SEARCH, status, body, link.name), FeatureNotServed):
            raise InvalidParameter(f"Store {link.store!r} refuses every tracking call: {refusal.message}")
        if status != 200:
            message = f"store {link.store!r} answered {status} to an experiment search"
            log.warning("linking workspace %s: %s", link.name, message)
            return message
        for experiment in _json_object(body).get("experiments", []):
            location = str(experiment.get("artifact_location", ""))
            if not location.startswith("mlflow-artifacts:/") or location.startswith("mlflow-artifacts://"):
                raise InvalidParameter(
                    f"Store {link.store!r} stores artifacts at {location!r}, which clients reach directly. "
                    "Link only stores that proxy artifacts (mlflow server --serve-artifacts with an "
                    "'mlflow-artifacts:/' default artifact root)."
                )
        if isinstance(known_failure(_LIST_ARTIFACTS, listed, listing, link.name), FeatureNotServed):
            # A store started with --no-serve-artifacts still tracks (runs, metrics, params, traces); only its
            # artifact calls answer 501 NOT_IMPLEMENTED. A tracking-only store is a choice, so a warning.
            message = (
                f"store {link.store!r} does not serve artifacts (it runs with --no-serve-artifacts): the workspace's "
                "artifact uploads and downloads answer 501 NOT_IMPLEMENTED until it is started with --serve-artifacts"
            )
            log.warning("linking workspace %s: %s", link.name, message)
            return message
        return None

    @staticmethod
    async def _ensure_upstream_workspace(store: Store, link: WorkspaceLink, name: str | None = None) -> None:
        """On a store with workspaces, the link's upstream workspace is created when it is missing."""
        name = name or link.upstream_workspace
        if name is None:
            return
        path = "/api/3.0/mlflow/workspaces"
        client = StoreClient(store)  # workspaces are managed outside any workspace
        found, _ = await client.fetch("GET", f"{path}/{name}", idempotent=True)
        if found != 404:
            return
        body = msgspec.json.encode({"name": name, "description": f"fedgate workspace {link.name}"})
        created, answer = await client.fetch("POST", path, headers=[("Content-Type", "application/json")], body=body)
        if created not in (201, 200, 409) and b"ALREADY_EXISTS" not in answer:
            raise InvalidParameter(
                f"Store {link.store!r} refused to create workspace {link.upstream_workspace!r}: "
                f"{_json_object(answer).get('message', created)}"
            )
        log.info("created workspace %s on store %s", link.upstream_workspace, link.store)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_workspace_id(value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    number = whole(value)
    if number is None or number <= 0:
        raise InvalidParameter(f"workspace_id must be a positive integer, got {str(value)[:40]!r}")
    return number


def _refuse_config_managed(row: WorkspaceLinkRow) -> None:
    if row.managed_by == "config":
        raise InvalidParameter(f"Workspace '{row.name}' is declared in the gateway's config file; change it there.")


def _checked_scope(scope: str) -> str:
    try:
        check_default_secret_scope(scope, where="default_secret_scope")
    except ConfigError as exc:
        raise InvalidParameter(str(exc)) from exc
    return scope


def _stored_vault(vault: str) -> str:
    """The built-in vault is stored as "" whether it is named or not, so that naming it is no change."""
    return "" if vault == BUILTIN_VAULT else vault


def _vault(stored: str) -> str:
    """The vault a workspace's new scopes go to."""
    return stored or BUILTIN_VAULT


def _reject_trace_archival(body: WorkspaceChanges) -> None:
    if body.trace_archival_config:
        raise InvalidParameter("trace_archival_config is configured on the store, not through the gateway.")


def _home(link: WorkspaceLink) -> tuple[str, str | None, int]:
    """Where a workspace's data lives, and the id the account knows it by."""
    return link.store, link.upstream_workspace, link.workspace_id


def _store_moved(before: WorkspaceLink, after: WorkspaceLink) -> bool:
    """Its data now comes from another store (or another workspace of the same store)."""
    return before.store != after.store or before.upstream_workspace != after.upstream_workspace


def _target(link: WorkspaceLink) -> tuple[object, ...]:
    """What `verify_link` asks the stores about."""
    return link.store, link.upstream_workspace, link.mirror, link.mirror_workspace


async def _nothing() -> None:
    return None
