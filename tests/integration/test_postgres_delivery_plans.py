"""PostgreSQL plans the delivery round's reads on its statistics of the outbox. Autovacuum
refreshes them once a tenth of the table has changed, so under a flood they say few posts are
due (a new table's, none), and the round's read of a batch read, sorted and joined every due
post to keep a hundred. A round that finds a backlog brings the statistics up to date: the next
reads a batch by walking the due index, however long the backlog."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.adapters.db.models import Chatflow, Conversation, OutboxItem, SlackThread
from slackrouter.clock import utcnow
from slackrouter.services.delivery import BATCH, DeliveryWorker
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres

CHATS = 200
POSTS_EACH = 15  # a backlog of 3,000 due posts


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """A freshly migrated schema in the PostgreSQL test database: new tables, never analyzed."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""))
    await connection.execute(f'CREATE SCHEMA "{schema}"')
    engine = create_engine(POSTGRES_URL, schema=schema)
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()
        await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await connection.close()


async def backlog(sessions: async_sessionmaker[AsyncSession]) -> None:
    """CHATS chats, each with a Slack thread and POSTS_EACH posts, written over the last
    minute and due."""
    now = utcnow()
    async with sessions() as session, session.begin():
        session.add(
            Chatflow(
                id="cf1",
                team_id="T0001",
                name="Website",
                public_key="pk1",
                signing_secret="s" * 43,
                created_at=now,
            )
        )
        await session.flush()
        await session.execute(
            insert(Conversation.__table__),
            [
                {
                    "id": f"c{n}",
                    "team_id": "T0001",
                    "chatflow_id": "cf1",
                    "visitor_id": f"v{n}",
                    "token": f"t{n}",
                    "status": "open",
                    "routing_outcome": "routed",
                    "routing": {},
                    "offered": [],
                    "created_at": now,
                }
                for n in range(CHATS)
            ],
        )
        threads = await session.scalars(
            insert(SlackThread.__table__).returning(SlackThread.id),
            [
                {
                    "team_id": "T0001",
                    "conversation_id": f"c{n}",
                    "channel_id": f"C{n % 10}",
                    "created_at": now,
                }
                for n in range(CHATS)
            ],
        )
        await session.execute(
            insert(OutboxItem.__table__),
            [
                {
                    "team_id": "T0001",
                    "kind": "post",
                    "conversation_id": f"c{n}",
                    "thread_id": thread_id,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now
                    - timedelta(milliseconds=20 * (CHATS * POSTS_EACH - post * CHATS - n)),
                    "created_at": now,
                }
                for n, thread_id in enumerate(threads.all())
                for post in range(POSTS_EACH)
            ],
        )


async def test_under_a_backlog_a_round_reads_a_batch_and_not_every_due_post(
    engine: AsyncEngine,
) -> None:
    sessions = session_factory(engine)
    await backlog(sessions)

    async def deliver(_session: AsyncSession, _item: OutboxItem) -> None:
        pass

    deliveries = DeliveryWorker(sessions, {"post": deliver}, clock=utcnow, max_attempts=3)
    assert await deliveries.run_once() > 0  # the first round meets the backlog
    reads: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("SELECT outbox.id, outbox.kind") and "LIMIT" in statement:
            reads.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        assert await deliveries.run_once() > 0
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = reads  # the round's read of its batch
    async with engine.connect() as connection:
        result = await connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
        )
        plan = result.scalar_one()
    read = max(_rows_read(json.loads(plan) if isinstance(plan, str) else plan, "outbox"))
    assert read <= 2 * BATCH, f"read {read} outbox rows for a batch of {BATCH}"


def _rows_read(plan: Any, table: str) -> list[int]:
    """The rows each node reading `table` gave, over all its loops."""
    found: list[int] = []
    nodes = list(plan) if isinstance(plan, list) else [plan]
    while nodes:
        node = nodes.pop()
        node = node.get("Plan", node)
        if node.get("Relation Name") == table:
            found.append(int(node["Actual Rows"]) * int(node.get("Actual Loops", 1)))
        nodes.extend(node.get("Plans", []))
    assert found, f"no step of the plan reads {table}"
    return found
