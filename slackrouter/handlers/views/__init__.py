"""View submissions: the chatflow and team modals, and the Transfer modal."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from slackrouter.handlers.surfaces import Surfaces
from slackrouter.handlers.views import chatflows, teams, transfer


def register(app: AsyncApp, *, surfaces: Surfaces) -> None:
    chatflows.register(app, surfaces=surfaces)
    teams.register(app, surfaces=surfaces)
    transfer.register(app, surfaces=surfaces)
