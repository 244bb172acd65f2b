"""Which workspace a request names: `X-MLFLOW-WORKSPACE` (a name) or `X-Databricks-Workspace-Id` (an id).

MLflow's client sends the name; `databricks-sdk` sends the numeric id for a `WorkspaceClient(workspace_id=...)`.
One rule for every route that takes a workspace from the request (the forwarded MLflow routes, server-info,
the permissions, secrets and SQL statement APIs):

- each header at most once: two values could be read differently by two readers, so neither is chosen (400);
- the id is a decimal number of at most 18 digits, nothing else (400);
- an id names a served workspace the caller may see; one that no workspace has and one the caller may not
  see get the same 404 (`Workspace with id N not found`), so ids cannot be probed; a name the caller may
  not see answers as a name nobody has (`Workspace 'x' not found`), as it always did;
- both headers: they must name the same workspace, else 400; that is decided only once the id resolved,
  so the refusal tells nothing about the name;
- neither header is ever sent to a store: `read_workspace_headers` hands back only the headers asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gateway.core.errors import InvalidParameter, ResourceNotFound, hidden
from gateway.core.links import LinkTable, WorkspaceLink

NAME_HEADER = "x-mlflow-workspace"
ID_HEADER = "x-databricks-workspace-id"
WORKSPACE_ID_RE = re.compile(r"[0-9]{1,18}\Z")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkspaceHeaders:
    """What a request's headers say about its workspace: a name, an id, both, or neither."""

    name: str | None = None
    workspace_id: int | None = None

    @property
    def given(self) -> bool:
        return self.name is not None or self.workspace_id is not None

    def scope(self, scopes: Mapping[str, T]) -> T | None:
        """The scope (a name served by something other than a workspace, e.g. `account`) the name header names.

        An id names a workspace, which a scope is not: the two disagree.
        """
        found = scopes.get(self.name) if self.name is not None else None
        if found is not None and self.workspace_id is not None:
            raise self._disagree(f"the '{self.name}' scope")
        return found

    def link(
        self,
        links: LinkTable,
        named: Callable[[str], WorkspaceLink],
        sees: Callable[[WorkspaceLink], bool],
    ) -> WorkspaceLink | None:
        """The workspace the headers name (None: neither header), by the rule of the module docstring.

        `named` resolves a name as the caller's routes always did (it raises for an invalid or unknown one);
        `sees` says whether the caller may see a workspace.
        """
        if self.workspace_id is None:
            if self.name is None:
                return None
            links.refuse_withheld(self.name)
            link = named(self.name)
            if not sees(link):
                raise hidden(f"Workspace '{link.name}' not found")
            return link
        found = links.by_id(self.workspace_id)
        if found is None:
            links.refuse_withheld_id(self.workspace_id)
            raise ResourceNotFound(self._unknown_id())
        if not sees(found):
            raise hidden(self._unknown_id())
        if self.name is not None and self.name != found.name:
            raise self._disagree(f"workspace '{self.name}'")
        return found

    def _unknown_id(self) -> str:
        return f"Workspace with id {self.workspace_id} not found"

    def _disagree(self, what: str) -> InvalidParameter:
        return InvalidParameter(
            f"X-MLFLOW-WORKSPACE names {what} but X-Databricks-Workspace-Id names workspace id {self.workspace_id}; "
            "send one of them, or two that name the same workspace."
        )


def read_workspace_headers(
    raw: Iterable[tuple[bytes, bytes]], keep: Collection[str] = ()
) -> tuple[WorkspaceHeaders, list[tuple[str, str]]]:
    """One pass over raw (ASGI) headers: what they say about the workspace, and the headers named in `keep`."""
    name: str | None = None
    raw_id: str | None = None
    kept: list[tuple[str, str]] = []
    seen_name = False
    for raw_key, raw_value in raw:
        key = raw_key.decode("latin-1").lower()
        if key == NAME_HEADER:
            if seen_name:
                # Two values could be read differently by the gateway and the store; choose neither.
                raise InvalidParameter("X-MLFLOW-WORKSPACE was sent more than once.")
            seen_name = True
            name = raw_value.decode("latin-1") or None
        elif key == ID_HEADER:
            if raw_id is not None:
                raise InvalidParameter("X-Databricks-Workspace-Id was sent more than once.")
            raw_id = raw_value.decode("latin-1")
        elif key in keep:
            kept.append((key, raw_value.decode("latin-1")))
    return WorkspaceHeaders(name, parse_workspace_id(raw_id) if raw_id is not None else None), kept


def parse_workspace_id(value: str) -> int:
    """The workspace id an `X-Databricks-Workspace-Id` value names (surrounding blanks aside), or 400."""
    text = value.strip(" \t")
    if not WORKSPACE_ID_RE.match(text):
        raise InvalidParameter("X-Databricks-Workspace-Id is a workspace's numeric id.")
    return int(text)
