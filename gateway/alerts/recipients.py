"""Who an alert may e-mail: a user of this account, or an address the operator allows.

An alert's e-mail goes out from the gateway's own sender (`[smtp] from_address`) with a subject and body its owner
writes, so an alert that could name any address would let every signed-in user send mail of their choosing under
the operator's name, to anybody, as often as a schedule fires. As Databricks' alerts notify only users of the
account or destinations an admin configured, an e-mail subscription names either

- the e-mail address of an active user of the account (a user's name is their address, lower-cased:
  gateway/principals/names.py), or
- an address on `[alerts] allowed_recipients`: an exact address (`oncall@example.com`) or every address of a
  domain (`@alerts.example.com`; that domain only, not its subdomains), compared without regard to case.

It is checked when the alert is saved (400 INVALID_PARAMETER_VALUE naming the address) and again before each
e-mail is sent: an address whose user has since been deleted or disabled, or that has left the allow-list, is not
mailed (the delivery is dropped, with the reason), whatever the alert says, so alerts saved before the rule are
held to it too. A user made through another replica moments ago is found (`LivePolicy.found`).
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.authz.live import LivePolicy
from gateway.authz.policy import PolicySnapshot, PrincipalInfo
from gateway.principals.names import canonical


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
