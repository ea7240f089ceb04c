"""What a visitor reads: a conversation's feed after a cursor, waiting for news if asked to."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

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
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        notifier: FeedNotifier,
        *,
        clock: Clock,
        email_debounce: float,
    ) -> None:
        self._engine = engine
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

    async def read(
        self, conversation_id: str, token: str, *, after: int = 0, wait: float = 0
    ) -> FeedPage:
        """Entries after `after`; with `wait`, hold the request until some come or time is up."""
        with self._notifier.subscribe(conversation_id) as news:
            page = await self._read(conversation_id, token, after)
            if page.entries or wait <= 0 or not await news.wait(wait):
                return page
        return await self._read(conversation_id, token, after)

    async def entries_after(self, conversation_id: str, after: int) -> tuple[FeedEntry, ...]:
        """The entries after `after`, for a reader already let in (an open stream): one query."""
        async with self._engine.connect() as connection:
            return await _entries(connection, conversation_id, after)

    async def _conversation(
        self, session: AsyncSession, conversation_id: str, token: str
    ) -> Conversation:
        conversation = await session.get(Conversation, conversation_id)
        if not _opens(conversation.token if conversation else None, token) or not conversation:
            raise ConversationNotFound(conversation_id)
        return conversation

    async def _read(self, conversation_id: str, token: str, after: int) -> FeedPage:
        # A plain connection, no ORM session: every stream opens with this read, and every
        # long-poll ends with it.
        async with self._engine.connect() as connection:
            found = (await connection.execute(_TOKEN_AND_STATUS, {"id": conversation_id})).first()
            if not _opens(found.token if found else None, token) or not found:
                raise ConversationNotFound(conversation_id)
            entries = await _entries(connection, conversation_id, after)
        cursor = entries[-1].cursor if entries else after
        return FeedPage(entries=entries, cursor=cursor, status=found.status)


def _opens(expected: str | None, token: str) -> bool:
    """Whether `token` is the conversation's (`expected`; None when there is no such
    conversation), compared in constant time even when there is none."""
    known = (expected or "x" * len(token or "x")).encode()
    return hmac.compare_digest(known, (token or "").encode()) and expected is not None


# Built once: the feed is read on every wake-up of every waiting visitor.
_TOKEN_AND_STATUS = select(Conversation.token, Conversation.status).where(
    Conversation.id == bindparam("id")
)
_ENTRIES = (
    select(
        FeedItem.id,
        FeedItem.kind,
        Message.id,
        Message.author,
        Message.text,
        Message.created_at,
        Message.edited_at,
        Message.deleted,
        Rep.name,
        Rep.avatar_url,
    )
    .join(Message, Message.id == FeedItem.message_id)
    .outerjoin(Rep, and_(Rep.team_id == Message.team_id, Rep.user_id == Message.rep_user_id))
    .where(
        FeedItem.conversation_id == bindparam("conversation_id"),
        FeedItem.id > bindparam("after"),
    )
    .order_by(FeedItem.id)
    .limit(PAGE)
)


async def _entries(
    connection: AsyncConnection, conversation_id: str, after: int
) -> tuple[FeedEntry, ...]:
    rows = await connection.execute(_ENTRIES, {"conversation_id": conversation_id, "after": after})
    return tuple(
        FeedEntry(
            cursor=cursor,
            type=kind,
            message_id=message_id,
            author=author,
            author_name=rep_name if author == "rep" else None,
            author_avatar_url=rep_avatar_url,
            text=None if deleted else text,
            sent_at=sent_at,
            edited=edited_at is not None and not deleted,
        )
        for (
            cursor,
            kind,
            message_id,
            author,
            text,
            sent_at,
            edited_at,
            deleted,
            rep_name,
            rep_avatar_url,
        ) in rows
    )
