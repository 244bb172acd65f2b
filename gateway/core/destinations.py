"""Where a store may be told to send requests: a strict URL parse and the operator's allow-list.

Some calls make the store call out later: a webhook's URL, an AI-gateway provider key's `api_base`, a
provider's own API. The gateway checks such a destination before the call is sent (gateway/outbound/) against
`[outbound] allowed_destinations`, and refuses everything when that list is empty (the default).

The check is only as good as the agreement between this parse and the HTTP clients the store will use
(requests for webhooks, aiohttp/yarl and httpx for providers). So the parse is strict rather than forgiving:
it accepts only

    http(s)://HOST[:PORT][/PATH][?QUERY]

in printable ASCII, where HOST is a DNS name of letters, digits and hyphens whose last label starts with a
letter (so no decimal, octal or hexadecimal spelling of an address, `2130706433`, `0x7f.1`, `127.1`, passes for
a name), a canonical dotted IPv4 address, or a bracketed IPv6 address; PORT is 1 to 65535 without leading
zeros; and nothing else is in the authority: no user information (`http://allowed@evil`), no backslash, no
percent-encoding, no empty port. The path may not contain `.`, `..` or empty segments, nor encode `/`, `\\`,
`.` or `%` (`%2f`, `%5c`, `%2e`, `%25`); a fragment is refused. Non-ASCII is refused, so an internationalised name is
written in its `xn--` form. The scheme and host are compared case-insensitively, a trailing dot of the host is
dropped (`api.example.com.` is `api.example.com`) and the port defaults to the scheme's.

tests/unit/test_destinations.py holds this parse to urllib3's, requests', yarl's and httpx's on generated
strings: whatever it accepts, each of them reads as the same scheme, host, port and path.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_LENGTH = 2048

_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?\Z"
)
_AUTHORITY = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[1-9][0-9]{0,4}))?\Z")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")
# Path and query: RFC 3986 pchar (unreserved, sub-delims, ':', '@') plus '/', '?' in the query, and
# percent-encodings other than those that decode to a separator, a dot or another percent sign.
_PATH_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*\Z")
_QUERY_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*\Z")
_ENCODED_SEPARATORS = re.compile(r"%(?:2[eEfF]|5[cC]|25)")
_PERCENT_ENCODING = re.compile(r"%[0-9A-Fa-f]{2}")


class DestinationError(ValueError):
    """The text is not a destination this gateway can check: the reason is the message."""


@dataclass(frozen=True, slots=True)
class Destination:
    scheme: str  # "http" or "https"
    host: str  # lower case, no trailing dot; an IPv6 address without brackets, compressed
    port: int
    path: str  # "" or starting with "/", no dot segments, percent-encodings in upper case

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.origin}{self.path}"


def parse_destination(text: str) -> Destination:
    """The destination `text` names; DestinationError for anything outside the strict form above."""
    if not isinstance(text, str):
        raise DestinationError("a destination must be a string")
    if not text or len(text) > MAX_LENGTH:
        raise DestinationError(f"a destination must be 1 to {MAX_LENGTH} characters long")
    if any(not ("!" <= c <= "~") for c in text):
        raise DestinationError("a destination may hold printable ASCII only: no spaces, controls or other scripts")
    if "\\" in text:
        raise DestinationError("a destination may not contain a backslash")
    match = _URL.match(text)
    if match is None:
        raise DestinationError("a destination is an http(s) URL without a fragment: scheme://host[:port][/path]")
    scheme = match["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise DestinationError(f"only http and https destinations are allowed, not {scheme!r}")
    authority = _AUTHORITY.match(match["authority"])
    if authority is None:
        raise DestinationError(
            "the host of a destination is a DNS name, an IPv4 address or a bracketed IPv6 address, with an "
            "optional port: no user information, percent-encoding or empty port"
        )
    host = _host(authority["host"])
    port = int(authority["port"]) if authority["port"] else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise DestinationError(f"port {port} is not a TCP port")
    path = match["path"] or ""
    query = match["query"]
    if not _PATH_CHARS.match(path) or (query is not None and not _QUERY_CHARS.match(query)):
        raise DestinationError("the path or query of a destination holds a character it may not")
    if _ENCODED_SEPARATORS.search(path):
        raise DestinationError("the path of a destination may not encode '/', '\\', '.' or '%'")
    segments = path.split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        raise DestinationError("the path of a destination may not contain '.' or '..' segments")
    if "" in segments[:-1]:
        raise DestinationError("the path of a destination may not contain empty segments ('//')")
    # %0a and %0A are the same byte (RFC 3986 6.2.2.1): one spelling, so that prefixes match either
    return Destination(scheme, host, port, _PERCENT_ENCODING.sub(lambda m: m[0].upper(), path))


def _host(written: str) -> str:
    if written.startswith("["):
        try:
            address = ipaddress.IPv6Address(written[1:-1])
        except ValueError:
            raise DestinationError(f"{written} is not an IPv6 address") from None
        if address.ipv4_mapped is not None:
            raise DestinationError(f"{written}: write an IPv4-mapped address as the IPv4 address it maps")
        return address.compressed
    host = written.lower()
    if host.endswith("."):
        host = host[:-1]
    if _DOTTED_QUAD.match(host):
        try:
            return str(ipaddress.IPv4Address(host))  # refuses octets above 255 and leading zeros
        except ValueError:
            raise DestinationError(f"{written} is not a canonical IPv4 address") from None
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise DestinationError(f"{written!r} is not a DNS name of letters, digits and hyphens")
    if not labels[-1][0].isalpha():
        # `2130706433`, `0x7f000001`, `127.1`: spellings of an address that resolvers read as numbers.
        raise DestinationError(f"{written!r}: the last label of a host name must start with a letter")
    return host


@dataclass(frozen=True, slots=True)
class AllowedPrefix:
    """One entry of the allow-list: an origin and a path prefix ("" allows every path)."""

    destination: Destination

    def allows(self, destination: Destination) -> bool:
        mine = self.destination
        if (destination.scheme, destination.host, destination.port) != (mine.scheme, mine.host, mine.port):
            return False
        prefix = mine.path.rstrip("/")
        return not prefix or destination.path == prefix or destination.path.startswith(prefix + "/")


def parse_allowed(entry: str) -> AllowedPrefix:
    """An allow-list entry: a URL prefix `scheme://host[:port][/path]`, or a bare `host[:port]` meaning
    `https://host[:port]` with any path. DestinationError when it is neither, or carries a query."""
    text = entry if "://" in entry else f"https://{entry}"
    destination = parse_destination(text)
    if "?" in text:
        raise DestinationError("an allow-list entry has no query")
    return AllowedPrefix(destination)


class AllowList:
    """The operator's allowed destinations (`[outbound] allowed_destinations`); empty allows nothing."""

    def __init__(self, entries: list[str] | tuple[str, ...] = ()) -> None:
        self.entries = tuple(parse_allowed(entry) for entry in entries)

    def allows(self, destination: Destination) -> bool:
        return any(entry.allows(destination) for entry in self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)
