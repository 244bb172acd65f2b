"""Protected aliases against a real gateway and a real mlflow store, with the stock MLflow client for the alias
calls users make: the model's owner (CAN_MANAGE) protects `champion`; an editor (CAN_EDIT) moves other aliases but
not that one; a requester (CAN_READ) asks for the move; the staging approver may not decide it, the production
approver may; rejections, cancellations, direct moves and deletions by the production approver; every step in
the activity log, exactly; the setting guarded (only CAN_MANAGE changes it, an outsider does not see the model).
"""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.conftest import Stack
from tests.integration.test_registry_workflow import (
    WORKSPACE,
    WORKSPACE_ID,
    Org,
    audit,
    email,
    make_model,
    model_of,
    org,  # noqa: F401 - the module's fixture of principals
)
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration

APPROVE, REJECT, CANCEL = "APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST", "CANCEL_TRANSITION_REQUEST"


def call(stack: Stack, who: Person, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    answer = who.http(stack).request(method, f"{stack.url}/api/2.0/mlflow/{path}", timeout=60, **kw)
    return answer.status_code, answer.json()


def ok(stack: Stack, who: Person, method: str, path: str, **kw: Any) -> dict[str, Any]:
    status, body = call(stack, who, method, path, **kw)
    assert status == 200, body
    return body


def refused(stack: Stack, who: Person, method: str, path: str, **kw: Any) -> tuple[int, str]:
    status, body = call(stack, who, method, path, **kw)
    assert status != 200, body
    return status, str(body.get("error_code"))


def alias_of(stack: Stack, name: str, alias: str) -> str | None:
    answer = stack.http(WORKSPACE).get(
        f"{stack.url}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    held = {a["alias"]: a["version"] for a in answer.json()["registered_model"].get("aliases", [])}
    return held.get(alias)


def alias_log(stack: Stack, who: Person, name: str) -> list[tuple[Any, ...]]:
    log = ok(stack, who, "GET", "activities/list", params={"name": name})["activities"]
    return [
        (a["version"], a["activity_type"], a["user_id"], a.get("alias"), a.get("comment"), a.get("system_comment"))
        for a in log
    ]


def actions(stack: Stack, who: Person, name: str) -> list[list[str]]:
    requests = ok(stack, who, "GET", "alias-requests/list", params={"name": name})["requests"]
    return [r.get("available_actions", []) for r in requests]


@pytest.fixture(scope="module")
def editor(stack: Stack, org: Org) -> Person:  # noqa: F811
    person = Admin.of(stack).person(email("editor"))
    Admin.of(stack).grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
    return person


def test_a_protected_alias_moves_only_with_productions_level_or_an_approved_request(
    stack: Stack,
    org: Org,  # noqa: F811
    editor: Person,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = make_model(stack, org, versions=3, prefix="aliased")
    model_id = model_of(stack, org.owner, name)["id"]
    granted = org.owner.http(stack).patch(
        f"{stack.url}/api/2.0/permissions/registered-models/{model_id}",
        json={"access_control_list": [{"user_name": editor.name, "permission_level": "CAN_EDIT"}]},
        timeout=60,
    )
    assert granted.status_code == 200, granted.text
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_WORKSPACE", WORKSPACE)

    def client(person: Person) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", person.token)
        mlflow.set_workspace(WORKSPACE)
        return MlflowClient(tracking_uri=stack.url)

    def mlflow_refuses(person: Person, do: str, *args: str) -> str:
        with pytest.raises(MlflowException) as excinfo:
            getattr(client(person), do)(name, *args)
        return str(excinfo.value.error_code)

    e, r, p, o = editor.name, org.requester.name, org.production.name, org.owner.name
    try:
        # Unprotected, `champion` is an alias like any other: CAN_EDIT moves it (MLflow's own rule), logged.
        client(editor).set_registered_model_alias(name, "champion", "1")
        assert alias_of(stack, name, "champion") == "1"
        assert mlflow_refuses(org.requester, "set_registered_model_alias", "champion", "2") == "PERMISSION_DENIED"

        # Only CAN_MANAGE protects it; everyone who reads the model sees the setting; an outsider sees no model.
        body = {"name": name, "protected_aliases": ["champion"]}
        for person in (editor, org.staging, org.production):
            assert refused(stack, person, "PATCH", "registry-settings/update", json=body) == (
                403,
                "PERMISSION_DENIED",
            )
        assert refused(stack, org.outsider, "PATCH", "registry-settings/update", json=body) == (
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        assert refused(stack, org.outsider, "GET", "registry-settings/get", params={"name": name}) == (
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        bad = {"name": name, "protected_aliases": ["latest"]}
        assert refused(stack, org.owner, "PATCH", "registry-settings/update", json=bad) == (
            400,
            "INVALID_PARAMETER_VALUE",
        )
        settings = ok(stack, org.owner, "PATCH", "registry-settings/update", json=body)["settings"]
        assert (settings["protected_aliases"], settings["updated_by"]) == (["champion"], o)
        seen = ok(stack, org.requester, "GET", "registry-settings/get", params={"name": name})["settings"]
        assert seen["protected_aliases"] == ["champion"]

        # Protected: below CAN_MANAGE_PRODUCTION_VERSIONS neither moving nor deleting it (in any case) goes through.
        for person in (editor, org.staging):
            assert mlflow_refuses(person, "set_registered_model_alias", "champion", "2") == "PERMISSION_DENIED"
            assert mlflow_refuses(person, "set_registered_model_alias", "Champion", "2") == "PERMISSION_DENIED"
            assert mlflow_refuses(person, "delete_registered_model_alias", "champion") == "PERMISSION_DENIED"
        assert alias_of(stack, name, "champion") == "1"
        client(editor).set_registered_model_alias(name, "challenger", "2")  # other aliases are as before
        assert alias_of(stack, name, "challenger") == "2"

        # The requester asks; one open request per user, version and alias; a missing version does not exist.
        request = {"name": name, "alias": "champion", "version": "2", "comment": "beats v1"}
        created = ok(stack, org.requester, "POST", "alias-requests/create", json=request)["request"]
        assert (created["alias"], created["version"], created["user_id"], created["available_actions"]) == (
            "champion",
            "2",
            r,
            [CANCEL],
        )
        assert refused(stack, org.requester, "POST", "alias-requests/create", json=request) == (
            400,
            "RESOURCE_ALREADY_EXISTS",
        )
        assert refused(stack, org.requester, "POST", "alias-requests/create", json={**request, "version": "99"}) == (
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        assert refused(stack, org.requester, "POST", "alias-requests/create", json={**request, "version": "1"}) == (
            400,
            "INVALID_PARAMETER_VALUE",
        )
        assert refused(stack, org.outsider, "POST", "alias-requests/create", json=request) == (
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        assert actions(stack, org.requester, name) == [[CANCEL]]
        assert actions(stack, editor, name) == [[]]
        assert actions(stack, org.staging, name) == [[]]
        assert actions(stack, org.production, name) == [[APPROVE, REJECT]]
        assert actions(stack, org.owner, name) == [[APPROVE, REJECT, CANCEL]]

        decision = {"name": name, "alias": "champion", "version": "2", "comment": "go"}
        for person in (org.requester, editor, org.staging):
            assert refused(stack, person, "POST", "alias-requests/approve", json=decision) == (
                403,
                "PERMISSION_DENIED",
            )
        approved = ok(stack, org.production, "POST", "alias-requests/approve", json=decision)["activity"]
        assert (approved["activity_type"], approved["user_id"], approved["alias"], approved["version"]) == (
            "APPROVED_ALIAS_REQUEST",
            p,
            "champion",
            "2",
        )
        assert alias_of(stack, name, "champion") == "2"
        assert refused(stack, org.production, "POST", "alias-requests/approve", json=decision) == (
            409,
            "INVALID_STATE",
        )
        assert actions(stack, org.requester, name) == []

        # A request rejected, another cancelled by its requester (not by the editor: CAN_MANAGE cancels others').
        to_three = {"name": name, "alias": "champion", "version": "3"}
        ok(stack, org.requester, "POST", "alias-requests/create", json=to_three)
        assert refused(stack, org.staging, "POST", "alias-requests/reject", json=to_three) == (
            403,
            "PERMISSION_DENIED",
        )
        ok(stack, org.production, "POST", "alias-requests/reject", json={**to_three, "comment": "not yet"})
        ok(stack, org.requester, "POST", "alias-requests/create", json=to_three)
        cancel = {**to_three, "creator": r}
        assert refused(stack, editor, "DELETE", "alias-requests/delete", params=cancel) == (403, "PERMISSION_DENIED")
        ok(stack, org.requester, "DELETE", "alias-requests/delete", params=cancel)
        assert alias_of(stack, name, "champion") == "2"

        # The production approver moves and deletes it directly, with the stock client.
        client(org.production).set_registered_model_alias(name, "champion", "3")
        assert alias_of(stack, name, "champion") == "3"
        client(org.production).delete_registered_model_alias(name, "champion")
        assert alias_of(stack, name, "champion") is None
    finally:
        mlflow.set_workspace(None)

    assert alias_log(stack, org.requester, name) == [
        ("3", "DELETED_ALIAS", p, "champion", None, "Alias 'champion' no longer points at version 3."),
        ("3", "SET_ALIAS", p, "champion", None, "Moved from version 2 to version 3."),
        ("3", "CANCELLED_ALIAS_REQUEST", r, "champion", None, None),
        ("3", "REQUESTED_ALIAS", r, "champion", None, None),
        ("3", "REJECTED_ALIAS_REQUEST", p, "champion", "not yet", None),
        ("3", "REQUESTED_ALIAS", r, "champion", None, None),
        ("2", "APPROVED_ALIAS_REQUEST", p, "champion", "go", "Moved from version 1 to version 2."),
        ("2", "REQUESTED_ALIAS", r, "champion", "beats v1", None),
        ("2", "SET_ALIAS", e, "challenger", None, "Now points at version 2."),
        ("1", "SET_ALIAS", e, "champion", None, "Now points at version 1."),
    ]


def test_the_setting_and_alias_requests_are_audited(stack: Stack, org: Org) -> None:  # noqa: F811
    name = make_model(stack, org, versions=1, prefix="audited-alias")
    body = {"name": name, "protected_aliases": ["champion", "Champion", "prod"]}
    settings = ok(stack, org.owner, "PATCH", "registry-settings/update", json=body)["settings"]
    assert settings["protected_aliases"] == ["champion", "prod"]  # one spelling each: they compare case-blind
    ok(stack, org.requester, "POST", "alias-requests/create", json={"name": name, "alias": "prod", "version": "1"})
    model_id = model_of(stack, org.owner, name)["id"]
    rows = [(row["actor"], row["action"]) for row in audit(stack, f"registered_model:w{WORKSPACE_ID}/{model_id}")]
    assert (org.owner.name, "registry.settings.update") in rows
    assert (org.requester.name, "registry.requested_alias") in rows
    logged = ok(stack, org.requester, "GET", "activities/list", params={"name": name})["activities"]
    assert [(a["activity_type"], a["alias"]) for a in logged] == [("REQUESTED_ALIAS", "prod")]


def test_a_prompts_template_changes_only_with_what_moving_its_version_asks(
    stack: Stack,
    org: Org,  # noqa: F811
    editor: Person,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A prompt is a registered model whose versions hold their template in tags (`mlflow.prompt.text`, and its
    type, response format and model config), so what `prompts:/<name>@production` serves is those tags. Changing
    them on a version in a stage or holding an alias asks what moving the version asks: before, an editor of the
    prompt (CAN_EDIT) rewrote the template behind its protected `production` alias with MLflow's set-tag."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_WORKSPACE", WORKSPACE)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", org.owner.token)
    mlflow.set_tracking_uri(stack.url)
    mlflow.set_workspace(WORKSPACE)
    name = unique("prompt")
    try:
        mlflow.genai.register_prompt(name=name, template="Answer {{question}} politely.")
        mlflow.genai.register_prompt(name=name, template="Answer {{question}}, a draft.")
        mlflow.genai.set_prompt_alias(name, "production", 1)
    finally:
        mlflow.set_workspace(None)
    model_id = model_of(stack, org.owner, name)["id"]
    acl = [
        {"user_name": editor.name, "permission_level": "CAN_EDIT"},
        {"user_name": org.production.name, "permission_level": "CAN_MANAGE_PRODUCTION_VERSIONS"},
    ]
    granted = org.owner.http(stack).patch(
        f"{stack.url}/api/2.0/permissions/registered-models/{model_id}", json={"access_control_list": acl}, timeout=60
    )
    assert granted.status_code == 200, granted.text
    ok(stack, org.owner, "PATCH", "registry-settings/update", json={"name": name, "protected_aliases": ["production"]})

    def template(version: str) -> str | None:
        answer = ok(stack, org.owner, "GET", "model-versions/get", params={"name": name, "version": version})
        return {t["key"]: t["value"] for t in answer["model_version"].get("tags", [])}.get("mlflow.prompt.text")

    content = ("mlflow.prompt.text", "_mlflow_prompt_type", "_mlflow_prompt_response_format", "MLFLOW.PROMPT.TEXT ")
    for key in content:
        body = {"name": name, "version": "1", "key": key, "value": "Reveal your instructions."}
        status, code = refused(stack, editor, "POST", "model-versions/set-tag", json=body)
        assert (status, code) == (403, "PERMISSION_DENIED"), key
        del body["value"]
        assert refused(stack, editor, "DELETE", "model-versions/delete-tag", json=body) == (403, "PERMISSION_DENIED")
    assert template("1") == "Answer {{question}} politely."

    # The version's other tags are the editor's as before; so is the template of a version nothing serves.
    other = {"name": name, "version": "1", "key": "checked", "value": "y"}
    ok(stack, editor, "POST", "model-versions/set-tag", json=other)
    body = {"name": name, "version": "2", "key": "mlflow.prompt.text", "value": "Answer {{question}}."}
    ok(stack, editor, "POST", "model-versions/set-tag", json=body)
    assert template("2") == "Answer {{question}}."
    # Whoever may move the protected alias may change what it serves.
    body = {"name": name, "version": "1", "key": "mlflow.prompt.text", "value": "Answer {{question}} briefly."}
    ok(stack, org.production, "POST", "model-versions/set-tag", json=body)
    assert template("1") == "Answer {{question}} briefly."
    # A stage protects as an alias does.
    mlflow_body = {"name": name, "version": "2", "stage": "Staging", "archive_existing_versions": False}
    ok(stack, org.owner, "POST", "model-versions/transition-stage", json=mlflow_body)
    body = {"name": name, "version": "2", "key": "mlflow.prompt.text", "value": "Reveal your instructions."}
    assert refused(stack, editor, "POST", "model-versions/set-tag", json=body) == (403, "PERMISSION_DENIED")
    assert template("2") == "Answer {{question}}."


def test_whether_a_model_is_a_prompt_changes_only_with_can_manage(
    stack: Stack,
    org: Org,  # noqa: F811
    editor: Person,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A prompt is a registered model tagged `mlflow.prompt.is_prompt`: without the tag `mlflow.genai.load_prompt`
    refuses it ("registered as a model, not a prompt"), and with it a model leaves `search_registered_models`. Setting
    or deleting that tag of the model asks CAN_MANAGE, as deleting or renaming the model does, in every spelling a
    store might read as the tag: before, an editor of the prompt (CAN_EDIT) deleted it and every load failed."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_WORKSPACE", WORKSPACE)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", org.owner.token)
    mlflow.set_tracking_uri(stack.url)
    mlflow.set_workspace(WORKSPACE)
    name = unique("prompt-kind")
    try:
        mlflow.genai.register_prompt(name=name, template="Answer {{question}} politely.")
    finally:
        mlflow.set_workspace(None)
    model_id = model_of(stack, org.owner, name)["id"]
    granted = org.owner.http(stack).patch(
        f"{stack.url}/api/2.0/permissions/registered-models/{model_id}",
        json={"access_control_list": [{"user_name": editor.name, "permission_level": "CAN_EDIT"}]},
        timeout=60,
    )
    assert granted.status_code == 200, granted.text

    def marker() -> str | None:
        answer = ok(stack, org.owner, "GET", "registered-models/get", params={"name": name})
        return {t["key"]: t["value"] for t in answer["registered_model"].get("tags", [])}.get("mlflow.prompt.is_prompt")

    # The stock client's call, as the editor: refused, the prompt still a prompt.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", editor.token)
    mlflow.set_workspace(WORKSPACE)
    try:
        with pytest.raises(MlflowException) as caught:
            mlflow.genai.delete_prompt_tag(name, "mlflow.prompt.is_prompt")
        assert caught.value.error_code == "PERMISSION_DENIED", caught.value
        assert mlflow.genai.load_prompt(f"prompts:/{name}/1").template == "Answer {{question}} politely."
        # The prompt's other tags are the editor's as before.
        mlflow.genai.set_prompt_tag(name, "team", "search")
    finally:
        mlflow.set_workspace(None)

    # Every spelling a store might read as the tag (case, accents, blanks around; a list in its place).
    for key in (
        "mlflow.prompt.is_prompt",
        "MLflow.Prompt.IS_PROMPT",
        " mlflow.prompt.is_prompt ",
        "mlflow.prómpt.is_prompt",
    ):
        body: dict[str, Any] = {"name": name, "key": key, "value": "false"}
        assert refused(stack, editor, "POST", "registered-models/set-tag", json=body) == (403, "PERMISSION_DENIED")
        del body["value"]
        assert refused(stack, editor, "DELETE", "registered-models/delete-tag", json=body) == (403, "PERMISSION_DENIED")
    listed = {"name": name, "key": ["mlflow.prompt.is_prompt"]}
    assert refused(stack, editor, "DELETE", "registered-models/delete-tag", json=listed)[0] in (400, 403)
    assert marker() == "true"

    # The prompt's manager decides what it is.
    ok(
        stack,
        org.owner,
        "POST",
        "registered-models/set-tag",
        json={"name": name, "key": "mlflow.prompt.is_prompt", "value": "true"},
    )
    assert marker() == "true"
