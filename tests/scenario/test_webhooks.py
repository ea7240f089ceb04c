"""The outbound webhook: the website hears of each rep reply, signed, once, retried when down."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slackrouter.adapters.db.models import Chatflow
from slackrouter.api.signing import verify
from slackrouter.sandbox.server import serve
from tests.scenario.conftest import ALICE, Chat, eventually


class Website:
    """The site's webhook receiver: answers 503 `down` times, then 200."""

    def __init__(self, down: int = 0) -> None:
        self.down = down
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.asgi = Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        self.calls.append((dict(request.headers), await request.body()))
        if self.down > 0:
            self.down -= 1
            return Response(status_code=503)
        return Response(status_code=204)

    def delivered(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.calls]


async def with_webhook(chat: Chat, url: str) -> None:
    async with chat.runtime.sessions() as session, session.begin():
        await session.execute(update(Chatflow).values(webhook_url=url))


async def test_each_rep_reply_is_posted_to_the_website_signed(chat: Chat) -> None:
    website = Website()
    async with serve(website.asgi) as site:
        await with_webhook(chat, f"{site}/hook")
        accepted = (await chat.visitor_says("Hi")).json()
        parent = await chat.parent_post(ALICE)
        await chat.slack.user_posts(ALICE, f"D{ALICE}", "Hello from Alice", thread_ts=parent["ts"])
        await chat.slack.user_posts(ALICE, f"D{ALICE}", ";; a note", thread_ts=parent["ts"])
        await eventually(lambda: website.calls)
        headers, body = website.calls[0]
        assert (
            verify(
                chat.signing_secret,
                headers["x-slackrouter-timestamp"],
                headers["x-slackrouter-signature"],
                body,
            )
            is None
        )
        event = json.loads(body)
        assert event["event"] == "message"
        assert event["conversation_id"] == accepted["conversation_id"]
        assert event["message"]["author"] == "rep"
        assert event["message"]["text"] == "Hello from Alice"
        assert headers["idempotency-key"] == event["id"]
        # Internal notes never leave Slack.
        assert len(website.calls) == 1


async def test_a_website_that_is_down_gets_the_reply_when_it_is_back(chat: Chat) -> None:
    website = Website(down=2)
    async with serve(website.asgi) as site:
        await with_webhook(chat, f"{site}/hook")
        await chat.visitor_says("Hi")
        parent = await chat.parent_post(ALICE)
        await chat.slack.user_posts(ALICE, f"D{ALICE}", "Hello", thread_ts=parent["ts"])
        await eventually(lambda: len(website.calls) == 3, within=30)
        ids = {headers["idempotency-key"] for headers, _ in website.calls}
        assert len(ids) == 1, "retries carry the same idempotency key"
        assert website.down == 0
