"""Receive a visitor's message: route a new conversation, store, and queue its Slack posts.

Accepting a message means it is committed together with the outbox rows that will post it, so
a crash after the answer loses nothing; the delivery worker does the Slack calls.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Conversation, Message, Rep, SlackThread
from slackrouter.clock import Clock
from slackrouter.routing import ChatflowRouting, Outcome, RoutingRequest, decide
from slackrouter.services.availability import describe, snapshot
from slackrouter.services.notifier import FeedNotifier

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


class VisitorMessages:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifier: FeedNotifier,
        *,
        clock: Clock,
        presence_max_age: float,
        on_outbox: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._notifier = notifier
        self._clock = clock
        self._max_age = timedelta(seconds=presence_max_age)
        self._on_outbox = on_outbox

    async def receive(
        self, *, public_key: str, message: VisitorMessageIn, identity_verified: bool
    ) -> VisitorMessageResult:
        """Store the message (once per client message id) and queue its delivery."""
        for attempt in range(3):
            try:
                result = await self._receive_once(public_key, message, identity_verified)
            except IntegrityError:
                # Another request created the conversation or this very message first: read
                # again, and the loser joins the winner's conversation or returns its answer.
                if attempt == 2:
                    raise
                continue
            if not result.duplicate:
                self._notifier.notify(result.conversation_id)
                self._on_outbox()
            return result
        raise AssertionError("unreachable")

    async def _receive_once(
        self, public_key: str, message: VisitorMessageIn, identity_verified: bool
    ) -> VisitorMessageResult:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            chatflow = await repo.chatflow_by_key(session, public_key)
            if chatflow is None:
                raise UnknownChatflow(public_key)
            existing = await repo.visitor_message(
                session, chatflow.id, message.visitor_id, message.client_message_id
            )
            if existing is not None:
                conversation = await session.get_one(Conversation, existing.conversation_id)
                return await self._result(session, chatflow, conversation, existing, True)

            conversation = await repo.open_conversation(session, chatflow.id, message.visitor_id)
            new = conversation is None
            if conversation is None:
                conversation = await self._start(session, chatflow, message, identity_verified)
            else:
                # Details a visitor gives later fill in what the conversation lacks.
                conversation.visitor_name = conversation.visitor_name or message.name
                conversation.visitor_email = conversation.visitor_email or message.email
            stored = Message(
                team_id=chatflow.team_id,
                conversation_id=conversation.id,
                author="visitor",
                text=message.text,
                chatflow_id=chatflow.id,
                visitor_id=message.visitor_id,
                client_message_id=message.client_message_id,
                created_at=now,
            )
            session.add(stored)
            await session.flush()
            repo.add_feed(session, stored, "message", now)
            for thread in await repo.threads_of(session, conversation.id):
                repo.add_outbox(
                    session,
                    team_id=chatflow.team_id,
                    kind="post_parent" if new else "post_reply",
                    conversation_id=conversation.id,
                    thread_id=thread.id,
                    message_id=stored.id,
                    now=now,
                )
            return await self._result(session, chatflow, conversation, stored, False)

    async def _start(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        message: VisitorMessageIn,
        identity_verified: bool,
    ) -> Conversation:
        """Route a new conversation and create a Slack thread row for each notified rep."""
        now = self._clock()
        reps = await repo.reps_by_id(session, chatflow.team_id, chatflow.route_users)
        decision = decide(
            RoutingRequest(
                chatflow=ChatflowRouting(route_users=tuple(chatflow.route_users)),
                reps=snapshot(reps.values(), now=now, max_age=self._max_age),
                now=now,
            )
        )
        conversation = Conversation(
            id=uuid.uuid4().hex,
            team_id=chatflow.team_id,
            chatflow_id=chatflow.id,
            visitor_id=message.visitor_id,
            visitor_name=message.name,
            visitor_email=message.email,
            identity_verified=identity_verified,
            page_url=message.page_url,
            token=secrets.token_urlsafe(32),
            routing_outcome=decision.outcome.value,
            routing={
                "rule": decision.rule.value,
                "notify": list(decision.notify),
                "explanation": decision.explain(),
            },
            created_at=now,
        )
        session.add(conversation)
        await session.flush()
        for user_id in decision.notify:
            session.add(
                SlackThread(
                    team_id=chatflow.team_id,
                    conversation_id=conversation.id,
                    rep_user_id=user_id,
                    created_at=now,
                )
            )
        await session.flush()
        log.info(
            "routed conversation=%s team=%s chatflow=%s outcome=%s rule=%s notify=%s presence=[%s]",
            conversation.id,
            chatflow.team_id,
            chatflow.id,
            decision.outcome.value,
            decision.rule.value,
            ",".join(decision.notify) or "-",
            describe(reps.values(), now=now),
        )
        return conversation

    async def _result(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        conversation: Conversation,
        message: Message,
        duplicate: bool,
    ) -> VisitorMessageResult:
        routed = conversation.routing_outcome == Outcome.ROUTED.value
        notified = list(conversation.routing.get("notify", [])) if routed else []
        reps = await repo.reps_by_id(session, conversation.team_id, notified)
        return VisitorMessageResult(
            conversation_id=conversation.id,
            conversation_token=conversation.token,
            message_id=message.id,
            status=conversation.routing_outcome,
            agents=tuple(_agent(reps[u]) for u in notified if u in reps),
            away_message=None if routed else chatflow.away_message,
            identity_verified=conversation.identity_verified,
            duplicate=duplicate,
        )


def _agent(rep: Rep) -> Agent:
    return Agent(user_id=rep.user_id, name=rep.name or "A teammate", avatar_url=rep.avatar_url)
