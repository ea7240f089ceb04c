"""How a routed chat reaches the reps: `all` or `round_robin`, in DMs or in the chatflow's
channel, with the routing explanation on the parent message.

Round robin runs on SQLite and PostgreSQL (its memory is in the database and must hold under
concurrent chats and across restarts); the rest on SQLite only.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from slackrouter.sandbox.fake_slack import pings_in
from tests.scenario.conftest import ALICE, BOB, CAROL, eventually
from tests.scenario.routing_fixtures import (
    DAVE,
    ESCALATION_SECONDS,
    Routing,
    context_lines,
    routing_each_db_fixture,  # noqa: F401
    routing_fixture,  # noqa: F401
    smtp_server_fixture,  # noqa: F401
    sqlite_database_fixture,  # noqa: F401
)


async def assigned(routing: Routing, visitor: str) -> str:
    """A new visitor's first message; the one rep it was given to."""
    accepted = await routing.starts(visitor_id=visitor)
    [agent] = accepted["agents"]
    return str(agent["name"])


async def test_round_robin_order_and_fairness(routing_each_db: Routing) -> None:
    routing = routing_each_db
    await routing.configure(route_users=[ALICE, BOB, CAROL], assignment="round_robin")

    assert [await assigned(routing, f"v{n}") for n in (1, 2)] == ["Alice", "Bob"]
    # The rotation is in the database: a restarted app carries on where it was.
    await routing.restart()
    assert [await assigned(routing, f"v{n}") for n in (3, 4, 5, 6)] == [
        "Carol",
        "Alice",
        "Bob",
        "Carol",
    ]
    # Someone away is skipped, and comes first when back: they got a chat least recently.
    await routing.presence(**{ALICE: "away"})
    assert [await assigned(routing, f"v{n}") for n in (7, 8)] == ["Bob", "Carol"]
    await routing.presence(**{ALICE: "active"})
    assert await assigned(routing, "v9") == "Alice"
    await eventually(lambda: routing.dm_parents() == {ALICE: 3, BOB: 3, CAROL: 3})


async def test_round_robin_stays_fair_under_concurrent_chats(routing_each_db: Routing) -> None:
    """Twelve visitors write at once: the rotation still gives each of three reps four."""
    routing = routing_each_db
    await routing.configure(route_users=[ALICE, BOB, CAROL], assignment="round_robin")

    names = await asyncio.gather(*(assigned(routing, f"v{n}") for n in range(12)))
    assert Counter(names) == {"Alice": 4, "Bob": 4, "Carol": 4}, names
    await eventually(lambda: routing.dm_parents() == {ALICE: 4, BOB: 4, CAROL: 4})


async def test_a_chat_escalated_to_a_rep_counts_as_their_turn(routing_each_db: Routing) -> None:
    """Alice does not answer her chat in time and it is offered to Bob, next in line: that was
    his turn, so the next new chat goes to Carol."""
    routing = routing_each_db
    await routing.configure(
        route_users=[ALICE, BOB, CAROL], assignment="round_robin", escalation_seconds=3
    )

    assert await assigned(routing, "v1") == "Alice"
    await routing.parent_in(f"D{BOB}")  # escalated (and due to move on to Carol 3 s later)
    assert await assigned(routing, "v2") == "Carol"


async def test_round_robin_greeting_shows_the_rep_next_in_line(routing: Routing) -> None:
    await routing.configure(route_users=[ALICE, BOB], assignment="round_robin")

    assert [a["name"] for a in (await routing.greeting())["agents"]] == ["Alice"]
    assert await assigned(routing, "v1") == "Alice"
    assert [a["name"] for a in (await routing.greeting())["agents"]] == ["Bob"]


async def test_channel_delivery(routing: Routing) -> None:
    routing.add_channel("C0SALES", "sales-chats")
    await routing.configure(route_users=[ALICE, BOB, CAROL], channel_id="C0SALES")
    await routing.presence(**{CAROL: "away"})

    accepted = await routing.starts("Hi <!channel>, ping <@U0DAVE>?")
    assert sorted(a["name"] for a in accepted["agents"]) == ["Alice", "Bob"]
    parent = await routing.parent_in("C0SALES")
    # One parent, in the channel, mentioning exactly the available reps; the visitor's text
    # pings nobody.
    assert pings_in(parent["params"]) == [f"<@{ALICE}>", f"<@{BOB}>"]
    await routing.settled(accepted)
    assert [p["channel"] for p in routing.posts()] == ["C0SALES"]

    # The first to reply in the thread owns the chat; replies are relayed as in DMs.
    await routing.rep_replies(BOB, parent, "Hi! Bob here, how can I help?")
    await routing.rep_replies(ALICE, parent, ";; Bob's got this one")
    assert (await routing.conversation(accepted)).assignee == BOB
    await routing.rep_replies(ALICE, parent, "And Alice, if you need billing.")
    feed = await routing.feed(accepted)
    assert [(m["author"], m["author_name"], m["text"]) for m in feed] == [
        ("visitor", None, "Hi <!channel>, ping <@U0DAVE>?"),
        ("rep", "Bob", "Hi! Bob here, how can I help?"),
        ("rep", "Alice", "And Alice, if you need billing."),
    ]
    assert (await routing.conversation(accepted)).assignee == BOB
    # The visitor's next message goes into the same thread.
    await routing.visitor_says("Great, thanks")

    def thread_replies() -> list[dict]:
        return [p for p in routing.posts("C0SALES") if p.get("thread_ts") == parent["ts"]]

    [reply] = await eventually(thread_replies)
    assert "Great, thanks" in str(reply["blocks"])
    assert pings_in(reply) == []
    assert routing.dm_parents() == {}


async def test_escalation_in_a_channel_mentions_the_next_rep_in_the_chats_thread(
    routing: Routing,
) -> None:
    routing.add_channel("C0SALES", "sales-chats")
    await routing.configure(
        route_users=[ALICE, BOB],
        channel_id="C0SALES",
        assignment="round_robin",
        escalation_seconds=ESCALATION_SECONDS,
    )

    accepted = await routing.starts()
    parent = await routing.parent_in("C0SALES")
    assert pings_in(parent["params"]) == [f"<@{ALICE}>"]

    # Alice does not answer in time: Bob is asked, in the chat's thread, not in a new parent.
    def in_thread() -> list[dict]:
        return [p for p in routing.posts("C0SALES") if p.get("thread_ts") == parent["ts"]]

    [asked] = await eventually(in_thread)
    assert pings_in(asked) == [f"<@{BOB}>"]
    await routing.rep_replies(BOB, parent, "Bob here, sorry for the wait!")
    assert (await routing.conversation(accepted)).assignee == BOB
    assert len(routing.parents("C0SALES")) == 1
    assert routing.dm_parents() == {}


async def test_round_robin_in_a_channel_mentions_one_rep(routing: Routing) -> None:
    routing.add_channel("C0SALES", "sales-chats")
    await routing.configure(
        route_users=[ALICE, BOB], channel_id="C0SALES", assignment="round_robin"
    )

    await routing.starts(visitor_id="v1")
    await routing.starts(visitor_id="v2")
    first = await routing.parent_in("C0SALES", index=0)
    second = await routing.parent_in("C0SALES", index=1)
    assert pings_in(first["params"]) == [f"<@{ALICE}>"]
    assert pings_in(second["params"]) == [f"<@{BOB}>"]


async def test_the_routing_explanation_shows_in_the_parent_messages_context_line(
    routing: Routing,
) -> None:
    await routing.configure(route_users=[ALICE, BOB, CAROL, DAVE])
    routing.slack.set_dnd(BOB, True)
    await routing.presence(**{DAVE: "away"})
    await routing.runtime.presence.set_opted_in(
        team_id=routing.slack.team_id, user_id=CAROL, opted_in=False
    )

    accepted = await routing.starts()
    parent = await routing.parent_in(f"D{ALICE}")
    expected = (
        "route (all): offered to Alice; candidates: Alice, Bob, Carol, Dave; "
        "available: Alice; not available: Bob dnd, Carol opted out, Dave away"
    )
    assert expected in context_lines(parent["params"])
    assert pings_in(parent["params"]) == []
    # Kept for the admins' views as well.
    assert (await routing.conversation(accepted)).routing["explanation"] == expected


async def test_a_burst_of_messages_is_stored_exactly_as_one_at_a_time(
    routing_each_db: Routing,
) -> None:
    """Messages arriving together are written together: each still gets its own answer, a
    visitor's two messages sent at once share one conversation (in the order sent), a retried
    message is answered as the one stored, and a wrong chatflow key fails alone."""
    routing = routing_each_db
    await routing.configure(route_users=[ALICE, BOB, CAROL], assignment="round_robin")

    async def say(visitor: str, client_id: str, text: str, key: str | None = None) -> Any:
        return await routing.http.post(
            f"/v1/chatflows/{key or routing.public_key}/messages",
            json={"visitor_id": visitor, "client_message_id": client_id, "text": text},
        )

    burst = [say(f"v{n}", "m1", f"Hello from v{n}") for n in range(9)]
    burst += [say("twice", "m1", "First"), say("twice", "m2", "Second")]
    burst += [say("v0", "m1", "Hello from v0"), say("v1", "m1", "Hello from v1")]
    burst += [say("lost", "m1", "Anyone?", key="no-such-chatflow")]
    answers = await asyncio.gather(*burst)

    *firsts, first, second, retry0, retry1, unknown = answers
    assert [a.status_code for a in firsts] == [201] * 9
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["conversation_id"] == second.json()["conversation_id"]
    assert {retry0.status_code, retry1.status_code} <= {200, 201}
    for original, retry in ((firsts[0], retry0), (firsts[1], retry1)):
        assert retry.json()["conversation_id"] == original.json()["conversation_id"]
        assert retry.json()["message_id"] == original.json()["message_id"]
    # Exactly one of a message and its retry is the stored one, the other the duplicate.
    assert sorted(a.json()["duplicate"] for a in (firsts[0], retry0)) == [False, True]
    assert unknown.status_code == 404

    # Round robin over the ten new conversations (nine visitors and "twice").
    names = [a.json()["agents"][0]["name"] for a in [*firsts, first]]
    assert sorted(Counter(names).values()) == [3, 3, 4], names
    feed = await routing.feed(first.json())
    assert [m["text"] for m in feed] == ["First", "Second"]
    await eventually(lambda: sum(routing.dm_parents().values()) == 10)
