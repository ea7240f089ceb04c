"""What the Slack surfaces show, read from the database: who of each chatflow's route is
available now and why the others are not (`/chatrouting status`, the admins' App Home), and a
person's chats for their App Home. Reads only; the blocks are built elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import Chatflow, Conversation, Rep, SlackThread, Team, UserGroup
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.clock import Clock
from slackrouter.routing import Unavailable, availability
from slackrouter.services.availability import rep_state
from slackrouter.services.chatflow_admin import ChatflowSettings, settings_of
from slackrouter.services.failed_deliveries import FailedDelivery, failed_deliveries
from slackrouter.services.router import weekly_hours

HOME_CHATS = 10  # chats listed per App Home section; the rest are counted
HOME_FAILED = 10  # failed deliveries listed on an admin's App Home
HOME_CHATFLOWS = 15
OPEN_CHATS_READ = 2000  # the newest open chats of a workspace that the App Home looks at


@dataclass(frozen=True)
class RouteStatus:
    """One chatflow's route now: who may be offered a chat, and why each other person may not."""

    chatflow_id: str
    name: str
    available: tuple[str, ...]
    unavailable: tuple[tuple[str, Unavailable], ...]


@dataclass(frozen=True)
class ChatflowLine:
    chatflow_id: str
    settings: ChatflowSettings


@dataclass(frozen=True)
class ChatSummary:
    conversation_id: str
    visitor_name: str | None
    chatflow_name: str
    state: str  # yours | waiting | missed | emailed
    link: str | None  # the thread in Slack, where there is one
    explanation: str
    created_at: datetime


@dataclass(frozen=True)
class AdminOverview:
    chatflows: tuple[ChatflowLine, ...]
    chatflow_total: int
    team_names: Mapping[str, str]
    available: tuple[str, ...]
    routed_total: int  # people on some route, available or not
    missed: tuple[ChatSummary, ...]
    missed_total: int
    failed: tuple[FailedDelivery, ...] = ()
    failed_total: int = 0


@dataclass(frozen=True)
class HomeOverview:
    user_id: str
    opted_in: bool
    presence: str
    dnd: bool
    chats: tuple[ChatSummary, ...]
    chats_total: int
    missed: tuple[ChatSummary, ...]
    missed_total: int
    admin: AdminOverview | None


def is_missed(conversation: Conversation) -> bool:
    """Nobody took it and nobody is being offered it any more: routed away at once, or no one
    answered before the last escalation."""
    return (
        conversation.status == "open"
        and conversation.assignee is None
        and (
            conversation.routing_outcome != "routed" or bool(conversation.routing.get("escalated"))
        )
    )


def permalink(workspace_url: str, channel: str, ts: str) -> str:
    """A message's address in Slack (the form `chat.getPermalink` answers), built without a call
    per message."""
    return f"{workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"


class Overview:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        slack: SlackGateway,
        *,
        clock: Clock,
        max_age: float,
    ) -> None:
        self._sessions = sessions
        self._slack = slack
        self._clock = clock
        self._max_age = timedelta(seconds=max_age)
        self._workspace_urls: dict[str, str] = {}

    async def routes(self, *, team_id: str) -> list[RouteStatus]:
        """Each chatflow of the workspace, by name, with who of its route is available now."""
        now = self._clock()
        async with self._sessions() as session:
            chatflows = await _chatflows(session, team_id)
            members = await _members(session, team_id)
            people = {u for c in chatflows for u in _route(c, members)}
            reps = await _reps(session, team_id, people)
        states = {u: rep_state(rep, now=now, max_age=self._max_age) for u, rep in reps.items()}
        statuses = []
        for chatflow in chatflows:
            hours = weekly_hours(chatflow)
            available: list[str] = []
            unavailable: list[tuple[str, Unavailable]] = []
            for user_id in _route(chatflow, members):
                why = availability(states.get(user_id), now=now, hours=hours)
                if why is None:
                    available.append(user_id)
                else:
                    unavailable.append((user_id, why))
            statuses.append(
                RouteStatus(chatflow.id, chatflow.name, tuple(available), tuple(unavailable))
            )
        return statuses

    async def home(self, *, team_id: str, user_id: str, admin: bool) -> HomeOverview:
        """What `user_id`'s App Home shows; `admin` adds the workspace's routing."""
        now = self._clock()
        url = await self._url(team_id)
        async with self._sessions() as session:
            rep = await session.get(Rep, (team_id, user_id))
            chatflows = await _chatflows(session, team_id)
            names = {c.id: c.name for c in chatflows}
            conversations = list(
                await session.scalars(
                    select(Conversation)
                    .where(Conversation.team_id == team_id, Conversation.status == "open")
                    .order_by(Conversation.created_at.desc())
                    .limit(OPEN_CHATS_READ)
                )
            )
            threads = await _threads(session, [c.id for c in conversations])
            members = await _members(session, team_id) if admin else {}
            routed = {u for c in chatflows for u in _route(c, members)} if admin else set()
            reps = await _reps(session, team_id, routed) if admin else {}
            failed, failed_total = (
                await failed_deliveries(session, team_id=team_id, limit=HOME_FAILED)
                if admin
                else ([], 0)
            )

        def summary(conversation: Conversation, state: str) -> ChatSummary:
            # A link the viewer can open: their own DM thread, or the chatflow's channel thread.
            places = [
                t
                for t in threads.get(conversation.id, [])
                if t.channel_id and t.thread_ts and t.rep_user_id in (user_id, None)
            ]
            places.sort(key=lambda t: t.rep_user_id is None)
            link = permalink(url, places[0].channel_id, places[0].thread_ts) if places else None
            return ChatSummary(
                conversation_id=conversation.id,
                visitor_name=conversation.visitor_name,
                chatflow_name=names.get(conversation.chatflow_id, "?"),
                state=state,
                link=link,
                explanation=str(conversation.routing.get("explanation") or ""),
                created_at=conversation.created_at,
            )

        yours, waiting, missed = [], [], []
        for conversation in conversations:
            offered = any(t.rep_user_id == user_id for t in threads.get(conversation.id, []))
            if conversation.assignee == user_id:
                yours.append(summary(conversation, "yours"))
            elif is_missed(conversation):
                if conversation.routing.get("email_to") == user_id:
                    missed.append(summary(conversation, "emailed"))
                elif offered:
                    missed.append(summary(conversation, "missed"))
            elif conversation.assignee is None and offered:
                waiting.append(summary(conversation, "waiting"))
        chats = yours + waiting
        admin_part = None
        if admin:
            everyone_missed = [summary(c, "missed") for c in conversations if is_missed(c)]
            available = sorted(
                u
                for u in routed
                if availability(
                    rep_state(reps[u], now=now, max_age=self._max_age) if u in reps else None,
                    now=now,
                    hours=None,
                )
                is None
            )
            admin_part = AdminOverview(
                chatflows=tuple(
                    ChatflowLine(c.id, settings_of(c)) for c in chatflows[:HOME_CHATFLOWS]
                ),
                chatflow_total=len(chatflows),
                team_names=await self.team_names(team_id=team_id),
                available=tuple(available),
                routed_total=len(routed),
                missed=tuple(everyone_missed[:HOME_CHATS]),
                missed_total=len(everyone_missed),
                failed=tuple(failed),
                failed_total=failed_total,
            )
        return HomeOverview(
            user_id=user_id,
            opted_in=rep.opted_in if rep is not None else True,
            presence=rep.presence if rep is not None else "unknown",
            dnd=rep.dnd if rep is not None else False,
            chats=tuple(chats[:HOME_CHATS]),
            chats_total=len(chats),
            missed=tuple(missed[:HOME_CHATS]),
            missed_total=len(missed),
            admin=admin_part,
        )

    async def chatflow_list(self, *, team_id: str) -> tuple[list[ChatflowLine], dict[str, str]]:
        """Every chatflow of the workspace by name, and the labels of the teams they route to."""
        async with self._sessions() as session:
            chatflows = await _chatflows(session, team_id)
        lines = [ChatflowLine(c.id, settings_of(c)) for c in chatflows]
        return lines, await self.team_names(team_id=team_id)

    async def team_names(self, *, team_id: str) -> dict[str, str]:
        """Labels of the workspace's user groups (`@handle`) and slackrouter teams, by ref."""
        async with self._sessions() as session:
            teams = await session.scalars(select(Team).where(Team.team_id == team_id))
            groups = await session.scalars(select(UserGroup).where(UserGroup.team_id == team_id))
            return {
                **{g.id: f"@{g.handle}" for g in groups},
                **{t.id: t.name for t in teams},
            }

    async def _url(self, team_id: str) -> str:
        if team_id not in self._workspace_urls:
            slack = await self._slack.for_team(team_id)
            self._workspace_urls[team_id] = await slack.workspace_url()
        return self._workspace_urls[team_id]


async def _chatflows(session: AsyncSession, team_id: str) -> list[Chatflow]:
    rows = await session.scalars(select(Chatflow).where(Chatflow.team_id == team_id))
    return sorted(rows, key=lambda c: (c.name.casefold(), c.id))


async def _members(session: AsyncSession, team_id: str) -> dict[str, tuple[str, ...]]:
    """Every team's and user group's members, by ref: one query each, not one per chatflow."""
    teams = await session.scalars(select(Team).where(Team.team_id == team_id))
    groups = await session.scalars(select(UserGroup).where(UserGroup.team_id == team_id))
    return {
        **{g.id: tuple(g.members) for g in groups},
        **{t.id: tuple(t.members) for t in teams},
    }


def _route(chatflow: Chatflow, members: Mapping[str, Sequence[str]]) -> list[str]:
    """Route users, then members of route teams, each once (the routing core's order)."""
    team_members = (m for ref in chatflow.route_teams for m in members.get(ref, ()))
    return list(dict.fromkeys((*chatflow.route_users, *team_members)))


async def _reps(session: AsyncSession, team_id: str, user_ids: Iterable[str]) -> dict[str, Rep]:
    rows = await session.scalars(select(Rep).where(Rep.team_id == team_id))
    wanted = set(user_ids)
    return {rep.user_id: rep for rep in rows if rep.user_id in wanted}


async def _threads(
    session: AsyncSession, conversation_ids: Sequence[str]
) -> dict[str, list[SlackThread]]:
    found: dict[str, list[SlackThread]] = {}
    for start in range(0, len(conversation_ids), 500):
        rows = await session.scalars(
            select(SlackThread)
            .where(SlackThread.conversation_id.in_(conversation_ids[start : start + 500]))
            .order_by(SlackThread.id)
        )
        for thread in rows:
            found.setdefault(thread.conversation_id, []).append(thread)
    return found
