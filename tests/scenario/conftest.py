"""The whole app over real HTTP: uvicorn serving slackrouter, a fake Slack server speaking Slack's
wire format, the real slack_sdk client between them, and a real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from slackrouter.adapters.db.models import SlackThread
from slackrouter.api.app import create_api
from slackrouter.bootstrap import Runtime, build
from slackrouter.clock import utcnow
from slackrouter.config import Settings
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow
from tests.conftest import Database

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T] | T], within: float = 20.0) -> T:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(0.02)


@dataclass
class Chat:
    """What a scenario needs: the app's URL, the fake Slack, the chatflow, a visitor's client."""

    url: str
    slack: FakeSlack
    runtime: Runtime
    public_key: str
    signing_secret: str
    http: httpx.AsyncClient
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def visitor_says(
        self,
        text: str,
        *,
        visitor_id: str = "visitor-1",
        client_message_id: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body = {
            "visitor_id": visitor_id,
            "client_message_id": client_message_id or f"m{len(self.sent) + 1}",
            "text": text,
            **extra,
        }
        self.sent.append(body)
        return await self.http.post(f"/v1/chatflows/{self.public_key}/messages", json=body)

    async def read(
        self, conversation_id: str, token: str, *, after: int = 0, wait: float = 0
    ) -> httpx.Response:
        return await self.http.get(
            f"/v1/conversations/{conversation_id}/messages",
            params={"after": after, "wait": wait},
            headers={"Authorization": f"Bearer {token}"},
        )

    def posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        """chat.postMessage calls Slack answered ok, optionally in one channel."""
        return [
            c.params
            for c in self.slack.calls_to("chat.postMessage")
            if c.response.get("ok") and (channel is None or c.params.get("channel") == channel)
        ]

    async def parent_post(self, user_id: str) -> dict[str, Any]:
        """The chat's parent message in a rep's DM, once delivered; returns Slack's answer."""

        def find() -> dict[str, Any] | None:
            for call in self.slack.calls_to("chat.postMessage"):
                if (
                    call.response.get("ok")
                    and call.params.get("channel") == f"D{user_id}"
                    and not call.params.get("thread_ts")
                ):
                    return call.response
            return None

        response = await eventually(find)

        async def recorded() -> bool:
            # A rep can only answer a post they have seen; wait until the app has recorded it.
            async with self.runtime.sessions() as session:
                thread = await session.scalar(
                    select(SlackThread).where(SlackThread.thread_ts == response["ts"])
                )
            return thread is not None

        await eventually(recorded)
        return response

    async def presence(self, **states: str) -> None:
        """Set reps' Slack presence and let the app's poller see it."""
        for user_id, state in states.items():
            self.slack.set_presence(user_id, state)
        await self.runtime.presence.refresh(pace=False, wait=True)


@pytest.fixture
async def chat(database: Database) -> AsyncIterator[Chat]:
    slack = FakeSlack()
    for user_id, name in ((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol")):
        slack.add_user(user_id, name.lower(), real_name=f"{name} Rep", display_name=name)
    async with serve(slack.asgi) as slack_url:
        settings = Settings(
            slack_bot_token="xoxb-fake",
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=f"{slack_url}/api/",
            database_url=database.url,
            presence_refresh_interval=3600,
            delivery_poll_interval=0.5,
        )
        runtime = build(settings, db_schema=database.schema)
        await runtime.migrate()
        chatflow = await create_chatflow(
            runtime.sessions,
            team_id=slack.team_id,
            spec=ChatflowSpec(name="Sales", route_users=(ALICE, BOB)),
            clock=utcnow,
        )
        async with serve(create_api(runtime)) as url:
            slack.configure_events(f"{url}/slack/events", SIGNING_SECRET)
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                chat = Chat(
                    url=url,
                    slack=slack,
                    runtime=runtime,
                    public_key=chatflow.public_key,
                    signing_secret=chatflow.signing_secret,
                    http=http,
                )
                await chat.presence(**{ALICE: "active", BOB: "active"})
                yield chat
