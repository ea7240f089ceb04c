"""A chatflow's settings as admins edit them, in the Slack modal or in a routing file
(`slackrouter chatflows apply`): one validation and one save for both.

`validate` is pure and answers every problem at once, keyed by field, so that the modal can show
each next to its input; `check` adds what needs the database (teams that exist, a name no other
chatflow has). Nothing is written unless both find nothing.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Team
from slackrouter.clock import Clock
from slackrouter.routing import WeeklyHours
from slackrouter.services.directory import TEAM_PREFIX

ASSIGNMENTS = ("all", "round_robin")
NOTE_MODES = ("prefix", "reverse")
MAX_NAME = 200
MAX_MESSAGE = 3000  # what the modal's text inputs accept
MAX_PREFIX = 20
MAX_ROUTE_TEAMS = 100  # what a multi-select shows as chosen
MIN_ESCALATION, MAX_ESCALATION = 1, 86_400
USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,20}")
USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,20}")
PUBLIC_KEY = re.compile(r"pk_[A-Za-z0-9_-]{8,61}")
SECRET = re.compile(r"[A-Za-z0-9_-]{32,128}")

FIELDS = (
    "name",
    "route",
    "channel_id",
    "offline_fallback",
    "rotate_to_owner",
    "assignment",
    "escalation_seconds",
    "note_mode",
    "note_prefix",
    "welcome_message",
    "away_message",
    "out_of_hours_message",
    "hours",
)
"""The keys of validation errors, in the order an admin reads the settings."""


def _default(column: str) -> Any:
    default = Chatflow.__table__.c[column].default
    assert default is not None
    return default.arg


@dataclass(frozen=True)
class ChatflowSettings:
    """Everything an admin decides about a chatflow (its keys and look excepted)."""

    name: str
    route_users: tuple[str, ...] = ()
    route_teams: tuple[str, ...] = ()  # S… user groups and tm_… slackrouter teams
    channel_id: str | None = None  # set: chats are posted in this channel, not in DMs
    offline_fallback: str | None = None
    rotate_to_owner: bool = False
    assignment: str = "all"
    escalation_seconds: int = _default("escalation_seconds")
    note_mode: str = "prefix"
    note_prefix: str = _default("note_prefix")
    welcome_message: str = _default("welcome_message")
    away_message: str = _default("away_message")
    out_of_hours_message: str = _default("out_of_hours_message")
    hours: Mapping[str, Any] | None = None  # {"timezone": ..., "days": {"mon": [[from, to]]}}


def settings_of(chatflow: Chatflow) -> ChatflowSettings:
    return ChatflowSettings(
        name=chatflow.name,
        route_users=tuple(chatflow.route_users),
        route_teams=tuple(chatflow.route_teams),
        channel_id=chatflow.channel_id,
        offline_fallback=chatflow.offline_fallback,
        rotate_to_owner=chatflow.rotate_to_owner,
        assignment=chatflow.assignment,
        escalation_seconds=chatflow.escalation_seconds,
        note_mode=chatflow.note_mode,
        note_prefix=chatflow.note_prefix,
        welcome_message=chatflow.welcome_message,
        away_message=chatflow.away_message,
        out_of_hours_message=chatflow.out_of_hours_message,
        hours=chatflow.hours,
    )


class ChatflowInvalid(ValueError):
    """The settings cannot be saved; `errors` maps a field (see FIELDS) to what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors.items()))
        self.errors = dict(errors)


class ChatflowNotFound(LookupError):
    """No such chatflow in this workspace (deleted meanwhile, or another workspace's)."""


def _message_problem(text: str) -> str | None:
    if not text.strip():
        return "must not be empty"
    if len(text) > MAX_MESSAGE:
        return f"at most {MAX_MESSAGE:,} characters ({len(text):,} given)"
    return None


def _hours_problem(hours: Mapping[str, Any]) -> str | None:
    if not isinstance(hours, Mapping) or not set(hours) <= {"timezone", "days"}:
        return "expected {timezone: ..., days: {mon: [[09:00, 17:00]], ...}}"
    days = hours.get("days") or {}
    timezone = hours.get("timezone") or "UTC"
    if not isinstance(days, Mapping) or not isinstance(timezone, str):
        return "expected {timezone: ..., days: {mon: [[09:00, 17:00]], ...}}"
    try:
        intervals = {day: [tuple(pair) for pair in pairs] for day, pairs in days.items()}
        if any(len(pair) != 2 for pairs in intervals.values() for pair in pairs):
            return "each interval is a pair of times, [from, to]"
        WeeklyHours.from_mapping(intervals, timezone=timezone)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def validate(settings: ChatflowSettings) -> dict[str, str]:
    """Every problem with the settings, keyed by field; empty when they can be saved."""
    errors: dict[str, str] = {}
    name = settings.name.strip()
    if not name:
        errors["name"] = "must not be empty"
    elif len(name) > MAX_NAME:
        errors["name"] = f"at most {MAX_NAME} characters"
    bad_user = next((u for u in settings.route_users if not USER_ID.fullmatch(u)), None)
    bad_team = next(
        (
            t
            for t in settings.route_teams
            if not (USERGROUP_ID.fullmatch(t) or t.startswith(TEAM_PREFIX))
        ),
        None,
    )
    if bad_user is not None:
        errors["route"] = f"{bad_user!r} is not a Slack user id (U… or W…)"
    elif bad_team is not None:
        errors["route"] = f"{bad_team!r} is neither a user group (S…) nor a team (tm_…)"
    elif len(set(settings.route_teams)) > MAX_ROUTE_TEAMS:
        errors["route"] = f"at most {MAX_ROUTE_TEAMS} teams"
    elif not (
        settings.route_users
        or settings.route_teams
        or settings.offline_fallback
        or settings.channel_id
    ):
        errors["route"] = (
            "route chats to at least one person or team (or set an offline fallback or a "
            "channel, so that chats are not lost)"
        )
    if settings.channel_id is not None and not CHANNEL_ID.fullmatch(settings.channel_id):
        errors["channel_id"] = f"{settings.channel_id!r} is not a channel id (C… or G…)"
    if settings.offline_fallback is not None and not USER_ID.fullmatch(settings.offline_fallback):
        errors["offline_fallback"] = f"{settings.offline_fallback!r} is not a Slack user id"
    if settings.assignment not in ASSIGNMENTS:
        errors["assignment"] = f"one of {', '.join(ASSIGNMENTS)}"
    if not (
        isinstance(settings.escalation_seconds, int)
        and MIN_ESCALATION <= settings.escalation_seconds <= MAX_ESCALATION
    ):
        errors["escalation_seconds"] = (
            f"a whole number of seconds from {MIN_ESCALATION} to {MAX_ESCALATION:,}"
        )
    if settings.note_mode not in NOTE_MODES:
        errors["note_mode"] = f"one of {', '.join(NOTE_MODES)}"
    if not settings.note_prefix.strip():
        errors["note_prefix"] = "must not be empty"
    elif len(settings.note_prefix) > MAX_PREFIX:
        errors["note_prefix"] = f"at most {MAX_PREFIX} characters"
    for field in ("welcome_message", "away_message", "out_of_hours_message"):
        problem = _message_problem(getattr(settings, field))
        if problem is not None:
            errors[field] = problem
    if settings.hours is not None:
        problem = _hours_problem(settings.hours)
        if problem is not None:
            errors["hours"] = problem
    return errors


async def check(
    session: AsyncSession, *, team_id: str, chatflow_id: str | None, settings: ChatflowSettings
) -> dict[str, str]:
    """`validate`, and what needs the database: slackrouter teams that exist in this
    workspace, and a name (ignoring case) that no other chatflow of the workspace has."""
    errors = validate(settings)
    team_refs = [ref for ref in settings.route_teams if ref.startswith(TEAM_PREFIX)]
    if "route" not in errors and team_refs:
        known = set(
            await session.scalars(
                select(Team.id).where(Team.team_id == team_id, Team.id.in_(team_refs))
            )
        )
        missing = [ref for ref in team_refs if ref not in known]
        if missing:
            errors["route"] = f"the team {missing[0]!r} does not exist (deleted meanwhile?)"
    if "name" not in errors:
        wanted = settings.name.strip().casefold()
        for other in await session.scalars(select(Chatflow).where(Chatflow.team_id == team_id)):
            if other.id != chatflow_id and other.name.casefold() == wanted:
                errors["name"] = f"a chatflow called {other.name!r} already exists"
                break
    return {field: errors[field] for field in FIELDS if field in errors}


def _apply(chatflow: Chatflow, settings: ChatflowSettings) -> None:
    chatflow.name = settings.name.strip()
    # New lists and dicts: JSON columns only see assignments, not in-place changes.
    chatflow.route_users = list(dict.fromkeys(settings.route_users))
    chatflow.route_teams = list(dict.fromkeys(settings.route_teams))
    chatflow.channel_id = settings.channel_id
    chatflow.offline_fallback = settings.offline_fallback
    chatflow.rotate_to_owner = settings.rotate_to_owner
    chatflow.assignment = settings.assignment
    chatflow.escalation_seconds = settings.escalation_seconds
    chatflow.note_mode = settings.note_mode
    chatflow.note_prefix = settings.note_prefix
    chatflow.welcome_message = settings.welcome_message
    chatflow.away_message = settings.away_message
    chatflow.out_of_hours_message = settings.out_of_hours_message
    chatflow.hours = dict(settings.hours) if settings.hours is not None else None


async def save_in(
    session: AsyncSession,
    *,
    team_id: str,
    chatflow_id: str | None,
    settings: ChatflowSettings,
    now: datetime,
    new_id: str | None = None,
    public_key: str | None = None,
    signing_secret: str | None = None,
) -> Chatflow:
    """Create (`chatflow_id` None) or update a chatflow inside the caller's transaction; raises
    ChatflowInvalid or ChatflowNotFound. A new chatflow gets `new_id`, `public_key` and
    `signing_secret` when given (restoring from a routing file), fresh ones otherwise."""
    errors = await check(session, team_id=team_id, chatflow_id=chatflow_id, settings=settings)
    if errors:
        raise ChatflowInvalid(errors)
    if chatflow_id is None:
        chatflow = Chatflow(
            id=new_id or "cf_" + secrets.token_hex(6),
            team_id=team_id,
            public_key=public_key or "pk_" + secrets.token_urlsafe(18),
            signing_secret=signing_secret or secrets.token_urlsafe(32),
            created_at=now,
        )
        session.add(chatflow)
    else:
        chatflow = await _get(session, team_id, chatflow_id)
        if signing_secret is not None:
            chatflow.signing_secret = signing_secret
    _apply(chatflow, settings)
    fallback = [settings.offline_fallback] if settings.offline_fallback else []
    await repo.ensure_reps(session, team_id, [*settings.route_users, *fallback])
    return chatflow


async def _get(session: AsyncSession, team_id: str, chatflow_id: str) -> Chatflow:
    chatflow = await session.get(Chatflow, chatflow_id)
    if chatflow is None or chatflow.team_id != team_id:
        raise ChatflowNotFound(f"chatflow {chatflow_id!r} does not exist (deleted meanwhile?)")
    return chatflow


class ChatflowAdmin:
    """The admin surfaces' use cases on chatflows; callers check that the user is an admin."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def get(self, *, team_id: str, chatflow_id: str) -> Chatflow:
        async with self._sessions() as session:
            return await _get(session, team_id, chatflow_id)

    async def save(
        self, *, team_id: str, chatflow_id: str | None, changes: Mapping[str, Any]
    ) -> Chatflow:
        """Create a chatflow (`chatflow_id` None: defaults, then `changes`) or change some
        settings of one and keep the others, since the modal shows only some of them.
        Raises ChatflowInvalid or ChatflowNotFound."""
        async with self._sessions() as session, session.begin():
            if chatflow_id is None:
                current = ChatflowSettings(name="")
            else:
                current = settings_of(await _get(session, team_id, chatflow_id))
            return await save_in(
                session,
                team_id=team_id,
                chatflow_id=chatflow_id,
                settings=dataclasses.replace(current, **changes),
                now=self._clock(),
            )

    async def rotate_secret(self, *, team_id: str, chatflow_id: str) -> Chatflow:
        """A new signing secret; the old one stops working at once."""
        async with self._sessions() as session, session.begin():
            chatflow = await _get(session, team_id, chatflow_id)
            chatflow.signing_secret = secrets.token_urlsafe(32)
            return chatflow
