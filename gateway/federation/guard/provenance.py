"""The dual-tracking relay's provenance tags (gateway/core/reserved.py `PROVENANCE_TAGS`): the gateway's alone.

The relay writes them on a dual workspace's central copies and finds an earlier copy by them before it makes one: a
run by `fedgate.source_run_id` (searched in the central copy of its experiment), a logged model by
`fedgate.source_model_id`, a model version by `fedgate.source_version`, and an experiment found by name is taken only
when its `fedgate.source_experiment_id` is its own. A caller's tag write is mirrored to the central copy as it came,
so one who could set these on an object of theirs made the relay take that object's copy for the copy of another
(a run of someone else's in the same experiment, a version of the same model): that object's later writes went into
theirs, and failover served theirs as it. Refused on every route that sets or deletes a tag of an experiment, run,
logged model, registered model or model version (the key of a set-tag or delete-tag, a logged model's tag in the
path, the `tags` of a create, a log-batch or a logged model's tags), whoever calls and in every mode of workspace: a
workspace linked in `workspace` mode may become dual, and its objects are then copied with their tags.
"""

from __future__ import annotations

from typing import Any

from gateway.core.errors import InvalidParameter
from gateway.core.reserved import provenance_tag
from gateway.core.route_table import (
    EXPERIMENTS_DELETE_TAG,
    EXPERIMENTS_SET_TAG,
    MODEL_VERSIONS_DELETE_TAG,
    MODEL_VERSIONS_SET_TAG,
    REGISTERED_MODELS_DELETE_TAG,
    REGISTERED_MODELS_SET_TAG,
    RUNS_DELETE_TAG,
    RUNS_SET_TAG,
    Resource,
)
from gateway.federation.guard.request import Request

# Objects the relay copies and tags with their provenance.
TAGGED = frozenset(
    {Resource.EXPERIMENT, Resource.RUN, Resource.LOGGED_MODEL, Resource.REGISTERED_MODEL, Resource.MODEL_VERSION}
)
# The field of a set-tag or delete-tag call (body, or query where the store reads one) naming the tag.
TAG_ROUTES = frozenset(
    spec.name
    for spec in (
        EXPERIMENTS_SET_TAG,
        EXPERIMENTS_DELETE_TAG,
        RUNS_SET_TAG,
        RUNS_DELETE_TAG,
        REGISTERED_MODELS_SET_TAG,
        REGISTERED_MODELS_DELETE_TAG,
        MODEL_VERSIONS_SET_TAG,
        MODEL_VERSIONS_DELETE_TAG,
    )
)


def refuse_provenance_tag_writes(request: Request) -> None:
    """400 INVALID_PARAMETER_VALUE when the call sets or deletes a provenance tag, in any spelling a store may match."""
    spec = request.spec
    if spec.resource not in TAGGED or spec.method == "GET":
        return
    document = request.document
    keys: list[Any] = []
    if spec.name in TAG_ROUTES:
        keys.append(document.get("key"))
        keys.extend(request.params().get("key", []))
    keys.append(request.path_params.get("tag_key"))  # a logged model's tag deleted by its key in the path
    tags = document.get("tags")
    if isinstance(tags, list):
        keys.extend(tag.get("key") for tag in tags if isinstance(tag, dict))
    for key in keys:
        if provenance_tag(key):
            raise InvalidParameter(
                f"Tag '{str(key)[:64]}' is reserved: the gateway writes it on a dual workspace's central copies "
                "(which object each was copied from), and no call may set or delete it."
            )
