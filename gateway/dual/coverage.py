"""What dual mode does with every write the gateway forwards: mirrored to the central store, or not, and why.

A route is mirrored when it carries the `MIRRORED` trait (gateway/core/route_table.py): its accepted writes in a dual
workspace go to the outbox (capture.py) and the relay applies them (mirror.py). Every other route MLflow 3.17.2 serves
with a method that may write (POST, PUT, PATCH, DELETE) and the gateway serves too is in one family of `NOT_MIRRORED`
below, with the reason. tests/unit/test_mirror_coverage.py reads MLflow's own route map and fails on a route in
neither, so a write route MLflow adds is decided on before it can go unmirrored; docs/dual-tracking.md has the table.

A route is named as the store serves it: "METHOD /api/<v>.0/path" (or /ajax-api for the UI's own, or the absolute
path), path parameters as the route table writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.route_table import RouteSpec


@dataclass(frozen=True, slots=True)
class NotMirrored:
    family: str
    reason: str
    routes: frozenset[str]


def route_key(spec: RouteSpec) -> str:
    """The route as `NOT_MIRRORED` names it."""
    return f"{spec.method} {spec.upstream_prefix}{spec.path}"


def _routes(*names: str) -> frozenset[str]:
    return frozenset(names)


NOT_MIRRORED: tuple[NotMirrored, ...] = (
    NotMirrored(
        "Reads sent as POST",
        "a search or a read: it changes nothing in the store",
        _routes(
            "POST /api/2.0/mlflow/experiments/search",
            "POST /ajax-api/2.0/mlflow/experiments/search-datasets",
            "POST /api/2.0/mlflow/runs/search",
            "POST /api/2.0/mlflow/artifacts/presigned-download-url",
            "POST /api/2.0/mlflow/logged-models/search",
            "POST /api/2.0/mlflow/registered-models/get-latest-versions",
            "POST /api/3.0/mlflow/traces/search",
            "POST /api/3.0/mlflow/traces/batchGetInfos",
            "POST /api/3.0/mlflow/traces/calculate-filter-correlation",
            "POST /api/3.0/mlflow/traces/metrics",
            "POST /api/3.0/mlflow/datasets/search",
            "POST /api/3.0/mlflow/issues/search",
            "POST /ajax-api/3.0/jobs/search",
            "POST /api/3.0/mlflow/prompt-optimization/jobs/search",
            "POST /graphql",
        ),
    ),
    NotMirrored(
        "Answered by the gateway",
        "never forwarded to a store: workspaces are the gateway's links, UI telemetry goes nowhere",
        _routes(
            "POST /api/3.0/mlflow/workspaces",
            "PATCH /api/3.0/mlflow/workspaces/{workspace_name:str}",
            "DELETE /api/3.0/mlflow/workspaces/{workspace_name:str}",
            "POST /ajax-api/3.0/mlflow/ui-telemetry",
        ),
    ),
    NotMirrored(
        "Artifacts written outside the artifact proxy's upload",
        "a presigned upload URL sends the bytes to the artifact storage directly, and a multipart upload needs an "
        "artifact storage that has one (S3, GCS, Azure): the files of runs started in the last 24 hours reach the "
        "central copy through the reconciler's pass",
        _routes(
            "POST /api/2.0/mlflow/artifacts/presigned-upload-url",
            "POST /api/2.0/mlflow-artifacts/mpu/create/{artifact_path:path}",
            "POST /api/2.0/mlflow-artifacts/mpu/complete/{artifact_path:path}",
            "POST /api/2.0/mlflow-artifacts/mpu/abort/{artifact_path:path}",
        ),
    ),
    NotMirrored(
        "Traces and assessments",
        "traces are not mirrored (a limit of dual mode): their spans live in the store's artifact storage under "
        "the trace's own id, which the central store would give anew",
        _routes(
            "POST /api/2.0/mlflow/traces",
            "PATCH /api/2.0/mlflow/traces/{request_id:str}",
            "PATCH /api/2.0/mlflow/traces/{request_id:str}/tags",
            "DELETE /api/2.0/mlflow/traces/{request_id:str}/tags",
            "POST /api/2.0/mlflow/traces/delete-traces",
            "POST /api/2.0/mlflow/traces/link-to-run",
            "POST /api/2.0/mlflow/traces/link-prompts",
            "POST /api/3.0/mlflow/traces",
            "POST /api/3.0/mlflow/traces/delete-traces",
            "PATCH /api/3.0/mlflow/traces/{trace_id:str}/tags",
            "DELETE /api/3.0/mlflow/traces/{trace_id:str}/tags",
            "POST /api/3.0/mlflow/traces/{trace_id:str}/assessments",
            "PATCH /api/3.0/mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}",
            "DELETE /api/3.0/mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}",
            "POST /v1/traces",
        ),
    ),
    NotMirrored(
        "Evaluation datasets",
        "not mirrored (a limit of dual mode): a dataset's records refer to the workspace's traces, which are not",
        _routes(
            "POST /api/3.0/mlflow/datasets/create",
            "DELETE /api/3.0/mlflow/datasets/{dataset_id:str}",
            "PATCH /api/3.0/mlflow/datasets/{dataset_id:str}/tags",
            "DELETE /api/3.0/mlflow/datasets/{dataset_id:str}/tags/{key:str}",
            "POST /api/3.0/mlflow/datasets/{dataset_id:str}/records",
            "DELETE /api/3.0/mlflow/datasets/{dataset_id:str}/records",
            "POST /api/3.0/mlflow/datasets/{dataset_id:str}/add-experiments",
            "POST /api/3.0/mlflow/datasets/{dataset_id:str}/remove-experiments",
        ),
    ),
    NotMirrored(
        "Scorers",
        "not mirrored (a limit of dual mode): a scorer runs on the workspace's traces, which are not",
        _routes(
            "POST /api/3.0/mlflow/scorers/register",
            "DELETE /api/3.0/mlflow/scorers/delete",
            "PUT /api/3.0/mlflow/scorers/online-config",
        ),
    ),
    NotMirrored(
        "Issues, label schemas and review queues",
        "workspace-only by design: they are about the workspace's traces, which are not mirrored",
        _routes(
            "POST /api/3.0/mlflow/issues",
            "PATCH /api/3.0/mlflow/issues/{issue_id:str}",
            "POST /api/3.0/mlflow/label-schemas/create",
            "PATCH /api/3.0/mlflow/label-schemas/update",
            "DELETE /api/3.0/mlflow/label-schemas/delete",
            "POST /api/3.0/mlflow/review-queues/create",
            "POST /api/3.0/mlflow/review-queues/update",
            "POST /api/3.0/mlflow/review-queues/delete",
            "POST /api/3.0/mlflow/review-queues/get-or-create-user",
            "POST /api/3.0/mlflow/review-queues/items/add",
            "POST /api/3.0/mlflow/review-queues/items/remove",
            "POST /api/3.0/mlflow/review-queues/items/set-status",
        ),
    ),
    NotMirrored(
        "Jobs",
        "workspace-only by design: the central store runs no jobs (the runs the evaluation, issue detection and "
        "prompt optimisation jobs start are mirrored, through their starting calls)",
        _routes(
            "POST /ajax-api/3.0/jobs/",
            "PATCH /ajax-api/3.0/jobs/cancel/{job_id:str}",
            "PATCH /ajax-api/3.0/mlflow/jobs/cancel/{job_id:str}",
            "POST /ajax-api/3.0/mlflow/scorer/invoke",
            "DELETE /api/3.0/mlflow/prompt-optimization/jobs/{job_id:str}",
            "POST /api/3.0/mlflow/prompt-optimization/jobs/{job_id:str}/cancel",
        ),
    ),
    NotMirrored(
        "Webhooks",
        "workspace-only by design: a webhook fires for the registry events of the workspace's own store",
        _routes(
            "POST /api/2.0/mlflow/webhooks",
            "PATCH /api/2.0/mlflow/webhooks/{webhook_id:str}",
            "DELETE /api/2.0/mlflow/webhooks/{webhook_id:str}",
            "POST /api/2.0/mlflow/webhooks/{webhook_id:str}/test",
        ),
    ),
    NotMirrored(
        "AI gateway",
        "workspace-only by design: the store's provider keys and endpoints, and calls that invoke them (an LLM "
        "provider's answer, nothing the store keeps)",
        _routes(
            "POST /api/3.0/mlflow/gateway/secrets/create",
            "POST /api/3.0/mlflow/gateway/secrets/update",
            "DELETE /api/3.0/mlflow/gateway/secrets/delete",
            "POST /api/3.0/mlflow/gateway/endpoints/create",
            "POST /api/3.0/mlflow/gateway/endpoints/update",
            "DELETE /api/3.0/mlflow/gateway/endpoints/delete",
            "POST /api/3.0/mlflow/gateway/endpoints/set-tag",
            "DELETE /api/3.0/mlflow/gateway/endpoints/delete-tag",
            "POST /api/3.0/mlflow/gateway/endpoints/models/attach",
            "POST /api/3.0/mlflow/gateway/endpoints/models/detach",
            "POST /api/3.0/mlflow/gateway/endpoints/bindings/create",
            "DELETE /api/3.0/mlflow/gateway/endpoints/bindings/delete",
            "POST /api/3.0/mlflow/gateway/model-definitions/create",
            "POST /api/3.0/mlflow/gateway/model-definitions/update",
            "DELETE /api/3.0/mlflow/gateway/model-definitions/delete",
            "POST /api/3.0/mlflow/gateway/budgets/create",
            "POST /api/3.0/mlflow/gateway/budgets/update",
            "DELETE /api/3.0/mlflow/gateway/budgets/delete",
            "POST /api/3.0/mlflow/gateway/guardrails/create",
            "PATCH /api/3.0/mlflow/gateway/guardrails/update-config",
            "DELETE /api/3.0/mlflow/gateway/guardrails/delete",
            "POST /api/3.0/mlflow/gateway/guardrails/add-to-endpoint",
            "DELETE /api/3.0/mlflow/gateway/guardrails/remove-from-endpoint",
            "POST /ajax-api/2.0/mlflow/gateway-proxy",
            "POST /gateway/anthropic/v1/messages",
            "POST /gateway/gemini/v1beta/models/{endpoint_name:str}:generateContent",
            "POST /gateway/gemini/v1beta/models/{endpoint_name:str}:streamGenerateContent",
            "POST /gateway/mlflow/v1/chat/completions",
            "POST /gateway/openai/v1/chat/completions",
            "POST /gateway/openai/v1/embeddings",
            "POST /gateway/openai/v1/responses",
            "POST /gateway/openai/v1/responses/compact",
            "POST /gateway/proxy/{endpoint_name:str}/{path:path}",
            "POST /gateway/typesafe/v1/systemone",
            "POST /gateway/{endpoint_name:str}/mlflow/invocations",
        ),
    ),
    NotMirrored(
        "MCP server registry",
        "workspace-only by design: the workspace's registry of MCP servers, which the central store does not hold",
        _routes(
            "POST /api/3.0/mlflow/mcp-servers",
            "PATCH /api/3.0/mlflow/mcp-servers/{name:path}",
            "DELETE /api/3.0/mlflow/mcp-servers/{name:path}",
            "POST /api/3.0/mlflow/mcp-servers/{name:path}/aliases",
            "DELETE /api/3.0/mlflow/mcp-servers/{name:path}/aliases/{alias:path}",
            "POST /api/3.0/mlflow/mcp-servers/{name:path}/endpoints",
            "PATCH /api/3.0/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id:str}",
            "DELETE /api/3.0/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id:str}",
            "POST /api/3.0/mlflow/mcp-servers/{name:path}/tags",
            "DELETE /api/3.0/mlflow/mcp-servers/{name:path}/tags/{key:path}",
            "POST /api/3.0/mlflow/mcp-servers/{name:path}/versions",
            "PATCH /api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}",
            "DELETE /api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}",
            "POST /api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags",
            "DELETE /api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags/{key:path}",
        ),
    ),
)


def not_mirrored() -> dict[str, str]:
    """Route → the family that says why it is not mirrored."""
    found: dict[str, str] = {}
    for family in NOT_MIRRORED:
        for route in family.routes:
            if route in found:
                raise ValueError(f"{route} is in the families {found[route]!r} and {family.family!r}")
            found[route] = family.family
    return found
