"""Receive a visitor's message: route a new conversation, store, and queue its Slack posts.

Accepting a message means it is committed together with the outbox rows that will post it and
the timers that follow it up, so a crash after the answer loses nothing; the delivery worker
makes the Slack calls.

Messages are written in batches (group commit): those that arrive while one batch is being
written go together in the next, in one transaction of a few multi-row statements. A quiet site
writes batches of one; a busy one pays a few round trips per batch instead of per message. The
batch's new rows (messages, Slack threads, timers, feed entries, outbox rows) are inserted with
one Core statement per table, not through the ORM, which would insert them one by one on SQLite
to learn each id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import batch_insert
from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import (
    Chatflow,
    Conversation,
    FeedItem,
    Message,
    OutboxItem,
    SlackThread,
    Timer,
)
from slackrouter.clock import Clock
from slackrouter.observability import VISITOR_MESSAGES, bind_log_context, chat_started
from slackrouter.routing import Outcome
from slackrouter.services import followups
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.pacing import ChannelPacer
from slackrouter.services.router import Routed, Router, RoutingCache

log = logging.getLogger(__name__)

# At most this many messages in one transaction.
BATCH_LIMIT = 64
# The writer counts as busy for this long after its last batch (see `busy`).
BUSY_FOR = 0.2
# On PostgreSQL, while messages keep coming (a batch written less than BUSY_FOR ago), fewer
# than GATHER_UNDER waiting are given this long to be joined by others (`_write_queued`).
GATHER_FOR = 0.006
GATHER_UNDER = 8
# A rep's name and avatar, read for an answer, are used again for this long without reading
# them (see `_offered_agents`).
AGENT_FOR = 30.0


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


def agent(rep: repo.RepRow) -> Agent:
    return Agent(user_id=rep.user_id, name=rep.name or "A teammate", avatar_url=rep.avatar_url)


def _parent_payload(chatflow: Chatflow, notify: tuple[str, ...]) -> dict[str, object] | None:
    """A parent post's outbox payload: in a channel, the reps it mentions."""
    return {"mention": list(notify)} if chatflow.channel_id else None


def places(chatflow: Chatflow, notify: tuple[str, ...]) -> list[tuple[str | None, str | None]]:
    """The Slack places a chat goes to, as (rep, channel): each rep's DM, or the chatflow's
    channel."""
    if chatflow.channel_id:
        return [(None, chatflow.channel_id)]
    return [(user_id, None) for user_id in notify]


async def open_threads(
    session: AsyncSession,
    chatflow: Chatflow,
    conversation: Conversation,
    notify: tuple[str, ...],
    *,
    message_id: int,
    now: datetime,
) -> list[SlackThread]:
    """Create the Slack places a chat goes to and queue their parent posts; returns the new
    threads."""
    threads = [
        SlackThread(
            team_id=chatflow.team_id,
            conversation_id=conversation.id,
            rep_user_id=rep_user_id,
            channel_id=channel_id,
            created_at=now,
        )
        for rep_user_id, channel_id in places(chatflow, notify)
    ]
    session.add_all(threads)
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
            payload=_parent_payload(chatflow, notify),
        )
    return threads


@dataclass
class _Request:
    public_key: str
    message: VisitorMessageIn
    identity_verified: bool
    answer: asyncio.Future[VisitorMessageResult]


@dataclass(eq=False)
class _NewMessage:
    """A visitor message of the batch; its `id` once the batch's messages are inserted."""

    team_id: str
    chatflow_id: str
    visitor_id: str
    client_message_id: str
    text: str
    created_at: datetime
    conversation_id: str = ""
    id: int = 0

    def values(self) -> dict[str, object]:
        return {
            "team_id": self.team_id,
            "conversation_id": self.conversation_id,
            "author": "visitor",
            "text": self.text,
            "chatflow_id": self.chatflow_id,
            "visitor_id": self.visitor_id,
            "client_message_id": self.client_message_id,
            "created_at": self.created_at,
        }


@dataclass(eq=False)
class _NewThread:
    """A Slack thread a conversation started in the batch opens; its `id` once inserted, and
    the channel its posts go to, where known (the chatflow's, or the rep's DM once opened)."""

    team_id: str
    conversation_id: str
    rep_user_id: str | None
    channel_id: str | None
    created_at: datetime
    posts_to: str | None
    id: int = 0

    def values(self) -> dict[str, object]:
        return {
            "team_id": self.team_id,
            "conversation_id": self.conversation_id,
            "rep_user_id": self.rep_user_id,
            "channel_id": self.channel_id,
            "created_at": self.created_at,
        }


@dataclass
class _Planned:
    """One message of a batch as it will be answered, once the batch's rows have ids."""

    conversation: repo.Chat
    message: Message | _NewMessage
    duplicate: bool
    started: bool = False  # the batch started its conversation (routing read its reps)


class _Thread(NamedTuple):
    """A Slack thread opened before the batch, and the channel its posts go to, where known."""

    id: int
    posts_to: str | None


class _Post(NamedTuple):
    """A Slack post a batch queues once its rows have ids."""

    kind: str
    thread: _NewThread | _Thread
    message: _NewMessage
    conversation: repo.Chat
    payload: dict[str, object] | None


@dataclass
class _Batch:
    """What a batch adds: its conversations (their rows' values), the name or email given to
    earlier ones, its messages, threads and timers, the posts to queue once rows have ids, the
    conversations whose offline email waits for the visitor again, and the answers."""

    now: datetime
    routing: RoutingCache = field(default_factory=RoutingCache)
    # conversations started, by id: their rows' values, and the chats they are answered as
    started: dict[str, tuple[dict[str, object], repo.Chat]] = field(default_factory=dict)
    named: dict[str, repo.Chat] = field(default_factory=dict)  # earlier chats given a name
    stored: list[_NewMessage] = field(default_factory=list)
    threads: list[_NewThread] = field(default_factory=list)
    timers: list[dict[str, object]] = field(default_factory=list)
    posts: list[_Post] = field(default_factory=list)
    postponed: set[str] = field(default_factory=set)
    email_waits: set[str] = field(default_factory=set)  # conversations with an email pending
    answers: list[_Planned | UnknownChatflow] = field(default_factory=list)


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
        gather_for: float = 0.0,
        pacer: ChannelPacer | None = None,
    ) -> None:
        self._sessions = sessions
        self._pacer = pacer  # the delivery worker's, when it runs in this process
        self._gather_for = gather_for
        self._notifier = notifier
        self._router = router
        self._clock = clock
        self._debounce = timedelta(seconds=email_debounce)
        self._on_outbox = on_outbox
        self._queue: list[_Request] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_written = -BUSY_FOR
        self._agents: dict[tuple[str, str], tuple[float, Agent]] = {}  # (team, rep): when read

    def busy(self) -> bool:
        """Whether messages are being written, or were a moment ago: on a busy site the
        writer is idle only between arrivals."""
        if self._writer is not None and not self._writer.done():
            return True
        return time.monotonic() - self._last_written < BUSY_FOR

    async def receive(
        self, *, public_key: str, message: VisitorMessageIn, identity_verified: bool
    ) -> VisitorMessageResult:
        """Store the message (once per client message id) and queue its delivery."""
        return await self.submit(
            public_key=public_key, message=message, identity_verified=identity_verified
        )

    def submit(
        self, *, public_key: str, message: VisitorMessageIn, identity_verified: bool
    ) -> asyncio.Future[VisitorMessageResult]:
        """`receive`, without a task of its own: the future holds the answer."""
        answer: asyncio.Future[VisitorMessageResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(public_key, message, identity_verified, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        return answer

    async def _write_queued(self) -> None:
        """One writer per process: SQLite has one writer anyway, and round robin must see
        each assignment before the next; replicas on PostgreSQL lock the chatflow rows.

        On PostgreSQL a batch costs 5-8 round trips to the server whatever its size. When it
        made 7-15, at half the benchmark's saturation (1,250 messages a second), batches of a
        few messages cost the worker 0.43-0.53 ms of CPU a message and PostgreSQL 0.28-0.31;
        gathered for `gather_for` (6 ms) when few wait, 0.34-0.39 and 0.21-0.25, and the p99
        latency was lower in both pairs of alternating runs. On SQLite (calls in this process)
        it made the median 5 ms longer and the p99 no shorter. A quiet site's message, with no
        batch written a moment before, is written at once."""
        while self._queue:
            if (
                self._gather_for
                and len(self._queue) < GATHER_UNDER
                and time.monotonic() - self._last_written < BUSY_FOR
            ):
                await asyncio.sleep(self._gather_for)
            batch = self._queue[:BATCH_LIMIT]
            del self._queue[:BATCH_LIMIT]
            try:
                await self._write(batch)
            except Exception as exc:  # never leave a visitor's request waiting
                log.exception("storing visitor messages failed")
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(exc)
            self._last_written = time.monotonic()

    async def _write(self, batch: list[_Request]) -> None:
        try:
            answers = await self._store_with_retries(batch)
        except Exception:
            if len(batch) == 1:
                raise
            # One bad message must not fail the others: each goes on its own.
            for request in batch:
                try:
                    await self._write([request])
                except Exception as exc:
                    if not request.answer.done():
                        request.answer.set_exception(exc)
            return
        stored = False
        for request, answer in zip(batch, answers, strict=True):
            if isinstance(answer, UnknownChatflow):
                if not request.answer.done():
                    request.answer.set_exception(answer)
                continue
            if not answer.duplicate:
                stored = True
                VISITOR_MESSAGES.inc()
                self._notifier.notify(answer.conversation_id)
            if not request.answer.done():
                request.answer.set_result(answer)
        if stored:
            self._on_outbox()

    async def _store_with_retries(
        self, batch: list[_Request]
    ) -> list[VisitorMessageResult | UnknownChatflow]:
        for _ in range(2):
            try:
                return await self._store(batch)
            except IntegrityError:
                pass  # another replica stored one of these first: read again, and answer as it
        return await self._store(batch)

    async def _store(self, batch: list[_Request]) -> list[VisitorMessageResult | UnknownChatflow]:
        work = _Batch(now=self._clock())
        async with self._sessions() as session, session.begin():
            chatflows, stored = await repo.chatflows_and_messages(
                session,
                (r.public_key for r in batch),
                ((r.message.visitor_id, r.message.client_message_id) for r in batch),
            )
            known = [r for r in batch if r.public_key in chatflows]
            keys = {_key(chatflows[r.public_key], r.message) for r in known}
            existing = {key: message for key, message in stored.items() if key in keys}
            open_ = await self._open_conversations(session, chatflows, known, existing)
            conversations, work.email_waits = open_.by_visitor, open_.timer_pending
            earlier = await repo.chats_by_id(
                session, (m.conversation_id for m in existing.values())
            )
            threads: dict[str, list[_NewThread | _Thread]] = {
                conversation_id: [_Thread(id, open_.channels.get(id)) for id in its]
                for conversation_id, its in open_.threads.items()
            }
            in_batch: dict[tuple[str, str, str], _NewMessage] = {}
            await self._look_up_contacts(session, chatflows, known, existing, conversations, work)
            # Every row is written by the flushes below, not statement by statement.
            with session.no_autoflush:
                for request in batch:
                    chatflow = chatflows.get(request.public_key)
                    if chatflow is None:
                        work.answers.append(UnknownChatflow(request.public_key))
                        continue
                    key = _key(chatflow, request.message)
                    seen = existing.get(key) or in_batch.get(key)
                    if seen is not None:
                        conversation = earlier.get(seen.conversation_id) or next(
                            p.conversation
                            for p in work.answers
                            if isinstance(p, _Planned) and p.message is seen
                        )
                        work.answers.append(_Planned(conversation, seen, duplicate=True))
                        continue
                    stored = _NewMessage(
                        team_id=chatflow.team_id,
                        chatflow_id=chatflow.id,
                        visitor_id=request.message.visitor_id,
                        client_message_id=request.message.client_message_id,
                        text=request.message.text,
                        created_at=work.now,
                    )
                    in_batch[key] = stored
                    conversation = conversations.get(key[:2])
                    if conversation is None:
                        conversation = await self._start(session, chatflow, request, stored, work)
                        conversations[key[:2]] = conversation
                        threads[conversation.id] = [
                            post.thread for post in work.posts if post.conversation is conversation
                        ]
                        work.answers.append(_Planned(conversation, stored, False, started=True))
                    else:
                        self._continue(conversation, request.message, stored, threads, work)
                        work.answers.append(_Planned(conversation, stored, False))
            await _insert_rows(session, work, self._due_times(work))
            await self._postpone_emails(session, work)
            agents = await self._offered_agents(session, work)
        return [
            answer if isinstance(answer, UnknownChatflow) else _result(answer, agents)
            for answer in work.answers
        ]

    async def _open_conversations(
        self,
        session: AsyncSession,
        chatflows: dict[str, Chatflow],
        known: list[_Request],
        existing: dict[tuple[str, str, str], Message],
    ) -> repo.OpenConversations:
        pairs = {_key(chatflows[r.public_key], r.message)[:2] for r in known}
        found = await repo.open_conversations(session, pairs, timer=followups.OFFLINE_EMAIL)
        starting = {
            pair[0]
            for pair in pairs - found.by_visitor.keys()
            if not any(key[:2] == pair for key in existing)
        }
        if starting and session.bind.dialect.name != "sqlite":
            # New conversations on PostgreSQL: lock their chatflows so that replicas route one
            # at a time (round robin). A conversation another replica opened for one of these
            # visitors meanwhile makes this batch's insert fail on the index of open
            # conversations, and the batch is written again (`_store_with_retries`), finding
            # it: rarer than a second look each batch that starts a chat.
            await session.execute(_LOCK_CHATFLOWS, {"ids": sorted(starting)})
        return found

    async def _look_up_contacts(
        self,
        session: AsyncSession,
        chatflows: dict[str, Chatflow],
        known: list[_Request],
        existing: dict[tuple[str, str, str], Message],
        conversations: dict[tuple[str, str], repo.Chat],
        work: _Batch,
    ) -> None:
        """The contacts of the visitors whose conversations the batch starts, read at once."""
        starting: dict[str, dict[str, str | None]] = {}
        for request in known:
            chatflow = chatflows[request.public_key]
            key = _key(chatflow, request.message)
            if key not in existing and key[:2] not in conversations:
                email = request.message.email if request.identity_verified else None
                starting.setdefault(chatflow.team_id, {}).setdefault(key[1], email)
        for team_id, visitors in starting.items():
            await self._router.look_up_contacts(
                session, work.routing, team_id, list(visitors.items())
            )

    async def _start(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        request: _Request,
        stored: _NewMessage,
        work: _Batch,
    ) -> repo.Chat:
        """Route a new conversation, open its Slack threads, and arm its timers."""
        message, now = request.message, work.now
        bind_log_context(team=chatflow.team_id, conversation=None)
        routed = await self._router.route(
            session,
            chatflow,
            visitor_id=message.visitor_id,
            verified_email=message.email if request.identity_verified else None,
            now=now,
            cache=work.routing,
        )
        decision = routed.decision
        record = routing_record(routed)
        conversation = repo.Chat(
            id=uuid.uuid4().hex,
            team_id=chatflow.team_id,
            token=secrets.token_urlsafe(32),
            routing_outcome=decision.outcome.value,
            offered=list(decision.notify),
            away_message=routed.away_message,
            identity_verified=request.identity_verified,
            visitor_name=message.name or (routed.contact.name if routed.contact else None),
            visitor_email=message.email,
        )
        row = {
            "id": conversation.id,
            "team_id": chatflow.team_id,
            "chatflow_id": chatflow.id,
            "visitor_id": message.visitor_id,
            "identity_verified": request.identity_verified,
            "page_url": message.page_url,
            "token": conversation.token,
            "status": "open",
            "routing_outcome": conversation.routing_outcome,
            "routing": record,
            "contact_id": routed.contact.id if routed.contact else None,
            "offered": conversation.offered,
            "missed": decision.missed,
            "created_at": now,
        }
        work.started[conversation.id] = (row, conversation)
        bind_log_context(team=chatflow.team_id, conversation=conversation.id)
        chat_started(decision.outcome.value)
        stored.conversation_id = conversation.id
        work.stored.append(stored)
        if decision.outcome is Outcome.ROUTED:
            routed.mark_assigned(decision.notify, now)
            self._open_threads(chatflow, conversation, decision.notify, stored, work)
            _add_timer(
                work,
                conversation,
                followups.ESCALATION,
                now + timedelta(seconds=chatflow.escalation_seconds),
            )
        elif decision.email_to:
            # Nobody can take it: email it once the visitor has stopped writing.
            _add_timer(work, conversation, followups.OFFLINE_EMAIL, now + self._debounce)
        elif chatflow.channel_id:
            # Kept as missed, and shown in the chatflow's channel.
            self._open_threads(chatflow, conversation, (), stored, work)
        return conversation

    @staticmethod
    def _open_threads(
        chatflow: Chatflow,
        conversation: repo.Chat,
        notify: tuple[str, ...],
        stored: _NewMessage,
        work: _Batch,
    ) -> None:
        payload = _parent_payload(chatflow, notify)
        for rep_user_id, channel_id in places(chatflow, notify):
            rep = work.routing.reps.get((chatflow.team_id, rep_user_id or ""))
            posts_to = channel_id or (rep.dm_channel_id if rep is not None else None)
            thread = _NewThread(
                chatflow.team_id, conversation.id, rep_user_id, channel_id, work.now, posts_to
            )
            work.threads.append(thread)
            work.posts.append(_Post("post_parent", thread, stored, conversation, payload))

    @staticmethod
    def _continue(
        conversation: repo.Chat,
        message: VisitorMessageIn,
        stored: _NewMessage,
        threads: dict[str, list[_NewThread | _Thread]],
        work: _Batch,
    ) -> None:
        """A later message: into the same threads; the offline email waits for the visitor.
        A name or email the conversation lacks is taken from it."""
        name = conversation.visitor_name or message.name
        email = conversation.visitor_email or message.email
        if (name, email) != (conversation.visitor_name, conversation.visitor_email):
            conversation.visitor_name, conversation.visitor_email = name, email
            if conversation.id not in work.started:
                work.named[conversation.id] = conversation
        stored.conversation_id = conversation.id
        work.stored.append(stored)
        for thread in threads.get(conversation.id, []):
            work.posts.append(_Post("post_reply", thread, stored, conversation, None))
        if conversation.id in work.email_waits:
            work.postponed.add(conversation.id)

    def _due_times(self, work: _Batch) -> list[datetime]:
        """When each of the batch's posts is due: at once, or, where its channel is known and
        Slack's pace for it is taken up, at its slot behind the posts waiting for it. Written
        due at once, a round of the delivery worker would read it and write it again with that
        slot: under a flood of visitor messages, every post written (300-1,500 a second in the
        benchmark's ingest figure). A slot given to a batch that fails is not given back: the
        posts after it wait a second longer than they need."""
        if self._pacer is None:
            return [work.now] * len(work.posts)
        pacer = self._pacer
        return [
            work.now + timedelta(seconds=pacer.queue(post.thread.posts_to))
            if post.thread.posts_to is not None
            else work.now
            for post in work.posts
        ]

    async def _postpone_emails(self, session: AsyncSession, work: _Batch) -> None:
        if not work.postponed:
            return
        await session.execute(
            _POSTPONE_EMAILS,
            {"ids": sorted(work.postponed), "due_at": work.now + self._debounce},
        )

    async def _offered_agents(
        self, session: AsyncSession, work: _Batch
    ) -> dict[tuple[str, str], Agent]:
        """The reps each answer names, as the visitor sees them: those routing read for the
        conversations the batch started, then those read for an earlier answer less than
        AGENT_FOR ago, then the rest, read once for the batch. On a busy site every batch
        answers later messages of chats offered to the same reps: a read each batch for names
        that seldom change (a rep renamed shows in answers within AGENT_FOR)."""
        now = time.monotonic()
        agents = {key: agent(rep) for key, rep in work.routing.reps.items()}
        self._agents.update((key, (now, found)) for key, found in agents.items())
        wanted: dict[str, set[str]] = {}
        for answer in work.answers:
            if isinstance(answer, UnknownChatflow) or answer.started:
                continue
            conversation = answer.conversation
            if conversation.routing_outcome != Outcome.ROUTED.value:
                continue
            for user_id in conversation.offered:
                key = (conversation.team_id, user_id)
                if key in agents:
                    continue
                kept = self._agents.get(key)
                if kept is not None and now - kept[0] < AGENT_FOR:
                    agents[key] = kept[1]
                else:
                    wanted.setdefault(conversation.team_id, set()).add(user_id)
        for team_id, user_ids in wanted.items():
            for rep in (await repo.rep_rows_by_id(session, team_id, user_ids)).values():
                agents[team_id, rep.user_id] = found = agent(rep)
                self._agents[team_id, rep.user_id] = (now, found)
        return agents


def _key(chatflow: Chatflow, message: VisitorMessageIn) -> tuple[str, str, str]:
    return (chatflow.id, message.visitor_id, message.client_message_id)


def _add_timer(work: _Batch, conversation: repo.Chat, kind: str, due_at: datetime) -> None:
    """A new conversation's timer (it has none yet, so nothing to look up)."""
    work.timers.append(
        {
            "team_id": conversation.team_id,
            "kind": kind,
            "conversation_id": conversation.id,
            "due_at": due_at,
            "created_at": work.now,
        }
    )


# Statements of every batch, built once (building one with a list in it costs about as much
# as running it).
_LOCK_CHATFLOWS = (
    select(Chatflow.id)
    .where(Chatflow.id.in_(bindparam("ids", expanding=True)))
    .order_by(Chatflow.id)
    .with_for_update()
)
_NAME_CONVERSATIONS = (
    update(Conversation.__table__)
    .where(Conversation.id == bindparam("chat"))
    .values(visitor_name=bindparam("name"), visitor_email=bindparam("email"))
)
_POSTPONE_EMAILS = (
    update(Timer)
    .where(
        Timer.conversation_id.in_(bindparam("ids", expanding=True)),
        Timer.kind == followups.OFFLINE_EMAIL,
        Timer.status == "pending",
    )
    .values(due_at=bindparam("due_at"))
    .execution_options(synchronize_session=False)
)
_INSERT_MESSAGES = insert(Message.__table__).returning(
    Message.id, Message.chatflow_id, Message.visitor_id, Message.client_message_id
)
_INSERT_THREADS = insert(SlackThread.__table__).returning(
    SlackThread.id, SlackThread.conversation_id, SlackThread.rep_user_id, SlackThread.channel_id
)


async def _insert_rows(session: AsyncSession, work: _Batch, due: list[datetime]) -> None:
    """Insert the batch's conversations, its messages and threads (learning their ids by their
    keys), then its timers, feed entries and outbox rows (each post due as `due` says): in one
    statement on PostgreSQL, a statement per table on SQLite; and give the earlier
    conversations the names and emails they were given."""
    if work.named:
        await session.execute(
            _NAME_CONVERSATIONS,
            [
                {"chat": chat.id, "name": chat.visitor_name, "email": chat.visitor_email}
                for chat in work.named.values()
            ],
        )
    if session.bind.dialect.name == "postgresql":
        await _insert_in_one_statement(session, work, due)
        return
    await work.routing.write_stamps(session)
    if work.started:
        await session.execute(
            insert(Conversation.__table__),
            _conversation_rows(work),
        )
    if work.stored:
        stored = {(m.chatflow_id, m.visitor_id, m.client_message_id): m for m in work.stored}
        rows = await session.execute(_INSERT_MESSAGES, [m.values() for m in work.stored])
        for message_id, *key in rows:
            stored[tuple(key)].id = message_id  # type: ignore[index]
        await session.execute(
            insert(FeedItem.__table__),
            [repo.feed_row(m.conversation_id, m.id, "message", work.now) for m in work.stored],
        )
    if work.threads:
        threads = {(t.conversation_id, t.rep_user_id, t.channel_id): t for t in work.threads}
        rows = await session.execute(_INSERT_THREADS, [t.values() for t in work.threads])
        for thread_id, *key in rows:
            threads[tuple(key)].id = thread_id  # type: ignore[index]
    if work.timers:
        await session.execute(insert(Timer.__table__), work.timers)
    if work.posts:
        await session.execute(
            insert(OutboxItem.__table__),
            [
                repo.outbox_row(
                    team_id=conversation.team_id,
                    kind=kind,
                    conversation_id=conversation.id,
                    thread_id=thread.id,
                    message_id=stored.id,
                    now=work.now,
                    payload=payload,
                    due=at,
                )
                for (kind, thread, stored, conversation, payload), at in zip(
                    work.posts, due, strict=True
                )
            ],
        )


def _conversation_rows(work: _Batch) -> list[dict[str, object]]:
    """The rows of the conversations the batch starts, with the name and email given since."""
    return [
        {**row, "visitor_name": chat.visitor_name, "visitor_email": chat.visitor_email}
        for row, chat in work.started.values()
    ]


async def _insert_in_one_statement(
    session: AsyncSession, work: _Batch, due: list[datetime]
) -> None:
    """`_insert_rows` on PostgreSQL: the rows as `batch_insert` takes them, with round
    robin's stamps."""
    if not work.stored:
        return  # every message was a duplicate: nothing new at all (and no chat routed)
    ids = await batch_insert.insert_batch(
        session,
        now=work.now,
        conversations=_conversation_rows(work),
        messages=[m.values() for m in work.stored],
        threads=[t.values() for t in work.threads],
        timers=work.timers,
        posts=[
            {
                "team_id": conversation.team_id,
                "kind": kind,
                "conversation_id": conversation.id,
                "thread_id": thread.id if isinstance(thread, _Thread) else None,
                "rep_user_id": None if isinstance(thread, _Thread) else thread.rep_user_id,
                "channel_id": None if isinstance(thread, _Thread) else thread.channel_id,
                "chatflow_id": stored.chatflow_id,
                "visitor_id": stored.visitor_id,
                "client_message_id": stored.client_message_id,
                "payload": payload,
                "next_attempt_at": at,
            }
            for (kind, thread, stored, conversation, payload), at in zip(
                work.posts, due, strict=True
            )
        ],
        stamps=work.routing.take_stamps(),
    )
    for message in work.stored:
        message.id = ids[message.chatflow_id, message.visitor_id, message.client_message_id]


def _result(planned: _Planned, agents: dict[tuple[str, str], Agent]) -> VisitorMessageResult:
    conversation = planned.conversation
    routed = conversation.routing_outcome == Outcome.ROUTED.value
    notified = list(conversation.offered) if routed else []
    return VisitorMessageResult(
        conversation_id=conversation.id,
        conversation_token=conversation.token,
        message_id=planned.message.id,
        status=conversation.routing_outcome,
        agents=tuple(
            agents[conversation.team_id, u] for u in notified if (conversation.team_id, u) in agents
        ),
        away_message=None if routed else conversation.away_message,
        identity_verified=conversation.identity_verified,
        duplicate=planned.duplicate,
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
