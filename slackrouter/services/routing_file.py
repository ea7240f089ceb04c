"""A workspace's routing as a YAML file, so that it can be reviewed, versioned and restored:
`slackrouter chatflows export FILE.yml` and `slackrouter chatflows apply FILE.yml`.

The file holds the workspace's slackrouter teams and its chatflows' settings, each with its id
(and a chatflow's public key), in a fixed order, so that exporting, applying and exporting again
gives the same file byte for byte. Apply checks chatflows with the same validation as the Slack
modal and teams with the same as the teams modal, reports every problem, and writes all or
nothing.

Signing secrets are never exported. Apply keeps a chatflow's secret; a chatflow it creates gets
a fresh secret (reported once) unless the file gives one as `signing_secret`, for restoring from
a secret store. Chatflows and teams that are in the database but not in the file are left as they
are and reported: deleting a chatflow deletes its conversations, so a file never does it.

A chatflow's widget look is its `widget:` mapping, checked by `widget_look.validate_look`; the
export leaves it out when the chatflow has no look of its own, and apply gives a chatflow without
one the default look, as it gives one without `hours:` no business hours.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import Chatflow, Team
from slackrouter.clock import Clock
from slackrouter.services.chatflow_admin import (
    PUBLIC_KEY,
    SECRET,
    ChatflowInvalid,
    ChatflowSettings,
    save_in,
    settings_of,
)
from slackrouter.services.directory import TEAM_PREFIX, validate_team
from slackrouter.services.widget_look import KEYS as LOOK_KEYS
from slackrouter.services.widget_look import InvalidLook, validate_look

VERSION = 1
CHATFLOW_ID = re.compile(r"cf_[A-Za-z0-9_-]{1,37}")
TEAM_ID = re.compile(TEAM_PREFIX + r"[A-Za-z0-9_-]{1,37}")
HEADER = """\
# slackrouter routing: `slackrouter chatflows apply` this file to set it.
# Signing secrets are not exported: apply keeps each chatflow's secret, and a chatflow it creates
# gets a new one (printed once) unless you add `signing_secret:` to it.
"""

CHATFLOW_KEYS = {
    "id",
    "name",
    "public_key",
    "signing_secret",
    "route",
    "channel",
    "offline_fallback",
    "rotate_to_owner",
    "assignment",
    "escalation_seconds",
    "notes",
    "messages",
    "hours",
    "widget",
}
NO_VALUE = "no value (in YAML, # starts a comment: write colours in quotes, '#1d4ed8')"


class RoutingFileInvalid(ValueError):
    """The file cannot be applied; `problems` lists each, naming where it is."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_in_file: list[str] = field(default_factory=list)
    new_secrets: dict[str, str] = field(default_factory=dict)  # chatflow name -> secret


# --- export ------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Readable YAML: lists of ids on one line, messages of several lines as blocks."""


def _text_style(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list_style(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    flat = all(isinstance(item, str) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)


_Dumper.add_representer(str, _text_style)
_Dumper.add_representer(list, _list_style)


def _hours_out(hours: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Business hours as people write them: `mon: ["09:00-17:00"]`."""
    if hours is None:
        return None
    days = hours.get("days") or {}
    return {
        "timezone": hours.get("timezone") or "UTC",
        "days": {day: [f"{start}-{end}" for start, end in pairs] for day, pairs in days.items()},
    }


def _hours_in(value: Any, where: str, problems: list[str]) -> Mapping[str, Any] | None:
    """The stored form of `_hours_out`'s; the chatflow validation checks the times."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("days", {}), Mapping):
        problems.append(f"{where}: expected timezone and days")
        return {}
    days: dict[str, list[list[str]]] = {}
    for day, intervals in (value.get("days") or {}).items():
        if not isinstance(intervals, list) or not all(
            isinstance(i, str) and i.count("-") == 1 for i in intervals
        ):
            problems.append(f"{where}.days.{day}: expected intervals like 09:00-17:00")
            continue
        days[str(day)] = [interval.split("-") for interval in intervals]
    return {**value, "days": days}


def _widget_out(widget: Mapping[str, Any]) -> dict[str, Any]:
    """The look's keys the chatflow sets, in the README table's order (any others after)."""
    order = [*LOOK_KEYS, *sorted(set(widget) - set(LOOK_KEYS))]
    return {key: widget[key] for key in order if key in widget}


def _look_in(widget: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The look to store, or the problems with it (`widget.KEY: why`), by `validate_look`."""
    try:
        return validate_look(widget), []
    except InvalidLook as invalid:
        # `color: #1d4ed8` unquoted is a key with no value: say why rather than "not a string".
        empty = {
            f"{key}: must be a string": key
            for key in LOOK_KEYS
            if key in widget and widget[key] is None
        }
        return {}, [
            f"widget.{empty[p]}: {NO_VALUE}" if p in empty else f"widget.{p}"
            for p in invalid.problems
        ]


def _chatflow_entry(chatflow: Chatflow) -> dict[str, Any]:
    settings = settings_of(chatflow)
    entry: dict[str, Any] = {
        "id": chatflow.id,
        "name": settings.name,
        "public_key": chatflow.public_key,
        "route": {"users": list(settings.route_users), "teams": list(settings.route_teams)},
        "channel": settings.channel_id,
        "offline_fallback": settings.offline_fallback,
        "rotate_to_owner": settings.rotate_to_owner,
        "assignment": settings.assignment,
        "escalation_seconds": settings.escalation_seconds,
        "notes": {"mode": settings.note_mode, "prefix": settings.note_prefix},
        "messages": {
            "welcome": settings.welcome_message,
            "away": settings.away_message,
            "out_of_hours": settings.out_of_hours_message,
        },
        "hours": _hours_out(settings.hours),
    }
    if chatflow.widget:
        entry["widget"] = _widget_out(chatflow.widget)
    return entry


def document(team_id: str, teams: Sequence[Team], chatflows: Sequence[Chatflow]) -> str:
    """The routing file's text for these teams and chatflows (sorted by name, then id)."""
    body = {
        "version": VERSION,
        "workspace": team_id,
        "teams": [
            {"id": t.id, "name": t.name, "members": list(t.members)}
            for t in sorted(teams, key=lambda t: (t.name.casefold(), t.id))
        ],
        "chatflows": [
            _chatflow_entry(c) for c in sorted(chatflows, key=lambda c: (c.name.casefold(), c.id))
        ],
    }
    return HEADER + yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


async def workspaces(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """The workspaces that have chatflows or teams."""
    async with sessions() as session:
        found = set(await session.scalars(select(Chatflow.team_id).distinct()))
        found.update(await session.scalars(select(Team.team_id).distinct()))
    return sorted(found)


async def export_routing(sessions: async_sessionmaker[AsyncSession], *, team_id: str) -> str:
    async with sessions() as session:
        teams = list(await session.scalars(select(Team).where(Team.team_id == team_id)))
        chatflows = list(await session.scalars(select(Chatflow).where(Chatflow.team_id == team_id)))
    return document(team_id, teams, chatflows)


# --- apply -------------------------------------------------------------------------------


def _mapping(value: Any, where: str, problems: list[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: expected a mapping")
        return {}
    return value


def _list(value: Any, where: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list")
        return []
    return value


def _text(value: Any, where: str, problems: list[str], *, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        problems.append(f"{where}: expected text")
        return default
    return value


def _strings(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    items = _list(value, where, problems)
    if not all(isinstance(item, str) for item in items):
        problems.append(f"{where}: expected a list of ids")
        return ()
    return tuple(items)


@dataclass(frozen=True)
class _ChatflowIn:
    where: str
    id: str | None
    public_key: str | None
    signing_secret: str | None
    settings: ChatflowSettings
    widget: Mapping[str, Any]


def _parse_chatflow(raw: Any, where: str, problems: list[str]) -> _ChatflowIn | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: expected a mapping")
        return None
    unknown = sorted(set(raw) - CHATFLOW_KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(map(str, unknown))}")
    defaults = ChatflowSettings(name="")
    route = _mapping(raw.get("route"), f"{where}.route", problems)
    notes = _mapping(raw.get("notes"), f"{where}.notes", problems)
    messages = _mapping(raw.get("messages"), f"{where}.messages", problems)
    for name, block, keys in (
        ("route", route, {"users", "teams"}),
        ("notes", notes, {"mode", "prefix"}),
        ("messages", messages, {"welcome", "away", "out_of_hours"}),
    ):
        extra = sorted(set(block) - keys)
        if extra:
            problems.append(f"{where}.{name}: unknown keys {', '.join(map(str, extra))}")
    escalation = raw.get("escalation_seconds", defaults.escalation_seconds)
    rotate = raw.get("rotate_to_owner", False)
    if not isinstance(rotate, bool):
        problems.append(f"{where}.rotate_to_owner: expected true or false")
    hours = _hours_in(raw.get("hours"), f"{where}.hours", problems)
    settings = ChatflowSettings(
        name=_text(raw.get("name"), f"{where}.name", problems, default=""),
        route_users=_strings(route.get("users"), f"{where}.route.users", problems),
        route_teams=_strings(route.get("teams"), f"{where}.route.teams", problems),
        channel_id=_text(raw.get("channel"), f"{where}.channel", problems, default="") or None,
        offline_fallback=_text(
            raw.get("offline_fallback"), f"{where}.offline_fallback", problems, default=""
        )
        or None,
        rotate_to_owner=rotate is True,
        assignment=_text(raw.get("assignment"), f"{where}.assignment", problems, default="all"),
        escalation_seconds=(
            escalation if isinstance(escalation, int) and not isinstance(escalation, bool) else -1
        ),
        note_mode=_text(notes.get("mode"), f"{where}.notes.mode", problems, default="prefix"),
        note_prefix=_text(
            notes.get("prefix"), f"{where}.notes.prefix", problems, default=defaults.note_prefix
        ),
        welcome_message=_text(
            messages.get("welcome"),
            f"{where}.messages.welcome",
            problems,
            default=defaults.welcome_message,
        ),
        away_message=_text(
            messages.get("away"),
            f"{where}.messages.away",
            problems,
            default=defaults.away_message,
        ),
        out_of_hours_message=_text(
            messages.get("out_of_hours"),
            f"{where}.messages.out_of_hours",
            problems,
            default=defaults.out_of_hours_message,
        ),
        hours=hours,
    )
    chatflow_id = raw.get("id")
    public_key = raw.get("public_key")
    secret = raw.get("signing_secret")
    if chatflow_id is not None and not (
        isinstance(chatflow_id, str) and CHATFLOW_ID.fullmatch(chatflow_id)
    ):
        problems.append(f"{where}.id: expected a chatflow id (cf_…)")
    if public_key is not None and not (
        isinstance(public_key, str) and PUBLIC_KEY.fullmatch(public_key)
    ):
        problems.append(f"{where}.public_key: expected a public key (pk_…)")
    if secret is not None and not (isinstance(secret, str) and SECRET.fullmatch(secret)):
        problems.append(f"{where}.signing_secret: expected 32 to 128 letters, digits, '-' or '_'")
    widget = _mapping(raw.get("widget"), f"{where}.widget", problems)
    return _ChatflowIn(where, chatflow_id, public_key, secret, settings, widget)


async def apply_routing(
    sessions: async_sessionmaker[AsyncSession], *, text: str, clock: Clock
) -> ApplyReport:
    """Make the database's routing what the file says (RoutingFileInvalid: nothing changed)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingFileInvalid([f"not valid YAML: {exc}"]) from None
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise RoutingFileInvalid(["expected a mapping with version, workspace, teams, chatflows"])
    unknown = sorted(set(raw) - {"version", "workspace", "teams", "chatflows"})
    if unknown:
        problems.append(f"unknown keys {', '.join(map(str, unknown))}")
    if raw.get("version") != VERSION:
        problems.append(f"version: expected {VERSION}")
    team_id = raw.get("workspace")
    if not (isinstance(team_id, str) and re.fullmatch(r"[TE][A-Z0-9]{2,20}", team_id)):
        raise RoutingFileInvalid([*problems, "workspace: expected a Slack workspace id (T…)"])
    teams_in = _list(raw.get("teams"), "teams", problems)
    chatflows_in = [
        parsed
        for position, entry in enumerate(_list(raw.get("chatflows"), "chatflows", problems))
        if (parsed := _parse_chatflow(entry, f"chatflows[{position}]", problems)) is not None
    ]
    report = ApplyReport()
    now = clock()
    async with sessions() as session, session.begin():
        await _apply_teams(session, team_id, teams_in, problems, now)
        await _apply_chatflows(session, team_id, chatflows_in, problems, report, now)
        if problems:
            raise RoutingFileInvalid(problems)  # leaving the block rolls everything back
    return report


async def _apply_teams(
    session: AsyncSession, team_id: str, entries: list[Any], problems: list[str], now: Any
) -> None:
    existing = {t.id: t for t in await session.scalars(select(Team).where(Team.team_id == team_id))}
    by_name = {t.name.casefold(): t for t in existing.values()}
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    for position, entry in enumerate(entries):
        where = f"teams[{position}]"
        if not isinstance(entry, Mapping) or not set(entry) <= {"id", "name", "members"}:
            problems.append(f"{where}: expected id, name and members")
            continue
        try:
            name, members = validate_team(
                str(entry.get("name") or ""), _strings(entry.get("members"), where, problems)
            )
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        ref = entry.get("id")
        if ref is not None and not (isinstance(ref, str) and TEAM_ID.fullmatch(ref)):
            problems.append(f"{where}.id: expected a team id (tm_…)")
            continue
        if name.casefold() in seen_names or (ref is not None and ref in seen_ids):
            problems.append(f"{where}: the team {name!r} is in the file twice")
            continue
        seen_names.add(name.casefold())
        team = existing.get(ref) if ref is not None else by_name.get(name.casefold())
        if team is None:
            if ref is not None and await session.get(Team, ref) is not None:
                problems.append(f"{where}.id: {ref} belongs to another workspace")
                continue
            team = Team(
                id=ref or TEAM_PREFIX + secrets.token_hex(6),
                team_id=team_id,
                created_at=now,
            )
            session.add(team)
        seen_ids.add(team.id)
        team.name, team.members = name, members
    await session.flush()


def _state(chatflow: Chatflow) -> tuple[Any, ...]:
    """What a file sets in a chatflow, to tell an updated one from an unchanged one."""
    return settings_of(chatflow), dict(chatflow.widget), chatflow.signing_secret


async def _apply_chatflows(
    session: AsyncSession,
    team_id: str,
    entries: list[_ChatflowIn],
    problems: list[str],
    report: ApplyReport,
    now: Any,
) -> None:
    existing = {
        c.id: c for c in await session.scalars(select(Chatflow).where(Chatflow.team_id == team_id))
    }
    by_name = {c.name.casefold(): c for c in existing.values()}
    names = [entry.settings.name.strip().casefold() for entry in entries]
    applied: set[str] = set()
    for entry, name in zip(entries, names, strict=True):
        label = f"{entry.where} ({entry.settings.name.strip() or 'no name'})"
        if names.count(name) > 1:
            problems.append(f"{label}: another chatflow in the file has this name")
            continue
        current = existing.get(entry.id) if entry.id else by_name.get(name)
        if current is None and entry.id is not None and await session.get(Chatflow, entry.id):
            problems.append(f"{label}: the id {entry.id} belongs to another workspace")
            continue
        if current is not None and entry.public_key not in (None, current.public_key):
            problems.append(f"{label}: public_key cannot change (slackrouter makes keys)")
            continue
        if current is None and entry.public_key is not None:
            taken = await session.scalar(
                select(Chatflow.id).where(Chatflow.public_key == entry.public_key)
            )
            if taken is not None:
                problems.append(f"{label}: another chatflow has the public key")
                continue
        before = _state(current) if current is not None else None
        look, wrong = _look_in(entry.widget)
        try:
            saved = await save_in(
                session,
                team_id=team_id,
                chatflow_id=current.id if current is not None else None,
                settings=entry.settings,
                now=now,
                new_id=entry.id,
                public_key=entry.public_key,
                signing_secret=entry.signing_secret,
            )
        except ChatflowInvalid as invalid:
            wrong = [f"{field}: {why}" for field, why in invalid.errors.items()] + wrong
        if wrong:  # with a bad look, what save_in changed is rolled back with the rest
            problems += [f"{label}: {why}" for why in wrong]
            continue
        saved.widget = look
        await session.flush()
        applied.add(saved.id)
        if current is None:
            report.created.append(saved.name)
            if entry.signing_secret is None:
                report.new_secrets[saved.name] = saved.signing_secret
        elif before != _state(saved):
            report.updated.append(saved.name)
        else:
            report.unchanged.append(saved.name)
    report.not_in_file = sorted(c.name for c in existing.values() if c.id not in applied)
