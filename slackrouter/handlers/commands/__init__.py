"""Slash commands: `/chatrouting`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers.commands import chatrouting
from slackrouter.handlers.surfaces import Surfaces


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    chatrouting.register(app, surfaces=surfaces)
