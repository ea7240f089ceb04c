"""Slack event listeners."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers.events import app_home, dnd, messages
from slackrouter.services.directory import Directory
from slackrouter.services.home import HomeTabs
from slackrouter.services.replies import Replies


def register(app: AsyncApp, *, replies: Replies, directory: Directory, home: HomeTabs) -> None:
    messages.register(app, replies=replies)
    dnd.register(app, directory=directory)
    app_home.register(app, home=home)
