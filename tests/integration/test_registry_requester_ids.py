"""Migration 0040 on a database with registry requests and comments recorded by name only: each gets the id of the
principal holding its author's name, unless that principal was made after it (another one given the name of a
deleted author), and nobody's when nobody holds the name."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory

from gateway.db.migrate import alembic_config, upgrade
from tests.integration.test_identity_migration import fresh_database, run

pytestmark = pytest.mark.integration


def test_existing_requests_and_comments_get_their_authors_id_by_name_when_it_was_theirs(database_url: str) -> None:
    url = fresh_database(database_url)
    before = ScriptDirectory.from_config(alembic_config(url)).get_revision("0040").down_revision
    assert isinstance(before, str)
    upgrade(url, before)

    def principal(name: str, created: str) -> int:
        statement = (
            "INSERT INTO principals (kind, name, created_at) VALUES ('user', $1, $2::text::timestamptz) RETURNING id"
        )
        return int(run(url, statement, name, created)[0]["id"])

    def request(by: str, created: str) -> int:
        statement = (
            "INSERT INTO registry_requests (workspace_id, model_id, version, to_stage, requested_by, state, "
            "created_at) "
            "VALUES (1001, 'm', '1', 'Staging', $1, 'open', $2::text::timestamptz) RETURNING id"
        )
        return int(run(url, statement, by, created)[0]["id"])

    def comment(comment_id: str, by: str, created: str) -> None:
        statement = (
            "INSERT INTO registry_comments (id, workspace_id, model_id, version, user_id, comment, created_at) "
            "VALUES ($1, 1001, 'm', '1', $2, 'hi', $3::text::timestamptz)"
        )
        run(url, statement, comment_id, by, created)

    ann = principal("ann@example.com", "2026-01-01T00:00:00Z")
    principal("newcomer@example.com", "2026-06-01T00:00:00Z")  # the name of a requester deleted before
    asked = {
        "ann": request("ann@example.com", "2026-02-01T00:00:00Z"),
        "before newcomer": request("newcomer@example.com", "2026-03-01T00:00:00Z"),
        "nobody": request("gone@example.com", "2026-03-01T00:00:00Z"),
    }
    comment("c-ann", "ann@example.com", "2026-02-01T00:00:00Z")
    comment("c-before", "newcomer@example.com", "2026-03-01T00:00:00Z")

    upgrade(url, "head")

    ids = {r["id"]: r["requested_by_id"] for r in run(url, "SELECT id, requested_by_id FROM registry_requests")}
    assert {key: ids[value] for key, value in asked.items()} == {"ann": ann, "before newcomer": None, "nobody": None}
    authors = {r["id"]: r["user_principal_id"] for r in run(url, "SELECT id, user_principal_id FROM registry_comments")}
    assert authors == {"c-ann": ann, "c-before": None}
