"""PostgreSQL connections in the pool: one that sat idle is pinged before it is handed out, so a
connection the server dropped meanwhile (a restart, a proxy's idle timeout) is replaced and the
statement works; one used a moment ago is handed out as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from slackrouter.adapters.db import database
from slackrouter.adapters.db.database import create_engine
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres

DSN = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_engine(POSTGRES_URL)
    try:
        yield engine
    finally:
        await engine.dispose()


async def backend(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def terminate(pid: int) -> None:
    """What a server restart does to a connection."""
    admin = await asyncpg.connect(DSN)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_an_idle_connection_the_server_dropped_is_replaced(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = await backend(engine)
    await terminate(dropped)
    monkeypatch.setattr(database, "IDLE_BEFORE_PING", 0.0)  # it has been idle long enough
    assert await backend(engine) != dropped


async def test_a_connection_used_a_moment_ago_is_not_pinged(engine: AsyncEngine) -> None:
    dropped = await backend(engine)
    await terminate(dropped)
    # Handed out unpinged: the statement fails, and the pool replaces the connection after.
    with pytest.raises(DBAPIError):
        await backend(engine)
    assert await backend(engine) != dropped
