"""SQLite plans without statistics; these statements must search the index that reads a few
rows, whatever the tables hold, and not one that reads a growing share of them:
- the visitor message writer's two lookups (adapters/db/repository.py) search the unique
  indexes by every pair they are given (with the pairs alone SQLite searched by chatflow only
  and read every message of the chatflow: 4.8 ms at 13,664 messages);
- the delivery round's read of each thread's first item not due yet (services/delivery.py)
  searches the thread index (on the due index it read every pending item not due yet: 5.9 ms
  at 15,000 in a backlog)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.services import delivery

PAIRS = [("v-1", "m0"), ("v-2", "m0"), ("v-2", "m1")]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/plans.db")
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def plan_of(engine: AsyncEngine, lookup: Any) -> list[str]:
    """SQLite's query plan for the statement `lookup(session)` runs, with its parameters."""
    sessions = session_factory(engine)
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with sessions() as session:
            await lookup(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = seen
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return [row[-1] for row in rows]


def steps_on(plan: list[str], table: str) -> list[str]:
    """The plan's steps that read `table` (there must be some)."""
    steps = [step for step in plan if f" {table} " in f" {step} "]
    assert steps, plan
    return steps


async def test_stored_messages_are_searched_by_chatflow_visitor_and_client_id(
    engine: AsyncEngine,
) -> None:
    plan = await plan_of(engine, lambda s: repo.chatflows_and_messages(s, ["pk_test"], PAIRS))
    assert all(
        step.startswith("SEARCH") and "chatflow_id=? AND visitor_id=?" in step
        for step in steps_on(plan, "messages")
    ), plan


async def test_open_conversations_are_searched_by_chatflow_and_visitor(
    engine: AsyncEngine,
) -> None:
    pairs = [("cf_1", visitor) for visitor, _ in PAIRS]
    plan = await plan_of(engine, lambda s: repo.open_conversations(s, pairs, timer="offline_email"))
    assert all(
        step.startswith("SEARCH") and "chatflow_id=? AND visitor_id=?" in step
        for step in steps_on(plan, "conversations")
    ), plan


async def test_the_first_pending_item_of_each_thread_is_searched_by_thread(
    engine: AsyncEngine,
) -> None:
    plan = await plan_of(
        engine, lambda s: s.execute(delivery._FIRST_PENDING, {"threads": [1, 2, 3], "read": [4, 5]})
    )
    # The threads' first items are found by the thread index, then read by their ids.
    assert all(
        step.startswith("SEARCH") and "ix_outbox_thread" in step
        for step in steps_on(plan, "outbox_1")
    ), plan
    assert steps_on(plan, "outbox") == ["SEARCH outbox USING INTEGER PRIMARY KEY (rowid=?)"], plan
