"""What the widget needs from the app over HTTP: the script itself, its look in the greeting,
CORS for websites on other origins, and long-polls that end when the visitor leaves."""

from __future__ import annotations

import asyncio
import gzip

from sqlalchemy import update

from slackrouter.adapters.db.models import Chatflow
from slackrouter.api.widget import WIDGET_JS
from tests.scenario.conftest import Chat, eventually

SITE = "https://shop.example"


async def test_the_widget_script_is_served_compressed_and_revalidated_by_etag(chat: Chat) -> None:
    plain = await chat.http.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["cache-control"] == "public, max-age=300"
    assert plain.content == WIDGET_JS.read_bytes()

    request = chat.http.build_request("GET", "/widget.js", headers={"Accept-Encoding": "gzip"})
    zipped = await chat.http.send(request, stream=True)
    wire = b"".join([chunk async for chunk in zipped.aiter_raw()])
    assert zipped.headers["content-encoding"] == "gzip"
    assert gzip.decompress(wire) == plain.content
    assert len(wire) < len(plain.content) / 2
    assert zipped.headers["etag"] == plain.headers["etag"]

    again = await chat.http.get("/widget.js", headers={"If-None-Match": plain.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    changed = await chat.http.get("/widget.js", headers={"If-None-Match": 'W/"older"'})
    assert changed.status_code == 200


async def test_the_greeting_carries_the_widget_look_with_defaults(chat: Chat) -> None:
    greeting = (await chat.http.get(f"/v1/chatflows/{chat.public_key}/greeting")).json()
    assert greeting["widget"] == {
        "color": "#1d4ed8",
        "text_color": "#ffffff",
        "position": "right",
        "title": "Chat with us",
        "launcher_label": "Chat with us",
        "placeholder": "Write a message…",
        "email_prompt": "Leave your email address and we'll write back.",
    }
    async with chat.runtime.sessions() as session, session.begin():
        await session.execute(
            update(Chatflow)
            .where(Chatflow.public_key == chat.public_key)
            .values(widget={"color": "#0b6e4f", "position": "left", "title": "Talk to sales"})
        )
    greeting = (await chat.http.get(f"/v1/chatflows/{chat.public_key}/greeting")).json()
    assert greeting["widget"]["color"] == "#0b6e4f"
    assert greeting["widget"]["position"] == "left"
    assert greeting["widget"]["title"] == "Talk to sales"
    assert greeting["widget"]["placeholder"] == "Write a message…"


async def test_websites_on_any_origin_may_call_the_visitor_api(chat: Chat) -> None:
    preflight = await chat.http.options(
        f"/v1/chatflows/{chat.public_key}/messages",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers

    greeting = await chat.http.get(
        f"/v1/chatflows/{chat.public_key}/greeting", headers={"Origin": SITE}
    )
    assert greeting.headers["access-control-allow-origin"] == "*"

    stream_preflight = await chat.http.options(
        "/v1/conversations/c1/stream",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert stream_preflight.status_code == 200


async def test_cors_stops_at_the_server_to_server_endpoints(chat: Chat) -> None:
    contacts = await chat.http.options(
        f"/v1/chatflows/{chat.public_key}/contacts",
        headers={"Origin": SITE, "Access-Control-Request-Method": "PUT"},
    )
    assert contacts.status_code == 400  # the browser's preflight fails
    assert "PUT" not in contacts.headers["access-control-allow-methods"]
    slack = await chat.http.post("/slack/events", headers={"Origin": SITE}, content=b"{}")
    assert "access-control-allow-origin" not in slack.headers


async def test_a_long_poll_ends_when_the_visitor_leaves(chat: Chat) -> None:
    accepted = (await chat.visitor_says("Hello?")).json()
    poll = asyncio.create_task(
        chat.read(accepted["conversation_id"], accepted["conversation_token"], after=99, wait=25)
    )
    await eventually(lambda: chat.runtime.notifier.waiting == 1)
    poll.cancel()  # the visitor closed the tab: the connection is gone
    await eventually(lambda: chat.runtime.notifier.waiting == 0, within=20)
