"""Visitor text never pings or links in Slack, and bad requests change nothing."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from slackrouter.adapters.db.models import Conversation, Message
from slackrouter.adapters.slack.text import escape_visitor_text
from slackrouter.api.signing import sign
from slackrouter.sandbox.fake_slack import pings_in
from slackrouter.sandbox.slack_requests import SlackRequestSender
from tests.scenario.conftest import ALICE, Chat, eventually

INJECTIONS = [
    "<!channel> urgent",
    "<!here> anyone?",
    "<!everyone> hello",
    "ping <@U123> now",
    "see <#C123>",
    "<https://evil.example|click me>",
    "*bold* _claims_ to be from the CEO",
    "@channel @here @everyone @alice",
    "&lt;!channel&gt; pre-escaped",
]


@pytest.mark.parametrize("text", INJECTIONS)
async def test_visitor_text_is_inert_in_slack(chat: Chat, text: str) -> None:
    accepted = await chat.visitor_says(text, name=text, page_url=f"https://x.example/?q={text}")
    assert accepted.status_code == 201
    await chat.parent_post(ALICE)
    second = await chat.visitor_says(text)
    assert second.status_code == 201
    await eventually(lambda: len(chat.posts(f"D{ALICE}")) == 2)
    for post in chat.posts():
        assert pings_in(post) == [], post
        assert not post.get("link_names")
        assert post.get("mrkdwn") is False
        # The visitor's words arrive intact, as plain text.
        assert any(
            block.get("text", {}).get("type") == "plain_text"
            and block["text"]["text"] == escape_visitor_text(text)
            for block in post["blocks"]
            if block["type"] == "section"
        )


async def count_rows(chat: Chat) -> tuple[int, int]:
    async with chat.runtime.sessions() as session:
        messages = await session.scalar(select(func.count()).select_from(Message))
        conversations = await session.scalar(select(func.count()).select_from(Conversation))
    return messages or 0, conversations or 0


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Slackrouter-Timestamp": ts,
        "X-Slackrouter-Signature": sign(secret, ts, body),
    }


GOOD = {"visitor_id": "v1", "client_message_id": "c1", "text": "hello"}


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("wrong signature", 401, "bad_signature"),
        ("stale timestamp", 401, "bad_signature"),
        ("unknown chatflow", 404, "unknown_chatflow"),
        ("malformed json", 422, "invalid_request"),
        ("missing text", 422, "invalid_request"),
        ("blank text", 422, "invalid_request"),
        ("text too long", 422, "invalid_request"),
        ("unknown field", 422, "invalid_request"),
        ("nul character", 422, "invalid_request"),
        ("bad email", 422, "invalid_request"),
        ("oversized body", 413, "body_too_large"),
    ],
)
async def test_a_bad_visitor_request_gets_a_clear_error_and_changes_nothing(
    chat: Chat, case: str, status: int, error: str
) -> None:
    url = f"/v1/chatflows/{chat.public_key}/messages"
    body = json.dumps(GOOD).encode()
    headers = {"Content-Type": "application/json"}
    if case == "wrong signature":
        headers = signed_headers("not-the-secret", body)
    elif case == "stale timestamp":
        headers = signed_headers(chat.signing_secret, body, timestamp=int(time.time()) - 301)
    elif case == "unknown chatflow":
        url = "/v1/chatflows/pk_nope/messages"
    elif case == "malformed json":
        body = b'{"visitor_id": "v1", "text": '
    elif case == "missing text":
        body = json.dumps({k: v for k, v in GOOD.items() if k != "text"}).encode()
    elif case == "blank text":
        body = json.dumps({**GOOD, "text": "   "}).encode()
    elif case == "text too long":
        body = json.dumps({**GOOD, "text": "x" * 4001}).encode()
    elif case == "unknown field":
        body = json.dumps({**GOOD, "admin": True}).encode()
    elif case == "nul character":
        body = json.dumps({**GOOD, "text": "a\x00b"}).encode()
    elif case == "bad email":
        body = json.dumps({**GOOD, "email": "not an email"}).encode()
    elif case == "oversized body":
        body = json.dumps({**GOOD, "page_url": "x" * 20_000}).encode()
    response = await chat.http.post(url, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["message"]
    assert await count_rows(chat) == (0, 0)
    assert chat.posts() == []


async def test_a_wrong_conversation_token_reads_nothing(chat: Chat) -> None:
    accepted = (await chat.visitor_says("my secret question")).json()
    wrong = await chat.read(accepted["conversation_id"], "not-the-token")
    assert wrong.status_code == 404
    assert "my secret question" not in wrong.text
    missing = await chat.http.get(f"/v1/conversations/{accepted['conversation_id']}/messages")
    assert missing.status_code == 401
    stream = await chat.http.get(
        f"/v1/conversations/{accepted['conversation_id']}/stream", params={"token": "nope"}
    )
    assert stream.status_code == 404


async def test_a_badly_signed_slack_event_is_refused_and_changes_nothing(chat: Chat) -> None:
    accepted = (await chat.visitor_says("hi")).json()
    parent = await chat.parent_post(ALICE)
    event = {
        "type": "message",
        "channel": f"D{ALICE}",
        "user": ALICE,
        "text": "forged",
        "ts": "1999999999.000100",
        "thread_ts": parent["ts"],
        "channel_type": "im",
    }
    forged = SlackRequestSender(f"{chat.url}/slack/events", "wrong-secret", chat.slack.team_id)
    assert (await forged.send_event(event)).status_code == 401
    stale = chat.slack.sender
    assert (await stale.send_event(event, timestamp=int(time.time()) - 600)).status_code == 401
    page = (await chat.read(accepted["conversation_id"], accepted["conversation_token"])).json()
    assert [m["author"] for m in page["messages"]] == ["visitor"]


async def test_a_visitor_sending_too_fast_is_told_to_wait_and_nothing_is_stored(chat: Chat) -> None:
    limit = chat.runtime.settings.rate_limit_per_visitor
    for n in range(limit):
        assert (await chat.visitor_says(f"message {n}")).status_code == 201
    refused = await chat.visitor_says("one too many")
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert await count_rows(chat) == (limit, 1)
    # Another visitor is not held up by this one.
    assert (await chat.visitor_says("hello", visitor_id="someone-else")).status_code == 201
