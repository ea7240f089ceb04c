"""Deliver the outbox: each row is work owed to the outside world (a Slack post, an email, a
webhook call), written in the transaction that caused it. Workers claim due rows (SKIP LOCKED on
PostgreSQL, so several replicas share them), keep each thread's order, retry with backoff and
jitter, honour pacing and Retry-After without spending attempts, and mark a row failed at last.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

import httpx
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import OutboxItem
from slackrouter.adapters.mail import MailError
from slackrouter.adapters.slack.gateway import PERMANENT_ERRORS, slack_error
from slackrouter.clock import Clock
from slackrouter.observability import (
    CHATS_EMAILED,
    DELIVERY_FAILURES,
    DELIVERY_RETRIES,
    bind_log_context,
)

log = logging.getLogger(__name__)

BATCH = 100
# A website that is down is tried for this long before its webhook is marked failed.
WEBHOOK_DEADLINE = timedelta(days=1)

Performer = Callable[[AsyncSession, OutboxItem], Awaitable[None]]


class NotYet(Exception):
    """The item waits for an earlier one (a reply for a thread whose parent is not posted)."""


class RetryLater(Exception):
    """Not a failure: wait `after` seconds (pacing, Slack's Retry-After) and try again."""

    def __init__(self, after: float, reason: str) -> None:
        super().__init__(reason)
        self.after = after


class Undeliverable(Exception):
    """No retry can deliver this item (e.g. the rep to email has no address)."""


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with full jitter: up to 2, 4, 8 ... seconds, capped at 10 minutes."""
    return timedelta(seconds=random.uniform(0.5, min(600.0, 2.0**attempts)))


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
    ) -> None:
        self._sessions = sessions
        self._performers = performers
        self._clock = clock
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self, poll_interval: float) -> None:
        """Deliver whenever woken, and at least every `poll_interval` seconds for retries."""
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("delivery round failed")
            try:
                idle = await self._idle(poll_interval)
            except Exception:
                log.exception("could not read when the next delivery is due")
                idle = poll_interval
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=idle)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _idle(self, poll_interval: float) -> float:
        """How long to sleep: until the next item falls due (a paced post, a retry), at most
        `poll_interval` (other replicas add rows too). Items already due but waiting for an
        earlier one go in the round that delivers the earlier one."""
        now = self._clock()
        async with self._sessions() as session:
            due = await session.scalar(
                select(func.min(OutboxItem.next_attempt_at)).where(
                    OutboxItem.status == "pending", OutboxItem.next_attempt_at > now
                )
            )
        if due is None:
            return poll_interval
        return min(poll_interval, max(0.01, (due - now).total_seconds()))

    async def run_once(self) -> int:
        """One pass over the due items; returns how many were delivered."""
        async with self._lock:
            now = self._clock()
            async with self._sessions() as session:
                ids = list(
                    await session.scalars(
                        select(OutboxItem.id)
                        .where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now)
                        .order_by(OutboxItem.id)
                        .limit(BATCH)
                    )
                )
            delivered = 0
            held: set[str] = set()  # threads with an earlier item still pending
            for item_id in ids:
                delivered += await self._deliver(item_id, held)
            if len(ids) == BATCH:
                self._wake.set()
            return delivered

    async def _deliver(self, item_id: int, held: set[str]) -> int:
        async with self._sessions() as session, session.begin():
            # Another replica working on this item holds its lock: skip it, it is theirs.
            item = await session.scalar(
                select(OutboxItem)
                .where(OutboxItem.id == item_id, OutboxItem.status == "pending")
                .with_for_update(skip_locked=True)
            )
            if item is None:
                return 0
            bind_log_context(team=item.team_id, conversation=item.conversation_id)
            key = f"{item.kind}:{item.conversation_id}:{item.thread_id}"
            if key in held or await self._earlier_pending(session, item):
                held.add(key)
                return 0
            now = self._clock()
            performer = self._performers.get(item.kind)
            if performer is None:
                self._failed(item, f"unknown outbox kind {item.kind!r}", now, permanent=True)
                return 0
            try:
                await performer(session, item)
            except NotYet:
                held.add(key)
                return 0
            except RetryLater as wait:
                held.add(key)
                item.next_attempt_at = now + timedelta(seconds=wait.after)
                item.last_error = str(wait)
                return 0
            except SlackApiError as exc:
                held.add(key)
                error = slack_error(exc)
                if error == "ratelimited" or (exc.response and exc.response.status_code == 429):
                    item.next_attempt_at = now + timedelta(seconds=_retry_after(exc))
                    item.last_error = "ratelimited"
                    DELIVERY_RETRIES.labels(kind=item.kind).inc()
                else:
                    self._failed(item, error, now, permanent=error in PERMANENT_ERRORS)
                return 0
            except Undeliverable as exc:
                self._failed(item, str(exc), now, permanent=True)
                return 0
            except (MailError, TimeoutError, OSError, httpx.HTTPError) as exc:
                held.add(key)
                self._failed(item, f"{type(exc).__name__}: {exc}", now)
                return 0
            except Exception as exc:
                # A bug or bad data in one item must not stop the others: it is retried and,
                # if it keeps failing, marked failed where admins see it.
                log.exception("delivery of outbox item %s raised", item.id)
                held.add(key)
                self._failed(item, f"{type(exc).__name__}: {exc}", now)
                return 0
            item.status = "done"
            item.done_at = now
            if item.kind == "email":
                CHATS_EMAILED.inc()
            return 1

    @staticmethod
    async def _earlier_pending(session: AsyncSession, item: OutboxItem) -> bool:
        """Keep a thread's order across replicas: an earlier pending post goes first."""
        if item.thread_id is None:
            return False
        earlier = await session.scalar(
            select(OutboxItem.id)
            .where(
                OutboxItem.thread_id == item.thread_id,
                OutboxItem.status == "pending",
                OutboxItem.id < item.id,
            )
            .limit(1)
        )
        return earlier is not None

    def _failed(
        self, item: OutboxItem, error: str, now: datetime, *, permanent: bool = False
    ) -> None:
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
