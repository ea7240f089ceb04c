"""SQLite's write-ahead log is copied into the database file by a thread of its own
(adapters/db/wal_checkpoints.py), never by a commit: a commit that checkpointed stopped the
whole event loop for 15-38 ms under load. What was committed reaches the database file soon
after all the same."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from slackrouter.adapters.db import wal_checkpoints
from slackrouter.adapters.db.database import create_engine

ROW = "x" * 8_000  # two pages a row
COMMITS = 800  # 1,600 pages: past the 1,000 at which a commit would checkpoint by default


async def write_rows(engine: AsyncEngine, commits: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    for _ in range(commits):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": ROW})


def rows_in_database_file(path: Path) -> int | None:
    """The rows the database file itself holds, the log left out (None: no table there yet)."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as connection:
        try:
            return int(connection.execute("SELECT count(*) FROM notes").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise


async def test_commits_past_a_thousand_pages_leave_the_copy_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_checkpoints, "CHECKPOINT_AFTER", 60.0)  # the thread waits a minute
    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await write_rows(engine, COMMITS)
        # With SQLite's automatic checkpoints a commit would have copied the log by now.
        assert rows_in_database_file(path) is None
        assert path.with_name("log.db-wal").stat().st_size > 1_600 * 4096
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM notes")) == COMMITS
    finally:
        await engine.dispose()


async def test_what_is_committed_reaches_the_database_file_soon_after(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await write_rows(engine, 20)
        for _ in range(100):
            if rows_in_database_file(path) == 20:
                break
            await asyncio.sleep(0.1)
        assert rows_in_database_file(path) == 20
    finally:
        await engine.dispose()
