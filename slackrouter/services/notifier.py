"""Wakes visitors who wait on a conversation (long-poll, stream) when its feed grows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FeedNotifier:
    """In-process wake-ups keyed by conversation id.

    A waiter subscribes *before* reading the feed, so a change committed between its read and its
    wait is not missed: the subscription's event is already set when it starts waiting.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

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
        for event in self._waiters.get(conversation_id, ()):
            event.set()

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
