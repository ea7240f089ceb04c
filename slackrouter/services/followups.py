"""Timers of a conversation: escalation when nobody answers, the debounced offline email.

Timers are rows (one per conversation and kind), so they survive restarts; the scheduler only
wakes the worker that fires the due ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db.models import Conversation, Timer

ESCALATION = "escalation"
OFFLINE_EMAIL = "offline_email"


async def schedule(
    session: AsyncSession, conversation: Conversation, kind: str, due_at: datetime, now: datetime
) -> None:
    """Set the conversation's timer of this kind to fire at `due_at` (re-arming a fired one)."""
    timer = await session.scalar(
        select(Timer).where(Timer.conversation_id == conversation.id, Timer.kind == kind)
    )
    if timer is None:
        session.add(
            Timer(
                team_id=conversation.team_id,
                kind=kind,
                conversation_id=conversation.id,
                due_at=due_at,
                created_at=now,
            )
        )
    else:
        timer.due_at, timer.status = due_at, "pending"


async def postpone(
    session: AsyncSession, conversation_id: str, kind: str, delay: timedelta, now: datetime
) -> None:
    """Push a pending timer back (the visitor wrote again: one email per chat, not per message)."""
    await session.execute(
        update(Timer)
        .where(
            Timer.conversation_id == conversation_id, Timer.kind == kind, Timer.status == "pending"
        )
        .values(due_at=now + delay)
    )


async def cancel(session: AsyncSession, conversation_id: str, *kinds: str) -> None:
    """A rep picked the chat up: no escalation, no offline email."""
    await session.execute(
        update(Timer)
        .where(
            Timer.conversation_id == conversation_id,
            Timer.kind.in_(kinds),
            Timer.status == "pending",
        )
        .values(status="cancelled")
    )
