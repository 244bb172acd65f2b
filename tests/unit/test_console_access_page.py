"""The access pages' frame and their script agree, and stay within the console's CSP and escaping rules."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from gateway.console.access.pages import SCRIPTS, STYLES, page_frame
from gateway.console.assets import STATIC_ROOT, ConsoleAssets

SCRIPT = (STATIC_ROOT / "access.js").read_text()


class Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)
        self.ids.update(value for name, value in attrs if name == "id" and value)


def parsed(html: str) -> Ids:
    parser = Ids()
    parser.feed(html)
    return parser


def test_every_element_the_script_looks_up_is_in_every_frame() -> None:
    wanted = set(re.findall(r'getElementById\("([^"]+)"\)', SCRIPT))
    assert {"fg-access", "fg-revoke-dialog", "fg-revoke-confirm", "fg-access-content"} <= wanted
    for view in ("principals", "principal", "audit"):
        found = parsed(page_frame(view, principal="5")).ids
        assert wanted <= found, (view, wanted - found)


def test_the_frame_runs_no_inline_script_or_style_and_escapes_what_it_carries() -> None:
    page = parsed(page_frame("principal", principal="5' onclick='x"))
    assert "script" not in page.tags and "style" not in page.tags
    names = {name for name, _ in page.attributes}
    assert "style" not in names and not any(name.startswith("on") for name in names)
    assert ("data-principal", "5' onclick='x") in page.attributes  # one attribute's value, quotes and all


def test_the_script_puts_values_into_the_page_as_text_only() -> None:
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in SCRIPT, sink


def test_the_pages_files_ship_with_the_console() -> None:
    assets = ConsoleAssets()
    for name in (*SCRIPTS, *STYLES):
        assert assets.url(name).endswith(f"/{name}")
