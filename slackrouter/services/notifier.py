"""Wakes visitors who wait on a conversation (long-poll, stream) when its feed grows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg


class FeedNotifier:
    """In-process wake-ups keyed by conversation id.

    A waiter subscribes *before* reading the feed, so a change committed between its read and its
    wait is not missed: the subscription's event is already set when it starts waiting.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._publish: Callable[[str], None] | None = None

    def publish_with(self, publish: Callable[[str], None] | None) -> None:
        """Also tell other replicas (PostgreSQL NOTIFY) whenever a feed grows here."""
        self._publish = publish

    @asynccontextmanager
    async def subscribe(self, conversation_id: str) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters.setdefault(conversation_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(conversation_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[conversation_id]

    def notify(self, conversation_id: str) -> None:
        """The conversation's feed grew (committed): wake its waiters here and elsewhere."""
        self.wake(conversation_id)
        if self._publish is not None:
            self._publish(conversation_id)

    def wake(self, conversation_id: str) -> None:
        """Wake this process's waiters only."""
        for event in self._waiters.get(conversation_id, ()):
            event.set()

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())


CHANNEL = "slackrouter_feed"


class PostgresFeedBridge:
    """Carries feed wake-ups between replicas with PostgreSQL LISTEN/NOTIFY, so a visitor
    streaming from one replica gets the replies another replica received."""

    def __init__(self, dsn: str, notifier: FeedNotifier, *, schema: str | None = None) -> None:
        self._dsn = dsn
        self._notifier = notifier
        self._schema = schema
        self._connection: asyncpg.Connection | None = None
        self._send_lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        settings = {"search_path": self._schema} if self._schema else None
        self._connection = await asyncpg.connect(self._dsn, server_settings=settings)
        await self._connection.add_listener(self._channel, self._received)
        self._notifier.publish_with(self._publish)

    async def stop(self) -> None:
        self._notifier.publish_with(None)
        for task in list(self._pending):
            task.cancel()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def _channel(self) -> str:
        # Each schema (a test, or a second deployment in one database) has its own channel.
        return f"{CHANNEL}_{self._schema}" if self._schema else CHANNEL

    def _received(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self._notifier.wake(payload)

    def _publish(self, conversation_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(conversation_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, conversation_id: str) -> None:
        if self._connection is None:
            return
        async with self._send_lock:
            await self._connection.execute(
                "SELECT pg_notify($1, $2)", self._channel, conversation_id
            )
