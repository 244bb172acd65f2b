"""Adapters: what talks to the outside world (stores, vaults, policy storage), behind gateway ports."""
