"""The routing decision for a visitor's first message (DESIGN.md, "Routing rules")."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType

from slackrouter.routing.hours import WeeklyHours
from slackrouter.routing.model import (
    INELIGIBLE,
    AssignmentMode,
    Decision,
    Outcome,
    Presence,
    RepState,
    RoutingRequest,
    Rule,
    Unavailable,
)


def availability(
    rep: RepState | None, *, now: datetime, hours: WeeklyHours | None
) -> Unavailable | None:
    """Why `rep` cannot take a chat now, or None when available.

    Available = opted in AND presence active AND not in Do Not Disturb AND within the chatflow's
    business hours. A rep with no known state (None) has unknown presence. When several reasons
    hold, the most specific to the rep is given: ineligibility first, business hours last.
    """
    if rep is None:
        return Unavailable.UNKNOWN_PRESENCE
    if rep.deleted:
        return Unavailable.DEACTIVATED
    if rep.is_bot:
        return Unavailable.BOT
    if rep.is_excluded:
        return Unavailable.EXCLUDED
    if not rep.opted_in:
        return Unavailable.OPTED_OUT
    if rep.dnd:
        return Unavailable.DND
    if rep.presence is Presence.AWAY:
        return Unavailable.AWAY
    if rep.presence is not Presence.ACTIVE:
        return Unavailable.UNKNOWN_PRESENCE
    if hours is not None and not hours.is_open(now):
        return Unavailable.OUTSIDE_HOURS
    return None


def decide(request: RoutingRequest) -> Decision:
    """Who is offered a new conversation, or where it goes when nobody can take it."""
    flow = request.chatflow

    def reason(user_id: str) -> Unavailable | None:
        found = availability(request.reps.get(user_id), now=request.now, hours=flow.hours)
        if found not in INELIGIBLE and user_id in request.exclude:
            return Unavailable.ALREADY_OFFERED
        return found

    owner = _owner(request)
    owner_reason = reason(owner) if owner is not None else None
    if owner is not None and owner_reason not in INELIGIBLE:
        if owner_reason is None:
            return Decision(
                outcome=Outcome.ROUTED,
                rule=Rule.OWNER,
                notify=(owner,),
                email_to=None,
                missed=False,
                candidates=(owner,),
                available=(owner,),
                unavailable=MappingProxyType({}),
                assignment=flow.assignment,
                owner=owner,
            )
        return Decision(
            outcome=Outcome.AWAY,
            rule=Rule.OWNER_UNAVAILABLE,
            notify=(),
            email_to=owner,
            missed=False,
            candidates=(owner,),
            available=(),
            unavailable=MappingProxyType({owner: owner_reason}),
            assignment=flow.assignment,
            owner=owner,
        )

    # An owner who is deactivated, a bot or excluded owns nothing any more: route as usual.
    unavailable: dict[str, Unavailable] = {}
    if owner is not None and owner_reason is not None:
        unavailable[owner] = owner_reason
    candidates: list[str] = []
    available: list[str] = []
    for user_id in _route(request):
        why = reason(user_id)
        if why not in INELIGIBLE:
            candidates.append(user_id)
        if why is None:
            available.append(user_id)
        else:
            unavailable[user_id] = why

    if available:
        notify = (
            tuple(available)
            if flow.assignment is AssignmentMode.ALL
            else (_next_in_rotation(available, request),)
        )
        outcome, rule, email_to = Outcome.ROUTED, Rule.ROUTE, None
    else:
        notify, outcome, email_to = (), Outcome.AWAY, flow.offline_fallback
        if not candidates:
            rule = Rule.NO_CANDIDATES
        elif flow.hours is not None and not flow.hours.is_open(request.now):
            rule = Rule.OUTSIDE_HOURS
        else:
            rule = Rule.NOBODY_AVAILABLE
    return Decision(
        outcome=outcome,
        rule=rule,
        notify=notify,
        email_to=email_to,
        missed=outcome is Outcome.AWAY and email_to is None,
        candidates=tuple(candidates),
        available=tuple(available),
        unavailable=MappingProxyType(unavailable),
        assignment=flow.assignment,
        owner=owner,
    )


def _owner(request: RoutingRequest) -> str | None:
    """The contact owner the owner rule applies to, if it applies."""
    contact = request.contact
    if request.chatflow.rotate_to_owner and contact is not None and contact.verified:
        return contact.owner or None
    return None


def _route(request: RoutingRequest) -> list[str]:
    """Route users, then the members of route teams in order, each once."""
    flow = request.chatflow
    members = (m for team in flow.route_teams for m in flow.team_members.get(team, ()))
    return list(dict.fromkeys((*flow.route_users, *members)))


def _next_in_rotation(available: list[str], request: RoutingRequest) -> str:
    """The available rep assigned least recently; never-assigned reps first, ties in route order.

    Fair as long as the caller records each assignment at a `now` later than the previous one.
    """

    def key(position_and_user: tuple[int, str]) -> tuple[bool, datetime | int, int]:
        position, user_id = position_and_user
        rep = request.reps.get(user_id)
        last = rep.last_assigned_at if rep is not None else None
        return (last is not None, last if last is not None else 0, position)

    return min(enumerate(available), key=key)[1]
