"""Available = opted in AND Slack presence active AND not in Do Not Disturb, within the chatflow's
business hours; anyone else counts as away.

SQLite only: the database makes no difference to these rules.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.scenario.conftest import ALICE, BOB, CAROL
from tests.scenario.routing_fixtures import (
    FIONA,
    Routing,
    agent_names,
    body_text,
    closed_all_week_but,
    email_of,
    explanation,
    routing_fixture,  # noqa: F401
    smtp_server_fixture,  # noqa: F401
    sqlite_database_fixture,  # noqa: F401
)

CLOSED = "We're closed until Monday 9:00. Leave your email and we'll write back."


async def test_dnd_counts_as_away(routing: Routing) -> None:
    routing.slack.set_dnd(BOB, True)
    await routing.runtime.presence.refresh(pace=False, wait=True)  # dnd.teamInfo

    accepted = await routing.starts()
    assert agent_names(accepted["agents"]) == ["Alice"]
    parent = await routing.parent_in(f"D{ALICE}")
    assert explanation(parent["params"]).endswith("not available: Bob dnd")
    await routing.settled(accepted)
    assert routing.dm_parents() == {ALICE: 1}


async def test_dnd_counts_as_away_as_soon_as_slack_announces_it(routing: Routing) -> None:
    """The `dnd_updated_user` event keeps Do Not Disturb fresh without waiting for a poll."""
    routing.slack.set_dnd(ALICE, True)
    await routing.slack.announce_dnd(ALICE)
    assert agent_names((await routing.greeting())["agents"]) == ["Bob"]

    routing.slack.set_dnd(ALICE, False)
    await routing.slack.announce_dnd(ALICE)
    accepted = await routing.starts()
    assert agent_names(accepted["agents"]) == ["Alice", "Bob"]


async def test_opted_out_counts_as_away(routing: Routing) -> None:
    await routing.runtime.presence.set_opted_in(
        team_id=routing.slack.team_id, user_id=ALICE, opted_in=False
    )

    accepted = await routing.starts()
    assert agent_names(accepted["agents"]) == ["Bob"]
    parent = await routing.parent_in(f"D{BOB}")
    assert explanation(parent["params"]).endswith("not available: Alice opted out")
    await routing.settled(accepted)
    assert routing.dm_parents() == {BOB: 1}


async def test_outside_business_hours_counts_as_away(routing: Routing) -> None:
    await routing.configure(
        hours=closed_all_week_but(datetime.now(UTC), "America/New_York"),
        out_of_hours_message=CLOSED,
        offline_fallback=FIONA,
    )

    greeting = await routing.greeting()
    assert (greeting["status"], greeting["agents"], greeting["away_message"]) == (
        "away",
        [],
        CLOSED,
    )
    accepted = await routing.starts()
    assert (accepted["status"], accepted["agents"], accepted["away_message"]) == (
        "away",
        [],
        CLOSED,
    )
    # The offline path applies: the fallback gets the chat by email.
    [sent] = await routing.emails_to(email_of(FIONA))
    assert "Hello, do you ship to Norway?" in body_text(sent)
    explanation = (await routing.conversation(accepted)).routing["explanation"]
    assert explanation.startswith("outside_hours: outside the chatflow's business hours;")
    await routing.settled(accepted)
    assert routing.posts() == []


async def test_outside_business_hours_an_owned_visitor_gets_the_out_of_hours_message(
    routing: Routing,
) -> None:
    await routing.configure(
        hours=closed_all_week_but(datetime.now(UTC)),
        out_of_hours_message=CLOSED,
        rotate_to_owner=True,
        offline_fallback=FIONA,
    )
    await routing.put_contact(email="nora@customer.example", owner=CAROL, visitor_ids=["nora"])

    assert (await routing.greeting("nora"))["away_message"] == CLOSED
    accepted = await routing.starts(visitor_id="nora")
    assert (accepted["status"], accepted["away_message"]) == ("away", CLOSED)
    # Her owner, not the fallback, follows up.
    await routing.emails_to(email_of(CAROL))
    await routing.settled(accepted)
    assert routing.inbox.to(email_of(FIONA)) == []
