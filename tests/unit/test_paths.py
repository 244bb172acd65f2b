"""Artifact path canonicalisation and workspace prefixes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.utils.uri import validate_path_is_safe

from gateway.core.errors import InvalidParameter
from gateway.core.paths import (
    canonical_artifact_path,
    refuse_bare_workspaces,
    refuse_dotted_folder,
    rewrite_artifact_workspace,
)


@pytest.mark.parametrize(
    "path",
    ["1/abc/artifacts/model/MLmodel", "workspaces/team-a/1/r/artifacts/a b.txt", "0/models/m-1/artifacts/x"],
)
def test_plain_relative_paths_pass(path: str) -> None:
    assert canonical_artifact_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "a/../b",
        "a/./b",
        ".",
        "a//b",
        "/etc/passwd",
        "a\\..\\b",
        "a;b",
        "%2e%2e/x",
        "a/%252e%252e/b",
        "a/%2Fb",
        "C:/windows",
        "s3://bucket/key",
        "a\x00b",
        "",
    ],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidParameter):
        canonical_artifact_path(path)


def test_empty_listing_path_is_the_root() -> None:
    assert canonical_artifact_path("", allow_empty=True) == ""


def test_workspace_prefix_must_match_and_is_renamed() -> None:
    assert rewrite_artifact_workspace("1/r/artifacts/f", "team-a", "up") == "1/r/artifacts/f"
    assert rewrite_artifact_workspace("workspaces/team-a/1/f", "team-a", None) == "workspaces/team-a/1/f"
    assert rewrite_artifact_workspace("workspaces/team-a/1/f", "team-a", "up") == "workspaces/up/1/f"
    with pytest.raises(InvalidParameter, match="does not match"):
        rewrite_artifact_workspace("workspaces/team-b/1/f", "team-a", "team-a")


@pytest.mark.parametrize("path", ["workspaces", "Workspaces", "WORKSPACES"])
def test_a_bare_workspaces_folder_is_refused(path: str) -> None:
    """The `default` workspace of a store with workspaces serves it as the folder of every other workspace."""
    with pytest.raises(InvalidParameter, match="must include a workspace name"):
        refuse_bare_workspaces(path)


@pytest.mark.parametrize("path", ["", "1", "workspaces/team-a", "workspaces/team-a/1/x", "1/workspaces", "workspacesx"])
def test_paths_naming_a_workspace_or_none_pass(path: str) -> None:
    refuse_bare_workspaces(path)


@pytest.mark.parametrize(
    "path", ["workspaces?", "Workspaces#", "?", "#", "file:", "FILE:", "file:?x", "1/run/artifacts/x?", "Ab:x"]
)
def test_a_path_the_store_reads_as_another_is_refused(path: str) -> None:
    """MLflow reads an artifact path as a URL: `workspaces?` as `workspaces`, `?`, `#` and `file:` as the root."""
    with pytest.raises(InvalidParameter, match="The store would read it as"):
        canonical_artifact_path(path)


@pytest.mark.parametrize("path", ["x?y", "?x", "a#b", "model:v1/x", "1:2", "... ", "100%", "file", "é/ü"])
def test_a_path_the_store_reads_as_given_passes(path: str) -> None:
    assert canonical_artifact_path(path) == path


_path_text = st.sampled_from(["workspaces", "file", "FILE", "1", "a", ":", "?", "#", "%", ".", " ", "é", "/"])


@settings(max_examples=2000)
@given(st.lists(_path_text, min_size=1, max_size=6).map("".join))
def test_the_store_acts_on_exactly_the_path_the_guard_checked(path: str) -> None:
    """Differential against MLflow's own reading of every artifact route's path (`validate_path_is_safe`): a path
    the gateway lets through is one the store refuses, or reads as exactly that path."""
    try:
        checked = canonical_artifact_path(path)
    except InvalidParameter:
        return
    try:
        read = validate_path_is_safe(checked)
    except MlflowException:
        return
    assert read == checked


@pytest.mark.parametrize("path", ["..x/f", "... /f", ".. /a/f", "..\u00a0/f"])
def test_a_folder_starting_with_two_dots_is_refused_in_the_stores_words(path: str) -> None:
    with pytest.raises(InvalidParameter, match="must not resolve to other names"):
        refuse_dotted_folder(canonical_artifact_path(path))


@pytest.mark.parametrize("path", ["..x", "1/..x/f", "workspaces/team-a/..x/f", "x../f", ".x/f"])
def test_other_dotted_names_pass(path: str) -> None:
    refuse_dotted_folder(canonical_artifact_path(path))
