"""`dnd_updated_user` events: a member's Do Not Disturb changed, so availability is fresh
without polling `dnd.teamInfo`."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from slackrouter.services.directory import Directory

log = logging.getLogger(__name__)


def register(app: AsyncApp, *, directory: Directory) -> None:
    @app.event("dnd_updated_user")
    async def dnd_updated_user(event: dict[str, Any], context: AsyncBoltContext) -> None:
        team_id = context.team_id or ""
        user_id = event.get("user")
        if not team_id or not user_id:
            log.debug("dnd_updated_user without team or user ignored")
            return
        await directory.dnd_updated(
            team_id=team_id, user_id=str(user_id), dnd_status=event.get("dnd_status") or {}
        )
