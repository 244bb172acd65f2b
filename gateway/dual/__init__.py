"""Dual tracking: each accepted write of a dual workspace mirrored to the account's central store.

outbox (durable queue and relay), mirror (replay with id translation), reconcile (periodic repair),
failover (reads from the central copy while a workspace's store is down).
"""
