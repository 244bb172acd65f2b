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
