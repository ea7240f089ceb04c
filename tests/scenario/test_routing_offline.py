"""Routing rule 2 when nobody can take the chat: the away message, the offline fallback's email
(debounced, cancelled when a rep picks the chat up), missed chats, and escalation.

SQLite only, except the tests of timers (debounce, escalation), which run on PostgreSQL too.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from slackrouter.adapters.db.models import Timer
from slackrouter.clock import utcnow
from slackrouter.sandbox.fake_slack import pings_in
from slackrouter.services.delivery import LEASE
from tests.scenario.conftest import ALICE, BOB, eventually
from tests.scenario.routing_fixtures import (
    ESCALATION_SECONDS,
    FIONA,
    MAIL_FROM,
    Routing,
    body_text,
    email_of,
    explanation,
    past,
    routing_each_db_fixture,  # noqa: F401
    routing_fixture,  # noqa: F401
    smtp_server_fixture,  # noqa: F401
    sqlite_database_fixture,  # noqa: F401
)

NORA_EMAIL = "nora@customer.example"
AWAY = "We're away right now. Leave your email and we'll get back to you."


async def nobody_available(routing: Routing, **chatflow: object) -> None:
    await routing.configure(**chatflow)
    await routing.presence(**{ALICE: "away", BOB: "away"})


async def test_nobody_available_emails_the_fallback_with_the_visitor_as_reply_to(
    routing: Routing,
) -> None:
    await nobody_available(routing, offline_fallback=FIONA)

    greeting = await routing.greeting()
    assert (greeting["status"], greeting["agents"], greeting["away_message"]) == (
        "away",
        [],
        AWAY,
    )
    accepted = await routing.starts()
    assert (accepted["status"], accepted["agents"], accepted["away_message"]) == ("away", [], AWAY)
    await routing.leave_email(accepted, NORA_EMAIL)

    [sent] = await routing.emails_to(email_of(FIONA))
    assert sent["To"] == email_of(FIONA)
    assert sent["From"] == MAIL_FROM
    assert sent["Reply-To"] == f"Nora <{NORA_EMAIL}>"
    assert sent["Subject"] == "Chat from Nora on Sales (no one was available)"
    assert sent["Message-ID"] == f"<{accepted['conversation_id']}.chat@acme.test>"
    assert sent["Date"].datetime.tzinfo is not None
    assert sent["Auto-Submitted"] == "auto-generated"
    html = sent.get_body(preferencelist=("html",))
    assert html is not None and "Hello, do you ship to Norway?" in html.get_content()
    text = body_text(sent)
    assert "Nobody on the route was available" in text
    assert "Page:     https://shop.example/pricing" in text
    assert f"Email:    {NORA_EMAIL}" in text
    assert "Visitor\n  Hello, do you ship to Norway?" in text
    await routing.settled(accepted)
    assert len(routing.inbox.messages) == 1
    assert routing.posts() == []


async def test_no_email_from_the_visitor_is_still_sent_marked_so(routing: Routing) -> None:
    await nobody_available(routing, offline_fallback=FIONA)

    accepted = await routing.starts(name=None)
    [sent] = await routing.emails_to(email_of(FIONA))
    assert sent["To"] == email_of(FIONA)
    assert sent["Reply-To"] is None
    assert sent["Subject"] == "Chat from a visitor on Sales (no one was available)"
    text = body_text(sent)
    assert "The visitor left no email address." in text
    assert "Email:    (none)" in text
    assert "Hello, do you ship to Norway?" in text
    await routing.settled(accepted)


async def test_a_later_message_gives_the_email_the_visitors_name_and_address(
    routing_each_db: Routing,
) -> None:
    # The widget asks an anonymous visitor for their name and email after the first message.
    routing = routing_each_db
    await nobody_available(routing, offline_fallback=FIONA)

    accepted = await routing.starts("Hello?", name=None)
    response = await routing.visitor_says("It's about 40 seats.", name="Nora", email=NORA_EMAIL)
    assert response.json()["conversation_id"] == accepted["conversation_id"]

    [sent] = await routing.emails_to(email_of(FIONA))
    assert sent["Reply-To"] == f"Nora <{NORA_EMAIL}>"
    assert sent["Subject"] == "Chat from Nora on Sales (no one was available)"
    text = body_text(sent)
    assert f"Email:    {NORA_EMAIL}" in text
    assert text.index("Hello?") < text.index("40 seats")
    await routing.settled(accepted)


async def test_no_fallback_keeps_a_missed_chat(routing: Routing) -> None:
    await nobody_available(routing)

    accepted = await routing.starts()
    assert (accepted["status"], accepted["away_message"]) == ("away", AWAY)
    conversation = await routing.conversation(accepted)
    assert conversation.missed is True
    assert conversation.routing["explanation"].endswith(
        "away message, no offline fallback: kept as a missed chat"
    )
    await routing.settled(accepted)
    assert routing.inbox.messages == []
    assert routing.posts() == []


async def test_no_fallback_posts_the_missed_chat_in_the_chatflows_channel(
    routing: Routing,
) -> None:
    routing.add_channel("C0SALES", "sales-chats")
    await nobody_available(routing, channel_id="C0SALES")

    accepted = await routing.starts("Anyone there? <!channel>")
    assert accepted["status"] == "away"
    parent = await routing.parent_in("C0SALES")
    posted = parent["params"]
    assert {"type": "mrkdwn", "text": "*Missed chat*: nobody was available"} in [
        block.get("text") for block in posted["blocks"]
    ]
    assert pings_in(posted) == []
    assert explanation(posted) == (
        "nobody_available: no candidate is available; candidates: Alice, Bob; "
        "available: nobody; not available: Alice away, Bob away; "
        "away message, no offline fallback: kept as a missed chat"
    )
    assert (await routing.conversation(accepted)).missed is True
    await routing.settled(accepted)
    assert [p["channel"] for p in routing.posts()] == ["C0SALES"]
    assert routing.inbox.messages == []
    # Someone in the channel may still answer it.
    await routing.rep_replies(BOB, parent, "Sorry for the wait, Bob here.")
    feed = await routing.feed(accepted)
    assert [(m["author"], m["author_name"]) for m in feed] == [("visitor", None), ("rep", "Bob")]


async def test_debounced_email_is_sent_once_for_three_messages(routing_each_db: Routing) -> None:
    routing = routing_each_db
    await nobody_available(routing, offline_fallback=FIONA)

    accepted = await routing.starts("Hello?", email=NORA_EMAIL)
    for text in ("Is anyone there?", "I'd like a quote for 40 seats."):
        response = await routing.visitor_says(text, email=NORA_EMAIL)
        assert response.json()["conversation_id"] == accepted["conversation_id"]

    [sent] = await routing.emails_to(email_of(FIONA))
    text = body_text(sent)
    assert text.index("Hello?") < text.index("Is anyone there?") < text.index("40 seats")
    await routing.settled(accepted)
    assert len(routing.inbox.messages) == 1
    assert len(await routing.emails_owed()) == 1


async def test_escalation_to_the_next_rep_then_the_offline_email(routing_each_db: Routing) -> None:
    routing = routing_each_db
    await routing.configure(
        assignment="round_robin", escalation_seconds=ESCALATION_SECONDS, offline_fallback=FIONA
    )

    accepted = await routing.starts("Hi, anyone?", email=NORA_EMAIL)
    assert [a["name"] for a in accepted["agents"]] == ["Alice"]
    await routing.visitor_says("I need pricing for 40 seats", email=NORA_EMAIL)
    await routing.parent_in(f"D{ALICE}")
    # The timers are rows in the database: a restart loses none of them.
    await routing.restart()

    # Alice does not answer in time: Bob is offered the chat, with everything said so far.
    bob_parent = await routing.parent_in(f"D{BOB}")
    assert "Hi, anyone?" in str(bob_parent["params"]["blocks"])

    def in_bobs_thread() -> list[str]:
        return [
            str(p["blocks"])
            for p in routing.posts(f"D{BOB}")
            if p.get("thread_ts") == bob_parent["ts"]
        ]

    # On a loaded machine the escalation can come before the restart: a post the old app was
    # making when it stopped is then kept from every worker for its lease, and looked for in
    # Slack before it is made again (never posted twice).
    in_thread = await eventually(in_bobs_thread, within=LEASE.total_seconds() + 15)
    assert "40 seats" in "".join(in_thread)

    # Bob does not answer either: the visitor is told, and the fallback gets the chat by email.
    async def told_away() -> list[dict]:
        return [m for m in await routing.feed(accepted) if m["author"] == "system"]

    [notice] = await eventually(told_away)
    assert notice["text"] == AWAY
    [sent] = await routing.emails_to(email_of(FIONA))
    assert sent["Reply-To"] == f"Nora <{NORA_EMAIL}>"
    text = body_text(sent)
    assert "Hi, anyone?" in text and "40 seats" in text
    await routing.settled(accepted)
    assert routing.dm_parents() == {ALICE: 1, BOB: 1}
    assert len(routing.inbox.messages) == 1


async def test_debounced_email_is_not_sent_when_a_rep_picks_up(routing_each_db: Routing) -> None:
    """The chat went offline after nobody answered in time; Alice answers after all, before the
    email is due: the visitor has her answer, and nobody gets an email."""
    routing = routing_each_db
    await routing.configure(
        route_users=[ALICE], escalation_seconds=ESCALATION_SECONDS, offline_fallback=FIONA
    )

    accepted = await routing.starts(email=NORA_EMAIL)
    parent = await routing.parent_in(f"D{ALICE}")

    async def email_pending() -> Timer | None:
        timer = (await routing.timers_of(accepted)).get("offline_email")
        return timer if timer is not None and timer.status == "pending" else None

    timer = await eventually(email_pending)
    # "Before the email is due" must not depend on how fast a loaded machine relays the reply.
    async with routing.runtime.sessions() as session, session.begin():
        await session.execute(
            update(Timer).where(Timer.id == timer.id).values(due_at=utcnow() + timedelta(minutes=5))
        )
    await routing.rep_replies(ALICE, parent, "Sorry, I'm here now!")

    await past(timer.due_at)
    await routing.runtime.timers.run_once()
    await routing.runtime.delivery.run_once()
    async with routing.runtime.sessions() as session:
        status = await session.scalar(select(Timer.status).where(Timer.id == timer.id))
    assert status == "cancelled"
    assert routing.inbox.messages == []
    assert await routing.emails_owed() == []
    feed = await routing.feed(accepted)
    assert [m["text"] for m in feed if m["author"] == "rep"] == ["Sorry, I'm here now!"]
