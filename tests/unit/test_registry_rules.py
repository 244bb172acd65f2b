"""The registry workflow's rules without servers: the level of each stage transition, stage names, and what
each principal is offered (`available_actions`) over the real policy snapshot."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_model_version

from gateway.authz.decide import Authorizer
from gateway.authz.levels import (
    PROTECTED_ALIASES_LEVEL,
    Level,
    alias_level,
    model_object,
    transition_level,
    workspace_domain,
    workspace_object,
)
from gateway.authz.live import LivePolicy
from gateway.authz.policy import Grant
from gateway.core.errors import InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.registry.aliases import check_alias
from gateway.registry.repository import StoredRequest
from gateway.registry.routes import reserved_version_tag
from gateway.registry.service import Action, Model, RegistryWorkflow, canonical_stage, mlflow_version
from tests.unit.test_policy_agreement import snapshot

STAGING, PRODUCTION = Level.CAN_MANAGE_STAGING_VERSIONS, Level.CAN_MANAGE_PRODUCTION_VERSIONS
TEAM_A = WorkspaceLink("team-a", 1001, "workspace", "store-a", "store-a", None)
A = TEAM_A.workspace_id
MODEL = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("current", "target", "level"),
    [
        ("None", "Staging", STAGING),
        ("Staging", "Archived", STAGING),
        ("Archived", "None", STAGING),
        ("Staging", "Staging", STAGING),
        ("None", "Production", PRODUCTION),
        ("Staging", "Production", PRODUCTION),
        ("Production", "Archived", PRODUCTION),  # out of Production touches Production too
        ("Production", "Production", PRODUCTION),
        ("production", "archived", PRODUCTION),  # MLflow reads stages in any case
        ("", "PRODUCTION", PRODUCTION),
        ("", "Staging", STAGING),  # an unknown current stage is not Production
        ("None", " Production", PRODUCTION),  # blanks around: the stage a store without stages reads
        ("Production\t", "Staging", PRODUCTION),
        ("None", "production\u00a0", PRODUCTION),
    ],
)
def test_anything_into_or_out_of_production_needs_the_production_level(current: str, target: str, level: Level) -> None:
    assert transition_level(current, target) is level


@pytest.mark.parametrize(
    ("alias", "protected", "level"),
    [
        ("champion", ["champion"], PRODUCTION),
        ("Champion", ["champion"], PRODUCTION),  # another spelling of a protected alias is protected too
        ("champion", ["CHAMPION", "prod"], PRODUCTION),
        ("challenger", ["champion"], Level.CAN_EDIT),  # MLflow's own rule for any other alias
        ("champion", [], Level.CAN_EDIT),
    ],
)
def test_a_protected_alias_needs_the_production_level_and_any_other_can_edit(
    alias: str, protected: list[str], level: Level
) -> None:
    assert alias_level(alias, protected) is level
    assert PROTECTED_ALIASES_LEVEL is Level.CAN_MANAGE


def test_alias_names_are_mlflows() -> None:
    assert [check_alias(a) for a in ("champion", " prod-2 ", "a_b")] == ["champion", "prod-2", "a_b"]
    for wrong in ("", "latest", "LATEST", "v3", "has space", "a/b", "x" * 256, "cham\npion"):
        with pytest.raises(InvalidParameter):
            check_alias(wrong)


def test_stages_are_spelled_as_mlflow_and_databricks_spell_them() -> None:
    assert [canonical_stage(s) for s in ("none", " Staging ", "PRODUCTION", "archived")] == [
        "None",
        "Staging",
        "Production",
        "Archived",
    ]
    for wrong in ("Prod", "", "Production\n1", "deleted_internal"):
        with pytest.raises(InvalidParameter):
            canonical_stage(wrong)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=12),
        st.from_regex(r"\A[ \t+\-]?[0-9_\uff10-\uff19\u0660-\u0669]{1,20}[ \t]?\Z"),
        st.integers(min_value=-5, max_value=10**20).map(str),
    )
)
def test_a_version_is_read_as_mlflows_store_reads_it(text: str) -> None:
    """The version `mlflow_version` decides on is the one MLflow's own check reads (`+1`, ` 1`, `0_1` and other
    scripts' digits included), and none where MLflow reads none."""
    try:
        read: int | None = _validate_model_version(text)
    except MlflowException:
        read = None
    expected = str(read) if read is not None and 0 <= read < 10**18 else None
    assert mlflow_version(text) == expected
    for spelt in ("+1", " 1 ", "0_1", "\uff11", "\u0661", "01"):
        assert mlflow_version(spelt) == "1"


REQUESTER, STAGER, SHIPPER, MANAGER, WORKSPACE_ADMIN = 1, 2, 3, 4, 5
POLICY = snapshot(
    [
        Grant(REQUESTER, workspace_domain(A), model_object(A, MODEL), "CAN_READ"),
        Grant(STAGER, workspace_domain(A), model_object(A, MODEL), "CAN_MANAGE_STAGING_VERSIONS"),
        Grant(SHIPPER, workspace_domain(A), model_object(A, MODEL), "CAN_MANAGE_PRODUCTION_VERSIONS"),
        Grant(MANAGER, workspace_domain(A), model_object(A, MODEL), "CAN_MANAGE"),
        Grant(WORKSPACE_ADMIN, workspace_domain(A), workspace_object(A), "CAN_MANAGE"),
    ],
    [],
)


def principal(principal_id: int) -> Principal:
    return Principal(name=f"p{principal_id}", kind="user", id=principal_id, subjects=POLICY.subjects(principal_id))


@pytest.fixture
def workflow() -> RegistryWorkflow:
    policy = LivePolicy(None, views=None)  # type: ignore[arg-type]  # never reloads: the snapshot is set here
    policy.snapshot = POLICY
    # Offering actions asks the policy only: no database, store or audit trail.
    return RegistryWorkflow(None, Authorizer(policy), None, None, None)  # type: ignore[arg-type]


def request(to_stage: str, requested_by: str = "p1") -> StoredRequest:
    return StoredRequest(1, MODEL, "1", to_stage, requested_by, None, "open", 0, None, requested_by_id=REQUESTER)


def offered(workflow: RegistryWorkflow, who: Principal, current: str, to_stage: str) -> list[str]:
    model = Model(TEAM_A, "churn", MODEL, "CAN_READ")
    return [str(a) for a in workflow.request_actions(who, model, current, request(to_stage))]


@pytest.mark.parametrize(
    ("who", "current", "to_stage", "actions"),
    [
        (REQUESTER, "None", "Staging", [Action.CANCEL]),
        (STAGER, "None", "Staging", [Action.APPROVE, Action.REJECT]),
        (STAGER, "Staging", "Production", []),
        (STAGER, "Production", "Archived", []),
        (SHIPPER, "Staging", "Production", [Action.APPROVE, Action.REJECT]),
        (SHIPPER, "None", "Staging", [Action.APPROVE, Action.REJECT]),
        (MANAGER, "Staging", "Production", [Action.APPROVE, Action.REJECT, Action.CANCEL]),
        (WORKSPACE_ADMIN, "Production", "Archived", [Action.APPROVE, Action.REJECT, Action.CANCEL]),
    ],
)
def test_each_principal_is_offered_what_it_may_do_with_a_request(
    workflow: RegistryWorkflow, who: int, current: str, to_stage: str, actions: list[str]
) -> None:
    assert offered(workflow, principal(who), current, to_stage) == actions


def test_an_account_admin_may_do_everything_and_a_comment_is_its_authors_or_a_managers(
    workflow: RegistryWorkflow,
) -> None:
    admin = Principal(name="admin", kind="bootstrap", account_admin=True)
    assert offered(workflow, admin, "Staging", "Production") == [Action.APPROVE, Action.REJECT, Action.CANCEL]
    model = Model(TEAM_A, "churn", MODEL, "CAN_READ")
    both = [Action.EDIT_COMMENT, Action.DELETE_COMMENT]
    assert workflow.comment_actions(principal(REQUESTER), model, REQUESTER) == both
    assert workflow.comment_actions(principal(SHIPPER), model, REQUESTER) == []
    assert workflow.comment_actions(principal(MANAGER), model, REQUESTER) == both
    assert workflow.comment_actions(admin, model, None) == both


def test_the_requester_and_the_author_are_known_by_id_not_by_name(workflow: RegistryWorkflow) -> None:
    """A principal given the name of a deleted requester or author later is not them; a renamed one still is."""
    model = Model(TEAM_A, "churn", MODEL, "CAN_READ")
    namesake = Principal(name="p1", kind="user", id=99, subjects=frozenset({99}))
    renamed = Principal(name="someone-else", kind="user", id=REQUESTER, subjects=POLICY.subjects(REQUESTER))
    assert workflow.request_actions(namesake, model, "None", request("Staging")) == []
    assert workflow.comment_actions(namesake, model, REQUESTER) == []
    assert workflow.request_actions(renamed, model, "None", request("Staging")) == [Action.CANCEL]
    assert workflow.comment_actions(renamed, model, REQUESTER) == [Action.EDIT_COMMENT, Action.DELETE_COMMENT]
    # A row whose requester nobody could be found for (None) is nobody's but the bootstrap admin's, who manages all.
    unknown = StoredRequest(1, MODEL, "1", "Staging", "p1", None, "open", 0, None)
    assert workflow.request_actions(principal(REQUESTER), model, "None", unknown) == []


def test_on_a_store_without_stages_the_stage_is_the_tag() -> None:
    from gateway.registry.schemas import ModelVersion, ModelVersionTag
    from gateway.registry.store import STAGE_TAG, tagged_stage

    def version(*tags: tuple[str, str]) -> ModelVersion:
        return ModelVersion(
            name="m", version="1", current_stage="None", tags=[ModelVersionTag(key=k, value=v) for k, v in tags]
        )

    assert tagged_stage(version()) == "None"
    assert tagged_stage(version(("owner", "x"), (STAGE_TAG, "production"))) == "Production"
    assert tagged_stage(version((STAGE_TAG, "Archived"))) == "Archived"
    assert tagged_stage(version((STAGE_TAG, "deleted"))) == "None"  # not a stage: as if untagged


def test_the_workflows_own_version_tags_are_reserved_in_every_spelling_a_store_might_match() -> None:
    reserved = ("fedgate.stage", "fedgate.promoted_from", "fedgate.promoted_from.version", " Fedgate.Stage ")
    for key in (*reserved, "FEDGATE.PROMOTED_FROM.run_id", "fedgate.st\u00e1ge", "fedgate.promoted_from\t"):
        assert reserved_version_tag(key), key
    for key in ("fedgate.property.owner", "fedgate.promoted_fromx", "owner", "fedgate.stages", None, 7):
        assert not reserved_version_tag(key), key
