"""Message shortcuts: "Send to visitor" on a thread note."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers.shortcuts import send_to_visitor
from slackrouter.handlers.surfaces import Surfaces


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    send_to_visitor.register(app, surfaces=surfaces)
