"""The queries the services share, so that each lives in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, false, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db.models import (
    Chatflow,
    Conversation,
    FeedItem,
    Message,
    OutboxItem,
    Rep,
    SlackThread,
    Timer,
)


async def chatflow_by_key(session: AsyncSession, public_key: str) -> Chatflow | None:
    return await session.scalar(select(Chatflow).where(Chatflow.public_key == public_key))


async def reps_by_id(
    session: AsyncSession, team_id: str, user_ids: Iterable[str]
) -> dict[str, Rep]:
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await session.scalars(select(Rep).where(Rep.team_id == team_id, Rep.user_id.in_(ids)))
    return {rep.user_id: rep for rep in rows}


async def ensure_reps(session: AsyncSession, team_id: str, user_ids: Iterable[str]) -> None:
    """Create a row (profile and presence unknown) for every route user who has none yet."""
    wanted = set(user_ids)
    known = await reps_by_id(session, team_id, wanted)
    for user_id in sorted(wanted - known.keys()):
        session.add(Rep(team_id=team_id, user_id=user_id))


async def chatflows_and_messages(
    session: AsyncSession, public_keys: Iterable[str], messages: Iterable[tuple[str, str]]
) -> tuple[dict[str, Chatflow], dict[tuple[str, str, str], Message]]:
    """The chatflows of these public keys, and the visitor messages already stored in them of
    these (visitor id, client message id), by (chatflow id, visitor id, client message id): one
    statement (the visitor message writer's)."""
    wanted = sorted(set(messages))
    stored = (
        tuple_(Message.visitor_id, Message.client_message_id).in_(wanted) if wanted else false()
    )
    rows = await session.execute(
        select(Chatflow, Message)
        .outerjoin(Message, (Message.chatflow_id == Chatflow.id) & stored)
        .where(Chatflow.public_key.in_(sorted(set(public_keys))))
    )
    chatflows: dict[str, Chatflow] = {}
    found: dict[tuple[str, str, str], Message] = {}
    for chatflow, message in rows:
        chatflows[chatflow.public_key] = chatflow
        if message is not None:
            found[message.chatflow_id, message.visitor_id, message.client_message_id] = message  # type: ignore[index]
    return chatflows, found


@dataclass
class OpenConversations:
    """Visitors' open conversations, their Slack threads (oldest first), and which of them have
    a timer of the asked kind pending."""

    by_visitor: dict[tuple[str, str], Conversation] = field(default_factory=dict)
    threads: dict[str, list[SlackThread]] = field(default_factory=dict)
    timer_pending: set[str] = field(default_factory=set)


async def open_conversations(
    session: AsyncSession, pairs: Iterable[tuple[str, str]], *, timer: str
) -> OpenConversations:
    """The open conversation of each (chatflow id, visitor id) that has one, with its threads
    and whether its `timer` is pending, in one statement (the visitor message writer's)."""
    found = OpenConversations()
    wanted = sorted(set(pairs))
    if not wanted:
        return found
    pending = exists().where(
        Timer.conversation_id == Conversation.id, Timer.kind == timer, Timer.status == "pending"
    )
    rows = await session.execute(
        select(Conversation, SlackThread, pending.label("timer_pending"))
        .outerjoin(SlackThread, SlackThread.conversation_id == Conversation.id)
        .where(
            tuple_(Conversation.chatflow_id, Conversation.visitor_id).in_(wanted),
            Conversation.status == "open",
        )
        .order_by(SlackThread.id)
    )
    for conversation, thread, timer_pending in rows:
        found.by_visitor[conversation.chatflow_id, conversation.visitor_id] = conversation
        threads = found.threads.setdefault(conversation.id, [])
        if thread is not None:
            threads.append(thread)
        if timer_pending:
            found.timer_pending.add(conversation.id)
    return found


async def threads_of(session: AsyncSession, conversation_id: str) -> list[SlackThread]:
    rows = await session.scalars(
        select(SlackThread)
        .where(SlackThread.conversation_id == conversation_id)
        .order_by(SlackThread.id)
    )
    return list(rows)


async def thread_at(
    session: AsyncSession, team_id: str, channel_id: str, thread_ts: str
) -> SlackThread | None:
    return await session.scalar(
        select(SlackThread).where(
            SlackThread.team_id == team_id,
            SlackThread.channel_id == channel_id,
            SlackThread.thread_ts == thread_ts,
        )
    )


async def message_at(
    session: AsyncSession, team_id: str, channel_id: str, ts: str
) -> Message | None:
    return await session.scalar(
        select(Message).where(
            Message.team_id == team_id, Message.slack_channel == channel_id, Message.slack_ts == ts
        )
    )


def feed_row(conversation_id: str, message_id: int, kind: str, now: datetime) -> dict[str, Any]:
    """A feed entry's columns, for `add_feed` or a Core insert of many."""
    return {
        "conversation_id": conversation_id,
        "kind": kind,
        "message_id": message_id,
        "created_at": now,
    }


def add_feed(session: AsyncSession, message: Message, kind: str, now: datetime) -> None:
    session.add(FeedItem(**feed_row(message.conversation_id, message.id, kind, now)))


def outbox_row(
    *,
    team_id: str,
    kind: str,
    conversation_id: str,
    thread_id: int | None,
    message_id: int | None,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An outbox row's columns, owed now, for `add_outbox` or a Core insert of many."""
    return {
        "payload": payload,
        "team_id": team_id,
        "kind": kind,
        "conversation_id": conversation_id,
        "thread_id": thread_id,
        "message_id": message_id,
        "next_attempt_at": now,
        "created_at": now,
    }


def add_outbox(
    session: AsyncSession,
    *,
    team_id: str,
    kind: str,
    conversation_id: str,
    thread_id: int | None,
    message_id: int | None,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    session.add(
        OutboxItem(
            **outbox_row(
                team_id=team_id,
                kind=kind,
                conversation_id=conversation_id,
                thread_id=thread_id,
                message_id=message_id,
                now=now,
                payload=payload,
            )
        )
    )
