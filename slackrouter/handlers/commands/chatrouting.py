"""`/chatrouting`: for everyone `available`, `away`, `status` and `help`; for admins, no
subcommand (or `chatflows`) opens the chatflows modal and `teams` the teams modal.

The answers are ephemeral and travel in the acknowledgement itself; a modal is opened after the
acknowledgement, with the command's trigger.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.adapters.slack.admin_blocks import (
    HELP,
    chatflows_modal,
    help_blocks,
    status_blocks,
    teams_modal,
)
from slackrouter.adapters.slack.kit import clip, esc
from slackrouter.handlers.surfaces import Surfaces, team_slack, who
from slackrouter.services.admins import NOT_ADMIN

COMMAND = "/chatrouting"
ADMIN_WORDS = ("", "chatflows", "teams")


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    @app.command(COMMAND)
    async def chatrouting(ack: AsyncAck, body: dict[str, Any]) -> None:
        team_id, user_id = who(body)
        if not (team_id and user_id):  # not a request Slack would send: nobody to act for
            await ack(text=HELP)
            return
        text = body.get("text")
        word = ((text if isinstance(text, str) else "").split() or [""])[0].lower()
        if word in ("available", "away"):
            opted_in = word == "available"
            await surfaces.presence.set_opted_in(
                team_id=team_id, user_id=user_id, opted_in=opted_in
            )
            await ack(
                text=(
                    "You're taking chats: they come to you while Slack shows you active and "
                    "you're not in Do Not Disturb."
                    if opted_in
                    else "You're not taking chats until you say `/chatrouting available`."
                )
            )
            surfaces.home.changed(team_id, [user_id])
        elif word == "status":
            routes = await surfaces.overview.routes(team_id=team_id)
            await ack(text="Who can take chats now", blocks=status_blocks(routes))
        elif word in ADMIN_WORDS:
            if not await surfaces.admins.is_admin(team_id=team_id, user_id=user_id):
                await ack(text=NOT_ADMIN, blocks=help_blocks(note=NOT_ADMIN))
                return
            await ack()
            trigger = str(body.get("trigger_id") or "")
            slack = await team_slack(surfaces.slack, body)
            if word == "teams":
                teams = await surfaces.directory.list_teams(team_id=team_id)
                await slack.open_view(trigger, teams_modal(teams))
            else:
                lines, names = await surfaces.overview.chatflow_list(team_id=team_id)
                await slack.open_view(trigger, chatflows_modal(lines, names))
        else:
            note = None
            if word != "help":
                note = f"`{esc(clip(word, 30))}` is not a {COMMAND} command."
            await ack(text=HELP, blocks=help_blocks(note=note))
