"""Deliver the outbox: each row is work owed to the outside world (a Slack post, an email, a
webhook call), written in the transaction that caused it. Workers claim due rows (SKIP LOCKED on
PostgreSQL, so several replicas share them), keep each thread's order while delivering different
threads at once, retry with backoff and jitter, honour pacing and Retry-After without spending
attempts, and mark a row failed at last.

A call that cannot be taken back (a Slack post) is leased first (`lease`): committed before the
call, the row says that the call may have been made and keeps every worker away until the call
has surely ended. A process that dies during the call leaves the lease behind; once it has run
out, whoever takes the item finds out what the call did before making it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError
from sqlalchemy import Row, Select, bindparam, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import OutboxItem, Rep, SlackThread
from slackrouter.adapters.mail import MailError
from slackrouter.adapters.slack.gateway import DEFAULT_CALL_TIMEOUT, PERMANENT_ERRORS, slack_error
from slackrouter.clock import Clock
from slackrouter.observability import (
    CHATS_EMAILED,
    DELIVERY_FAILURES,
    DELIVERY_RETRIES,
    bind_log_context,
)
from slackrouter.services.pacing import Booked, ChannelPacer

log = logging.getLogger(__name__)

BATCH = 100
# Posts for booked channels put off (given a later due time) in one round, at most; a round
# that finds more starts the next at once. Reading and putting off a post costs ~20 µs, in the
# event loop's thread on SQLite: after the benchmark's flood of visitor messages, rounds of
# 1,000 stopped the worker process for 18-32 ms each, ten in a row (the latency figure's worst
# run); rounds of 200 stop it for 4-6 ms.
PARK_BATCH = 200
# Rounds start at least this far apart: woken by every batch of visitor messages, a busy site
# would otherwise have the worker read the outbox over and over for a post or two each time.
ROUND_GAP = 0.05
# Lanes (a thread's items, in order) delivered at once: one channel's wait or a slow call does not
# hold up the others.
CONCURRENCY = 8
# Items started at once while visitor messages are being written: the event loop takes its
# tasks in turn, so each lane in flight would delay every step of the batch being written.
# Slack takes about one post per second per channel anyway.
CONCURRENCY_WHILE_BUSY = 2
# A leased item is kept from every worker this many times its call's timeout (SLACK_CALL_TIMEOUT,
# after which the call is given up as uncertain): longer than the call may take, so that nobody
# looks for what the call did while it may still be doing it.
LEASE_FOR = 1.5
LEASE = timedelta(seconds=DEFAULT_CALL_TIMEOUT * LEASE_FOR)
# A website that is down is tried for this long before its webhook is marked failed.
WEBHOOK_DEADLINE = timedelta(days=1)
# On PostgreSQL, a round that finds a backlog (a full batch due) has the planner's statistics of
# the outbox brought up to date, at most this often (`_refresh_statistics`).
ANALYZE_EVERY = 60.0


@dataclass
class Attempt:
    """An outbox item taken for an attempt: its row's values, as a performer and the worker
    change them. The worker writes back what changed in one statement after the attempt (and
    `lease` before the call): a busy site makes dozens of posts a second, and the ORM's unit of
    work (identity map, change tracking, flush) cost more than the post's statements."""

    id: int
    team_id: str
    kind: str
    conversation_id: str | None
    thread_id: int | None
    message_id: int | None
    payload: dict[str, Any] | None
    created_at: datetime
    # What an attempt changes (`_STATE`).
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    result: dict[str, Any] | None
    done_at: datetime | None

    def state(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _STATE)


_FIELDS = [field.name for field in fields(Attempt)]
_STATE = _FIELDS[_FIELDS.index("status") :]

Performer = Callable[[AsyncSession, Attempt], Awaitable[None]]


class NotYet(Exception):
    """The item waits for an earlier one (a reply for a thread whose parent is not posted)."""


class RetryLater(Exception):
    """Not a failure: wait `after` seconds (pacing, Slack's Retry-After) and try again."""

    def __init__(self, after: float, reason: str) -> None:
        super().__init__(reason)
        self.after = after


class Undeliverable(Exception):
    """No retry can deliver this item (e.g. the rep to email has no address)."""


_OUTBOX = OutboxItem.__table__
_THREADS = SlackThread.__table__
_REPS = Rep.__table__
_EARLIER = _OUTBOX.alias()
# An item to attempt, if it is still pending and due, and no earlier item of its thread is
# pending. Built once: building it (an aliased EXISTS) cost more than running it.
_TAKE = (
    select(*(_OUTBOX.c[name] for name in _FIELDS))
    .where(
        _OUTBOX.c.id == bindparam("item"),
        _OUTBOX.c.status == "pending",
        _OUTBOX.c.next_attempt_at <= bindparam("now"),
        ~exists().where(
            _EARLIER.c.thread_id == _OUTBOX.c.thread_id,
            _EARLIER.c.status == "pending",
            _EARLIER.c.id < _OUTBOX.c.id,
        ),
    )
    .with_for_update(skip_locked=True)
)
# An attempt's changes, written back.
_SETTLE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("item"))
    .values({name: bindparam(f"new_{name}") for name in _STATE})
)
_LEASE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("item"))
    .values(result=bindparam("result"), next_attempt_at=bindparam("until"))
)


# A round's statements, built once (a round runs up to twenty times a second on a busy site;
# building one, with its joins and lists, cost about as much as running it).
#
# An outbox item's Slack channel: its thread's, or its rep's DM (once opened).
_CHANNEL = repo.THREAD_CHANNEL
_PENDING = _OUTBOX.c.status == "pending"
# In order of due time, which the due index gives whatever the planner knows of the table.
_DUE_ORDER = (_OUTBOX.c.next_attempt_at, _OUTBOX.c.id)


def _with_channel(query: Select[Any]) -> Select[Any]:
    """`query` on the outbox, joined to what `_CHANNEL` reads."""
    return query.outerjoin(_THREADS, _THREADS.c.id == _OUTBOX.c.thread_id).outerjoin(
        _REPS, repo.THREAD_REP
    )


# What a round reads of an item.
_ROUND_COLUMNS = (
    _OUTBOX.c.id,
    _OUTBOX.c.kind,
    _OUTBOX.c.conversation_id,
    _OUTBOX.c.thread_id,
    _CHANNEL.label("channel"),
)
# The due items of a round, in order of due time, at most BATCH.
_DUE = _with_channel(
    select(*_ROUND_COLUMNS).where(_PENDING, _OUTBOX.c.next_attempt_at <= bindparam("now"))
)
_DUE_ANYWHERE = _DUE.order_by(*_DUE_ORDER).limit(BATCH)
# ... leaving out the posts for booked channels ("booked"), unless they hold a slot there.
_DUE_OUTSIDE_BOOKED = (
    _DUE.where(
        or_(
            _OUTBOX.c.kind.not_in(bindparam("paced", expanding=True)),
            _CHANNEL.is_(None),
            _CHANNEL.not_in(bindparam("booked", expanding=True)),
            _OUTBOX.c.id.in_(bindparam("holding", expanding=True)),
        )
    )
    .order_by(*_DUE_ORDER)
    .limit(BATCH)
)
# The first pending item of each of these threads (found by the thread index, then read by its
# id) that the round has not read ("read"), as a round reads an item, with its due time and
# result (a lease's mark). One statement: read in two (which items, then the items), another
# replica's post could be made in between, and its item, done, was read as a first item not due
# until its lease's end; its thread's later posts were then put off to it (45 s late, in the
# replicas' resilience test in three runs of four). The items the round has read are left out
# in the statement: a round under a flood meets a hundred threads, nearly all of whose first
# items it has read.
_FIRST_PENDING = _with_channel(
    select(*_ROUND_COLUMNS, _OUTBOX.c.next_attempt_at, _OUTBOX.c.result).where(
        _OUTBOX.c.id.in_(
            select(func.min(_EARLIER.c.id))
            .where(
                _EARLIER.c.status == "pending",
                _EARLIER.c.thread_id.in_(bindparam("threads", expanding=True)),
            )
            .group_by(_EARLIER.c.thread_id)
        ),
        _OUTBOX.c.id.not_in(bindparam("read", expanding=True)),
    )
)
# The due posts for booked channels, to put off (`_park`).
_DUE_IN_BOOKED = (
    _with_channel(
        select(
            _OUTBOX.c.id,
            _OUTBOX.c.thread_id,
            _OUTBOX.c.created_at,
            _OUTBOX.c.next_attempt_at,
            _CHANNEL.label("channel"),
        ).where(
            _PENDING,
            _OUTBOX.c.next_attempt_at <= bindparam("now"),
            _OUTBOX.c.kind.in_(bindparam("paced", expanding=True)),
            _CHANNEL.in_(bindparam("booked", expanding=True)),
        )
    )
    .order_by(*_DUE_ORDER)
    .limit(PARK_BATCH)
)
# Put off a post for a booked channel until its slot, if it is still pending and due.
_PARK = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("item"),
        _PENDING,
        _OUTBOX.c.next_attempt_at <= bindparam("due_by"),
    )
    .values(next_attempt_at=bindparam("until"))
)
# A thread's later items not due before its earlier one, which was told to wait until `until`.
_KEEP_BEHIND = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.thread_id == bindparam("thread"),
        _PENDING,
        _OUTBOX.c.id > bindparam("item"),
        _OUTBOX.c.next_attempt_at < bindparam("until"),
    )
    .values(next_attempt_at=bindparam("until"))
)
# When the next item falls due, of those not due at the last round.
_NEXT_DUE = select(func.min(_OUTBOX.c.next_attempt_at)).where(
    _PENDING, _OUTBOX.c.next_attempt_at > bindparam("round_due")
)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with full jitter: up to 2, 4, 8 ... seconds, capped at 10 minutes."""
    return timedelta(seconds=random.uniform(0.5, min(600.0, 2.0**attempts)))


async def lease(
    session: AsyncSession, item: Attempt, now: datetime, hold: timedelta = LEASE
) -> None:
    """Commit, before a call that cannot be taken back, that it may have been made: `result`
    says so (the next attempt looks before calling again) and no worker takes the item for
    `hold`. This commits the performer's session: its reads come before, its writes after."""
    item.result = {"uncertain": True}
    item.next_attempt_at = now + hold
    await session.execute(
        _LEASE, {"item": item.id, "result": item.result, "until": item.next_attempt_at}
    )
    await session.commit()


def _stop_if_cancelled() -> None:
    """Stop a task asked to stop whose cancellation came back as another error: SQLAlchemy
    turns one that lands in a query into a PendingRollbackError, which a worker catching
    errors to carry on would otherwise take for a failed round, and never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _retry_after(exc: SlackApiError) -> float:
    headers = exc.response.headers if exc.response is not None else {}
    value = headers.get("Retry-After") or headers.get("retry-after") if headers else None
    try:
        return max(1.0, float(value)) if value else 1.0
    except (TypeError, ValueError):
        return 1.0


class DeliveryWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        performers: Mapping[str, Performer],
        *,
        clock: Clock,
        max_attempts: int,
        pacer: ChannelPacer | None = None,
        paced: frozenset[str] = frozenset(),
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._sessions = sessions
        self._busy = busy  # visitor messages are being written
        self._while_busy = asyncio.Semaphore(CONCURRENCY_WHILE_BUSY)
        self._pacer = pacer or ChannelPacer()  # nobody takes from a pacer of its own
        self._paced = paced  # the kinds that are posts, paced per channel (by the pacer)
        self._performers = performers
        self._clock = clock
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._round_due = clock()  # the last round took the items due by then
        self._analyzed = -ANALYZE_EVERY  # when this worker last refreshed the statistics

    @property
    def pacer(self) -> ChannelPacer:
        """The pace of posts per channel, for the writer of new posts in this process."""
        return self._pacer

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self, poll_interval: float) -> None:
        """Deliver whenever woken, and at least every `poll_interval` seconds for retries."""
        loop = asyncio.get_running_loop()
        started = -ROUND_GAP
        while True:
            await asyncio.sleep(max(0.0, started + ROUND_GAP - loop.time()))
            started = loop.time()
            try:
                await self.run_once()
            except Exception:
                _stop_if_cancelled()
                log.exception("delivery round failed")
            try:
                # Woken during the round (a batch of visitor messages, a full batch read): the
                # next round comes at once, and when the next item falls due is not needed.
                idle = 0.0 if self._wake.is_set() else await self._idle(poll_interval)
            except Exception:
                _stop_if_cancelled()
                log.exception("could not read when the next delivery is due")
                idle = poll_interval
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=idle)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _idle(self, poll_interval: float) -> float:
        """How long to sleep: until the next item falls due (a paced post, a retry), at most
        `poll_interval` (other replicas add rows too); not at all when one fell due during the
        last round. Items due before it and still pending wait for an earlier one: they go in
        the round that delivers the earlier one."""
        async with self._sessions() as session:
            due = await session.scalar(_NEXT_DUE, {"round_due": self._round_due})
        # Posts left unread for a booked channel are read again when it has a free slot.
        poll_interval = min([poll_interval, *self._pacer.booked(0.0).channels.values()])
        if due is None:
            return poll_interval
        return min(poll_interval, max(0.0, (due - self._clock()).total_seconds()))

    async def run_once(self) -> int:
        """One pass over the due items; returns how many were delivered. Each thread's items
        form a lane, delivered in order; up to CONCURRENCY lanes go at once."""
        async with self._lock:
            now = self._round_due = self._clock()
            booked = self._pacer.booked(0.0)
            read, lanes = await self._lanes(now, booked)
            slots = asyncio.Semaphore(CONCURRENCY)
            delivered = await asyncio.gather(
                *(self._lane(lane, slots, booked.holding) for lane in lanes)
            )
            if read == BATCH:
                self._wake.set()
                await self._refresh_statistics()
            return sum(delivered)

    async def _refresh_statistics(self) -> None:
        """Let PostgreSQL's planner see a backlog. Autovacuum refreshes a table's statistics
        once a tenth of it has changed, looking at each database once a minute (and never where
        it is off); the pending rows are a sliver of an outbox that has delivered for a while,
        and unknown in a new one, so under a flood the planner takes the due rows for a few
        dozen. A round then reads, sorts and joins every due row to find a batch instead of
        walking the due index (21-41 ms a read at 20,000 due posts, against 0.4-1 ms with the
        statistics), and each post's take runs its check for an earlier pending post over the
        backlog (6 ms against 0.1)."""
        started = time.monotonic()
        if started - self._analyzed < ANALYZE_EVERY:
            return
        self._analyzed = started
        async with self._sessions() as session:
            if session.bind.dialect.name != "postgresql":
                return
            await session.execute(text(f"ANALYZE {OutboxItem.__tablename__}"))
            await session.commit()

    async def _lanes(self, now: datetime, booked: Booked) -> tuple[int, list[list[Row[Any]]]]:
        """How many due items were read (at most BATCH), and those worth trying, by lane. A
        thread whose first pending item is not due (a paced post, a retry, a post under way)
        waits whole.

        Slack takes about one post per second per channel, and a busy site has many chats (each
        its own thread) in a rep's DM: a round starts one thread per channel, and posts to a
        channel the pacer has booked are not read at all, unless they hold a slot. Under a flood
        of visitor messages they would otherwise each be tried and told to wait, round after
        round, taking the process's time from accepting messages for no post made sooner. They
        are put off instead (`_park`), so that a round reads only what is due, however long
        the backlog."""
        values = self._booked_values(booked) if booked.channels else {}
        await self._park(now, booked, values)
        async with self._sessions() as session:
            query = _DUE_OUTSIDE_BOOKED if booked.channels else _DUE_ANYWHERE
            rows: list[Row[Any]] = list(await session.execute(query, {"now": now, **values}))
            read = len(rows)
            waiting = await self._first_items(session, now, rows)
        skipped = set(waiting)
        await self._put_behind_first(waiting)
        rows.sort(key=lambda row: row.id)  # a thread's items in order of id
        started: dict[str, int] = {}  # channel: the thread this round starts in it
        lanes: dict[int | tuple[str, str | None], list[Row[Any]]] = {}
        for row in rows:
            if row.thread_id is None:
                lane: int | tuple[str, str | None] = (row.kind, row.conversation_id)
            elif row.thread_id in skipped:
                continue  # after an item of its thread that is not due, or not started
            elif (
                row.channel is not None
                and row.kind in self._paced
                and row.id not in booked.holding
                and started.setdefault(row.channel, row.thread_id) != row.thread_id
            ):
                skipped.add(row.thread_id)  # its channel's post this round is another's
                continue
            else:
                lane = row.thread_id
            lanes.setdefault(lane, []).append(row)
        return read, list(lanes.values())

    async def _first_items(
        self, session: AsyncSession, now: datetime, rows: list[Row[Any]]
    ) -> dict[int, Row[Any]]:
        """Add to `rows` the first pending item of each of their threads that they lack, if
        it is due; returns the threads whose first item is not due (they wait whole), with
        that item. Items are read in order of due time, a batch at a time, and a thread's later
        items can be due before its first (written due while it waited for its slot, say): the
        first would then be behind them, outside the batch, and the round would try only items
        that must wait for it, round after round."""
        threads = sorted({row.thread_id for row in rows} - {None})
        if not threads:
            return {}
        read = sorted(row.id for row in rows)
        waiting: dict[int, Row[Any]] = {}
        for item in await session.execute(_FIRST_PENDING, {"threads": threads, "read": read}):
            if item.next_attempt_at <= now:
                rows.append(item)
            else:
                waiting[item.thread_id] = item
        return waiting

    async def _put_behind_first(self, waiting: Mapping[int, Row[Any]]) -> None:
        """Make the due items of threads whose first item is not due due with it, unless that
        item is leased (its call under way: the items go as soon as it is done). Left due, they
        would be read round after round, ahead of every item due after them, and none can go:
        with the benchmark's 40 reps, once a flood had put each chat's first post off to its
        rep's slot minutes ahead and the reps' own pacing had room again, the chats' later
        messages were posted nowhere and filled each round's batch (a full run's second half
        made no post at all)."""
        behind = [
            {"thread": thread, "item": item.id, "until": item.next_attempt_at}
            for thread, item in waiting.items()
            if not (item.result or {}).get("uncertain")
        ]
        if behind:
            async with self._sessions() as session, session.begin():
                await session.execute(_KEEP_BEHIND, behind)

    def _booked_values(self, booked: Booked) -> dict[str, list[Any]]:
        """The values of `_DUE_OUTSIDE_BOOKED` and `_DUE_IN_BOOKED` for these bookings (a
        round's two reads share them)."""
        return {
            "paced": sorted(self._paced),
            "booked": sorted(booked.channels),
            "holding": sorted(booked.holding),
        }

    async def _park(self, now: datetime, booked: Booked, values: dict[str, list[Any]]) -> None:
        """Put off the due posts for booked channels until their slots come, as the pacer
        reckons them: posts written since the last round behind those already waiting (one a
        slot, in order of arrival), posts back at their slot to find it taken in front. Each
        thread keeps its order (its later posts get later slots; a post is never taken before
        an earlier one of its thread anyway)."""
        if not booked.channels:
            return
        async with self._sessions() as session, session.begin():
            rows = (await session.execute(_DUE_IN_BOOKED, {"now": now, **values})).all()
            if len(rows) == PARK_BATCH:
                self._wake.set()  # more to put off: the next round goes on with them
            waiting: dict[tuple[str, bool], list[Row[Any]]] = {}
            for row in sorted(rows, key=lambda row: row.id):
                if row.id not in booked.holding:
                    queued = row.next_attempt_at <= row.created_at  # never put off before
                    waiting.setdefault((row.channel, queued), []).append(row)
            if not waiting:
                return
            parked = []
            behind: dict[int, tuple[int, datetime]] = {}  # thread: last item put off, latest slot
            for (channel_id, queued), items in waiting.items():
                waits = self._pacer.slots(channel_id, len(items), queued=queued)
                for row, wait in zip(items, waits, strict=True):
                    until = now + timedelta(seconds=wait)
                    parked.append({"item": row.id, "due_by": now, "until": until})
                    if row.thread_id is not None:
                        item, latest = behind.get(row.thread_id, (row.id, until))
                        behind[row.thread_id] = (max(item, row.id), max(latest, until))
            await session.execute(_PARK, parked)
            if behind:  # the threads' later posts, beyond this batch, behind these
                await session.execute(
                    _KEEP_BEHIND,
                    [
                        {"thread": thread, "item": item, "until": until}
                        for thread, (item, until) in behind.items()
                    ],
                )

    async def _lane(
        self, rows: list[Row[Any]], slots: asyncio.Semaphore, holding: frozenset[Hashable]
    ) -> int:
        """Deliver one lane's items in order. A failure outside the items' own (the database's)
        ends the lane and not the round: its items are tried again in the next one.

        A post whose channel has no free slot (its thread's earlier posts took them) is left
        for a later round, untried: tried, it would only be told to wait."""
        delivered = 0
        held: set[str] = set()  # kinds of a thread with an earlier item still pending
        async with slots:
            try:
                for row in rows:
                    key = f"{row.kind}:{row.conversation_id}:{row.thread_id}"
                    if key in held:
                        continue
                    if (
                        row.kind in self._paced
                        and row.channel is not None
                        and row.id not in holding
                        and not self._pacer.free(row.channel)
                    ):
                        held.add(key)
                        continue
                    async with self._while_busy if self._busy() else contextlib.nullcontext():
                        delivered += await self._deliver(row.id, key, held)
            except Exception:
                _stop_if_cancelled()
                log.exception("delivery of outbox items %s stopped", [row.id for row in rows])
        return delivered

    async def _deliver(self, item_id: int, key: str, held: set[str]) -> int:
        async with self._sessions() as session:
            delivered = await self._attempt(session, item_id, key, held)
            await session.commit()
        return delivered

    async def _attempt(self, session: AsyncSession, item_id: int, key: str, held: set[str]) -> int:
        # Not taken: an item another replica holds (its row lock, its lease), and one after an
        # item of its thread still pending (each thread's order is kept across replicas).
        taken = (await session.execute(_TAKE, {"item": item_id, "now": self._clock()})).first()
        if taken is None:
            held.add(key)
            return 0
        item = Attempt(*taken)
        before = item.state()
        bind_log_context(team=item.team_id, conversation=item.conversation_id)
        performer = self._performers.get(item.kind)
        if performer is None:
            self._failed(item, f"unknown outbox kind {item.kind!r}", self._clock(), permanent=True)
            await self._settle(session, item, before)
            return 0
        due = item.next_attempt_at
        try:
            await performer(session, item)
        except Exception as exc:
            if self._not_delivered(item, exc):
                held.add(key)
            await self._settle(session, item, before)
            await self._keep_behind(session, item, due)
            return 0
        item.status = "done"
        item.done_at = self._clock()
        await self._settle(session, item, before)
        if item.kind == "email":
            CHATS_EMAILED.inc()
        return 1

    @staticmethod
    async def _settle(session: AsyncSession, item: Attempt, before: tuple[Any, ...]) -> None:
        """Write what the attempt changed of the item (`lease` wrote what it changed before
        the call)."""
        state = item.state()
        if state != before:
            values = {f"new_{name}": value for name, value in zip(_STATE, state, strict=True)}
            await session.execute(_SETTLE, {"item": item.id, **values})

    async def _keep_behind(self, session: AsyncSession, item: Attempt, due: datetime) -> None:
        """An item told to wait takes its thread's later items with it. A round reads the
        earliest due items, a batch at a time, and none of a thread's can go before its first:
        left due before it, they would fill the batch round after round as items nobody can
        take, and the posts of other chats due behind them would never be read. (After a flood
        of visitor messages, each chat's first post told to wait for its rep's DM, the latency
        probe saw 18 posts made in 13 s where Slack allowed 40 a second.)"""
        if item.thread_id is not None and item.status == "pending" and item.next_attempt_at > due:
            await session.execute(
                _KEEP_BEHIND,
                {"thread": item.thread_id, "item": item.id, "until": item.next_attempt_at},
            )

    def _not_delivered(self, item: Attempt, exc: Exception) -> bool:
        """Record why the item was not delivered, timing any wait from now, after the attempt
        (a paced post is then tried when its slot comes, not before). Returns whether the
        thread's later items wait for it."""
        now = self._clock()
        match exc:
            case NotYet():
                return True
            case RetryLater():
                item.next_attempt_at = now + timedelta(seconds=exc.after)
                item.last_error = str(exc)
            case SlackApiError():
                error = slack_error(exc)
                if error == "ratelimited" or (exc.response and exc.response.status_code == 429):
                    item.next_attempt_at = now + timedelta(seconds=_retry_after(exc))
                    item.last_error = "ratelimited"
                    DELIVERY_RETRIES.labels(kind=item.kind).inc()
                else:
                    self._failed(item, error, now, permanent=error in PERMANENT_ERRORS)
            case Undeliverable():
                self._failed(item, str(exc), now, permanent=True)
                return False
            case MailError() | TimeoutError() | OSError() | httpx.HTTPError():
                self._failed(item, f"{type(exc).__name__}: {exc}", now)
            case _:
                # A bug or bad data in one item must not stop the others: it is retried and,
                # if it keeps failing, marked failed where admins see it.
                log.exception("delivery of outbox item %s raised", item.id)
                self._failed(item, f"{type(exc).__name__}: {exc}", now)
        return True

    def _failed(self, item: Attempt, error: str, now: datetime, *, permanent: bool = False) -> None:
        item.attempts += 1
        item.last_error = error
        if item.kind == "webhook":
            exhausted = now - item.created_at >= WEBHOOK_DEADLINE
        else:
            exhausted = item.attempts >= self._max_attempts
        if permanent or exhausted:
            item.status = "failed"
            DELIVERY_FAILURES.labels(kind=item.kind).inc()
            log.error(
                "delivery failed for good item=%s kind=%s conversation=%s error=%s",
                item.id,
                item.kind,
                item.conversation_id,
                error,
            )
        else:
            item.next_attempt_at = now + backoff(item.attempts)
            DELIVERY_RETRIES.labels(kind=item.kind).inc()
            log.warning(
                "delivery retry item=%s kind=%s attempt=%s error=%s",
                item.id,
                item.kind,
                item.attempts,
                error,
            )
