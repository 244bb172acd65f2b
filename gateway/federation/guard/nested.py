"""Ids below the top level of a body: each path has a rule, or the call is refused (deny by default).

canonical.py lists every key ending in `_id`, `_ids` or `_uuid` that the top-level `RequestIds` does not
cover, with its path (`metrics[].model_id`). `NESTED_IDS` says, per route and path, what such an id
names and so how it is checked; tests/unit/test_guard_differential.py proves the table against MLflow's
own request parsing.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.authz.levels import Level
from gateway.core.errors import InvalidParameter
from gateway.core.route_table import RouteSpec
from gateway.federation.guard.checks import Checks, answered
from gateway.federation.guard.request import Request
from gateway.federation.otlp import SPAN_TRACE_ID


class Nested(StrEnum):
    """What an id the top-level fields do not cover names (see canonical.py), and so how it is checked."""

    RUN = "run"
    LOGGED_MODEL = "logged_model"
    TRACE = "trace"
    LABEL_SCHEMA = "label_schema"  # a label schema, through its experiment
    NEW_TRACE = "new_trace"  # an id the call may create: if the trace exists already, the call writes to it
    BY_RULE = "by_rule"  # read and checked by the route's own rule
    NOT_AN_OBJECT = "not_an_object"  # span, assessment, source, request-client ids, flags: nothing grants them
    IN_WORKSPACE = "in_workspace"  # an AI-gateway object of the workspace: covered by the route's workspace level


NestedRule = tuple[Nested, Level | None]  # None: the level the route asks for
_MAP = (Nested.NOT_AN_OBJECT, None)  # keys of a caller-chosen map (tags, metadata): data, not fields


def _value(path: str) -> dict[str, NestedRule]:
    """Rules for anything below a `google.protobuf.Value` field (a feedback's or expectation's `value`): objects
    and lists of the caller's choosing at any depth, which MLflow stores as the value's JSON and reads no id from."""
    return {f"{path}.*": _MAP, f"{path}[]*": _MAP}


_OWN_TRACE_ASSESSMENT: dict[str, NestedRule] = {
    "assessment.trace_id": (Nested.TRACE, None),
    "assessment.assessment_id": (Nested.NOT_AN_OBJECT, None),
    "assessment.span_id": (Nested.NOT_AN_OBJECT, None),
    "assessment.source.source_id": (Nested.NOT_AN_OBJECT, None),
    "assessment.metadata.*": _MAP,
    **_value("assessment.feedback.value"),
    **_value("assessment.expectation.value"),
}
# By route (name, API version) and path; a path listed nowhere refuses the call (deny by default).
NESTED_IDS: dict[tuple[str, int], dict[str, NestedRule]] = {
    ("POST /mlflow/runs/create", 2): {"user_id": (Nested.NOT_AN_OBJECT, None)},
    ("POST /mlflow/runs/log-batch", 2): {
        "metrics[].run_id": (Nested.RUN, None),
        "metrics[].model_id": (Nested.LOGGED_MODEL, None),  # the store logs the metric onto that model too
    },
    ("POST /mlflow/runs/log-inputs", 2): {"models[].model_id": (Nested.LOGGED_MODEL, Level.CAN_READ)},
    ("POST /mlflow/runs/outputs", 2): {"models[].model_id": (Nested.LOGGED_MODEL, Level.CAN_EDIT)},
    ("POST /mlflow/registered-models/create", 2): {"deployment_job_id": (Nested.NOT_AN_OBJECT, None)},
    ("PATCH /mlflow/registered-models/update", 2): {"deployment_job_id": (Nested.NOT_AN_OBJECT, None)},
    ("POST /mlflow/traces/delete-traces", 2): {"request_ids": (Nested.TRACE, None)},
    ("POST /mlflow/traces/delete-traces", 3): {"request_ids": (Nested.TRACE, None)},
    ("POST /mlflow/traces", 3): {
        "trace.trace_info.trace_id": (Nested.NEW_TRACE, Level.CAN_EDIT),  # an existing trace is merged into
        "trace.trace_info.trace_location.mlflow_experiment.experiment_id": (Nested.BY_RULE, None),
        "trace.trace_info.client_request_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.trace_metadata.*": _MAP,
        "trace.trace_info.tags.*": _MAP,
        # The store files assessments under the trace being created, whatever they say.
        "trace.trace_info.assessments[].trace_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].assessment_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].span_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].source.source_id": (Nested.NOT_AN_OBJECT, None),
        "trace.trace_info.assessments[].metadata.*": _MAP,
        **_value("trace.trace_info.assessments[].feedback.value"),
        **_value("trace.trace_info.assessments[].expectation.value"),
        # Spans are not stored by this call (they travel through OTLP or artifacts).
        "trace.spans[].trace_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].span_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].parent_span_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].links[].trace_id": (Nested.NOT_AN_OBJECT, None),
        "trace.spans[].links[].span_id": (Nested.NOT_AN_OBJECT, None),
    },
    # OTLP: MLflow adds a span to its trace wherever that trace lives (otlp.py reads the trace ids).
    ("POST /v1/traces", 2): {SPAN_TRACE_ID: (Nested.NEW_TRACE, Level.CAN_EDIT)},
    ("POST /mlflow/traces/search", 3): {"locations[].mlflow_experiment.experiment_id": (Nested.BY_RULE, None)},
    ("POST /mlflow/traces/{trace_id:str}/assessments", 3): _OWN_TRACE_ASSESSMENT,
    ("PATCH /mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", 3): {
        **_OWN_TRACE_ASSESSMENT,
        "assessment_id": (Nested.NOT_AN_OBJECT, None),
    },
    ("DELETE /mlflow/traces/{trace_id:str}/assessments/{assessment_id:str}", 3): {
        "assessment_id": (Nested.NOT_AN_OBJECT, None)
    },
    ("DELETE /mlflow/datasets/{dataset_id:str}/records", 3): {"dataset_record_ids": (Nested.NOT_AN_OBJECT, None)},
    # A queue's label schemas are read by its reviewers; its items are traces (the store keeps them to the
    # queue's experiment, the gateway checks each too); an item's id names it within the queue already checked.
    ("POST /mlflow/review-queues/create", 3): {"schema_ids": (Nested.LABEL_SCHEMA, Level.CAN_READ)},
    ("POST /mlflow/review-queues/update", 3): {
        "schema_ids": (Nested.LABEL_SCHEMA, Level.CAN_READ),
        "update_schema_ids": (Nested.NOT_AN_OBJECT, None),  # a flag: whether `schema_ids` replaces the list
    },
    ("POST /mlflow/review-queues/items/add", 3): {"item_ids": (Nested.TRACE, Level.CAN_READ)},
    ("POST /mlflow/review-queues/items/remove", 3): {"item_ids": (Nested.TRACE, Level.CAN_READ)},
    ("POST /mlflow/review-queues/items/set-status", 3): {"item_id": (Nested.NOT_AN_OBJECT, None)},
    # The store acts on the webhook of the path; the route's rule (workspace managers) covers every webhook.
    ("PATCH /mlflow/webhooks/{webhook_id:str}", 2): {"webhook_id": (Nested.NOT_AN_OBJECT, None)},
    ("POST /mlflow/webhooks/{webhook_id:str}/test", 2): {"webhook_id": (Nested.NOT_AN_OBJECT, None)},
    ("DELETE /mlflow/webhooks/{webhook_id:str}", 2): {"webhook_id": (Nested.NOT_AN_OBJECT, None)},
    # The AI gateway's objects (keys, endpoints, model definitions, bindings, budgets, guardrails) have no grants
    # of their own: a call naming them needs CAN_MANAGE on the workspace, which covers each.
    **{
        (f"{method} /mlflow/gateway/{path}", 3): {name: (Nested.IN_WORKSPACE, None) for name in names}
        for method, path, names in (
            ("POST", "secrets/update", ("secret_id", "secret_value.*", "auth_config.*")),
            ("DELETE", "secrets/delete", ("secret_id",)),
            ("POST", "endpoints/create", ("model_configs[].model_definition_id",)),
            ("POST", "endpoints/update", ("endpoint_id", "model_configs[].model_definition_id")),
            ("DELETE", "endpoints/delete", ("endpoint_id",)),
            ("POST", "endpoints/set-tag", ("endpoint_id",)),
            ("DELETE", "endpoints/delete-tag", ("endpoint_id",)),
            ("POST", "endpoints/models/attach", ("endpoint_id", "model_config.model_definition_id")),
            ("POST", "endpoints/models/detach", ("endpoint_id", "model_definition_id")),
            ("POST", "endpoints/bindings/create", ("endpoint_id", "resource_id")),
            ("DELETE", "endpoints/bindings/delete", ("endpoint_id", "resource_id")),
            ("POST", "model-definitions/create", ("secret_id",)),
            ("POST", "model-definitions/update", ("model_definition_id", "secret_id")),
            ("DELETE", "model-definitions/delete", ("model_definition_id",)),
            ("POST", "budgets/update", ("budget_policy_id",)),
            ("DELETE", "budgets/delete", ("budget_policy_id",)),
            ("POST", "guardrails/create", ("scorer_id", "action_endpoint_id")),
            ("PATCH", "guardrails/update-config", ("endpoint_id", "guardrail_id")),
            ("DELETE", "guardrails/delete", ("guardrail_id",)),
            ("POST", "guardrails/add-to-endpoint", ("endpoint_id", "guardrail_id")),
            ("DELETE", "guardrails/remove-from-endpoint", ("endpoint_id", "guardrail_id")),
        )
    },
    # The UI's prompt lab: the run's user name, as in runs/create.
    ("POST /mlflow/runs/create-promptlab-run", 2): {"user_id": (Nested.NOT_AN_OBJECT, None)},
    # Jobs: the parameters are read per job name by the rule (guard/jobs.py), which checks every object they name;
    # a search's parameters only filter the store's list, which the rule keeps to jobs the caller may see.
    ("POST /jobs/", 3): {"params.*": (Nested.BY_RULE, None)},
    ("POST /jobs/search", 3): {"params.*": (Nested.BY_RULE, None)},
    ("POST /mlflow/issues/invoke", 3): {"secret_id": (Nested.BY_RULE, None)},
    ("POST /mlflow/prompt-optimization/jobs", 3): {"config.dataset_id": (Nested.BY_RULE, None)},
    # The store acts on the job of the path, which the rule checks.
    **{
        (f"{method} /mlflow/prompt-optimization/jobs/{{job_id:str}}{suffix}", 3): {
            "job_id": (Nested.NOT_AN_OBJECT, None)
        }
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/cancel"))
    },
    # A provider key's maps: its values and settings, keys of the provider's choosing.
    ("POST /mlflow/gateway/secrets/create", 3): {"secret_value.*": _MAP, "auth_config.*": _MAP},
}


def nested_rule(spec: RouteSpec, path: str) -> NestedRule | None:
    """The rule for an id at `path` of this route's body; None when there is none (the call is refused)."""
    rules = NESTED_IDS.get((spec.name, spec.version), {})
    if (rule := rules.get(path)) is not None:
        return rule
    for pattern, rule in rules.items():
        # `a.*`: any key below the object at `a`; `a[]*`: anything below the list at `a`
        if pattern.endswith("*") and path.startswith(pattern[:-1]):
            return rule
    return None


async def require_nested(checks: Checks, request: Request, wanted: Level) -> None:
    """Every id below the top level of the body is authorized, or the call is refused (400 for a path
    without a rule or a value that is not a string id)."""
    # The traces named are asked of the store together up front, then judged in order below.
    answers = await checks.trace_experiments(request, _trace_ids(request))
    for item in request.nested:
        rule = nested_rule(request.spec, item.path)
        if rule is None:
            raise InvalidParameter(f"Field '{item.path}' is not accepted in this call.")
        kind, level = rule
        if kind in (Nested.BY_RULE, Nested.NOT_AN_OBJECT, Nested.IN_WORKSPACE) or item.value is None:
            continue
        values = item.value if isinstance(item.value, list) else [item.value]
        for value in values:
            if not isinstance(value, str):
                raise InvalidParameter(f"Field '{item.path}' must be a string id.")
            if kind is Nested.RUN:
                await checks.require_run(request, value, level or wanted)
            elif kind is Nested.LOGGED_MODEL:
                await checks.require_logged_model(request, value, level or wanted)
            elif kind is Nested.TRACE:
                await checks.require_trace(request, value, level or wanted, answers)
            elif kind is Nested.LABEL_SCHEMA:
                await checks.require_in_experiment(request, "label_schema", value, level or wanted)
            elif kind is Nested.NEW_TRACE and value:
                experiment_id = answered(answers, value)
                if experiment_id is not None:
                    await checks.require_experiment(request, experiment_id, level or wanted)


def _trace_ids(request: Request) -> list[str]:
    """The trace ids `require_nested` asks the store about, in order: each of a trace's, each non-empty one of an
    id the call may create."""
    found: list[str] = []
    for item in request.nested:
        rule = nested_rule(request.spec, item.path)
        if rule is None or rule[0] not in (Nested.TRACE, Nested.NEW_TRACE) or item.value is None:
            continue
        values = item.value if isinstance(item.value, list) else [item.value]
        found.extend(v for v in values if isinstance(v, str) and (v or rule[0] is Nested.TRACE))
    return found
