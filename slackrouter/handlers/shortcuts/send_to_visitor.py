"""The "Send to visitor" message shortcut: a rep sends a note of a chat's thread to the visitor
after all (in a chatflow with reverse notes, the only way to answer). The answer is an ephemeral
message in the thread."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.handlers.surfaces import Surfaces, team_slack, who
from slackrouter.services.admins import Declined

CALLBACK_ID = "send_to_visitor"


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    @app.shortcut(CALLBACK_ID)
    async def send_to_visitor(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        channel = str((body.get("channel") or {}).get("id") or "")
        message = body.get("message") or {}
        try:
            answer = await surfaces.chats.send_to_visitor(
                team_id=team_id,
                channel=channel,
                ts=str(message.get("ts") or body.get("message_ts") or ""),
                user_id=user_id,
                text=str(message.get("text") or ""),
            )
        except Declined as refused:
            answer = str(refused)
        await (await team_slack(surfaces.slack, body)).post_ephemeral(
            channel, user_id, text=answer, thread_ts=message.get("thread_ts")
        )
