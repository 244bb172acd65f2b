"""Links whose store knows the workspace under another name: artifact URIs and `workspace` fields renamed."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.core.links import WorkspaceLink

# `mlflow.artifactLocation` is the trace tag the store sets to where a trace's data lives when it does not hold the
# trace's spans: the stock client uploads the trace's `traces.json` there and reads it from there, through the
# gateway. No caller sets it (trace_tags.py refuses it). A v3 trace info holds it as a key of its `tags` map, a v2
# one (the answers of the v2 trace routes: start, end, get-info, search) as a {"key", "value"} item of its `tags`
# list; a v2 trace info is the object with a `request_id` (no run, experiment or model has one).
TRACE_LOCATION_TAG = "mlflow.artifactLocation"
# Fields that carry artifact URIs or the workspace name; user data (params, tags...) is never touched. GraphQL
# (`/graphql`, the web UI's run, runs and experiment pages) spells a run's and an experiment's in camelCase.
REWRITTEN_FIELDS = frozenset(
    {
        "artifact_location",
        "artifact_uri",
        "artifactLocation",
        "artifactUri",
        "root_uri",
        "source",
        "workspace",
        TRACE_LOCATION_TAG,
    }
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
            walked = {k: walk(v, k) for k, v in node.items()}
            if "request_id" in node and isinstance(walked.get("tags"), list):
                walked["tags"] = [v2_trace_tag(tag) for tag in walked["tags"]]
            return walked
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and key in REWRITTEN_FIELDS:
            if key == "workspace" and node == old:
                return new
            if node.startswith(old_prefix):
                return new_prefix + node[len(old_prefix) :]
        return node

    def v2_trace_tag(tag: Any) -> Any:
        if isinstance(tag, dict) and tag.get("key") == TRACE_LOCATION_TAG and isinstance(tag.get("value"), str):
            return {**tag, "value": walk(tag["value"], TRACE_LOCATION_TAG)}
        return tag

    return msgspec.json.encode(walk(document))
