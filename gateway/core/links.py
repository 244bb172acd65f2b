"""The live table of workspace links every request resolves against, swapped whole on change.

Namespaces. A link occupies namespaces of stores: its primary one (the store calls go to, and the
upstream workspace there, or the whole store when it has no workspaces) and, in dual mode, the one
its central copies live in (a workspace of the central store, or the `<workspace>/` name prefix on a
central store without workspaces). A store cannot tell two workspaces apart inside one namespace, so
no two links may overlap: the workspaces service refuses such a link (409), configuration refuses
two declared workspaces that overlap, and a table that still holds overlapping links (a database
written before this rule, a store whose `workspaces` setting changed) withholds every link involved:
none of them is served, each call naming one answers 409 INVALID_STATE naming the other, and
`fedgate links status` shows the conflict until an admin relinks or unlinks one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.core.errors import InvalidState

DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True, slots=True)
class Namespace:
    """Where a link's data lives in one store: a workspace of it (None: the whole store), under a name prefix."""

    store: str  # the store's identity (its normalised URL): two store entries with one URL are one store
    workspace: str | None
    prefix: str = ""  # "" is the whole namespace; otherwise experiment and model names start with it
    label: str = ""  # the store's configured name, for messages

    def overlaps(self, other: Namespace) -> bool:
        if self.store != other.store or self.workspace != other.workspace:
            return False
        return self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)

    def describe(self) -> str:
        where = f"workspace {self.workspace!r} of store {self.label!r}" if self.workspace else f"store {self.label!r}"
        return f"{where} (names prefixed {self.prefix!r})" if self.prefix else where


def store_identity(url: str) -> str:
    """A store URL reduced to what addresses the same server: scheme, host (case-folded), port, path."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


@dataclass(frozen=True, slots=True)
class WorkspaceLink:
    name: str
    workspace_id: int
    mode: str  # workspace | dual | central
    store: str  # the store calls go to (the central store for mode "central")
    configured_store: str | None  # the workspace's own store, as linked
    upstream_workspace: str | None  # X-MLFLOW-WORKSPACE sent to the store; None if it has no workspaces
    description: str = ""
    default_artifact_root: str = ""
    managed_by: str = "api"
    # Dual mode: the central store every write is mirrored to, and where the copies live there.
    mirror: str | None = None
    mirror_workspace: str | None = None  # the namespace on a central store with workspaces
    mirror_prefix: str = ""  # prefixed to experiment names on a central store without workspaces
    # Every store namespace the link reads or writes (see the module docstring).
    namespaces: tuple[Namespace, ...] = ()
    # Secret scopes: the vault new scopes keep their values in ("" is the built-in vault), and the scope a
    # run's read uses when it names none ("" for none). docs/secrets.md.
    vault: str = ""
    default_secret_scope: str = ""


def overlap(a: WorkspaceLink, b: WorkspaceLink) -> tuple[Namespace, Namespace] | None:
    """The first pair of namespaces the two links share, if any."""
    for mine in a.namespaces:
        for theirs in b.namespaces:
            if mine.overlaps(theirs):
                return mine, theirs
    return None


def self_overlap(link: WorkspaceLink) -> Namespace | None:
    """A dual link whose own store is its central store under another name would mix both copies."""
    spaces = link.namespaces
    for index, mine in enumerate(spaces):
        if any(mine.overlaps(theirs) for theirs in spaces[index + 1 :]):
            return mine
    return None


def conflict_message(link: WorkspaceLink, other: WorkspaceLink | None, space: Namespace) -> str:
    if other is None:
        return (
            f"Workspace '{link.name}' would keep its own data and its central copies in one namespace "
            f"({space.describe()}); link it to a store other than the central store."
        )
    return (
        f"Workspace '{link.name}' and workspace '{other.name}' share one store namespace ({space.describe()}); "
        "a store cannot keep them apart. Relink or unlink one of them (each workspace needs its own store, or "
        "its own workspace on a store with workspaces enabled)."
    )


class LinkTable:
    """Name → link. Readers see one consistent snapshot; writers replace the whole mapping."""

    def __init__(self) -> None:
        self._links: dict[str, WorkspaceLink] = {}
        # Links withheld because they overlap another one: name → (link, why).
        self._withheld: dict[str, tuple[WorkspaceLink, str]] = {}

    def replace(self, links: Iterable[WorkspaceLink]) -> None:
        links = sorted(links, key=lambda link: link.name)
        withheld: dict[str, tuple[WorkspaceLink, str]] = {}
        for index, link in enumerate(links):
            if (space := self_overlap(link)) is not None:
                withheld[link.name] = (link, conflict_message(link, None, space))
            for other in links[index + 1 :]:
                if (shared := overlap(link, other)) is not None:
                    withheld.setdefault(link.name, (link, conflict_message(link, other, shared[0])))
                    withheld.setdefault(other.name, (other, conflict_message(other, link, shared[1])))
        self._links, self._withheld = {link.name: link for link in links if link.name not in withheld}, withheld

    def get(self, name: str) -> WorkspaceLink | None:
        return self._links.get(name)

    def by_id(self, workspace_id: int) -> WorkspaceLink | None:
        return next((link for link in self._links.values() if link.workspace_id == workspace_id), None)

    @property
    def default(self) -> WorkspaceLink | None:
        return self._links.get(DEFAULT_WORKSPACE)

    def all(self) -> list[WorkspaceLink]:
        return sorted(self._links.values(), key=lambda link: link.name)

    def conflict(self, name: str) -> str | None:
        """Why a linked workspace is not served, if it is withheld."""
        found = self._withheld.get(name)
        return found[1] if found else None

    def refuse_withheld(self, name: str) -> None:
        """409 INVALID_STATE for a workspace withheld because it overlaps another one."""
        if (reason := self.conflict(name)) is not None:
            raise InvalidState(reason)

    def withheld_id(self, workspace_id: int) -> bool:
        return any(link.workspace_id == workspace_id for link, _ in self._withheld.values())

    def refuse_withheld_id(self, workspace_id: int) -> None:
        """409 INVALID_STATE for a workspace, named by its id, withheld because it overlaps another one."""
        for link, reason in self._withheld.values():
            if link.workspace_id == workspace_id:
                raise InvalidState(reason)

    def withheld(self) -> list[tuple[WorkspaceLink, str]]:
        return [self._withheld[name] for name in sorted(self._withheld)]
