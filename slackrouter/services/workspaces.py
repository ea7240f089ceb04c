"""A workspace leaves: when it uninstalls the app, everything slackrouter holds for it goes
(chatflows, contacts, conversations and their messages, reps, teams, the outbox, and its
installation), as Slack asks of apps; when it revokes the bot's token, the token goes."""

from __future__ import annotations

import logging

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import slack_oauth  # noqa: F401  (installations are erased too)
from slackrouter.adapters.db.models import Base
from slackrouter.adapters.slack.gateway import SlackGateway

log = logging.getLogger(__name__)


async def erase_workspace(sessions: async_sessionmaker[AsyncSession], team_id: str) -> int:
    """Delete every row of the workspace, children first, in one transaction; returns the count.
    A table without a `team_id` goes by its parent's (the visitor feed by its conversation)."""
    deleted = 0
    async with sessions() as session, session.begin():
        for table in reversed(Base.metadata.sorted_tables):
            if "team_id" in table.c:
                result = await session.execute(delete(table).where(table.c.team_id == team_id))
                deleted += result.rowcount or 0  # type: ignore[attr-defined]
                continue
            for key in table.foreign_keys:
                parent = key.column.table
                if "team_id" in parent.c:
                    owned = select(key.column).where(parent.c.team_id == team_id)
                    result = await session.execute(delete(table).where(key.parent.in_(owned)))
                    deleted += result.rowcount or 0  # type: ignore[attr-defined]
    return deleted


class Workspaces:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        slack: SlackGateway,
        installations: AsyncInstallationStore | None,
    ) -> None:
        self._sessions = sessions
        self._slack = slack
        self._installations = installations

    async def uninstalled(self, *, team_id: str, enterprise_id: str | None = None) -> int:
        """The app was uninstalled from `team_id`: forget the workspace."""
        if self._installations is not None:
            await self._installations.async_delete_all(enterprise_id=enterprise_id, team_id=team_id)
        self._slack.forget(team_id)
        deleted = await erase_workspace(self._sessions, team_id)
        log.warning("app uninstalled team=%s: deleted its %d rows", team_id, deleted)
        return deleted

    async def bot_token_revoked(self, *, team_id: str, enterprise_id: str | None = None) -> None:
        """The workspace revoked the bot's token: nothing can be posted there until it
        installs the app again. Its chatflows and chats stay."""
        if self._installations is not None:
            await self._installations.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
            await self._installations.async_delete_installation(
                enterprise_id=enterprise_id, team_id=team_id
            )
        self._slack.forget(team_id)
        if self._installations is None:
            log.error(
                "the bot token of team=%s was revoked: reinstall the app and put its new token "
                "in SLACK_BOT_TOKEN",
                team_id,
            )
        else:
            log.warning("bot token revoked team=%s: it installs the app again to resume", team_id)
