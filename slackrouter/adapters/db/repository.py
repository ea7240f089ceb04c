"""The queries the services share, so that each lives in one place."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db.models import (
    Chatflow,
    Conversation,
    FeedItem,
    Message,
    OutboxItem,
    Rep,
    SlackThread,
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


async def open_conversation(
    session: AsyncSession, chatflow_id: str, visitor_id: str
) -> Conversation | None:
    return await session.scalar(
        select(Conversation).where(
            Conversation.chatflow_id == chatflow_id,
            Conversation.visitor_id == visitor_id,
            Conversation.status == "open",
        )
    )


async def visitor_message(
    session: AsyncSession, chatflow_id: str, visitor_id: str, client_message_id: str
) -> Message | None:
    return await session.scalar(
        select(Message).where(
            Message.chatflow_id == chatflow_id,
            Message.visitor_id == visitor_id,
            Message.client_message_id == client_message_id,
        )
    )


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


def add_feed(session: AsyncSession, message: Message, kind: str, now: datetime) -> None:
    session.add(
        FeedItem(
            conversation_id=message.conversation_id,
            kind=kind,
            message_id=message.id,
            created_at=now,
        )
    )


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
            payload=payload,
            team_id=team_id,
            kind=kind,
            conversation_id=conversation_id,
            thread_id=thread_id,
            message_id=message_id,
            next_attempt_at=now,
            created_at=now,
        )
    )
