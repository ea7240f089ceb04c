"""Two `slackrouter run` replicas on one PostgreSQL database, requests spread over both: every
chat is posted exactly once, an escalation fires once, and a visitor streaming from one replica
gets the replies that Slack delivered to the other.

The module's tests share the two replicas (starting them is most of a test's time) and run in the
module's event loop."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from slackrouter.adapters.db.models import Chatflow
from tests.resilience.harness import (
    AppProcess,
    Deployment,
    Figures,
    FiguresLog,
    Load,
    all_posted,
    conversations,
    deployment,
    eventually,
    members,
    new_tag,
    reps,
    running,
    send,
    tally,
    until_routed,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.asyncio(loop_scope="module")]

LOAD_REPS = reps(24)
ESCALATION_REPS = reps(2, "U0ESC")
STREAM_REP = "U0STREAM"
ESCALATION_SECONDS = 2


@dataclass
class Replicas:
    env: Deployment
    a: AppProcess
    b: AppProcess
    load: Chatflow  # round robin over many reps
    escalation: Chatflow  # two reps in turn, then nobody, a few seconds apart
    stream: Chatflow  # one rep

    @property
    def urls(self) -> list[str]:
        return [self.a.url, self.b.url]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replicas(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replicas]:
    workdir = tmp_path_factory.mktemp("replicas")
    everyone = [*LOAD_REPS, *ESCALATION_REPS, STREAM_REP]
    async with deployment("postgresql", workdir, members(everyone)) as env:
        store = env.store
        load = await store.chatflow(
            LOAD_REPS, name="Load", assignment="round_robin", escalation_seconds=3600
        )
        escalation = await store.chatflow(
            ESCALATION_REPS,
            name="Escalation",
            assignment="round_robin",
            escalation_seconds=ESCALATION_SECONDS,
        )
        stream = await store.chatflow([STREAM_REP], name="Stream", escalation_seconds=3600)
        a, b = env.app("replica-a"), env.app("replica-b")
        async with running(a, b):
            await until_routed(store, everyone)
            yield Replicas(env, a, b, load, escalation, stream)


async def test_every_chat_is_posted_exactly_once(replicas: Replicas, figures: FiguresLog) -> None:
    slack, store = replicas.env.slack, replicas.env.store
    chats = conversations(40, 5)
    load = await send(replicas.urls, replicas.load.public_key, chats, Load())
    await all_posted(slack, load.tags)
    await store.settled()
    result = tally(
        "two replicas (postgresql)",
        load.tags,
        [post.tags for post in await slack.posts()],
    )
    figures.record(result)
    assert not load.refused and not load.server_errors, load.failures
    assert result.lost == 0
    assert result.duplicated == 0


async def test_an_unanswered_chat_escalates_once(replicas: Replicas, figures: FiguresLog) -> None:
    slack, store = replicas.env.slack, replicas.env.store
    chats = conversations(6, 1)
    load = await send(replicas.urls, replicas.escalation.public_key, chats, Load())
    assert not load.refused and not load.server_errors, load.failures

    async with httpx.AsyncClient(timeout=10) as http:

        async def notices() -> dict[str, int]:
            """Per chat, the notices that nobody can answer now (read from either replica)."""
            found: dict[str, int] = {}
            for n, (tag, accepted) in enumerate(load.accepted.items()):
                response = await http.get(
                    f"{replicas.urls[n % 2]}/v1/conversations/{accepted['conversation_id']}"
                    "/messages",
                    headers={"Authorization": f"Bearer {accepted['conversation_token']}"},
                )
                response.raise_for_status()
                messages = response.json()["messages"]
                found[tag] = sum(1 for m in messages if m["author"] == "system")
            return found

        async def everyone_told() -> dict[str, int] | None:
            found = await notices()
            return found if all(found.values()) else None

        told = await eventually(everyone_told, within=60, what="every chat runs out of reps")
        await store.settled()
        told = await notices()
    # Each chat went to one rep, then (escalated) to the other: two posts, in two DMs.
    posts = [post for post in await slack.posts() if set(post.tags) & load.tags]
    per_chat = Counter(tag for post in posts for tag in post.tags)
    places = {tag: {post.channel for post in posts if tag in post.tags} for tag in load.tags}
    escalations = sum(count - 1 for count in per_chat.values())
    result = Figures(
        test="escalation on two replicas",
        accepted=len(load.tags),
        delivered=sum(1 for tag in load.tags if per_chat[tag] >= 2),
        lost=sum(1 for tag in load.tags if per_chat[tag] < 2),
        duplicated=sum(max(0, per_chat[tag] - 2) + told[tag] - 1 for tag in load.tags),
        notes=(("escalation_posts", escalations), ("notices", sum(told.values()))),
    )
    figures.record(result)
    assert all(per_chat[tag] == 2 for tag in load.tags), per_chat
    assert all(len(channels) == 2 for channels in places.values()), places
    assert all(count == 1 for count in told.values()), told


async def read_stream(url: str, accepted: dict[str, Any], into: list[dict[str, Any]]) -> None:
    """Follow a conversation's event stream on one replica, appending each message."""
    path = f"{url}/v1/conversations/{accepted['conversation_id']}/stream"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http,
        http.stream("GET", path, params={"token": accepted["conversation_token"]}) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                into.append(json.loads(line.removeprefix("data:")))


async def test_streams_on_either_replica_get_every_reply(
    replicas: Replicas, figures: FiguresLog
) -> None:
    slack = replicas.env.slack
    load = await send([replicas.a.url], replicas.stream.public_key, conversations(1, 1), Load())
    [(tag, accepted)] = load.accepted.items()
    [parent] = [p for p in await all_posted(slack, {tag}) if tag in p.tags]
    streamed: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    readers = [
        asyncio.create_task(read_stream(replicas.a.url, accepted, streamed["a"])),
        asyncio.create_task(read_stream(replicas.b.url, accepted, streamed["b"])),
    ]
    try:

        async def both_open() -> bool:
            return all(streamed.values())

        await eventually(both_open, within=30, what="both streams show the visitor's message")
        cursor = streamed["b"][-1]["cursor"]
        async with httpx.AsyncClient(timeout=60) as http:
            # A visitor long-polling replica B while Slack delivers the reply to replica A.
            waiting = asyncio.create_task(
                http.get(
                    f"{replicas.b.url}/v1/conversations/{accepted['conversation_id']}/messages",
                    params={"after": cursor, "wait": 25},
                    headers={"Authorization": f"Bearer {accepted['conversation_token']}"},
                )
            )
            replies = [new_tag(), new_tag()]
            await slack.send_events_to(replicas.a.url)
            await slack.reply(STREAM_REP, parent.channel, parent.ts, f"{replies[0]} yes")
            polled = (await waiting).json()["messages"]
        await slack.send_events_to(replicas.b.url)
        await slack.reply(STREAM_REP, parent.channel, parent.ts, f"{replies[1]} sure")

        async def all_streamed() -> bool:
            return all(
                all(any(tag in (m["text"] or "") for m in events) for tag in replies)
                for events in streamed.values()
            )

        await eventually(all_streamed, within=40, what="both streams show both replies")
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    shown = Counter(
        (replica, tag)
        for replica, events in streamed.items()
        for message in events
        for tag in replies
        if tag in (message["text"] or "")
    )
    owed = [(replica, tag) for replica in streamed for tag in replies]
    figures.record(
        Figures(
            test="streams on two replicas (replies x streams)",
            accepted=len(owed),
            delivered=sum(1 for pair in owed if shown[pair]),
            lost=sum(1 for pair in owed if not shown[pair]),
            duplicated=sum(shown[pair] - 1 for pair in owed if shown[pair] > 1),
        )
    )
    assert [m["author"] for m in polled] == ["rep"], "the long-poll on B missed A's reply"
    assert replies[0] in polled[0]["text"]
    assert all(shown[pair] == 1 for pair in owed), shown
