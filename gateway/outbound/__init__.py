"""Destinations a workspace may make its store call: checked against the operator's allow-list before a call is sent.

A webhook makes the store post the registry's events to a URL; an AI-gateway provider key makes it send prompts
(with the key) to a provider. Whoever may configure them could otherwise point the store at addresses only the
store can reach. `DestinationCheck` (check.py) is a before-send check of the routes whose body names such a
destination (`Trait.DESTINATIONS`); the parse and the allow-list are gateway/core/destinations.py.
"""

from gateway.outbound.check import DestinationCheck

__all__ = ["DestinationCheck"]
