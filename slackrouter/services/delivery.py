"""Deliver the outbox to Slack: post each chat's parent message, then the visitor's later messages
into its thread, in order, retrying with backoff and jitter until done or failed."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import (
    Chatflow,
    Conversation,
    Message,
    OutboxItem,
    Rep,
    SlackThread,
)
from slackrouter.adapters.mail import Mailer, MailError
from slackrouter.adapters.mail_render import TranscriptLine, chat_email
from slackrouter.adapters.slack import blocks
from slackrouter.adapters.slack.gateway import PERMANENT_ERRORS, SlackGateway, slack_error
from slackrouter.clock import Clock

log = logging.getLogger(__name__)

BATCH = 100


class Undeliverable(Exception):
    """No retry can deliver this item (e.g. the rep to email has no address)."""


class NotYet(Exception):
    """The item waits for an earlier one (a reply for a thread whose parent is not posted)."""


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with full jitter: up to 2, 4, 8 ... seconds, capped at 10 minutes."""
    return timedelta(seconds=random.uniform(0.5, min(600.0, 2.0**attempts)))


class DeliveryWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        slack: SlackGateway,
        mailer: Mailer,
        *,
        clock: Clock,
        max_attempts: int,
        mail_from: str,
    ) -> None:
        self._sessions = sessions
        self._slack = slack
        self._mailer = mailer
        self._mail_from = mail_from
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
                await asyncio.wait_for(self._wake.wait(), timeout=poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()

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
            held: set[str] = set()  # conversations with an earlier item still pending
            for item_id in ids:
                delivered += await self._deliver(item_id, held)
            if len(ids) == BATCH:
                self._wake.set()
            return delivered

    async def _deliver(self, item_id: int, held: set[str]) -> int:
        async with self._sessions() as session, session.begin():
            item = await session.get_one(OutboxItem, item_id)
            if item.status != "pending":
                return 0
            key = f"{item.conversation_id}:{item.thread_id}"
            if key in held:
                return 0
            now = self._clock()
            try:
                await self._perform(session, item)
            except NotYet:
                held.add(key)
                return 0
            except SlackApiError as exc:
                held.add(key)
                self._failed_attempt(item, slack_error(exc), now)
                return 0
            except Undeliverable as exc:
                self._failed_attempt(item, str(exc), now, permanent=True)
                return 0
            except MailError as exc:
                held.add(key)
                self._failed_attempt(item, f"mail: {exc}", now)
                return 0
            except (TimeoutError, OSError) as exc:
                held.add(key)
                self._failed_attempt(item, f"{type(exc).__name__}: {exc}", now)
                return 0
            item.status = "done"
            item.done_at = now
            return 1

    def _failed_attempt(
        self, item: OutboxItem, error: str, now: datetime, *, permanent: bool = False
    ) -> None:
        item.attempts += 1
        item.last_error = error
        if permanent or error in PERMANENT_ERRORS or item.attempts >= self._max_attempts:
            item.status = "failed"
            log.error(
                "delivery failed for good item=%s kind=%s conversation=%s error=%s",
                item.id,
                item.kind,
                item.conversation_id,
                error,
            )
        else:
            item.next_attempt_at = now + backoff(item.attempts)
            log.warning(
                "delivery retry item=%s kind=%s attempt=%s error=%s",
                item.id,
                item.kind,
                item.attempts,
                error,
            )

    async def _perform(self, session: AsyncSession, item: OutboxItem) -> None:
        if item.kind == "email":
            await self._email(session, item)
            return
        thread = await session.get_one(SlackThread, item.thread_id)
        message = await session.get_one(Message, item.message_id)
        conversation = await session.get_one(Conversation, thread.conversation_id)
        if item.kind == "post_parent":
            if thread.thread_ts is not None:
                return
            if thread.channel_id is None and thread.rep_user_id is not None:
                thread.channel_id = await self._dm_channel(session, thread)
            chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
            text, body = blocks.parent_message(
                chatflow_name=chatflow.name,
                visitor_name=conversation.visitor_name,
                identity_verified=conversation.identity_verified,
                page_url=conversation.page_url,
                text=message.text,
                explanation=str(conversation.routing.get("explanation", "")),
                mention=tuple((item.payload or {}).get("mention", ())),
                missed=conversation.routing_outcome != "routed",
            )
            assert thread.channel_id is not None
            ts = await self._slack.post_message(thread.channel_id, text=text, blocks=body)
            thread.thread_ts = ts
            item.result = {"channel": thread.channel_id, "ts": ts}
        elif item.kind == "post_reply":
            if thread.thread_ts is None or thread.channel_id is None:
                raise NotYet
            text, body = blocks.visitor_reply(
                visitor_name=conversation.visitor_name, text=message.text
            )
            ts = await self._slack.post_message(
                thread.channel_id, text=text, blocks=body, thread_ts=thread.thread_ts
            )
            item.result = {"channel": thread.channel_id, "ts": ts}
        else:
            raise ValueError(f"unknown outbox kind {item.kind!r}")

    async def _email(self, session: AsyncSession, item: OutboxItem) -> None:
        """Email the chat so far to the rep who follows it up (owner or offline fallback)."""
        payload = item.payload or {}
        conversation = await session.get_one(Conversation, item.conversation_id)
        chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
        to_user = str(payload["to_user"])
        rep = await session.get(Rep, (conversation.team_id, to_user))
        address = rep.email if rep is not None else None
        if not address:
            profile = await self._slack.profile(to_user)
            address = profile.email
        if not address:
            raise Undeliverable(f"{to_user} has no email address in Slack")
        messages = await session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conversation.id,
                Message.author.in_(("visitor", "rep")),
                Message.deleted.is_(False),
            )
            .order_by(Message.id)
        )
        transcript = [
            TranscriptLine(
                author="Visitor" if m.author == "visitor" else "Rep",
                text=m.text,
                sent_at=m.created_at,
            )
            for m in messages
        ]
        email = chat_email(
            to=address,
            sender=self._mail_from,
            chatflow_name=chatflow.name,
            visitor_name=conversation.visitor_name,
            visitor_email=conversation.visitor_email,
            identity_verified=conversation.identity_verified,
            page_url=conversation.page_url,
            transcript=transcript,
            reason=str(payload.get("reason") or "Nobody was available"),
            conversation_id=conversation.id,
            domain=self._mail_from.rsplit("@", 1)[-1].strip(">").strip() or "localhost",
        )
        await self._mailer.send(email)
        item.result = {"to": address}
        log.info("emailed conversation=%s to=%s", conversation.id, to_user)

    async def _dm_channel(self, session: AsyncSession, thread: SlackThread) -> str:
        """The rep's DM with the app, opened once and remembered."""
        assert thread.rep_user_id is not None
        rep = await session.get(Rep, (thread.team_id, thread.rep_user_id))
        if rep is not None and rep.dm_channel_id:
            return rep.dm_channel_id
        channel = await self._slack.open_dm(thread.rep_user_id)
        if rep is not None:
            rep.dm_channel_id = channel
        return channel
