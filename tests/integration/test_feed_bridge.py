"""LISTEN/NOTIFY between replicas: a replica's own notices are not taken twice, a burst of them
(sent together) reaches every conversation's waiter, and a lost LISTEN connection comes back and
wakes every waiter (held streams read only when woken)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from slackrouter.services.notifier import FeedNotifier, PostgresFeedBridge
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres

DSN = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[FeedNotifier, FeedNotifier, PostgresFeedBridge]]:
    """Two replicas' notifiers, bridged on a channel of their own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    here, there = FeedNotifier(), FeedNotifier()
    bridges = [PostgresFeedBridge(DSN, n, schema=schema) for n in (here, there)]
    for bridge in bridges:
        await bridge.start()
    try:
        yield here, there, bridges[1]
    finally:
        for bridge in bridges:
            await bridge.stop()


async def test_a_notice_wakes_the_other_replica_once_and_not_its_sender_twice(
    replicas: tuple[FeedNotifier, FeedNotifier, PostgresFeedBridge],
) -> None:
    here, there, _ = replicas
    with here.subscribe("c1") as mine, there.subscribe("c1") as theirs:
        here.notify("c1")
        assert await mine.wait(0)  # woken in process, at once
        assert await theirs.wait(5)
        assert not await mine.wait(0.5)  # its own NOTIFY does not wake it again


async def test_a_burst_of_notices_wakes_each_conversations_waiter_on_the_other_replica(
    replicas: tuple[FeedNotifier, FeedNotifier, PostgresFeedBridge],
) -> None:
    here, there, _ = replicas
    ids = [f"burst-{n}" for n in range(300)]
    with contextlib.ExitStack() as stack:
        theirs = [stack.enter_context(there.subscribe(c)) for c in ids]
        quiet = stack.enter_context(there.subscribe("not-published"))
        for conversation_id in ids:  # as a batch of visitor messages publishes them
            here.notify(conversation_id)
        woken = await asyncio.gather(*(waiter.wait(10) for waiter in theirs))
        assert all(woken)
        assert not await quiet.wait(0.2)


async def test_a_lost_listen_connection_comes_back_and_wakes_every_waiter(
    replicas: tuple[FeedNotifier, FeedNotifier, PostgresFeedBridge],
) -> None:
    here, there, bridge = replicas
    with there.subscribe("c2") as theirs:
        listening = bridge._connection
        assert listening is not None
        admin = await asyncpg.connect(DSN)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", listening.get_server_pid())
        finally:
            await admin.close()
        assert await theirs.wait(10)  # woken once listening again: it reads what it missed
        for _ in range(100):
            if bridge._connection is not None and bridge._connection is not listening:
                break
            await asyncio.sleep(0.05)
        here.notify("c2")
        assert await theirs.wait(5)  # and notices arrive again
