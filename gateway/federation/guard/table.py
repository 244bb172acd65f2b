"""The rule table: each `Rule` and the function that checks it, one small function per rule, by resource.

`CHECKS` decides for every principal but account admins: the function raises (404 for what the caller may
not read, 403 for what it may read but not change) or returns the `Plan` (a narrowed search, an answer
without asking the store, steps after the store's answer). Account admins pass every rule; `ADMIN_PLANS`
keeps the bookkeeping their calls still need (owners of new objects, registered-model ids following
renames and deletes). A test proves every `Rule` has a function here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.authz.levels import Level
from gateway.federation.guard import (
    artifacts,
    experiments,
    genai,
    graphql,
    jobs,
    logged_models,
    models,
    runs,
    traces,
    workspace,
)
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.request import Plan, Request
from gateway.federation.guard.rules import Rule

# (checks, request, the level the route asks for) → the plan, or an error refusing the call.
RuleCheck = Callable[[Checks, Request, Level], Awaitable[Plan]]
AdminPlan = Callable[[Checks, Request], Plan]

CHECKS: dict[Rule, RuleCheck] = {
    Rule.PUBLIC: workspace.unguarded,
    Rule.AUTHENTICATED: workspace.authenticated,
    Rule.WORKSPACE_VISIBLE: workspace.workspaces_api,
    Rule.WORKSPACE_ADMIN: workspace.workspaces_api,
    Rule.WORKSPACE_LEVEL: workspace.workspace_level,
    Rule.EXPERIMENT: experiments.experiment,
    Rule.EXPERIMENT_CREATE: experiments.experiment_create,
    Rule.EXPERIMENT_SEARCH: experiments.experiment_search,
    Rule.EXPERIMENT_IDS: experiments.experiment_ids,
    Rule.EXPERIMENT_BY_NAME: experiments.experiment_by_name,
    Rule.RUN: runs.run,
    Rule.LOGGED_MODEL: logged_models.logged_model,
    Rule.MODEL_CREATE: models.model_create,
    Rule.MODEL_SEARCH: models.model_search,
    Rule.MODEL: models.model,
    Rule.MODEL_VERSION_CREATE: models.model_version_create,
    Rule.ARTIFACT: artifacts.artifact,
    Rule.TRACE_CREATE: traces.trace_create,
    Rule.TRACE_SEARCH: traces.trace_search,
    Rule.TRACE: traces.trace,
    Rule.EXPERIMENT_OBJECT: genai.experiment_object,
    Rule.GRAPHQL: graphql.graphql,
    Rule.JOB_START: jobs.job_start,
    Rule.JOB: jobs.job,
    Rule.JOB_SEARCH: jobs.job_search,
    Rule.SCORER_REGISTER: jobs.scorer_register,
}

ADMIN_PLANS: dict[Rule, AdminPlan] = {
    Rule.EXPERIMENT_CREATE: experiments.experiment_created,
    Rule.MODEL_CREATE: models.model_created,
    Rule.MODEL: models.model_changed,
    Rule.EXPERIMENT_OBJECT: genai.attributed,
    Rule.JOB_START: jobs.started_by_admin,
    Rule.TRACE: traces.admin_trace,
}
