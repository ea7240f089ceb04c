"""Every surface the app builds stays within Slack's Block Kit limits for a big workspace (300
chatflows, 1,000 reps, 500 open chats, long names), and says honestly what it leaves out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from slackrouter.adapters.slack import admin_blocks, blocks, chat_blocks, home_blocks
from slackrouter.adapters.slack.kit import listing
from slackrouter.routing import Unavailable
from slackrouter.services.chatflow_admin import ChatflowSettings
from slackrouter.services.overview import (
    HOME_CHATFLOWS,
    HOME_CHATS,
    AdminOverview,
    ChatflowLine,
    ChatSummary,
    HomeOverview,
    RouteStatus,
)
from tests.blockkit_limits import problems

REPS = [f"U{n:08d}" for n in range(1000)]
LONG = "Ünïcode & <angle> brackets " * 20  # 540 characters, with characters to escape
TEAMS = {f"tm_{n:04d}": f"Team {n} {LONG}"[:200] for n in range(100)}
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def settings(n: int) -> ChatflowSettings:
    return ChatflowSettings(
        name=f"Chatflow {n} {LONG}"[:200],
        route_users=tuple(REPS),
        route_teams=tuple(TEAMS),
        channel_id="C0SALES" if n % 2 else None,
        offline_fallback=REPS[0],
        rotate_to_owner=True,
        assignment="round_robin",
        note_mode="reverse",
        welcome_message="w" * 3000,
        away_message="a" * 3000,
    )


LINES = [ChatflowLine(f"cf_{n:04d}", settings(n)) for n in range(300)]


def chat(n: int, state: str) -> ChatSummary:
    return ChatSummary(
        conversation_id=f"c{n}",
        visitor_name=f"<!channel> {LONG}"[:200],
        chatflow_name=LINES[n % 300].settings.name,
        state=state,
        link=f"https://acme.slack.com/archives/D0{n}/p1700000000{n:06d}",
        explanation="route (all): " + ", ".join(REPS[:300]),
        created_at=NOW,
    )


def test_the_chatflows_modal_pages_300_chatflows_routed_to_1000_reps() -> None:
    first = admin_blocks.chatflows_modal(LINES, TEAMS)
    assert problems("modal", first) == []
    text = json.dumps(first, ensure_ascii=False)
    assert "Chatflows 1 to 30 of 300" in text
    assert "<@U00000083> and 1016 more · in DMs" in text  # names some, counts the rest
    last = admin_blocks.chatflows_modal(LINES, TEAMS, page=99)
    assert problems("modal", last) == []
    assert "Chatflows 271 to 300 of 300" in json.dumps(last, ensure_ascii=False)
    pager = next(b for b in last["blocks"] if b.get("block_id") == "pager")
    assert [e["text"]["text"] for e in pager["elements"]] == ["Previous"]


def test_the_chatflow_modal_with_a_huge_route_and_long_texts() -> None:
    view = admin_blocks.chatflow_modal(
        "cf_0001",
        settings(1),
        TEAMS,
        public_key="pk_" + "k" * 24,
        signing_secret="s" * 43,
        list_view="V123",
        page=3,
    )
    assert problems("modal", view) == []
    route_teams = next(b for b in view["blocks"] if b.get("block_id") == "route_teams")
    assert len(route_teams["element"]["initial_options"]) == 100


def test_the_status_answer_for_300_chatflows_and_1000_reps_fits_a_message() -> None:
    reasons = list(Unavailable)
    routes = [
        RouteStatus(
            chatflow_id=line.chatflow_id,
            name=line.settings.name,
            available=tuple(REPS[:500]),
            unavailable=tuple((u, reasons[i % len(reasons)]) for i, u in enumerate(REPS[500:])),
        )
        for line in LINES
    ]
    body = {"blocks": admin_blocks.status_blocks(routes)}
    assert problems("message", body) == []
    assert "and 260 more chatflows, not shown here" in json.dumps(body, ensure_ascii=False)


def test_the_admins_app_home_with_500_open_chats_and_1000_available_reps() -> None:
    data = HomeOverview(
        user_id=REPS[0],
        opted_in=True,
        presence="active",
        dnd=True,
        chats=tuple(chat(n, "yours") for n in range(HOME_CHATS)),
        chats_total=500,
        missed=tuple(chat(n, "emailed") for n in range(HOME_CHATS)),
        missed_total=200,
        admin=AdminOverview(
            chatflows=tuple(LINES[:HOME_CHATFLOWS]),
            chatflow_total=300,
            team_names=TEAMS,
            available=tuple(REPS),
            routed_total=1000,
            missed=tuple(chat(n, "missed") for n in range(HOME_CHATS)),
            missed_total=200,
        ),
    )
    view = home_blocks.home_view(data)
    assert problems("home", view) == []
    text = json.dumps(view, ensure_ascii=False)
    assert "and 490 more, older" in text
    assert "and 285 more chatflows" in text
    assert "Available now* (1000 of 1000 on a route)" in text
    assert "<!channel>" not in text  # the visitor's name is escaped, never markup


def test_the_teams_modal_with_300_teams_of_500_members() -> None:
    class Team:
        def __init__(self, n: int) -> None:
            self.id, self.name, self.members = f"tm_{n}", f"Team {n} {LONG}"[:200], REPS[:500]

    view = admin_blocks.teams_modal([Team(n) for n in range(300)], page=4)
    assert problems("modal", view) == []
    assert problems("modal", admin_blocks.team_modal(Team(1))) == []


def test_a_chat_message_with_the_longest_visitor_text_and_every_button() -> None:
    text, body = blocks.parent_message(
        chatflow_name="x" * 200,
        visitor_name="<!everyone>" * 20,
        identity_verified=False,
        page_url="https://shop.example/" + "p" * 1900,
        text="&<>" * 1333,
        explanation="e" * 5000,
        mention=tuple(REPS[:30]),
        status="s" * 300,
        note_hint=blocks.note_hint("reverse", ";;"),
    )
    assert problems("message", {"blocks": body}) == []
    assert "<!everyone>" not in text


def test_the_transfer_and_notice_modals() -> None:
    view = chat_blocks.transfer_modal(
        conversation_id="c" * 32, channel="D0ALICE", visitor_name=LONG, chatflow_name=LONG
    )
    assert problems("modal", view) == []
    assert problems("modal", admin_blocks.notice_modal(LONG * 10)) == []


def test_listing_counts_what_does_not_fit() -> None:
    assert listing([], 100) == "nobody"
    assert listing(["a", "b"], 100) == "a, b"
    assert listing([f"<@{u}>" for u in REPS], 60) == (
        "<@U00000000>, <@U00000001>, <@U00000002> and 997 more"
    )
