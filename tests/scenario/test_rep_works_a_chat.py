"""A rep works a chat from first message to close without typing a command: the buttons on the
chat's first message, replies in its thread, and what the visitor sees. On both databases."""

from __future__ import annotations

from tests.scenario.conftest import ALICE, BOB, Chat, eventually
from tests.scenario.slack_surfaces import (
    EVE,
    Workspace,
    buttons_of,
    first_chat,
    text_of,
    workspace_fixture,  # noqa: F401
)


async def test_claim_reply_close_and_the_visitor_sees_the_end(
    chat: Chat, workspace: Workspace
) -> None:
    started = await first_chat(chat)
    conversation, token = started["conversation_id"], started["conversation_token"]
    alice_dm, parent_ts = f"D{ALICE}", started["ts"]
    assert buttons_of(workspace.parent(alice_dm, parent_ts)) == ["Claim", "Transfer", "Close"]

    await workspace.click_in_message(ALICE, alice_dm, parent_ts, "chat_claim")
    await workspace.told_eventually(ALICE, "You have this chat now")

    bob_parent = (await chat.parent_post(BOB))["ts"]

    def says_alice_has_it() -> bool:
        alice = workspace.parent(alice_dm, parent_ts)
        bob = workspace.parent(f"D{BOB}", bob_parent)
        return all(
            "Alice has this chat" in text_of(m) and buttons_of(m) == ["Transfer", "Close"]
            for m in (alice, bob)
        )

    await eventually(says_alice_has_it)

    await chat.slack.user_posts(ALICE, alice_dm, "We ship to Norway in 3 days.", parent_ts)
    await workspace.click_in_message(ALICE, alice_dm, parent_ts, "chat_close")
    await workspace.told_eventually(ALICE, "Closed. The visitor was told")

    feed = (await chat.read(conversation, token)).json()
    assert feed["status"] == "closed"
    assert [(m["author"], m["text"]) for m in feed["messages"]] == [
        ("visitor", "Hello, do you ship to Norway?"),
        ("rep", "We ship to Norway in 3 days."),
        ("system", "This chat has ended. Write again any time to start a new one."),
    ]

    def closed_everywhere() -> bool:
        return all(
            "Closed by Alice" in text_of(m) and buttons_of(m) == []
            for m in (
                workspace.parent(alice_dm, parent_ts),
                workspace.parent(f"D{BOB}", bob_parent),
            )
        )

    await eventually(closed_everywhere)

    # After the close, the thread stays in Slack: a late reply never reaches the visitor.
    await chat.slack.user_posts(ALICE, alice_dm, "One more thing!", parent_ts)
    later = (await chat.read(conversation, token, after=feed["cursor"])).json()
    assert later["messages"] == []


async def test_only_reps_of_the_chat_can_claim_or_close_it(
    chat: Chat, workspace: Workspace
) -> None:
    started = await first_chat(chat)
    alice_dm, parent_ts = f"D{ALICE}", started["ts"]
    for action in ("chat_claim", "chat_close"):
        await workspace.click_in_message(EVE, alice_dm, parent_ts, action)
    refusals = await eventually(lambda: len(workspace.told(EVE)) == 2 and workspace.told(EVE))
    assert all(t.startswith("Only the reps this chat was routed to") for t in refusals)
    saved = await workspace.conversation(started["conversation_id"])
    assert (saved.status, saved.assignee) == ("open", None)

    await workspace.click_in_message(ALICE, alice_dm, parent_ts, "chat_claim")
    await workspace.told_eventually(ALICE, "You have this chat now")
    bob_parent = (await chat.parent_post(BOB))["ts"]
    await workspace.click_in_message(BOB, f"D{BOB}", bob_parent, "chat_claim")
    assert "<@U0ALICE> already has this chat" in await workspace.told_eventually(BOB, "already")
    assert (await workspace.conversation(started["conversation_id"])).assignee == ALICE
