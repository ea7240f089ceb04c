"""PUT /v1/chatflows/{key}/contacts over HTTP: signed calls only; owners then get their chats."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from sqlalchemy import func, select, update

from slackrouter.adapters.db.models import Chatflow, Contact
from slackrouter.api.signing import sign
from tests.scenario.conftest import ALICE, BOB, CAROL, Chat, eventually


async def put_contact(
    chat: Chat,
    body: dict[str, Any] | bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    public_key: str | None = None,
) -> httpx.Response:
    """A contact PUT, signed with the chatflow's secret unless `secret` is "" (unsigned)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    secret = chat.signing_secret if secret is None else secret
    if secret:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers["X-Slackrouter-Timestamp"] = ts
        headers["X-Slackrouter-Signature"] = sign(secret, ts, raw)
    return await chat.http.put(
        f"/v1/chatflows/{public_key or chat.public_key}/contacts", content=raw, headers=headers
    )


async def contact_count(chat: Chat) -> int:
    async with chat.runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Contact)) or 0


async def test_a_signed_call_creates_then_updates_a_contact(chat: Chat) -> None:
    chat.slack.add_user("U0DAVE", "dave", email="dave@acme.test")
    created = await put_contact(
        chat,
        {
            "email": "Ann@Example.com",
            "name": "Ann",
            "owner": "dave@acme.test",
            "visitor_ids": ["a1"],
        },
    )
    assert created.status_code == 200, created.text
    contact = created.json()
    assert contact == {
        "id": contact["id"],
        "email": "ann@example.com",
        "name": "Ann",
        "owner_user_id": "U0DAVE",
        "visitor_ids": ["a1"],
    }
    updated = await put_contact(
        chat, {"email": "ann@example.com", "owner": BOB, "visitor_ids": ["a2"]}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json() == {**contact, "owner_user_id": BOB, "visitor_ids": ["a1", "a2"]}
    assert await contact_count(chat) == 1


GOOD: dict[str, Any] = {"email": "ann@example.com", "visitor_ids": ["a1"]}
# case, request body, put_contact options, expected status and error
REFUSED: list[tuple[str, dict[str, Any] | bytes, dict[str, Any], int, str]] = [
    ("unsigned", GOOD, {"secret": ""}, 401, "bad_signature"),
    ("wrong secret", GOOD, {"secret": "not-the-secret"}, 401, "bad_signature"),
    ("stale timestamp", GOOD, {"timestamp": int(time.time()) - 600}, 401, "bad_signature"),
    ("unknown chatflow", GOOD, {"public_key": "pk_nope"}, 404, "unknown_chatflow"),
    ("unknown owner", {**GOOD, "owner": "nobody@acme.test"}, {}, 422, "owner_not_found"),
    ("bot owner", {**GOOD, "owner": "UBOT"}, {}, 422, "owner_not_found"),
    ("owner neither id nor email", {**GOOD, "owner": "Alice"}, {}, 422, "invalid_request"),
    ("no email nor visitor id", {"name": "Ann"}, {}, 422, "invalid_request"),
    ("bad email", {**GOOD, "email": "ann.example.com"}, {}, 422, "invalid_request"),
    ("unknown field", {**GOOD, "phone": "123"}, {}, 422, "invalid_request"),
    ("nul character", {**GOOD, "name": "A\x00nn"}, {}, 422, "invalid_request"),
    ("name too long", {**GOOD, "name": "x" * 201}, {}, 422, "invalid_request"),
    ("visitor id too long", {**GOOD, "visitor_ids": ["x" * 201]}, {}, 422, "invalid_request"),
    ("blank visitor id", {**GOOD, "visitor_ids": ["  "]}, {}, 422, "invalid_request"),
    (
        "too many visitor ids",
        {**GOOD, "visitor_ids": [f"v{i}" for i in range(101)]},
        {},
        422,
        "invalid_request",
    ),
    ("malformed json", b'{"email": ', {}, 422, "invalid_request"),
]


async def test_refused_calls_store_nothing(chat: Chat) -> None:
    # One app for all the cases: each starts the whole stack otherwise.
    for case, body, options, status, error in REFUSED:
        response = await put_contact(chat, body, **options)
        assert (response.status_code, response.json()["error"]) == (status, error), case
        assert response.json()["message"], case
    assert await contact_count(chat) == 0


async def rotate_to_owner(chat: Chat) -> None:
    async with chat.runtime.sessions() as session, session.begin():
        await session.execute(
            update(Chatflow)
            .where(Chatflow.public_key == chat.public_key)
            .values(rotate_to_owner=True)
        )


async def test_the_owner_of_a_contact_put_by_the_site_gets_their_chat(chat: Chat) -> None:
    await rotate_to_owner(chat)
    response = await put_contact(
        chat, {"email": "ceo@example.com", "owner": CAROL, "visitor_ids": ["c1"]}
    )
    assert response.status_code == 200, response.text
    await chat.presence(**{CAROL: "active"})

    by_cookie = await chat.visitor_says("Hi, it's me again", visitor_id="c1")
    assert by_cookie.status_code == 201, by_cookie.text
    assert [agent["name"] for agent in by_cookie.json()["agents"]] == ["Carol"]
    await chat.parent_post(CAROL)
    assert not chat.posts(f"D{ALICE}") and not chat.posts(f"D{BOB}")


async def test_only_a_signed_email_finds_the_owner(chat: Chat) -> None:
    await rotate_to_owner(chat)
    await put_contact(chat, {"email": "ceo@example.com", "owner": CAROL})
    await chat.presence(**{CAROL: "active"})

    # From a browser, typing the CEO's address does not reach the CEO's rep.
    claimed = await chat.visitor_says("I'm the CEO", visitor_id="b1", email="ceo@example.com")
    assert claimed.status_code == 201, claimed.text
    assert {agent["name"] for agent in claimed.json()["agents"]} == {"Alice", "Bob"}

    # The site's backend vouches for the address: the owner gets the chat.
    body = {"visitor_id": "s1", "client_message_id": "m1", "text": "hi", "email": "ceo@example.com"}
    raw = json.dumps(body).encode()
    ts = str(int(time.time()))
    signed = await chat.http.post(
        f"/v1/chatflows/{chat.public_key}/messages",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Slackrouter-Timestamp": ts,
            "X-Slackrouter-Signature": sign(chat.signing_secret, ts, raw),
        },
    )
    assert signed.status_code == 201, signed.text
    assert [agent["name"] for agent in signed.json()["agents"]] == ["Carol"]
    await eventually(lambda: chat.posts(f"D{CAROL}"))
