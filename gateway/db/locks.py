"""Every PostgreSQL advisory lock the gateway takes, in one place, so no two uses share a key space.

Locks keyed by two 32-bit integers are (class, key); the class is one of `LockClass`. The migration lock is
a single 64-bit key (PostgreSQL keeps the one-key and two-key spaces apart).
"""

from __future__ import annotations

from enum import IntEnum


class LockClass(IntEnum):
    RECONCILE = 7001  # one reconcile pass per workspace at a time, across replicas (key: workspace id)
    INDEX_SYNC = 7002  # one index sync pass per workspace at a time (key: workspace id)
    LINKS = 7003  # link and relink decisions, one at a time (key: 0; transaction-scoped)
    MIRROR_OBJECT = 7004  # one mirrored object at a time (key: hashtext of workspace/kind/id; transaction-scoped)


MIGRATION_LOCK = 7_351_001  # schema migrations, one replica at a time
