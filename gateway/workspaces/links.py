"""The live table of workspace links every request resolves against, swapped whole on change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import replace as with_fields

DEFAULT_WORKSPACE = "default"


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
    # Another link reaches the same namespace of the same store: the store alone cannot isolate them.
    shares_namespace: bool = False
    # Dual mode: the central store every write is mirrored to, and where the copies live there.
    mirror: str | None = None
    mirror_workspace: str | None = None  # the namespace on a central store with workspaces
    mirror_prefix: str = ""  # prefixed to experiment names on a central store without workspaces


class LinkTable:
    """Name → link. Readers see one consistent snapshot; writers replace the whole mapping."""

    def __init__(self) -> None:
        self._links: dict[str, WorkspaceLink] = {}

    def replace(self, links: Iterable[WorkspaceLink]) -> None:
        links = list(links)
        namespaces = Counter((link.store, link.upstream_workspace) for link in links)
        self._links = {
            link.name: with_fields(link, shares_namespace=namespaces[(link.store, link.upstream_workspace)] > 1)
            for link in links
        }

    def get(self, name: str) -> WorkspaceLink | None:
        return self._links.get(name)

    def by_id(self, workspace_id: int) -> WorkspaceLink | None:
        return next((link for link in self._links.values() if link.workspace_id == workspace_id), None)

    @property
    def default(self) -> WorkspaceLink | None:
        return self._links.get(DEFAULT_WORKSPACE)

    def all(self) -> list[WorkspaceLink]:
        return sorted(self._links.values(), key=lambda link: link.name)
