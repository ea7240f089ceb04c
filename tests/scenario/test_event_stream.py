"""A held event stream: it reads the feed only when woken, keeps the connection alive with
comments, and ends when the visitor leaves or the server shuts down."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import event

from slackrouter.api import streams
from tests.scenario.conftest import ALICE, Chat, eventually

SITE = "https://shop.example"


async def _open(chat: Chat) -> dict[str, Any]:
    response = await chat.visitor_says("Hello, do you ship to Norway?", name="Nora")
    assert response.status_code == 201, response.text
    return response.json()


async def _follow(chat: Chat, accepted: dict[str, Any], lines: list[str]) -> None:
    url = f"/v1/conversations/{accepted['conversation_id']}/stream"
    params = {"token": accepted["conversation_token"]}
    async with chat.http.stream("GET", url, params=params, headers={"Origin": SITE}) as stream:
        assert stream.status_code == 200
        assert stream.headers["access-control-allow-origin"] == "*"
        async for line in stream.aiter_lines():
            lines.append(line)


async def test_a_held_stream_reads_the_feed_only_when_woken_and_pings_in_between(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "KEEP_ALIVE", 0.2)
    accepted = await _open(chat)
    parent = await chat.parent_post(ALICE)
    feed_reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT feed."):
            feed_reads.append(statement)

    lines: list[str] = []
    listener = asyncio.create_task(_follow(chat, accepted, lines))
    try:
        await eventually(lambda: any(line.startswith("data:") for line in lines))
        event.listen(chat.runtime.engine.sync_engine, "before_cursor_execute", seen)
        await eventually(lambda: lines.count(": ping") >= 3)
        assert feed_reads == []  # pings read nothing

        await chat.slack.user_posts(ALICE, f"D{ALICE}", "We do!", thread_ts=parent["ts"])
        await eventually(lambda: sum(line.startswith("data:") for line in lines) == 2)
        assert json.loads(lines[-2].split(":", 1)[1])["text"] == "We do!"
        assert len(feed_reads) == 1  # one read for the one reply
    finally:
        event.remove(chat.runtime.engine.sync_engine, "before_cursor_execute", seen)
        listener.cancel()


async def test_the_stream_is_let_go_when_the_visitor_leaves(chat: Chat) -> None:
    accepted = await _open(chat)
    lines: list[str] = []
    listener = asyncio.create_task(_follow(chat, accepted, lines))
    await eventually(lambda: chat.runtime.notifier.waiting == 1 and lines)
    listener.cancel()  # the visitor closed the tab
    await eventually(lambda: chat.runtime.notifier.waiting == 0)


async def test_the_stream_ends_when_the_server_shuts_down(chat: Chat) -> None:
    accepted = await _open(chat)
    lines: list[str] = []
    listener = asyncio.create_task(_follow(chat, accepted, lines))
    await eventually(lambda: any(line.startswith("data:") for line in lines))
    chat.runtime.notifier.close()  # what `slackrouter run` does as it starts shutting down
    await asyncio.wait_for(listener, 10)  # the response ended by itself
    assert chat.runtime.notifier.waiting == 0
