"""`app_home_opened`: publish the person's App Home tab as they look at it."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from slackrouter.services.home import HomeTabs


def register(app: AsyncApp, *, home: HomeTabs) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        await home.publish(team_id=context.team_id or "", user_id=str(event["user"]))
