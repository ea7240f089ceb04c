"""Engines and sessions. Nothing connects at import time: `create_engine` is called by bootstrap."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from slackrouter.config import sqlite_path

SQLITE_CONNECTIONS = 15  # the default pool's most (5 kept + 10 overflow)


def create_engine(database_url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout, PostgreSQL an optional schema."""
    kwargs: dict[str, Any] = {}
    if database_url.startswith("sqlite"):
        path = sqlite_path(database_url)
        kwargs["connect_args"] = {"timeout": 30}
        if path is not None:  # a file; an in-memory database keeps its one connection
            path.parent.mkdir(parents=True, exist_ok=True)
            # Every connection is kept: opening one costs a thread and a few statements, and
            # under load the default pool (5, then short-lived overflow) opens one per request.
            kwargs.update(pool_size=SQLITE_CONNECTIONS, max_overflow=0)
    elif schema:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    if database_url.startswith("postgresql"):
        kwargs.update(pool_size=5, max_overflow=10, pool_pre_ping=True)
    engine = _create_async_engine(database_url, **kwargs)
    if database_url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
