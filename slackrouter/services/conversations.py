"""What a visitor reads: a conversation's feed after a cursor, waiting for news if asked to."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import Conversation, FeedItem, Message, Rep
from slackrouter.clock import Clock
from slackrouter.services import followups
from slackrouter.services.notifier import FeedNotifier

PAGE = 100


class ConversationNotFound(LookupError):
    """No such conversation, or the token does not open it (the two are not told apart)."""


@dataclass(frozen=True)
class FeedEntry:
    cursor: int
    type: str
    message_id: int
    author: str
    author_name: str | None
    author_avatar_url: str | None
    text: str | None
    sent_at: datetime
    edited: bool


@dataclass(frozen=True)
class FeedPage:
    entries: tuple[FeedEntry, ...]
    cursor: int
    status: str


class ConversationReader:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifier: FeedNotifier,
        *,
        clock: Clock,
        email_debounce: float,
    ) -> None:
        self._sessions = sessions
        self._notifier = notifier
        self._clock = clock
        self._debounce = timedelta(seconds=email_debounce)

    async def leave_email(self, conversation_id: str, token: str, email: str) -> None:
        """The visitor's address, for the rep who follows up by email (Reply-To); a pending
        offline email waits a little longer, as for a message, so it carries the address."""
        async with self._sessions() as session, session.begin():
            conversation = await self._conversation(session, conversation_id, token)
            conversation.visitor_email = email
            await followups.postpone(
                session, conversation.id, followups.OFFLINE_EMAIL, self._debounce, self._clock()
            )

    async def authorize(self, conversation_id: str, token: str) -> None:
        async with self._sessions() as session:
            await self._conversation(session, conversation_id, token)

    async def read(
        self, conversation_id: str, token: str, *, after: int = 0, wait: float = 0
    ) -> FeedPage:
        """Entries after `after`; with `wait`, hold the request until some come or time is up."""
        async with self._notifier.subscribe(conversation_id) as news:
            page = await self._read(conversation_id, token, after)
            if page.entries or wait <= 0:
                return page
            try:
                await asyncio.wait_for(news.wait(), timeout=wait)
            except TimeoutError:
                return page
        return await self._read(conversation_id, token, after)

    async def _conversation(
        self, session: AsyncSession, conversation_id: str, token: str
    ) -> Conversation:
        conversation = await session.get(Conversation, conversation_id)
        # Compare in constant time even when the conversation does not exist.
        expected = conversation.token if conversation is not None else "x" * len(token or "x")
        if not hmac.compare_digest(expected.encode(), (token or "").encode()) or not conversation:
            raise ConversationNotFound(conversation_id)
        return conversation

    async def _read(self, conversation_id: str, token: str, after: int) -> FeedPage:
        async with self._sessions() as session:
            conversation = await self._conversation(session, conversation_id, token)
            rows = (
                await session.execute(
                    select(FeedItem, Message)
                    .join(Message, Message.id == FeedItem.message_id)
                    .where(FeedItem.conversation_id == conversation_id, FeedItem.id > after)
                    .order_by(FeedItem.id)
                    .limit(PAGE)
                )
            ).all()
            rep_ids = {m.rep_user_id for _, m in rows if m.rep_user_id}
            reps = (
                {
                    r.user_id: r
                    for r in await session.scalars(
                        select(Rep).where(
                            Rep.team_id == conversation.team_id, Rep.user_id.in_(rep_ids)
                        )
                    )
                }
                if rep_ids
                else {}
            )
        entries = []
        for item, message in rows:
            rep = reps.get(message.rep_user_id or "")
            withdrawn = message.deleted
            entries.append(
                FeedEntry(
                    cursor=item.id,
                    type=item.kind,
                    message_id=message.id,
                    author=message.author,
                    author_name=(rep.name if rep else None) if message.author == "rep" else None,
                    author_avatar_url=rep.avatar_url if rep else None,
                    text=None if withdrawn else message.text,
                    sent_at=message.created_at,
                    edited=message.edited_at is not None and not withdrawn,
                )
            )
        cursor = entries[-1].cursor if entries else after
        return FeedPage(entries=tuple(entries), cursor=cursor, status=conversation.status)
