"""The Slack surfaces as people use them: `/chatrouting`, clicks on buttons in messages, modals
and the App Home, modal submissions, the "Send to visitor" shortcut and external select
suggestions, each sent as Slack's signed request over HTTP to the whole app (`chat`).

People: Ada is a workspace admin (not a rep); Eve is neither an admin nor on any route; Alice
and Bob are on the Sales route; Carol is a rep on no route.

A test module registers the fixture by importing `workspace_fixture` (`# noqa: F401`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from slackrouter.adapters.db.models import Chatflow, Conversation
from slackrouter.sandbox.slack_requests import (
    block_actions_payload,
    block_suggestion_payload,
    message_shortcut_payload,
    view_submission_payload,
)
from tests.blockkit_limits import problems
from tests.scenario.conftest import ALICE, Chat, eventually

ADA, EVE = "U0ADA", "U0EVE"
COMMAND = "/chatrouting"


@dataclass
class Workspace:
    chat: Chat

    @property
    def fake(self) -> Any:
        return self.chat.slack

    # --- what people do ------------------------------------------------------------------

    async def command(self, user_id: str, text: str = "") -> dict[str, Any]:
        """`/chatrouting text` typed by `user_id`; returns the ephemeral answer ({} if none)."""
        response = await self.fake.sender.send_command(COMMAND, text, user_id)
        assert response.status_code == 200, response.text
        if not response.content:
            return {}
        if response.headers["content-type"].startswith("application/json"):
            return dict(response.json())
        return {"text": response.text}  # Slack shows a plain-text answer as it is

    async def click_in_view(
        self, user_id: str, view: dict[str, Any], action_id: str, value: str | None = None
    ) -> httpx.Response:
        payload = block_actions_payload(
            user_id=user_id, action_id=action_id, value=value, view=view
        )
        return await self._interact(payload)

    async def click_in_message(
        self, user_id: str, channel: str, ts: str, action_id: str
    ) -> httpx.Response:
        message = next(m for m in self.fake.messages_in(channel) if m["ts"] == ts)
        payload = block_actions_payload(
            user_id=user_id,
            action_id=action_id,
            block_id="chat_actions",
            message=message,
            channel_id=channel,
        )
        return await self._interact(payload)

    async def submit(
        self, user_id: str, view: dict[str, Any], values: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """Submit a modal with the input state `values` (block id -> action id -> state);
        returns the app's answer ({} closes the modal)."""
        payload = view_submission_payload(user_id=user_id, view=view, values=values)
        response = await self._interact(payload)
        return response.json() if response.content else {}

    async def shortcut(self, user_id: str, channel: str, ts: str) -> httpx.Response:
        message = next(m for m in self.fake.messages_in(channel) if m["ts"] == ts)
        payload = message_shortcut_payload(
            user_id=user_id, callback_id="send_to_visitor", channel_id=channel, message=message
        )
        return await self._interact(payload)

    async def suggest(
        self, user_id: str, view: dict[str, Any], action_id: str, typed: str
    ) -> list[dict[str, Any]]:
        payload = block_suggestion_payload(
            user_id=user_id, action_id=action_id, value=typed, view=view
        )
        response = await self._interact(payload)
        return list(response.json()["options"])

    async def open_home(self, user_id: str) -> dict[str, Any]:
        """`user_id` opens the app's Home tab; returns the view the app published."""
        published = len(self.fake.calls_to("views.publish"))
        event = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": f"D{user_id}",
            "tab": "home",
        }
        response = await self.fake.sender.send_event({**event, "event_ts": "1.000001"})
        assert response.status_code == 200
        await eventually(lambda: len(self.fake.calls_to("views.publish")) > published)
        return self.home(user_id)

    async def _interact(self, payload: dict[str, Any]) -> httpx.Response:
        response = await self.fake.sender.send_interaction(payload)
        assert response.status_code == 200, response.text
        return response

    # --- what people see -----------------------------------------------------------------

    def views(self, callback_id: str) -> list[dict[str, Any]]:
        """Modals the app opened, pushed or updated with this callback id, oldest first."""
        return [v for v in self.fake.views.values() if v["callback_id"] == callback_id]

    def view(self, callback_id: str) -> dict[str, Any]:
        found = self.views(callback_id)
        assert found, f"no {callback_id} modal was opened"
        view = found[-1]
        assert problems("modal", view) == []
        return view

    def home(self, user_id: str) -> dict[str, Any]:
        view = self.fake.home_views[user_id]
        assert problems("home", view) == []
        return view

    def told(self, user_id: str) -> list[str]:
        """Ephemeral messages the app showed `user_id`, oldest first."""
        return [
            str(c.params["text"])
            for c in self.fake.calls_to("chat.postEphemeral")
            if c.params.get("user") == user_id
        ]

    async def told_eventually(self, user_id: str, words: str) -> str:
        async def find() -> str | None:
            return next((t for t in self.told(user_id) if words in t), None)

        return await eventually(find)

    def parent(self, channel: str, ts: str) -> dict[str, Any]:
        message = next(m for m in self.fake.messages_in(channel) if m["ts"] == ts)
        assert problems("message", message) == []
        return message

    # --- the database --------------------------------------------------------------------

    async def chatflow(self, name: str = "Sales") -> Chatflow:
        async with self.chat.runtime.sessions() as session:
            chatflow = await session.scalar(select(Chatflow).where(Chatflow.name == name))
        assert chatflow is not None
        return chatflow

    async def conversation(self, conversation_id: str) -> Conversation:
        async with self.chat.runtime.sessions() as session:
            return await session.get_one(Conversation, conversation_id)


def chatflow_form(
    *,
    name: str,
    users: tuple[str, ...] = (),
    teams: tuple[str, ...] = (),
    channel: str | None = None,
    fallback: str | None = None,
    owners_first: bool = False,
    assignment: str = "all",
    escalation: str = "120",
    note_mode: str = "prefix",
    prefix: str = ";;",
    welcome: str = "Hi! How can we help?",
    away: str = "We're away right now.",
) -> dict[str, dict[str, Any]]:
    """The chatflow modal's input state as Slack sends it in `view.state.values`."""

    def chosen(value: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": value}, "value": value}

    return {
        "name": {"name": {"type": "plain_text_input", "value": name}},
        "route_users": {
            "route_users": {"type": "multi_users_select", "selected_users": list(users)}
        },
        "route_teams": {
            "route_teams": {
                "type": "multi_external_select",
                "selected_options": [chosen(t) for t in teams],
            }
        },
        "channel_id": {
            "channel_id": {"type": "conversations_select", "selected_conversation": channel}
        },
        "offline_fallback": {
            "offline_fallback": {"type": "users_select", "selected_user": fallback}
        },
        "rotate_to_owner": {
            "rotate_to_owner": {
                "type": "checkboxes",
                "selected_options": [chosen("owner")] if owners_first else [],
            }
        },
        "assignment": {
            "assignment": {"type": "radio_buttons", "selected_option": chosen(assignment)}
        },
        "escalation_seconds": {"escalation_seconds": {"type": "number_input", "value": escalation}},
        "note_mode": {"note_mode": {"type": "radio_buttons", "selected_option": chosen(note_mode)}},
        "note_prefix": {"note_prefix": {"type": "plain_text_input", "value": prefix}},
        "welcome_message": {"welcome_message": {"type": "plain_text_input", "value": welcome}},
        "away_message": {"away_message": {"type": "plain_text_input", "value": away}},
    }


def text_of(surface: dict[str, Any]) -> str:
    """Everything a surface shows, as one string (to look for words in it)."""
    return json.dumps(surface.get("blocks", []), ensure_ascii=False)


def buttons_of(message: dict[str, Any]) -> list[str]:
    return [
        element["text"]["text"]
        for block in message.get("blocks", [])
        if block["type"] == "actions"
        for element in block["elements"]
    ]


@pytest.fixture(name="workspace")
async def workspace_fixture(chat: Chat) -> AsyncIterator[Workspace]:
    chat.slack.add_user(ADA, "ada", real_name="Ada Admin", display_name="Ada", is_admin=True)
    chat.slack.add_user(EVE, "eve", real_name="Eve Outsider", display_name="Eve")
    yield Workspace(chat)


async def first_chat(chat: Chat, text: str = "Hello, do you ship to Norway?") -> dict[str, Any]:
    """A visitor's first message, and its parent post in Alice's DM: (accepted, parent)."""
    response = await chat.visitor_says(text, name="Nora")
    assert response.status_code == 201, response.text
    parent = await chat.parent_post(ALICE)
    return {**response.json(), "ts": parent["ts"]}
