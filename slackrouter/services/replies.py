"""Relay reps' thread replies to the visitor: new replies, edits and deletions.

Slack's event retries carry the same message `ts`, which the messages table holds unique, so a
retried event never delivers a reply twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import (
    Chatflow,
    Conversation,
    FeedItem,
    Message,
    OutboxItem,
    Rep,
    SlackThread,
)
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.adapters.slack.text import slack_to_visitor_text, user_ids_in
from slackrouter.clock import Clock
from slackrouter.observability import REPLIES_RELAYED, bind_log_context
from slackrouter.services import followups
from slackrouter.services.chat_updates import queue_parent_updates
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.webhooks import queue_webhook

log = logging.getLogger(__name__)

# How long to wait before looking again for the chat of a reply whose thread may still be
# being posted (see `Replies.relay`): 1.5 s in all, within the 3 s Slack gives an event.
PARENT_POST_WAITS = (0.1, 0.2, 0.4, 0.8)
_PARENT_POSTING = "parent_posting"
# A chat's parent post not delivered yet, in the reply's channel or to the replying rep's DM.
_PARENT_POSTING_FOR = (
    select(OutboxItem.id)
    .join(SlackThread, SlackThread.id == OutboxItem.thread_id)
    .where(
        OutboxItem.kind == "post_parent",
        OutboxItem.status == "pending",
        SlackThread.team_id == bindparam("team"),
        SlackThread.thread_ts.is_(None),
        (SlackThread.channel_id == bindparam("channel"))
        | (SlackThread.rep_user_id == bindparam("rep")),
    )
    .limit(1)
)


# A rep who writes in a thread is active: written down at most this often per rep, which keeps
# their presence fresh (PRESENCE_MAX_AGE, a minute by default) while they keep answering.
SEEN_ACTIVE_EVERY = timedelta(seconds=10)


@dataclass(frozen=True)
class RepMessage:
    team_id: str
    channel: str
    thread_ts: str
    ts: str
    user_id: str
    text: str


class Replies:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifier: FeedNotifier,
        slack: SlackGateway,
        *,
        clock: Clock,
        on_outbox: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._notifier = notifier
        self._slack = slack
        self._clock = clock
        self._on_outbox = on_outbox
        self._seen_active: dict[tuple[str, str], datetime] = {}

    async def relay(self, reply: RepMessage) -> str:
        """Store a rep's thread reply for the visitor; returns what was done (for logs).

        A reply can reach the app before the post it answers is written down as the chat's
        thread: Slack answers the post, the rep (or the sandbox) answers at once, and the
        delivery worker's commit of the thread's `ts` comes after. While a parent post is being
        delivered in the reply's channel (or to the replying rep's DM), the reply is looked at
        again a few times over a second and a half; Slack's event, answered, is not sent again."""
        outcome = await self._relay_once(reply)
        for wait in PARENT_POST_WAITS:
            if outcome != _PARENT_POSTING:
                return outcome
            await asyncio.sleep(wait)
            outcome = await self._relay_once(reply)
        return "not_a_chat" if outcome == _PARENT_POSTING else outcome

    async def _relay_once(self, reply: RepMessage) -> str:
        """Relay `reply` if its thread is a chat's; it reads columns rather than ORM objects and
        writes with plain inserts: two inserts and a commit in the common case."""
        now = self._clock()
        try:
            async with self._sessions() as session, session.begin():
                chat = await _chat_at_thread(session, reply)
                if chat is None:
                    posting = await session.scalar(
                        _PARENT_POSTING_FOR,
                        {"team": reply.team_id, "channel": reply.channel, "rep": reply.user_id},
                    )
                    if posting:
                        return _PARENT_POSTING
                    # Each read sees what was committed when it ran: a parent post committed
                    # between the two reads shows in neither. Looked for again, it shows.
                    chat = await _chat_at_thread(session, reply)
                    if chat is None:
                        return "not_a_chat"
                # In reverse mode every thread message is a note ("Send to visitor" sends one),
                # so a slip never reaches the visitor; nothing reaches a closed chat's visitor.
                is_note = (
                    chat.note_mode == "reverse"
                    or chat.status != "open"
                    or reply.text.lstrip().startswith(chat.note_prefix)
                )
                text = reply.text if is_note else await self._plain(session, reply)
                inserted = await session.execute(  # a retried event stops here: the ts is taken
                    _INSERT_MESSAGE,
                    {
                        "team_id": reply.team_id,
                        "conversation_id": chat.conversation_id,
                        "author": "note" if is_note else "rep",
                        "rep_user_id": reply.user_id,
                        "text": text,
                        "slack_channel": reply.channel,
                        "slack_ts": reply.ts,
                        "created_at": now,
                    },
                )
                await self._saw_active(session, reply.team_id, reply.user_id, now)
                if is_note:
                    return "note"
                message_id = inserted.inserted_primary_key[0]
                first_answer = chat.assignee is None
                if first_answer:
                    await self._first_answer(session, chat.conversation_id, reply.user_id, now)
                await session.execute(
                    _INSERT_FEED, repo.feed_row(chat.conversation_id, message_id, "message", now)
                )
                webhook = queue_webhook(
                    session,
                    team_id=reply.team_id,
                    webhook_url=chat.webhook_url,
                    conversation_id=chat.conversation_id,
                    event="message",
                    message_id=message_id,
                    now=now,
                )
        except IntegrityError:
            return "duplicate"
        if first_answer or webhook:
            self._on_outbox()  # there is outbox work to do
        self._notifier.notify(chat.conversation_id)
        REPLIES_RELAYED.inc()
        bind_log_context(conversation=chat.conversation_id)
        log.info("relayed reply conversation=%s rep=%s", chat.conversation_id, reply.user_id)
        return "relayed"

    @staticmethod
    async def _first_answer(
        session: AsyncSession, conversation_id: str, user_id: str, now: datetime
    ) -> None:
        """In "all" mode the first rep to answer owns the chat; follow-ups stop."""
        conversation = await session.get_one(Conversation, conversation_id)
        conversation.assignee = user_id
        await followups.cancel(
            session, conversation.id, followups.ESCALATION, followups.OFFLINE_EMAIL
        )
        await queue_parent_updates(session, conversation, now)

    async def edit(self, reply: RepMessage) -> str:
        """A rep edited a reply: the visitor's copy changes (a note stays a note)."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            message = await repo.message_at(session, reply.team_id, reply.channel, reply.ts)
            if message is None or message.author != "rep" or message.deleted:
                return "ignored"
            message.text = await self._plain(session, reply)
            message.edited_at = now
            repo.add_feed(session, message, "message_changed", now)
            conversation_id = message.conversation_id
        self._notifier.notify(conversation_id)
        return "edited"

    async def delete(self, *, team_id: str, channel: str, ts: str) -> str:
        """A rep deleted a reply: it is withdrawn from the visitor's view."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            message = await repo.message_at(session, team_id, channel, ts)
            if message is None or message.author != "rep" or message.deleted:
                return "ignored"
            message.deleted = True
            message.edited_at = now
            repo.add_feed(session, message, "message_deleted", now)
            conversation_id = message.conversation_id
        self._notifier.notify(conversation_id)
        return "deleted"

    async def _plain(self, session: AsyncSession, reply: RepMessage) -> str:
        names = await self.display_names(session, reply.team_id, user_ids_in(reply.text))
        return slack_to_visitor_text(reply.text, names)

    async def display_names(
        self, session: AsyncSession, team_id: str, user_ids: set[str]
    ) -> dict[str, str]:
        """Names for mentioned users: known reps from the database, others from `users.info`."""
        reps = await repo.reps_by_id(session, team_id, user_ids)
        names = {uid: rep.name for uid, rep in reps.items() if rep.name}
        for user_id in sorted(user_ids - names.keys()):
            try:
                slack = await self._slack.for_team(team_id)
                names[user_id] = (await slack.profile(user_id)).name
            except Exception:  # a name is a nicety; the reply still goes out
                log.warning("could not look up the name of %s", user_id)
        return names

    async def _saw_active(
        self, session: AsyncSession, team_id: str, user_id: str, now: datetime
    ) -> None:
        """A rep who just wrote in Slack is active: fresher than any poll."""
        seen = self._seen_active.get((team_id, user_id))
        if seen is not None and now - seen < SEEN_ACTIVE_EVERY:
            return
        self._seen_active[(team_id, user_id)] = now
        await session.execute(
            _SAW_ACTIVE, {"rep_team": team_id, "rep_user": user_id, "seen_at": now}
        )


async def _chat_at_thread(session: AsyncSession, reply: RepMessage) -> Row[Any] | None:
    return (
        await session.execute(
            _CHAT_AT_THREAD,
            {
                "thread_team": reply.team_id,
                "thread_channel": reply.channel,
                "thread_ts": reply.thread_ts,
            },
        )
    ).first()


# The chat a thread reply belongs to and its chatflow's settings: one query on every reply.
_CHAT_AT_THREAD = (
    select(
        Conversation.id.label("conversation_id"),
        Conversation.status,
        Conversation.assignee,
        Chatflow.note_mode,
        Chatflow.note_prefix,
        Chatflow.webhook_url,
    )
    .join(SlackThread, SlackThread.conversation_id == Conversation.id)
    .join(Chatflow, Chatflow.id == Conversation.chatflow_id)
    .where(
        SlackThread.team_id == bindparam("thread_team"),
        SlackThread.channel_id == bindparam("thread_channel"),
        SlackThread.thread_ts == bindparam("thread_ts"),
    )
)
_INSERT_MESSAGE = insert(Message.__table__)
_INSERT_FEED = insert(FeedItem.__table__)
_SAW_ACTIVE = (
    update(Rep)
    .where(Rep.team_id == bindparam("rep_team"), Rep.user_id == bindparam("rep_user"))
    .values(presence="active", presence_checked_at=bindparam("seen_at"))
    .execution_options(synchronize_session=False)
)
