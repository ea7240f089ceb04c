"""Receive a visitor's message: route a new conversation, store, and queue its Slack posts.

Accepting a message means it is committed together with the outbox rows that will post it and
the timers that follow it up, so a crash after the answer loses nothing; the delivery worker
makes the Slack calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Conversation, Message, Rep, SlackThread
from slackrouter.clock import Clock
from slackrouter.observability import VISITOR_MESSAGES, bind_log_context, chat_started
from slackrouter.routing import Outcome
from slackrouter.services import followups
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.router import Routed, Router

log = logging.getLogger(__name__)


class UnknownChatflow(LookupError):
    """No chatflow has the given public key."""


@dataclass(frozen=True)
class VisitorMessageIn:
    visitor_id: str
    client_message_id: str
    text: str
    name: str | None = None
    email: str | None = None
    page_url: str | None = None


@dataclass(frozen=True)
class Agent:
    user_id: str
    name: str
    avatar_url: str | None


@dataclass(frozen=True)
class VisitorMessageResult:
    conversation_id: str
    conversation_token: str
    message_id: int
    status: str
    agents: tuple[Agent, ...]
    away_message: str | None
    identity_verified: bool
    duplicate: bool


def agent(rep: Rep) -> Agent:
    return Agent(user_id=rep.user_id, name=rep.name or "A teammate", avatar_url=rep.avatar_url)


async def open_threads(
    session: AsyncSession,
    chatflow: Chatflow,
    conversation: Conversation,
    notify: tuple[str, ...],
    *,
    message_id: int,
    now: datetime,
) -> list[SlackThread]:
    """Create the Slack places a chat goes to (each rep's DM, or the chatflow's channel) and
    queue their parent posts; returns the new threads."""
    if chatflow.channel_id:
        threads = [SlackThread(channel_id=chatflow.channel_id, rep_user_id=None)]
    else:
        threads = [SlackThread(rep_user_id=user_id) for user_id in notify]
    for thread in threads:
        thread.team_id, thread.conversation_id, thread.created_at = (
            chatflow.team_id,
            conversation.id,
            now,
        )
        session.add(thread)
    await session.flush()
    for thread in threads:
        repo.add_outbox(
            session,
            team_id=chatflow.team_id,
            kind="post_parent",
            conversation_id=conversation.id,
            thread_id=thread.id,
            message_id=message_id,
            now=now,
            payload={"mention": list(notify)} if chatflow.channel_id else None,
        )
    return threads


class VisitorMessages:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifier: FeedNotifier,
        router: Router,
        *,
        clock: Clock,
        email_debounce: float,
        on_outbox: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._notifier = notifier
        self._router = router
        self._clock = clock
        self._debounce = timedelta(seconds=email_debounce)
        self._on_outbox = on_outbox
        # SQLite serialises writers but not a read-decide-write sequence; PostgreSQL locks the
        # chatflow row instead, which also holds across replicas.
        self._local_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def receive(
        self, *, public_key: str, message: VisitorMessageIn, identity_verified: bool
    ) -> VisitorMessageResult:
        """Store the message (once per client message id) and queue its delivery."""
        for attempt in range(3):
            try:
                lock = self._local_locks[public_key] if self._sqlite else contextlib.nullcontext()
                async with lock:
                    result = await self._receive_once(public_key, message, identity_verified)
            except IntegrityError:
                # Another request stored this very message first: read again, and answer as it.
                if attempt == 2:
                    raise
                continue
            if not result.duplicate:
                VISITOR_MESSAGES.inc()
                self._notifier.notify(result.conversation_id)
                self._on_outbox()
            return result
        raise AssertionError("unreachable")

    @property
    def _sqlite(self) -> bool:
        return self._sessions.kw["bind"].dialect.name == "sqlite"

    async def _receive_once(
        self, public_key: str, message: VisitorMessageIn, identity_verified: bool
    ) -> VisitorMessageResult:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            chatflow = await repo.chatflow_by_key(session, public_key)
            if chatflow is None:
                raise UnknownChatflow(public_key)
            bind_log_context(team=chatflow.team_id, conversation=None)
            existing = await repo.visitor_message(
                session, chatflow.id, message.visitor_id, message.client_message_id
            )
            if existing is not None:
                conversation = await session.get_one(Conversation, existing.conversation_id)
                return await self._result(session, chatflow, conversation, existing, True)

            conversation = await repo.open_conversation(session, chatflow.id, message.visitor_id)
            if conversation is None and not self._sqlite:
                await session.execute(
                    select(Chatflow.id).where(Chatflow.id == chatflow.id).with_for_update()
                )
                conversation = await repo.open_conversation(
                    session, chatflow.id, message.visitor_id
                )
            stored = Message(
                team_id=chatflow.team_id,
                author="visitor",
                text=message.text,
                chatflow_id=chatflow.id,
                visitor_id=message.visitor_id,
                client_message_id=message.client_message_id,
                created_at=now,
            )
            if conversation is None:
                conversation = await self._start(
                    session, chatflow, message, stored, identity_verified, now
                )
            else:
                await self._continue(session, chatflow, conversation, message, stored, now)
            return await self._result(session, chatflow, conversation, stored, False)

    async def _start(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        message: VisitorMessageIn,
        stored: Message,
        identity_verified: bool,
        now: datetime,
    ) -> Conversation:
        """Route a new conversation, open its Slack threads, and arm its timers."""
        routed = await self._router.route(
            session,
            chatflow,
            visitor_id=message.visitor_id,
            verified_email=message.email if identity_verified else None,
            now=now,
        )
        decision = routed.decision
        conversation = Conversation(
            id=uuid.uuid4().hex,
            team_id=chatflow.team_id,
            chatflow_id=chatflow.id,
            visitor_id=message.visitor_id,
            visitor_name=message.name or (routed.contact.name if routed.contact else None),
            visitor_email=message.email,
            identity_verified=identity_verified,
            page_url=message.page_url,
            token=secrets.token_urlsafe(32),
            routing_outcome=decision.outcome.value,
            routing=routing_record(routed),
            contact_id=routed.contact.id if routed.contact else None,
            offered=list(decision.notify),
            missed=decision.missed,
            created_at=now,
        )
        session.add(conversation)
        await session.flush()
        bind_log_context(team=chatflow.team_id, conversation=conversation.id)
        chat_started(decision.outcome.value)
        stored.conversation_id = conversation.id
        session.add(stored)
        await session.flush()
        repo.add_feed(session, stored, "message", now)
        if decision.outcome is Outcome.ROUTED:
            mark_assigned(routed, decision.notify, now)
            await open_threads(
                session, chatflow, conversation, decision.notify, message_id=stored.id, now=now
            )
            await followups.schedule(
                session,
                conversation,
                followups.ESCALATION,
                now + timedelta(seconds=chatflow.escalation_seconds),
                now,
            )
        else:
            await self._offline(session, chatflow, conversation, routed, stored, now)
        return conversation

    async def _offline(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        conversation: Conversation,
        routed: Routed,
        stored: Message,
        now: datetime,
    ) -> None:
        """Nobody can take it: email it (debounced), or keep it as missed (and post it in the
        chatflow's channel, where it has one)."""
        if routed.decision.email_to:
            await followups.schedule(
                session, conversation, followups.OFFLINE_EMAIL, now + self._debounce, now
            )
        elif chatflow.channel_id:
            await open_threads(session, chatflow, conversation, (), message_id=stored.id, now=now)

    async def _continue(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        conversation: Conversation,
        message: VisitorMessageIn,
        stored: Message,
        now: datetime,
    ) -> None:
        """A later message: into the same threads; the offline email waits for the visitor."""
        bind_log_context(team=chatflow.team_id, conversation=conversation.id)
        conversation.visitor_name = conversation.visitor_name or message.name
        conversation.visitor_email = conversation.visitor_email or message.email
        stored.conversation_id = conversation.id
        session.add(stored)
        await session.flush()
        repo.add_feed(session, stored, "message", now)
        for thread in await repo.threads_of(session, conversation.id):
            repo.add_outbox(
                session,
                team_id=chatflow.team_id,
                kind="post_reply",
                conversation_id=conversation.id,
                thread_id=thread.id,
                message_id=stored.id,
                now=now,
            )
        await followups.postpone(
            session, conversation.id, followups.OFFLINE_EMAIL, self._debounce, now
        )

    async def _result(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        conversation: Conversation,
        message: Message,
        duplicate: bool,
    ) -> VisitorMessageResult:
        routed = conversation.routing_outcome == Outcome.ROUTED.value
        notified = list(conversation.offered) if routed else []
        reps = await repo.reps_by_id(session, conversation.team_id, notified)
        return VisitorMessageResult(
            conversation_id=conversation.id,
            conversation_token=conversation.token,
            message_id=message.id,
            status=conversation.routing_outcome,
            agents=tuple(agent(reps[u]) for u in notified if u in reps),
            away_message=None if routed else conversation.routing.get("away_message"),
            identity_verified=conversation.identity_verified,
            duplicate=duplicate,
        )


def routing_record(routed: Routed) -> dict[str, object]:
    """What a conversation keeps of its routing: for the admins' views and the follow-ups."""
    decision = routed.decision
    return {
        "rule": decision.rule.value,
        "notify": list(decision.notify),
        "email_to": decision.email_to,
        "explanation": routed.explanation,
        "away_message": routed.away_message,
    }


def mark_assigned(routed: Routed, notify: tuple[str, ...], now: datetime) -> None:
    """Round robin's memory: who got a chat last, so the next goes to someone else.

    The stamps only ever grow: a request that read the clock before it waited for the
    chatflow's lock (or ran on a replica whose clock lags) must not make its rep look less
    recently assigned than the reps assigned before it, or that rep would be next again."""
    latest = max(
        (rep.last_assigned_at for rep in routed.reps.values() if rep.last_assigned_at),
        default=None,
    )
    stamp = now if latest is None or now > latest else latest + timedelta(microseconds=1)
    for user_id in notify:
        rep = routed.reps.get(user_id)
        if rep is not None:
            rep.last_assigned_at = stamp
