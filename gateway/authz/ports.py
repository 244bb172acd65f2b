"""What the permissions API needs from the request pipeline (`gateway.federation.service.Forwarder` in the app).

Authorization sits below forwarding: the permissions API names its workspace as the forwarded routes do
(the X-MLFLOW-WORKSPACE header, else the default workspace), and asks the store whether an object exists
before it shows or changes the object's grants. Both come through these ports, which `app.py` fills.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from gateway.core.links import LinkTable, WorkspaceLink

# Whether the store of a workspace holds the object: (link, "experiment" | "registered_model", id or name).
ObjectExists = Callable[[WorkspaceLink, str, str], Awaitable[bool]]


@runtime_checkable  # Litestar checks a dependency against its annotation (isinstance) before the handler runs
class Workspaces(Protocol):
    """The served workspaces, and a workspace by the name a caller gave (refused as the forwarded routes refuse)."""

    @property
    def links(self) -> LinkTable: ...

    def link_named(self, name: str) -> WorkspaceLink: ...
