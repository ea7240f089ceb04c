"""A chat's post to Slack is leased before it is made: while Slack takes its time nobody else
makes it, and a post that an app killed mid-way made but never recorded is found, not made again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from slackrouter.adapters.db.models import OutboxItem, SlackThread
from slackrouter.clock import utcnow
from tests.scenario.conftest import ALICE, BOB, Chat, eventually


async def parent_item(chat: Chat) -> OutboxItem | None:
    async with chat.runtime.sessions() as session:
        return await session.scalar(select(OutboxItem).where(OutboxItem.kind == "post_parent"))


async def test_a_post_is_leased_while_slack_makes_it(chat: Chat) -> None:
    await chat.presence(**{BOB: "away"})
    chat.slack.stall("chat.postMessage", 1.5)
    assert (await chat.visitor_says("Do you ship to Norway?")).status_code == 201

    async def leased() -> OutboxItem | None:
        item = await parent_item(chat)
        return item if item is not None and item.result == {"uncertain": True} else None

    item = await eventually(leased)
    assert item.status == "pending"
    assert item.next_attempt_at > utcnow() + timedelta(seconds=30)
    parent = await chat.parent_post(ALICE)
    done = await parent_item(chat)
    assert done is not None and done.status == "done"
    assert done.result == {"channel": f"D{ALICE}", "ts": parent["ts"]}


async def test_a_post_made_by_a_killed_app_is_found_and_not_made_again(chat: Chat) -> None:
    await chat.presence(**{BOB: "away"})
    assert (await chat.visitor_says("Do you ship to Norway?")).status_code == 201
    parent = await chat.parent_post(ALICE)
    # What an app killed after making the post leaves, once the lease has run out: the post is
    # in Slack, and the database knows only that it may have been made.
    async with chat.runtime.sessions() as session, session.begin():
        item = await session.scalar(select(OutboxItem).where(OutboxItem.kind == "post_parent"))
        assert item is not None
        item.status, item.done_at = "pending", None
        item.result, item.next_attempt_at = {"uncertain": True}, utcnow()
        thread = await session.get_one(SlackThread, item.thread_id)
        thread.channel_id = thread.thread_ts = None

    await chat.runtime.delivery.run_once()

    done = await parent_item(chat)
    assert done is not None and done.status == "done"
    assert done.result == {"channel": f"D{ALICE}", "ts": parent["ts"], "found_after_failure": True}
    async with chat.runtime.sessions() as session:
        thread = await session.get_one(SlackThread, done.thread_id)
    assert (thread.channel_id, thread.thread_ts) == (f"D{ALICE}", parent["ts"])
    assert len(chat.posts(f"D{ALICE}")) == 1
