"""The app's own lifecycle in a workspace: `app_uninstalled` and `tokens_revoked` events, and
the workspace id on every log line of a Slack request."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.adapters.slack.installations import NotInstalled
from slackrouter.observability import bind_log_context
from slackrouter.services.workspaces import Workspaces

log = logging.getLogger(__name__)


def register(app: AsyncApp, *, workspaces: Workspaces, slack: SlackGateway) -> None:
    @app.middleware
    async def for_workspace(context: AsyncBoltContext, next: Callable[[], Awaitable[Any]]) -> Any:
        """Log lines name the workspace; with many, the gateway speaks with its token."""
        bind_log_context(team=context.team_id, conversation=None)
        with contextlib.suppress(NotInstalled):  # e.g. `tokens_revoked`: nothing to speak with
            await slack.speak_for_request(context.team_id)
        return await next()

    @app.event("app_uninstalled")
    async def app_uninstalled(context: AsyncBoltContext) -> None:
        if context.team_id:
            await workspaces.uninstalled(
                team_id=context.team_id, enterprise_id=context.enterprise_id
            )

    @app.event("tokens_revoked")
    async def tokens_revoked(event: dict[str, Any], context: AsyncBoltContext) -> None:
        tokens = event.get("tokens") or {}
        if tokens.get("bot") and context.team_id:
            await workspaces.bot_token_revoked(
                team_id=context.team_id, enterprise_id=context.enterprise_id
            )
