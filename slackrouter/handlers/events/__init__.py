"""Slack event listeners."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers.events import messages
from slackrouter.services.replies import Replies


def register(app: AsyncApp, *, replies: Replies) -> None:
    messages.register(app, replies=replies)
