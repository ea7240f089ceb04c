"""Block actions: buttons on chats, in the admin modals and on the App Home."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers.actions import admin, chat, home
from slackrouter.handlers.surfaces import Surfaces


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    chat.register(app, surfaces=surfaces)
    admin.register(app, surfaces=surfaces)
    home.register(app, surfaces=surfaces)
