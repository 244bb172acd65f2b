"""The migrations form one line: two branches landing with the same parent leave two heads, and every
`upgrade head` (start-up, `fedgate db upgrade`, each test database) then fails."""

from __future__ import annotations

from itertools import pairwise

from alembic.config import Config
from alembic.script import ScriptDirectory

from gateway.db.migrate import MIGRATIONS


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def test_the_migrations_have_one_head() -> None:
    heads = _script().get_heads()
    assert len(heads) == 1, f"migrations with more than one head: {sorted(heads)}; renumber the newest"


def test_each_migration_file_is_named_after_its_revision_and_follows_the_one_before() -> None:
    revisions = list(reversed(list(_script().walk_revisions())))
    for previous, revision in pairwise(revisions):
        assert revision.down_revision == previous.revision, revision.path
    for revision in revisions:
        assert revision.path is not None and revision.path.rsplit("/", 1)[-1].startswith(f"{revision.revision}_")
