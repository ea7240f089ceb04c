"""Signed requests from the fake Slack to an app: events, slash commands, interactions, and the
sandbox control API. Receivers are real HTTP servers: a tiny Starlette app that checks the
signature with slack_sdk's SignatureVerifier, and a real Bolt app."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.sandbox.slack_requests import (
    block_actions_payload,
    message_shortcut_payload,
    view_submission_payload,
)

SECRET = "signing-secret"


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An app that only checks Slack's signature and keeps what it got."""

    received: list[Received] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        verified = SignatureVerifier(SECRET).is_valid_request(body, dict(request.headers))
        self.received.append(Received(body, dict(request.headers), verified))
        return Response(status_code=200 if verified else 401)

    def events(self) -> list[dict[str, Any]]:
        return [r.json()["event"] for r in self.received]


@dataclass
class World:
    fake: FakeSlack
    client: AsyncWebClient
    slack_url: str
    receiver: Receiver


def _workspace() -> FakeSlack:
    fake = FakeSlack()
    fake.add_user("U1", "alice", real_name="Alice Archer")
    fake.add_channel("C1", "sales")
    fake.add_channel("C2", "deals", is_private=True, members=["U1"])
    return fake


def _beside_fake(fake: FakeSlack, endpoint: Callable[[Request], Awaitable[Response]]) -> Starlette:
    """One loopback server for both sides: the app at /slack/events, the fake everywhere else."""
    return Starlette(
        routes=[
            Route("/slack/events", endpoint, methods=["POST"]),
            Mount("/", app=fake.asgi),
        ]
    )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fake = _workspace()
    receiver = Receiver()
    async with serve(_beside_fake(fake, receiver.endpoint)) as url:
        fake.configure_events(f"{url}/slack/events", SECRET, hooks_url=f"{url}/hooks")
        client = AsyncWebClient(token="xoxb-fake", base_url=f"{url}/api/")
        yield World(fake, client, url, receiver)


async def test_a_users_message_arrives_signed_and_in_slacks_envelope(world: World) -> None:
    envelope = await world.fake.user_posts("U1", "DU1", "Hi, I'll take this chat")

    [received] = world.receiver.received
    assert received.verified
    assert received.headers["content-type"] == "application/json"
    assert received.json() == envelope
    assert envelope["type"] == "event_callback"
    assert (envelope["team_id"], envelope["api_app_id"]) == ("T0001", "A0001")
    assert envelope["event_id"].startswith("Ev")
    assert envelope["authorizations"][0]["user_id"] == "UBOT"
    assert envelope["is_ext_shared_channel"] is False
    event = envelope["event"]
    assert event["type"] == "message" and "subtype" not in event
    assert (event["user"], event["channel"], event["channel_type"]) == ("U1", "DU1", "im")
    assert event["text"] == "Hi, I'll take this chat"
    assert event["event_ts"] == event["ts"]
    assert envelope["event_time"] == int(float(event["ts"]))
    history = await world.client.conversations_history(channel="DU1")
    assert history["messages"][0]["text"] == "Hi, I'll take this chat"
    assert world.fake.deliveries[0].status == 200


async def test_channel_types_follow_the_conversation(world: World) -> None:
    await world.fake.user_posts("U1", "DU1", "dm")
    await world.fake.user_posts("U1", "C1", "public")
    await world.fake.user_posts("U1", "C2", "private")

    assert [e["channel_type"] for e in world.receiver.events()] == ["im", "channel", "group"]


async def test_a_thread_reply_points_at_its_parent(world: World) -> None:
    parent = await world.client.chat_postMessage(channel="U1", text="New chat")

    await world.fake.user_posts("U1", "DU1", "on it", thread_ts=parent["ts"])

    [event] = world.receiver.events()
    assert event["thread_ts"] == parent["ts"] and event["parent_user_id"] == "UBOT"
    replies = await world.client.conversations_replies(channel="DU1", ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["New chat", "on it"]


async def test_edits_and_deletions_arrive_as_hidden_subtypes(world: World) -> None:
    posted = await world.fake.user_posts("U1", "C1", "typo")
    ts = posted["event"]["ts"]

    await world.fake.user_edits("U1", "C1", ts, "fixed")
    await world.fake.user_deletes("C1", ts)

    _, changed, deleted = world.receiver.events()
    assert (changed["subtype"], changed["hidden"], changed["channel"]) == (
        "message_changed",
        True,
        "C1",
    )
    assert changed["message"]["text"] == "fixed" and changed["message"]["ts"] == ts
    assert changed["message"]["edited"]["user"] == "U1"
    assert changed["previous_message"]["text"] == "typo"
    assert (deleted["subtype"], deleted["deleted_ts"]) == ("message_deleted", ts)
    assert deleted["previous_message"]["text"] == "fixed"
    assert world.fake.messages_in("C1") == []


async def test_the_apps_own_messages_come_back_only_when_asked(world: World) -> None:
    await world.client.chat_postMessage(channel="C1", text="quiet")
    assert world.receiver.received == []

    world.fake.echo_bot_messages = True
    posted = await world.client.chat_postMessage(channel="C1", text="echo")
    await world.client.chat_update(channel="C1", ts=posted["ts"], text="echo!")

    posted_event, changed_event = world.receiver.events()
    assert (posted_event["bot_id"], posted_event["user"]) == ("BBOT", "UBOT")
    assert posted_event["channel_type"] == "channel"
    assert changed_event["subtype"] == "message_changed"


async def test_stale_timestamps_and_retries(world: World) -> None:
    event = {"type": "app_home_opened", "user": "U1", "tab": "home", "event_ts": "1.000001"}
    stale = await world.fake.sender.send_event(event, timestamp=int(time.time()) - 301)
    first = await world.fake.sender.send_event(event, event_id="Ev0001")
    retry = await world.fake.sender.send_event(event, event_id="Ev0001", retry_num=1)

    assert (stale.status_code, first.status_code, retry.status_code) == (401, 200, 200)
    assert world.receiver.received[1].json()["event_id"] == "Ev0001"
    assert world.receiver.received[2].json()["event_id"] == "Ev0001"
    assert world.receiver.received[2].headers["x-slack-retry-num"] == "1"
    assert world.receiver.received[2].headers["x-slack-retry-reason"] == "http_timeout"


async def test_tampered_bodies_fail_verification(world: World) -> None:
    sender = world.fake.sender
    body = b'{"type":"event_callback"}'
    headers = sender.signed_headers(body)

    response = await sender.send_raw(body + b" ", {**headers, "Content-Type": "application/json"})

    assert response.status_code == 401


async def test_commands_and_interactions_are_signed_forms(world: World) -> None:
    sender = world.fake.sender
    await sender.send_command("/chatrouting", "status", "U1", channel_id="C1")
    payload = {"type": "shortcut", "callback_id": "x", "user": {"id": "U1"}}
    await sender.send_interaction(payload)

    command, interaction = world.receiver.received
    assert command.verified and interaction.verified
    assert command.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(command.body.decode()).items()}
    assert (form["command"], form["text"], form["user_id"]) == ("/chatrouting", "status", "U1")
    assert form["team_id"] == "T0001" and form["trigger_id"]
    assert form["response_url"].startswith(f"{world.slack_url}/hooks/commands/T0001/")
    assert json.loads(parse_qs(interaction.body.decode())["payload"][0]) == payload


async def test_response_urls_land_in_the_fake(world: World) -> None:
    await world.fake.sender.send_command("/chatrouting", "status", "U1")
    response_url = parse_qs(world.receiver.received[0].body.decode())["response_url"][0]

    async with httpx.AsyncClient() as http:
        answer = await http.post(response_url, json={"text": "You are available"})

    assert answer.status_code == 200
    [hook] = world.fake.hook_posts
    assert hook.path.startswith("commands/T0001/") and hook.body == {"text": "You are available"}


async def test_sandbox_control_api(world: World) -> None:
    parent = await world.client.chat_postMessage(channel="U1", text="New chat")
    async with httpx.AsyncClient(base_url=f"{world.slack_url}/sandbox") as http:
        away = await http.post("/presence", json={"user": "U1", "presence": "away"})
        dnd = await http.post("/dnd", json={"user": "U1", "dnd": True})
        reply = await http.post(
            "/reply",
            json={"user": "U1", "channel": "DU1", "thread_ts": "latest", "text": "hello"},
        )
        reply_ts = reply.json()["ts"]
        edit = await http.post(
            "/edit", json={"user": "U1", "channel": "DU1", "ts": reply_ts, "text": "hello!"}
        )
        state = (await http.get("/state")).json()
        delete = await http.post("/delete", json={"channel": "DU1", "ts": reply_ts})
        bad = await http.post("/presence", json={"user": "U1", "presence": "busy"})
        unknown = await http.post("/reply", json={"user": "U404", "channel": "C1", "text": "x"})

    assert [r.status_code for r in (away, dnd, reply, edit, delete)] == [200] * 5
    assert (bad.status_code, unknown.status_code) == (400, 400)
    assert (await world.client.users_getPresence(user="U1"))["presence"] == "away"
    kinds = [(e["type"], e.get("subtype")) for e in world.receiver.events()]
    assert kinds == [
        ("dnd_updated_user", None),
        ("message", None),
        ("message", "message_changed"),
        ("message", "message_deleted"),
    ]
    assert world.receiver.events()[0]["dnd_status"]["dnd_enabled"] is True
    alice = next(u for u in state["users"] if u["id"] == "U1")
    assert (alice["presence"], alice["dnd"]) == ("away", True)
    assert world.receiver.events()[1]["thread_ts"] == parent["ts"]
    dm = next(c for c in state["channels"] if c["id"] == "DU1")
    assert [m["text"] for m in dm["messages"]] == ["New chat"]
    assert [r["text"] for r in dm["messages"][0]["replies"]] == ["hello!"]


async def test_a_sandbox_click_is_the_persons_signed_block_actions(world: World) -> None:
    claim = {
        "type": "button",
        "action_id": "chat_claim",
        "text": {"type": "plain_text", "text": "Claim"},
        "style": "primary",
        "value": "conv-1",
    }
    blocks = [
        {"type": "section", "text": {"type": "plain_text", "text": "New chat"}},
        {"type": "actions", "block_id": "chat_actions", "elements": [claim]},
    ]
    posted = await world.client.chat_postMessage(channel="U1", text="New chat", blocks=blocks)
    ts = posted["ts"]
    world.fake.add_user("U2", "bob")
    click = {"user": "U1", "channel": "DU1", "ts": ts, "action_id": "chat_claim"}
    async with httpx.AsyncClient(base_url=f"{world.slack_url}/sandbox") as http:
        answer = await http.post("/click", json=click)
        no_message = await http.post("/click", json={**click, "ts": "1.000001"})
        no_channel = await http.post("/click", json={**click, "channel": "C404"})
        no_button = await http.post("/click", json={**click, "action_id": "chat_nope"})
        not_theirs = await http.post("/click", json={**click, "user": "U2"})
        incomplete = await http.post("/click", json={"user": "U1", "channel": "DU1"})

    assert answer.status_code == 200 and answer.json()["ok"] is True
    assert [r.status_code for r in (no_message, no_channel, no_button)] == [404] * 3
    assert no_message.json() == {"ok": False, "error": "no message 1.000001 in DU1"}
    assert "no button chat_nope" in no_button.json()["error"]
    assert (not_theirs.status_code, incomplete.status_code) == (403, 400)
    [received] = world.receiver.received  # the refused clicks sent nothing
    assert received.verified
    assert received.headers["content-type"] == "application/x-www-form-urlencoded"
    [raw] = parse_qs(received.body.decode())["payload"]
    payload = json.loads(raw)
    assert payload["type"] == "block_actions"
    assert (payload["team"]["id"], payload["api_app_id"]) == ("T0001", "A0001")
    assert (payload["user"]["id"], payload["user"]["name"]) == ("U1", "alice")
    [action] = payload["actions"]
    assert action["action_id"] == "chat_claim" and action["block_id"] == "chat_actions"
    assert (action["type"], action["value"], action["style"]) == ("button", "conv-1", "primary")
    assert action["text"] == {"type": "plain_text", "text": "Claim"}
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": "DU1",
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": "DU1", "name": "directmessage"}
    [stored] = (await world.client.conversations_history(channel="DU1"))["messages"]
    assert payload["message"] == stored
    assert payload["message"]["blocks"][1]["elements"] == [claim]
    assert payload["trigger_id"] == answer.json()["trigger_id"]
    assert payload["response_url"].startswith(f"{world.slack_url}/hooks/actions/T0001/")


async def test_sandbox_replies_need_an_app_to_deliver_to() -> None:
    fake = _workspace()
    async with serve(fake.asgi) as slack_url, httpx.AsyncClient() as http:
        response = await http.post(
            f"{slack_url}/sandbox/reply", json={"user": "U1", "channel": "C1", "text": "x"}
        )

    assert response.status_code == 409
    assert fake.messages_in("C1") == []


@pytest.fixture
async def bolt() -> AsyncIterator[tuple[FakeSlack, AsyncApp, list[str]]]:
    """A real Bolt app behind HTTP, talking to the fake through slack_sdk."""
    fake = _workspace()
    seen: list[str] = []
    client = AsyncWebClient(token="xoxb-fake")
    app = AsyncApp(client=client, signing_secret=SECRET, process_before_response=True)
    handler = AsyncSlackRequestHandler(app)

    async def endpoint(request: Request) -> Response:
        return await handler.handle(request)

    async with serve(_beside_fake(fake, endpoint)) as url:
        client.base_url = f"{url}/api/"
        fake.configure_events(f"{url}/slack/events", SECRET)
        yield fake, app, seen


async def test_bolt_routes_every_kind_of_request(bolt: tuple[FakeSlack, AsyncApp, list]) -> None:
    fake, app, seen = bolt

    @app.event("message")
    async def on_message(event: dict, ack: Any) -> None:
        seen.append(f"message from {event.get('user')}: {event['text']}")

    @app.command("/chatrouting")
    async def on_command(ack: Any, command: dict) -> None:
        await ack()
        seen.append(f"command {command['text']}")

    @app.action("claim")
    async def on_claim(ack: Any, body: dict, action: dict) -> None:
        await ack()
        seen.append(f"claim {action['value']} in {body['container']['channel_id']}")

    @app.view("edit_chatflow")
    async def on_submit(ack: Any, view: dict) -> None:
        await ack()
        seen.append(f"saved {view['state']['values']['name']['value']['value']}")

    @app.shortcut("transfer")
    async def on_transfer(ack: Any, shortcut: dict) -> None:
        await ack()
        seen.append(f"transfer {shortcut['message']['ts']}")

    posted = await app.client.chat_postMessage(channel="C1", text="New chat")
    message = posted["message"]
    opened = await app.client.views_open(
        trigger_id="1.2.3",
        view={
            "type": "modal",
            "callback_id": "edit_chatflow",
            "title": {"type": "plain_text", "text": "Edit"},
            "blocks": [],
        },
    )
    sender = fake.sender
    fake.echo_bot_messages = True
    await app.client.chat_postMessage(channel="C1", text="ignored: the app's own post")
    await fake.user_posts("U1", "C1", "hello")
    fake.add_user("UOTHER", "crm-bot", is_bot=True)
    await fake.user_posts("UOTHER", "C1", "a lead was created")
    responses = [
        await sender.send_command("/chatrouting", "status", "U1"),
        await sender.send_interaction(
            block_actions_payload(
                user_id="U1", action_id="claim", value="conv-1", message=message, channel_id="C1"
            )
        ),
        await sender.send_interaction(
            view_submission_payload(
                user_id="U1",
                view=opened["view"],
                values={"name": {"value": {"type": "plain_text_input", "value": "Pricing"}}},
            )
        ),
        await sender.send_interaction(
            message_shortcut_payload(
                user_id="U1", callback_id="transfer", channel_id="C1", message=message
            )
        ),
    ]

    assert [r.status_code for r in responses] == [200] * 4
    assert [d.status for d in fake.deliveries] == [200, 200, 200]
    assert fake.deliveries[2].envelope["event"]["bot_id"] == "BOTHER"
    assert seen == [
        "message from U1: hello",
        "message from UOTHER: a lead was created",
        "command status",
        "claim conv-1 in C1",
        "saved Pricing",
        f"transfer {message['ts']}",
    ]
