"""Claim, Close and Transfer: the buttons on every chat's first message. The chat is found from
the message clicked; the service checks the user may act on it."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.adapters.slack.chat_blocks import transfer_modal
from slackrouter.handlers.surfaces import Surfaces, clicked, team_slack, told_if_declined, who


class ChatAction(Protocol):
    def __call__(self, *, team_id: str, conversation_id: str, user_id: str) -> Awaitable[str]: ...


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    chats = surfaces.chats

    async def act_and_answer(body: dict[str, Any], act: ChatAction) -> None:
        """Find the chat clicked, act on it, and tell the clicker what happened."""
        team_id, user_id = who(body)
        channel, ts = clicked(body)
        async with told_if_declined(surfaces.slack, body):
            chat = await chats.chat_at(team_id=team_id, channel=channel, ts=ts, user_id=user_id)
            answer = await act(
                team_id=team_id, conversation_id=chat.conversation_id, user_id=user_id
            )
            await (await team_slack(surfaces.slack, body)).post_ephemeral(
                channel, user_id, text=answer
            )

    @app.action("chat_claim")
    async def claim(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await act_and_answer(body, chats.claim)

    @app.action("chat_close")
    async def close(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await act_and_answer(body, chats.close)

    @app.action("chat_transfer")
    async def transfer(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        channel, ts = clicked(body)
        async with told_if_declined(surfaces.slack, body):
            chat = await chats.chat_at(team_id=team_id, channel=channel, ts=ts, user_id=user_id)
            view = transfer_modal(
                conversation_id=chat.conversation_id,
                channel=channel,
                visitor_name=chat.visitor_name,
                chatflow_name=chat.chatflow_name,
            )
            await (await team_slack(surfaces.slack, body)).open_view(str(body["trigger_id"]), view)
