"""What reps do to a chat from Slack, without typing a command: Claim, Close and Transfer (the
buttons on the chat's first message) and "Send to visitor" (a message shortcut on a thread note).

Each action checks on the server that the user is a rep of the chat or a slackrouter admin, so a
forged or replayed payload changes nothing. It changes the conversation in one transaction with
the outbox rows that update every place the chat was posted in Slack (`update_parent`), and
answers in words what happened, or raises `Declined` saying why nothing did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Conversation, Message, SlackThread, Team
from slackrouter.adapters.slack.text import (
    escape_visitor_text,
    slack_to_visitor_text,
    user_ids_in,
)
from slackrouter.clock import Clock
from slackrouter.routing import Outcome, Unavailable
from slackrouter.services import followups
from slackrouter.services.admins import Admins, Declined, NotAllowed
from slackrouter.services.chat_updates import queue_parent_updates
from slackrouter.services.directory import Directory
from slackrouter.services.failed_deliveries import retry_delivery
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.presence import PresenceService
from slackrouter.services.replies import Replies
from slackrouter.services.router import Router
from slackrouter.services.webhooks import queue_webhook

log = logging.getLogger(__name__)

CLOSED_NOTICE = "This chat has ended. Write again any time to start a new one."
NOT_A_REP = (
    "Only the reps this chat was routed to, and slackrouter admins, can claim, close or "
    "transfer it."
)

REASONS = {
    Unavailable.AWAY: "is away",
    Unavailable.DND: "is in Do Not Disturb",
    Unavailable.OPTED_OUT: "is not taking chats",
    Unavailable.UNKNOWN_PRESENCE: "has no known presence yet",
    Unavailable.DEACTIVATED: "is deactivated",
    Unavailable.BOT: "is a bot",
    Unavailable.EXCLUDED: "is a guest",
    Unavailable.ALREADY_OFFERED: "is you",
}

OnChange = Callable[[str, Iterable[str]], None]
"""Told (workspace, people) whose App Home shows something that just changed."""


@dataclass(frozen=True)
class ChatAt:
    """A chat found from one of its Slack posts."""

    conversation_id: str
    visitor_name: str | None
    chatflow_name: str


class ChatActions:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifier: FeedNotifier,
        router: Router,
        directory: Directory,
        presence: PresenceService,
        admins: Admins,
        replies: Replies,
        *,
        clock: Clock,
        on_outbox: Callable[[], None],
        on_change: OnChange,
    ) -> None:
        self._sessions = sessions
        self._notifier = notifier
        self._router = router
        self._directory = directory
        self._presence = presence
        self._admins = admins
        self._replies = replies
        self._clock = clock
        self._on_outbox = on_outbox
        self._on_change = on_change

    async def chat_at(self, *, team_id: str, channel: str, ts: str, user_id: str) -> ChatAt:
        """The open chat whose first message is at (channel, ts), if the user may act on it."""
        async with self._sessions() as session:
            thread = await repo.thread_at(session, team_id, channel, ts)
            if thread is None:
                raise Declined("This message is not a chat slackrouter knows.")
            conversation = await session.get_one(Conversation, thread.conversation_id)
            chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
            await self._authorize(session, conversation, chatflow, user_id)
            _require_open(conversation)
        return ChatAt(conversation.id, conversation.visitor_name, chatflow.name)

    async def claim(self, *, team_id: str, conversation_id: str, user_id: str) -> str:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            conversation, chatflow = await self._open(session, team_id, conversation_id, user_id)
            if conversation.assignee == user_id:
                return "You already have this chat."
            if conversation.assignee is not None:
                raise Declined(
                    f"<@{conversation.assignee}> already has this chat; ask them or an admin "
                    "to transfer it."
                )
            conversation.assignee = user_id
            await followups.cancel(
                session, conversation.id, followups.ESCALATION, followups.OFFLINE_EMAIL
            )
            await queue_parent_updates(session, conversation, now)
            offered = list(conversation.offered)
        self._done(team_id, [user_id, *offered])
        log.info("claimed conversation=%s rep=%s", conversation_id, user_id)
        if chatflow.note_mode == "reverse":
            return (
                "You have this chat now. Messages in its thread are notes: answer the visitor "
                "with a message's ⋯ menu → Send to visitor."
            )
        return "You have this chat now. Reply in its thread to answer the visitor."

    async def close(self, *, team_id: str, conversation_id: str, user_id: str) -> str:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            conversation, chatflow = await self._open(session, team_id, conversation_id, user_id)
            conversation.status = "closed"
            conversation.closed_at = now
            conversation.closed_by = user_id
            await followups.cancel(
                session, conversation.id, followups.ESCALATION, followups.OFFLINE_EMAIL
            )
            notice = Message(
                team_id=team_id,
                conversation_id=conversation.id,
                author="system",
                text=CLOSED_NOTICE,
                created_at=now,
            )
            session.add(notice)
            await session.flush()
            repo.add_feed(session, notice, "message", now)
            await queue_parent_updates(session, conversation, now)
            queue_webhook(
                session,
                team_id=chatflow.team_id,
                webhook_url=chatflow.webhook_url,
                conversation_id=conversation.id,
                event="closed",
                message_id=None,
                now=now,
            )
            people = [user_id, *conversation.offered, conversation.assignee or user_id]
        self._notifier.notify(conversation_id)
        self._done(team_id, people)
        log.info("closed conversation=%s rep=%s", conversation_id, user_id)
        return "Closed. The visitor was told the chat has ended."

    async def transfer(
        self,
        *,
        team_id: str,
        conversation_id: str,
        user_id: str,
        to_user: str | None,
        to_team: str | None,
    ) -> str:
        """Hand the chat to a person, or offer it to a team's available members (by the
        chatflow's assignment mode), who get it in their DMs with the visitor's messages."""
        if (to_user is None) == (to_team is None):
            raise Declined("Choose a person or a team, not both.")
        async with self._sessions() as session:
            people = [to_user] if to_user else []
            if to_team:
                teams = await self._directory.team_members(session, team_id=team_id, refs=[to_team])
                people = list(teams[to_team])
        await self._presence.check_now(team_id=team_id, user_ids=people)
        now = self._clock()
        async with self._sessions() as session, session.begin():
            conversation, chatflow = await self._open(session, team_id, conversation_id, user_id)
            if to_user is not None and to_user == conversation.assignee:
                raise Declined(f"<@{to_user}> already has this chat.")
            target = Chatflow(
                id=chatflow.id,
                team_id=team_id,
                route_users=[to_user] if to_user else [],
                route_teams=[to_team] if to_team else [],
                assignment=chatflow.assignment,
                rotate_to_owner=False,
                offline_fallback=None,
                channel_id=None,
                hours=None,
            )
            routed = await self._router.route(
                session,
                target,
                visitor_id=conversation.visitor_id,
                verified_email=None,
                now=now,
                exclude=[user_id] if to_team else [],
                lookup_contact=False,
            )
            label = f"<@{to_user}>" if to_user else await _team_label(session, team_id, to_team)
            decision = routed.decision
            if decision.outcome is not Outcome.ROUTED:
                reasons = ", ".join(
                    f"<@{u}> {REASONS.get(why, why.value)}"
                    for u, why in decision.unavailable.items()
                )
                who = label if to_user else f"Nobody in {label}"
                raise Declined(
                    f"{who} can't take the chat now"
                    + (f" ({reasons})" if reasons else "")
                    + "; it stays where it is."
                )
            notify = decision.notify
            previous = conversation.assignee
            conversation.assignee = notify[0] if len(notify) == 1 else None
            conversation.offered = list(dict.fromkeys([*conversation.offered, *notify]))
            actor = (await self._replies.display_names(session, team_id, {user_id})).get(
                user_id, "a rep"
            )
            conversation.routing = {
                **conversation.routing,
                "explanation": f"transferred by {actor}: {routed.explanation}",
                "transferred_by": user_id,
            }
            await routed.assign(session, notify, now)
            await followups.cancel(
                session, conversation.id, followups.ESCALATION, followups.OFFLINE_EMAIL
            )
            await self._post_to(session, conversation, notify, now)
            await queue_parent_updates(session, conversation, now)
        self._done(team_id, [user_id, *notify, *([previous] if previous else [])])
        log.info("transferred conversation=%s to=%s", conversation_id, ",".join(notify))
        if to_user:
            return f"Transferred to {label}."
        return f"Offered to {label}: " + ", ".join(f"<@{u}>" for u in notify) + "."

    async def send_to_visitor(
        self, *, team_id: str, channel: str, ts: str, user_id: str, text: str
    ) -> str:
        """Send a thread note to the visitor after all, as its author wrote it (`text`, the
        message as Slack shows it now), without the note prefix."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            message = await repo.message_at(session, team_id, channel, ts)
            if message is None or message.author not in ("note", "rep"):
                raise Declined("Only a note written in a chat's thread can be sent to the visitor.")
            if message.author == "rep":
                raise Declined("The visitor already has this message.")
            if message.rep_user_id != user_id and not await self._admins.is_admin(
                team_id=team_id, user_id=user_id
            ):
                raise NotAllowed("Only the note's author, or an admin, can send it to the visitor.")
            conversation = await session.get_one(Conversation, message.conversation_id)
            if conversation.status != "open":
                raise Declined("This chat is closed: the visitor no longer reads it.")
            chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
            body = text.strip()
            if body.startswith(chatflow.note_prefix):
                body = body.removeprefix(chatflow.note_prefix).strip()
            if not body:
                raise Declined("There is nothing to send: the note is empty.")
            names = await self._replies.display_names(session, team_id, user_ids_in(body))
            message.author = "rep"
            message.text = slack_to_visitor_text(body, names)
            if conversation.assignee is None:
                conversation.assignee = message.rep_user_id
                await followups.cancel(
                    session, conversation.id, followups.ESCALATION, followups.OFFLINE_EMAIL
                )
                await queue_parent_updates(session, conversation, now)
            repo.add_feed(session, message, "message", now)
            queue_webhook(
                session,
                team_id=chatflow.team_id,
                webhook_url=chatflow.webhook_url,
                conversation_id=conversation.id,
                event="message",
                message_id=message.id,
                now=now,
            )
        self._notifier.notify(conversation.id)
        self._done(team_id, [user_id])
        log.info("note sent to the visitor conversation=%s rep=%s", conversation.id, user_id)
        return "Sent to the visitor."

    # --- helpers -------------------------------------------------------------------------

    def _done(self, team_id: str, people: Iterable[str]) -> None:
        self._on_outbox()
        self._on_change(team_id, people)

    async def _open(
        self, session: AsyncSession, team_id: str, conversation_id: str, user_id: str
    ) -> tuple[Conversation, Chatflow]:
        """The conversation, locked for this transaction, if it is open and the user may act."""
        conversation = await session.get(Conversation, conversation_id, with_for_update=True)
        if conversation is None or conversation.team_id != team_id:
            raise Declined("This chat no longer exists.")
        chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
        await self._authorize(session, conversation, chatflow, user_id)
        _require_open(conversation)
        return conversation, chatflow

    async def _authorize(
        self, session: AsyncSession, conversation: Conversation, chatflow: Chatflow, user_id: str
    ) -> None:
        """Reps of a chat: whoever it was offered or emailed to, whoever has it, and everyone on
        its chatflow's route (users, team members, offline fallback); admins besides."""
        reps = {*conversation.offered, *filter(None, [conversation.assignee])}
        reps.update(filter(None, [conversation.routing.get("email_to"), chatflow.offline_fallback]))
        reps.update(chatflow.route_users)
        if user_id not in reps:
            members = await self._directory.team_members(
                session, team_id=chatflow.team_id, refs=chatflow.route_teams
            )
            reps.update(*members.values())
        if user_id in reps or await self._admins.is_admin(
            team_id=conversation.team_id, user_id=user_id
        ):
            return
        log.warning("refused a chat action on %s to %s", conversation.id, user_id)
        raise NotAllowed(NOT_A_REP)

    @staticmethod
    async def _post_to(
        session: AsyncSession, conversation: Conversation, people: Iterable[str], now: datetime
    ) -> None:
        """Post the chat into the DMs of those who do not have it yet: its first message, then
        the visitor's later ones in the thread."""
        have = {t.rep_user_id for t in await repo.threads_of(session, conversation.id)}
        newcomers = [u for u in people if u not in have]
        if not newcomers:
            return
        visitor_messages = list(
            await session.scalars(
                select(Message.id)
                .where(Message.conversation_id == conversation.id, Message.author == "visitor")
                .order_by(Message.id)
            )
        )
        if not visitor_messages:
            return
        threads = [
            SlackThread(
                team_id=conversation.team_id,
                conversation_id=conversation.id,
                rep_user_id=user_id,
                created_at=now,
            )
            for user_id in newcomers
        ]
        session.add_all(threads)
        await session.flush()
        for thread in threads:
            for position, message_id in enumerate(visitor_messages):
                repo.add_outbox(
                    session,
                    team_id=conversation.team_id,
                    kind="post_parent" if position == 0 else "post_reply",
                    conversation_id=conversation.id,
                    thread_id=thread.id,
                    message_id=message_id,
                    now=now,
                )

    async def retry_delivery(self, *, team_id: str, user_id: str, item_id: int) -> bool:
        """An admin puts a failed delivery back in the queue (App Home's Retry)."""
        await self._admins.require(team_id=team_id, user_id=user_id)
        async with self._sessions() as session, session.begin():
            retried = await retry_delivery(
                session, team_id=team_id, item_id=item_id, now=self._clock()
            )
        if retried:
            self._on_outbox()
        return retried


def _require_open(conversation: Conversation) -> None:
    if conversation.status != "open":
        closer = f" by <@{conversation.closed_by}>" if conversation.closed_by else ""
        raise Declined(f"This chat was closed{closer}.")


async def _team_label(session: AsyncSession, team_id: str, ref: str | None) -> str:
    """How a transfer names a team: a user group as Slack shows it, a slackrouter team by name."""
    if ref is None or ref.startswith("S"):
        return f"<!subteam^{ref}>"
    team = await session.scalar(select(Team).where(Team.team_id == team_id, Team.id == ref))
    if team is None:
        raise Declined("That team no longer exists.")
    return escape_visitor_text(team.name)
