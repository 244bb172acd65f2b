"""Which failures of the database are unreachability (503 to the caller) and which are not (a 500 and a log line).

Real failures, as the driver and SQLAlchemy raise them: a connection refused by a port nobody listens on,
and a statement the real test database refuses.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from gateway.db.engine import make_engine
from gateway.db.errors import database_unreachable
from gateway.devstack import free_port


async def test_a_refused_connection_is_unreachability_in_the_drivers_and_in_sqlalchemys_shape() -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    with pytest.raises(OSError) as raw:
        await asyncpg.connect(url, timeout=5)
    assert database_unreachable(raw.value)

    engine = make_engine(url)
    try:
        # At connect SQLAlchemy lets the driver's OSError through; on a pooled connection it wraps it in DBAPIError.
        with pytest.raises((sa_exc.DBAPIError, OSError)) as wrapped:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert database_unreachable(wrapped.value)
    finally:
        await engine.dispose()


async def test_a_refused_statements_message_leaves_its_bound_values_out(database_url: str) -> None:
    """The background loops log the errors they survive with their messages: a value bound to the statement (a
    webhook URL carrying a token, a sealed secret, a query's parameter) is not in them; what failed is."""
    url = f"https://hooks.example.com/alerts?token=tok-{uuid.uuid4().hex}"
    engine = make_engine(database_url)
    try:
        with pytest.raises(sa_exc.DBAPIError) as refused:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT length(:url) / 0"), {"url": url})
        message = str(refused.value)
        assert "division by zero" in message and "SELECT length($1) / 0" in message
        assert "tok-" not in message and "hooks.example.com" not in message
    finally:
        await engine.dispose()


async def test_a_refused_statement_or_an_oserror_of_something_else_is_not(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(sa_exc.DBAPIError) as refused:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1 / 0"))
        assert not database_unreachable(refused.value)
    finally:
        await engine.dispose()
    with pytest.raises(OSError) as elsewhere:
        open("/nonexistent/fedgate/file")  # noqa: SIM115
    assert not database_unreachable(elsewhere.value)
