"""Saving the team modal (slackrouter teams): problems answer inline, as for chatflows."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.adapters.slack.admin_blocks import teams_modal
from slackrouter.handlers.surfaces import Surfaces, metadata, team_slack, who
from slackrouter.services.admins import NOT_ADMIN


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    @app.view("team_edit")
    async def save_team(ack: AsyncAck, body: dict[str, Any]) -> None:
        team_id, user_id = who(body)
        if not await surfaces.admins.is_admin(team_id=team_id, user_id=user_id):
            await ack(response_action="errors", errors={"name": NOT_ADMIN})
            return
        kept = metadata(body)
        values = body["view"]["state"]["values"]
        name = str(values.get("name", {}).get("name", {}).get("value") or "")
        members = list(values.get("members", {}).get("members", {}).get("selected_users") or [])
        directory = surfaces.directory
        try:
            if kept.get("id"):
                await directory.update_team(
                    team_id=team_id, team_ref=str(kept["id"]), name=name, members=members
                )
            else:
                await directory.create_team(team_id=team_id, name=name, members=members)
        except ValueError as invalid:  # "field: problem", TeamNotFound included
            field, _, problem = str(invalid).partition(": ")
            block = field if field in ("name", "members") else "name"
            await ack(response_action="errors", errors={block: problem or str(invalid)})
            return
        await ack()
        if kept.get("list"):
            teams = await directory.list_teams(team_id=team_id)
            view = teams_modal(teams, page=int(kept.get("page") or 0))
            await (await team_slack(surfaces.slack, body)).update_view(str(kept["list"]), view)
        surfaces.home.changed(team_id)
