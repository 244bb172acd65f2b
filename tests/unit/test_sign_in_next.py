"""Where a browser goes after sign-in (`next`): a path on the gateway, with a link's `#` part, never another
site, and always something a Location header can carry."""

from __future__ import annotations

import pytest

from gateway.authn.browser import local_path


@pytest.mark.parametrize(
    "link",
    [
        "/",
        "/#/experiments/1",
        "/#/experiments/1/runs/0123456789abcdef0123456789abcdef/model-metrics?workspace=team-a",
        '/#/compare-runs?runs=["a","b"]&experiments=["1"]&workspace=team-a',
        "/#//evil.example",  # a fragment of the gateway's own page, not a host
    ],
)
def test_a_link_into_the_ui_is_kept(link: str) -> None:
    assert local_path(link) == link


@pytest.mark.parametrize(
    "target",
    [
        "",
        None,
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        " /#/experiments/1",
        "/#/x\r\nLocation: https://evil.example",
        "/" + "a" * 2000,
    ],
)
def test_anything_else_goes_to_the_start_page(target: str | None) -> None:
    assert local_path(target) == "/"


def test_characters_beyond_ascii_are_percent_encoded_for_the_location_header() -> None:
    kept = local_path("/#/models/modèle-✓?workspace=équipe")
    assert kept == "/#/models/mod%C3%A8le-%E2%9C%93?workspace=%C3%A9quipe"
    kept.encode("latin-1")  # what a header value must be
