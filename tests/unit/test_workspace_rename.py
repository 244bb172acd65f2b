"""Renaming a workspace between client and store touches artifact URIs and workspace fields only."""

from __future__ import annotations

import msgspec

from gateway.federation.service import _rewrite_json


def test_artifact_uris_and_workspace_fields_are_renamed() -> None:
    body = msgspec.json.encode(
        {
            "experiment": {
                "experiment_id": "3",
                "artifact_location": "mlflow-artifacts:/workspaces/up/3",
                "workspace": "up",
            },
            "runs": [{"info": {"artifact_uri": "mlflow-artifacts:/workspaces/up/3/r/artifacts"}}],
        }
    )
    renamed = msgspec.json.decode(_rewrite_json(body, "up", "team-c"))
    assert renamed["experiment"]["artifact_location"] == "mlflow-artifacts:/workspaces/team-c/3"
    assert renamed["experiment"]["workspace"] == "team-c"
    assert renamed["runs"][0]["info"]["artifact_uri"] == "mlflow-artifacts:/workspaces/team-c/3/r/artifacts"


def test_the_graphql_answers_camel_case_artifact_fields_are_renamed() -> None:
    """GraphQL (the web UI's run, runs and experiment pages) spells a run's and an experiment's URI in camelCase."""
    body = msgspec.json.encode(
        {
            "data": {
                "mlflowGetRun": {
                    "run": {
                        "info": {"artifactUri": "mlflow-artifacts:/workspaces/up/3/r/artifacts"},
                        "experiment": {"artifactLocation": "mlflow-artifacts:/workspaces/up/3"},
                        "modelVersions": [{"source": "mlflow-artifacts:/workspaces/up/3/r/artifacts/m"}],
                        "data": {"params": [{"key": "artifactUri", "value": "mlflow-artifacts:/workspaces/up/3"}]},
                    }
                }
            }
        }
    )
    run = msgspec.json.decode(_rewrite_json(body, "up", "team-c"))["data"]["mlflowGetRun"]["run"]
    assert run["info"]["artifactUri"] == "mlflow-artifacts:/workspaces/team-c/3/r/artifacts"
    assert run["experiment"]["artifactLocation"] == "mlflow-artifacts:/workspaces/team-c/3"
    assert run["modelVersions"][0]["source"] == "mlflow-artifacts:/workspaces/team-c/3/r/artifacts/m"
    assert run["data"]["params"] == [{"key": "artifactUri", "value": "mlflow-artifacts:/workspaces/up/3"}]


def test_user_data_is_never_rewritten() -> None:
    body = msgspec.json.encode(
        {
            "run": {
                "data": {
                    "params": [{"key": "uri", "value": "mlflow-artifacts:/workspaces/up/3"}],
                    "tags": [{"key": "workspace", "value": "up"}],
                }
            }
        }
    )
    assert msgspec.json.decode(_rewrite_json(body, "up", "team-c")) == msgspec.json.decode(body)


def test_non_json_is_left_alone() -> None:
    assert _rewrite_json(b"not json", "up", "team-c") == b"not json"


def test_a_traces_artifact_location_tag_is_renamed() -> None:
    """The store's tag of where a trace's data lives, in a v3 trace info's tags map (get, start, search)."""
    location = "mlflow-artifacts:/workspaces/up/3/traces/tr-1/artifacts"
    body = msgspec.json.encode(
        {
            "traces": [
                {
                    "trace_id": "tr-1",
                    "tags": {"mlflow.artifactLocation": location, "mlflow.traceName": "workspaces/up/x"},
                    "trace_metadata": {"note": location},
                }
            ]
        }
    )
    renamed = msgspec.json.decode(_rewrite_json(body, "up", "team-c"))["traces"][0]
    assert renamed["tags"] == {
        "mlflow.artifactLocation": "mlflow-artifacts:/workspaces/team-c/3/traces/tr-1/artifacts",
        "mlflow.traceName": "workspaces/up/x",
    }
    assert renamed["trace_metadata"] == {"note": location}


def test_a_v2_trace_infos_artifact_location_tag_is_renamed() -> None:
    """A v2 trace info (start, end, get info, search) holds its tags as a key/value list; only the store's tag of
    where the trace's data lives is renamed, and a run's tag of that key (user data) is not."""
    location = "mlflow-artifacts:/workspaces/up/3/traces/tr-1/artifacts"
    info = {
        "request_id": "tr-1",
        "experiment_id": "3",
        "tags": [{"key": "mlflow.artifactLocation", "value": location}, {"key": "note", "value": location}],
        "request_metadata": [{"key": "mlflow.artifactLocation", "value": location}],
    }
    body = msgspec.json.encode(
        {
            "trace_info": info,
            "traces": [info],
            "run": {"data": {"tags": [{"key": "mlflow.artifactLocation", "value": location}]}},
        }
    )
    renamed = msgspec.json.decode(_rewrite_json(body, "up", "team-c"))
    for found in (renamed["trace_info"], renamed["traces"][0]):
        assert found["tags"] == [
            {"key": "mlflow.artifactLocation", "value": "mlflow-artifacts:/workspaces/team-c/3/traces/tr-1/artifacts"},
            {"key": "note", "value": location},
        ]
        assert found["request_metadata"] == info["request_metadata"]
    assert renamed["run"] == {"data": {"tags": [{"key": "mlflow.artifactLocation", "value": location}]}}
