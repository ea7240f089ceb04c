"""The outbox's `update_parent` rows: `chat.update` a chat's first message in one place it was
posted, so that it shows the chat's state now (who has it, or that it is closed) and only the
buttons that still apply."""

from __future__ import annotations

from datetime import datetime

from slack_sdk.errors import SlackApiError
from sqlalchemy import select
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
from slackrouter.services.delivery import Attempt, NotYet, Undeliverable

UPDATE_PARENT = "update_parent"

# The message is gone or no longer the app's to change: no retry will help.
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


async def first_visitor_message(session: AsyncSession, conversation_id: str) -> Message | None:
    return await session.scalar(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.author == "visitor")
        .order_by(Message.id)
        .limit(1)
    )


async def queue_parent_updates(
    session: AsyncSession, conversation: Conversation, now: datetime
) -> None:
    """Owe Slack a `chat.update` of every place the chat was posted, showing its state now."""
    first = await first_visitor_message(session, conversation.id)
    for thread in await repo.threads_of(session, conversation.id):
        repo.add_outbox(
            session,
            team_id=conversation.team_id,
            kind=UPDATE_PARENT,
            conversation_id=conversation.id,
            thread_id=thread.id,
            message_id=first.id if first is not None else None,
            now=now,
        )


class ParentUpdater:
    def __init__(self, slack: SlackGateway) -> None:
        self._slack = slack

    async def update_parent(self, session: AsyncSession, item: Attempt) -> None:
        thread = await session.get_one(SlackThread, item.thread_id)
        if thread.thread_ts is None or thread.channel_id is None:
            if await _parent_failed(session, thread):
                return  # never posted: there is nothing to update
            raise NotYet
        conversation = await session.get_one(Conversation, thread.conversation_id)
        chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
        if item.message_id is None:
            raise Undeliverable("the chat has no visitor message to show")
        message = await session.get_one(Message, item.message_id)
        status, buttons = blocks.chat_state(
            assignee_name=await self._name(session, conversation.team_id, conversation.assignee),
            closed=conversation.status == "closed",
            closed_by_name=await self._name(session, conversation.team_id, conversation.closed_by),
        )
        in_channel = thread.rep_user_id is None
        text, body = blocks.parent_message(
            chatflow_name=chatflow.name,
            visitor_name=conversation.visitor_name,
            identity_verified=conversation.identity_verified,
            page_url=conversation.page_url,
            text=message.text,
            explanation=str(conversation.routing.get("explanation", "")),
            mention=tuple(conversation.offered) if in_channel and status is None else (),
            missed=conversation.routing_outcome != "routed",
            status=status,
            buttons=buttons,
            note_hint=blocks.note_hint(chatflow.note_mode, chatflow.note_prefix),
        )
        try:
            slack = await self._slack.for_team(thread.team_id)
            await slack.update_message(thread.channel_id, thread.thread_ts, text=text, blocks=body)
        except SlackApiError as exc:
            if slack_error(exc) in GONE:
                raise Undeliverable(
                    f"the chat's message cannot be updated: {slack_error(exc)}"
                ) from None
            raise
        item.result = {"channel": thread.channel_id, "ts": thread.thread_ts}

    async def _name(self, session: AsyncSession, team_id: str, user_id: str | None) -> str | None:
        if user_id is None:
            return None
        rep = await session.get(Rep, (team_id, user_id))
        if rep is not None and rep.name:
            return rep.name
        return (await (await self._slack.for_team(team_id)).profile(user_id)).name


async def _parent_failed(session: AsyncSession, thread: SlackThread) -> bool:
    status = await session.scalar(
        select(OutboxItem.status).where(
            OutboxItem.thread_id == thread.id, OutboxItem.kind == "post_parent"
        )
    )
    return status == "failed"
