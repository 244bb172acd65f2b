"""The leak guard's linked writes (gateway/secrets/linked.py): which run a trace, assessment, logged model or model
version write is linked to, and which of its strings are read, with the kind of field each is in."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.route_table import LOGGED_MODELS_CREATE, MODEL_VERSIONS_CREATE, Action, Resource
from gateway.secrets.linked import (
    ASSESSMENTS_CREATE,
    LINKED_ROUTES,
    LOGGED_MODELS_LOG_PARAMS,
    LOGGED_MODELS_SET_TAGS,
    THROUGH_MODEL,
    THROUGH_TRACE,
    TRACES_END_V2,
    TRACES_SET_TAG_V2,
    TRACES_START_V2,
    TRACES_START_V3,
    body_runs,
    linked_object,
    linked_texts,
    source_run,
)

RUN = "a" * 32


def kinds(spec: Any, document: dict[str, Any]) -> dict[str, str]:
    return {text.value.decode(): text.kind for text in linked_texts(spec, document)}


def test_a_trace_started_inside_a_run_names_it_in_its_metadata_v2_and_v3() -> None:
    v3 = {"trace": {"trace_info": {"trace_id": "tr-1", "trace_metadata": {"mlflow.sourceRun": RUN}}}}
    assert body_runs(TRACES_START_V3, v3) == [RUN]
    v2 = {"experiment_id": "1", "request_metadata": [{"key": "mlflow.sourceRun", "value": RUN}]}
    assert body_runs(TRACES_START_V2, v2) == [RUN] == body_runs(TRACES_END_V2, v2)
    assert body_runs(TRACES_START_V3, {"trace": {"trace_info": {"trace_metadata": {"other": RUN}}}}) == []
    assert body_runs(TRACES_START_V3, {"trace": "garbage"}) == []
    assert body_runs(TRACES_START_V2, {"request_metadata": "garbage"}) == []


def test_a_logged_model_names_its_source_run_and_an_assessment_the_run_it_was_made_by() -> None:
    assert body_runs(LOGGED_MODELS_CREATE, {"experiment_id": "1", "source_run_id": RUN}) == [RUN]
    assert body_runs(LOGGED_MODELS_CREATE, {"experiment_id": "1"}) == []
    assessment = {"assessment": {"metadata": {"mlflow.assessment.sourceRunId": RUN}}}
    assert body_runs(ASSESSMENTS_CREATE, assessment) == [RUN]
    assert body_runs(LOGGED_MODELS_SET_TAGS, {"tags": [{"key": "k", "value": RUN}]}) == []


def test_a_model_version_names_its_run_and_the_logged_model_whose_source_run_it_is_linked_to() -> None:
    version = {"name": "reg", "source": "models:/m-1", "run_id": RUN, "model_id": "m-1", "description": "d"}
    assert body_runs(MODEL_VERSIONS_CREATE, version) == [RUN]
    assert linked_object(MODEL_VERSIONS_CREATE, {}, version) == ("logged_model", "m-1")
    assert body_runs(MODEL_VERSIONS_CREATE, {"name": "reg", "model_id": "m-1"}) == []
    assert linked_object(MODEL_VERSIONS_CREATE, {}, {"name": "reg", "run_id": RUN}) is None
    assert linked_object(MODEL_VERSIONS_CREATE, {}, {"model_id": ["m-1"]}) is None
    assert linked_object(MODEL_VERSIONS_CREATE, {"model_id": "m-2"}, {"model_id": ""}) is None
    assert linked_object(LOGGED_MODELS_SET_TAGS, {"model_id": "m-2"}, {"model_id": "m-1"}) == ("logged_model", "m-2")
    assert linked_object(TRACES_SET_TAG_V2, {"request_id": "tr-1"}, {}) == ("trace", "tr-1")
    assert linked_object(LOGGED_MODELS_CREATE, {}, {"model_id": "m-1"}) is None
    assert kinds(MODEL_VERSIONS_CREATE, {**version, "run_link": "l", "tags": [{"key": "tk", "value": "tv"}]}) == {
        "reg": "registered model name",
        "models:/m-1": "model version source",
        "d": "model version description",
        "l": "model version run link",
        "tk": "model version tag key",
        "tv": "model version tag value",
    }


def test_the_source_run_is_read_from_the_stores_answer_for_the_object() -> None:
    trace = {"trace": {"trace_info": {"trace_metadata": {"mlflow.sourceRun": RUN}}}}
    assert source_run("trace", trace) == RUN
    assert source_run("trace", {"trace": {"trace_info": {}}}) is None
    assert source_run("logged_model", {"model": {"info": {"source_run_id": RUN}}}) == RUN
    assert source_run("logged_model", {"model": {"info": {"source_run_id": ""}}}) is None
    assert source_run("logged_model", {"model": []}) is None


def test_keys_of_the_callers_maps_are_text_and_ids_elsewhere_are_not() -> None:
    v3 = {
        "trace": {
            "trace_info": {
                "trace_id": "tr-skipped",
                "request_preview": "req",
                "response_preview": "resp",
                "trace_location": {"mlflow_experiment": {"experiment_id": "e-skipped"}},
                "trace_metadata": {"mlflow.sourceRun": RUN, "meta_id": "metaval"},
                "tags": {"tagkey": "tagval", "user_id": "tagid"},
            }
        }
    }
    assert kinds(TRACES_START_V3, v3) == {
        "req": "trace request preview",
        "resp": "trace response preview",
        "mlflow.sourceRun": "trace metadata key",
        RUN: "trace metadata value",
        "meta_id": "trace metadata key",  # a key of the caller's: text, even named like an id
        "metaval": "trace metadata value",
        "tagkey": "trace tag key",
        "tagval": "trace tag value",
        "user_id": "trace tag key",
        "tagid": "trace tag value",
    }
    assert kinds(TRACES_SET_TAG_V2, {"request_id": "tr-1", "key": "k1", "value": "v1"}) == {
        "k1": "trace tag key",
        "v1": "trace tag value",
    }
    assert kinds(TRACES_END_V2, {"request_id": "tr-1", "status": "OK", "tags": [{"key": "k2", "value": "v2"}]}) == {
        "k2": "trace tag key",
        "v2": "trace tag value",
    }
    assessment = {
        "assessment": {
            "trace_id": "tr-1",
            "assessment_name": "name",
            "rationale": "because",
            "feedback": {"value": {"nested": ["deep"]}},
            "metadata": {"mk": "mv"},
            "source": {"source_type": "HUMAN", "source_id": "who"},
        }
    }
    assert kinds(ASSESSMENTS_CREATE, assessment) == {
        "name": "assessment name",
        "because": "assessment rationale",
        "nested": "feedback value",
        "deep": "feedback value",
        "mk": "assessment metadata key",
        "mv": "assessment metadata value",
        "HUMAN": "assessment field",
    }
    model = {"experiment_id": "1", "name": "n", "source_run_id": RUN, "params": [{"key": "pk", "value": "pv"}]}
    assert kinds(LOGGED_MODELS_CREATE, model) == {
        "n": "logged model name",
        "pk": "logged model param key",
        "pv": "logged model param value",
    }
    assert kinds(LOGGED_MODELS_LOG_PARAMS, {"model_id": "m-1", "params": [{"key": "a", "value": "b"}]}) == {
        "a": "logged model param key",
        "b": "logged model param value",
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@given(document=st.dictionaries(st.text(max_size=12), json_values, max_size=4))
def test_any_body_is_read_without_error_and_every_kind_is_of_the_vocabulary(document: dict[str, Any]) -> None:
    vocabulary = {"field", "tag", "metadata", "preview", "assessment", "feedback", "expectation", "param", "name"}
    vocabulary |= {"description", "source", "link"}
    for spec in LINKED_ROUTES:
        for text in linked_texts(spec, document):
            assert text.kind.split()[-1] in vocabulary or text.kind.split()[-2] in vocabulary, text.kind
        body_runs(spec, document)
        linked_object(spec, document, document)


def test_the_linked_routes_are_writes_of_traces_logged_models_and_versions_the_run_routes_do_not_cover() -> None:
    for spec in LINKED_ROUTES:
        assert spec.writes and not spec.run_text
        assert spec.resource in (Resource.TRACE, Resource.LOGGED_MODEL, Resource.MODEL_VERSION)
        assert spec.action in (Action.CREATE, Action.EDIT)
    assert {spec.resource for spec in THROUGH_MODEL} == {Resource.LOGGED_MODEL}
    assert {spec.resource for spec in THROUGH_TRACE} == {Resource.TRACE}
