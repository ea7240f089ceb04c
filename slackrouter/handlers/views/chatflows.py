"""Saving the chatflow modal. Problems answer inline, next to their input
(`response_action: errors`); a submission from someone who is not an admin changes nothing and
says why in the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.adapters.slack.admin_blocks import chatflows_modal
from slackrouter.handlers.surfaces import Surfaces, metadata, team_slack, who
from slackrouter.services.admins import NOT_ADMIN
from slackrouter.services.chatflow_admin import ChatflowInvalid, ChatflowNotFound

IN_MODAL = {
    "name",
    "route_users",
    "route_teams",
    "channel_id",
    "offline_fallback",
    "rotate_to_owner",
    "assignment",
    "escalation_seconds",
    "note_mode",
    "note_prefix",
    "welcome_message",
    "away_message",
}
"""The modal's input blocks (each named after the setting it edits)."""


def changes_from(values: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The settings as the modal's state has them."""

    def state(block: str) -> Mapping[str, Any]:
        return values.get(block, {}).get(block, {})

    def selected(block: str) -> str:
        return str((state(block).get("selected_option") or {}).get("value") or "")

    escalation = str(state("escalation_seconds").get("value") or "")
    return {
        "name": str(state("name").get("value") or ""),
        "route_users": tuple(state("route_users").get("selected_users") or ()),
        "route_teams": tuple(
            str(o["value"]) for o in state("route_teams").get("selected_options") or ()
        ),
        "channel_id": state("channel_id").get("selected_conversation") or None,
        "offline_fallback": state("offline_fallback").get("selected_user") or None,
        "rotate_to_owner": bool(state("rotate_to_owner").get("selected_options")),
        "assignment": selected("assignment"),
        "escalation_seconds": int(escalation) if escalation.isdigit() else -1,
        "note_mode": selected("note_mode"),
        "note_prefix": str(state("note_prefix").get("value") or ""),
        "welcome_message": str(state("welcome_message").get("value") or ""),
        "away_message": str(state("away_message").get("value") or ""),
    }


def inline_errors(errors: Mapping[str, str]) -> dict[str, str]:
    """The service's errors (by setting) on the modal's inputs; a setting the modal does not
    show is reported on the name."""
    shown: dict[str, str] = {}
    for field, problem in errors.items():
        block = "route_users" if field == "route" else field
        if block not in IN_MODAL:
            block, problem = "name", f"{field.replace('_', ' ')}: {problem}"
        shown[block] = f"{shown[block]}; {problem}" if block in shown else problem
    return shown


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    @app.view("chatflow_edit")
    async def save_chatflow(ack: AsyncAck, body: dict[str, Any]) -> None:
        team_id, user_id = who(body)
        if not await surfaces.admins.is_admin(team_id=team_id, user_id=user_id):
            await ack(response_action="errors", errors={"name": NOT_ADMIN})
            return
        kept = metadata(body)
        try:
            await surfaces.chatflows.save(
                team_id=team_id,
                chatflow_id=kept.get("id"),
                changes=changes_from(body["view"]["state"]["values"]),
            )
        except ChatflowInvalid as invalid:
            await ack(response_action="errors", errors=inline_errors(invalid.errors))
            return
        except ChatflowNotFound as gone:
            await ack(response_action="errors", errors={"name": str(gone)})
            return
        await ack()
        if kept.get("list"):
            lines, names = await surfaces.overview.chatflow_list(team_id=team_id)
            view = chatflows_modal(lines, names, page=int(kept.get("page") or 0))
            await (await team_slack(surfaces.slack, body)).update_view(str(kept["list"]), view)
        surfaces.home.changed(team_id)
