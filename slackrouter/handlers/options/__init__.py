"""Options of external selects: the teams a chat can be routed or transferred to."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.adapters.slack.kit import option
from slackrouter.handlers.surfaces import Surfaces, who


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    # The chatflow modal's route teams and the Transfer modal's team: the same choices.
    @app.options({"action_id": re.compile(r"^(route_teams|transfer_team)$")})
    async def teams(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack(options=await _team_options(surfaces, body))


async def _team_options(surfaces: Surfaces, body: dict[str, Any]) -> list[dict[str, Any]]:
    """User groups and slackrouter teams matching what was typed (names only: no secrets)."""
    team_id, _ = who(body)
    found = await surfaces.directory.team_options(
        team_id=team_id, query=str(body.get("value") or "")
    )
    return [option(label, ref) for ref, label in found]
