"""Wakes visitors who wait on a conversation (long-poll, stream) when its feed grows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType

import asyncpg

log = logging.getLogger(__name__)


class Waiter:
    """One visitor's wake-up call on one conversation, from `FeedNotifier.subscribe`.

    A flag, and one future while its owner waits: leaner than an `asyncio.Event`, since
    thousands of streams each hold one for as long as they are open, and reused across a
    stream's waits. A wake-up that comes while nobody waits is kept for the next wait.
    """

    __slots__ = ("_conversation_id", "_future", "_notifier", "_woken")

    def __init__(self, notifier: FeedNotifier, conversation_id: str) -> None:
        self._notifier = notifier
        self._conversation_id = conversation_id
        self._woken = False
        self._future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        self._woken = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self, within: float) -> bool:
        """True once woken (at once if woken since the last wait), False after `within` s."""
        if not self._woken:
            loop = asyncio.get_running_loop()
            future = self._future = loop.create_future()
            timer = loop.call_later(within, _time_up, future)
            try:
                await future
            finally:
                timer.cancel()
                self._future = None
        woken, self._woken = self._woken, False
        return woken

    def close(self) -> None:
        """No more wake-ups: the waiter is done with the conversation."""
        self._notifier._discard(self._conversation_id, self)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()


def _time_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class FeedNotifier:
    """In-process wake-ups keyed by conversation id.

    A waiter subscribes *before* reading the feed, so a change committed between its read and its
    wait is not missed: the waiter is already woken when it starts waiting.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[Waiter]] = {}
        self._publish: Callable[[str], None] | None = None
        self.closed = False

    def publish_with(self, publish: Callable[[str], None] | None) -> None:
        """Also tell other replicas (PostgreSQL NOTIFY) whenever a feed grows here."""
        self._publish = publish

    def subscribe(self, conversation_id: str) -> Waiter:
        """A waiter on this conversation, until it is closed (`with` closes it)."""
        waiter = Waiter(self, conversation_id)
        self._waiters.setdefault(conversation_id, set()).add(waiter)
        if self.closed:
            waiter.wake()
        return waiter

    def _discard(self, conversation_id: str, waiter: Waiter) -> None:
        waiters = self._waiters.get(conversation_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[conversation_id]

    def notify(self, conversation_id: str) -> None:
        """The conversation's feed grew (committed): wake its waiters here and elsewhere."""
        self.wake(conversation_id)
        if self._publish is not None:
            self._publish(conversation_id)

    def wake(self, conversation_id: str) -> None:
        """Wake this process's waiters only."""
        for waiter in self._waiters.get(conversation_id, ()):
            waiter.wake()

    def wake_all(self) -> None:
        """Wake every waiter of this process."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()

    def close(self) -> None:
        """The server is shutting down: wake every waiter, now and from now on, so that held
        streams and long-polls end (the server waits for every response before it stops)."""
        self.closed = True
        self.wake_all()

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())


CHANNEL = "slackrouter_feed"
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 30.0  # seconds


class PostgresFeedBridge:
    """Carries feed wake-ups between replicas with PostgreSQL LISTEN/NOTIFY, so a visitor
    streaming from one replica gets the replies another replica received.

    Held streams read the feed only when woken, so a lost LISTEN connection is opened again
    (retrying with backoff), and then every waiter here is woken to read what it may have
    missed meanwhile.

    A busy site publishes hundreds of conversations a second: those published while a NOTIFY is
    under way go together in the next, one statement for all of them."""

    def __init__(self, dsn: str, notifier: FeedNotifier, *, schema: str | None = None) -> None:
        self._dsn = dsn
        self._notifier = notifier
        self._schema = schema
        self._connection: asyncpg.Connection | None = None
        self._sender: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._queued: set[str] = set()
        self._unsent: set[str] = set()
        self._stopping = False

    async def start(self) -> None:
        await self._connect()
        self._notifier.publish_with(self._publish)

    async def stop(self) -> None:
        self._stopping = True
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

    async def _connect(self) -> None:
        settings = {"search_path": self._schema} if self._schema else None
        connection = await asyncpg.connect(self._dsn, server_settings=settings)
        await connection.add_listener(self._channel, self._received)
        connection.add_termination_listener(self._lost)
        self._connection = connection

    def _received(self, connection: asyncpg.Connection, pid: int, _: str, payload: str) -> None:
        if pid == connection.get_server_pid():
            return  # sent from here: this process's waiters were woken already
        self._notifier.wake(payload)

    def _lost(self, _connection: asyncpg.Connection) -> None:
        if not self._stopping:
            self._connection = None
            self._run(self._reconnect())

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                await self._connect()
                break
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("feed LISTEN connection: %r; trying again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
        self._notifier.wake_all()
        unsent, self._unsent = self._unsent, set()
        self._queue(unsent)

    def _publish(self, conversation_id: str) -> None:
        self._queue((conversation_id,))

    def _queue(self, conversation_ids: Iterable[str]) -> None:
        self._queued.update(conversation_ids)
        if self._queued and (self._sender is None or self._sender.done()):
            self._sender = self._run(self._send_queued())

    def _run(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _send_queued(self) -> None:
        while self._queued:
            conversation_ids, self._queued = sorted(self._queued), set()
            if not await self._notify(conversation_ids):
                self._unsent.update(conversation_ids)  # sent once connected again

    async def _notify(self, conversation_ids: list[str]) -> bool:
        """One notification per conversation, in one statement."""
        if self._connection is None:
            return False
        try:
            await self._connection.execute(
                "SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id",
                self._channel,
                conversation_ids,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True
