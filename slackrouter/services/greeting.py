"""What the widget shows before the visitor writes: who will answer, or the away message."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.clock import Clock
from slackrouter.routing import Outcome
from slackrouter.services.router import Router
from slackrouter.services.visitor_messages import Agent, UnknownChatflow, agent
from slackrouter.services.widget_look import WidgetLook, look_of


@dataclass(frozen=True)
class Greeting:
    status: str
    agents: tuple[Agent, ...]
    welcome_message: str
    away_message: str | None
    widget: WidgetLook


async def greet(
    sessions: async_sessionmaker[AsyncSession],
    router: Router,
    *,
    public_key: str,
    visitor_id: str | None,
    clock: Clock,
) -> Greeting:
    """A dry run of routing: nothing is stored and nobody is notified."""
    async with sessions() as session:
        chatflow = await repo.chatflow_by_key(session, public_key)
        if chatflow is None:
            raise UnknownChatflow(public_key)
        routed = await router.route(
            session,
            chatflow,
            visitor_id=visitor_id or "",
            verified_email=None,
            now=clock(),
            lookup_contact=bool(visitor_id),
        )
        decision = routed.decision
        # Read the rows before the rollback: it expires them, and once the session is closed
        # they cannot be loaded again.
        greeting = Greeting(
            status=decision.outcome.value,
            agents=tuple(agent(routed.reps[u]) for u in decision.notify if u in routed.reps)
            if decision.outcome is Outcome.ROUTED
            else (),
            welcome_message=chatflow.welcome_message,
            away_message=routed.away_message,
            widget=look_of(chatflow.widget),
        )
        await session.rollback()
    return greeting
