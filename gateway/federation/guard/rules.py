"""Which rule checks each route, and the level it asks for: data over the route table.

Every declared route (`FORWARDED_ROUTES`, `WORKSPACE_ROUTES`, `SERVER_INFO`) gets its rule from its
resource and action (`BY_KIND`), or from `RULE_OVERRIDES` where the route needs another one. `RULES`
holds the result per route; a declared route missing from it is refused (deny by default), and
tests/unit/test_route_table.py fails on it first. The function behind each rule is in table.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from gateway.authz.levels import Level
from gateway.core.route_table import (
    FORWARDED_ROUTES,
    SERVER_INFO,
    UI_ROUTES,
    WORKSPACE_ROUTES,
    Action,
    Resource,
    RouteSpec,
)


class Rule(StrEnum):
    """How a call is tied to the grants it needs (what each checks: the functions in table.py)."""

    PUBLIC = "public"  # answered by the gateway itself; a forwarded call is refused
    AUTHENTICATED = "authenticated"  # any principal who may enter the workspace
    WORKSPACE_VISIBLE = "workspace-visible"  # the workspaces API: answered by the gateway, refused here
    WORKSPACE_ADMIN = "workspace-admin"  # the same, for account admins only
    WORKSPACE_LEVEL = "workspace-level"  # the level asked for, on the whole workspace
    EXPERIMENT = "experiment"  # every experiment the call names (and a logged model's source run)
    EXPERIMENT_CREATE = "experiment-create"  # CAN_USE on the workspace; the creator becomes owner
    EXPERIMENT_SEARCH = "experiment-search"  # the filter is narrowed to the readable experiments
    EXPERIMENT_IDS = "experiment-ids"  # `experiment_ids` is cut to the readable ones
    EXPERIMENT_BY_NAME = "experiment-by-name"  # no id up front: the answer is checked (found_experiment)
    RUN = "run"  # every run the call names, through the experiment it is in
    LOGGED_MODEL = "logged-model"  # the logged model, through the experiment it is in
    MODEL_CREATE = "model-create"  # CAN_USE on the workspace; the creator becomes owner
    MODEL_SEARCH = "model-search"  # the filter is narrowed to the readable registered models
    MODEL = "model"  # the registered model by name (stages need their own levels)
    MODEL_VERSION_CREATE = "model-version-create"  # CAN_EDIT on the model, CAN_READ on the source
    ARTIFACT = "artifact"  # the experiment the artifact path lies in
    TRACE_CREATE = "trace-create"  # CAN_EDIT on the experiment the trace goes into
    TRACE_SEARCH = "trace-search"  # readable experiments only, or the whole workspace
    TRACE = "trace"  # every trace, run and experiment the call names
    EXPERIMENT_OBJECT = "experiment-object"  # an issue, label schema or review queue, through its experiment
    GRAPHQL = "graphql"  # the UI's allow-listed queries: every run and experiment their input names
    JOB_START = "job-start"  # every object the job's parameters name (jobs.py); the job is recorded after
    JOB = "job"  # a job recorded when the gateway started it: its start's checks, asked again (reads: CAN_READ)
    JOB_SEARCH = "job-search"  # the store's list, kept to recorded jobs the caller may read
    SCORER_REGISTER = "scorer-register"  # the experiment; a scorer with its own code: CAN_MANAGE on the workspace


BY_KIND: dict[tuple[Resource, Action], Rule] = {
    **{(resource, Action.PUBLIC): Rule.PUBLIC for resource in Resource},
    **{(Resource.SERVER, a): Rule.AUTHENTICATED for a in Action if a is not Action.PUBLIC},
    **{(Resource.WORKSPACE, a): Rule.WORKSPACE_VISIBLE for a in Action if a not in (Action.ADMIN, Action.PUBLIC)},
    (Resource.WORKSPACE, Action.ADMIN): Rule.WORKSPACE_ADMIN,
    **{(Resource.EXPERIMENT, a): Rule.EXPERIMENT for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.EXPERIMENT, Action.CREATE): Rule.EXPERIMENT_CREATE,
    (Resource.EXPERIMENT, Action.SEARCH): Rule.EXPERIMENT_SEARCH,
    (Resource.RUN, Action.CREATE): Rule.EXPERIMENT,
    **{(Resource.RUN, a): Rule.RUN for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.RUN, Action.SEARCH): Rule.EXPERIMENT_IDS,
    (Resource.LOGGED_MODEL, Action.CREATE): Rule.EXPERIMENT,
    (Resource.LOGGED_MODEL, Action.SEARCH): Rule.EXPERIMENT_IDS,
    **{(Resource.LOGGED_MODEL, a): Rule.LOGGED_MODEL for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.REGISTERED_MODEL, Action.CREATE): Rule.MODEL_CREATE,
    (Resource.REGISTERED_MODEL, Action.SEARCH): Rule.MODEL_SEARCH,
    **{(Resource.REGISTERED_MODEL, a): Rule.MODEL for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.MODEL_VERSION, Action.CREATE): Rule.MODEL_VERSION_CREATE,
    (Resource.MODEL_VERSION, Action.SEARCH): Rule.MODEL_SEARCH,
    **{(Resource.MODEL_VERSION, a): Rule.MODEL for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    **{(Resource.ARTIFACT, a): Rule.ARTIFACT for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    (Resource.TRACE, Action.CREATE): Rule.TRACE_CREATE,
    (Resource.TRACE, Action.SEARCH): Rule.TRACE_SEARCH,
    **{(Resource.TRACE, a): Rule.TRACE for a in (Action.READ, Action.EDIT, Action.MANAGE)},
    **{(Resource.DATASET, a): Rule.WORKSPACE_LEVEL for a in Action if a not in (Action.ADMIN, Action.PUBLIC)},
    # Webhooks receive the events of every registered model of the workspace: workspace managers only. The
    # store's AI gateway and its MCP server registry are configuration of the workspace (their levels:
    # RESOURCE_LEVELS); no MCP server belongs to an experiment or a model.
    **{
        (resource, a): Rule.WORKSPACE_LEVEL
        for resource in (Resource.WEBHOOK, Resource.AI_GATEWAY, Resource.AI_GATEWAY_SECRET, Resource.MCP_SERVER)
        for a in Action
        if a not in (Action.ADMIN, Action.PUBLIC)
    },
    **{(Resource.SCORER, a): Rule.EXPERIMENT for a in (Action.READ, Action.CREATE, Action.EDIT, Action.MANAGE)},
    # Issues, label schemas and review queues belong to one experiment: created and listed by naming it,
    # read and changed by their own id, which the store is asked for once (the experiment of an id is cached).
    **{
        (resource, action): rule
        for resource in (Resource.ISSUE, Resource.LABEL_SCHEMA, Resource.REVIEW_QUEUE)
        for action, rule in (
            (Action.CREATE, Rule.EXPERIMENT),
            (Action.SEARCH, Rule.EXPERIMENT),
            (Action.READ, Rule.EXPERIMENT_OBJECT),
            (Action.EDIT, Rule.EXPERIMENT_OBJECT),
            (Action.MANAGE, Rule.EXPERIMENT_OBJECT),
        )
    },
    (Resource.QUERY, Action.READ): Rule.GRAPHQL,
    # Jobs follow what they act on (guard/jobs.py).
    (Resource.JOB, Action.CREATE): Rule.JOB_START,
    (Resource.JOB, Action.SEARCH): Rule.JOB_SEARCH,
    **{(Resource.JOB, a): Rule.JOB for a in (Action.READ, Action.EDIT, Action.MANAGE)},
}

# Routes whose resource and action do not say how to check them (by route name, every API version).
RULE_OVERRIDES: dict[str, Rule] = {
    # No id up front: the experiment found is checked in the answer (unreadable = not found).
    "GET /mlflow/experiments/get-by-name": Rule.EXPERIMENT_BY_NAME,
    "POST /mlflow/experiments/search-datasets": Rule.EXPERIMENT_IDS,
    # Looks configurations up by scorer id, across experiments: only a reader of the whole workspace.
    "GET /mlflow/scorers/online-configs": Rule.WORKSPACE_LEVEL,
    # Found by name within the experiment the call names.
    "GET /mlflow/label-schemas/get-by-name": Rule.EXPERIMENT,
    "GET /mlflow/review-queues/get-by-name": Rule.EXPERIMENT,
    # A registered scorer carrying its own code is run by the store whenever it is invoked by name.
    "POST /mlflow/scorers/register": Rule.SCORER_REGISTER,
}


def _declared_rule(spec: RouteSpec) -> Rule | None:
    return RULE_OVERRIDES.get(spec.name) or BY_KIND.get((spec.resource, spec.action))


# The rule of every declared route, by (route name, API version); a route not in it is refused.
RULES: Mapping[tuple[str, int], Rule] = {
    (spec.name, spec.version): rule
    for spec in (*FORWARDED_ROUTES, *WORKSPACE_ROUTES, SERVER_INFO, *UI_ROUTES)
    if (rule := _declared_rule(spec)) is not None
}


def rule_for(spec: RouteSpec) -> Rule:
    """The rule a route is checked with; raises LookupError for a route without one (deny by default)."""
    rule = RULES.get((spec.name, spec.version))
    if rule is None:
        raise LookupError(f"no authorization rule for {spec.name} v{spec.version}")
    return rule


# -- levels -----------------------------------------------------------------------------------------

WANTED = {
    Action.READ: Level.CAN_READ,
    Action.SEARCH: Level.CAN_READ,
    Action.CREATE: Level.CAN_EDIT,
    Action.EDIT: Level.CAN_EDIT,
    Action.MANAGE: Level.CAN_MANAGE,
}
# Where the anchors say otherwise (Databricks: CAN_EDIT creates, deletes and restores runs).
LEVEL_OVERRIDES: dict[str, Level] = {
    "POST /mlflow/runs/delete": Level.CAN_EDIT,
    "POST /mlflow/runs/restore": Level.CAN_EDIT,
    "DELETE /mlflow/logged-models/{model_id:str}": Level.CAN_EDIT,
    "POST /mlflow/registered-models/rename": Level.CAN_MANAGE,
    "POST /mlflow/traces/delete-traces": Level.CAN_EDIT,
}


# Workspace-level resources whose levels are not those of their actions: webhooks and AI-gateway provider keys
# (their metadata included) are for workspace managers; the AI gateway's endpoints and models are read and
# invoked by anyone who may use the workspace, and configured by its managers.
RESOURCE_LEVELS: dict[tuple[Resource, Action], Level] = {
    **{(Resource.WEBHOOK, a): Level.CAN_MANAGE for a in Action},
    **{(Resource.AI_GATEWAY_SECRET, a): Level.CAN_MANAGE for a in Action},
    **{(Resource.AI_GATEWAY, a): Level.CAN_MANAGE for a in Action},
    **{(Resource.AI_GATEWAY, a): Level.CAN_USE for a in (Action.READ, Action.SEARCH, Action.INVOKE)},
    # The MCP server registry: read by anyone who may use the workspace, registered and changed by its managers.
    **{(Resource.MCP_SERVER, a): Level.CAN_MANAGE for a in Action},
    **{(Resource.MCP_SERVER, a): Level.CAN_USE for a in (Action.READ, Action.SEARCH)},
}


def wanted_level(spec: RouteSpec) -> Level:
    """The level a route asks for on the objects it names (rules may ask more of some, or less)."""
    if spec.name in LEVEL_OVERRIDES:
        return LEVEL_OVERRIDES[spec.name]
    if (spec.resource, spec.action) in RESOURCE_LEVELS:
        return RESOURCE_LEVELS[(spec.resource, spec.action)]
    return WANTED.get(spec.action, Level.CAN_MANAGE)
