"""Deliveries that failed for good, for the admins' App Home, and their retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db.models import OutboxItem

WHAT = {
    "post_parent": "post a chat to Slack",
    "post_reply": "post a visitor's message to Slack",
    "update_parent": "update a chat in Slack",
    "email": "email a chat",
    "webhook": "call the website's webhook",
}


@dataclass(frozen=True)
class FailedDelivery:
    item_id: int
    what: str
    error: str
    conversation_id: str | None


async def failed_deliveries(
    session: AsyncSession, *, team_id: str, limit: int
) -> tuple[list[FailedDelivery], int]:
    """The newest failed deliveries of a workspace, and how many there are."""
    where = (OutboxItem.team_id == team_id, OutboxItem.status == "failed")
    total = await session.scalar(select(func.count()).select_from(OutboxItem).where(*where))
    rows = await session.scalars(
        select(OutboxItem).where(*where).order_by(OutboxItem.id.desc()).limit(limit)
    )
    return [
        FailedDelivery(
            item_id=row.id,
            what=WHAT.get(row.kind, row.kind),
            error=row.last_error or "unknown error",
            conversation_id=row.conversation_id,
        )
        for row in rows
    ], total or 0


async def retry_delivery(
    session: AsyncSession, *, team_id: str, item_id: int, now: datetime
) -> bool:
    """Put a failed delivery back in the queue with fresh attempts; False if there is none."""
    result = await session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.id == item_id,
            OutboxItem.team_id == team_id,
            OutboxItem.status == "failed",
        )
        .values(status="pending", attempts=0, next_attempt_at=now, created_at=now)
    )
    return bool(result.rowcount)
