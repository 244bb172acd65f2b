"""Links whose store knows the workspace under another name: artifact URIs and `workspace` fields renamed."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.core.links import WorkspaceLink

# Fields that carry artifact URIs or the workspace name; user data (params, tags...) is never touched.
# `mlflow.artifactLocation` is the trace tag (a key of a v3 trace info's `tags` map) the store sets to where a
# trace's data lives when it does not hold the trace's spans: the stock client uploads the trace's `traces.json`
# there and reads it from there, through the gateway. No caller sets it (trace_tags.py refuses it).
REWRITTEN_FIELDS = frozenset(
    {"artifact_location", "artifact_uri", "root_uri", "source", "workspace", "mlflow.artifactLocation"}
)


def renames(link: WorkspaceLink) -> bool:
    return link.upstream_workspace is not None and link.upstream_workspace != link.name


def rewrite_json(body: bytes, old: str, new: str) -> bytes:
    """Rename a workspace in the artifact-URI and `workspace` fields of a JSON document."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    old_prefix = f"mlflow-artifacts:/workspaces/{old}/"
    new_prefix = f"mlflow-artifacts:/workspaces/{new}/"

    def walk(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and key in REWRITTEN_FIELDS:
            if key == "workspace" and node == old:
                return new
            if node.startswith(old_prefix):
                return new_prefix + node[len(old_prefix) :]
        return node

    return msgspec.json.encode(walk(document))
