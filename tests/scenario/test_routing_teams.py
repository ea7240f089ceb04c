"""Routing rule 2's candidates: route users plus the members of route teams (Slack user groups or
teams defined in slackrouter), deduplicated, with deactivated users, bots and excluded guests
removed.

SQLite only: the database makes no difference to these rules.
"""

from __future__ import annotations

from tests.scenario.conftest import ALICE, BOB, CAROL
from tests.scenario.routing_fixtures import (
    DAVE,
    Routing,
    agent_names,
    explanation,
    routing_fixture,  # noqa: F401
    smtp_server_fixture,  # noqa: F401
    sqlite_database_fixture,  # noqa: F401
)


async def test_team_via_slack_user_group(routing: Routing) -> None:
    routing.slack.add_usergroup("S0SALES", "sales", "Sales team", users=[CAROL, DAVE])
    assert await routing.runtime.directory.refresh_usergroups() is True
    await routing.configure(route_users=[], route_teams=["S0SALES"])

    assert agent_names((await routing.greeting())["agents"]) == ["Carol", "Dave"]
    accepted = await routing.starts()
    assert agent_names(accepted["agents"]) == ["Carol", "Dave"]
    await routing.parent_in(f"D{CAROL}")
    await routing.parent_in(f"D{DAVE}")
    await routing.settled(accepted)
    assert routing.dm_parents() == {CAROL: 1, DAVE: 1}


async def test_team_defined_in_slackrouter(routing: Routing) -> None:
    routing.slack.paid_plan = False  # no user groups on a free plan: teams are slackrouter's
    assert await routing.runtime.directory.refresh_usergroups() is False
    team = await routing.runtime.directory.create_team(
        team_id=routing.slack.team_id, name="Nordics", members=[CAROL, DAVE]
    )
    await routing.configure(route_users=[ALICE], route_teams=[team.id])
    await routing.presence(**{ALICE: "away"})

    accepted = await routing.starts()
    assert agent_names(accepted["agents"]) == ["Carol", "Dave"]
    parent = await routing.parent_in(f"D{DAVE}")
    context = explanation(parent["params"])
    assert context == (
        "route (all): offered to Carol, Dave; candidates: Alice, Carol, Dave; "
        "available: Carol, Dave; not available: Alice away"
    )
    await routing.settled(accepted)
    assert routing.dm_parents() == {CAROL: 1, DAVE: 1}


async def test_a_rep_in_two_teams_is_notified_once(routing: Routing) -> None:
    routing.slack.add_usergroup("S0SALES", "sales", users=[BOB, CAROL])
    await routing.runtime.directory.refresh_usergroups()
    team = await routing.runtime.directory.create_team(
        team_id=routing.slack.team_id, name="Enterprise", members=[CAROL, DAVE, BOB]
    )
    await routing.configure(route_users=[BOB], route_teams=["S0SALES", team.id])

    accepted = await routing.starts()
    assert agent_names(accepted["agents"]) == ["Bob", "Carol", "Dave"]
    for rep in (BOB, CAROL, DAVE):
        await routing.parent_in(f"D{rep}")
    await routing.settled(accepted)
    assert routing.dm_parents() == {BOB: 1, CAROL: 1, DAVE: 1}
    assert len(routing.slack.calls_to("conversations.open")) == 3


async def test_deactivated_users_bots_and_guests_are_never_candidates(routing: Routing) -> None:
    routing.slack.add_user("U0GONE", "gone", display_name="Gone", deleted=True)
    routing.slack.add_user("U0ROBOT", "robot", display_name="Robot", is_bot=True)
    guest = routing.slack.add_user("U0GUEST", "guest", display_name="Guest")
    guest["is_restricted"] = True
    routing.slack.add_usergroup("S0ALL", "everyone", users=["U0GONE", "U0ROBOT", "U0GUEST", BOB])
    await routing.runtime.directory.refresh_usergroups()
    await routing.configure(route_users=["U0GONE", ALICE], route_teams=["S0ALL"])

    accepted = await routing.starts()
    assert agent_names(accepted["agents"]) == ["Alice", "Bob"]
    parent = await routing.parent_in(f"D{ALICE}")
    context = explanation(parent["params"])
    assert context == (
        "route (all): offered to Alice, Bob; candidates: Alice, Bob; available: Alice, Bob; "
        "not available: Gone deactivated, Robot bot, Guest excluded"
    )
    await routing.settled(accepted)
    assert routing.dm_parents() == {ALICE: 1, BOB: 1}
