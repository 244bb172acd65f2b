"""Names the gateway keeps for objects of its own in a workspace's store, and how a store might compare them."""

from __future__ import annotations

import unicodedata

# The experiment a promotion copies a model version's files into (gateway/registry/promotion.py).
PROMOTIONS_EXPERIMENT = "fedgate-promotions"

# A model version tag the gateway alone writes, at creation: its registrant could not write the files it was made from
# (no CAN_EDIT on the run's, logged model's or location's experiment), so a stage or an alias it is given later does not
# freeze them (federation/guard/models.py, gateway/registry/sources.py; docs/registry.md, "A protected version's
# files").
SOURCE_READ_ONLY_TAG = "fedgate.source_read_only"

# The provenance tags the dual-tracking relay writes on a dual workspace's central copies (gateway/dual/mirror.py):
# which workspace and which object each copy was made from. The relay finds an earlier copy by them before it makes
# one (a run by its source run id, a logged model by its source model id, a model version by its source version, an
# experiment found by name is taken only when its source experiment id is its own), so they are the gateway's alone:
# no call sets or deletes one, on any route and in any mode of workspace (federation/guard/service.py), and the
# relay leaves any spelling of them out of what it copies (docs/dual-tracking.md, "Provenance tags").
SOURCE_WORKSPACE_TAG = "fedgate.source_workspace"
SOURCE_RUN_TAG = "fedgate.source_run_id"
SOURCE_EXPERIMENT_TAG = "fedgate.source_experiment_id"
SOURCE_MODEL_TAG = "fedgate.source_model_id"
SOURCE_VERSION_TAG = "fedgate.source_version"
PROVENANCE_TAGS = frozenset(
    {SOURCE_WORKSPACE_TAG, SOURCE_RUN_TAG, SOURCE_EXPERIMENT_TAG, SOURCE_MODEL_TAG, SOURCE_VERSION_TAG}
)


def folded(text: str) -> str:
    """`text` as a store or a reader might compare it: without case, accents (MySQL's collations) or blanks around
    (MLflow's check of a tag key takes spaces anywhere and a last newline, `$` matching before it; the strictest of
    the readings, so that no spelling of a kept name passes as another)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def provenance_tag(key: object) -> bool:
    """Whether a store may take tag `key` for one of the relay's provenance tags (`PROVENANCE_TAGS`): compared as
    `folded` compares, so no spelling a store might match (case, accents, blanks around) passes either."""
    return isinstance(key, str) and folded(key) in PROVENANCE_TAGS


def promotions_experiment(name: object) -> bool:
    """Whether an experiment of this name is (or would be found as) the promotions experiment."""
    return isinstance(name, str) and folded(name) == PROMOTIONS_EXPERIMENT
