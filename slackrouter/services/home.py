"""Keep each person's App Home tab current: published when they open it, again as soon as one of
their chats or their availability changes, and on a regular sweep for what changes without an
action of theirs (new chats, colleagues' availability), where only a view that differs from the
last one published is sent.

Who has opened the tab is kept in memory: after a restart a tab is refreshed again once its
owner opens it (Slack sends `app_home_opened` every time). A lost refresh costs nothing but
freshness, since the tab is rebuilt from the database each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable

from slack_sdk.errors import SlackApiError

from slackrouter.adapters.slack import home_blocks
from slackrouter.adapters.slack.gateway import SlackGateway, slack_error
from slackrouter.services.admins import Admins
from slackrouter.services.overview import Overview

log = logging.getLogger(__name__)


class HomeTabs:
    def __init__(self, overview: Overview, slack: SlackGateway, admins: Admins) -> None:
        self._overview = overview
        self._slack = slack
        self._admins = admins
        self._published: dict[tuple[str, str], str] = {}  # viewer -> digest of their tab
        self._admin_viewers: set[tuple[str, str]] = set()
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()

    async def publish(self, *, team_id: str, user_id: str) -> None:
        """Build and publish the user's tab now (they are looking at it)."""
        await self._publish((team_id, user_id), force=True)

    def changed(self, team_id: str, user_ids: Iterable[str] = ()) -> None:
        """Something these people's tabs show changed (and the admins', who see everything):
        refresh the tabs of those who have opened theirs."""
        for user_id in user_ids:
            if (team_id, user_id) in self._published:
                self._dirty.add((team_id, user_id))
        self._dirty.update(v for v in self._admin_viewers if v[0] == team_id)
        if self._dirty:
            self._wake.set()

    async def refresh(self, *, everyone: bool = False) -> int:
        """Publish the tabs marked changed (every tab seen, with `everyone`) whose content is
        not what was last published; returns how many were published."""
        viewers = set(self._published) if everyone else set(self._dirty)
        self._dirty -= viewers
        published = 0
        for viewer in sorted(viewers):
            published += await self._publish(viewer, force=False)
        return published

    async def run_forever(self, sweep_interval: float) -> None:
        """Refresh changed tabs as soon as told, and every tab each `sweep_interval` seconds."""
        while True:
            swept = False
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=sweep_interval)
            except TimeoutError:
                swept = True
            self._wake.clear()
            try:
                await self.refresh(everyone=swept)
            except Exception:
                log.exception("App Home refresh failed")

    async def _publish(self, viewer: tuple[str, str], *, force: bool) -> int:
        team_id, user_id = viewer
        admin = await self._admins.is_admin(team_id=team_id, user_id=user_id)
        if admin:
            self._admin_viewers.add(viewer)
        else:
            self._admin_viewers.discard(viewer)
        data = await self._overview.home(team_id=team_id, user_id=user_id, admin=admin)
        view = home_blocks.home_view(data)
        digest = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()
        if not force and self._published.get(viewer) == digest:
            return 0
        try:
            await (await self._slack.for_team(team_id)).publish_home(user_id, view)
        except SlackApiError as exc:
            log.warning("views.publish failed for %s: %s", user_id, slack_error(exc))
            with contextlib.suppress(KeyError):
                del self._published[viewer]
            return 0
        self._published[viewer] = digest
        return 1
