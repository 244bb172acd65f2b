"""Who an alert may e-mail: a user of this account, or an address the operator allows.

An alert's e-mail goes out from the gateway's own sender (`[smtp] from_address`) with a subject and body its owner
writes, so an alert that could name any address would let every signed-in user send mail of their choosing under
the operator's name, to anybody, as often as a schedule fires. As Databricks' alerts notify only users of the
account or destinations an admin configured, an e-mail subscription names either

- the e-mail address of an active user of the account (a user's name is their address, lower-cased:
  gateway/principals/names.py), or
- an address on `[alerts] allowed_recipients`: an exact address (`oncall@example.com`) or every address of a
  domain (`@alerts.example.com`; that domain only, not its subdomains), compared without regard to case.

An address is stored as it will be mailed (`mail_address`): one bare address, `local@domain`, its local part a
dot-atom of ASCII (RFC 5322: letters, digits and ``!#$%&'*+/=?^_`{|}~-``, dots between), its domain host names of
letters, digits and `-`, lower-cased (an internationalised one by its ASCII `xn--` labels). Anything else is
refused on save: a display name (`Ann <a@example.com>`), a comment (`a(b@example.com`, which Python's e-mail
parser read as the address `a`), a quoted local part, several addresses, a line break or other control character,
non-ASCII. So the address the rule below checks, the alert shows and the message's `To` and envelope name are
one. An address stored otherwise (written before the rule) is not mailed.

When the user an address names is deleted, the address leaves every alert (gateway/principals/service.py), even
one `allowed_recipients` also lists; when the user is renamed, it follows the user to the new name.

It is checked when the alert is saved (400 INVALID_PARAMETER_VALUE naming the address) and again before each
e-mail is sent: an address whose user has since been deleted or disabled, or that has left the allow-list, is not
mailed (the delivery is dropped, with the reason), whatever the alert says, so alerts saved before the rule are
held to it too. A user made through another replica moments ago is found (`LivePolicy.found`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import getaddresses

from gateway.authz.live import LivePolicy
from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.principals.names import canonical

MAX_ADDRESS = 254  # RFC 5321's path limit less its angle brackets
MAX_LOCAL = 64
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LOCAL_PART = re.compile(rf"{ATEXT}(\.{ATEXT})*\Z")
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


class BadAddress(ValueError):
    """Why a text is not one mailable address; never echoes more of it than the caller shows."""


def mail_address(text: str) -> str:
    """`text` as the one address it is, in the form stored and mailed (see above), or BadAddress."""
    address = text.strip(" \t")
    if not address or len(address) > MAX_ADDRESS * 2:
        raise BadAddress("an e-mail address has 1 to 254 characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c in "\x85\u2028\u2029" for c in address):
        raise BadAddress("an e-mail address holds no line break or other control character")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise BadAddress("an e-mail address is local-part@domain")
    if not local.isascii() or LOCAL_PART.match(local) is None or len(local) > MAX_LOCAL:
        raise BadAddress(
            "the part before '@' is ASCII letters, digits and !#$%&'*+/=?^_`{|}~- with single dots between, at most "
            "64 characters: no display name, comment, quotes, spaces or second address"
        )
    if not domain.isascii():
        # Python's own IDNA codec is IDNA 2003, which folds some letters onto others (`ß` onto `ss`: another
        # domain); the sender names its A-labels instead, which are what is mailed.
        raise BadAddress("give an internationalised domain in its ASCII form (its xn-- labels)")
    domain = domain.lower()
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(LABEL.match(label) for label in labels):
        raise BadAddress("the domain is host names of letters, digits and '-' with dots between")
    address = f"{local}@{domain}"
    if len(address) > MAX_ADDRESS:
        raise BadAddress("an e-mail address has 1 to 254 characters")
    # What the message's headers and smtplib will read it as: the very same address, alone.
    try:
        parsed = Address(addr_spec=address).addr_spec
    except (ValueError, HeaderParseError):
        parsed = None
    if parsed != address or getaddresses([address]) != [("", address)]:
        raise BadAddress("an e-mail address is one bare address")
    return address


def stored_as_mailed(address: str) -> bool:
    """Whether an address an alert holds is exactly what it would be saved as now."""
    try:
        return mail_address(address) == address
    except BadAddress:
        return False


class Recipients:
    """The rule above, over the policy in use and `alerts.allowed_recipients`."""

    def __init__(self, policy: LivePolicy, allowed: Iterable[str]) -> None:
        self._policy = policy
        entries = {entry.strip().lower() for entry in allowed if entry.strip()}
        self._domains = frozenset(entry[1:] for entry in entries if entry.startswith("@"))
        self._addresses = frozenset(entry for entry in entries if not entry.startswith("@"))

    def listed(self, address: str) -> bool:
        """On `alerts.allowed_recipients`: the address itself, or its domain."""
        folded = address.strip().lower()
        return folded in self._addresses or folded.rpartition("@")[2] in self._domains

    async def refusal(self, address: str) -> str | None:
        """None when `address` may be mailed now; otherwise why not, naming it."""
        if self.listed(address):
            return None

        def user(snapshot: PolicySnapshot) -> PrincipalInfo | None:
            info = snapshot.find("user", canonical("user", address))
            return info if info is not None and info.active else None

        if await self._policy.found(user) is not None:
            return None
        return (
            f"The e-mail address '{address[:254]}' is neither an active user of this account nor on the gateway's "
            "allowed recipients ([alerts] allowed_recipients); an alert e-mails only those."
        )
