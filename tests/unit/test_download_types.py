"""The type a download goes out with: never one a page of the gateway's origin would run or apply (service.py)."""

from __future__ import annotations

import pytest

from gateway.core.downloads import download_headers, inert_content_type


@pytest.mark.parametrize(
    ("sent", "served"),
    [
        ("text/javascript", "text/plain"),
        ("text/javascript; charset=utf-8", "text/plain; charset=utf-8"),
        ("Application/X-JavaScript", "text/plain"),
        ("text/css;charset=utf-8", "text/plain;charset=utf-8"),
        (" text/ecmascript ", "text/plain"),
        ("text/javascript1.5", "text/plain"),
        # A browser takes the last type of a list: any runnable one makes the whole header plain text.
        ("text/plain, text/javascript", "text/plain"),
        ("text/javascript, text/plain", "text/plain"),
    ],
)
def test_a_type_a_page_would_run_or_apply_goes_out_as_plain_text(sent: str, served: str) -> None:
    assert inert_content_type(sent) == served
    headers = download_headers({"Content-Type": sent, "Content-Disposition": "attachment; filename=x"})
    assert headers["Content-Type"] == served and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "sent",
    ["text/plain; charset=utf-8", "image/png", "text/html", "image/svg+xml", "application/json", "text/csv", ""],
)
def test_any_other_type_is_the_stores(sent: str) -> None:
    assert inert_content_type(sent) == sent
