"""Who may change routing: workspace admins and owners (`users.info`), and the users named in the
`SLACKROUTER_ADMINS` setting.

Slack's answer is cached for a minute per user, so that opening a modal and submitting it cost
one `users.info` call; a demoted admin loses access within that minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError

from slackrouter.adapters.slack.gateway import SlackGateway, slack_error

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0

NOT_ADMIN = (
    "Only slackrouter admins can do this: workspace admins and owners, and the people in "
    "the SLACKROUTER_ADMINS setting."
)


class Declined(Exception):
    """Nothing was changed; the message says why, in words for the user who asked."""


class NotAllowed(Declined):
    """The user may not do this."""


class Admins:
    def __init__(
        self,
        slack: SlackGateway,
        *,
        listed: Iterable[str],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slack = slack
        self._listed = frozenset(listed)
        self._monotonic = monotonic
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}

    async def is_admin(self, *, team_id: str, user_id: str) -> bool:
        """Whether the user is a slackrouter admin; a failing `users.info` counts as no."""
        if user_id in self._listed:
            return True
        key = (team_id, user_id)
        now = self._monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            allowed = (await (await self._slack.for_team(team_id)).profile(user_id)).is_admin
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", user_id, slack_error(exc))
            return False
        self._cache[key] = (now, allowed)
        return allowed

    async def require(self, *, team_id: str, user_id: str) -> None:
        """Raise NotAllowed unless the user is a slackrouter admin."""
        if not await self.is_admin(team_id=team_id, user_id=user_id):
            log.warning("refused an admin action to %s of %s", user_id, team_id)
            raise NotAllowed(NOT_ADMIN)
