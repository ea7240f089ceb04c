"""Bolt listeners, one package per kind of Slack input, each with `register(app, ...)`."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers import actions, commands, events, options, shortcuts, views
from slackrouter.handlers.surfaces import Surfaces
from slackrouter.services.directory import Directory
from slackrouter.services.replies import Replies

log = logging.getLogger(__name__)


def register_listeners(
    app: AsyncApp, *, replies: Replies, directory: Directory, surfaces: Surfaces
) -> None:
    events.register(app, replies=replies, directory=directory, home=surfaces.home)
    commands.register(app, surfaces=surfaces)
    actions.register(app, surfaces=surfaces)
    views.register(app, surfaces=surfaces)
    shortcuts.register(app, surfaces=surfaces)
    options.register(app, surfaces=surfaces)

    @app.error
    async def on_error(error: Exception, body: dict) -> None:
        log.error("listener failed for %s: %r", body.get("type"), error, exc_info=error)
