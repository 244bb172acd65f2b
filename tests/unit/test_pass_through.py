"""A buffered answer leaves with the same head and body as Litestar's `ASGIResponse` would send; request ids are
fresh random bytes, in a forked worker too."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Request
from litestar.response.base import ASGIResponse

from gateway.federation.call import ForwardResult
from gateway.federation.routes import PassThrough, _response
from gateway.observability.access import RandomIds


async def sent_by(response: ASGIResponse) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        messages.append(dict(message))

    await response({"type": "http"}, receive, send)  # type: ignore[arg-type]
    return messages


@pytest.mark.parametrize(
    ("status", "headers", "media_type", "body"),
    [
        (200, {}, "application/json", b'{"run": {}}'),
        (404, {"ETag": '"x"', "cache-control": "no-store"}, "application/json", b'{"error_code": "NOT_FOUND"}'),
        (200, {"Content-Disposition": "attachment; filename=a.txt"}, "text/plain", b"text"),
        (200, {}, "text/plain; charset=utf-8", "é".encode()),
        (200, {"CONTENT-TYPE": "text/csv"}, "application/json", b"a,b"),
        (200, {"Content-Length": "3", "Retry-After": "5"}, "application/octet-stream", b"abc"),
        (503, {"Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"}, "application/json", b""),
    ],
)
async def test_a_pass_through_answer_sends_what_asgi_response_sends(
    status: int, headers: dict[str, str], media_type: str, body: bytes
) -> None:
    litestar = ASGIResponse(body=body, status_code=status, headers=dict(headers), media_type=media_type)
    ours = PassThrough(status, dict(headers), media_type, body)
    assert await sent_by(ours) == await sent_by(litestar)


def test_request_ids_are_fresh_random_hex_and_a_forked_child_draws_its_own() -> None:
    ids = RandomIds()
    drawn = [ids() for _ in range(1000)]  # several batches
    assert len(set(drawn)) == 1000
    assert all(len(each) == 32 and int(each, 16) >= 0 for each in drawn)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        os.write(write, ids())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 64)
    os.close(read)
    assert len(from_child) == 32 and from_child != ids()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def content_types(messages: list[dict[str, Any]]) -> list[bytes]:
    return [value for name, value in messages[0]["headers"] if name == b"content-type"]


@pytest.mark.parametrize(
    ("headers", "body", "stream", "sent"),
    [
        ({"Content-Type": "text/csv"}, b"a,b", False, [b"text/csv"]),
        ({}, b"", False, []),  # MLflow's answer to an artifact upload: nothing to type
        ({}, b"<html><script>alert(1)</script></html>", False, [b"application/octet-stream"]),
        ({}, b"<html><script>alert(1)</script></html>", True, [b"application/octet-stream"]),
        ({"Content-Type": "image/png"}, b"\x89PNG", True, [b"image/png"]),
    ],
)
async def test_an_answer_the_store_sent_untyped_goes_out_as_bytes_a_browser_saves_unless_it_is_empty(
    headers: dict[str, str], body: bytes, stream: bool, sent: list[bytes]
) -> None:
    """A store (or a proxy before it) answering a page without a Content-Type: sent on untyped, a browser would
    sniff it as HTML and run its scripts in the gateway's origin, where the web UI's session lives."""
    result = ForwardResult(200, dict(headers), "team-a", b"" if stream else body, chunks(body) if stream else None)
    request: Request[Any, Any, Any] = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    messages = await sent_by(_response(result, request))
    assert content_types(messages) == sent
    assert b"".join(m.get("body", b"") for m in messages) == body
