"""Submitting the Transfer modal: the chat goes to the chosen person or team, or the modal
says inline why it cannot."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.handlers.surfaces import Surfaces, metadata, team_slack, who
from slackrouter.services.admins import Declined


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    @app.view("chat_transfer")
    async def transfer(ack: AsyncAck, body: dict[str, Any]) -> None:
        team_id, user_id = who(body)
        kept = metadata(body)
        values = body["view"]["state"]["values"]
        to_user = values.get("to_user", {}).get("to_user", {}).get("selected_user")
        team = values.get("to_team", {}).get("transfer_team", {}).get("selected_option")
        try:
            answer = await surfaces.chats.transfer(
                team_id=team_id,
                conversation_id=str(kept.get("id") or ""),
                user_id=user_id,
                to_user=to_user or None,
                to_team=str(team["value"]) if team else None,
            )
        except Declined as refused:
            await ack(response_action="errors", errors={"to_user": str(refused)})
            return
        await ack()
        if kept.get("channel"):
            gateway = await team_slack(surfaces.slack, body)
            await gateway.post_ephemeral(str(kept["channel"]), user_id, text=answer)
