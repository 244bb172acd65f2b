"""The files of protected model versions: where they lie, kept in step with the registry (a guard `Protection`).

A model version's files stay where it was made from: its source run's or logged model's artifact folder (the
store's download location of the version, `model-versions/get-download-uri`). A version in Staging or Production,
or holding an alias, is what those stages and aliases serve, and changing it asks a level of its registered model
(`authz/levels.py`, `files_level`); an artifact write that changes its files must ask the same, else anyone who may
edit the experiment replaces what Production serves (docs/registry.md, "A protected version's files"). A version
made by someone who could not write those files (tagged `fedgate.source_read_only` by the guard at creation) protects
nothing: otherwise a reader of a run froze it for its owner with a version of it in a model of their own.

Where each protected version's files lie is kept in PostgreSQL (`registry_protected_sources`, migration 0048), so
the guard decides an artifact write with one indexed read of its experiment's rows (or its run's or logged model's),
the same on every replica:

- after every registry write the store accepted that may move a stage or an alias, or delete or rename versions
  (federation/guard/models.py, `MOVES_PROTECTION`: MLflow's transition-stage, which the workflow's approvals and
  direct transitions send too, set and delete alias, a version's tags on a store without stages, deletions and
  renames), the model's rows are written again from the store (`changed`);
- a workspace is read whole once (`registry_protection_scans`) before its first artifact write is decided: the
  versions protected before the gateway kept these rows, and after a refresh that failed (`changed` forgets the
  workspace's scan, so the next write reads the store again, or is refused while the store cannot be read).

Each worker keeps the rows of the workspaces it decided writes in (`_kept`) while its LISTEN connection on
`SOURCES_CHANNEL` is in place: every change of the rows NOTIFYs the workspace's id at commit, and a worker forgets
what it kept of it (its own changes at once, before the write that made them answers). While the listener is down,
or for a workspace not kept, the rows are read from PostgreSQL. A read that a change overtook is not kept (a
generation counter), so a kept set is never older than the last notification.

Refreshes and scans of one workspace take turns (an advisory lock), each reading the store after it has the lock,
so the last one to write read the newest state. Changes made to a store around the gateway are seen at its next scan
only (docs/registry.md, Limits).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

import msgspec
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.authz.levels import files_level
from gateway.core.errors import StoreUnavailable
from gateway.core.links import WorkspaceLink
from gateway.core.reserved import SOURCE_READ_ONLY_TAG, folded
from gateway.db.locks import LockClass, autocommit_connection, held
from gateway.db.models import RegistryProtectedSourceRow, RegistryProtectionScanRow
from gateway.federation.guard.ports import ProtectedFiles
from gateway.registry.repository import RegistryRepository
from gateway.registry.schemas import ModelVersion
from gateway.registry.store import STAGE_ALIASES, Fetch, ModelAlias, VersionsPage, tagged_stage

log = logging.getLogger(__name__)

_EXPERIMENT_ID = re.compile(r"^[0-9]{1,19}\Z")
_RUN_ID = re.compile(r"^[0-9a-f]{32}\Z")
_PROTECTED_STAGES = {"staging": "Staging", "production": "Production"}
SEARCH_PAGE = 1000
# How long a refresh or scan waits for another one of the same workspace (a large scan), then fails (and is retried
# at the next write, as a failed refresh is).
LOCK_WAIT_SECONDS = 60.0

# NOTIFY'd with a workspace's id when its rows changed (a refresh, a scan, a move of the workspace).
SOURCES_CHANNEL = "fedgate_registry_sources"

ModelId = Callable[[WorkspaceLink, str], Awaitable[str | None]]  # (link, name) -> the gateway's id, adopting
ExperimentOf = Callable[[WorkspaceLink, str, str], Awaitable[str | None]]  # (link, kind, id) -> experiment id


@dataclass(frozen=True, slots=True)
class Place:
    """Where a version's files lie: an artifact path of the store's proxy, and the run or logged model holding it."""

    path: str  # <experiment>/<run>/artifacts/model, <experiment>/models/<m-id>/artifacts
    experiment_id: str
    object_id: str
    object_path: str  # within the run's or logged model's folder ("": the whole of it)


@dataclass(frozen=True, slots=True)
class _Row:
    """One row of `registry_protected_sources`, as a worker keeps it."""

    model_id: str
    version: str
    name: str
    stage: str
    aliases: tuple[str, ...]
    path: tuple[str, ...]
    experiment_id: str
    object_id: str
    object_path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Protected:
    version: str
    stage: str
    aliases: tuple[str, ...]
    place: Place


class _Model(msgspec.Struct):
    name: str
    aliases: list[ModelAlias] = msgspec.field(default_factory=list)


class _Models(msgspec.Struct):
    registered_models: list[_Model] = msgspec.field(default_factory=list)
    next_page_token: str | None = None


class _ModelAnswer(msgspec.Struct):
    registered_model: _Model


class _DownloadUri(msgspec.Struct):
    artifact_uri: str = ""


class _VersionAnswer(msgspec.Struct):
    model_version: ModelVersion


class ProtectedSources:
    """`Protection` of the guard (federation/guard/ports.py), kept in `registry_protected_sources`."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        fetch: Fetch,
        model_id: ModelId,
        experiment_of: ExperimentOf,
        stageless: Callable[[WorkspaceLink], bool] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._fetch = fetch
        self._model_id = model_id
        self._experiment_of = experiment_of
        self._stageless = stageless or (lambda link: False)
        self._kept: dict[int, list[_Row]] = {}  # workspace id -> its rows, while the listener is in place
        self._live = False
        self._generation = 0  # moves on with every notification, and when the listener is made or lost

    # -- what this worker keeps ----------------------------------------------------------------------

    def listening(self) -> None:
        """The LISTEN on SOURCES_CHANNEL is (again) in place: what was kept may have missed a change."""
        self._forget_all()
        self._live = True

    def not_listening(self) -> None:
        """The listener dropped: notifications may be missed, so nothing is kept until it is back."""
        self._live = False
        self._forget_all()

    def notified(self, payload: str) -> None:
        """A workspace's rows changed (this worker's or another's change)."""
        self._generation += 1
        try:
            self._kept.pop(int(payload), None)
        except ValueError:
            self._kept.clear()

    def _forget_all(self) -> None:
        self._generation += 1
        self._kept.clear()

    def _forget(self, workspace_id: int) -> None:
        self._generation += 1
        self._kept.pop(workspace_id, None)

    # -- the guard's reads ---------------------------------------------------------------------------

    async def at_path(self, link: WorkspaceLink, path: str) -> list[ProtectedFiles]:
        parts = _folded(path)
        if not parts or not _EXPERIMENT_ID.match(parts[0]):
            return []  # a path naming no experiment needs CAN_MANAGE on the workspace, which manages every model
        rows = await self._rows(link)
        return await self._judged([row for row in rows if row.experiment_id == parts[0] and _overlap(parts, row.path)])

    async def in_object(self, link: WorkspaceLink, object_id: str, object_path: str) -> list[ProtectedFiles]:
        parts = _folded(object_path)
        rows = await self._rows(link)
        return await self._judged(
            [row for row in rows if row.object_id == object_id and _overlap(parts, row.object_path)]
        )

    async def _rows(self, link: WorkspaceLink) -> list[_Row]:
        """The workspace's rows, once it was scanned (scanned now if it never was): kept, or read in one statement
        (the scan's row joined with the workspace's rows; none: one row of NULLs; not scanned: no row)."""
        if self._live and (kept := self._kept.get(link.workspace_id)) is not None:
            return kept
        scans, sources = RegistryProtectionScanRow, RegistryProtectedSourceRow
        statement = (
            select(scans.workspace_id, sources)
            .select_from(scans)
            .outerjoin(sources, sources.workspace_id == scans.workspace_id)
            .where(scans.workspace_id == link.workspace_id)
        )
        for _ in range(2):
            generation = self._generation
            async with self._sessionmaker() as session:
                found = (await session.execute(statement)).all()
            if found:
                rows = [_row(row) for _, row in found if row is not None]
                if self._live and generation == self._generation:
                    self._kept[link.workspace_id] = rows
                return rows
            try:
                await self.scan(link)
            except (TimeoutError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise StoreUnavailable(
                    f"The registry of workspace '{link.name}' could not be read; try again shortly."
                ) from exc
        raise StoreUnavailable(f"The registry of workspace '{link.name}' could not be read; try again shortly.")

    async def _judged(self, rows: list[_Row]) -> list[ProtectedFiles]:
        """Each version's level, with its model's protected aliases as they are now."""
        if not rows:
            return []
        found: list[ProtectedFiles] = []
        async with self._sessionmaker() as session:
            repository = RegistryRepository(session)
            protected: dict[str, list[str]] = {}
            for row in rows:
                if row.model_id not in protected:
                    protected[row.model_id] = await repository.protected_aliases(row.model_id)
                level = files_level(row.stage, row.aliases, protected[row.model_id])
                if level is not None:
                    found.append(ProtectedFiles(row.model_id, row.name, row.version, level.value, _why(row)))
        return found

    async def version_experiment(self, link: WorkspaceLink, name: str, version: str) -> str | None:
        """Where a version's files lie, as `_protected` places them: its download location, else its source."""
        query = urlencode({"name": name, "version": version})
        status, body = await self._fetch(link, "/api/2.0/mlflow/model-versions/get-download-uri", query)
        uri = "" if _missing(link, status, body) else msgspec.json.decode(body, type=_DownloadUri).artifact_uri
        place = await self._place(link, uri)
        if place is None:
            status, body = await self._fetch(link, "/api/2.0/mlflow/model-versions/get", query)
            if _missing(link, status, body):
                return None
            source = msgspec.json.decode(body, type=_VersionAnswer).model_version.source
            place = await self._place(link, source or "")
        return place.experiment_id if place is not None else None

    # -- keeping the rows ----------------------------------------------------------------------------

    async def changed(self, link: WorkspaceLink, model_id: str, name: str) -> None:
        try:
            async with self._turn(link, LOCK_WAIT_SECONDS):
                protected = await self._model_versions(link, name)
                async with self._sessionmaker() as session, session.begin():
                    await session.execute(
                        delete(RegistryProtectedSourceRow).where(
                            RegistryProtectedSourceRow.workspace_id == link.workspace_id,
                            RegistryProtectedSourceRow.model_id == model_id,
                        )
                    )
                    await _insert(session, link, model_id, name, protected)
                    await notify(session, link.workspace_id)
                self._forget(link.workspace_id)
        except Exception:
            # The store accepted the write; what it changed is read again before the workspace's next artifact write.
            log.warning(
                "protected versions of model %r of workspace %s not read; the workspace is scanned again",
                name,
                link.name,
                exc_info=True,
            )
            try:
                async with self._sessionmaker() as session, session.begin():
                    await session.execute(
                        delete(RegistryProtectionScanRow).where(
                            RegistryProtectionScanRow.workspace_id == link.workspace_id
                        )
                    )
                    await notify(session, link.workspace_id)
                self._forget(link.workspace_id)
            except Exception:
                log.error("the scan of workspace %s could not be forgotten", link.name, exc_info=True)

    async def scan(self, link: WorkspaceLink) -> None:
        """Every protected version of the workspace, read from its store; the workspace is then scanned."""
        async with self._turn(link, LOCK_WAIT_SECONDS):
            async with self._sessionmaker() as session:
                done = await session.scalar(
                    select(RegistryProtectionScanRow.workspace_id).where(
                        RegistryProtectionScanRow.workspace_id == link.workspace_id
                    )
                )
            if done is not None:
                return  # another replica or request scanned it while this one waited
            by_model: dict[str, list[_Protected]] = {}
            aliases = await self._all_aliases(link)
            async for version in self._search(link, None):
                protected = await self._protected(link, version, aliases.get(version.name, {}))
                if protected is not None:
                    by_model.setdefault(version.name, []).append(protected)
            ids = {name: await self._model_id(link, name) for name in by_model}
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    delete(RegistryProtectedSourceRow).where(
                        RegistryProtectedSourceRow.workspace_id == link.workspace_id
                    )
                )
                for name, versions in by_model.items():
                    if (model_id := ids[name]) is not None:
                        await _insert(session, link, model_id, name, versions)
                await session.execute(
                    insert(RegistryProtectionScanRow).values(workspace_id=link.workspace_id).on_conflict_do_nothing()
                )
                await notify(session, link.workspace_id)
            self._forget(link.workspace_id)

    @contextlib.asynccontextmanager
    async def _turn(self, link: WorkspaceLink, wait: float) -> AsyncIterator[None]:
        """The workspace's turn to read its protected versions (across replicas); TimeoutError after `wait`."""
        async with (
            autocommit_connection(self._sessionmaker) as connection,
            held(connection, LockClass.REGISTRY_SOURCES, link.workspace_id, wait=wait) as got,
        ):
            if not got:
                raise TimeoutError(f"another read of the protected versions of workspace '{link.name}' is under way")
            yield

    async def _model_versions(self, link: WorkspaceLink, name: str) -> list[_Protected]:
        """The model's protected versions as the store has them now (none when it has no such model)."""
        status, body = await self._fetch(link, "/api/2.0/mlflow/registered-models/get", urlencode({"name": name}))
        if _missing(link, status, body):
            return []
        model = msgspec.json.decode(body, type=_ModelAnswer).registered_model
        aliases = _by_version(model.aliases)
        found: list[_Protected] = []
        async for version in self._search(link, name):
            if version.name == name and (protected := await self._protected(link, version, aliases)) is not None:
                found.append(protected)
        return found

    async def _all_aliases(self, link: WorkspaceLink) -> dict[str, dict[str, list[str]]]:
        """Every registered model's aliases, by model name and version."""
        found: dict[str, dict[str, list[str]]] = {}
        token: str | None = None
        while True:
            query = {"max_results": str(SEARCH_PAGE), **({"page_token": token} if token else {})}
            status, body = await self._fetch(link, "/api/2.0/mlflow/registered-models/search", urlencode(query))
            if _missing(link, status, body):
                return found  # a store without a registry
            page = msgspec.json.decode(body, type=_Models)
            for model in page.registered_models:
                found[model.name] = _by_version(model.aliases)
            token = page.next_page_token
            if not token:
                return found

    async def _search(self, link: WorkspaceLink, name: str | None) -> AsyncIterator[ModelVersion]:
        """Every version of the model (`name`), or of the workspace (None), page by page."""
        if name is not None and ("'" in name and '"' in name):
            # Not writable in the filter grammar: the latest version of each stage (a model named so is rare).
            status, body = await self._fetch(
                link, "/api/2.0/mlflow/registered-models/get-latest-versions", urlencode({"name": name})
            )
            if not _missing(link, status, body):
                for version in msgspec.json.decode(body, type=VersionsPage).model_versions:
                    yield version
            return
        token: str | None = None
        while True:
            query = {"max_results": str(SEARCH_PAGE)}
            if name is not None:
                query["filter"] = "name = " + (f"'{name}'" if "'" not in name else f'"{name}"')
            if token:
                query["page_token"] = token
            status, body = await self._fetch(link, "/api/2.0/mlflow/model-versions/search", urlencode(query))
            if _missing(link, status, body):
                return
            page = msgspec.json.decode(body, type=VersionsPage)
            for version in page.model_versions:
                yield version
            token = page.next_page_token
            if not token:
                return

    async def _protected(
        self, link: WorkspaceLink, version: ModelVersion, aliases: dict[str, list[str]]
    ) -> _Protected | None:
        """The version, its stage and aliases and where its files lie, if it is protected and they can be placed."""
        stageless = self._stageless(link)
        stage = tagged_stage(version) if stageless else (version.current_stage or "")
        stage = _PROTECTED_STAGES.get(stage.strip().lower(), "")
        held = aliases.get(version.version, [])
        if stageless:  # the stage's alias of the fallback is the stage itself
            held = [alias for alias in held if alias.casefold() not in STAGE_ALIASES.values()]
        if (not stage and not held) or read_only_source(version):
            return None
        query = urlencode({"name": version.name, "version": version.version})
        status, body = await self._fetch(link, "/api/2.0/mlflow/model-versions/get-download-uri", query)
        uri = "" if _missing(link, status, body) else msgspec.json.decode(body, type=_DownloadUri).artifact_uri
        place = await self._place(link, uri) or await self._place(link, version.source or "")
        if place is None:
            return None  # files outside anything the gateway serves (an s3:// source written by other means)
        return _Protected(version.version, stage, tuple(held), place)

    async def _place(self, link: WorkspaceLink, uri: str) -> Place | None:
        """Where a location (a download URI, a version's source) lies: `models:/m-...`, `runs:/<run>/<path>`, or a
        URI whose path holds `<experiment>/<run>/...` or `<experiment>/models/<m-id>/...`."""
        if uri.startswith("models:/"):
            model_id = uri[len("models:/") :].strip("/")
            if not model_id.startswith("m-") or "/" in model_id:
                return None
            experiment_id = await self._experiment_of(link, "logged_model", model_id)
            if experiment_id is None:
                return None
            return Place(f"{experiment_id}/models/{model_id}", experiment_id, model_id, "")
        if uri.startswith("runs:/"):
            parts = _segments(uri[len("runs:/") :])
            if not parts or not _RUN_ID.match(parts[0]):
                return None
            experiment_id = await self._experiment_of(link, "run", parts[0])
            if experiment_id is None:
                return None
            within = "/".join(["artifacts", *parts[1:]])
            return Place(f"{experiment_id}/{parts[0]}/{within}", experiment_id, parts[0], within)
        parts = _segments(urlparse(uri).path)
        if parts and parts[0].lower() == "workspaces":
            parts = parts[2:]
        for index in range(len(parts) - 1):
            if not _EXPERIMENT_ID.match(parts[index]):
                continue
            rest = parts[index + 1 :]
            if _RUN_ID.match(rest[0]):
                return Place("/".join(parts[index:]), parts[index], rest[0], "/".join(rest[1:]))
            if len(rest) >= 2 and rest[0] == "models" and rest[1].startswith("m-"):
                return Place("/".join(parts[index:]), parts[index], rest[1], "/".join(rest[2:]))
        return None


async def _insert(
    session: AsyncSession, link: WorkspaceLink, model_id: str, name: str, versions: Iterable[_Protected]
) -> None:
    for protected in versions:
        place = protected.place
        await session.execute(
            insert(RegistryProtectedSourceRow)
            .values(
                workspace_id=link.workspace_id,
                model_id=model_id,
                version=protected.version,
                name=name,
                stage=protected.stage,
                aliases=list(protected.aliases),
                path=place.path,
                experiment_id=place.experiment_id,
                object_id=place.object_id,
                object_path=place.object_path,
            )
            .on_conflict_do_nothing()
        )


async def forget_workspace(session: AsyncSession, workspace_id: int) -> None:
    """A workspace moved to another store or unlinked: its rows and its scan go (registry/moves.py)."""
    for row in (RegistryProtectedSourceRow, RegistryProtectionScanRow):
        await session.execute(delete(row).where(row.workspace_id == workspace_id))
    await notify(session, workspace_id)


async def renumber(session: AsyncSession, old_id: int, new_id: int) -> None:
    await session.execute(
        text("UPDATE registry_protected_sources SET workspace_id = :new WHERE workspace_id = :old"),
        {"new": new_id, "old": old_id},
    )
    await session.execute(
        text("UPDATE registry_protection_scans SET workspace_id = :new WHERE workspace_id = :old"),
        {"new": new_id, "old": old_id},
    )
    await notify(session, old_id)
    await notify(session, new_id)


async def notify(session: AsyncSession, workspace_id: int) -> None:
    """Every worker forgets what it kept of the workspace's rows, at commit."""
    await session.execute(select(func.pg_notify(SOURCES_CHANNEL, str(workspace_id))))


def _row(row: RegistryProtectedSourceRow) -> _Row:
    return _Row(
        row.model_id,
        row.version,
        row.name,
        row.stage,
        tuple(row.aliases),
        tuple(_folded(row.path)),
        row.experiment_id,
        row.object_id,
        tuple(_folded(row.object_path)),
    )


def read_only_source(version: ModelVersion) -> bool:
    """Whether the version was made by someone who could not write its files (the guard tagged it so at creation,
    federation/guard/models.py): whatever serves it, its files stay the experiment's, as they were before it."""
    return any(folded(tag.key) == SOURCE_READ_ONLY_TAG for tag in version.tags or [])


def _why(row: _Row) -> str:
    said = [f"is in {row.stage}"] if row.stage else []
    if row.aliases:
        named = ", ".join(f"'{alias}'" for alias in row.aliases)
        said.append(f"holds the alias{'es' if len(row.aliases) > 1 else ''} {named}")
    return " and ".join(said)


def _by_version(aliases: Iterable[ModelAlias]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for alias in aliases:
        found.setdefault(str(alias.version), []).append(alias.alias)
    return found


def _missing(link: WorkspaceLink, status: int, body: bytes) -> bool:
    """MLflow's refusal (4xx: no such model or version, or no registry): True; a 200: False; anything else cannot
    tell, and a decision that read it as "nothing protected" would let a write through: 503."""
    if 400 <= status < 500 or status == 501:  # 501: a store serving no registry (--artifacts-only)
        return True
    if status == 200 and body[:1] == b"{":
        return False
    raise StoreUnavailable(f"The store of workspace '{link.name}' could not be read; try again shortly.")


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _folded(path: str) -> list[str]:
    """A path's segments, compared as a case-insensitive store would read them."""
    return [part.casefold() for part in _segments(path)]


def _overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether one path lies within the other (or they are the same)."""
    shortest = min(len(a), len(b))
    return tuple(a[:shortest]) == tuple(b[:shortest])
