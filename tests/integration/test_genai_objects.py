"""Issues, label schemas and review queues of an experiment, through the gateway with the stock client.

Each follows its experiment: created and listed by naming it (CAN_EDIT to create, CAN_READ to list), read and
changed by its own id through the experiment the store says it belongs to (CAN_READ, CAN_EDIT; CAN_MANAGE to
delete). A reader of the experiment reads but does not change them (403); a user of the workspace who holds
nothing on the experiment gets the store's own not-found answer for each (404), as for a missing one.

Issues through the stock client's REST store (MlflowClient has no issue API in 3.17.2), label schemas and
review queues through `mlflow.genai`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from gateway.core.errors import mlflow_error
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.stock_client import stock_client_env

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Cast:
    owner: Person  # created the experiment: CAN_MANAGE on it
    reader: Person  # CAN_READ on the experiment
    stranger: Person  # may use team-a, holds nothing on the experiment
    experiment_id: str
    trace_id: str  # a trace of the experiment, logged by the owner


class As:
    """The stock client as one user of team-a: the token it sends, switched per call."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def __call__(self, person: Person, action: Callable[[], Any]) -> Any:
        with stock_client_env(MLFLOW_TRACKING_TOKEN=person.token):
            return action()

    def refused(self, person: Person, action: Callable[[], Any]) -> MlflowException:
        with pytest.raises(MlflowException) as caught:
            self(person, action)
        return caught.value


@pytest.fixture(scope="module")
def cast(stack: Stack) -> Iterator[Cast]:
    admin = Admin.of(stack)
    suffix = uuid.uuid4().hex[:6]
    owner, reader, stranger = (admin.person(f"{role}.{suffix}@example.com") for role in ("owner", "reader", "stranger"))
    for person in (owner, reader, stranger):
        admin.grant("workspaces/team-a", "CAN_USE", user=person.name)
    with stock_client_env(
        MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=owner.token, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"
    ):
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace("team-a")
        experiment_id = mlflow.set_experiment(unique("genai-objects")).experiment_id
        with mlflow.start_span("answer") as span:
            span.set_inputs({"question": "why"})
            trace_id = span.trace_id
        mlflow.flush_trace_async_logging()
        admin.grant(f"experiments/{experiment_id}", "CAN_READ", user=reader.name, workspace="team-a")
        yield Cast(owner, reader, stranger, experiment_id, trace_id)


@pytest.fixture(scope="module")
def as_user(stack: Stack) -> As:
    return As(stack)


def _store() -> Any:
    """The stock client's REST store of the tracking URI (what MlflowClient and mlflow.genai call)."""
    from mlflow.tracking._tracking_service.utils import _get_store

    return _get_store()


def test_issues_follow_their_experiment(cast: Cast, as_user: As) -> None:
    issue = as_user(
        cast.owner,
        lambda: _store().create_issue(
            experiment_id=cast.experiment_id, name="wrong answers", description="The agent invents facts."
        ),
    )
    assert issue.experiment_id == cast.experiment_id
    for person in (cast.owner, cast.reader):
        assert as_user(person, lambda: _store().get_issue(issue.issue_id)).name == "wrong answers"
        found = as_user(person, lambda: _store().search_issues(experiment_id=cast.experiment_id))
        assert [i.issue_id for i in found] == [issue.issue_id]
    updated = as_user(cast.owner, lambda: _store().update_issue(issue.issue_id, name="invented facts"))
    assert updated.name == "invented facts"

    refused = as_user.refused(cast.reader, lambda: _store().update_issue(issue.issue_id, name="x"))
    assert refused.error_code == "PERMISSION_DENIED"
    hidden = as_user.refused(cast.stranger, lambda: _store().get_issue(issue.issue_id))
    missing = as_user.refused(cast.stranger, lambda: _store().get_issue("iss-" + "0" * 32))
    assert (hidden.error_code, hidden.message.replace(issue.issue_id, "<id>")) == (
        missing.error_code,
        missing.message.replace("iss-" + "0" * 32, "<id>"),
    )
    assert hidden.error_code == "RESOURCE_DOES_NOT_EXIST"
    for action in (
        lambda: _store().search_issues(experiment_id=cast.experiment_id),
        lambda: _store().create_issue(experiment_id=cast.experiment_id, name="n", description="d"),
        lambda: _store().update_issue(issue.issue_id, name="x"),
    ):
        assert as_user.refused(cast.stranger, action).error_code == "RESOURCE_DOES_NOT_EXIST"
    # A search naming no experiment would search every issue of the store: refused, not narrowed.
    everything = as_user.refused(cast.owner, lambda: _store().search_issues())
    assert everything.error_code == "INVALID_PARAMETER_VALUE"


def test_label_schemas_and_review_queues_follow_their_experiment(cast: Cast, as_user: As) -> None:
    from mlflow.genai import label_schemas, review_queues

    experiment = cast.experiment_id
    schema = as_user(
        cast.owner,
        lambda: label_schemas.create_label_schema(
            "correct",
            type="feedback",
            input=label_schemas.InputCategorical(options=["yes", "no"]),
            experiment_id=experiment,
        ),
    )
    queue = as_user(
        cast.owner,
        lambda: review_queues.create_review_queue(
            "weekly review",
            queue_type="custom",
            users=[cast.owner.name],
            schema_ids=[schema.schema_id],
            experiment_id=experiment,
        ),
    )
    assert queue.experiment_id == experiment and queue.schema_ids == [schema.schema_id]
    added = as_user(
        cast.owner, lambda: review_queues.add_items_to_review_queue(queue.queue_id, item_ids=[cast.trace_id])
    )
    assert [item.item_id for item in added] == [cast.trace_id]
    # Completed in the caller's name, whoever the client says completed it.
    done = as_user(
        cast.owner,
        lambda: review_queues.set_review_queue_item_status(
            queue.queue_id, item_id=cast.trace_id, status="complete", completed_by="someone.else@example.com"
        ),
    )
    assert done.completed_by == cast.owner.name

    # The reader reads the experiment's schemas and queues, and changes none of them.
    names = {s.name for s in as_user(cast.reader, lambda: label_schemas.list_label_schemas(experiment_id=experiment))}
    assert "correct" in names
    assert as_user(cast.reader, lambda: review_queues.get_review_queue(queue.queue_id)).name == "weekly review"
    items = as_user(cast.reader, lambda: review_queues.list_review_queue_items(queue.queue_id))
    assert [item.item_id for item in items] == [cast.trace_id]
    for action in (
        lambda: review_queues.add_items_to_review_queue(queue.queue_id, item_ids=[cast.trace_id]),
        lambda: review_queues.delete_review_queue(queue.queue_id),
        lambda: label_schemas.delete_label_schema(schema_id=schema.schema_id),
    ):
        assert as_user.refused(cast.reader, action).error_code == "PERMISSION_DENIED"

    # The stranger meets the store's not-found answers.
    refusals = {
        "get schema": lambda: label_schemas.get_label_schema(schema_id=schema.schema_id),
        "list schemas": lambda: label_schemas.list_label_schemas(experiment_id=experiment),
        "get queue": lambda: review_queues.get_review_queue(queue.queue_id),
        "queue by name": lambda: review_queues.get_review_queue(name="weekly review", experiment_id=experiment),
        "create queue": lambda: review_queues.create_review_queue(
            "mine", queue_type="custom", experiment_id=experiment
        ),
        "list items": lambda: review_queues.list_review_queue_items(queue.queue_id),
    }
    for label, action in refusals.items():
        refused = as_user.refused(cast.stranger, action)
        assert refused.error_code == "RESOURCE_DOES_NOT_EXIST", label
    assert as_user.refused(cast.stranger, refusals["get queue"]).message == (
        f"RESOURCE_DOES_NOT_EXIST: Review queue with id '{queue.queue_id}' not found."
    )

    # The owner (CAN_MANAGE) deletes them.
    as_user(cast.owner, lambda: review_queues.delete_review_queue(queue.queue_id))
    as_user(cast.owner, lambda: label_schemas.delete_label_schema(schema_id=schema.schema_id))
    gone = as_user.refused(cast.owner, lambda: review_queues.get_review_queue(queue.queue_id))
    assert gone.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_reading_the_spans_of_a_trace_without_any_is_not_found(stack: Stack, cast: Cast) -> None:
    """A trace whose spans the store does not keep in its database (started without spans, or with its data in an
    artifact folder): MLflow 3.17.2 answers `traces/get` and `traces/batchGet` of it with 500 `INTERNAL_ERROR`, its
    fixed answer to that trace, which the client would retry for minutes. Through the gateway it is 404
    `RESOURCE_DOES_NOT_EXIST`; a trace with spans reads as before."""
    owner = cast.owner.http(stack)
    hex_id = uuid.uuid4().hex
    info = {
        "trace_id": f"tr-{hex_id}",
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": cast.experiment_id}},
        "request_time": "2026-12-03T00:00:00Z",
        "state": "OK",
    }
    started = owner.post(f"{stack.url}/api/3.0/mlflow/traces", json={"trace": {"trace_info": info}})
    assert started.status_code == 200, started.text
    reads = (
        ("/api/3.0/mlflow/traces/get", {"trace_id": f"tr-{hex_id}"}),
        ("/api/3.0/mlflow/traces/get", {"trace_id": f"tr-{hex_id}", "allow_partial": "true"}),
        ("/api/3.0/mlflow/traces/batchGet", {"trace_ids": [f"tr-{hex_id}", cast.trace_id]}),
    )
    # The store's own answer, asked directly in the namespace the gateway forwards team-a to.
    store = stack.stores["a"].url
    direct = requests.get(f"{store}/api/3.0/mlflow/traces/get", params=reads[0][1], timeout=60)
    assert (direct.status_code, direct.json()["error_code"], direct.json()["message"]) == (
        500,
        "INTERNAL_ERROR",
        "Trace data not stored in tracking store",
    )
    for path, query in reads:
        answer = owner.get(f"{stack.url}{path}", params=query, timeout=60)
        assert answer.status_code == 404, (path, query, answer.text)
        assert answer.json() == mlflow_error(
            "RESOURCE_DOES_NOT_EXIST",
            "Trace data is not stored in the tracking store: the trace has no spans there "
            "(a trace's data outside the store is read with get-trace-artifact).",
        )
    # Its info reads as ever, and so do the spans of a trace that has them.
    assert owner.get(f"{stack.url}/api/3.0/mlflow/traces/tr-{hex_id}", timeout=60).status_code == 200
    spans = owner.get(f"{stack.url}/api/3.0/mlflow/traces/get", params={"trace_id": cast.trace_id}, timeout=60)
    assert spans.status_code == 200, spans.text
    assert spans.json()["trace"]["trace_info"]["trace_id"] == cast.trace_id


def test_linking_a_trace_to_a_prompt_needs_to_read_the_prompt(stack: Stack, cast: Cast, as_user: As) -> None:
    """`traces/link-prompts` records that a trace used prompt versions, by name, and the store takes any name
    (it reads neither the prompt nor its version); `search_traces(filter_string='prompt = "name/version"')`
    answers from those records. The owner of a trace may link it to the prompts they may read, as the stock
    client does when a traced function loads one; a prompt hidden from them is refused as a missing one, and
    no record is made of it."""
    from mlflow.entities.model_registry import PromptVersion

    admin = Admin.of(stack)
    author = admin.person(unique("prompt.author") + "@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=author.name)
    name = unique("hidden-prompt")
    as_user(author, lambda: mlflow.genai.register_prompt(name=name, template="Answer {{ question }}"))
    missing = unique("no-such-prompt")

    def link(prompt: str) -> Any:
        return _store().link_prompts_to_trace(cast.trace_id, [PromptVersion(name=prompt, version=1, template="")])

    def linked(prompt: str) -> list[str]:
        found = mlflow.search_traces(
            locations=[cast.experiment_id], filter_string=f'prompt = "{prompt}/1"', return_type="list"
        )
        return [trace.info.trace_id for trace in found]

    hidden = as_user.refused(cast.owner, lambda: link(name))
    absent = as_user.refused(cast.owner, lambda: link(missing))
    assert (hidden.error_code, hidden.message.replace(name, "<name>")) == (
        absent.error_code,
        absent.message.replace(missing, "<name>"),
    )
    assert hidden.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert as_user(cast.owner, lambda: linked(name)) == []

    # Readable, the prompt is linked, and the trace is found by it.
    model_id = (
        author.http(stack)
        .get(f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name})
        .json()["registered_model_databricks"]["id"]
    )
    admin.grant(f"registered-models/{model_id}", "CAN_READ", user=cast.owner.name, workspace="team-a")
    as_user(cast.owner, lambda: link(name))
    assert as_user(cast.owner, lambda: linked(name)) == [cast.trace_id]
    # A reader of the experiment who may read the prompt still does not link (CAN_EDIT on the trace).
    admin.grant(f"registered-models/{model_id}", "CAN_READ", user=cast.reader.name, workspace="team-a")
    assert as_user.refused(cast.reader, lambda: link(name)).error_code == "PERMISSION_DENIED"


def test_a_prompt_version_the_store_cannot_read_is_refused(stack: Stack, cast: Cast, as_user: As) -> None:
    """MLflow 3.17.2 reads a linked prompt's version with `int()` and answered any other with a 500 page of its own
    (HTML); through the gateway it is 400 INVALID_PARAMETER_VALUE, for an account admin too, and a version the
    store reads (` 2`) links as before."""
    name = unique("own-prompt")
    as_user(cast.owner, lambda: mlflow.genai.register_prompt(name=name, template="Answer {{ question }}"))
    link = f"{stack.url}/api/2.0/mlflow/traces/link-prompts"
    for session in (cast.owner.http(stack), Admin.of(stack).http("team-a")):
        for version in ("one", "1.5", "", None):
            prompt = {"name": name} if version is None else {"name": name, "version": version}
            answer = session.post(link, json={"trace_id": cast.trace_id, "prompt_versions": [prompt]}, timeout=60)
            assert answer.status_code == 400, (version, answer.status_code, answer.text[:200])
            assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    read = {"trace_id": cast.trace_id, "prompt_versions": [{"name": name, "version": " 2"}]}
    assert cast.owner.http(stack).post(link, json=read, timeout=60).status_code == 200


def test_a_reader_does_not_take_or_revive_assessments_through_a_trace_of_their_own(
    stack: Stack, cast: Cast, as_user: As
) -> None:
    """MLflow 3.17.2 keys an assessment by its id alone. Starting (v3) a trace that exists merges each assessment
    the call carries onto the row of that id wherever it is, and deleting an assessment marks the one it
    `overrides` valid again wherever it is. The experiment's reader, who reads the owner's assessment ids, started
    a trace of their own again carrying the id of the owner's feedback (which left the owner's trace for theirs),
    and deleted an assessment of their own claiming to override the feedback the owner had overridden (which
    counted again). Through the gateway a start's assessments name only assessments the trace holds."""
    first = as_user(cast.owner, lambda: mlflow.log_feedback(trace_id=cast.trace_id, name="correct", value=False))
    second = as_user(
        cast.owner,
        lambda: mlflow.override_feedback(trace_id=cast.trace_id, assessment_id=first.assessment_id, value=True),
    )
    owner = cast.owner.http(stack)

    def owners(assessment_id: str) -> dict[str, Any]:
        url = f"{stack.url}/api/3.0/mlflow/traces/{cast.trace_id}/assessments/{assessment_id}"
        answer = owner.get(url, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()["assessment"]

    before = (owners(first.assessment_id), owners(second.assessment_id))
    assert before[0]["valid"] is False

    reader = cast.reader.http(stack)
    made = reader.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("readers-own")})
    assert made.status_code == 200, made.text
    mine = f"tr-{uuid.uuid4().hex}"
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": made.json()["experiment_id"]}}

    def start(*assessments: dict[str, Any]) -> requests.Response:
        info = {"trace_id": mine, "trace_location": location, "request_time": "2026-12-03T00:00:00Z", "state": "OK"}
        stamped = [
            {
                "trace_id": mine,
                "assessment_name": "mine",
                "source": {"source_type": "HUMAN", "source_id": cast.reader.name},
                "create_time": "2026-12-03T00:00:00Z",
                "last_update_time": "2026-12-03T00:00:00Z",
                "feedback": {"value": "mallory"},
                **assessment,
            }
            for assessment in assessments
        ]
        body = {"trace": {"trace_info": {**info, "assessments": stamped}}}
        return reader.post(f"{stack.url}/api/3.0/mlflow/traces", json=body, timeout=60)

    # Their own trace, with an assessment of their own the store names.
    started = start({})
    assert started.status_code == 200, started.text
    own = started.json()["trace"]["trace_info"]["assessments"][0]["assessment_id"]
    # Started again, carrying the owner's assessment: refused, the owner's stays on the owner's trace.
    taken = start({"assessment_id": second.assessment_id})
    assert taken.status_code == 400, taken.text
    assert taken.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # An assessment claiming to override the owner's overridden feedback: refused as the store refuses it in
    # create_assessment, and none is left to delete.
    revived = start({"assessment_id": own, "overrides": first.assessment_id, "feedback": {"value": "again"}})
    assert revived.status_code == 404, revived.text
    assert revived.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    gone = reader.delete(f"{stack.url}/api/3.0/mlflow/traces/{mine}/assessments/{own}", timeout=60)
    assert gone.status_code == 200, gone.text
    assert (owners(first.assessment_id), owners(second.assessment_id)) == before
    # The reader's own assessment, named by the id the store gave it, is still theirs to change in a start.
    again = start({"feedback": {"value": "new"}})
    kept = again.json()["trace"]["trace_info"]["assessments"][0]["assessment_id"]
    assert start({"assessment_id": kept, "feedback": {"value": "changed"}}).status_code == 200


def test_a_trace_or_assessment_names_as_its_run_only_a_run_the_caller_may_change(
    stack: Stack, cast: Cast, as_user: As
) -> None:
    """The store links a trace to the run its `mlflow.sourceRun` metadata names, and an assessment to the run its
    `mlflow.assessment.sourceRunId` names: searches of the run's traces answer the trace, deleting the run deletes
    the assessment. Anyone could name another's run there, from a trace in an experiment of their own. Logging a
    trace or an assessment to a run is a write to it: CAN_EDIT on the run, which is refused as a missing run to a
    caller who may not read it (404) and with 403 to one who reads it (the experiment's reader). The stock client
    logging a trace inside a run of the caller's keeps working."""
    owner = cast.owner.http(stack)
    made = owner.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": cast.experiment_id})
    assert made.status_code == 200, made.text
    run_id = made.json()["run"]["info"]["run_id"]
    source, assessment_source = "mlflow.sourceRun", "mlflow.assessment.sourceRunId"
    stamp = "2026-12-03T00:00:00Z"

    def calls(session: requests.Session, experiment_id: str, named: str) -> dict[str, Callable[[], requests.Response]]:
        """Each way a trace call names `named` as its run, in a trace of `experiment_id`."""
        location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}

        def start_v3(metadata: dict[str, str], *assessments: dict[str, Any]) -> requests.Response:
            trace_id = f"tr-{uuid.uuid4().hex}"
            stamped = [
                {
                    "trace_id": trace_id,
                    "assessment_name": "judged",
                    "source": {"source_type": "HUMAN", "source_id": "someone"},
                    "create_time": stamp,
                    "last_update_time": stamp,
                    "feedback": {"value": "fine"},
                    **assessment,
                }
                for assessment in assessments
            ]
            info = {"trace_id": trace_id, "trace_location": location, "request_time": stamp, "state": "OK"}
            body = {"trace": {"trace_info": {**info, "trace_metadata": metadata, "assessments": stamped}}}
            return session.post(f"{stack.url}/api/3.0/mlflow/traces", json=body, timeout=60)

        def start_v2(metadata: list[dict[str, str]]) -> requests.Response:
            body = {"experiment_id": experiment_id, "timestamp_ms": 1, "request_metadata": metadata}
            return session.post(f"{stack.url}/api/2.0/mlflow/traces", json=body, timeout=60)

        def end_v2() -> requests.Response:
            started = start_v2([])
            assert started.status_code == 200, started.text
            request_id = started.json()["trace_info"]["request_id"]
            body = {
                "request_id": request_id,
                "timestamp_ms": 2,
                "status": "OK",
                "request_metadata": [{"key": source, "value": named}],
            }
            return session.patch(f"{stack.url}/api/2.0/mlflow/traces/{request_id}", json=body, timeout=60)

        def assessment(change: bool) -> requests.Response:
            started = start_v3({})
            assert started.status_code == 200, started.text
            trace_id = started.json()["trace"]["trace_info"]["trace_id"]
            url = f"{stack.url}/api/3.0/mlflow/traces/{trace_id}/assessments"
            plain = {"trace_id": trace_id, "assessment_name": "judged", "feedback": {"value": "fine"}}
            plain["source"] = {"source_type": "HUMAN", "source_id": "someone"}
            linked = {**plain, "metadata": {assessment_source: named}}
            if not change:
                return session.post(url, json={"assessment": linked}, timeout=60)
            created = session.post(url, json={"assessment": plain}, timeout=60)
            assert created.status_code == 200, created.text
            assessment_id = created.json()["assessment"]["assessment_id"]
            return session.patch(
                f"{url}/{assessment_id}",
                json={"assessment": {**linked, "assessment_id": assessment_id}, "update_mask": "metadata"},
                timeout=60,
            )

        return {
            "v3 start": lambda: start_v3({source: named}),
            "v3 start's assessment": lambda: start_v3({}, {"metadata": {assessment_source: named}}),
            "v2 start": lambda: start_v2([{"key": source, "value": named}]),
            "v2 end": end_v2,
            "assessment created": lambda: assessment(change=False),
            "assessment updated": lambda: assessment(change=True),
        }

    def own_experiment(session: requests.Session) -> str:
        made = session.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("own")})
        assert made.status_code == 200, made.text
        return str(made.json()["experiment_id"])

    for person, status, code in (
        (cast.reader, 403, "PERMISSION_DENIED"),
        (cast.stranger, 404, "RESOURCE_DOES_NOT_EXIST"),
    ):
        session = person.http(stack)
        experiment_id = own_experiment(session)
        for what, call in calls(session, experiment_id, run_id).items():
            refused = call()
            assert refused.status_code == status, (person.name, what, refused.text)
            assert refused.json()["error_code"] == code, (person.name, what, refused.text)
            if status == 404:
                assert refused.json()["message"] == f"Run with id={run_id} not found", refused.text
        # Nothing of theirs names the run: the store holds no trace or assessment linked to it.
        with stock_client_env(MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN):
            # What `search_traces(run_id=...)` asks, which the stock client sends only with the run's experiment.
            by_run = f"attribute.run_id = '{run_id}'"
            linked = mlflow.search_traces(locations=[experiment_id], filter_string=by_run, return_type="list")
            assert linked == [], (person.name, [t.info.trace_id for t in linked])
            every = mlflow.search_traces(locations=[experiment_id], return_type="list", include_spans=False)
        named = [a for t in every for a in t.info.assessments if (a.metadata or {}).get(assessment_source) == run_id]
        assert named == [], named
        # A run of their own is theirs to name, every way.
        mine = session.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
        assert mine.status_code == 200, mine.text
        for what, call in calls(session, experiment_id, mine.json()["run"]["info"]["run_id"]).items():
            assert call().status_code == 200, (person.name, what)

    # The stock client's trace inside a run of the caller's is logged and found by the run.
    def traced_run() -> tuple[str, str]:
        with mlflow.start_run(experiment_id=cast.experiment_id) as run, mlflow.start_span("in a run") as span:
            span.set_inputs({"question": "which run"})
        mlflow.flush_trace_async_logging()
        return run.info.run_id, span.trace_id

    traced, trace_id = as_user(cast.owner, traced_run)
    found = as_user(
        cast.owner,
        lambda: mlflow.search_traces(locations=[cast.experiment_id], run_id=traced, return_type="list"),
    )
    assert [t.info.trace_id for t in found] == [trace_id]
    assert found[0].info.trace_metadata[source] == traced
