"""What the interactive listeners share: the services they call, and how they answer a person
in the place they clicked (an ephemeral message under a chat, or a small modal)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from slackrouter.adapters.slack.admin_blocks import notice_modal
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.services.admins import Admins, Declined
from slackrouter.services.chat_actions import ChatActions
from slackrouter.services.chatflow_admin import ChatflowAdmin, ChatflowNotFound
from slackrouter.services.directory import Directory, TeamNotFound
from slackrouter.services.home import HomeTabs
from slackrouter.services.overview import Overview
from slackrouter.services.presence import PresenceService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Surfaces:
    """The services behind `/chatrouting`, the modals, the App Home and the chat buttons."""

    slack: SlackGateway
    admins: Admins
    chatflows: ChatflowAdmin
    directory: Directory
    presence: PresenceService
    overview: Overview
    home: HomeTabs
    chats: ChatActions


def who(body: Mapping[str, Any]) -> tuple[str, str]:
    """(workspace, user) of an interaction payload or a slash command."""
    if "user_id" in body:  # a slash command
        return str(body.get("team_id") or ""), str(body["user_id"])
    user = body.get("user") or {}
    team = body.get("team") or {}
    return str(team.get("id") or user.get("team_id") or ""), str(user.get("id") or "")


async def team_slack(slack: SlackGateway, body: Mapping[str, Any]) -> SlackGateway:
    """The Web API as the app in the workspace this request came from."""
    return await slack.for_team(who(body)[0])


def metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON our modals keep in `private_metadata` ({} when there is none)."""
    raw = (body.get("view") or {}).get("private_metadata") or ""
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def in_modal(body: Mapping[str, Any]) -> bool:
    return (body.get("view") or {}).get("type") == "modal"


async def show_modal(slack: SlackGateway, body: Mapping[str, Any], view: dict[str, Any]) -> None:
    """Open a modal from a click: stacked on the modal clicked in, or a new one."""
    trigger = str(body["trigger_id"])
    slack = await team_slack(slack, body)
    if in_modal(body):
        await slack.push_view(trigger, view)
    else:
        await slack.open_view(trigger, view)


async def tell(slack: SlackGateway, body: Mapping[str, Any], text: str) -> None:
    """Say something to the person who clicked: under the message they clicked on, or in a
    small modal when they clicked inside a view."""
    _, user_id = who(body)
    container = body.get("container") or {}
    if container.get("type") == "message":
        slack = await team_slack(slack, body)
        await slack.post_ephemeral(
            str(container["channel_id"]), user_id, text=text, thread_ts=container.get("thread_ts")
        )
    else:
        await show_modal(slack, body, notice_modal(text))


@contextlib.asynccontextmanager
async def told_if_declined(slack: SlackGateway, body: Mapping[str, Any]) -> AsyncIterator[None]:
    """Run an action; if it changes nothing (not allowed, gone meanwhile, no longer
    possible), tell the person why instead of failing silently."""
    try:
        yield
    except (Declined, ChatflowNotFound, TeamNotFound) as refused:
        log.info("declined %s: %s", body.get("type"), refused)
        await tell(slack, body, str(refused))
