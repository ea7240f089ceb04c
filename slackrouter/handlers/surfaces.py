"""What the interactive listeners share: the services they call, and how they answer a person
in the place they clicked (an ephemeral message under a chat, or a small modal)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from slackrouter.adapters.slack.admin_blocks import notice_modal
from slackrouter.adapters.slack.gateway import SlackGateway, slack_error
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _field(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key)
    return value if isinstance(value, Mapping) else {}


def who(body: Mapping[str, Any]) -> tuple[str, str]:
    """(workspace, user) of a slash command or an interaction payload; empty strings for what
    a malformed request lacks, so that it matches nobody."""
    if "command" in body:
        return _text(body.get("team_id")), _text(body.get("user_id"))
    user = _field(body, "user")
    team_id = _text(_field(body, "team").get("id")) or _text(user.get("team_id"))
    return team_id, _text(user.get("id"))


def clicked(body: Mapping[str, Any]) -> tuple[str, str]:
    """(channel, ts) of the message whose button was clicked."""
    container = _field(body, "container")
    return _text(container.get("channel_id")), _text(container.get("message_ts"))


async def team_slack(slack: SlackGateway, body: Mapping[str, Any]) -> SlackGateway:
    """The Web API as the app in the workspace this request came from."""
    return await slack.for_team(who(body)[0])


def metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON our modals keep in `private_metadata` ({} when there is none)."""
    raw = _text(_field(body, "view").get("private_metadata"))
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def in_modal(body: Mapping[str, Any]) -> bool:
    return _field(body, "view").get("type") == "modal"


async def show_modal(slack: SlackGateway, body: Mapping[str, Any], view: dict[str, Any]) -> None:
    """Open a modal from a click: stacked on the modal clicked in, or a new one."""
    trigger = _text(body.get("trigger_id"))
    slack = await team_slack(slack, body)
    if in_modal(body):
        await slack.push_view(trigger, view)
    else:
        await slack.open_view(trigger, view)


async def tell(slack: SlackGateway, body: Mapping[str, Any], text: str) -> None:
    """Say something to the person who clicked: under the message they clicked on, or in a
    small modal when they clicked inside a view."""
    _, user_id = who(body)
    channel, _ = clicked(body)
    try:
        if _field(body, "container").get("type") == "message":
            slack = await team_slack(slack, body)
            thread_ts = _text(_field(body, "container").get("thread_ts")) or None
            await slack.post_ephemeral(channel, user_id, text=text, thread_ts=thread_ts)
        else:
            await show_modal(slack, body, notice_modal(text))
    except SlackApiError as exc:  # telling is a courtesy: nothing was changed either way
        log.warning("could not tell %s why: %s", user_id or "someone", slack_error(exc))


@contextlib.asynccontextmanager
async def told_if_declined(slack: SlackGateway, body: Mapping[str, Any]) -> AsyncIterator[None]:
    """Run an action; if it changes nothing (not allowed, gone meanwhile, no longer
    possible), tell the person why instead of failing silently."""
    try:
        yield
    except (Declined, ChatflowNotFound, TeamNotFound) as refused:
        log.info("declined %s: %s", body.get("type"), refused)
        await tell(slack, body, str(refused))
