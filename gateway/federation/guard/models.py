"""Rules of the model registry: registered models (by the gateway's immutable id of each name) and their versions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlparse

import msgspec

from gateway.authz.decide import Everything
from gateway.authz.levels import Level, experiment_object, transition_level, workspace_object
from gateway.core.errors import PermissionDenied
from gateway.core.paths import canonical_artifact_path
from gateway.core.reserved import SOURCE_READ_ONLY_TAG, folded
from gateway.core.route_table import (
    MODEL_VERSIONS_DELETE,
    MODEL_VERSIONS_DELETE_TAG,
    MODEL_VERSIONS_SET_TAG,
    MODEL_VERSIONS_TRANSITION_STAGE,
    REGISTERED_MODELS_DELETE,
    REGISTERED_MODELS_DELETE_ALIAS,
    REGISTERED_MODELS_DELETE_TAG,
    REGISTERED_MODELS_RENAME,
    REGISTERED_MODELS_SET_ALIAS,
    REGISTERED_MODELS_SET_TAG,
)
from gateway.federation.guard.artifacts import artifact_experiment
from gateway.federation.guard.checks import Checks
from gateway.federation.guard.owners import recording_owner
from gateway.federation.guard.request import EMPTY_RESULT, Plan, Request

# MLflow's placeholders of a prompt version's source (mlflow.prompt.constants: the client's and the store's),
# and the tag that makes a version a prompt's.
PROMPT_SOURCE_PLACEHOLDERS = frozenset({"dummy-source", "prompt-template"})
PROMPT_TAG = "mlflow.prompt.is_prompt"

RENAME = REGISTERED_MODELS_RENAME.name
DELETE = REGISTERED_MODELS_DELETE.name
TRANSITION_STAGE = MODEL_VERSIONS_TRANSITION_STAGE.name
MODEL_TAGS = frozenset({REGISTERED_MODELS_SET_TAG.name, REGISTERED_MODELS_DELETE_TAG.name})
# Writes that may move a version's stage (a store without stages keeps it in a tag) or alias, or delete or rename
# versions: once the store accepted one, the model's protected versions are read again (registry/sources.py).
MOVES_PROTECTION = frozenset(
    spec.name
    for spec in (
        MODEL_VERSIONS_TRANSITION_STAGE,
        REGISTERED_MODELS_SET_ALIAS,
        REGISTERED_MODELS_DELETE_ALIAS,
        MODEL_VERSIONS_SET_TAG,
        MODEL_VERSIONS_DELETE_TAG,
        MODEL_VERSIONS_DELETE,
        REGISTERED_MODELS_DELETE,
        REGISTERED_MODELS_RENAME,
    )
)
# Characters Python's tokenizer does not keep as they are inside a string literal (line ends, NUL, ...).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def model_create(checks: Checks, request: Request, wanted: Level) -> Plan:
    """Anyone who may use the workspace registers models and owns them."""
    checks.require_workspace(request, Level.CAN_USE)
    return Plan(after=recording_owner(checks, request, "registered_model", "name", request.ids.name))


def model_created(checks: Checks, request: Request) -> Plan:
    """An account admin's new registered model is owned by them too."""
    return Plan(after=recording_owner(checks, request, "registered_model", "name", request.ids.name))


async def model_search(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`name IN (readable)` is ANDed into the filter; nothing readable (or writable) answers an empty page."""
    readable = checks.authorizer.readable_models(request.principal, request.link.workspace_id)
    if isinstance(readable, Everything):
        return Plan()
    clause = names_clause(await checks.ownership.model_names(request.link, readable))
    if clause is None:
        return Plan(answer=EMPTY_RESULT)
    return request.with_filter(clause)


def names_clause(names: Iterable[str]) -> str | None:
    """`name IN (...)` of the names that can be written into it; None when none can.

    The store reads the list with Python's literal reader (MLflow 3.17.2 `SearchUtils._parse_list_from_sql_token`,
    `ast.literal_eval`), escapes included: a model its owner named `alice\\x2dmodel` would stand for Alice's
    `alice-model` there, and a backslash before the closing quote would move where sqlparse and Python each see a
    string end. A name holding a backslash or a control character is left out (its model is then not found by the
    search of a caller who reads it through a grant on the model alone; get and the other lookups by name still
    find it), as is one holding both quote characters."""
    quoted = [_quote(name) for name in sorted(names)]
    listed = [q for q in quoted if q is not None]
    return "name IN (" + ", ".join(listed) + ")" if listed else None


async def model(checks: Checks, request: Request, wanted: Level) -> Plan:
    """`wanted` on the one registered model named; a stage transition asks the level of the stages involved."""
    name = request.single("name")
    if request.spec.name == TRANSITION_STAGE:
        wanted = await _stage_level(checks, request, name)
    if request.spec.name in MODEL_TAGS and prompt_marker(request.document.get("key")):
        await _require_prompt_marker(checks, request, name)
    await checks.require_model(request, name, wanted)
    return _protection_follows(checks, request, name, _follow_name(checks, request, name))


def prompt_marker(key: object) -> bool:
    """Whether a registered-model tag key (or any key of a list given in its place) is `mlflow.prompt.is_prompt`, as a
    store might compare it (case, accents, blanks around)."""
    keys = key if isinstance(key, list) else [key]
    return any(isinstance(k, str) and folded(k) == PROMPT_TAG for k in keys)


async def _require_prompt_marker(checks: Checks, request: Request, name: str) -> None:
    """Setting or deleting a registered model's `mlflow.prompt.is_prompt` changes what the model is: a prompt
    (`mlflow.genai.load_prompt` refuses a model without it, "registered as a model, not a prompt") or a model
    (`search_registered_models` leaves prompts out). It asks what deleting or renaming the model asks, CAN_MANAGE:
    before, any editor of a prompt (CAN_EDIT) deleted it and every `load_prompt` of the prompt failed."""
    try:
        await checks.require_model(request, name, Level.CAN_MANAGE)
    except PermissionDenied:
        raise PermissionDenied(
            f"Setting or deleting the tag '{PROMPT_TAG}' changes whether registered model '{name}' is a prompt: it "
            "needs CAN_MANAGE on it."
        ) from None


def model_changed(checks: Checks, request: Request) -> Plan:
    """An account admin's rename or delete moves or forgets the model's id too (by the body's `name`)."""
    if not request.ids.name:
        return Plan()
    name = request.ids.name
    return _protection_follows(checks, request, name, _follow_name(checks, request, name))


def _protection_follows(checks: Checks, request: Request, name: str, plan: Plan) -> Plan:
    """After a write that may move a stage or an alias (MOVES_PROTECTION) the store accepted, the model's protected
    versions are read again: the gateway's id of the model is read before `plan`'s step (a deletion forgets it),
    the model by the name it has after (a rename)."""
    protection = checks.protection
    if protection is None or request.spec.name not in MOVES_PROTECTION:
        return plan
    link, then, follow = request.link, plan.after, request.ids.new_name if request.spec.name == RENAME else None

    async def after(status: int, answer: bytes) -> bytes | None:
        model_id = await checks.ownership.model_id(link, name, adopt=False) if status == 200 else None
        replaced = await then(status, answer) if then is not None else None
        if model_id is not None:
            await protection.changed(link, model_id, follow or name)
        return replaced

    plan.after = after
    return plan


async def model_version_create(checks: Checks, request: Request, wanted: Level) -> Plan:
    """CAN_EDIT on the registered model, and CAN_READ on whatever the version is made from.

    A version made by someone who cannot write the files it is made from (CAN_EDIT on the experiment they lie in) is
    made with the tag SOURCE_READ_ONLY_TAG: its stages and aliases do not protect those files (registry/sources.py).
    Otherwise a reader of someone else's run froze its files: a version of it in a model of their own, moved into
    Production, made the run's owner need CAN_MANAGE_PRODUCTION_VERSIONS on that model to write or delete them."""
    await checks.require_model(request, request.single("name"), Level.CAN_EDIT)
    await _require_version_source(checks, request)
    if await _writes_source(checks, request):
        return Plan()
    tags = request.document.get("tags")
    if tags is not None and not isinstance(tags, list):
        return Plan()  # the store refuses it
    document = {**request.document, "tags": [*(tags or []), {"key": SOURCE_READ_ONLY_TAG, "value": "true"}]}
    return Plan(body=msgspec.json.encode(document))


async def _writes_source(checks: Checks, request: Request) -> bool:
    """Whether the caller may write the files the new version is made from: CAN_EDIT on the experiment they lie in
    (the promotions experiment: CAN_MANAGE on the workspace). A prompt's version has no files; files that cannot be
    placed (a registered model's version named by stage, `latest` or alias) count as not the caller's."""
    source = request.ids.source or ""
    if source in PROMPT_SOURCE_PLACEHOLDERS and _is_prompt_version(request):
        return True
    experiment_id = await _source_experiment(checks, request, source)
    if experiment_id is None:
        return False
    principal, link = request.principal, request.link
    workspace_id = link.workspace_id
    if not checks.authorizer.allows(
        principal, workspace_id, experiment_object(workspace_id, experiment_id), Level.CAN_EDIT
    ):
        return False
    if checks.authorizer.allows(principal, workspace_id, workspace_object(workspace_id), Level.CAN_MANAGE):
        return True
    return not await checks.lookups.promotions_experiment(link, experiment_id)


async def _source_experiment(checks: Checks, request: Request, source: str) -> str | None:
    """The experiment the files of a version made from `source` lie in (its run's, logged model's or location's, or
    for a registered model's version, that version's); None when it cannot be told."""
    link = request.link
    if source.startswith("runs:/"):
        return await checks.lookups.experiment_of(link, "run", source[len("runs:/") :].split("/", 1)[0])
    if source.startswith("mlflow-artifacts:/"):
        return artifact_experiment(canonical_artifact_path(source[len("mlflow-artifacts:") :].lstrip("/")))
    if not source.startswith("models:/"):
        return None
    parts = urlparse(source, allow_fragments=False).path.lstrip("/").split("/")
    if len(parts) == 1 and parts[0].startswith("m-"):
        return await checks.lookups.experiment_of(link, "logged_model", parts[0])
    if len(parts) == 2 and parts[1].isascii() and parts[1].isdigit() and checks.protection is not None:
        return await checks.protection.version_experiment(link, parts[0], parts[1])
    return None


async def _stage_level(checks: Checks, request: Request, name: str) -> Level:
    """Anything touching Production needs CAN_MANAGE_PRODUCTION_VERSIONS; other stages need STAGING."""
    document = request.document
    current = await checks.lookups.stage_of(request.link, name, str(document.get("version", "")))
    return transition_level(current, str(document.get("stage", "")))


async def _require_version_source(checks: Checks, request: Request) -> None:
    """You may not register a model version from a run, logged model or location you cannot read."""
    ids = request.ids
    if ids.run_id:
        await checks.require_run(request, ids.run_id, Level.CAN_READ)
    if ids.model_id:
        await checks.require_logged_model(request, ids.model_id, Level.CAN_READ)
    source = ids.source or ""
    if source in PROMPT_SOURCE_PLACEHOLDERS and _is_prompt_version(request):
        return  # a prompt's version is made from its template (in its tags), from no stored location
    if source.startswith("models:/"):
        await _require_models_source(checks, request, source)
    elif source.startswith("runs:/"):
        await checks.require_run(request, source[len("runs:/") :].split("/", 1)[0], Level.CAN_READ)
    elif source.startswith("mlflow-artifacts:/"):
        path = canonical_artifact_path(source[len("mlflow-artifacts:") :].lstrip("/"))
        parts = path.split("/")
        if parts[0].lower() == "workspaces" and (len(parts) < 2 or parts[1] != request.link.name):
            raise PermissionDenied("A model version's source must lie in this workspace.")
        experiment_id = artifact_experiment(path)
        if experiment_id is None:
            raise PermissionDenied("A model version's source must lie inside an experiment you can read.")
        await checks.require_experiment(request, experiment_id, Level.CAN_READ)
    else:
        raise PermissionDenied(
            "A model version's source must be a run (runs:/), a logged model (models:/) or an "
            "mlflow-artifacts: location; other locations are for admins only."
        )


def _is_prompt_version(request: Request) -> bool:
    """Whether the store takes the new version for a prompt's: as MLflow's handler reads the request's tags
    (the last value of the key wins, and only a true value counts)."""
    tags = request.document.get("tags")
    value = "false"
    for tag in tags if isinstance(tags, list) else ():
        if isinstance(tag, dict) and tag.get("key") == PROMPT_TAG:
            value = str(tag.get("value") or "")
    return value.lower() == "true"


async def _require_models_source(checks: Checks, request: Request, source: str) -> None:
    """A `models:/` source, read as MLflow's `_parse_model_uri` reads it: `models:/m-...` names a logged model,
    `models:/<name>/<version|stage|latest>` and `models:/<name>@<alias>` a registered model's version (what
    `copy_model_version` sends), which the store resolves in this workspace's registry."""
    parsed = urlparse(source, allow_fragments=False)
    parts = parsed.path.lstrip("/").split("/") if parsed.path.startswith("/") else []
    if parsed.netloc or not parts or not parts[0].strip() or len(parts) > 2:
        raise PermissionDenied("A model version's source must be a logged model (models:/m-...) or a model version.")
    if len(parts) == 2:
        name = parts[0]
    elif "@" in parsed.path:
        name = parts[0].rsplit("@", 1)[0]
    else:
        if not parts[0].startswith("m-"):
            raise PermissionDenied("A model version's source must be a logged model id (models:/m-...).")
        await checks.require_logged_model(request, parts[0], Level.CAN_READ)
        return
    await checks.require_model(request, name, Level.CAN_READ)


def _follow_name(checks: Checks, request: Request, name: str) -> Plan:
    """After a rename or a delete the store accepted, the gateway's id of the model follows the name."""
    link = request.link
    if request.spec.name == RENAME:
        new_name = request.ids.new_name

        async def renamed(status: int, answer: bytes) -> bytes | None:
            if status == 200 and new_name:
                await checks.ownership.model_changed(link, "rename", name, new_name)
            return None

        return Plan(after=renamed)
    if request.spec.name == DELETE:

        async def deleted(status: int, answer: bytes) -> bytes | None:
            if status == 200:
                await checks.ownership.model_changed(link, "delete", name, None)
            return None

        return Plan(after=deleted)
    return Plan()


def _quote(name: str) -> str | None:
    """A name as a string literal of MLflow's filter grammar that Python's literal reader reads back unchanged;
    None when it cannot be written as one."""
    if not name or "\\" in name or _CONTROL.search(name):
        return None
    if "'" not in name:
        return f"'{name}'"
    if '"' not in name:
        return f'"{name}"'
    return None
