"""Routing rule 1, "rotate to owner": a known contact's chats go to the rep who owns them.

SQLite only: the database makes no difference to these rules.
"""

from __future__ import annotations

import json
import time

from slackrouter.api.signing import sign
from tests.scenario.conftest import ALICE, BOB, CAROL
from tests.scenario.routing_fixtures import (
    FIONA,
    Routing,
    agent_names,
    body_text,
    email_of,
    explanation,
    routing_fixture,  # noqa: F401
    smtp_server_fixture,  # noqa: F401
    sqlite_database_fixture,  # noqa: F401
)

NORA_COOKIE = "cookie-nora"
NORA_EMAIL = "nora@customer.example"


async def owned_by_carol(routing: Routing, *, rotate_to_owner: bool = True) -> None:
    """Nora is a known contact, owned by Carol, who is on no route."""
    await routing.configure(rotate_to_owner=rotate_to_owner, offline_fallback=FIONA)
    await routing.put_contact(
        email=NORA_EMAIL, name="Nora Berg", owner=CAROL, visitor_ids=[NORA_COOKIE]
    )


async def test_owner_available_gets_it_alone(routing: Routing) -> None:
    await owned_by_carol(routing)

    greeting = await routing.greeting(NORA_COOKIE)
    assert greeting["status"] == "routed"
    assert agent_names(greeting["agents"]) == ["Carol"]
    assert greeting["agents"][0]["avatar_url"]
    assert agent_names((await routing.greeting("someone-else"))["agents"]) == ["Alice", "Bob"]

    accepted = await routing.starts(visitor_id=NORA_COOKIE)
    assert accepted["status"] == "routed"
    assert agent_names(accepted["agents"]) == ["Carol"]
    parent = await routing.parent_in(f"D{CAROL}")
    context = explanation(parent["params"])
    assert context == "owner: offered to the contact's owner Carol alone"
    await routing.settled(accepted)
    assert routing.dm_parents() == {CAROL: 1}

    await routing.rep_replies(CAROL, parent, "Hi Nora, Carol here!")
    feed = await routing.feed(accepted)
    assert [(m["author"], m["author_name"], m["text"]) for m in feed[1:]] == [
        ("rep", "Carol", "Hi Nora, Carol here!")
    ]


async def test_owner_away_emails_the_owner_and_not_the_fallback(routing: Routing) -> None:
    await routing.configure(rotate_to_owner=True, offline_fallback=FIONA)
    # The site's backend may name the owner by their Slack email address.
    contact = await routing.put_contact(
        email=NORA_EMAIL, owner=email_of(CAROL), visitor_ids=[NORA_COOKIE]
    )
    assert contact["owner_user_id"] == CAROL
    await routing.presence(**{CAROL: "away"})

    greeting = await routing.greeting(NORA_COOKIE)
    assert (greeting["status"], greeting["agents"]) == ("away", [])
    assert greeting["away_message"].startswith("We're away right now")

    accepted = await routing.starts(visitor_id=NORA_COOKIE, name="Nora")
    assert (accepted["status"], accepted["agents"]) == ("away", [])
    assert accepted["away_message"].startswith("We're away right now")
    await routing.leave_email(accepted, NORA_EMAIL)

    [sent] = await routing.emails_to(email_of(CAROL))
    assert sent["To"] == email_of(CAROL)
    assert NORA_EMAIL in sent["Reply-To"]
    assert "Their owner was not available" in body_text(sent)
    assert "Hello, do you ship to Norway?" in body_text(sent)
    await routing.settled(accepted)
    assert routing.inbox.to(email_of(FIONA)) == []
    assert len(routing.inbox.messages) == 1
    assert routing.posts() == []


async def test_flag_off_routes_even_an_owned_visitor(routing: Routing) -> None:
    await owned_by_carol(routing, rotate_to_owner=False)

    assert agent_names((await routing.greeting(NORA_COOKIE))["agents"]) == ["Alice", "Bob"]
    accepted = await routing.starts(visitor_id=NORA_COOKIE)
    assert agent_names(accepted["agents"]) == ["Alice", "Bob"]
    await routing.parent_in(f"D{ALICE}")
    await routing.parent_in(f"D{BOB}")
    await routing.settled(accepted)
    assert routing.dm_parents() == {ALICE: 1, BOB: 1}


async def test_unknown_visitor_follows_the_route(routing: Routing) -> None:
    await owned_by_carol(routing)

    accepted = await routing.starts(visitor_id="cookie-stranger", email=NORA_EMAIL)
    # A browser that merely claims a customer's address does not get their owner.
    assert accepted["identity_verified"] is False
    assert agent_names(accepted["agents"]) == ["Alice", "Bob"]
    parent = await routing.parent_in(f"D{ALICE}")
    context = explanation(parent["params"])
    assert context.startswith("route (all): offered to Alice, Bob;")
    await routing.settled(accepted)
    assert routing.dm_parents() == {ALICE: 1, BOB: 1}


async def test_contact_without_owner_follows_the_route(routing: Routing) -> None:
    await routing.configure(rotate_to_owner=True)
    await routing.put_contact(email=NORA_EMAIL, name="Nora Berg", visitor_ids=[NORA_COOKIE])

    assert agent_names((await routing.greeting(NORA_COOKIE))["agents"]) == ["Alice", "Bob"]
    accepted = await routing.starts(visitor_id=NORA_COOKIE)
    assert agent_names(accepted["agents"]) == ["Alice", "Bob"]
    await routing.parent_in(f"D{ALICE}")
    await routing.parent_in(f"D{BOB}")
    await routing.settled(accepted)
    assert routing.dm_parents() == {ALICE: 1, BOB: 1}


async def test_owner_is_found_by_an_email_the_site_vouches_for(routing: Routing) -> None:
    """A signed server-side call may identify the visitor by email when their cookie is new."""
    await owned_by_carol(routing)
    body = json.dumps(
        {
            "visitor_id": "cookie-new-laptop",
            "client_message_id": "s1",
            "text": "Hi, it's Nora again",
            "email": NORA_EMAIL,
        }
    ).encode()
    timestamp = str(int(time.time()))
    response = await routing.http.post(
        f"/v1/chatflows/{routing.public_key}/messages",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Slackrouter-Timestamp": timestamp,
            "X-Slackrouter-Signature": sign(routing.signing_secret, timestamp, body),
        },
    )
    assert response.status_code == 201, response.text
    assert agent_names(response.json()["agents"]) == ["Carol"]
    await routing.parent_in(f"D{CAROL}")
    await routing.settled(response.json())
    assert routing.dm_parents() == {CAROL: 1}
