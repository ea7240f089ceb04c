"""Keep reps' Slack presence and profiles fresh, off the hot path and within Slack's limits.

Modern Slack apps get no presence events, so the scheduler polls `users.getPresence` (Tier 3,
about 50 calls a minute) for the reps on some route only, oldest first, spreading the calls so a
refresh never exceeds `calls_per_minute`.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from datetime import timedelta

from slack_sdk.errors import SlackApiError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Contact, Rep
from slackrouter.adapters.slack.gateway import SlackGateway, slack_error
from slackrouter.clock import Clock
from slackrouter.services.directory import Directory

log = logging.getLogger(__name__)

PROFILE_MAX_AGE = timedelta(hours=6)


class PresenceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        slack: SlackGateway,
        directory: Directory,
        *,
        clock: Clock,
        calls_per_minute: int,
        max_age: float,
    ) -> None:
        self._sessions = sessions
        self._slack = slack
        self._directory = directory
        self._clock = clock
        self._spacing = 60.0 / calls_per_minute
        self._calls_per_minute = calls_per_minute
        self._max_age = timedelta(seconds=max_age)
        self._lock = asyncio.Lock()

    async def routed_reps(self) -> list[tuple[str, str]]:
        """(team id, user id) of every rep some chat may go to: route users, members of route
        teams, offline fallbacks, and owners of contacts where a chatflow rotates to owners.
        Creates missing rows."""
        async with self._sessions() as session, session.begin():
            routes: dict[str, set[str]] = {}
            owners_wanted: set[str] = set()
            for chatflow in await session.scalars(select(Chatflow)):
                users = routes.setdefault(chatflow.team_id, set())
                users.update(chatflow.route_users)
                members = await self._directory.team_members(
                    session, team_id=chatflow.team_id, refs=chatflow.route_teams
                )
                users.update(*members.values())
                if chatflow.offline_fallback:
                    users.add(chatflow.offline_fallback)
                if chatflow.rotate_to_owner:
                    owners_wanted.add(chatflow.team_id)
            if owners_wanted:
                rows = await session.execute(
                    select(Contact.team_id, Contact.owner_user_id)
                    .where(Contact.team_id.in_(owners_wanted), Contact.owner_user_id.is_not(None))
                    .distinct()
                )
                for team_id, owner in rows:
                    routes[team_id].add(owner)
            for team_id, users in routes.items():
                await repo.ensure_reps(session, team_id, users)
        return sorted((team, user) for team, users in routes.items() for user in users)

    async def refresh(self, *, pace: bool = True, wait: bool = False) -> int:
        """Poll the stalest reps' presence (and missing profiles), and everyone's Do Not
        Disturb in batches of 50; returns the calls made. On PostgreSQL one replica at a time
        polls (an advisory lock), so replicas share Slack's budget instead of multiplying it;
        `wait` waits for the lock instead of leaving the round to the replica that holds it."""
        engine = self._sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            return await self._refresh(pace)
        async with engine.connect() as connection:
            # Each schema (one deployment, or one test) has its own lock.
            schema = await connection.scalar(text("SELECT current_schema()"))
            key = zlib.crc32(str(schema).encode())
            if wait:
                await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            elif not await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
            ):
                return 0
            try:
                return await self._refresh(pace)
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await connection.commit()

    async def _refresh(self, pace: bool) -> int:
        async with self._lock:
            wanted = set(await self.routed_reps())
            by_team: dict[str, list[str]] = {}
            for team_id, user_id in sorted(wanted):
                by_team.setdefault(team_id, []).append(user_id)
            async with self._sessions() as session:
                reps = [
                    rep
                    for rep in await session.scalars(select(Rep))
                    if (rep.team_id, rep.user_id) in wanted
                ]
            now = self._clock()
            oldest_first = sorted(
                reps, key=lambda r: r.presence_checked_at or now - timedelta(days=3650)
            )
            calls = 0
            for rep in oldest_first[: self._calls_per_minute]:
                if calls and pace:
                    await asyncio.sleep(self._spacing)
                calls += await self._refresh_one(rep.team_id, rep.user_id)
            for team_id, user_ids in by_team.items():
                calls += await self._directory.refresh_dnd(team_id=team_id, user_ids=user_ids)
            return calls

    async def _refresh_one(self, team_id: str, user_id: str) -> int:
        calls = 0
        try:
            async with self._sessions() as session, session.begin():
                rep = await session.get_one(Rep, (team_id, user_id))
                now = self._clock()
                slack = await self._slack.for_team(team_id)
                if rep.profile_checked_at is None or now - rep.profile_checked_at > PROFILE_MAX_AGE:
                    profile = await slack.profile(user_id)
                    calls += 1
                    rep.name, rep.avatar_url = profile.name, profile.avatar_url
                    rep.is_bot, rep.deleted = profile.is_bot, profile.deleted
                    rep.email, rep.is_guest = profile.email, profile.is_guest
                    rep.profile_checked_at = now
                rep.presence = await slack.presence(user_id)
                rep.presence_checked_at = self._clock()
                calls += 1
        except SlackApiError as exc:
            log.warning("presence refresh failed for %s: %s", user_id, slack_error(exc))
        return calls

    async def check_now(self, *, team_id: str, user_ids: Sequence[str], limit: int = 10) -> None:
        """Ask Slack now for the presence of people whose known presence is older than
        `max_age` (the poller follows only reps on a route): a transfer to someone else needs
        it fresh. At most `limit` calls, to stay within Slack's rate limits."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            await repo.ensure_reps(session, team_id, user_ids)
            await session.flush()
            reps = await repo.reps_by_id(session, team_id, user_ids)
        stale = [
            user_id
            for user_id, rep in reps.items()
            if rep.presence_checked_at is None or now - rep.presence_checked_at > self._max_age
        ]
        for user_id in stale[:limit]:
            await self._refresh_one(team_id, user_id)

    async def set_opted_in(self, *, team_id: str, user_id: str, opted_in: bool) -> None:
        """A rep's own choice to take chats or not (`/chatrouting available|away`)."""
        async with self._sessions() as session, session.begin():
            await repo.ensure_reps(session, team_id, [user_id])
            await session.flush()
            rep = await session.get_one(Rep, (team_id, user_id))
            rep.opted_in = opted_in
