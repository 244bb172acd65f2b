"""A renamed workspace's search filters: which literals are renamed, to what, and which patterns are refused.

Each renamed filter is read back with MLflow's own parser (mlflow.utils.search_utils, the one its stores use):
only the literal compared with the artifact-URI field changed, every other comparison is as it was sent."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import (
    SearchModelVersionUtils,
    SearchTraceMetricsUtils,
    SearchTraceUtils,
    SearchUtils,
)

from gateway.core.errors import InvalidParameter
from gateway.core.route_table import declared
from gateway.federation.filter_renames import (
    RUN_URI,
    TRACE_LOCATION,
    TRACE_METRICS_LOCATION,
    VERSION_SOURCE,
    Field,
    rename_filter,
    rename_request,
)

SHOWN = "mlflow-artifacts:/workspaces/team-c/"
STORED = "mlflow-artifacts:/workspaces/upstream-c/"
NOWHERE = "mlflow-artifacts:/workspaces/workspaces/"
PARSERS: dict[Field, Callable[[str], list[dict[str, Any]]]] = {
    RUN_URI: SearchUtils.parse_search_filter,
    VERSION_SOURCE: SearchModelVersionUtils.parse_search_filter,
    TRACE_LOCATION: SearchTraceUtils.parse_search_filter_for_search_traces,
    # The trace metrics query: one comparison a filter.
    TRACE_METRICS_LOCATION: lambda text: [dataclasses.asdict(SearchTraceMetricsUtils.parse_search_filter(text))],
}


def renamed(field: Field, text: str) -> str:
    out = rename_filter(text, field, "team-c", "upstream-c")
    before, after = PARSERS[field](text), PARSERS[field](out)
    assert [{k: v for k, v in c.items() if k != "value"} for c in before] == [
        {k: v for k, v in c.items() if k != "value"} for c in after
    ]
    for old, new in zip(before, after, strict=True):
        if old["value"] != new["value"]:
            assert old["key"] == field.key, (old, new)
    return out


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        (
            RUN_URI,
            f"attributes.artifact_uri = '{SHOWN}3/r/artifacts'",
            f"attributes.artifact_uri = '{STORED}3/r/artifacts'",
        ),
        (RUN_URI, f"artifact_uri LIKE '{SHOWN}%'", f"artifact_uri LIKE '{STORED}%'"),
        (RUN_URI, f'attr.`artifact_uri` != "{SHOWN}3"', f'attr.`artifact_uri` != "{STORED}3"'),
        (RUN_URI, f"run.artifact_uri ILIKE '{SHOWN.upper()}3/%'", f"run.artifact_uri ILIKE '{STORED}3/%'"),
        (RUN_URI, "artifact_uri LIKE 'mlflow-artifacts:/workspaces/team-c%'", f"artifact_uri LIKE '{STORED[:-1]}%'"),
        (
            RUN_URI,
            "artifact_uri LIKE 'mlflow-artifacts:/workspaces/team-c_3/%'",
            f"artifact_uri LIKE '{STORED[:-1]}_3/%'",
        ),
        # The store's own name is never shown: renamed to the reserved name no workspace has.
        (RUN_URI, f"artifact_uri = '{STORED}3'", f"artifact_uri = '{NOWHERE}3'"),
        (RUN_URI, f"artifact_uri LIKE '{STORED}%'", f"artifact_uri LIKE '{NOWHERE}%'"),
        (
            VERSION_SOURCE,
            f"name = 'm' AND source_path = '{SHOWN}3/r/artifacts/m'",
            f"name = 'm' AND source_path = '{STORED}3/r/artifacts/m'",
        ),
        (VERSION_SOURCE, f"attribute.source_path LIKE '{SHOWN}%'", f"attribute.source_path LIKE '{STORED}%'"),
        (
            TRACE_LOCATION,
            f"tags.`mlflow.artifactLocation` = '{SHOWN}3/traces/t/artifacts'",
            f"tags.`mlflow.artifactLocation` = '{STORED}3/traces/t/artifacts'",
        ),
        (
            TRACE_LOCATION,
            f"tag.mlflow.artifactLocation LIKE '{SHOWN}3/%'",
            f"tag.mlflow.artifactLocation LIKE '{STORED}3/%'",
        ),
        (
            TRACE_LOCATION,
            f"tags.\"mlflow.artifactLocation\" RLIKE '^{SHOWN}3/.*'",
            f"tags.\"mlflow.artifactLocation\" RLIKE '^{STORED}3/.*'",
        ),
        (
            TRACE_METRICS_LOCATION,
            f"trace.tag.mlflow.artifactLocation = '{SHOWN}3/traces/t/artifacts'",
            f"trace.tag.mlflow.artifactLocation = '{STORED}3/traces/t/artifacts'",
        ),
        (
            TRACE_METRICS_LOCATION,
            f'trace.tag.`mlflow.artifactLocation` = "{SHOWN}3/traces/t/artifacts"',
            f'trace.tag.`mlflow.artifactLocation` = "{STORED}3/traces/t/artifacts"',
        ),
        (
            TRACE_METRICS_LOCATION,
            f"`trace`.tag.\"mlflow.artifactLocation\" = '{STORED}3/traces/t/artifacts'",
            f"`trace`.tag.\"mlflow.artifactLocation\" = '{NOWHERE}3/traces/t/artifacts'",
        ),
    ],
)
def test_a_literal_naming_the_workspace_names_the_stores_workspace(field: Field, text: str, expected: str) -> None:
    assert renamed(field, text) == expected


@pytest.mark.parametrize(
    ("field", "text"),
    [
        # Another workspace's URI (a longer name starting with this one's too) is never renamed.
        (RUN_URI, "artifact_uri LIKE 'mlflow-artifacts:/workspaces/team-cx/%'"),
        (RUN_URI, "artifact_uri = 'mlflow-artifacts:/workspaces/research/3/r/artifacts'"),
        (RUN_URI, "artifact_uri = 'mlflow-artifacts:/workspaces/team-c'"),
        # Patterns that do not read the workspace's name.
        (RUN_URI, "artifact_uri LIKE '%/artifacts'"),
        (RUN_URI, "artifact_uri LIKE 'mlflow-artifacts:/workspaces/%'"),
        (RUN_URI, "artifact_uri LIKE '%-c/%'"),
        (RUN_URI, "artifact_uri LIKE '%'"),
        (RUN_URI, "artifact_uri LIKE 's3://bucket/%'"),
        (RUN_URI, "artifact_uri LIKE '%a\\_b%'"),
        # User data and other fields.
        (RUN_URI, f"params.uri = '{SHOWN}3' AND tags.artifact_uri = '{SHOWN}3' AND run_name = '{SHOWN}'"),
        (VERSION_SOURCE, f"tags.source_path = '{SHOWN}3'"),
        (TRACE_LOCATION, f"request_metadata.`mlflow.artifactLocation` = '{SHOWN}3'"),
        (TRACE_LOCATION, f"tags.note = '{SHOWN}3' AND trace.status = 'OK'"),
        (TRACE_METRICS_LOCATION, f"trace.metadata.mlflow.artifactLocation = '{SHOWN}3'"),
        (TRACE_METRICS_LOCATION, f"trace.tag.note = '{SHOWN}3'"),
        (TRACE_METRICS_LOCATION, "trace.tag.mlflow.artifactLocation = 'mlflow-artifacts:/workspaces/team-cx/3'"),
        (TRACE_METRICS_LOCATION, "trace.status = 'OK'"),
    ],
)
def test_other_literals_are_sent_as_they_came(field: Field, text: str) -> None:
    assert renamed(field, text) == text


@pytest.mark.parametrize(
    ("field", "text"),
    [
        (RUN_URI, "artifact_uri LIKE '%team-c%'"),
        (RUN_URI, "attributes.artifact_uri ILIKE '%TEAM%'"),
        (RUN_URI, "artifact_uri LIKE '%upstream-c/%'"),
        (RUN_URI, "artifact_uri LIKE 'mlflow-artifacts:/workspaces/t_am-c/%'"),
        (VERSION_SOURCE, "source_path LIKE '%/team-c/%'"),
        (TRACE_LOCATION, "tags.`mlflow.artifactLocation` RLIKE 'team-c'"),
        (TRACE_LOCATION, f"tags.`mlflow.artifactLocation` RLIKE '^{SHOWN}|x'"),
        (TRACE_LOCATION, f"tags.`mlflow.artifactLocation` RLIKE '^{SHOWN[:-1]}+'"),
    ],
)
def test_a_pattern_reading_the_name_without_starting_with_the_root_is_refused(field: Field, text: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        rename_filter(text, field, "team-c", "upstream-c")
    pattern = text.split(" ", 2)[2][1:-1]
    assert "upstream-c" not in str(refused.value).replace(repr(pattern), "")  # the store's name is not told


def test_a_filter_the_gateway_cannot_read_is_sent_as_it_came() -> None:
    """The store refuses it in its own words."""
    text = f"artifact_uri = '{SHOWN}3' AND ???"
    assert rename_filter(text, RUN_URI, "team-c", "upstream-c") == text
    with pytest.raises(MlflowException):
        SearchUtils.parse_search_filter(text)


def test_each_of_a_trace_metrics_querys_filters_is_renamed() -> None:
    """`/api/3.0/mlflow/traces/metrics` takes a list of filters of one comparison each."""
    spec = declared("POST /mlflow/traces/metrics", version=3)
    asked = {
        "experiment_ids": ["3"],
        "view_type": "TRACES",
        "metric_name": "trace_count",
        "aggregations": [{"aggregation_type": "COUNT"}],
        "filters": [
            "trace.status = 'OK'",
            f"trace.tag.`mlflow.artifactLocation` = '{SHOWN}3/traces/t/artifacts'",
            f"trace.tag.note = '{SHOWN}3'",
        ],
    }
    query, body = rename_request(spec, "", msgspec.json.encode(asked), "team-c", "upstream-c")
    assert query == ""
    assert body is not None
    assert msgspec.json.decode(body) == {
        **asked,
        "filters": [
            "trace.status = 'OK'",
            f"trace.tag.`mlflow.artifactLocation` = '{STORED}3/traces/t/artifacts'",
            f"trace.tag.note = '{SHOWN}3'",
        ],
    }
