"""The routing core's inputs and output: plain, immutable data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from slackrouter.routing.hours import WeeklyHours


class Presence(StrEnum):
    ACTIVE = "active"
    AWAY = "away"
    UNKNOWN = "unknown"


class AssignmentMode(StrEnum):
    ALL = "all"
    ROUND_ROBIN = "round_robin"


class Outcome(StrEnum):
    ROUTED = "routed"
    AWAY = "away"


class Rule(StrEnum):
    """Which routing rule produced a decision."""

    OWNER = "owner"  # the contact's owner is available: offered to them alone
    OWNER_UNAVAILABLE = "owner_unavailable"  # owner not available: emailed to the owner
    ROUTE = "route"  # offered to available candidates of the route
    NO_CANDIDATES = "no_candidates"  # the route names nobody who could take chats
    NOBODY_AVAILABLE = "nobody_available"  # candidates exist, none is available
    OUTSIDE_HOURS = "outside_hours"  # the chatflow's business hours are closed


class Unavailable(StrEnum):
    """Why a rep is not available; the first three also remove a rep from the candidates."""

    DEACTIVATED = "deactivated"
    BOT = "bot"
    EXCLUDED = "excluded"
    ALREADY_OFFERED = "already_offered"
    OPTED_OUT = "opted_out"
    DND = "dnd"
    AWAY = "away"
    UNKNOWN_PRESENCE = "unknown_presence"
    OUTSIDE_HOURS = "outside_hours"


INELIGIBLE: frozenset[Unavailable] = frozenset(
    {Unavailable.DEACTIVATED, Unavailable.BOT, Unavailable.EXCLUDED}
)
"""Reasons that make a user no candidate at all, rather than a candidate who is unavailable."""


@dataclass(frozen=True)
class RepState:
    user_id: str
    opted_in: bool = True
    presence: Presence = Presence.UNKNOWN
    dnd: bool = False
    deleted: bool = False
    is_bot: bool = False
    is_excluded: bool = False  # e.g. guests the workspace excludes
    last_assigned_at: datetime | None = None  # for round robin; None = never assigned


@dataclass(frozen=True)
class ChatflowRouting:
    route_users: tuple[str, ...] = ()
    route_teams: tuple[str, ...] = ()
    # team id -> member user ids, resolved outside the core; a team missing here has no members
    team_members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    assignment: AssignmentMode = AssignmentMode.ALL
    rotate_to_owner: bool = False
    offline_fallback: str | None = None  # user id emailed when nobody is available
    hours: WeeklyHours | None = None  # None = always open
    has_channel: bool = False


@dataclass(frozen=True)
class Contact:
    owner: str | None = None  # user id
    verified: bool = True  # matched by cookie token or a signed server call


@dataclass(frozen=True)
class RoutingRequest:
    chatflow: ChatflowRouting
    # states of every user id that may be relevant; a missing id counts as unknown presence
    reps: Mapping[str, RepState]
    now: datetime  # timezone-aware
    contact: Contact | None = None
    # reps already offered this chat, when escalating to the next available candidates
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("RoutingRequest.now must be timezone-aware")


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    rule: Rule
    notify: tuple[str, ...]  # reps to notify now; empty when away
    # the owner (owner unavailable) or the offline fallback (nobody available); None if no one
    email_to: str | None
    missed: bool  # away with nobody to email: keep as a missed chat (and post to the channel)
    candidates: tuple[str, ...]  # in route order, deduplicated, ineligible users removed
    available: tuple[str, ...]  # candidates that may be offered the chat, in route order
    unavailable: Mapping[str, Unavailable]  # why each other user looked at is not available
    assignment: AssignmentMode = AssignmentMode.ALL
    # the contact owner the owner rule looked at; with a route rule, the owner was ineligible
    # (deactivated, bot, excluded) and `unavailable` says which
    owner: str | None = None

    def explain(self, names: Mapping[str, str] | None = None) -> str:
        """One line for Slack context lines and logs: the rule, the candidates, who was
        available, and why the others were not. `names` maps user ids to display names;
        ids are written bare, never as `<@U…>`, so that the line pings nobody."""

        def who(user_id: str) -> str:
            return (names or {}).get(user_id, user_id)

        def people(user_ids: tuple[str, ...]) -> str:
            return ", ".join(who(u) for u in user_ids) or "nobody"

        reasons = ", ".join(
            f"{who(u)} {r.value.replace('_', ' ')}" for u, r in self.unavailable.items()
        )
        if self.rule is Rule.OWNER:
            return f"owner: offered to the contact's owner {who(self.notify[0])} alone"
        if self.rule is Rule.OWNER_UNAVAILABLE:
            return (
                f"owner_unavailable: the contact's owner is not available ({reasons}); "
                f"away message, chat emailed to {who(self.email_to or '')}"
            )
        headline = {
            Rule.ROUTE: f"route ({self.assignment.value}): offered to {people(self.notify)}",
            Rule.NO_CANDIDATES: "no_candidates: the route names nobody who can take chats",
            Rule.NOBODY_AVAILABLE: "nobody_available: no candidate is available",
            Rule.OUTSIDE_HOURS: "outside_hours: outside the chatflow's business hours",
        }[self.rule]
        parts = [headline]
        if self.owner is not None:
            parts.append(f"contact owner {who(self.owner)} skipped")
        parts.append(f"candidates: {people(self.candidates)}")
        parts.append(f"available: {people(self.available)}")
        if reasons:
            parts.append(f"not available: {reasons}")
        if self.outcome is Outcome.AWAY:
            parts.append(
                f"away message, chat emailed to offline fallback {who(self.email_to)}"
                if self.email_to is not None
                else "away message, no offline fallback: kept as a missed chat"
            )
        return "; ".join(parts)
