"""A registered model's activities are numbered within the model: what a reader of one model sees of its log (the
activities' ids, the log's page tokens, the ids of open requests, a webhook payload's `activity_id`) says nothing
of the registry activity of other models and other workspaces. Against a real gateway, real stores and real
PostgreSQL: activity in team-b changes none of a team-a model's numbers; appends at the same moment take distinct,
consecutive numbers and a page walked while they land shows every activity once; migration 0051 numbers the rows
already recorded, past the log's append-only trigger, which still holds afterwards. Promotion requests likewise
count within their target workspace (migration 0052).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.migrate import alembic_config, upgrade
from gateway.registry.repository import NewActivity, RegistryRepository
from tests.conftest import OUTBOUND_PORT, Stack
from tests.integration.test_identity_migration import fresh_database, run
from tests.integration.test_registry_promotion import promotable_to_a_reader
from tests.integration.test_registry_workflow import (
    WORKSPACE,
    Org,
    make_model,
    mlflow_api,
    org,  # noqa: F401 - the module's fixture of principals
)
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration

OTHER = "team-b"


def post(stack: Stack, who: Person, path: str, body: dict[str, Any], workspace: str = WORKSPACE) -> dict[str, Any]:
    return dict(mlflow_api(stack, who, "POST", path, workspace, json=body))


def comment(stack: Stack, who: Person, name: str, text: str, workspace: str = WORKSPACE) -> None:
    post(stack, who, "comments/create", {"name": name, "version": "1", "comment": text}, workspace)


def log_page(
    stack: Stack, who: Person, name: str, max_results: int = 100, page_token: str | None = None
) -> tuple[list[str], str | None]:
    """One page of the model's activity log: the activities' ids, newest first, and the next page's token."""
    params: dict[str, Any] = {"name": name, "max_results": max_results}
    if page_token is not None:
        params["page_token"] = page_token
    answer = mlflow_api(stack, who, "GET", "activities/list", params=params)
    return [a["id"] for a in answer["activities"]], answer.get("next_page_token")


def whole_log(stack: Stack, who: Person, name: str, max_results: int) -> tuple[list[str], list[str]]:
    """Every activity id of the model's log, walked `max_results` at a time, and the tokens the pages gave."""
    ids, tokens = log_page(stack, who, name, max_results)
    given = []
    token = tokens
    while token:
        given.append(token)
        more, token = log_page(stack, who, name, max_results, token)
        ids += more
    return ids, given


def open_request_ids(stack: Stack, who: Person, name: str) -> list[str]:
    answer = mlflow_api(stack, who, "GET", "transition-requests/list", params={"name": name, "version": "1"})
    return [r["id"] for r in answer["requests"]]


def other_workspace_model(stack: Stack) -> tuple[Person, str]:
    """A team-b model of one version, made by a team-b user: its owner and name."""
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('team-b-owner')}@example.com")
    admin.grant(f"workspaces/{OTHER}", "CAN_USE", user=owner.name)
    experiment = post(stack, owner, "experiments/create", {"name": unique("elsewhere")}, OTHER)["experiment_id"]
    run_id = post(stack, owner, "runs/create", {"experiment_id": experiment}, OTHER)["run"]["info"]["run_id"]
    name = unique("elsewhere")
    post(stack, owner, "registered-models/create", {"name": name}, OTHER)
    body = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id}
    post(stack, owner, "model-versions/create", body, OTHER)
    return owner, name


def payload_activity_ids(stack: Stack, webhook_id: str) -> list[str]:
    async def fetch() -> list[str]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetch(
                "SELECT payload FROM registry_webhook_deliveries WHERE webhook_id = $1 ORDER BY id", webhook_id
            )
        finally:
            await connection.close()
        return [str(json.loads(bytes(row["payload"]))["activity_id"]) for row in rows]

    return asyncio.run(fetch())


def test_activity_in_another_workspace_changes_none_of_a_models_numbers(
    stack: Stack,
    org: Org,  # noqa: F811
) -> None:
    name = make_model(stack, org, versions=1, prefix="numbered")
    reader = org.requester  # CAN_READ on the model, nothing in team-b
    post(stack, reader, "transition-requests/create", {"name": name, "version": "1", "stage": "Staging"})
    comment(stack, reader, name, "first look")
    assert log_page(stack, reader, name) == (["2", "1"], None)
    assert open_request_ids(stack, reader, name) == ["1"]
    assert log_page(stack, reader, name, max_results=1) == (["2"], "2")

    hook = post(
        stack,
        org.owner,
        "registry-webhooks/create",
        {
            "model_name": name,
            "events": ["COMMENT_CREATED"],
            "http_url_spec": {"url": f"http://127.0.0.1:{OUTBOUND_PORT}/allowed/{uuid.uuid4().hex[:8]}"},
        },
    )["webhook"]
    try:
        elsewhere_owner, elsewhere = other_workspace_model(stack)
        for n in range(5):
            comment(stack, elsewhere_owner, elsewhere, f"busy elsewhere {n}", OTHER)
        post(
            stack,
            elsewhere_owner,
            "transition-requests/create",
            {"name": elsewhere, "version": "1", "stage": "Staging"},
            OTHER,
        )
        comment(stack, reader, name, "second look")

        assert log_page(stack, reader, name) == (["3", "2", "1"], None)
        assert whole_log(stack, reader, name, max_results=1) == (["3", "2", "1"], ["3", "2"])
        assert open_request_ids(stack, reader, name) == ["1"]
        assert payload_activity_ids(stack, hook["id"]) == ["3"]
    finally:
        gone = org.owner.http(stack).delete(
            f"{stack.url}/api/2.0/mlflow/registry-webhooks/delete", params={"id": hook["id"]}, timeout=60
        )
        assert gone.status_code == 200, gone.text


def test_comments_made_at_one_moment_take_consecutive_numbers_and_a_page_walked_meanwhile_shows_each_once(
    stack: Stack,
    org: Org,  # noqa: F811
) -> None:
    name = make_model(stack, org, versions=1, prefix="crowded")
    elsewhere_owner, elsewhere = other_workspace_model(stack)
    reader = org.requester
    for n in range(6):
        comment(stack, reader, name, f"before {n}")
    first, token = log_page(stack, reader, name, max_results=3)
    assert (first, token) == (["6", "5", "4"], "4")

    writers = [(reader, name, WORKSPACE)] * 12 + [(elsewhere_owner, elsewhere, OTHER)] * 6
    barrier = threading.Barrier(len(writers))
    answers: list[int] = []

    def write(who: Person, model: str, workspace: str) -> None:
        session = who.http(stack, workspace)
        barrier.wait()
        body = {"name": model, "version": "1", "comment": "at once"}
        answers.append(session.post(f"{stack.url}/api/2.0/mlflow/comments/create", json=body, timeout=120).status_code)

    threads = [threading.Thread(target=write, args=writer) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * len(writers)

    rest, _ = log_page(stack, reader, name, max_results=3, page_token=token)
    assert rest == ["3", "2", "1"]  # the page after the token is what it was before the appends
    ids, _ = whole_log(stack, reader, name, max_results=5)
    assert ids == [str(n) for n in range(18, 0, -1)]
    answer = elsewhere_owner.http(stack, OTHER).get(
        f"{stack.url}/api/2.0/mlflow/activities/list", params={"name": elsewhere}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert [a["id"] for a in answer.json()["activities"]] == [str(n) for n in range(6, 0, -1)]


def test_appends_of_many_transactions_at_once_never_share_or_skip_a_number(database_url: str) -> None:
    """The repository straight on PostgreSQL: 40 transactions appending to two models at once, half of them to
    both in one transaction (in either order, as promotions of each into the other would), and 10 inserts that name
    no number, as a replica of the release before writes them during a rolling update."""
    url = fresh_database(database_url)
    upgrade(url, "head")

    async def go() -> dict[str, list[int]]:
        engine = make_engine(url, pool_size=20)
        sessions = make_sessionmaker(engine)
        start = asyncio.Event()

        async def append(models: list[str]) -> None:
            await start.wait()
            async with sessions() as session, session.begin():
                repository = RegistryRepository(session)
                await repository.lock_logs(models)
                for model in models:
                    await repository.append(7, model, NewActivity("1", "NEW_COMMENT", "someone"))

        async def append_as_older_replica(model: str) -> None:
            await start.wait()
            async with sessions() as session, session.begin():
                await session.execute(
                    text(
                        "INSERT INTO registry_activities (workspace_id, model_id, version, activity_type, user_id) "
                        "VALUES (7, :model, '1', 'NEW_COMMENT', 'someone')"
                    ),
                    {"model": model},
                )

        plans = [["a"], ["b"], ["a", "b"], ["b", "a"]] * 10
        tasks = [asyncio.create_task(append(plan)) for plan in plans]
        tasks += [asyncio.create_task(append_as_older_replica("a")) for _ in range(10)]
        await asyncio.sleep(0.1)
        start.set()
        await asyncio.gather(*tasks)
        async with sessions() as session:
            repository = RegistryRepository(session)
            numbers = {model: [a.id for a in await repository.log(model, None, limit=1000)] for model in "ab"}
        await engine.dispose()
        return numbers

    numbers = asyncio.run(go())
    assert numbers == {"a": list(range(40, 0, -1)), "b": list(range(30, 0, -1))}


def test_the_migration_numbers_each_models_recorded_activities_and_the_log_stays_append_only(
    database_url: str,
) -> None:
    url = fresh_database(database_url)
    before = ScriptDirectory.from_config(alembic_config(url)).get_revision("0051").down_revision
    assert isinstance(before, str)
    upgrade(url, before)
    statement = (
        "INSERT INTO registry_activities (workspace_id, model_id, version, activity_type, user_id) "
        "VALUES ($1, $2, '1', 'NEW_COMMENT', 'someone') RETURNING id"
    )
    made = [
        (model, int(run(url, statement, workspace, model)[0]["id"]))
        for workspace, model in [(1, "m"), (2, "other"), (1, "m"), (2, "other"), (2, "other"), (1, "m")]
    ]

    asked = (
        "INSERT INTO registry_promotion_requests (workspace_id, source_workspace_id, source_model_id, source_name, "
        "source_version, target_name, requested_by) VALUES ($1, 1, 'm', 'a.m', '1', $2, 'someone') RETURNING id"
    )
    requests_made = [
        (workspace, int(run(url, asked, workspace, f"t{n}")[0]["id"])) for n, workspace in enumerate([2, 3, 2, 2, 3])
    ]

    upgrade(url, "head")

    request_numbers = {
        int(r["id"]): (r["workspace_id"], r["number"])
        for r in run(url, "SELECT id, workspace_id, number FROM registry_promotion_requests")
    }
    assert [request_numbers[row_id] for _, row_id in requests_made] == [(2, 1), (3, 1), (2, 2), (2, 3), (3, 2)]
    numbered = {int(r["id"]): (r["model_id"], r["number"]) for r in run(url, "SELECT * FROM registry_activities")}
    assert [numbered[row_id] for _, row_id in made] == [
        ("m", 1),
        ("other", 1),
        ("m", 2),
        ("other", 2),
        ("other", 3),
        ("m", 3),
    ]
    # A replica of the release before (a rolling update) writes rows without their number: they take the next.
    old_replica = [int(run(url, statement, 1, "m")[0]["id"]), int(run(url, asked, 2, "t9")[0]["id"])]
    assert [r["number"] for r in run(url, "SELECT number FROM registry_activities WHERE id = $1", old_replica[0])] == [
        4
    ]
    taken = run(url, "SELECT number FROM registry_promotion_requests WHERE id = $1", old_replica[1])
    assert [r["number"] for r in taken] == [4]
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        run(url, "UPDATE registry_activities SET number = number + 10 WHERE model_id = 'm'")
    with pytest.raises(asyncpg.PostgresError, match="duplicate key"):
        run(url, statement.replace("user_id)", "user_id, number)").replace("'someone')", "'someone', 2)"), 1, "m")


def test_promotion_requests_into_another_workspace_change_none_of_a_workspaces_request_ids(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = mlflow_env
    name, _, _, requester = promotable_to_a_reader(stack, monkeypatch, "numbered", "requester")
    admin = Admin.of(stack)
    admin.grant("workspaces/team-c", "CAN_USE", user=requester.name)
    base = f"{stack.url}/api/2.0/fedgate/registry"

    def need_approval(workspace: str, need: bool) -> None:
        setting = {"promotions_need_approval": need}
        answer = admin.http(workspace).patch(f"{base}/promotion-settings", json=setting, timeout=60)
        assert answer.status_code == 200, answer.text

    made: list[tuple[str, str]] = []

    def ask(workspace: str) -> str:
        body = {"name": f"team-a.{name}", "version": "1", "target_name": unique("numbered-target")}
        answer = requester.http(stack, workspace).post(f"{base}/promotion-requests/create", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        made.append((workspace, answer.json()["promotion_request"]["id"]))
        return str(made[-1][1])

    for workspace in ("team-b", "team-c"):
        need_approval(workspace, True)
    try:
        first = ask("team-b")
        for _ in range(3):
            ask("team-c")
        second = ask("team-b")
        assert int(second) == int(first) + 1
        listed = requester.http(stack, "team-b").get(f"{base}/promotion-requests/list", timeout=60)
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["requests"] if r["id"] in (first, second)] == [second, first]
    finally:
        for workspace, request_id in made:
            requester.http(stack, workspace).delete(
                f"{base}/promotion-requests/delete", params={"id": request_id}, timeout=60
            )
        for workspace in ("team-b", "team-c"):
            need_approval(workspace, False)
