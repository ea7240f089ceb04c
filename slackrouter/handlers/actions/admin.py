"""Buttons of the admin surfaces (the chatflow and team modals, the admins' App Home). Every
one checks on the server that the user is a slackrouter admin: the payload alone proves nothing.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.adapters.slack.admin_blocks import (
    chatflow_modal,
    chatflows_modal,
    notice_modal,
    team_modal,
    teams_modal,
)
from slackrouter.handlers.surfaces import (
    Surfaces,
    in_modal,
    metadata,
    show_modal,
    team_slack,
    told_if_declined,
    who,
)
from slackrouter.services.chatflow_admin import ChatflowSettings, settings_of
from slackrouter.services.directory import TeamNotFound


def _value(body: dict[str, Any]) -> str:
    return str((body.get("actions") or [{}])[0].get("value") or "")


def _page(body: dict[str, Any]) -> int:
    value = _value(body)
    return int(value) if value.isdigit() else 0


def _list_view(body: dict[str, Any]) -> tuple[str | None, int]:
    """The list modal clicked in, if any, and the page it shows: an edit modal opened from it
    refreshes it after a save."""
    view = body.get("view") or {}
    if in_modal(body) and view.get("callback_id") in ("chatflows", "teams"):
        page = str(view.get("private_metadata") or "0")
        return str(view["id"]), int(page) if page.isdigit() else 0
    return None, 0


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    slack, admins = surfaces.slack, surfaces.admins

    @app.action("delivery_retry")
    async def retry_delivery(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        value = _value(body)
        async with told_if_declined(slack, body):
            if value.isdigit():
                await surfaces.chats.retry_delivery(
                    team_id=team_id, user_id=user_id, item_id=int(value)
                )
            await surfaces.home.publish(team_id=team_id, user_id=user_id)

    @app.action("chatflows_open")
    async def open_chatflows(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            lines, names = await surfaces.overview.chatflow_list(team_id=team_id)
            await show_modal(slack, body, chatflows_modal(lines, names))

    @app.action("chatflows_page")
    async def chatflows_page(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            lines, names = await surfaces.overview.chatflow_list(team_id=team_id)
            view = chatflows_modal(lines, names, page=_page(body))
            await (await team_slack(slack, body)).update_view(str(body["view"]["id"]), view)

    @app.action("chatflow_new")
    async def new_chatflow(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            names = await surfaces.overview.team_names(team_id=team_id)
            list_view, page = _list_view(body)
            view = chatflow_modal(
                None, ChatflowSettings(name=""), names, list_view=list_view, page=page
            )
            await show_modal(slack, body, view)

    @app.action("chatflow_edit")
    async def edit_chatflow(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            chatflow = await surfaces.chatflows.get(team_id=team_id, chatflow_id=_value(body))
            names = await surfaces.overview.team_names(team_id=team_id)
            list_view, page = _list_view(body)
            view = chatflow_modal(
                chatflow.id,
                settings_of(chatflow),
                names,
                public_key=chatflow.public_key,
                signing_secret=chatflow.signing_secret,
                list_view=list_view,
                page=page,
            )
            await show_modal(slack, body, view)

    @app.action("chatflow_rotate_secret")
    async def rotate_secret(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            chatflow = await surfaces.chatflows.rotate_secret(
                team_id=team_id, chatflow_id=_value(body)
            )
            names = await surfaces.overview.team_names(team_id=team_id)
            kept = metadata(body)
            view = chatflow_modal(
                chatflow.id,
                settings_of(chatflow),
                names,
                public_key=chatflow.public_key,
                signing_secret=chatflow.signing_secret,
                list_view=kept.get("list"),
                page=int(kept.get("page") or 0),
            )
            await (await team_slack(slack, body)).update_view(str(body["view"]["id"]), view)

    @app.action("teams_open")
    async def open_teams(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            teams = await surfaces.directory.list_teams(team_id=team_id)
            await show_modal(slack, body, teams_modal(teams))

    @app.action("teams_page")
    async def teams_page(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            teams = await surfaces.directory.list_teams(team_id=team_id)
            view = teams_modal(teams, page=_page(body))
            await (await team_slack(slack, body)).update_view(str(body["view"]["id"]), view)

    @app.action("team_new")
    async def new_team(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            list_view, page = _list_view(body)
            await show_modal(slack, body, team_modal(None, list_view=list_view, page=page))

    @app.action("team_edit")
    async def edit_team(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            teams = await surfaces.directory.list_teams(team_id=team_id)
            team = next((t for t in teams if t.id == _value(body)), None)
            if team is None:
                raise TeamNotFound("This team no longer exists.")
            list_view, page = _list_view(body)
            await show_modal(slack, body, team_modal(team, list_view=list_view, page=page))

    @app.action("team_delete")
    async def delete_team(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team_id, user_id = who(body)
        async with told_if_declined(slack, body):
            await admins.require(team_id=team_id, user_id=user_id)
            await surfaces.directory.delete_team(team_id=team_id, team_ref=_value(body))
            gateway = await team_slack(slack, body)
            await gateway.update_view(
                str(body["view"]["id"]),
                notice_modal("The team is deleted and off every chatflow's route."),
            )
            kept = metadata(body)
            if kept.get("list"):
                teams = await surfaces.directory.list_teams(team_id=team_id)
                view = teams_modal(teams, page=int(kept.get("page") or 0))
                await gateway.update_view(str(kept["list"]), view)
            surfaces.home.changed(team_id)
