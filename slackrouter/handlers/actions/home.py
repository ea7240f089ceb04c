"""The App Home's availability toggle: a person's own choice to take chats or not."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.handlers.surfaces import Surfaces, who


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    @app.action("home_availability")
    async def toggle_availability(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        wanted = str((body.get("actions") or [{}])[0].get("value") or "")
        await surfaces.presence.set_opted_in(
            team_id=team_id, user_id=user_id, opted_in=wanted == "available"
        )
        await surfaces.home.publish(team_id=team_id, user_id=user_id)
        surfaces.home.changed(team_id)
