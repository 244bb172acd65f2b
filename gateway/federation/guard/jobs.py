"""Rules of the store's jobs: a job follows what it acts on.

A job of MLflow's job runner acts on objects named in its parameters (an experiment, trace ids that may lie in
other experiments, a run it writes into, a prompt it writes a version of, a dataset) and calls LLM providers.

- **Starting** one (`POST /ajax-api/3.0/jobs/`, the UI's `scorer/invoke`, `genai/evaluate/invoke`,
  `issues/invoke`, and `prompt-optimization/jobs`): the parameters are read per job name and every object they
  name is checked before the store sees the call. CAN_EDIT on the job's experiment (a job writes assessments,
  issues, metrics or artifacts there); each trace must be one the caller may read (404 otherwise, as a missing
  trace) and lie in that experiment (403 in MLflow's words otherwise, as MLflow's own UI handlers refuse it); a
  run it names CAN_EDIT (a run of another workspace or of a hidden experiment: 404); a prompt's registered model
  CAN_EDIT (optimisation writes a new version); a dataset CAN_READ on the workspace (datasets are the
  workspace's); an AI-gateway endpoint or provider key CAN_USE on the workspace, as invoking an endpoint needs.
  A scorer carrying its own code (a `@scorer` function's source, `call_source`), which a store that sets
  MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS runs on its host, needs CAN_MANAGE on the workspace; so does registering
  one (`scorers/register`), since the registered scorer is run by name later. Online scoring jobs are started by
  the store's own scheduler from a scorer's online configuration and are refused here, as is a job name the
  gateway has no rule for. A `username` parameter is not passed on: the job runs as the store's own identity.
- The store's answer names the jobs started (and the run created for them): each is recorded (`store_jobs`)
  with the checks its start passed. A job the gateway cannot record is refused afterwards rather than left
  unreachable: the call answers 503 and the job is left to its experiment's managers in the store.
- **Reading** a job by id asks CAN_READ of every object its start was checked on (CAN_USE on the workspace
  stays CAN_USE): a job shows its parameters (experiment, traces, prompt, dataset, a scorer's code) and its
  results, read from and written to those objects, so their readers may read it (MLflow's own auth app asks
  CAN_READ on the experiment of a prompt optimisation job; for other jobs it asks to be their creator, which the
  gateway, recording jobs by what they act on, does not). **Cancelling or deleting** one asks those checks again
  at the levels its start passed. A job not recorded in this workspace, or one whose objects the caller may not
  read, answers 404 as a missing job; one it may read but not change, 403.
- **Listing** jobs (`jobs/search`, `prompt-optimization/jobs/search`) keeps, from the store's answer, the jobs
  recorded in this workspace the caller may read; the prompt optimisation search names its experiment, which
  must be readable.

Where a job's LLM calls go is checked against the allow-list before the store sees the call
(outbound/check.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from gateway.authz.levels import RANK, Level
from gateway.core.errors import GatewayError, InvalidParameter, PermissionDenied, ResourceNotFound, StoreUnavailable
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.ports import JobRecord, Need
from gateway.federation.guard.request import After, Plan, Request

INVOKE_SCORER = "invoke_scorer"
EVALUATE = "invoke_genai_evaluate"
DETECT_ISSUES = "invoke_issue_detection"
OPTIMIZE_PROMPTS = "optimize_prompts"
ONLINE_SCORING = frozenset({"run_online_trace_scorer", "run_online_session_scorer"})

SUBMIT = "POST /jobs/"
# The routes that start one job of a known name, with the body as its parameters.
STARTED_BY = {
    "POST /mlflow/scorer/invoke": INVOKE_SCORER,
    "POST /mlflow/genai/evaluate/invoke": EVALUATE,
    "POST /mlflow/issues/invoke": DETECT_ISSUES,
    "POST /mlflow/prompt-optimization/jobs": OPTIMIZE_PROMPTS,
}
FOREIGN_TRACES = "Not all requested traces could be accessed."  # MLflow's words (handlers.py)


def job_missing(job_id: str) -> str:
    return f"Job with ID {job_id} not found"


# -- starting a job -----------------------------------------------------------------------------------


async def job_start(checks: Checks, request: Request, wanted: Level) -> Plan:
    """Every object the job's parameters name, checked before the store sees the call; the job recorded after."""
    document = request.document
    body: bytes | None = None
    if request.spec.name == SUBMIT:
        job_name = document.get("job_name")
        params = document.get("params")
        if not isinstance(job_name, str) or not isinstance(params, dict):
            return Plan()  # the store refuses a submission without a job name and parameters
        if "username" in params:  # the job runs as the store's own identity, never as a name the client chose
            body = msgspec.json.encode({**document, "params": {k: v for k, v in params.items() if k != "username"}})
    else:
        job_name, params = STARTED_BY[request.spec.name], document
    needs = await _check_start(checks, request, job_name, params)
    return Plan(body=body, after=_recording(checks, request, job_name, needs))


async def _check_start(checks: Checks, request: Request, job_name: str, params: dict[str, Any]) -> list[Need]:
    if job_name in ONLINE_SCORING:
        raise PermissionDenied(
            f"Job '{job_name}' is started by the store's own scheduler from a scorer's online configuration "
            "(scorers/online-config), not through this gateway."
        )
    if job_name not in (INVOKE_SCORER, EVALUATE, DETECT_ISSUES, OPTIMIZE_PROMPTS):
        raise PermissionDenied(f"Job '{job_name}' cannot be tied to objects you hold a grant on.")
    needs: list[Need] = []
    experiment_id = params.get("experiment_id")
    if not isinstance(experiment_id, str) or not experiment_id.strip():
        raise InvalidParameter("A job must name its experiment (experiment_id).")
    experiment_id = experiment_id.strip()
    await checks.require_experiment(request, experiment_id, Level.CAN_EDIT)
    needs.append(Need("experiment", experiment_id, Level.CAN_EDIT))
    await _require_traces(checks, request, _strings(params.get("trace_ids"), "trace_ids"), experiment_id)
    run_id = params.get("run_id")
    if run_id is not None:
        if not isinstance(run_id, str):
            raise InvalidParameter("run_id must be a string.")
        await checks.require_run(request, run_id, Level.CAN_EDIT)
        run_experiment = await checks.lookups.experiment_of(request.link, "run", run_id)
        if run_experiment is not None and run_experiment != experiment_id:
            needs.append(Need("experiment", run_experiment, Level.CAN_EDIT))
    if has_custom_code(job_name, params):
        checks.require_workspace(request, Level.CAN_MANAGE)
        needs.append(Need("workspace", "", Level.CAN_MANAGE))
    if job_name == DETECT_ISSUES and (params.get("endpoint_name") or params.get("secret_id")):
        checks.require_workspace(request, Level.CAN_USE)  # an AI-gateway endpoint or provider key of the workspace
        needs.append(Need("workspace", "", Level.CAN_USE))
    if job_name == OPTIMIZE_PROMPTS:
        prompt = prompt_name(params.get(_prompt_field(request)))
        if prompt is None:
            raise InvalidParameter("A prompt optimisation must name its prompt (prompts:/<name>/<version>).")
        await checks.require_model(request, prompt, Level.CAN_EDIT)
        needs.append(Need("model", prompt, Level.CAN_EDIT))
        config = params.get("config")
        dataset_id = (config if isinstance(config, dict) else params).get("dataset_id")
        if dataset_id:
            checks.require_workspace(request, Level.CAN_READ)  # evaluation datasets are the workspace's
            needs.append(Need("workspace", "", Level.CAN_READ))
    return needs


async def _require_traces(checks: Checks, request: Request, trace_ids: list[str], experiment_id: str) -> None:
    """Each trace readable (404 as missing otherwise) and in the job's experiment (403, MLflow's words)."""
    distinct = list(dict.fromkeys(trace_ids))
    answers = await checks.trace_experiments(request, distinct)  # asked together, judged in order
    for trace_id in distinct:
        found = await checks.require_trace(request, trace_id, Level.CAN_READ, answers)
        if found != experiment_id:
            raise PermissionDenied(FOREIGN_TRACES)


def _prompt_field(request: Request) -> str:
    """Where the prompt is named: `POST /jobs/` hands its parameters to `optimize_prompts_job`, which reads
    `prompt_uri`; the prompt-optimization route's body names it `source_prompt_uri` (the store renames it)."""
    return "prompt_uri" if request.spec.name == SUBMIT else "source_prompt_uri"


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidParameter(f"{name} must be a list of strings")
    return value


def prompt_name(uri: Any) -> str | None:
    """The registered model of a prompt URI: `prompts:/<name>/<version>` or `prompts:/<name>@<alias>`."""
    if not isinstance(uri, str) or not uri.startswith("prompts:/"):
        return None
    rest = uri[len("prompts:/") :].strip("/")
    name = rest.split("/", 1)[0].split("@", 1)[0]
    return name or None


def serialized_scorers(job_name: str, params: dict[str, Any]) -> list[Any]:
    """The scorers a job's parameters carry, decoded (a scorer that is not JSON is kept as its text)."""
    if job_name == INVOKE_SCORER:
        found = [params.get("serialized_scorer")]
    elif job_name == EVALUATE:
        scorers = params.get("serialized_scorers")
        found = list(scorers) if isinstance(scorers, list) else []
    else:
        return []
    return [
        decoded_text(item, "serialized_scorer") if isinstance(item, str) else item for item in found if item is not None
    ]


def decoded_text(text: str, field: str) -> Any:
    """JSON carried as text inside a body, decoded as the store will decode it (`text` itself when it is not JSON).
    Nesting too deep for the decoder is refused: the store could not read it either, and nothing is passed on
    unchecked."""
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise InvalidParameter(f"Invalid value for parameter '{field}': nested too deeply.") from None


def nodes(root: Any) -> Iterator[Any]:
    """Every value of a decoded document, at any depth (walked without recursion: depth is the sender's choice)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(reversed(node.values()))  # reversed onto the stack: visited in document order
        elif isinstance(node, list):
            stack.extend(reversed(node))


def has_custom_code(job_name: str, params: dict[str, Any]) -> bool:
    """Whether a scorer of the job carries its own code (`call_source`, at any depth, as MLflow detects it)."""
    return any(
        isinstance(node, dict) and node.get("call_source") is not None
        for scorer in serialized_scorers(job_name, params)
        for node in nodes(scorer)
    )


def _recording(checks: Checks, request: Request, job_name: str, needs: list[Need]) -> After:
    """Record the jobs the store's answer names (and the run it created for them) before the answer goes out."""
    link, creator = request.link, request.principal.name

    async def after(status: int, answer: bytes) -> bytes | None:
        if status != 200 or not answer.startswith(b"{"):
            return None
        document = msgspec.json.decode(answer)
        job_ids, run_id = started_jobs(document)
        if checks.jobs is None or not job_ids:
            return None
        records = [JobRecord(job_id, job_name, tuple(needs), creator) for job_id in job_ids]
        try:
            await checks.jobs.record(link, records, run_id)
        except Exception as exc:
            raise StoreUnavailable(
                "The job was started but could not be recorded, so this gateway will not show it; try again."
            ) from exc
        return None

    return after


def started_jobs(document: dict[str, Any]) -> tuple[list[str], str | None]:
    """The job ids an answer names (`job_id`, `jobs[].job_id` or `job.job_id`) and the run created for them."""
    found: list[str] = []
    run_id = document.get("run_id")
    if isinstance(document.get("job_id"), str):
        found.append(document["job_id"])
    for item in document.get("jobs") or []:
        if isinstance(item, dict) and isinstance(item.get("job_id"), str):
            found.append(item["job_id"])
    job = document.get("job")
    if isinstance(job, dict) and isinstance(job.get("job_id"), str):
        found.append(job["job_id"])
        run_id = run_id or job.get("run_id")
    return found, run_id if isinstance(run_id, str) and run_id else None


# -- one job by id, and lists of jobs -----------------------------------------------------------------


async def job(checks: Checks, request: Request, wanted: Level) -> Plan:
    """A job by id, recorded in this workspace: read with CAN_READ on everything its start was checked on,
    cancelled or deleted with every check its start passed."""
    job_id = request.single("job_id")
    found = (await checks.jobs.find(request.link, [job_id])).get(job_id) if checks.jobs is not None else None
    if found is None:
        raise ResourceNotFound(job_missing(job_id))
    try:
        await require_needs(checks, request, reading(found.needs) if wanted is Level.CAN_READ else found.needs)
    except ResourceNotFound:
        raise ResourceNotFound(job_missing(job_id)) from None
    return Plan()


async def job_search(checks: Checks, request: Request, wanted: Level) -> Plan:
    """The store's list, kept to the jobs recorded here whose checks the caller passes (a prompt optimisation
    search names its experiment, which must be readable)."""
    if request.spec.name.startswith(("GET /mlflow/prompt-optimization", "POST /mlflow/prompt-optimization")):
        for experiment_id in request.experiment_ids(required=True):
            await checks.require_experiment(request, experiment_id, Level.CAN_READ)

    async def keep_visible(status: int, answer: bytes) -> bytes | None:
        if status != 200 or not answer.startswith(b"{"):
            return None
        document = msgspec.json.decode(answer)
        listed = document.get("jobs")
        if not isinstance(listed, list):
            return None
        ids = [str(item.get("job_id")) for item in listed if isinstance(item, dict)]
        records = await checks.jobs.find(request.link, ids) if checks.jobs is not None else {}
        kept = [
            item
            for item in listed
            if isinstance(item, dict)
            and (record := records.get(str(item.get("job_id")))) is not None
            and await passes(checks, request, reading(record.needs))
        ]
        if len(kept) == len(listed):
            return None
        document["jobs"] = kept
        return msgspec.json.encode(document)

    return Plan(after=keep_visible)


def reading(needs: Iterable[Need]) -> list[Need]:
    """What reading a job asks of each object its start was checked on: CAN_READ at most (CAN_USE on the
    workspace stays CAN_USE). A job shows its parameters (the experiment, its traces, the prompt, a dataset, a
    scorer's code, an endpoint's name) and its results (assessments, issues, an evaluation's metrics, a prompt's
    new version), all read from or written to those objects: their readers may read it."""
    read = RANK[Level.CAN_READ]
    return [Need(n.kind, n.object_id, n.level if RANK.get(n.level, 0) <= read else Level.CAN_READ) for n in needs]


async def require_needs(checks: Checks, request: Request, needs: Iterable[Need]) -> None:
    for need in needs:
        if need.kind == "experiment":
            await checks.require_experiment(request, need.object_id, need.level)
        elif need.kind == "model":
            await checks.require_model(request, need.object_id, need.level)
        elif need.kind == "workspace":
            checks.require_workspace(request, need.level)
        else:  # a record this code does not know: nobody passes it
            raise ResourceNotFound(f"unknown check {need.kind!r}")


async def passes(checks: Checks, request: Request, needs: Iterable[Need]) -> bool:
    try:
        await require_needs(checks, request, needs)
    except GatewayError:
        return False
    return True


# -- registering a scorer -----------------------------------------------------------------------------


async def scorer_register(checks: Checks, request: Request, wanted: Level) -> Plan:
    """CAN_EDIT on the experiment; a scorer carrying its own code also CAN_MANAGE on the workspace, since the
    store runs it whenever the scorer is invoked by name."""
    for experiment_id in request.experiment_ids(required=True):
        await checks.require_experiment(request, experiment_id, wanted)
    scorer = request.document.get("serialized_scorer")
    if isinstance(scorer, str) and has_custom_code(INVOKE_SCORER, {"serialized_scorer": scorer}):
        checks.require_workspace(request, Level.CAN_MANAGE)
    return Plan()


def started_by_admin(checks: Checks, request: Request) -> Plan:
    """An account admin's job passes every check; it is recorded with the checks its parameters name, so that
    others see it as they would a job of their own (`username` is not passed on, as for anyone)."""
    document = request.document
    body: bytes | None = None
    if request.spec.name == SUBMIT:
        job_name, params = document.get("job_name"), document.get("params")
        if not isinstance(job_name, str) or not isinstance(params, dict):
            return Plan()
        if "username" in params:
            body = msgspec.json.encode({**document, "params": {k: v for k, v in params.items() if k != "username"}})
    else:
        job_name, params = STARTED_BY[request.spec.name], document
    needs: list[Need] = []
    if isinstance(params.get("experiment_id"), str):
        needs.append(Need("experiment", params["experiment_id"].strip(), Level.CAN_EDIT))
    if has_custom_code(job_name, params):
        needs.append(Need("workspace", "", Level.CAN_MANAGE))
    if job_name == OPTIMIZE_PROMPTS and (prompt := prompt_name(params.get(_prompt_field(request)))) is not None:
        needs.append(Need("model", prompt, Level.CAN_EDIT))
    return Plan(body=body, after=_recording(checks, request, job_name, needs))
