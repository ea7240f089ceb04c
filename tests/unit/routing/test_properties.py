"""Properties of `decide` over generated chatflows, rep states, contacts and times."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from slackrouter.routing import (
    AssignmentMode,
    ChatflowRouting,
    Contact,
    Outcome,
    Presence,
    RepState,
    RoutingRequest,
    Rule,
    WeeklyHours,
    availability,
    decide,
)
from slackrouter.routing.hours import DAY_NAMES

USERS = tuple(f"U{i}" for i in range(6))
TEAMS = ("T0", "T1", "T2")
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 12, 31, tzinfo=UTC)
HOURS = (
    None,
    None,
    WeeklyHours.from_mapping({d: [("06:00", "24:00")] for d in DAY_NAMES}, "Asia/Tokyo"),
    WeeklyHours.from_mapping({d: [("09:00", "17:00")] for d in DAY_NAMES[:5]}, "Europe/Berlin"),
    WeeklyHours.from_mapping({}, "UTC"),
)

# Strategies are built once, here: building them inside each draw costs more than drawing.
users = st.sampled_from(USERS)
teams = st.sampled_from(TEAMS)
# Whole seconds within 2024: cheaper to draw than st.datetimes, and hours are whole minutes.
moments = st.integers(0, int((END - START).total_seconds())).map(
    lambda seconds: START + timedelta(seconds=seconds)
)
# Hypothesis favours small integers, so `integers(0, 5) == 0` would not be rare at all.
rarely = st.sampled_from((False,) * 5 + (True,))
mostly = st.sampled_from((True,) * 5 + (False,))


def rep_state(user_id: str) -> st.SearchStrategy[RepState]:
    """Mostly available, so that every rule is reached often."""
    return st.builds(
        RepState,
        user_id=st.just(user_id),
        opted_in=mostly,
        presence=st.sampled_from([Presence.ACTIVE] * 3 + [Presence.AWAY, Presence.UNKNOWN]),
        dnd=rarely,
        deleted=rarely,
        is_bot=rarely,
        is_excluded=rarely,
        last_assigned_at=st.none() | moments,
    )


chatflows = st.builds(
    ChatflowRouting,
    route_users=rarely.flatmap(
        lambda empty: st.just(()) if empty else st.lists(users, min_size=1, max_size=6).map(tuple)
    ),
    route_teams=st.lists(teams, max_size=3).map(tuple),
    team_members=st.dictionaries(teams, st.lists(users, max_size=4).map(tuple)),
    assignment=st.sampled_from(AssignmentMode),
    rotate_to_owner=st.booleans(),
    offline_fallback=st.none() | users,
    hours=st.sampled_from(HOURS),
    has_channel=st.booleans(),
)
all_rep_states = st.tuples(*(rep_state(user_id) for user_id in USERS))
contacts = st.builds(Contact, owner=st.sampled_from((None, *USERS)), verified=mostly)


@st.composite
def routing_requests(draw: st.DrawFn) -> RoutingRequest:
    unknown = draw(st.frozensets(users, max_size=2))  # users with no known state at all
    return RoutingRequest(
        chatflow=draw(chatflows),
        reps={rep.user_id: rep for rep in draw(all_rep_states) if rep.user_id not in unknown},
        now=draw(moments),
        contact=draw(st.none() | contacts),
        exclude=draw(st.frozensets(users, max_size=2)),
    )


requests = routing_requests()


def is_available(request: RoutingRequest, user_id: str) -> bool:
    state = request.reps.get(user_id)
    return (
        user_id not in request.exclude
        and availability(state, now=request.now, hours=request.chatflow.hours) is None
    )


def route_order(request: RoutingRequest) -> list[str]:
    flow = request.chatflow
    order = [*flow.route_users]
    for team in flow.route_teams:
        order.extend(flow.team_members.get(team, ()))
    return list(dict.fromkeys(order))


def owner_rule_expected(request: RoutingRequest) -> bool:
    contact = request.contact
    if not (request.chatflow.rotate_to_owner and contact and contact.owner and contact.verified):
        return False
    state = request.reps.get(contact.owner)
    # An owner who left, or is a bot or excluded, owns nothing: the route rule applies.
    return state is None or not (state.deleted or state.is_bot or state.is_excluded)


@given(requests)
def test_only_available_candidates_are_notified(request: RoutingRequest) -> None:
    decision = decide(request)
    for user_id in decision.notify:
        assert is_available(request, user_id)
        assert user_id in decision.candidates
        assert user_id in decision.available
    if decision.rule is Rule.OWNER:
        assert request.contact is not None
        assert decision.notify == (request.contact.owner,)
    else:
        assert set(decision.candidates) <= set(route_order(request)) | {decision.owner}


@given(requests)
def test_available_and_unavailable_partition_the_candidates(request: RoutingRequest) -> None:
    decision = decide(request)
    assert len(set(decision.candidates)) == len(decision.candidates)
    assert set(decision.available).isdisjoint(decision.unavailable)
    assert set(decision.candidates) <= set(decision.available) | set(decision.unavailable)
    assert [u for u in decision.candidates if u in decision.available] == list(decision.available)
    for user_id in decision.available:
        assert is_available(request, user_id)
    for user_id in decision.unavailable:
        assert not is_available(request, user_id)


@given(requests)
def test_owner_rule_applies_exactly_when_flag_on_and_contact_owned(
    request: RoutingRequest,
) -> None:
    decision = decide(request)
    assert (decision.rule in (Rule.OWNER, Rule.OWNER_UNAVAILABLE)) == owner_rule_expected(request)
    if decision.rule is Rule.OWNER_UNAVAILABLE:
        assert request.contact is not None
        assert decision.email_to == request.contact.owner


@given(requests)
def test_away_exactly_when_nobody_is_notified(request: RoutingRequest) -> None:
    decision = decide(request)
    assert (decision.outcome is Outcome.AWAY) == (decision.notify == ())
    assert decision.missed == (decision.outcome is Outcome.AWAY and decision.email_to is None)
    if decision.outcome is Outcome.ROUTED:
        assert decision.email_to is None
    elif decision.rule is not Rule.OWNER_UNAVAILABLE:
        assert decision.email_to == request.chatflow.offline_fallback
        assert decision.available == ()


@given(requests)
def test_assignment_mode(request: RoutingRequest) -> None:
    decision = decide(request)
    if decision.rule is not Rule.ROUTE:
        return
    if request.chatflow.assignment is AssignmentMode.ALL:
        assert decision.notify == decision.available
    else:
        assert len(decision.notify) == 1


@given(requests)
def test_closed_business_hours_mean_away(request: RoutingRequest) -> None:
    hours = request.chatflow.hours
    if hours is not None and not hours.is_open(request.now):
        assert decide(request).outcome is Outcome.AWAY


@given(requests)
def test_decide_is_deterministic(request: RoutingRequest) -> None:
    shuffled = replace(request, reps=dict(reversed(list(request.reps.items()))))
    first = decide(request)
    assert decide(request) == first
    assert decide(shuffled) == first
    assert first.explain() == decide(shuffled).explain()


@given(requests, users, st.lists(st.sampled_from(TEAMS), min_size=2, max_size=3, unique=True))
def test_a_rep_on_the_route_several_times_is_notified_once(
    request: RoutingRequest, user_id: str, teams: list[str]
) -> None:
    flow = request.chatflow
    members = {team: (*flow.team_members.get(team, ()), user_id) for team in teams}
    request = replace(
        request,
        chatflow=replace(
            flow,
            route_users=(*flow.route_users, user_id),
            route_teams=(*flow.route_teams, *teams),
            team_members={**flow.team_members, **members},
        ),
    )
    decision = decide(request)
    assert decision.notify.count(user_id) <= 1
    assert decision.candidates.count(user_id) <= 1


earlier = st.none() | moments.map(lambda moment: moment - timedelta(days=366))


@st.composite
def rotations(draw: st.DrawFn) -> tuple[list[str], dict[str, RepState]]:
    """A route in some order with a fixed set of available reps and some unavailable ones."""
    route = draw(st.permutations(USERS))
    available = set(draw(st.lists(users, min_size=1, unique=True)))
    reps = {}
    for user_id in route:
        last = draw(earlier)
        presence = Presence.ACTIVE if user_id in available else Presence.AWAY
        reps[user_id] = RepState(user_id, presence=presence, last_assigned_at=last)
    return list(route), reps


@given(rotations())
def test_round_robin_is_fair(rotation: tuple[list[str], dict[str, RepState]]) -> None:
    route, reps = rotation
    available = {u for u, rep in reps.items() if rep.presence is Presence.ACTIVE}
    flow = ChatflowRouting(route_users=tuple(route), assignment=AssignmentMode.ROUND_ROBIN)
    chosen = []
    for step in range(3 * len(available)):
        now = START + timedelta(minutes=step)
        (user_id,) = decide(RoutingRequest(chatflow=flow, reps=reps, now=now)).notify
        reps[user_id] = replace(reps[user_id], last_assigned_at=now)
        chosen.append(user_id)
    # Any len(available) decisions in a row choose each available rep exactly once: nobody
    # starves, and nobody gets a second chat before every other has had one.
    for start in range(len(chosen) - len(available) + 1):
        assert set(chosen[start : start + len(available)]) == available
