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


def folded(text: str) -> str:
    """`text` as a store might compare it (case, accents, blanks around: MySQL's collations)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def promotions_experiment(name: object) -> bool:
    """Whether an experiment of this name is (or would be found as) the promotions experiment."""
    return isinstance(name, str) and folded(name) == PROMOTIONS_EXPERIMENT
