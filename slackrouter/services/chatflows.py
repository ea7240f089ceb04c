"""Create and list chatflows (the admin surfaces in Slack build on these)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow
from slackrouter.clock import Clock
from slackrouter.services.chatflow_admin import ChatflowInvalid, ChatflowSettings, validate
from slackrouter.services.widget_look import validate_look


@dataclass(frozen=True)
class ChatflowSpec:
    name: str
    route_users: tuple[str, ...]
    welcome_message: str | None = None
    away_message: str | None = None
    note_prefix: str | None = None
    widget: Mapping[str, str] = dataclasses.field(default_factory=dict)  # see widget_look


def _validate(spec: ChatflowSpec) -> None:
    """The rules of the admin modal (ChatflowInvalid, a ValueError, names each problem)."""
    given = {
        field: value
        for field in ("welcome_message", "away_message", "note_prefix")
        if (value := getattr(spec, field)) is not None
    }
    errors = validate(ChatflowSettings(name=spec.name, route_users=spec.route_users, **given))
    if errors:
        raise ChatflowInvalid(errors)


async def create_chatflow(
    sessions: async_sessionmaker[AsyncSession], *, team_id: str, spec: ChatflowSpec, clock: Clock
) -> Chatflow:
    """A new chatflow with a fresh public key and signing secret. ChatflowInvalid or InvalidLook
    (both ValueErrors) for settings the admin modal would refuse or a widget look not valid."""
    _validate(spec)
    widget = validate_look(spec.widget)
    chatflow = Chatflow(
        id="cf_" + secrets.token_hex(6),
        team_id=team_id,
        name=spec.name.strip(),
        public_key="pk_" + secrets.token_urlsafe(18),
        signing_secret=secrets.token_urlsafe(32),
        route_users=list(dict.fromkeys(spec.route_users)),
        widget=widget,
        created_at=clock(),
    )
    for field in ("welcome_message", "away_message", "note_prefix"):
        value = getattr(spec, field)
        if value is not None:
            setattr(chatflow, field, value)
    async with sessions() as session, session.begin():
        session.add(chatflow)
        await repo.ensure_reps(session, team_id, chatflow.route_users)
    return chatflow


async def list_chatflows(sessions: async_sessionmaker[AsyncSession]) -> Sequence[Chatflow]:
    async with sessions() as session:
        return list(await session.scalars(select(Chatflow).order_by(Chatflow.created_at)))
