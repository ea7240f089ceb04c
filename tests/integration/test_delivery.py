"""The outbox's delivery worker on a real database: different threads delivered at once, each in
order; a leased item kept from every worker until its lease runs out; a paced item tried again
when its slot comes, woken by its due time and not by a poll; posts to a channel booked ahead left
untried and put off until their slots, and one chat's post started per channel and round; a
thread's posts beyond its channel's free slots left untried."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import Chatflow, Conversation, OutboxItem, Rep, SlackThread
from slackrouter.clock import utcnow
from slackrouter.services.delivery import (
    BATCH,
    PARK_BATCH,
    DeliveryWorker,
    Performer,
    RetryLater,
    lease,
)
from slackrouter.services.pacing import ChannelPacer


async def add(
    sessions: async_sessionmaker[AsyncSession], thread_id: int, kind: str = "post", **columns: Any
) -> int:
    """An outbox row owed now for this thread, of the kind "post" unless said."""
    now = utcnow()
    item = OutboxItem(
        team_id="T0001",
        kind=kind,
        conversation_id=f"chat-{thread_id}",
        thread_id=thread_id,
        next_attempt_at=now,
        created_at=now,
        **columns,
    )
    async with sessions() as session, session.begin():
        session.add(item)
    return item.id


async def row(sessions: async_sessionmaker[AsyncSession], item_id: int) -> OutboxItem:
    async with sessions() as session:
        return await session.get_one(OutboxItem, item_id)


def worker(sessions: async_sessionmaker[AsyncSession], perform: Performer) -> DeliveryWorker:
    return DeliveryWorker(sessions, {"post": perform}, clock=utcnow, max_attempts=3)


class Clock:
    """One time for a pacer (seconds) and a worker (a datetime), moved on by the test; it
    starts a minute ahead of the real clock, which `add` writes rows with (due at once)."""

    def __init__(self) -> None:
        self.seconds = 1000.0
        self._start = utcnow() + timedelta(minutes=1)

    def __call__(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.seconds - 1000.0)


def paced_worker(
    sessions: async_sessionmaker[AsyncSession],
    performers: dict[str, Performer],
    pacer: ChannelPacer,
    clock: Callable[[], datetime] = utcnow,
) -> DeliveryWorker:
    """A worker whose "post" items are paced per channel, as Slack posts are."""
    return DeliveryWorker(
        sessions,
        performers,
        clock=clock,
        max_attempts=3,
        pacer=pacer,
        paced=frozenset({"post"}),
    )


async def test_threads_are_delivered_at_once_each_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = [await add(sessions, thread_id=1) for _ in range(3)]
    second = [await add(sessions, thread_id=2) for _ in range(3)]
    slow_call, second_done = asyncio.Event(), asyncio.Event()
    delivered: list[int] = []

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        if item.id == first[0]:
            await slow_call.wait()
        delivered.append(item.id)
        if item.id == second[-1]:
            second_done.set()

    round_ = asyncio.create_task(worker(sessions, perform).run_once())
    # Thread 2 goes while thread 1 waits for its first item's call.
    async with asyncio.timeout(10):
        await second_done.wait()
    assert delivered == second
    slow_call.set()
    async with asyncio.timeout(10):
        assert await round_ == 6
    assert delivered == second + first


async def test_a_lease_is_committed_before_the_call_and_keeps_other_workers_away(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    item_id = await add(sessions, thread_id=1)
    during_the_call: list[Any] = []

    async def never(session: AsyncSession, item: OutboxItem) -> None:
        raise AssertionError("another worker took a leased item")

    other = worker(sessions, never)

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        await lease(session, item, utcnow())
        seen = await row(sessions, item.id)
        during_the_call.append((seen.result, seen.next_attempt_at > utcnow()))
        during_the_call.append(await other.run_once())
        item.result = {"ts": "1.0"}

    assert await worker(sessions, perform).run_once() == 1
    assert during_the_call == [({"uncertain": True}, True), 0]
    done = await row(sessions, item_id)
    assert (done.status, done.result) == ("done", {"ts": "1.0"})


async def test_a_leased_item_and_its_thread_wait_until_the_lease_runs_out(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # What a process killed during a call leaves: the item leased, its call maybe made.
    leased = await add(
        sessions,
        thread_id=1,
        result={"uncertain": True},
    )
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == leased)
            .values(next_attempt_at=utcnow() + timedelta(seconds=45))
        )
    later = await add(sessions, thread_id=1)
    other_thread = await add(sessions, thread_id=2)
    tried: list[tuple[int, Any]] = []

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        tried.append((item.id, item.result))

    delivery = worker(sessions, perform)
    assert await delivery.run_once() == 1
    assert tried == [(other_thread, None)]
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxItem).where(OutboxItem.id == leased).values(next_attempt_at=utcnow())
        )
    assert await delivery.run_once() == 2
    # The next attempt knows that the call may have been made (and looks before making it).
    assert tried[1:] == [(leased, {"uncertain": True}), (later, None)]


async def test_a_paced_item_is_tried_again_when_its_slot_comes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    pacer = ChannelPacer(per_second=10.0, burst=1, spare=0.0)
    tries: Counter[int] = Counter()
    posted: list[float] = []
    all_posted = asyncio.Event()
    ids = [await add(sessions, thread_id=n) for n in range(1, 7)]  # six chats, one channel

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        tries[item.id] += 1
        wait = pacer.take("C1", item.id)
        if wait > 0:
            raise RetryLater(wait, "pacing posts to C1")
        posted.append(time.monotonic())
        if len(posted) == len(ids):
            all_posted.set()

    # Only the items' due times wake the worker: its poll would come after the test's end.
    running = asyncio.create_task(worker(sessions, perform).run_forever(poll_interval=60))
    try:
        async with asyncio.timeout(10):
            await all_posted.wait()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert max(tries.values()) == 2  # told its slot once, then posted in it
    assert posted[-1] - posted[0] >= 0.5 - 0.01  # five slots after the first post, 0.1 s apart


async def test_the_worker_stops_when_its_cancellation_comes_back_as_another_error(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    class Interrupted(DeliveryWorker):
        rounds = 0

        async def run_once(self) -> int:
            self.rounds += 1
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if self.rounds > 1:
                    raise
                # What SQLAlchemy raises when the cancellation lands in a query.
                raise PendingRollbackError("invalid transaction", None, None) from None
            return 0

    running = asyncio.create_task(
        Interrupted(sessions, {}, clock=utcnow, max_attempts=3).run_forever(poll_interval=0.01)
    )
    await asyncio.sleep(0.05)
    running.cancel()
    await asyncio.wait({running}, timeout=5)
    assert running.cancelled()


def c1_booked(clock: Callable[[], float] = time.monotonic) -> ChannelPacer:
    """A pacer of one post a second per channel that has just let a post go to C1."""
    pacer = ChannelPacer(per_second=1.0, burst=1, spare=0.0, clock=clock)
    assert pacer.take("C1", "another post") == 0  # C1 has no slot for a second
    return pacer


def recorder() -> tuple[list[int], Performer]:
    """A performer that delivers whatever it is given, and the ids it was given, in order."""
    tried: list[int] = []

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        tried.append(item.id)

    return tried, perform


async def threads(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Three chats' Slack threads: one in channel C1, one in a rep's DM that is C1 too (its
    parent not posted yet, so only the rep knows the channel), and one in channel C2."""
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
        session.add(Rep(team_id="T0001", user_id="U1", dm_channel_id="C1"))
        rows = {}
        for name, rep, channel in (("c1", None, "C1"), ("dm", "U1", None), ("c2", None, "C2")):
            session.add(
                Conversation(
                    id=name,
                    team_id="T0001",
                    chatflow_id="cf1",
                    visitor_id=name,
                    token=name,
                    routing_outcome="routed",
                    created_at=now,
                )
            )
            rows[name] = SlackThread(
                team_id="T0001",
                conversation_id=name,
                rep_user_id=rep,
                channel_id=channel,
                created_at=now,
            )
        session.add_all(rows.values())
    return {name: thread.id for name, thread in rows.items()}


async def test_posts_to_a_booked_channel_wait_their_slots_untried(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    pacer = c1_booked(clock=clock)
    thread = await threads(sessions)
    in_c1 = [await add(sessions, thread_id=thread[name]) for name in ("c1", "dm")]
    in_c2 = await add(sessions, thread_id=thread["c2"])
    tried, perform = recorder()
    deliveries = paced_worker(sessions, {"post": perform}, pacer, clock=clock.now)
    assert await deliveries.run_once() == 1
    assert tried == [in_c2]
    # Not tried, nor told to wait: put off until C1's next free slots, one a second in order.
    for n, item_id in enumerate(in_c1, start=1):
        item = await row(sessions, item_id)
        assert (item.status, item.attempts, item.result, item.last_error) == (
            "pending",
            0,
            None,
            None,
        )
        assert _aware(item.next_attempt_at) == clock.now() + timedelta(seconds=n)
    clock.seconds += 0.5
    assert await deliveries.run_once() == 0  # nothing due: nothing read, nothing tried
    clock.seconds += 0.5
    # C1 is free again: a round starts one chat's post in it (Slack takes one a second).
    assert await deliveries.run_once() == 1
    assert tried == [in_c2, in_c1[0]]
    clock.seconds += 1.0
    assert await deliveries.run_once() == 1
    assert tried == [in_c2, *in_c1]


async def test_a_post_back_at_its_slot_to_find_it_taken_goes_before_later_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    pacer = c1_booked(clock=clock)
    thread = await threads(sessions)
    first = await add(sessions, thread_id=thread["c1"])
    tried, perform = recorder()
    deliveries = paced_worker(sessions, {"post": perform}, pacer, clock=clock.now)
    assert await deliveries.run_once() == 0  # put off until C1's next slot, in a second
    later = [await add(sessions, thread_id=thread["dm"]) for _ in range(2)]
    assert await deliveries.run_once() == 0  # behind it: in two and three seconds
    clock.seconds += 1.0
    assert pacer.take("C1", "someone else's post") == 0  # the slot goes elsewhere
    assert await deliveries.run_once() == 0
    # Put off again, to C1's next free slot: before the posts queued after it.
    item = await row(sessions, first)
    assert _aware(item.next_attempt_at) == clock.now() + timedelta(seconds=1)
    for seconds in (1.0, 1.0, 1.0):
        clock.seconds += seconds
        await deliveries.run_once()
    assert tried == [first, *later]


def _aware(moment: datetime) -> datetime:
    """A time read back from the database (SQLite keeps no time zone) as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


async def test_a_threads_posts_beyond_its_channels_free_slots_are_left_untried(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = [1000.0]
    pacer = ChannelPacer(per_second=1.0, burst=2, spare=0.0, clock=lambda: clock[0])
    thread = await threads(sessions)
    posts = [await add(sessions, thread_id=thread["c2"]) for _ in range(4)]
    tried: list[int] = []

    async def post(session: AsyncSession, item: OutboxItem) -> None:
        wait = pacer.take("C2", item.id)  # as the Slack poster does
        if wait > 0:
            raise RetryLater(wait, "pacing posts to C2")
        tried.append(item.id)

    deliveries = paced_worker(sessions, {"post": post}, pacer)
    assert await deliveries.run_once() == 2  # a burst of two, then C2 has no free slot
    assert tried == posts[:2]
    for item_id in posts[2:]:  # not tried, so not told to wait either
        item = await row(sessions, item_id)
        assert (item.status, item.attempts, item.last_error) == ("pending", 0, None)
    clock[0] += 1.0
    assert await deliveries.run_once() == 1
    assert tried == posts[:3]


async def test_while_visitor_messages_are_written_two_posts_go_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for thread_id in range(1, 7):  # six chats
        await add(sessions, thread_id=thread_id)
    busy = [True]
    in_flight = [0]
    release = asyncio.Event()

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        in_flight[0] += 1
        await release.wait()
        in_flight[0] -= 1

    deliveries = DeliveryWorker(
        sessions, {"post": perform}, clock=utcnow, max_attempts=3, busy=lambda: busy[0]
    )
    round_ = asyncio.create_task(deliveries.run_once())
    await asyncio.sleep(0.3)
    assert in_flight[0] == 2  # the others wait their turn, not the writer
    busy[0] = False  # the site is quiet again: the rest start at once as the two end
    release.set()
    async with asyncio.timeout(10):
        assert await round_ == 6

    for thread_id in range(7, 13):
        await add(sessions, thread_id=thread_id)
    release.clear()
    round_ = asyncio.create_task(deliveries.run_once())
    await asyncio.sleep(0.3)
    assert in_flight[0] == 6  # quiet: every chat's post goes at once
    release.set()
    async with asyncio.timeout(10):
        assert await round_ == 6


async def test_a_backlog_in_a_booked_channel_does_not_hold_up_the_others(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    pacer = c1_booked(clock=clock)
    thread = await threads(sessions)
    now = utcnow()
    async with sessions() as session, session.begin():  # a long backlog in C1
        session.add_all(
            OutboxItem(
                team_id="T0001",
                kind="post",
                conversation_id="c1",
                thread_id=thread["c1"],
                next_attempt_at=now,
                created_at=now,
            )
            for _ in range(1100)
        )
    in_c2 = await add(sessions, thread_id=thread["c2"])
    tried, perform = recorder()
    deliveries = paced_worker(sessions, {"post": perform}, pacer, clock=clock.now)
    assert await deliveries.run_once() == 1
    assert tried == [in_c2]
    assert await deliveries.run_once() == 0
    # The backlog is put off and no round reads it again before then: the first PARK_BATCH
    # posts one a second, the rest of the thread behind the last of them.
    async with sessions() as session:
        due = await session.scalar(
            select(func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= clock.now())
        )
        times = Counter(
            _aware(at)
            for at in await session.scalars(
                select(OutboxItem.next_attempt_at).where(OutboxItem.thread_id == thread["c1"])
            )
        )
    assert due == 0
    last = clock.now() + timedelta(seconds=PARK_BATCH)
    assert max(times) == last
    assert times[last] == 1100 - PARK_BATCH + 1
    assert len(times) == PARK_BATCH


async def test_only_posts_wait_for_a_booked_channel(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    pacer = c1_booked()
    thread = await threads(sessions)
    post = await add(sessions, thread_id=thread["c1"])
    edit = await add(sessions, thread_id=thread["dm"], kind="update")  # e.g. chat.update
    tried, perform = recorder()
    deliveries = paced_worker(sessions, {"post": perform, "update": perform}, pacer)
    assert await deliveries.run_once() == 1
    assert tried == [edit]  # Slack paces posts per channel, not edits
    assert (await row(sessions, post)).status == "pending"


async def test_a_thread_whose_first_post_waits_does_not_stop_the_others(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A thread's first post told to wait (its channel's slot is later) keeps the thread's
    later posts behind it: they do not fill the round's batch of due items as posts nobody
    can take, while another chat's post is due behind them."""
    first = await add(sessions, thread_id=1)
    later = [await add(sessions, thread_id=1) for _ in range(BATCH)]
    other = await add(sessions, thread_id=2)
    tried: list[int] = []

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        tried.append(item.id)
        if item.id == first:
            raise RetryLater(60, "pacing posts to C1")

    deliveries = worker(sessions, perform)
    assert await deliveries.run_once() == 0  # the batch: the first post, told to wait
    assert await deliveries.run_once() == 1
    assert tried == [first, other]
    async with sessions() as session:
        waiting = await session.get_one(OutboxItem, first)
        for item_id in later:
            assert (await session.get_one(OutboxItem, item_id)).next_attempt_at >= (
                waiting.next_attempt_at
            )


@dataclass
class WaitingChat:
    """A chat whose first post was told to wait, on its first try; BATCH later posts of the
    chat written after that (due at once), and another chat's post after them."""

    clock: Clock
    deliveries: DeliveryWorker
    tried: list[int]  # the items attempted, in order
    first: int
    later: list[int]
    other: int


async def first_post_told_to_wait(
    sessions: async_sessionmaker[AsyncSession], seconds: float
) -> WaitingChat:
    clock = Clock()
    first = await add(sessions, thread_id=1)
    tried: list[int] = []

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        tried.append(item.id)
        if item.id == first and len(tried) == 1:
            raise RetryLater(seconds, "pacing posts to C1")

    deliveries = DeliveryWorker(sessions, {"post": perform}, clock=clock.now, max_attempts=3)
    assert await deliveries.run_once() == 0  # told to wait
    later = [await add(sessions, thread_id=1) for _ in range(BATCH)]  # the visitor writes on
    other = await add(sessions, thread_id=2)
    return WaitingChat(clock, deliveries, tried, first, later, other)


async def test_posts_written_while_their_first_post_waits_do_not_stop_delivery(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A chat's later posts written after its first post was told to wait are due at once,
    before it: when it falls due, it is behind them in the order of due time. The round still
    finds it, and another chat's post behind them both."""
    chat = await first_post_told_to_wait(sessions, 30)
    clock, deliveries, tried = chat.clock, chat.deliveries, chat.tried
    first, later, other = chat.first, chat.later, chat.other
    clock.seconds += 31
    delivered = sum([await deliveries.run_once() for _ in range(3)])
    assert tried[:2] == [first, first]
    assert set(tried) == {first, *later, other}
    assert delivered == BATCH + 2


async def test_posts_due_behind_a_first_post_that_waits_do_not_hold_up_other_chats(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A chat's later posts written while its first post waits for a slot a minute ahead are
    due at once, and more of them than a round reads: a round that meets them puts them
    behind the first post, and the next delivers the other chats' posts due after them (before,
    no post was made until the first post's slot came)."""
    chat = await first_post_told_to_wait(sessions, 60)
    clock, deliveries, tried = chat.clock, chat.deliveries, chat.tried
    first, later, other = chat.first, chat.later, chat.other
    clock.seconds += 1
    assert [await deliveries.run_once() for _ in range(2)] == [0, 1]
    assert tried == [first, other]
    async with sessions() as session:
        waiting = await session.get_one(OutboxItem, first)
        for item_id in later:
            item = await session.get_one(OutboxItem, item_id)
            assert (item.status, item.next_attempt_at) == ("pending", waiting.next_attempt_at)
    clock.seconds += 60
    assert sum([await deliveries.run_once() for _ in range(2)]) == BATCH + 1
    assert tried[2:] == [first, *later]


async def test_posts_behind_a_first_post_under_way_stay_due(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A first post being posted (leased) holds its thread's later posts only until its call
    ends: they are not put off to the end of its lease, and go right after it."""
    first = await add(sessions, thread_id=1)
    later = await add(sessions, thread_id=1)
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == first)
            .values(result={"uncertain": True}, next_attempt_at=utcnow() + timedelta(seconds=45))
        )
    tried: list[int] = []

    async def perform(session: AsyncSession, item: OutboxItem) -> None:
        tried.append(item.id)

    deliveries = worker(sessions, perform)
    assert await deliveries.run_once() == 0
    async with sessions() as session:
        assert (await session.get_one(OutboxItem, later)).next_attempt_at <= utcnow()
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxItem).where(OutboxItem.id == first).values(status="done")
        )
    assert await deliveries.run_once() == 1
    assert tried == [later]
