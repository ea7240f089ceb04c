"""Fire due timers: escalate an unanswered chat to the next reps, or hand it to the offline
path; turn a debounced offline email into an outbox row.

An escalated chat that goes offline gets the same debounced email as one nobody could take at
first, so a rep who answers it late (in the threads it was offered in) cancels the email."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Conversation, Message, SlackThread, Timer
from slackrouter.clock import Clock
from slackrouter.routing import Outcome
from slackrouter.services import followups
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.router import Router
from slackrouter.services.visitor_messages import open_threads, routing_record

log = logging.getLogger(__name__)

BATCH = 100
# The due timers, earliest first: read every TIMER_POLL_INTERVAL by every replica, mostly to find
# none. Built once: building it at every poll (an ORM select, its comparisons coerced) took more
# of an idle web process's samples than running it (py-spy), its caches cold each time.
_DUE = (
    select(Timer.id)
    .where(Timer.status == "pending", Timer.due_at <= bindparam("now"))
    .order_by(Timer.due_at)
    .limit(BATCH)
)


class TimerWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        router: Router,
        notifier: FeedNotifier,
        *,
        clock: Clock,
        on_outbox: Callable[[], None],
        email_debounce: float,
    ) -> None:
        # Public so that whoever builds the worker can set it from EMAIL_DEBOUNCE_SECONDS.
        self.email_debounce = timedelta(seconds=email_debounce)
        self._sessions = sessions
        self._router = router
        self._notifier = notifier
        self._clock = clock
        self._on_outbox = on_outbox
        self._lock = asyncio.Lock()

    async def run_once(self) -> int:
        """Fire every due timer; returns how many fired."""
        async with self._lock:
            now = self._clock()
            async with self._sessions() as session:
                due = list(await session.scalars(_DUE, {"now": now}))
            fired = 0
            for timer_id in due:
                fired += await self._fire(timer_id)
            if fired:
                self._on_outbox()
            return fired

    async def _fire(self, timer_id: int) -> int:
        notify: str | None = None
        async with self._sessions() as session, session.begin():
            timer = await session.get_one(Timer, timer_id, with_for_update=True)
            now = self._clock()
            if timer.status != "pending" or timer.due_at > now:
                return 0
            timer.status = "done"
            conversation = await session.get_one(Conversation, timer.conversation_id)
            if conversation.status != "open" or conversation.assignee is not None:
                return 1
            if timer.kind == followups.OFFLINE_EMAIL:
                self._queue_email(session, conversation, now)
            elif timer.kind == followups.ESCALATION:
                notify = await self._escalate(session, conversation, now)
        if notify:
            self._notifier.notify(notify)
        return 1

    @staticmethod
    def _queue_email(session: AsyncSession, conversation: Conversation, now: datetime) -> None:
        to_user = conversation.routing.get("email_to")
        if not to_user:
            return
        reason = (
            "Their owner was not available"
            if conversation.routing.get("rule") == "owner_unavailable"
            else "Nobody on the route was available"
        )
        repo.add_outbox(
            session,
            team_id=conversation.team_id,
            kind="email",
            conversation_id=conversation.id,
            thread_id=None,
            message_id=None,
            now=now,
            payload={"to_user": to_user, "reason": reason},
        )

    async def _escalate(
        self, session: AsyncSession, conversation: Conversation, now: datetime
    ) -> str | None:
        """Nobody answered in time: offer it to the next available reps; if there are none,
        the chat goes the offline way. Returns the conversation id when the visitor's feed grew."""
        chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
        routed = await self._router.route(
            session,
            chatflow,
            visitor_id=conversation.visitor_id,
            verified_email=None,
            now=now,
            exclude=conversation.offered,
            contact=None,
            lookup_contact=False,
        )
        decision = routed.decision
        log.info(
            "escalation conversation=%s outcome=%s notify=%s",
            conversation.id,
            decision.outcome.value,
            ",".join(decision.notify) or "-",
        )
        first = await session.scalar(
            select(Message)
            .where(Message.conversation_id == conversation.id, Message.author == "visitor")
            .order_by(Message.id)
            .limit(1)
        )
        if decision.outcome is Outcome.ROUTED and first is not None:
            conversation.offered = [*conversation.offered, *decision.notify]
            await routed.assign(session, decision.notify, now)
            if chatflow.channel_id:
                await self._ask_in_channel(session, conversation, first, decision.notify, now)
            else:
                threads = await open_threads(
                    session, chatflow, conversation, decision.notify, message_id=first.id, now=now
                )
                await self._catch_up(session, conversation, threads, after=first.id, now=now)
            await followups.schedule(
                session,
                conversation,
                followups.ESCALATION,
                now + timedelta(seconds=chatflow.escalation_seconds),
                now,
            )
            return None
        conversation.routing = {**routing_record(routed), "escalated": True}
        conversation.missed = decision.missed
        notice = Message(
            team_id=conversation.team_id,
            conversation_id=conversation.id,
            author="system",
            text=routed.away_message or chatflow.away_message,
            created_at=now,
        )
        session.add(notice)
        await session.flush()
        repo.add_feed(session, notice, "message", now)
        if decision.email_to:
            await followups.schedule(
                session, conversation, followups.OFFLINE_EMAIL, now + self.email_debounce, now
            )
        return conversation.id

    @staticmethod
    async def _ask_in_channel(
        session: AsyncSession,
        conversation: Conversation,
        first: Message,
        notify: tuple[str, ...],
        now: datetime,
    ) -> None:
        """In a channel the chat keeps its one parent: the next reps are mentioned in its
        thread instead."""
        for thread in await repo.threads_of(session, conversation.id):
            if thread.rep_user_id is None:
                repo.add_outbox(
                    session,
                    team_id=conversation.team_id,
                    kind="post_reply",
                    conversation_id=conversation.id,
                    thread_id=thread.id,
                    message_id=first.id,
                    now=now,
                    payload={"mention": list(notify)},
                )

    @staticmethod
    async def _catch_up(
        session: AsyncSession,
        conversation: Conversation,
        threads: list[SlackThread],
        *,
        after: int,
        now: datetime,
    ) -> None:
        """Queue the visitor's later messages into threads opened on escalation, after their
        parent (which shows the first message), so the next reps see the whole chat."""
        later = await session.scalars(
            select(Message.id)
            .where(
                Message.conversation_id == conversation.id,
                Message.author == "visitor",
                Message.id > after,
            )
            .order_by(Message.id)
        )
        for message_id in later:
            for thread in threads:
                repo.add_outbox(
                    session,
                    team_id=conversation.team_id,
                    kind="post_reply",
                    conversation_id=conversation.id,
                    thread_id=thread.id,
                    message_id=message_id,
                    now=now,
                )
