"""Visitor messages are written in batches (group commit): a batch's new rows go in together (in
one statement on PostgreSQL), and keep the order the visitor's feed and each Slack thread's
posts need. On PostgreSQL, while messages keep coming, the few that wait are given a moment to
be joined by others, so that a busy site pays a transaction's round trips for several messages
rather than one each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from slackrouter.adapters.db.models import (
    Conversation,
    FeedItem,
    Message,
    OutboxItem,
    Rep,
    SlackThread,
    Timer,
)
from slackrouter.bootstrap import Runtime, build
from slackrouter.clock import utcnow
from slackrouter.config import load_settings
from slackrouter.sandbox.scratch_database import TEAM_ID, ScratchDatabase, scratch_database
from slackrouter.services.visitor_messages import VisitorMessageIn
from tests.conftest import POSTGRES_URL

REPS = ("U001", "U002")


@dataclass
class App:
    runtime: Runtime
    public_key: str
    database: ScratchDatabase

    def submit(self, visitor: str, message: str) -> asyncio.Future[Any]:
        return self.runtime.visitor_messages.submit(
            public_key=self.public_key,
            message=VisitorMessageIn(
                visitor_id=visitor, client_message_id=message, text=f"{visitor} {message}"
            ),
            identity_verified=False,
        )


def build_app(database_url: str) -> Runtime:
    """The app (its writer in this process) on this database."""
    return build(
        load_settings(
            {
                "DATABASE_URL": database_url,
                "SLACK_BOT_TOKEN": "xoxb-unused",
                "SLACK_SIGNING_SECRET": "unused",
                "SLACK_API_URL": "http://127.0.0.1:9/api/",  # nothing calls Slack here
                "WORKER_PROCESS": "inline",
                "PRESENCE_MAX_AGE": "3600",
            }
        )
    )


@contextlib.asynccontextmanager
async def running_app(kind: str, workdir: Path) -> AsyncIterator[App]:
    """The app on a new database of `kind` with a round-robin chatflow over two reps, both
    seen active in Slack a moment ago."""
    async with scratch_database(
        ScratchDatabase, kind, workdir, server_url=POSTGRES_URL, prefix="batches_"
    ) as database:
        chatflow = await database.chatflow(REPS, assignment="round_robin")
        now = utcnow()
        async with database.sessions() as session, session.begin():
            for user_id in REPS:
                rep = await session.get(Rep, (TEAM_ID, user_id)) or Rep(
                    team_id=TEAM_ID, user_id=user_id
                )
                rep.presence, rep.presence_checked_at = "active", now
                rep.dnd, rep.dnd_checked_at, rep.profile_checked_at = False, now, now
                session.add(rep)
        runtime = build_app(database.url)
        try:
            yield App(runtime, chatflow.public_key, database)
        finally:
            await runtime.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(request.param, tmp_path) as app:
        yield app


@pytest.fixture
async def postgres_app(tmp_path: Path) -> AsyncIterator[App]:
    async with running_app("postgresql", tmp_path) as app:
        yield app


async def test_new_chats_and_their_next_messages_in_one_batch_keep_their_order(
    app: App,
) -> None:
    answers = await asyncio.gather(
        app.submit("v1", "m0"),  # starts a chat, routed to a rep's DM
        app.submit("v2", "m0"),  # another chat, the other rep
        app.submit("v1", "m1"),  # the first chat's next message
        app.submit("v1", "m0"),  # sent again: the same message
    )
    first, second, later, again = answers
    assert later.conversation_id == first.conversation_id != second.conversation_id
    assert [a.duplicate for a in answers] == [False, False, False, True]
    assert again.message_id == first.message_id
    assert first.message_id < second.message_id < later.message_id
    async with app.database.sessions() as session:
        texts = await session.scalars(
            select(Message.text)
            .join(FeedItem, FeedItem.message_id == Message.id)
            .where(FeedItem.conversation_id == first.conversation_id)
            .order_by(FeedItem.id)
        )
        assert list(texts) == ["v1 m0", "v1 m1"]  # the visitor's feed, in order
        posts = (
            await session.execute(
                select(OutboxItem.kind, OutboxItem.message_id, SlackThread.rep_user_id)
                .join(SlackThread, SlackThread.id == OutboxItem.thread_id)
                .where(OutboxItem.conversation_id == first.conversation_id)
                .order_by(OutboxItem.id)
            )
        ).all()
        # The parent post goes before the reply, into the same thread: the rep offered.
        [(parent, parent_of, rep), (reply, reply_of, same_rep)] = posts
        assert (parent, parent_of, reply, reply_of) == (
            "post_parent",
            first.message_id,
            "post_reply",
            later.message_id,
        )
        assert rep == same_rep and [rep] == [agent.user_id for agent in first.agents]
        timers = await session.scalars(
            select(Timer.kind).where(Timer.conversation_id == second.conversation_id)
        )
        assert list(timers) == ["escalation"]
        assert await session.scalar(select(func.count()).select_from(Message)) == 3


async def test_on_a_busy_postgresql_site_messages_a_moment_apart_are_stored_together(
    postgres_app: App,
) -> None:
    app = postgres_app
    await app.submit("v1", "m0")
    commits: list[Any] = []
    event.listen(app.runtime.engine.sync_engine, "commit", commits.append)
    first = app.submit("v1", "m1")
    await asyncio.sleep(0)  # the writer has started on the first
    second = app.submit("v2", "m0")
    answers = await asyncio.gather(first, second)
    assert [answer.duplicate for answer in answers] == [False, False]
    assert len(commits) == 1
    async with app.database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 3


async def test_one_visitors_first_messages_on_two_replicas_at_once_make_one_chat(
    postgres_app: App,
) -> None:
    other = build_app(postgres_app.database.url)
    replica = App(other, postgres_app.public_key, postgres_app.database)
    try:
        for visitor in ("v1", "v2", "v3"):
            here, there = await asyncio.gather(
                postgres_app.submit(visitor, "m0"), replica.submit(visitor, "m1")
            )
            assert here.conversation_id == there.conversation_id
            assert not here.duplicate and not there.duplicate
    finally:
        await other.engine.dispose()
    async with postgres_app.database.sessions() as session:
        chats = await session.scalar(select(func.count()).select_from(Conversation))
        messages = await session.scalar(select(func.count()).select_from(Message))
        parents = await session.scalar(
            select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "post_parent")
        )
    assert (chats, messages, parents) == (3, 6, 3)


async def test_a_post_to_a_channel_slack_would_not_take_now_is_written_due_at_its_slot(
    app: App,
) -> None:
    """The writer gives each new post its channel's slot, as the delivery worker would a
    round later: due at once where the channel has room, else behind the posts waiting for it
    (Slack takes about one post a second per channel), so that no round has to read it and
    write it again."""
    async with app.database.sessions() as session, session.begin():
        for user_id in REPS:
            rep = await session.get_one(Rep, (TEAM_ID, user_id))
            rep.dm_channel_id = f"D{user_id}"
    free = await app.submit("v0", "m0")  # both reps' DMs have room
    pacer = app.runtime.delivery.pacer
    for user_id in REPS:  # then Slack's burst is used up in both
        waits = [pacer.take(f"D{user_id}", f"earlier-{post}") for post in range(3)]
        assert waits[:2] == [0, 0] and 0 < waits[2] < 0.1  # the third keeps the next slot
    first = await app.submit("v1", "m0")
    later = await app.submit("v1", "m1")

    async def due_in(answer: Any) -> float:
        async with app.database.sessions() as session:
            item = await session.scalar(
                select(OutboxItem).where(OutboxItem.message_id == answer.message_id)
            )
            assert item is not None
            return (item.next_attempt_at - item.created_at).total_seconds()

    assert await due_in(free) == 0
    parent_waits, reply_waits = await due_in(first), await due_in(later)
    assert 0.9 < parent_waits < 1.5  # the channel's next free slot
    assert reply_waits > parent_waits + 0.5  # the slot after it
