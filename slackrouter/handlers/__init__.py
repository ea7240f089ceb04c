"""Bolt listeners, one package per kind of Slack input, each with `register(app, ...)`."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers import events
from slackrouter.services.directory import Directory
from slackrouter.services.replies import Replies

log = logging.getLogger(__name__)


def register_listeners(app: AsyncApp, *, replies: Replies, directory: Directory) -> None:
    events.register(app, replies=replies, directory=directory)

    @app.error
    async def on_error(error: Exception, body: dict) -> None:
        log.error("listener failed for %s: %r", body.get("type"), error, exc_info=error)
