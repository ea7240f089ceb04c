"""Integration fixtures: a migrated database of the run's kind (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.migrate import upgrade
from tests.conftest import Database


@pytest.fixture
async def sessions(database: Database) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a freshly migrated database, disposed of after the test."""
    engine = create_engine(database.url, schema=database.schema)
    await upgrade(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
