"""A rep's reply that reaches the app before the post it answers is written down as the chat's
thread (Slack answered the post, the delivery worker's commit comes after) still reaches the
visitor; a reply in a thread that is no chat's is ignored."""

from __future__ import annotations

import asyncio
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.util import await_

from slackrouter.adapters.db.models import Message, OutboxItem, SlackThread
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.clock import utcnow
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.replies import Replies, RepMessage
from tests.integration.test_delivery import add, threads

REP, DM = "U1", "C1"  # the rep of `threads`' DM chat, and that DM


async def chat_being_posted(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """A chat in REP's DM whose parent post is under way: its thread has no ts yet. Returns
    (thread id, outbox item id)."""
    thread_id = (await threads(sessions))["dm"]
    return thread_id, await add(sessions, thread_id=thread_id, kind="post_parent")


async def delivered(
    sessions: async_sessionmaker[AsyncSession], thread_id: int, item_id: int
) -> None:
    """The delivery worker's commit once Slack has answered the parent post."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(SlackThread)
            .where(SlackThread.id == thread_id)
            .values(channel_id=DM, thread_ts="1700000000.000100")
        )
        await session.execute(
            update(OutboxItem).where(OutboxItem.id == item_id).values(status="done")
        )


def replies(sessions: async_sessionmaker[AsyncSession]) -> Replies:
    # No call reaches this client: a reply without mentions needs nothing from Slack.
    slack = SlackGateway(AsyncWebClient(token="xoxb-unused", base_url="http://127.0.0.1:9/api/"))
    return Replies(sessions, FeedNotifier(), slack, clock=utcnow, on_outbox=lambda: None)


def reply(text: str = "Happy to help!") -> RepMessage:
    return RepMessage(
        team_id="T0001",
        channel=DM,
        thread_ts="1700000000.000100",
        ts="1700000001.000200",
        user_id=REP,
        text=text,
    )


async def rep_messages(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(Message.text).where(Message.author == "rep")))


async def test_a_reply_before_its_thread_is_written_down_reaches_the_visitor(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    thread_id, item_id = await chat_being_posted(sessions)
    relaying = asyncio.create_task(replies(sessions).relay(reply()))
    await asyncio.sleep(0.3)
    assert not relaying.done()  # it waits for the post under way
    await delivered(sessions, thread_id, item_id)
    async with asyncio.timeout(5):
        assert await relaying == "relayed"
    assert await rep_messages(sessions) == ["Happy to help!"]


async def test_a_reply_whose_parent_post_is_committed_while_it_is_looked_up_reaches_the_visitor(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The commit lands after the app found no thread at the reply's ts and before it looks
    for a parent post under way: it finds neither, and must look for the thread again."""
    thread_id, item_id = await chat_being_posted(sessions)
    engine = sessions.kw["bind"].sync_engine
    committed: list[str] = []

    def commit_before_the_outbox_is_read(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if " outbox" in statement and not committed:
            committed.append(statement)
            await_(delivered(sessions, thread_id, item_id))

    event.listen(engine, "before_cursor_execute", commit_before_the_outbox_is_read)
    try:
        async with asyncio.timeout(5):
            assert await replies(sessions).relay(reply()) == "relayed"
    finally:
        event.remove(engine, "before_cursor_execute", commit_before_the_outbox_is_read)
    assert committed  # the commit did land between the two reads
    assert await rep_messages(sessions) == ["Happy to help!"]


async def test_a_reply_in_a_thread_that_is_no_chats_is_ignored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, item_id = await chat_being_posted(sessions)
    async with sessions() as session, session.begin():  # the parent post failed for good
        await session.execute(
            update(OutboxItem).where(OutboxItem.id == item_id).values(status="failed")
        )
    async with asyncio.timeout(5):
        assert await replies(sessions).relay(reply()) == "not_a_chat"
    assert await rep_messages(sessions) == []
