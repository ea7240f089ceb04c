"""Gather what a routing decision needs from the database, and ask the pure core to decide."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow
from slackrouter.adapters.db.models import Contact as ContactRow
from slackrouter.routing import (
    AssignmentMode,
    ChatflowRouting,
    Contact,
    Decision,
    Outcome,
    RepState,
    RoutingRequest,
    Rule,
    WeeklyHours,
    decide,
)
from slackrouter.services.availability import describe, rep_state
from slackrouter.services.contacts import Contacts
from slackrouter.services.directory import Directory

log = logging.getLogger(__name__)


def weekly_hours(chatflow: Chatflow) -> WeeklyHours | None:
    if not chatflow.hours:
        return None
    return WeeklyHours.from_mapping(
        chatflow.hours.get("days") or {}, timezone=chatflow.hours.get("timezone") or "UTC"
    )


def away_text(chatflow: Chatflow, decision: Decision, *, now: datetime) -> str:
    """What the visitor reads when nobody will answer now: outside business hours the
    out-of-hours message, whichever rule applied (an owned visitor's owner is closed too)."""
    hours = weekly_hours(chatflow)
    if decision.rule is Rule.OUTSIDE_HOURS or (hours is not None and not hours.is_open(now)):
        return chatflow.out_of_hours_message
    return chatflow.away_message


@dataclass
class RoutingCache:
    """What routing reads, kept for the chats routed in one transaction: the reps (so that
    each round-robin stamp is seen by the next chat), the route teams' members, the contacts
    of the visitors looked up beforehand, and what the reps give each chat: their states as
    routing sees them at `states_at` (made again for a rep round robin has stamped), their
    names, and each team's latest stamp. A busy site routes dozens of chats a batch over the
    same reps: made once, not for every chat. `stamped` holds the stamps given and not yet
    written (`write_stamps`)."""

    reps: dict[tuple[str, str], repo.RepRow] = field(default_factory=dict)
    members: dict[tuple[str, tuple[str, ...]], dict[str, tuple[str, ...]]] = field(
        default_factory=dict
    )
    contacts: dict[tuple[str, str], ContactRow | None] = field(default_factory=dict)
    states: dict[tuple[str, str], RepState] = field(default_factory=dict)
    states_at: datetime | None = None
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    latest: dict[str, datetime] = field(default_factory=dict)
    stamped: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def add(self, rep: repo.RepRow) -> None:
        self.reps[rep.team_id, rep.user_id] = rep
        if rep.name:
            self.names.setdefault(rep.team_id, {})[rep.user_id] = rep.name
        latest = self.latest.get(rep.team_id)
        if rep.last_assigned_at is not None and (latest is None or rep.last_assigned_at > latest):
            self.latest[rep.team_id] = rep.last_assigned_at

    def assigned(self, team_id: str, reps: Iterable[repo.RepRow], now: datetime) -> None:
        """Stamp `reps` as given a chat now.

        The stamps only ever grow: a request that read the clock before it waited for the
        chatflow's lock (or ran on a replica whose clock lags) must not make its rep look less
        recently assigned than the reps assigned before it, or that rep would be next again."""
        latest = self.latest.get(team_id)
        stamp = now if latest is None or now > latest else latest + timedelta(microseconds=1)
        for rep in reps:
            rep.last_assigned_at = self.stamped[team_id, rep.user_id] = stamp
            self.states.pop((team_id, rep.user_id), None)
            self.latest[team_id] = stamp

    async def write_stamps(self, session: AsyncSession) -> None:
        """Write the stamps given since the last write, in one statement."""
        await repo.stamp_reps(session, self.take_stamps())

    def take_stamps(self) -> dict[tuple[str, str], datetime]:
        """The stamps given since the last write, for the caller to write."""
        stamps, self.stamped = self.stamped, {}
        return stamps


@dataclass(frozen=True)
class Routed:
    decision: Decision
    reps: dict[str, repo.RepRow]
    contact: ContactRow | None
    away_message: str | None
    cache: RoutingCache
    team_id: str

    @property
    def explanation(self) -> str:
        return self.decision.explain(self.cache.names.get(self.team_id))

    def mark_assigned(self, notify: tuple[str, ...], now: datetime) -> None:
        """Round robin's memory: who got a chat last, so the next goes to someone else. Kept
        in the cache until `RoutingCache.write_stamps` (or `assign`) writes it."""
        reps = [self.reps[user_id] for user_id in notify if user_id in self.reps]
        self.cache.assigned(self.team_id, reps, now)

    async def assign(self, session: AsyncSession, notify: tuple[str, ...], now: datetime) -> None:
        """`mark_assigned`, written at once."""
        self.mark_assigned(notify, now)
        await self.cache.write_stamps(session)


class Router:
    def __init__(self, directory: Directory, contacts: Contacts, *, max_age: float) -> None:
        self._directory = directory
        self._contacts = contacts
        self._max_age = timedelta(seconds=max_age)

    async def look_up_contacts(
        self,
        session: AsyncSession,
        cache: RoutingCache,
        team_id: str,
        visitors: list[tuple[str, str | None]],
    ) -> None:
        """Find the contacts of visitors about to be routed, all at once, into `cache`."""
        found = await self._contacts.find_for_visitors(session, team_id=team_id, visitors=visitors)
        cache.contacts.update(((team_id, v), contact) for v, contact in found.items())

    def _states(
        self, cache: RoutingCache, team_id: str, reps: dict[str, repo.RepRow], now: datetime
    ) -> dict[str, RepState]:
        """The reps' availability snapshot, each rep's state made once per batch."""
        if cache.states_at != now:
            cache.states.clear()
            cache.states_at = now
        states = {}
        for user_id, rep in reps.items():
            state = cache.states.get((team_id, user_id))
            if state is None:
                state = rep_state(rep, now=now, max_age=self._max_age)
                cache.states[team_id, user_id] = state
            states[user_id] = state
        return states

    async def route(
        self,
        session: AsyncSession,
        chatflow: Chatflow,
        *,
        visitor_id: str,
        verified_email: str | None,
        now: datetime,
        exclude: Iterable[str] = (),
        contact: ContactRow | None = None,
        lookup_contact: bool = True,
        cache: RoutingCache | None = None,
    ) -> Routed:
        """Decide who gets a chat now, from cached presence, DND, teams and the contact."""
        cache = cache or RoutingCache()
        team_id = chatflow.team_id
        refs = (team_id, tuple(chatflow.route_teams))
        if refs not in cache.members:
            cache.members[refs] = await self._directory.team_members(
                session, team_id=team_id, refs=chatflow.route_teams
            )
        members = cache.members[refs]
        if contact is None and lookup_contact:
            if (team_id, visitor_id) in cache.contacts:
                contact = cache.contacts[team_id, visitor_id]
            else:
                contact = await self._contacts.find_for_visitor(
                    session, team_id=team_id, visitor_id=visitor_id, verified_email=verified_email
                )
        user_ids = set(chatflow.route_users).union(*members.values())
        if contact is not None and contact.owner_user_id:
            user_ids.add(contact.owner_user_id)
        missing = [user_id for user_id in user_ids if (team_id, user_id) not in cache.reps]
        if missing:
            for rep in (await repo.rep_rows_by_id(session, team_id, missing)).values():
                cache.add(rep)
        reps = {u: cache.reps[team_id, u] for u in user_ids if (team_id, u) in cache.reps}
        request = RoutingRequest(
            chatflow=ChatflowRouting(
                route_users=tuple(chatflow.route_users),
                route_teams=tuple(chatflow.route_teams),
                team_members=members,
                assignment=AssignmentMode(chatflow.assignment),
                rotate_to_owner=chatflow.rotate_to_owner,
                offline_fallback=chatflow.offline_fallback,
                hours=weekly_hours(chatflow),
                has_channel=chatflow.channel_id is not None,
            ),
            reps=self._states(cache, team_id, reps, now),
            now=now,
            contact=Contact(owner=contact.owner_user_id) if contact is not None else None,
            exclude=frozenset(exclude),
        )
        decision = decide(request)
        if log.isEnabledFor(logging.INFO):  # describing every rep's presence is not free
            log.info(
                "routing chatflow=%s team=%s outcome=%s rule=%s notify=%s presence=[%s]",
                chatflow.id,
                chatflow.team_id,
                decision.outcome.value,
                decision.rule.value,
                ",".join(decision.notify) or "-",
                describe(reps.values(), now=now),
            )
        away = (
            None if decision.outcome is Outcome.ROUTED else away_text(chatflow, decision, now=now)
        )
        return Routed(
            decision=decision,
            reps=reps,
            contact=contact,
            away_message=away,
            cache=cache,
            team_id=team_id,
        )
