"""The workspace an API call of the gateway's own names (permissions, secrets, SQL statements).

The rule is the one every route shares (gateway/core/workspace_headers.py): `X-MLFLOW-WORKSPACE` or
`X-Databricks-Workspace-Id`, agreeing when both are sent, and a workspace the caller may not see answers as
one that does not exist. Names resolve as the forwarded routes resolve them (the `Workspaces` port).
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from gateway.authz.decide import Authorizer
from gateway.authz.ports import Workspaces
from gateway.core.errors import InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.core.workspace_headers import read_workspace_headers


async def requested_workspace(
    request: Request[Principal, Any, Any], workspaces: Workspaces, authorizer: Authorizer
) -> WorkspaceLink | None:
    """The workspace the request's headers name, if they name one. One the caller may not see (404, as for one that
    does not exist) is refused only by the stored policy (`Authorizer.deciding`): a grant in it given through another
    replica moments ago counts at once. A workspace that does not exist costs nothing more."""

    async def decide(caller: Principal) -> WorkspaceLink | None:
        return _requested(request, caller, workspaces, authorizer)

    return await authorizer.deciding(request.user, decide)


def _requested(
    request: Request[Principal, Any, Any], caller: Principal, workspaces: Workspaces, authorizer: Authorizer
) -> WorkspaceLink | None:
    headers, _ = read_workspace_headers(request.scope["headers"])
    return headers.link(
        workspaces.links, workspaces.link_named, lambda link: authorizer.enters(caller, link.workspace_id)
    )


def chosen_workspace(
    request: Request[Principal, Any, Any], workspaces: Workspaces, authorizer: Authorizer
) -> WorkspaceLink:
    """The workspace the headers name, else the `default` workspace."""
    return workspace_for(request, request.user, workspaces, authorizer)


def workspace_for(
    request: Request[Principal, Any, Any], caller: Principal, workspaces: Workspaces, authorizer: Authorizer
) -> WorkspaceLink:
    """`chosen_workspace` for `caller`: the request's principal, or that principal as a newer policy knows it (a
    refusal decided again, `Authorizer.deciding`)."""
    link = _requested(request, caller, workspaces, authorizer)
    if link is not None:
        return link
    if workspaces.links.default is not None:
        return workspaces.links.default
    raise InvalidParameter("Choose the workspace with the X-MLFLOW-WORKSPACE or X-Databricks-Workspace-Id header.")
