"""Request and response bodies of the registry workflow, in the shapes of Databricks' workspace model registry.

The names and fields are those of `databricks-sdk` (`service/ml.py`: TransitionRequest, Activity,
CommentObject, ModelDatabricks, ModelVersionDatabricks), so the stock SDK parses every answer. Two fields
are the gateway's own additions, which the SDK ignores: `version` on an activity (the activity log spans
a model's versions) and `available_actions` on the open requests of `transition-requests/list`.
"""

from __future__ import annotations

import msgspec


class _Body(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


# -- requests ---------------------------------------------------------------------------------------


class CreateTransitionRequest(_Body, kw_only=True):
    name: str
    version: str
    stage: str
    comment: str | None = None


class ApproveTransitionRequest(_Body, kw_only=True):
    name: str
    version: str
    stage: str
    archive_existing_versions: bool
    comment: str | None = None


class RejectTransitionRequest(_Body, kw_only=True):
    name: str
    version: str
    stage: str
    comment: str | None = None


class TransitionStage(_Body, kw_only=True):
    """A direct transition (`databricks/model-versions/transition-stage`), for those allowed to make it."""

    name: str
    version: str
    stage: str
    archive_existing_versions: bool = False
    comment: str | None = None


class CreateComment(_Body, kw_only=True):
    name: str
    version: str
    comment: str


class UpdateComment(_Body, kw_only=True):
    id: str
    comment: str


class CreateAliasRequest(_Body, kw_only=True):
    """A request to point `alias` at `version` (the gateway's own call: Databricks has no alias requests)."""

    name: str
    alias: str
    version: str
    comment: str | None = None


class DecideAliasRequest(_Body, kw_only=True):
    name: str
    alias: str
    version: str
    comment: str | None = None


class UpdateRegistrySettings(_Body, kw_only=True):
    name: str
    protected_aliases: list[str]


# -- objects ----------------------------------------------------------------------------------------


class Activity(_Body, kw_only=True):
    """One entry of the activity log (also an open request, as `transition-requests/list` answers it)."""

    id: str
    activity_type: str  # APPLIED_TRANSITION | REQUESTED_TRANSITION | ... (ActivityType)
    user_id: str
    creation_timestamp: int
    last_updated_timestamp: int
    from_stage: str | None = None
    to_stage: str | None = None
    comment: str | None = None
    system_comment: str | None = None
    version: str | None = None  # the gateway's: which version of the model
    available_actions: list[str] | None = None  # the gateway's, on open requests: what the caller may do
    alias: str | None = None  # the gateway's, on alias activities: the alias requested, moved or deleted


class TransitionRequest(_Body, kw_only=True):
    to_stage: str
    user_id: str
    creation_timestamp: int
    comment: str | None = None
    available_actions: list[str] = msgspec.field(default_factory=list)


class CommentObject(_Body, kw_only=True):
    id: str
    user_id: str
    comment: str
    creation_timestamp: int
    last_updated_timestamp: int
    available_actions: list[str] = msgspec.field(default_factory=list)


class ModelVersionTag(_Body, kw_only=True):
    key: str
    value: str | None = None


class ModelVersion(_Body, kw_only=True):
    """A version as `ModelDatabricks.latest_versions` lists it (the store's own fields)."""

    name: str
    version: str
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    user_id: str | None = None
    current_stage: str | None = None
    description: str | None = None
    source: str | None = None
    run_id: str | None = None
    run_link: str | None = None
    status: str | None = None
    status_message: str | None = None
    tags: list[ModelVersionTag] | None = None


class ModelVersionDatabricks(ModelVersion, kw_only=True):
    """A version with the caller's level on its model and the version's open requests."""

    permission_level: str | None = None
    open_requests: list[Activity] = msgspec.field(default_factory=list)


class ModelTag(_Body, kw_only=True):
    key: str
    value: str | None = None


class ModelDatabricks(_Body, kw_only=True):
    id: str  # the gateway's immutable id (renames keep it): the one the permissions API takes
    name: str
    permission_level: str | None = None  # the caller's
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    user_id: str | None = None
    description: str | None = None
    latest_versions: list[ModelVersion] = msgspec.field(default_factory=list)
    tags: list[ModelTag] = msgspec.field(default_factory=list)


class AliasRequest(_Body, kw_only=True):
    alias: str
    version: str
    user_id: str
    creation_timestamp: int
    comment: str | None = None
    available_actions: list[str] = msgspec.field(default_factory=list)


class RegistrySettings(_Body, kw_only=True):
    """A model's workflow settings: the aliases whose moves need CAN_MANAGE_PRODUCTION_VERSIONS."""

    name: str
    protected_aliases: list[str]
    updated_by: str | None = None
    last_updated_timestamp: int | None = None


# -- answers ----------------------------------------------------------------------------------------


class CreateTransitionRequestResponse(_Body, kw_only=True):
    request: TransitionRequest


class ActivityResponse(_Body, kw_only=True):
    """The answer of approve, reject and delete (cancel)."""

    activity: Activity


class ListTransitionRequestsResponse(_Body, kw_only=True):
    requests: list[Activity]  # always present, [] when none is open


class CommentResponse(_Body, kw_only=True):
    comment: CommentObject


class ActivitiesResponse(_Body, kw_only=True):
    """`activities/list`: newest first; `next_page_token` when more are left."""

    activities: list[Activity]  # always present, [] for a model without activities
    next_page_token: str | None = None


class GetModelResponse(_Body, kw_only=True):
    registered_model_databricks: ModelDatabricks


class TransitionStageResponse(_Body, kw_only=True):
    model_version_databricks: ModelVersionDatabricks


class CreateAliasRequestResponse(_Body, kw_only=True):
    request: AliasRequest


class RegistrySettingsResponse(_Body, kw_only=True):
    settings: RegistrySettings
