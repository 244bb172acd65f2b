"""The strict destination parse (gateway/core/destinations.py) against the HTTP clients a store calls out with.

Differential: hypothesis writes URL-like strings from the pieces attackers use (user information, backslashes,
encoded dots and slashes, numeric hosts, IPv6, trailing dots, odd ports, non-ASCII, fragments). Whatever the
gateway accepts, urllib3 (what requests sends with), requests' own preparation, yarl (aiohttp), httpx and
Python's urlsplit must all read as the same scheme, host, port and path: the allow-list then decides on what
the store will actually reach. Then the attacks one by one, and the allow-list's matching.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import yarl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from gateway.core.destinations import AllowList, Destination, DestinationError, parse_allowed, parse_destination

SCHEMES = ["http", "https", "HTTP", "hTtPs", "ftp", "file", "javascript", "http+unix", ""]
SEPARATORS = ["://", ":/", ":\\\\", "//", ":", ":///", ":\\/"]
USERINFO = ["", "", "", "user@", "allowed.example.com@", "a:b@", "@", "evil.com\\@", "a%40b@", ":@"]
HOSTS = [
    "allowed.example.com",
    "ALLOWED.Example.Com.",
    "allowed.example.com..",
    "evil.com",
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.0.0.1",
    "0x7f000001",
    "0177.0.0.1",
    "1.2.3.256",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[0:0:0:0:0:0:0:1]",
    "[::1%25eth0]",
    "xn--bcher-kva.example",
    "bücher.example",
    "a_b.example",
    "allowed.example.com%2eevil.com",
    "allowed.example.com\\.evil.com",
    "localhost",
    "",
    "-a.com",
    "a-.com",
    "1a.com",
    "a.1com",
]
PORTS = ["", "", ":80", ":443", ":8080", ":0", ":65535", ":65536", ":080", ":", ":8o", ":443.evil.com", ":@evil.com"]
PATHS = [
    "",
    "/",
    "/v1",
    "/v1/chat",
    "/v1/../admin",
    "/v1/./x",
    "/%2e%2e/admin",
    "/a%2fb",
    "/a%5cb",
    "/a%25b",
    "/a%20b",
    "/@evil.com",
    "/a@b/c",
    "/a b",
    "\\admin",
    "/x#frag",
    "?q=1",
    "/x?y=1",
    "/x?y=a/b@c",
    "/%00",
    "/\t",
    "/~user/",
    "/a;b=c",
]
TEXT = st.text(alphabet="a./:@\\%#?[]0x-_é \t", max_size=6)


def _mostly(benign: list[str], hostile: list[str]) -> st.SearchStrategy[str]:
    """A piece that is usually well-formed, so that whole strings pass the parse often enough to compare."""
    return st.one_of(
        st.sampled_from(benign), st.sampled_from(benign), st.sampled_from(benign), st.sampled_from(hostile)
    )


BENIGN_HOSTS = ["allowed.example.com", "ALLOWED.Example.Com.", "127.0.0.1", "[::1]", "[0:0:0:0:0:0:0:1]",
                "xn--bcher-kva.example", "localhost", "a-b.c0", "x.y.z.example"]  # fmt: skip
BENIGN_PATHS = ["", "/", "/v1", "/v1/chat", "/a@b/c", "/~user/", "/a;b=c", "/a%20b", "/x?y=1", "/x?y=a/b@c", "?q=1"]


@st.composite
def url_like(draw: st.DrawFn) -> str:
    pieces = [
        draw(_mostly(["http", "https", "HTTP", "hTtPs"], SCHEMES)),
        draw(_mostly(["://"], SEPARATORS)),
        draw(_mostly([""], USERINFO)),
        draw(_mostly(BENIGN_HOSTS, HOSTS) | TEXT),
        draw(_mostly(["", ":80", ":443", ":8080", ":65535"], PORTS)),
        draw(_mostly(BENIGN_PATHS, PATHS) | TEXT.map(lambda t: "/" + t)),
    ]
    if draw(st.booleans()):
        pieces.append(draw(st.sampled_from(PATHS)))
    return "".join(pieces)


def _host(host: str | None) -> str:
    """A host as the clients give it, normalised the gateway's way: lower case, no brackets or trailing dot."""
    assert host, "a client read no host"
    host = host.lower().strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else {"http": 80, "https": 443}[scheme]


def _read_by_clients(text: str) -> dict[str, tuple[str, str, int, str]]:
    """(scheme, host, port, path) of `text` as each HTTP client reads it."""
    read: dict[str, tuple[str, str, int, str]] = {}
    u = parse_url(text)
    assert u.scheme is not None
    read["urllib3"] = (u.scheme.lower(), _host(u.host), _port(u.scheme.lower(), u.port), u.path or "")
    prepared = requests.Request("POST", text).prepare().url
    assert prepared is not None
    p = parse_url(prepared)
    assert p.scheme is not None
    read["requests"] = (p.scheme, _host(p.host), _port(p.scheme, p.port), p.path or "")
    y = yarl.URL(text)
    read["yarl"] = (y.scheme, _host(y.raw_host), _port(y.scheme, y.explicit_port), y.raw_path if y.raw_path else "")
    h = httpx.URL(text)
    # raw_host: what goes on the wire (`host` shows an xn-- name decoded)
    read["httpx"] = (h.scheme, _host(h.raw_host.decode()), _port(h.scheme, h.port), h.raw_path.decode().split("?")[0])
    s = urlsplit(text)
    read["urlsplit"] = (s.scheme.lower(), _host(s.hostname), _port(s.scheme.lower(), s.port), s.path)
    return read


def _escapes_upper(path: str) -> str:
    """%0a and %0A are the same byte: urllib3 and yarl write the upper case, httpx and urlsplit keep what came."""
    return re.sub(r"%[0-9A-Fa-f]{2}", lambda m: m[0].upper(), path)


def _same(ours: Destination, theirs: tuple[str, str, int, str], client: str) -> None:
    scheme, host, port, path = theirs
    assert (scheme, host, port) == (ours.scheme, ours.host, ours.port), client
    assert _escapes_upper(path or "/") == (ours.path or "/"), client  # some clients write an empty path as "/"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=url_like())
@example("http://allowed.example.com./v1")
@example("https://[::1]:8443/v1/chat?x=a@b")
@example("http://127.0.0.1:9000/allowed/hook")
@example("http://allowed.example.com/%0a")
def test_what_the_gateway_accepts_every_client_reads_alike(text: str) -> None:
    try:
        ours = parse_destination(text)
    except DestinationError:
        return
    for client, theirs in _read_by_clients(text).items():
        _same(ours, theirs, client)


ATTACKS = [
    "http://allowed.example.com@evil.com/",  # user information: the host is evil.com
    "http://allowed.example.com:80@evil.com/",
    "http://evil.com\\@allowed.example.com/",  # a backslash: WHATWG reads evil.com, urllib3 allowed.example.com
    "http://allowed.example.com\\.evil.com/",
    "http://evil.com#@allowed.example.com/",
    "http://allowed.example.com%40evil.com/",
    "http://allowed.example.com%2eevil.com/",
    "http://2130706433/",  # decimal, octal, hexadecimal and short spellings of 127.0.0.1
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1%25eth0]/",
    "http://bücher.example/",  # non-ASCII: IDNA would rewrite it
    "http://\uff41llowed.example.com/",  # a fullwidth letter NFKC-normalises to ASCII
    "http://allowed.example.com /",
    "http://allowed.example.com:/",
    "http://allowed.example.com:0/",
    "http://allowed.example.com:65536/",
    "http://allowed.example.com:0080/",
    "http://allowed.example.com/v1/../admin",
    "http://allowed.example.com/v1/%2e%2e/admin",
    "http://allowed.example.com/v1%2f..%2fadmin",
    "http://allowed.example.com/v1#/../admin",
    "http://allowed.example.com//@evil.com/",
    "http://allowed.example.com/allowed//x",
    "gopher://allowed.example.com/",
    "file:///etc/passwd",
    "//allowed.example.com/",
    "http:/allowed.example.com/",
    "http:\\\\allowed.example.com\\",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_each_attack_is_refused(text: str) -> None:
    with pytest.raises(DestinationError):
        parse_destination(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HTTPS://Allowed.Example.COM./v1", "https://allowed.example.com:443/v1"),
        ("http://127.0.0.1:9000/allowed/hook?x=1", "http://127.0.0.1:9000/allowed/hook"),
        ("https://[0:0:0:0:0:0:0:1]/", "https://[::1]:443/"),
        ("https://xn--bcher-kva.example/a@b/c", "https://xn--bcher-kva.example:443/a@b/c"),
        ("http://evil.com?@allowed.example.com/", "http://evil.com:80"),  # the query holds the '@': host evil.com
        ("http://127.0.0.1:9000/allowed/", "http://127.0.0.1:9000/allowed/"),
        ("http://127.0.0.1:9000/allowed/a%0ab%c3%a9", "http://127.0.0.1:9000/allowed/a%0Ab%C3%A9"),
    ],
)
def test_destinations_are_normalised(text: str, expected: str) -> None:
    assert str(parse_destination(text)) == expected


ALLOWED = AllowList(["http://127.0.0.1:9000/allowed/", "api.openai.com", "https://hooks.example.com:8443"])


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("http://127.0.0.1:9000/allowed", True),
        ("http://127.0.0.1:9000/allowed/v1/chat/completions", True),
        ("http://127.0.0.1:9000/allowedx", False),  # a prefix ends at a segment
        ("http://127.0.0.1:9000/", False),
        ("http://127.0.0.1:9001/allowed", False),
        ("https://127.0.0.1:9000/allowed", False),
        ("http://localhost:9000/allowed", False),  # names are not resolved: another name is another host
        ("https://api.openai.com/v1", True),  # a bare host: https, its default port, any path
        ("https://API.OpenAI.com.:443/v1", True),
        ("http://api.openai.com/v1", False),
        ("https://api.openai.com:8443/v1", False),
        ("https://hooks.example.com:8443/any/where", True),
        ("https://hooks.example.com/any/where", False),
    ],
)
def test_the_allow_list(text: str, allowed: bool) -> None:
    assert ALLOWED.allows(parse_destination(text)) is allowed


def test_an_empty_allow_list_allows_nothing() -> None:
    assert not AllowList()
    assert not AllowList().allows(parse_destination("https://api.openai.com/v1"))


@pytest.mark.parametrize("entry", ["http://a.com/x?y=1", "http://a.com@b.com", "ftp://a.com", "a.com:0", "a.com:"])
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(DestinationError):
        parse_allowed(entry)


def test_the_clients_really_disagree_on_what_the_gateway_refuses() -> None:
    """The reason for the strictness: on these, two clients name different hosts (or one refuses)."""

    def hosts(text: str) -> set[Any]:
        found: set[Any] = set()
        for read in (lambda: parse_url(text).host, lambda: yarl.URL(text).host, lambda: httpx.URL(text).host):
            try:
                found.add(read())
            except Exception as exc:
                found.add(type(exc).__name__)
        found.add(urlsplit(text).hostname)
        return found

    assert len(hosts("http://evil.com\\@allowed.example.com/")) > 1
    assert len(hosts("http://allowed.example.com\\.evil.com/")) > 1
