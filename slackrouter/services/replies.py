"""Relay reps' thread replies to the visitor: new replies, edits and deletions.

Slack's event retries carry the same message `ts`, which the messages table holds unique, so a
retried event never delivers a reply twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Conversation, Message, Rep
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.adapters.slack.text import slack_to_visitor_text, user_ids_in
from slackrouter.clock import Clock
from slackrouter.observability import REPLIES_RELAYED, bind_log_context
from slackrouter.services import followups
from slackrouter.services.chat_updates import queue_parent_updates
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.webhooks import queue_webhook

log = logging.getLogger(__name__)


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

    async def relay(self, reply: RepMessage) -> str:
        """Store a rep's thread reply for the visitor; returns what was done (for logs)."""
        now = self._clock()
        try:
            async with self._sessions() as session, session.begin():
                thread = await repo.thread_at(
                    session, reply.team_id, reply.channel, reply.thread_ts
                )
                if thread is None:
                    return "not_a_chat"
                conversation = await session.get_one(Conversation, thread.conversation_id)
                chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
                await self._saw_active(session, reply.team_id, reply.user_id, now)
                # In reverse mode every thread message is a note ("Send to visitor" sends one),
                # so a slip never reaches the visitor; nothing reaches a closed chat's visitor.
                is_note = (
                    chatflow.note_mode == "reverse"
                    or conversation.status != "open"
                    or reply.text.lstrip().startswith(chatflow.note_prefix)
                )
                text = reply.text if is_note else await self._plain(session, reply)
                message = Message(
                    team_id=reply.team_id,
                    conversation_id=conversation.id,
                    author="note" if is_note else "rep",
                    rep_user_id=reply.user_id,
                    text=text,
                    slack_channel=reply.channel,
                    slack_ts=reply.ts,
                    created_at=now,
                )
                session.add(message)
                await session.flush()
                if is_note:
                    return "note"
                if conversation.assignee is None:
                    # In "all" mode the first rep to answer owns the chat; follow-ups stop.
                    conversation.assignee = reply.user_id
                    await followups.cancel(
                        session, conversation.id, followups.ESCALATION, followups.OFFLINE_EMAIL
                    )
                    await queue_parent_updates(session, conversation, now)
                repo.add_feed(session, message, "message", now)
                queue_webhook(session, chatflow, conversation, "message", message, now)
        except IntegrityError:
            return "duplicate"
        self._on_outbox()
        self._notifier.notify(conversation.id)
        REPLIES_RELAYED.inc()
        bind_log_context(conversation=conversation.id)
        log.info("relayed reply conversation=%s rep=%s", conversation.id, reply.user_id)
        return "relayed"

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

    @staticmethod
    async def _saw_active(session: AsyncSession, team_id: str, user_id: str, now: datetime) -> None:
        """A rep who just wrote in Slack is active: fresher than any poll."""
        rep = await session.get(Rep, (team_id, user_id))
        if rep is not None:
            rep.presence = "active"
            rep.presence_checked_at = now
