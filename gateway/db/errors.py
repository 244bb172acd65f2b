"""Whether an exception means the gateway's own database could not be reached: a 503 to the caller, not a bug.

SQLAlchemy reports a refused or lost connection in several shapes: `OperationalError` or `InterfaceError`,
but also a plain `DBAPIError` wrapping the driver's error (asyncpg's `ConnectionRefusedError` at connect,
its `ConnectionDoesNotExistError` mid-statement, the server's "shutting down" answers), and the asyncpg
pools raise the driver's errors unwrapped. A database that accepts connections but does not answer (paused,
stalled) shows as a timeout: asyncpg's `TimeoutError` of a connect, a ping or a bounded statement, or SQLAlchemy's
pool `TimeoutError` when no connection came free within `database.timeout_seconds`. `database_unreachable` looks
through all of them; anything else (a constraint, a syntax error) is not unreachability and stays a 500.
"""

from __future__ import annotations

import traceback

import asyncpg
from sqlalchemy import exc as sa_exc

# The server refused or dropped the connection, is starting or stopping, or has no connection left.
_SERVER_AWAY = (
    asyncpg.PostgresConnectionError,  # 08xxx: connection failure, rejection, does not exist
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: terminated by an administrator (a fast shutdown)
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) says the database could not be reached, rather than refused a statement."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.TimeoutError):  # no pooled connection came free in time
            return True
        if isinstance(current, sa_exc.DBAPIError):
            if current.connection_invalidated or isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError):
                return True
            current = current.orig if isinstance(current.orig, BaseException) else current.__cause__
            continue
        if isinstance(current, _SERVER_AWAY):
            return True
        if isinstance(current, asyncpg.InterfaceError) and "connection is closed" in str(current):
            return True
        if isinstance(current, OSError) and _from_the_driver(current):  # refused, reset, timed out (TimeoutError)
            return True
        current = current.__cause__ or current.__context__
    return False


def _from_the_driver(exc: BaseException) -> bool:
    """Raised through asyncpg or SQLAlchemy: an OSError of the database connection, not of a store or a vault."""
    return any(
        "/asyncpg/" in frame.filename or "/sqlalchemy/" in frame.filename
        for frame in traceback.extract_tb(exc.__traceback__)
    )


def data_refused(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) is PostgreSQL or asyncpg refusing a value as data (SQLSTATE class 22: a NUL
    character in text, a number out of a column's range): a value the client sent that no check caught before."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.DataError | sa_exc.DataError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and isinstance(current.orig, BaseException):
            current = current.orig
            continue
        current = current.__cause__ or current.__context__
    return False
