"""The core loop: a visitor's message reaches available reps in Slack; their replies come back."""

from __future__ import annotations

import asyncio
import json

from tests.scenario.conftest import ALICE, BOB, CAROL, Chat, eventually


async def first_message(chat: Chat, text: str = "Hello, do you ship to Norway?", **kw) -> dict:
    response = await chat.visitor_says(
        text, name="Nora", page_url="https://shop.example/pricing", **kw
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_available_rep_gets_the_dm_thread_and_the_reply_reaches_the_visitor_by_long_poll(
    chat: Chat,
) -> None:
    await chat.presence(**{BOB: "away"})
    accepted = await first_message(chat)
    assert accepted["status"] == "routed"
    assert [a["name"] for a in accepted["agents"]] == ["Alice"]
    assert accepted["away_message"] is None

    parent = await chat.parent_post(ALICE)
    assert "Hello, do you ship to Norway?" in json.dumps(chat.posts(f"D{ALICE}")[0]["blocks"])
    conversation, token = accepted["conversation_id"], accepted["conversation_token"]
    first = (await chat.read(conversation, token)).json()
    assert [m["author"] for m in first["messages"]] == ["visitor"]

    waiting = asyncio.create_task(chat.read(conversation, token, after=first["cursor"], wait=10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await chat.slack.user_posts(
        ALICE,
        f"D{ALICE}",
        "Yes! Ask <@U0BOB> or see <https://shop.example/ship|shipping> &amp; more",
        thread_ts=parent["ts"],
    )
    news = (await waiting).json()
    assert [(m["author"], m["author_name"], m["text"]) for m in news["messages"]] == [
        ("rep", "Alice", "Yes! Ask @Bob or see shipping (https://shop.example/ship) & more")
    ]


async def test_the_reply_reaches_the_visitor_by_the_event_stream(chat: Chat) -> None:
    accepted = await first_message(chat)
    parent = await chat.parent_post(ALICE)
    conversation, token = accepted["conversation_id"], accepted["conversation_token"]
    received: list[tuple[str, dict]] = []

    async def listen() -> None:
        url = f"/v1/conversations/{conversation}/stream"
        async with chat.http.stream("GET", url, params={"token": token}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = None
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    received.append((event, json.loads(line.split(":", 1)[1])))
                    if len(received) == 2:
                        return

    listener = asyncio.create_task(listen())
    await eventually(lambda: len(received) == 1)
    await chat.slack.user_posts(ALICE, f"D{ALICE}", "We do!", thread_ts=parent["ts"])
    await asyncio.wait_for(listener, 10)
    assert [(event, data["author"], data["text"]) for event, data in received] == [
        ("message", "visitor", "Hello, do you ship to Norway?"),
        ("message", "rep", "We do!"),
    ]


async def test_the_stream_resumes_after_the_last_event_id(chat: Chat) -> None:
    accepted = await first_message(chat)
    parent = await chat.parent_post(ALICE)
    await chat.slack.user_posts(ALICE, f"D{ALICE}", "One", thread_ts=parent["ts"])
    await chat.slack.user_posts(ALICE, f"D{ALICE}", "Two", thread_ts=parent["ts"])
    conversation, token = accepted["conversation_id"], accepted["conversation_token"]
    page = (await chat.read(conversation, token)).json()
    assert [m["text"] for m in page["messages"]] == ["Hello, do you ship to Norway?", "One", "Two"]
    resume_after = page["messages"][1]["cursor"]
    url = f"/v1/conversations/{conversation}/stream?token={token}"
    async with chat.http.stream("GET", url, headers={"Last-Event-ID": str(resume_after)}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                assert json.loads(line[5:])["text"] == "Two"
                break


async def test_two_available_reps_both_get_it_and_an_away_rep_does_not(chat: Chat) -> None:
    await chat.runtime.presence.set_opted_in(
        team_id=chat.slack.team_id, user_id=CAROL, opted_in=True
    )
    accepted = await first_message(chat)
    assert sorted(a["name"] for a in accepted["agents"]) == ["Alice", "Bob"]
    await chat.parent_post(ALICE)
    await chat.parent_post(BOB)
    await asyncio.sleep(0.3)
    assert chat.posts(f"D{CAROL}") == []
    assert len(chat.posts()) == 2


async def test_nobody_available_answers_away_with_the_away_message(chat: Chat) -> None:
    await chat.presence(**{ALICE: "away", BOB: "away"})
    accepted = await first_message(chat)
    assert accepted["status"] == "away"
    assert accepted["agents"] == []
    assert accepted["away_message"].startswith("We're away right now")
    await asyncio.sleep(0.3)
    assert chat.posts() == []


async def test_an_opted_out_rep_is_not_notified(chat: Chat) -> None:
    await chat.runtime.presence.set_opted_in(
        team_id=chat.slack.team_id, user_id=BOB, opted_in=False
    )
    accepted = await first_message(chat)
    assert [a["name"] for a in accepted["agents"]] == ["Alice"]


async def test_a_second_visitor_message_lands_in_the_same_thread(chat: Chat) -> None:
    await chat.presence(**{BOB: "away"})
    first = await first_message(chat)
    parent = await chat.parent_post(ALICE)
    second = await chat.visitor_says("Also, is there a discount?", name="Nora")
    assert second.status_code == 201
    assert second.json()["conversation_id"] == first["conversation_id"]
    assert second.json()["agents"] == first["agents"]  # the same rep, shown the same way

    def in_thread() -> list[dict]:
        return [p for p in chat.posts(f"D{ALICE}") if p.get("thread_ts") == parent["ts"]]

    replies = await eventually(in_thread)
    assert "Also, is there a discount?" in json.dumps(replies[0]["blocks"])
    assert len(chat.posts(f"D{ALICE}")) == 2


async def test_two_concurrent_first_messages_create_one_thread(chat: Chat) -> None:
    await chat.presence(**{BOB: "away"})
    one, two = await asyncio.gather(
        chat.visitor_says("First!", client_message_id="a"),
        chat.visitor_says("Second!", client_message_id="b"),
    )
    assert {one.status_code, two.status_code} == {201}
    assert one.json()["conversation_id"] == two.json()["conversation_id"]
    await eventually(lambda: len(chat.posts(f"D{ALICE}")) == 2)
    await asyncio.sleep(0.3)
    posts = chat.posts(f"D{ALICE}")
    parents = [p for p in posts if not p.get("thread_ts")]
    assert len(parents) == 1
    assert len(chat.slack.calls_to("conversations.open")) == 1


async def test_a_duplicate_client_message_id_gives_one_message_and_the_same_answer(
    chat: Chat,
) -> None:
    await chat.presence(**{BOB: "away"})
    first = await chat.visitor_says("Hi", client_message_id="same")
    again = await chat.visitor_says("Hi", client_message_id="same")
    assert (first.status_code, again.status_code) == (201, 200)
    assert {k: v for k, v in again.json().items() if k != "duplicate"} == {
        k: v for k, v in first.json().items() if k != "duplicate"
    }
    assert again.json()["duplicate"] is True
    await chat.parent_post(ALICE)
    await asyncio.sleep(0.3)
    assert len(chat.posts()) == 1
    page = (
        await chat.read(first.json()["conversation_id"], first.json()["conversation_token"])
    ).json()
    assert len(page["messages"]) == 1


async def test_a_slack_event_retry_delivers_the_reply_once(chat: Chat) -> None:
    accepted = await first_message(chat)
    parent = await chat.parent_post(ALICE)
    envelope = await chat.slack.user_posts(ALICE, f"D{ALICE}", "Hello!", thread_ts=parent["ts"])
    for retry in (1, 2):
        response = await chat.slack.sender.send_envelope(envelope, retry_num=retry)
        assert response.status_code == 200
    page = (await chat.read(accepted["conversation_id"], accepted["conversation_token"])).json()
    assert [m["text"] for m in page["messages"] if m["author"] == "rep"] == ["Hello!"]


async def test_internal_notes_stay_in_slack(chat: Chat) -> None:
    accepted = await first_message(chat)
    parent = await chat.parent_post(ALICE)
    await chat.slack.user_posts(
        ALICE, f"D{ALICE}", ";; this one is a tyre-kicker", thread_ts=parent["ts"]
    )
    await chat.slack.user_posts(ALICE, f"D{ALICE}", "Happy to help!", thread_ts=parent["ts"])
    page = (await chat.read(accepted["conversation_id"], accepted["conversation_token"])).json()
    assert [m["text"] for m in page["messages"] if m["author"] == "rep"] == ["Happy to help!"]


async def test_an_edited_reply_updates_and_a_deleted_one_is_withdrawn(chat: Chat) -> None:
    accepted = await first_message(chat)
    parent = await chat.parent_post(ALICE)
    posted = await chat.slack.user_posts(
        ALICE, f"D{ALICE}", "We ship in 3 dayz", thread_ts=parent["ts"]
    )
    ts = posted["event"]["ts"]
    conversation, token = accepted["conversation_id"], accepted["conversation_token"]
    cursor = (await chat.read(conversation, token)).json()["cursor"]

    await chat.slack.user_edits(ALICE, f"D{ALICE}", ts, "We ship in 3 days")
    edited = (await chat.read(conversation, token, after=cursor)).json()
    assert [(m["type"], m["text"], m["edited"]) for m in edited["messages"]] == [
        ("message_changed", "We ship in 3 days", True)
    ]
    await chat.slack.user_deletes(f"D{ALICE}", ts)
    deleted = (await chat.read(conversation, token, after=edited["cursor"])).json()
    assert [(m["type"], m["text"]) for m in deleted["messages"]] == [("message_deleted", None)]
    everything = (await chat.read(conversation, token)).json()
    assert "We ship in 3 dayz" not in json.dumps(everything)


async def test_messages_outside_chat_threads_and_from_bots_are_ignored(chat: Chat) -> None:
    accepted = await first_message(chat)
    parent = await chat.parent_post(ALICE)
    await chat.slack.user_posts(ALICE, f"D{ALICE}", "not in a thread")
    await chat.slack.user_posts(ALICE, f"D{ALICE}", "another thread", thread_ts="1234.5678")
    other_bot = {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "B0OTHER",
        "text": "beep",
        "channel": f"D{ALICE}",
        "channel_type": "im",
        "ts": "1999999999.000200",
        "thread_ts": parent["ts"],
    }
    assert (await chat.slack.sender.send_event(other_bot)).status_code == 200
    # Slack also sends the app its own messages: the visitor's next message, posted by the bot
    # into the thread, comes back as an event and must not be relayed as a reply.
    chat.slack.echo_bot_messages = True
    await chat.visitor_says("still there?")
    await eventually(lambda: len(chat.slack.deliveries) >= 4)
    page = (await chat.read(accepted["conversation_id"], accepted["conversation_token"])).json()
    assert [m["author"] for m in page["messages"]] == ["visitor", "visitor"]


async def test_a_signed_server_call_vouches_for_the_visitor(chat: Chat) -> None:
    import time

    from slackrouter.api.signing import sign

    body = json.dumps(
        {"visitor_id": "v-9", "client_message_id": "s1", "text": "Hi", "email": "nora@example.com"}
    ).encode()
    timestamp = str(int(time.time()))
    response = await chat.http.post(
        f"/v1/chatflows/{chat.public_key}/messages",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Slackrouter-Timestamp": timestamp,
            "X-Slackrouter-Signature": sign(chat.signing_secret, timestamp, body),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["identity_verified"] is True
    browser = await chat.visitor_says("Hi", visitor_id="v-10", name="Eve")
    assert browser.json()["identity_verified"] is False
    parent = await chat.parent_post(ALICE)
    assert parent["ok"]


async def test_the_openapi_document_describes_the_visitor_api(chat: Chat) -> None:
    document = (await chat.http.get("/openapi.json")).json()
    assert "/v1/chatflows/{public_key}/messages" in document["paths"]
    assert "/v1/conversations/{conversation_id}/stream" in document["paths"]
    assert (await chat.http.get("/docs")).status_code == 200
