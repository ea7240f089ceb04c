"""What every rep has in Slack: `/chatrouting available|away|status|help`, Transfer, the "Send to
visitor" shortcut on thread notes (and reverse notes, where a slip never reaches the visitor),
and the App Home tab. Each for someone allowed and someone who is not.

SQLite only: what is checked here does not depend on the database.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from slackrouter.adapters.db.models import Chatflow, Rep
from slackrouter.adapters.slack.admin_blocks import HELP
from slackrouter.services.chat_actions import NOT_A_REP
from tests.scenario.conftest import ALICE, BOB, CAROL, Chat, eventually
from tests.scenario.slack_surfaces import (
    ADA,
    EVE,
    Workspace,
    buttons_of,
    first_chat,
    text_of,
    workspace_fixture,  # noqa: F401
)

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


async def opted_in(chat: Chat, user_id: str) -> bool:
    async with chat.runtime.sessions() as session:
        rep = await session.get_one(Rep, (chat.slack.team_id, user_id))
        return rep.opted_in


async def test_available_and_away_for_a_rep_and_for_an_admin(
    chat: Chat, workspace: Workspace
) -> None:
    answer = await workspace.command(ALICE, "away")
    assert answer["text"] == "You're not taking chats until you say `/chatrouting available`."
    assert not await opted_in(chat, ALICE)
    response = await chat.visitor_says("Hello?")
    assert response.status_code == 201, response.text
    accepted = response.json()
    assert [a["name"] for a in accepted["agents"]] == ["Bob"]

    answer = await workspace.command(ALICE, "available")
    assert answer["text"].startswith("You're taking chats")
    assert await opted_in(chat, ALICE)

    assert (await workspace.command(ADA, "AWAY"))["text"].startswith("You're not taking chats")
    assert not await opted_in(chat, ADA)


async def test_status_says_who_can_take_chats_and_why_the_others_cannot(
    chat: Chat, workspace: Workspace
) -> None:
    await chat.presence(**{BOB: "away"})
    for asker in (EVE, ADA):
        answer = await workspace.command(asker, "status")
        assert answer["text"] == "Who can take chats now"
        assert "*Sales*: available: <@U0ALICE>\\naway in Slack: <@U0BOB>" in text_of(answer)


async def test_help_and_an_unknown_subcommand(chat: Chat, workspace: Workspace) -> None:
    answer = await workspace.command(EVE, "help")
    assert answer["text"] == HELP
    answer = await workspace.command(ADA, "frobnicate <!channel>")
    assert "`frobnicate` is not a /chatrouting command." in text_of(answer)
    assert "`/chatrouting available`" in text_of(answer)


async def test_transfer_to_a_person_hands_them_the_chat(chat: Chat, workspace: Workspace) -> None:
    await chat.presence(**{CAROL: "active"})
    started = await first_chat(chat)
    await chat.visitor_says("And to Sweden?", name="Nora")
    alice_dm, ts = f"D{ALICE}", started["ts"]

    await workspace.click_in_message(ALICE, alice_dm, ts, "chat_transfer")
    form = await eventually(
        lambda: workspace.views("chat_transfer") and workspace.view("chat_transfer")
    )
    assert "The chat with *Nora* on *Sales*." in text_of(form)
    to_carol = {"to_user": {"to_user": {"type": "users_select", "selected_user": CAROL}}}
    assert await workspace.submit(ALICE, form, to_carol) == {}
    assert await workspace.told_eventually(ALICE, "Transferred") == "Transferred to <@U0CAROL>."

    carol = await chat.parent_post(CAROL)
    assert (await workspace.conversation(started["conversation_id"])).assignee == CAROL

    def carol_has_all() -> bool:
        thread = chat.slack.thread(f"D{CAROL}", carol["ts"])
        return "And to Sweden?" in text_of(thread[-1]) if len(thread) == 2 else False

    await eventually(carol_has_all)
    await eventually(lambda: "Carol has this chat" in text_of(workspace.parent(alice_dm, ts)))
    assert "transferred by Alice" in text_of(workspace.parent(f"D{CAROL}", carol["ts"]))

    # Carol answers in her thread, and the visitor reads it.
    await chat.slack.user_posts(CAROL, f"D{CAROL}", "Sweden too!", carol["ts"])
    feed = (await chat.read(started["conversation_id"], started["conversation_token"])).json()
    assert feed["messages"][-1]["text"] == "Sweden too!"


async def test_transfer_to_a_team_offers_it_to_its_available_members(
    chat: Chat, workspace: Workspace
) -> None:
    team = await chat.runtime.directory.create_team(
        team_id=chat.slack.team_id, name="Nordics", members=[ALICE, CAROL]
    )
    await chat.presence(**{CAROL: "active"})
    started = await first_chat(chat)
    await workspace.click_in_message(ALICE, f"D{ALICE}", started["ts"], "chat_transfer")
    form = await eventually(
        lambda: workspace.views("chat_transfer") and workspace.view("chat_transfer")
    )
    options = await workspace.suggest(ALICE, form, "transfer_team", "nor")
    assert [o["value"] for o in options] == [team.id]
    to_team = {
        "to_team": {"transfer_team": {"type": "external_select", "selected_option": options[0]}}
    }
    assert await workspace.submit(ALICE, form, to_team) == {}
    answer = await workspace.told_eventually(ALICE, "Nordics")
    assert answer == "Offered to Nordics: <@U0CAROL>."  # Alice, who transfers it, is left out
    await chat.parent_post(CAROL)


async def test_transfer_is_refused_when_nobody_can_take_it_or_the_user_is_no_rep(
    chat: Chat, workspace: Workspace
) -> None:
    await chat.presence(**{CAROL: "away"})
    started = await first_chat(chat)
    await workspace.click_in_message(ALICE, f"D{ALICE}", started["ts"], "chat_transfer")
    form = await eventually(
        lambda: workspace.views("chat_transfer") and workspace.view("chat_transfer")
    )
    to_carol = {"to_user": {"to_user": {"type": "users_select", "selected_user": CAROL}}}
    answer = await workspace.submit(ALICE, form, to_carol)
    assert answer == {
        "response_action": "errors",
        "errors": {
            "to_user": "<@U0CAROL> can't take the chat now (<@U0CAROL> is away); "
            "it stays where it is."
        },
    }
    assert await workspace.submit(ALICE, form, {}) == {
        "response_action": "errors",
        "errors": {"to_user": "Choose a person or a team, not both."},
    }

    await workspace.click_in_message(EVE, f"D{ALICE}", started["ts"], "chat_transfer")
    assert await workspace.told_eventually(EVE, "Only") == NOT_A_REP
    assert len(workspace.views("chat_transfer")) == 1  # no modal for Eve
    forged = await workspace.submit(EVE, form, to_carol)
    assert forged == {"response_action": "errors", "errors": {"to_user": NOT_A_REP}}
    saved = await workspace.conversation(started["conversation_id"])
    assert (saved.assignee, saved.offered) == (None, [ALICE, BOB])


async def use_reverse_notes(chat: Chat) -> None:
    async with chat.runtime.sessions() as session, session.begin():
        chatflow = await session.scalar(select(Chatflow))
        assert chatflow is not None
        chatflow.note_mode = "reverse"


async def test_with_reverse_notes_a_slip_never_reaches_the_visitor(
    chat: Chat, workspace: Workspace
) -> None:
    await use_reverse_notes(chat)
    started = await first_chat(chat)
    conversation, token = started["conversation_id"], started["conversation_token"]
    alice_dm, ts = f"D{ALICE}", started["ts"]
    assert "Messages in this thread are internal notes" in text_of(workspace.parent(alice_dm, ts))

    slip = await chat.slack.user_posts(ALICE, alice_dm, "She's a VIP, offer 20%", ts)
    answer = await chat.slack.user_posts(ALICE, alice_dm, "Yes, we ship to <@U0BOB>'s Oslo!", ts)
    feed = (await chat.read(conversation, token)).json()
    assert [m["author"] for m in feed["messages"]] == ["visitor"]

    await workspace.shortcut(ALICE, alice_dm, answer["event"]["ts"])
    assert await workspace.told_eventually(ALICE, "Sent") == "Sent to the visitor."
    feed = (await chat.read(conversation, token)).json()
    assert [(m["author"], m["text"]) for m in feed["messages"]][1:] == [
        ("rep", "Yes, we ship to @Bob's Oslo!")
    ]
    assert (await workspace.conversation(conversation)).assignee == ALICE

    # Others cannot send Alice's note, and a message goes to the visitor only once.
    await workspace.shortcut(BOB, alice_dm, slip["event"]["ts"])
    assert "Only the note's author" in await workspace.told_eventually(BOB, "Only")
    await workspace.shortcut(EVE, alice_dm, slip["event"]["ts"])
    assert "Only the note's author" in await workspace.told_eventually(EVE, "Only")
    await workspace.shortcut(ALICE, alice_dm, answer["event"]["ts"])
    await workspace.told_eventually(ALICE, "The visitor already has this message.")
    await workspace.shortcut(ALICE, alice_dm, ts)
    await workspace.told_eventually(ALICE, "Only a note written in a chat's thread")
    feed = (await chat.read(conversation, token)).json()
    assert len(feed["messages"]) == 2


async def test_a_prefixed_note_is_sent_without_its_prefix(chat: Chat, workspace: Workspace) -> None:
    started = await first_chat(chat)
    note = await chat.slack.user_posts(ALICE, f"D{ALICE}", ";; Thanks for waiting!", started["ts"])
    await workspace.shortcut(ALICE, f"D{ALICE}", note["event"]["ts"])
    await workspace.told_eventually(ALICE, "Sent to the visitor.")
    feed = (await chat.read(started["conversation_id"], started["conversation_token"])).json()
    assert feed["messages"][-1]["text"] == "Thanks for waiting!"


async def test_a_reps_app_home_shows_availability_and_their_chats(
    chat: Chat, workspace: Workspace
) -> None:
    started = await first_chat(chat)
    home = await workspace.open_home(ALICE)
    shown = text_of(home)
    assert "*You're taking chats.*" in shown and "Slack presence: active" in shown
    assert "*Open chats* (1)" in shown
    link = f"https://acme.slack.com/archives/D{ALICE}/p{started['ts'].replace('.', '')}"
    assert f"*Nora* · Sales · waiting for someone to claim it · <{link}|Open the thread>" in shown
    assert "Routing" not in shown

    # Claiming it elsewhere refreshes the tab by itself.
    await workspace.click_in_message(ALICE, f"D{ALICE}", started["ts"], "chat_claim")
    await eventually(lambda: "*Nora* · Sales · yours" in text_of(workspace.home(ALICE)))

    # The toggle: Alice stops taking chats.
    await workspace.click_in_view(ALICE, workspace.home(ALICE), "home_availability", "away")
    await eventually(lambda: "*You're not taking chats.*" in text_of(workspace.home(ALICE)))
    assert not await opted_in(chat, ALICE)
    button = workspace.home(ALICE)["blocks"][1]["accessory"]
    assert (button["text"]["text"], button["value"]) == ("Take chats", "available")


async def test_an_admins_app_home_adds_routing_availability_and_missed_chats(
    chat: Chat, workspace: Workspace
) -> None:
    await chat.presence(**{BOB: "away"})
    home = await workspace.open_home(ADA)
    shown = text_of(home)
    assert "*Sales*\\nto <@U0ALICE>, <@U0BOB> · in DMs" in shown
    assert "*Available now* (1 of 2 on a route): <@U0ALICE>" in shown
    assert "*Missed chats, every chatflow* (0)" in shown
    edit = next(b for b in home["blocks"] if "Sales" in str(b.get("text")))["accessory"]
    assert edit["action_id"] == "chatflow_edit"

    await chat.presence(**{ALICE: "away"})
    missed = await chat.visitor_says("Anyone there?", name="Nils")
    assert missed.json()["status"] == "away"
    await chat.runtime.home.refresh(everyone=True)  # the regular sweep
    shown = text_of(workspace.home(ADA))
    assert "*Missed chats, every chatflow* (1)" in shown
    assert "*Nils* · Sales · nobody answered in time" in shown
    assert "nobody_available: no candidate is available" in shown

    # The Edit button opens the chatflow modal for an admin.
    await workspace.click_in_view(ADA, workspace.home(ADA), "chatflow_edit", edit["value"])
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    assert buttons_of(form) == []  # inputs, and the Rotate secret accessory
    assert "Rotate secret" in text_of(form)


async def test_an_admin_may_act_on_any_chat(chat: Chat, workspace: Workspace) -> None:
    await use_reverse_notes(chat)
    started = await first_chat(chat)
    alice_dm, ts = f"D{ALICE}", started["ts"]
    note = await chat.slack.user_posts(ALICE, alice_dm, "We can do next-day delivery.", ts)
    await workspace.shortcut(ADA, alice_dm, note["event"]["ts"])
    assert await workspace.told_eventually(ADA, "Sent") == "Sent to the visitor."

    await workspace.click_in_message(ADA, alice_dm, ts, "chat_claim")
    await workspace.told_eventually(ADA, "already has this chat")  # Alice's, by her note
    await workspace.click_in_message(ADA, alice_dm, ts, "chat_close")
    await workspace.told_eventually(ADA, "Closed.")
    saved = await workspace.conversation(started["conversation_id"])
    assert (saved.status, saved.closed_by, saved.assignee) == ("closed", ADA, ALICE)
    await eventually(lambda: buttons_of(workspace.parent(alice_dm, ts)) == [])
    assert "Closed by Ada" in text_of(workspace.parent(alice_dm, ts))

    # And the App Home's admin buttons open the lists.
    home = await workspace.open_home(ADA)
    await workspace.click_in_view(ADA, home, "chatflows_open")
    await workspace.click_in_view(ADA, home, "teams_open")
    await eventually(lambda: workspace.views("chatflows") and workspace.views("teams"))
    assert "*Sales*" in text_of(workspace.view("chatflows"))
