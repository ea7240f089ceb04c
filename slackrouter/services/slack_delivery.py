"""Posting chats to Slack from the outbox: a chat's parent message, then the visitor's later
messages into its thread.

Each post carries the outbox id in Slack's message metadata, and its item is leased before it is
posted (committed: the post may have been made). After an uncertain failure (a timeout or a 5xx,
when Slack may have posted it anyway), or a process killed while posting, the next attempt looks
in the channel for that id before posting again, so a retry does not show a second post.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import (
    Chatflow,
    Conversation,
    Message,
    OutboxItem,
    Rep,
    SlackThread,
)
from slackrouter.adapters.slack import blocks
from slackrouter.adapters.slack.gateway import SlackGateway, slack_error
from slackrouter.clock import Clock, utcnow
from slackrouter.services.delivery import (
    LEASE_FOR,
    Attempt,
    NotYet,
    RetryLater,
    Undeliverable,
    lease,
)
from slackrouter.services.pacing import ChannelPacer

log = logging.getLogger(__name__)

METADATA_EVENT = "slackrouter_post"

# The tables the posts read and write, as Core tables: a post's statements are built once and
# run without the ORM (see `Attempt`).
_THREADS = SlackThread.__table__
_REPS = Rep.__table__
_CONVERSATIONS = Conversation.__table__
_CHATFLOWS = Chatflow.__table__
_MESSAGES = Message.__table__

# What a chat's parent post says, from its thread: the conversation, its chatflow, its first
# message (the outbox item's, bound as "message") and the rep's DM if it was opened before.
_PARENT = (
    select(
        _THREADS.c.thread_ts,
        _THREADS.c.channel_id.label("thread_channel"),
        _THREADS.c.rep_user_id,
        _REPS.c.dm_channel_id,
        _CONVERSATIONS.c.visitor_name,
        _CONVERSATIONS.c.identity_verified,
        _CONVERSATIONS.c.page_url,
        _CONVERSATIONS.c.routing,
        _CONVERSATIONS.c.routing_outcome,
        _CHATFLOWS.c.name.label("chatflow_name"),
        _CHATFLOWS.c.channel_id.label("chatflow_channel"),
        _CHATFLOWS.c.note_mode,
        _CHATFLOWS.c.note_prefix,
        _MESSAGES.c.text,
    )
    .select_from(_THREADS)
    .join(_CONVERSATIONS, _CONVERSATIONS.c.id == _THREADS.c.conversation_id)
    .join(_CHATFLOWS, _CHATFLOWS.c.id == _CONVERSATIONS.c.chatflow_id)
    .outerjoin(_REPS, repo.THREAD_REP)
    .outerjoin(_MESSAGES, _MESSAGES.c.id == bindparam("message"))
    .where(_THREADS.c.id == bindparam("thread"))
)
# Where a later message goes: the chat's thread, who the visitor is, and the message.
_REPLY = (
    select(
        _THREADS.c.channel_id, _THREADS.c.thread_ts, _CONVERSATIONS.c.visitor_name, _MESSAGES.c.text
    )
    .join(_CONVERSATIONS, _CONVERSATIONS.c.id == _THREADS.c.conversation_id)
    .outerjoin(_MESSAGES, _MESSAGES.c.id == bindparam("message"))
    .where(_THREADS.c.id == bindparam("thread"))
)
# A thread's first post, made.
_POSTED = (
    update(_THREADS)
    .where(_THREADS.c.id == bindparam("thread"))
    .values(channel_id=bindparam("channel"), thread_ts=bindparam("ts"))
)
# A rep's DM, opened once and remembered.
_DM_OPENED = (
    update(_REPS)
    .where(_REPS.c.team_id == bindparam("team"), _REPS.c.user_id == bindparam("rep"))
    .values(dm_channel_id=bindparam("channel"))
)


def _uncertain(exc: BaseException) -> bool:
    """Did the call fail in a way that leaves open whether Slack posted the message?"""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or slack_error(exc) in {"internal_error", "fatal_error"}
    return isinstance(exc, (TimeoutError, OSError))


class SlackPoster:
    def __init__(self, slack: SlackGateway, pacer: ChannelPacer, *, clock: Clock = utcnow) -> None:
        self._slack = slack
        # A post is given up after the client's timeout, and leased for longer.
        self._call_timeout = slack.call_timeout
        self._lease = timedelta(seconds=self._call_timeout * LEASE_FOR)
        self._pacer = pacer
        self._clock = clock
        self._dms: dict[tuple[str, str], str] = {}  # (team, rep): their DM, opened here
        self._opening: dict[tuple[str, str], asyncio.Lock] = {}

    async def post_parent(self, session: AsyncSession, item: Attempt) -> None:
        # Every read comes before the Slack calls and every write after them: on SQLite the
        # first write takes the database's write lock, which must not wait on Slack. What the
        # post needs is read in one statement: a busy site makes dozens of posts a second.
        chat = (
            await session.execute(_PARENT, {"thread": item.thread_id, "message": item.message_id})
        ).one()
        if chat.thread_ts is not None:
            return
        channel = chat.thread_channel
        if channel is None and chat.rep_user_id is not None:
            channel = chat.dm_channel_id
            if channel is None:
                channel = await self._open_dm(item.team_id, chat.rep_user_id)
        assert channel is not None
        text, body = blocks.parent_message(
            chatflow_name=chat.chatflow_name,
            visitor_name=chat.visitor_name,
            identity_verified=chat.identity_verified,
            page_url=chat.page_url,
            text=chat.text or "",
            explanation=str(chat.routing.get("explanation", "")),
            mention=tuple((item.payload or {}).get("mention", ())),
            missed=chat.routing_outcome != "routed",
            note_hint=blocks.note_hint(chat.note_mode, chat.note_prefix),
        )
        ts = await self._post(session, item, channel, text, body, None)
        # The item's own changes are written with its status, after the call.
        await session.execute(_POSTED, {"thread": item.thread_id, "channel": channel, "ts": ts})
        if (
            chat.rep_user_id is not None
            and chat.dm_channel_id is None
            and channel != chat.chatflow_channel
        ):
            await session.execute(
                _DM_OPENED, {"team": item.team_id, "rep": chat.rep_user_id, "channel": channel}
            )

    async def post_reply(self, session: AsyncSession, item: Attempt) -> None:
        chat = (
            await session.execute(_REPLY, {"thread": item.thread_id, "message": item.message_id})
        ).one()
        if chat.thread_ts is None or chat.channel_id is None:
            if await self._parent_failed(session, item.thread_id):
                raise Undeliverable("the chat's first post to Slack failed")
            raise NotYet
        mention = tuple((item.payload or {}).get("mention", ()))
        if mention:
            # An escalated channel chat: the next reps are asked in its thread.
            text, body = blocks.offer_in_thread(mention=mention)
        else:
            text, body = blocks.visitor_reply(visitor_name=chat.visitor_name, text=chat.text or "")
        await self._post(session, item, chat.channel_id, text, body, chat.thread_ts)

    async def _post(
        self,
        session: AsyncSession,
        item: Attempt,
        channel: str,
        text: str,
        body: list[dict[str, Any]],
        thread_ts: str | None,
    ) -> str:
        slack = await self._slack.for_team(item.team_id)
        if (item.result or {}).get("uncertain"):
            found = await self._already_posted(slack, item, channel, thread_ts)
            if found is not None:
                log.info("outbox item %s was posted before its failure; not posting again", item.id)
                item.result = {"channel": channel, "ts": found, "found_after_failure": True}
                return found
        await lease(session, item, self._clock(), self._lease)
        # Paced after the lease, which may wait for SQLite's write lock: Slack counts the post
        # when it comes, and so must the pacer.
        wait = self._pacer.take(channel, item.id)
        if wait > 0:
            item.result = None
            raise RetryLater(wait, f"pacing posts to {channel}")
        try:
            async with asyncio.timeout(self._call_timeout):
                ts = await slack.post_message(
                    channel,
                    text=text,
                    blocks=body,
                    thread_ts=thread_ts,
                    metadata={
                        "event_type": METADATA_EVENT,
                        "event_payload": {"outbox_id": item.id},
                    },
                )
        except (SlackApiError, TimeoutError, OSError) as exc:
            if not _uncertain(exc):
                item.result = None  # Slack refused it: nothing was posted
                self._pacer.refused(channel)
            raise
        item.result = {"channel": channel, "ts": ts}
        return ts

    async def _open_dm(self, team_id: str, user_id: str) -> str:
        """The rep's DM, opened once however many of their chats are posted at the same time
        (each remembers it only when its post is recorded)."""
        key = (team_id, user_id)
        async with self._opening.setdefault(key, asyncio.Lock()):
            if key not in self._dms:
                slack = await self._slack.for_team(team_id)
                self._dms[key] = await slack.open_dm(user_id)
            return self._dms[key]

    @staticmethod
    async def _already_posted(
        slack: SlackGateway, item: Attempt, channel: str, thread_ts: str | None
    ) -> str | None:
        for message in await slack.recent_messages(channel, thread_ts=thread_ts):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == METADATA_EVENT and payload.get("outbox_id") == item.id:
                return str(message["ts"])
        return None

    @staticmethod
    async def _parent_failed(session: AsyncSession, thread_id: int | None) -> bool:
        status = await session.scalar(
            select(OutboxItem.status).where(
                OutboxItem.thread_id == thread_id, OutboxItem.kind == "post_parent"
            )
        )
        return status == "failed"
