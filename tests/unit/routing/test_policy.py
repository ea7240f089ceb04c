import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import slackrouter.routing
from slackrouter.routing import (
    AssignmentMode,
    ChatflowRouting,
    Contact,
    Outcome,
    Presence,
    RepState,
    RoutingRequest,
    Rule,
    Unavailable,
    WeeklyHours,
    availability,
    decide,
)

NOW = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)  # a Monday
ALWAYS = None
WEEKDAYS_9_TO_5 = WeeklyHours.from_mapping(
    {day: [("09:00", "17:00")] for day in ("mon", "tue", "wed", "thu", "fri")}, "UTC"
)


def active(user_id: str, **changes) -> RepState:
    return RepState(user_id, presence=Presence.ACTIVE, **changes)


def away(user_id: str, **changes) -> RepState:
    return RepState(user_id, presence=Presence.AWAY, **changes)


def request(*reps: RepState, now: datetime = NOW, **kwargs) -> RoutingRequest:
    flow_fields = {
        k: kwargs.pop(k) for k in list(kwargs) if k in ChatflowRouting.__dataclass_fields__
    }
    return RoutingRequest(
        chatflow=ChatflowRouting(**flow_fields),
        reps={rep.user_id: rep for rep in reps},
        now=now,
        **kwargs,
    )


# --- availability -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rep", "expected"),
    [
        (active("U1"), None),
        (None, Unavailable.UNKNOWN_PRESENCE),
        (RepState("U1"), Unavailable.UNKNOWN_PRESENCE),
        (away("U1"), Unavailable.AWAY),
        (active("U1", dnd=True), Unavailable.DND),
        (active("U1", opted_in=False), Unavailable.OPTED_OUT),
        (active("U1", deleted=True), Unavailable.DEACTIVATED),
        (active("U1", is_bot=True), Unavailable.BOT),
        (active("U1", is_excluded=True), Unavailable.EXCLUDED),
        # The reason most specific to the rep wins.
        (away("U1", dnd=True, opted_in=False), Unavailable.OPTED_OUT),
        (away("U1", deleted=True, is_bot=True), Unavailable.DEACTIVATED),
    ],
)
def test_availability(rep: RepState | None, expected: Unavailable | None) -> None:
    assert availability(rep, now=NOW, hours=ALWAYS) == expected


def test_availability_outside_business_hours() -> None:
    saturday = datetime(2024, 1, 20, 10, tzinfo=UTC)
    assert (
        availability(active("U1"), now=saturday, hours=WEEKDAYS_9_TO_5) is Unavailable.OUTSIDE_HOURS
    )
    assert availability(away("U1"), now=saturday, hours=WEEKDAYS_9_TO_5) is Unavailable.AWAY
    assert availability(active("U1"), now=NOW, hours=WEEKDAYS_9_TO_5) is None


# --- owner rule ---------------------------------------------------------------------------


def test_available_owner_gets_the_chat_alone() -> None:
    decision = decide(
        request(
            active("OWNER"),
            active("U1"),
            route_users=("U1",),
            rotate_to_owner=True,
            contact=Contact(owner="OWNER"),
        )
    )
    assert decision.outcome is Outcome.ROUTED
    assert decision.rule is Rule.OWNER
    assert decision.notify == ("OWNER",)
    assert decision.email_to is None
    assert not decision.missed
    assert decision.explain() == "owner: offered to the contact's owner OWNER alone"


def test_unavailable_owner_is_emailed_not_the_fallback() -> None:
    decision = decide(
        request(
            away("OWNER"),
            active("U1"),
            route_users=("U1",),
            rotate_to_owner=True,
            offline_fallback="FALLBACK",
            contact=Contact(owner="OWNER"),
        )
    )
    assert decision.outcome is Outcome.AWAY
    assert decision.rule is Rule.OWNER_UNAVAILABLE
    assert decision.notify == ()
    assert decision.email_to == "OWNER"
    assert not decision.missed
    assert decision.unavailable == {"OWNER": Unavailable.AWAY}
    assert decision.explain() == (
        "owner_unavailable: the contact's owner is not available (OWNER away); "
        "away message, chat emailed to OWNER"
    )


def test_owner_outside_business_hours_is_unavailable() -> None:
    decision = decide(
        request(
            active("OWNER"),
            now=datetime(2024, 1, 20, 10, tzinfo=UTC),
            rotate_to_owner=True,
            hours=WEEKDAYS_9_TO_5,
            contact=Contact(owner="OWNER"),
        )
    )
    assert decision.rule is Rule.OWNER_UNAVAILABLE
    assert decision.email_to == "OWNER"
    assert decision.unavailable == {"OWNER": Unavailable.OUTSIDE_HOURS}


def test_owner_already_offered_is_emailed_on_escalation() -> None:
    decision = decide(
        request(
            active("OWNER"),
            rotate_to_owner=True,
            contact=Contact(owner="OWNER"),
            exclude=frozenset({"OWNER"}),
        )
    )
    assert decision.rule is Rule.OWNER_UNAVAILABLE
    assert decision.unavailable == {"OWNER": Unavailable.ALREADY_OFFERED}


@pytest.mark.parametrize(
    ("rotate_to_owner", "contact"),
    [
        (False, Contact(owner="OWNER")),
        (True, None),
        (True, Contact(owner=None)),
        (True, Contact(owner="")),
        (True, Contact(owner="OWNER", verified=False)),
    ],
)
def test_owner_rule_does_not_apply(rotate_to_owner: bool, contact: Contact | None) -> None:
    decision = decide(
        request(
            active("OWNER"),
            active("U1"),
            route_users=("U1",),
            rotate_to_owner=rotate_to_owner,
            contact=contact,
        )
    )
    assert decision.rule is Rule.ROUTE
    assert decision.notify == ("U1",)
    assert decision.owner is None


@pytest.mark.parametrize(
    ("owner", "reason"),
    [
        (active("OWNER", deleted=True), Unavailable.DEACTIVATED),
        (active("OWNER", is_bot=True), Unavailable.BOT),
        (active("OWNER", is_excluded=True), Unavailable.EXCLUDED),
    ],
)
def test_an_ineligible_owner_falls_back_to_the_route(owner: RepState, reason: Unavailable) -> None:
    decision = decide(
        request(
            owner,
            active("U1"),
            route_users=("U1",),
            rotate_to_owner=True,
            contact=Contact(owner="OWNER"),
        )
    )
    assert decision.rule is Rule.ROUTE
    assert decision.notify == ("U1",)
    assert decision.owner == "OWNER"
    assert decision.unavailable == {"OWNER": reason}
    assert "contact owner OWNER skipped" in decision.explain()


# --- route rule ---------------------------------------------------------------------------


def test_all_mode_notifies_every_available_candidate_in_route_order() -> None:
    decision = decide(
        request(
            active("U1"),
            away("U2"),
            active("U3", dnd=True),
            active("U4"),
            active("U5"),
            route_users=("U4", "U1"),
            route_teams=("T1",),
            team_members={"T1": ("U2", "U3", "U5")},
        )
    )
    assert decision.outcome is Outcome.ROUTED
    assert decision.rule is Rule.ROUTE
    assert decision.notify == ("U4", "U1", "U5")
    assert decision.candidates == ("U4", "U1", "U2", "U3", "U5")
    assert decision.available == ("U4", "U1", "U5")
    assert decision.unavailable == {"U2": Unavailable.AWAY, "U3": Unavailable.DND}
    assert decision.email_to is None
    assert not decision.missed
    assert decision.explain() == (
        "route (all): offered to U4, U1, U5; candidates: U4, U1, U2, U3, U5; "
        "available: U4, U1, U5; not available: U2 away, U3 dnd"
    )


def test_explain_uses_display_names_when_given() -> None:
    decision = decide(request(active("U1"), away("U2"), route_users=("U1", "U2")))
    assert decision.explain({"U1": "Ann", "U2": "Bob"}) == (
        "route (all): offered to Ann; candidates: Ann, Bob; available: Ann; not available: Bob away"
    )


def test_a_rep_in_the_user_list_and_two_teams_is_notified_once() -> None:
    decision = decide(
        request(
            active("U1"),
            active("U2"),
            route_users=("U1",),
            route_teams=("T1", "T2"),
            team_members={"T1": ("U2", "U1"), "T2": ("U1", "U2")},
        )
    )
    assert decision.notify == ("U1", "U2")
    assert decision.candidates == ("U1", "U2")


def test_deactivated_bots_and_excluded_are_no_candidates_but_are_explained() -> None:
    decision = decide(
        request(
            active("GONE", deleted=True),
            active("BOT", is_bot=True),
            active("GUEST", is_excluded=True),
            active("U1"),
            route_users=("GONE", "BOT", "GUEST", "U1"),
        )
    )
    assert decision.candidates == ("U1",)
    assert decision.notify == ("U1",)
    assert decision.unavailable == {
        "GONE": Unavailable.DEACTIVATED,
        "BOT": Unavailable.BOT,
        "GUEST": Unavailable.EXCLUDED,
    }


def test_a_user_without_state_is_an_unavailable_candidate() -> None:
    decision = decide(request(active("U1"), route_users=("U1", "NEW")))
    assert decision.candidates == ("U1", "NEW")
    assert decision.unavailable == {"NEW": Unavailable.UNKNOWN_PRESENCE}


def test_a_team_without_known_members_adds_nobody() -> None:
    decision = decide(request(active("U1"), route_users=("U1",), route_teams=("T9",)))
    assert decision.candidates == ("U1",)


def test_round_robin_picks_the_least_recently_assigned() -> None:
    decision = decide(
        request(
            active("U1", last_assigned_at=NOW - timedelta(minutes=5)),
            active("U2", last_assigned_at=NOW - timedelta(minutes=50)),
            active("U3", last_assigned_at=NOW - timedelta(minutes=1)),
            away("U4", last_assigned_at=NOW - timedelta(days=9)),
            route_users=("U1", "U2", "U3", "U4"),
            assignment=AssignmentMode.ROUND_ROBIN,
        )
    )
    assert decision.notify == ("U2",)
    assert decision.available == ("U1", "U2", "U3")
    assert decision.explain().startswith("route (round_robin): offered to U2;")


def test_round_robin_prefers_never_assigned_then_route_order() -> None:
    reps = (
        active("U1", last_assigned_at=NOW - timedelta(days=1)),
        active("U2"),
        active("U3"),
    )
    flow = {"route_users": ("U1", "U3", "U2"), "assignment": AssignmentMode.ROUND_ROBIN}
    assert decide(request(*reps, **flow)).notify == ("U3",)


def test_round_robin_ties_go_to_route_order() -> None:
    same = NOW - timedelta(hours=1)
    decision = decide(
        request(
            active("U1", last_assigned_at=same),
            active("U2", last_assigned_at=same),
            route_users=("U2", "U1"),
            assignment=AssignmentMode.ROUND_ROBIN,
        )
    )
    assert decision.notify == ("U2",)


def test_escalation_offers_the_next_available_candidates() -> None:
    reps = (active("U1"), active("U2"), active("U3"))
    decision = decide(request(*reps, route_users=("U1", "U2", "U3"), exclude=frozenset({"U1"})))
    assert decision.notify == ("U2", "U3")
    assert decision.unavailable == {"U1": Unavailable.ALREADY_OFFERED}


def test_escalation_with_everyone_offered_is_handled_as_offline() -> None:
    decision = decide(
        request(
            active("U1"),
            route_users=("U1",),
            offline_fallback="FALLBACK",
            exclude=frozenset({"U1"}),
        )
    )
    assert decision.outcome is Outcome.AWAY
    assert decision.rule is Rule.NOBODY_AVAILABLE
    assert decision.email_to == "FALLBACK"


# --- nobody available ---------------------------------------------------------------------


def test_nobody_available_emails_the_offline_fallback() -> None:
    decision = decide(
        request(away("U1"), route_users=("U1",), offline_fallback="FALLBACK", has_channel=True)
    )
    assert decision.outcome is Outcome.AWAY
    assert decision.rule is Rule.NOBODY_AVAILABLE
    assert decision.notify == ()
    assert decision.email_to == "FALLBACK"
    assert not decision.missed
    assert decision.explain() == (
        "nobody_available: no candidate is available; candidates: U1; available: nobody; "
        "not available: U1 away; away message, chat emailed to offline fallback FALLBACK"
    )


def test_the_fallback_need_not_be_available() -> None:
    decision = decide(
        request(away("U1"), away("FALLBACK"), route_users=("U1",), offline_fallback="FALLBACK")
    )
    assert decision.email_to == "FALLBACK"


def test_nobody_available_and_no_fallback_is_a_missed_chat() -> None:
    decision = decide(request(away("U1"), route_users=("U1",)))
    assert decision.outcome is Outcome.AWAY
    assert decision.email_to is None
    assert decision.missed
    assert decision.explain().endswith("away message, no offline fallback: kept as a missed chat")


def test_outside_business_hours_nobody_is_available() -> None:
    saturday = datetime(2024, 1, 20, 10, tzinfo=UTC)
    decision = decide(
        request(
            active("U1"),
            away("U2"),
            now=saturday,
            route_users=("U1", "U2"),
            hours=WEEKDAYS_9_TO_5,
            offline_fallback="FALLBACK",
        )
    )
    assert decision.outcome is Outcome.AWAY
    assert decision.rule is Rule.OUTSIDE_HOURS
    assert decision.email_to == "FALLBACK"
    assert decision.unavailable == {"U1": Unavailable.OUTSIDE_HOURS, "U2": Unavailable.AWAY}
    assert decision.explain().startswith("outside_hours: outside the chatflow's business hours;")


def test_within_business_hours_routes_as_usual() -> None:
    decision = decide(request(active("U1"), route_users=("U1",), hours=WEEKDAYS_9_TO_5))
    assert decision.rule is Rule.ROUTE


def test_an_empty_route_has_no_candidates() -> None:
    decision = decide(
        request(active("BOT", is_bot=True), route_users=("BOT",), offline_fallback="FALLBACK")
    )
    assert decision.outcome is Outcome.AWAY
    assert decision.rule is Rule.NO_CANDIDATES
    assert decision.email_to == "FALLBACK"
    assert decision.explain().startswith("no_candidates: the route names nobody who can take chats")


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RoutingRequest(chatflow=ChatflowRouting(), reps={}, now=datetime(2024, 1, 15, 10))


def test_decisions_are_immutable() -> None:
    decision = decide(request(active("U1"), away("U2"), route_users=("U1", "U2")))
    with pytest.raises(AttributeError):
        decision.notify = ("U2",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        decision.unavailable["U1"] = Unavailable.DND  # type: ignore[index]


# --- purity -------------------------------------------------------------------------------

FORBIDDEN_MODULES = {
    "slack_sdk",
    "slack_bolt",
    "sqlalchemy",
    "httpx",
    "aiohttp",
    "fastapi",
    "starlette",
    "time",
    "asyncio",
    "requests",
    "socket",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic"}


@pytest.mark.parametrize(
    "path",
    sorted(Path(slackrouter.routing.__file__).parent.glob("*.py")),
    ids=lambda p: p.name,
)
def test_routing_imports_no_io_and_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    called: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "use absolute imports"
            modules.add(node.module or "")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called.add(node.func.attr)
    roots = {module.split(".")[0] for module in modules}
    assert not roots & FORBIDDEN_MODULES
    # Within the project, the core depends on itself only.
    assert {m for m in modules if m.startswith("slackrouter")} <= {
        m for m in modules if m.startswith("slackrouter.routing")
    }
    assert not called & FORBIDDEN_CALLS
