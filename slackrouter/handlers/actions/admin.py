"""Buttons of the admin surfaces (the chatflow and team modals, the admins' App Home). Every
one checks on the server that the user is a slackrouter admin: the payload alone proves nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from slackrouter.adapters.db.models import Chatflow
from slackrouter.adapters.slack.admin_blocks import (
    chatflow_modal,
    chatflows_modal,
    notice_modal,
    team_modal,
    teams_modal,
)
from slackrouter.adapters.slack.gateway import SlackGateway
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

AdminWork = Callable[[dict[str, Any], str], Awaitable[None]]
"""What an admin button does, given the payload and the workspace, once the clicker is vetted."""


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


def _edit_chatflow_modal(
    chatflow: Chatflow, names: dict[str, str], list_view: str | None, page: int
) -> dict[str, Any]:
    return chatflow_modal(
        chatflow.id,
        settings_of(chatflow),
        names,
        public_key=chatflow.public_key,
        signing_secret=chatflow.signing_secret,
        list_view=list_view,
        page=page,
    )


async def _redraw_clicked_view(
    slack: SlackGateway, body: dict[str, Any], view: dict[str, Any]
) -> None:
    await (await team_slack(slack, body)).update_view(str(body["view"]["id"]), view)


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    slack, admins = surfaces.slack, surfaces.admins

    def admin_action(action_id: str) -> Callable[[AdminWork], AdminWork]:
        """Listen to `action_id`: acknowledge at once, then run the work only for an admin of
        the workspace, telling the clicker why when it is refused (a forged click included)."""

        def decorate(work: AdminWork) -> AdminWork:
            # Bolt hands a listener its arguments by parameter name: keep `ack` and `body`.
            async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
                await ack()
                team_id, user_id = who(body)
                async with told_if_declined(slack, body):
                    await admins.require(team_id=team_id, user_id=user_id)
                    await work(body, team_id)

            app.action(action_id)(listener)
            return work

        return decorate

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

    @admin_action("chatflows_open")
    async def open_chatflows(body: dict[str, Any], team_id: str) -> None:
        lines, names = await surfaces.overview.chatflow_list(team_id=team_id)
        await show_modal(slack, body, chatflows_modal(lines, names))

    @admin_action("chatflows_page")
    async def chatflows_page(body: dict[str, Any], team_id: str) -> None:
        lines, names = await surfaces.overview.chatflow_list(team_id=team_id)
        await _redraw_clicked_view(slack, body, chatflows_modal(lines, names, page=_page(body)))

    @admin_action("chatflow_new")
    async def new_chatflow(body: dict[str, Any], team_id: str) -> None:
        names = await surfaces.overview.team_names(team_id=team_id)
        list_view, page = _list_view(body)
        view = chatflow_modal(
            None, ChatflowSettings(name=""), names, list_view=list_view, page=page
        )
        await show_modal(slack, body, view)

    @admin_action("chatflow_edit")
    async def edit_chatflow(body: dict[str, Any], team_id: str) -> None:
        chatflow = await surfaces.chatflows.get(team_id=team_id, chatflow_id=_value(body))
        names = await surfaces.overview.team_names(team_id=team_id)
        await show_modal(slack, body, _edit_chatflow_modal(chatflow, names, *_list_view(body)))

    @admin_action("chatflow_rotate_secret")
    async def rotate_secret(body: dict[str, Any], team_id: str) -> None:
        chatflow = await surfaces.chatflows.rotate_secret(team_id=team_id, chatflow_id=_value(body))
        names = await surfaces.overview.team_names(team_id=team_id)
        kept = metadata(body)
        view = _edit_chatflow_modal(chatflow, names, kept.get("list"), int(kept.get("page") or 0))
        await _redraw_clicked_view(slack, body, view)

    @admin_action("teams_open")
    async def open_teams(body: dict[str, Any], team_id: str) -> None:
        teams = await surfaces.directory.list_teams(team_id=team_id)
        await show_modal(slack, body, teams_modal(teams))

    @admin_action("teams_page")
    async def teams_page(body: dict[str, Any], team_id: str) -> None:
        teams = await surfaces.directory.list_teams(team_id=team_id)
        await _redraw_clicked_view(slack, body, teams_modal(teams, page=_page(body)))

    @admin_action("team_new")
    async def new_team(body: dict[str, Any], team_id: str) -> None:
        list_view, page = _list_view(body)
        await show_modal(slack, body, team_modal(None, list_view=list_view, page=page))

    @admin_action("team_edit")
    async def edit_team(body: dict[str, Any], team_id: str) -> None:
        teams = await surfaces.directory.list_teams(team_id=team_id)
        team = next((t for t in teams if t.id == _value(body)), None)
        if team is None:
            raise TeamNotFound("This team no longer exists.")
        list_view, page = _list_view(body)
        await show_modal(slack, body, team_modal(team, list_view=list_view, page=page))

    @admin_action("team_delete")
    async def delete_team(body: dict[str, Any], team_id: str) -> None:
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
