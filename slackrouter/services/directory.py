"""Who is in which team, and who is in Do Not Disturb.

A route's teams are Slack user groups (`S…`, paid plans only, cached from `usergroups.list`) or
teams defined in slackrouter (`tm_…`, any plan). Do Not Disturb comes from `dnd.teamInfo`
(50 users a call) and stays fresh through the `dnd_updated_user` event.

`Rep.dnd` is a snapshot taken at `Rep.dnd_checked_at`: a scheduled window that starts, or a
window that ends, after that moment changes nothing until the next `refresh_dnd`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Rep, Team, UserGroup
from slackrouter.adapters.slack.gateway import (
    DND_BATCH,
    PAID_PLAN_ERRORS,
    SlackGateway,
    slack_error,
)
from slackrouter.clock import Clock

log = logging.getLogger(__name__)

TEAM_PREFIX = "tm_"
MAX_TEAM_MEMBERS = 500
MAX_TEAM_NAME = 200
MAX_OPTIONS = 100  # Slack shows at most 100 options in an external select
MAX_OPTION_TEXT = 75  # an option's plain_text limit


class TeamNotFound(ValueError):
    """The team does not exist in this workspace (deleted meanwhile, or another workspace's)."""


def _is_user_id(user_id: str) -> bool:
    return user_id[:1] in {"U", "W"} and user_id.isalnum()


def _label(text: str) -> str:
    return text if len(text) <= MAX_OPTION_TEXT else text[: MAX_OPTION_TEXT - 1] + "…"


def in_dnd(dnd_status: Mapping[str, Any], now: float) -> bool:
    """Whether a `dnd_status` (as in `dnd_updated_user` or `dnd.teamInfo`) means DND at `now`:
    inside the scheduled window `[next_dnd_start_ts, next_dnd_end_ts)` while DND is enabled, or
    snoozed until `snooze_endtime`."""
    scheduled = bool(dnd_status.get("dnd_enabled")) and (
        float(dnd_status.get("next_dnd_start_ts") or 0)
        <= now
        < float(dnd_status.get("next_dnd_end_ts") or 0)
    )
    snoozed = bool(dnd_status.get("snooze_enabled")) and now < float(
        dnd_status.get("snooze_endtime") or 0
    )
    return scheduled or snoozed


class Directory:
    """Teams and user groups with their members, and reps' Do Not Disturb state."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        slack: SlackGateway,
        *,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._slack = slack
        self._clock = clock
        self._team_ids: list[str] | None = None
        self._free_plan_logged: set[str] = set()

    async def _workspaces(self) -> list[str]:
        """The bot's workspace (asked of `auth.test` once), or with OAuth every installed one."""
        if self._slack.multi_workspace:
            return await self._slack.team_ids()
        if self._team_ids is None:
            self._team_ids = await self._slack.team_ids()
        return self._team_ids

    # --- Slack user groups ---------------------------------------------------------------

    async def refresh_usergroups(self) -> bool:
        """Replace the cached user groups of each workspace with Slack's current ones.

        Returns False if a workspace is on a free plan, where user groups do not exist: its
        cache is emptied and its routes use slackrouter teams. Other Slack errors keep the cache
        as it was: with one workspace they propagate, with many they are logged.
        """
        results = []
        for team_id in await self._workspaces():
            try:
                results.append(await self._refresh_usergroups_of(team_id))
            except SlackApiError as exc:
                if not self._slack.multi_workspace:
                    raise
                log.warning("user groups of %s not refreshed: %s", team_id, slack_error(exc))
        return all(results)

    async def _refresh_usergroups_of(self, team_id: str) -> bool:
        try:
            groups = await (await self._slack.for_team(team_id)).usergroups()
        except SlackApiError as exc:
            if slack_error(exc) not in PAID_PLAN_ERRORS:
                raise
            if team_id not in self._free_plan_logged:
                log.info(
                    "workspace %s has no user groups (%s, a free Slack plan): "
                    "use slackrouter teams to group reps",
                    team_id,
                    slack_error(exc),
                )
                self._free_plan_logged.add(team_id)
            groups = None
        now = self._clock()
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(delete(UserGroup).where(UserGroup.team_id == team_id))
                session.add_all(
                    UserGroup(
                        team_id=team_id,
                        id=group.id,
                        handle=group.handle,
                        name=group.name,
                        members=list(dict.fromkeys(group.members)),
                        refreshed_at=now,
                    )
                    for group in groups or ()
                )
        except IntegrityError:
            # Another replica refreshed the same groups at the same moment; its rows stand.
            log.debug("user groups of %s were refreshed concurrently", team_id)
        if groups is None:
            return False
        self._free_plan_logged.discard(team_id)
        return True

    async def team_members(
        self, session: AsyncSession, *, team_id: str, refs: Sequence[str]
    ) -> dict[str, tuple[str, ...]]:
        """Members of each route team: `S…` from the user group cache, `tm_…` from slackrouter
        teams. A ref that is unknown (or another workspace's) maps to `()`."""
        wanted = list(dict.fromkeys(refs))
        members: dict[str, tuple[str, ...]] = dict.fromkeys(wanted, ())
        team_refs = [ref for ref in wanted if ref.startswith(TEAM_PREFIX)]
        group_refs = [ref for ref in wanted if ref.startswith("S")]
        if team_refs:
            rows = await session.scalars(
                select(Team).where(Team.team_id == team_id, Team.id.in_(team_refs))
            )
            members.update((team.id, tuple(team.members)) for team in rows)
        if group_refs:
            groups = await session.scalars(
                select(UserGroup).where(UserGroup.team_id == team_id, UserGroup.id.in_(group_refs))
            )
            members.update((group.id, tuple(group.members)) for group in groups)
        return members

    async def team_options(self, *, team_id: str, query: str) -> list[tuple[str, str]]:
        """(ref, label) of the user groups (`@handle (Name)`) and slackrouter teams whose
        handle or name contains `query` (any case), for an external select: user groups by
        handle, then teams by name, at most 100."""
        needle = query.strip().casefold()
        async with self._sessions() as session:
            groups = sorted(
                await session.scalars(select(UserGroup).where(UserGroup.team_id == team_id)),
                key=lambda g: g.handle.casefold(),
            )
            teams = sorted(
                await session.scalars(select(Team).where(Team.team_id == team_id)),
                key=lambda t: t.name.casefold(),
            )
        options = [
            (group.id, _label(f"@{group.handle} ({group.name})"))
            for group in groups
            if needle in group.handle.casefold() or needle in group.name.casefold()
        ]
        options += [
            (team.id, _label(team.name)) for team in teams if needle in team.name.casefold()
        ]
        return options[:MAX_OPTIONS]

    # --- slackrouter teams ---------------------------------------------------------------

    async def create_team(self, *, team_id: str, name: str, members: Sequence[str]) -> Team:
        """A new slackrouter team; raises ValueError with a message for the admin."""
        clean_name, clean_members = validate_team(name, members)
        team = Team(
            id=TEAM_PREFIX + secrets.token_hex(6),
            team_id=team_id,
            name=clean_name,
            members=clean_members,
            created_at=self._clock(),
        )
        async with self._sessions() as session, session.begin():
            await _check_unique_name(session, team_id, clean_name, except_ref=None)
            session.add(team)
        return team

    async def update_team(
        self, *, team_id: str, team_ref: str, name: str, members: Sequence[str]
    ) -> Team:
        """Rename a team and set its members; raises TeamNotFound or ValueError."""
        clean_name, clean_members = validate_team(name, members)
        async with self._sessions() as session, session.begin():
            team = await session.scalar(
                select(Team).where(Team.team_id == team_id, Team.id == team_ref)
            )
            if team is None:
                raise TeamNotFound(f"team: {team_ref!r} does not exist (deleted meanwhile?)")
            await _check_unique_name(session, team_id, clean_name, except_ref=team_ref)
            team.name, team.members = clean_name, clean_members
        return team

    async def delete_team(self, *, team_id: str, team_ref: str) -> bool:
        """Delete a team and take it off every chatflow's route; False if it did not exist
        (the routes are cleaned all the same)."""
        async with self._sessions() as session, session.begin():
            team = await session.scalar(
                select(Team).where(Team.team_id == team_id, Team.id == team_ref)
            )
            if team is not None:
                await session.delete(team)
            for chatflow in await session.scalars(
                select(Chatflow).where(Chatflow.team_id == team_id)
            ):
                if team_ref in chatflow.route_teams:
                    # A new list: the JSON column only sees assignments, not in-place changes.
                    chatflow.route_teams = [r for r in chatflow.route_teams if r != team_ref]
        return team is not None

    async def list_teams(self, *, team_id: str) -> list[Team]:
        """The workspace's slackrouter teams by name."""
        async with self._sessions() as session:
            teams = await session.scalars(select(Team).where(Team.team_id == team_id))
            return sorted(teams, key=lambda t: (t.name.casefold(), t.id))

    # --- Do Not Disturb ------------------------------------------------------------------

    async def refresh_dnd(self, *, team_id: str, user_ids: Sequence[str]) -> int:
        """Ask Slack who of `user_ids` is in DND, 50 users a call, and store it on their `Rep`
        rows (created if missing). A failing call is logged and its users keep their old state.
        Returns the number of calls made."""
        wanted = sorted(set(user_ids))
        now = self._clock()
        found: dict[str, bool] = {}
        calls = 0
        for start in range(0, len(wanted), DND_BATCH):
            batch = wanted[start : start + DND_BATCH]
            calls += 1
            try:
                slack = await self._slack.for_team(team_id)
                found.update(await slack.dnd(batch, now=now.timestamp()))
            except SlackApiError as exc:
                log.warning(
                    "dnd.teamInfo failed for %d users of %s: %s",
                    len(batch),
                    team_id,
                    slack_error(exc),
                )
        if found:
            async with self._sessions() as session, session.begin():
                await repo.ensure_reps(session, team_id, found)
                await session.flush()
                for user_id, rep in (await repo.reps_by_id(session, team_id, found)).items():
                    # A `dnd_updated_user` event stored while the call was out is newer than
                    # the answer, which Slack may have made before that change.
                    if rep.dnd_checked_at is None or rep.dnd_checked_at <= now:
                        _store_dnd(rep, found[user_id], now)
        return calls

    async def dnd_updated(
        self, *, team_id: str, user_id: str, dnd_status: Mapping[str, Any]
    ) -> None:
        """Apply a `dnd_updated_user` event. Slack sends it for every member of the workspace,
        so only users who already have a `Rep` row are stored."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            rep = await session.get(Rep, (team_id, user_id))
            if rep is not None:
                _store_dnd(rep, in_dnd(dnd_status, now.timestamp()), now)


def _store_dnd(rep: Rep, dnd: bool, now: datetime) -> None:
    rep.dnd, rep.dnd_checked_at = dnd, now


def validate_team(name: str, members: Sequence[str]) -> tuple[str, list[str]]:
    """A team's name and members as stored; ValueError ("field: problem") when not valid."""
    clean_name = name.strip()
    if not clean_name:
        raise ValueError("name: must not be empty")
    if len(clean_name) > MAX_TEAM_NAME:
        raise ValueError(f"name: at most {MAX_TEAM_NAME} characters")
    bad = [user_id for user_id in members if not _is_user_id(user_id)]
    if bad:
        raise ValueError(f"members: {bad[0]!r} is not a Slack user id (U… or W…)")
    clean_members = list(dict.fromkeys(members))
    if len(clean_members) > MAX_TEAM_MEMBERS:
        raise ValueError(
            f"members: at most {MAX_TEAM_MEMBERS} people in a team ({len(clean_members)} given)"
        )
    return clean_name, clean_members


async def _check_unique_name(
    session: AsyncSession, team_id: str, name: str, *, except_ref: str | None
) -> None:
    """Team names are unique within a workspace, ignoring case, so that admins can tell them
    apart in a select."""
    for other in await session.scalars(select(Team).where(Team.team_id == team_id)):
        if other.id != except_ref and other.name.casefold() == name.casefold():
            raise ValueError(f"name: a team called {other.name!r} already exists")
