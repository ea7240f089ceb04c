"""Admins set up routing without leaving Slack: `/chatrouting` opens the chatflows modal, the
edit modal saves the seed's three options (route, offline fallback, rotate to owner) and more,
answers bad input inline, rotates a secret; the teams modal manages slackrouter teams. Someone
who is not an admin gets none of it, even with forged payloads, and is told why.

SQLite only: what is checked here does not depend on the database.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from slackrouter.adapters.db.models import Chatflow, Team
from slackrouter.services.admins import NOT_ADMIN
from tests.scenario.conftest import ALICE, BOB, CAROL, Chat, eventually
from tests.scenario.slack_surfaces import (
    ADA,
    EVE,
    Workspace,
    chatflow_form,
    text_of,
    workspace_fixture,  # noqa: F401
)

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


async def chatflows_modal(workspace: Workspace, text: str = "") -> dict[str, Any]:
    assert await workspace.command(ADA, text) == {}  # the answer is the modal
    return await eventually(lambda: workspace.views("chatflows") and workspace.view("chatflows"))


async def test_an_admin_creates_a_chatflow_with_the_seeds_three_options(
    chat: Chat, workspace: Workspace
) -> None:
    listing = await chatflows_modal(workspace)
    assert "*Sales*" in text_of(listing)
    assert "to <@U0ALICE>, <@U0BOB> · in DMs · all at once · no offline fallback" in text_of(
        listing
    )

    await workspace.click_in_view(ADA, listing, "chatflow_new")
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    assert json.loads(form["private_metadata"])["list"] == listing["id"]
    answer = await workspace.submit(
        ADA,
        form,
        chatflow_form(
            name="Enterprise",
            users=(CAROL,),
            fallback=BOB,
            owners_first=True,
            assignment="round_robin",
            escalation="90",
            note_mode="reverse",
            prefix="//",
            welcome="Welcome to Acme Enterprise!",
        ),
    )
    assert answer == {}  # saved: the modal closes
    saved = await workspace.chatflow("Enterprise")
    assert (saved.route_users, saved.offline_fallback, saved.rotate_to_owner) == (
        [CAROL],
        BOB,
        True,
    )
    assert (saved.assignment, saved.escalation_seconds, saved.note_mode, saved.note_prefix) == (
        "round_robin",
        90,
        "reverse",
        "//",
    )
    assert saved.welcome_message == "Welcome to Acme Enterprise!"

    # The list it was opened from now shows it.
    await eventually(lambda: "*Enterprise*" in text_of(workspace.view("chatflows")))
    assert "fallback <@U0BOB> · owners first · notes unless sent" in text_of(
        workspace.view("chatflows")
    )

    # And it routes: a visitor on the new chatflow reaches Carol.
    await chat.presence(**{CAROL: "active"})
    response = await chat.http.post(
        f"/v1/chatflows/{saved.public_key}/messages",
        json={"visitor_id": "v9", "client_message_id": "m1", "text": "Hi!"},
    )
    assert [a["name"] for a in response.json()["agents"]] == ["Carol"]


async def test_editing_shows_the_keys_and_saves_only_what_changed(
    chat: Chat, workspace: Workspace
) -> None:
    sales = await workspace.chatflow()
    listing = await chatflows_modal(workspace, "chatflows")
    await workspace.click_in_view(ADA, listing, "chatflow_edit", sales.id)
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    shown = text_of(form)
    assert sales.public_key in shown and sales.signing_secret in shown
    answer = await workspace.submit(
        ADA,
        form,
        chatflow_form(name="Sales", users=(ALICE,), fallback=CAROL, away="Back at nine."),
    )
    assert answer == {}
    saved = await workspace.chatflow()
    assert (saved.route_users, saved.offline_fallback, saved.away_message) == (
        [ALICE],
        CAROL,
        "Back at nine.",
    )
    assert saved.out_of_hours_message == sales.out_of_hours_message  # not in the modal: kept


async def test_bad_settings_are_answered_inline_and_nothing_is_saved(
    chat: Chat, workspace: Workspace
) -> None:
    sales = await workspace.chatflow()
    listing = await chatflows_modal(workspace)
    await workspace.click_in_view(ADA, listing, "chatflow_edit", sales.id)
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    answer = await workspace.submit(
        ADA, form, chatflow_form(name=" ", escalation="0", prefix="", welcome="  ")
    )
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {
        "name": "must not be empty",
        "route_users": (
            "route chats to at least one person or team (or set an offline fallback or a "
            "channel, so that chats are not lost)"
        ),
        "escalation_seconds": "a whole number of seconds from 1 to 86,400",
        "note_prefix": "must not be empty",
        "welcome_message": "must not be empty",
    }
    await workspace.click_in_view(ADA, listing, "chatflow_new")
    new_form = await eventually(
        lambda: len(workspace.views("chatflow_edit")) == 2 and workspace.view("chatflow_edit")
    )
    answer = await workspace.submit(ADA, new_form, chatflow_form(name="sales", users=(BOB,)))
    assert answer["errors"] == {"name": "a chatflow called 'Sales' already exists"}
    unchanged = await workspace.chatflow()
    assert (unchanged.name, unchanged.escalation_seconds, unchanged.note_prefix) == (
        "Sales",
        sales.escalation_seconds,
        sales.note_prefix,
    )
    async with chat.runtime.sessions() as session:
        assert len(list(await session.scalars(select(Chatflow)))) == 1


async def test_rotating_the_secret_shows_the_new_one(chat: Chat, workspace: Workspace) -> None:
    sales = await workspace.chatflow()
    listing = await chatflows_modal(workspace)
    await workspace.click_in_view(ADA, listing, "chatflow_edit", sales.id)
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    await workspace.click_in_view(ADA, form, "chatflow_rotate_secret", sales.id)

    async def rotated() -> Chatflow | None:
        now = await workspace.chatflow()
        return now if now.signing_secret != sales.signing_secret else None

    new = await eventually(rotated)
    await eventually(lambda: new.signing_secret in text_of(workspace.view("chatflow_edit")))
    assert sales.signing_secret not in text_of(workspace.view("chatflow_edit"))


async def test_an_admin_manages_slackrouter_teams(chat: Chat, workspace: Workspace) -> None:
    assert await workspace.command(ADA, "teams") == {}
    teams = await eventually(lambda: workspace.views("teams") and workspace.view("teams"))
    assert "*0 slackrouter teams.*" in text_of(teams)
    await workspace.click_in_view(ADA, teams, "team_new")
    form = await eventually(lambda: workspace.views("team_edit") and workspace.view("team_edit"))
    members = {"members": {"members": {"type": "multi_users_select", "selected_users": [CAROL]}}}
    name = {"name": {"name": {"type": "plain_text_input", "value": "Night shift"}}}
    assert await workspace.submit(ADA, form, {**name, **members}) == {}
    await eventually(
        lambda: "*Night shift* · 1 members: <@U0CAROL>" in text_of(workspace.view("teams"))
    )
    async with chat.runtime.sessions() as session:
        team = await session.scalar(select(Team))
    assert team is not None and team.members == [CAROL]

    # The chatflow modal offers it as you type, by name.
    sales = await workspace.chatflow()
    await workspace.click_in_view(ADA, await chatflows_modal(workspace), "chatflow_edit", sales.id)
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    options = await workspace.suggest(ADA, form, "route_teams", "NIGHT")
    assert [(o["text"]["text"], o["value"]) for o in options] == [("Night shift", team.id)]
    await workspace.submit(ADA, form, chatflow_form(name="Sales", users=(ALICE,), teams=(team.id,)))
    assert (await workspace.chatflow()).route_teams == [team.id]

    # Renaming: to nothing is answered inline. Deleting takes the team off the route.
    await workspace.click_in_view(ADA, workspace.view("teams"), "team_edit", team.id)
    edit = await eventually(
        lambda: len(workspace.views("team_edit")) == 2 and workspace.view("team_edit")
    )
    answer = await workspace.submit(ADA, edit, {"name": {"name": {"value": " "}}, **members})
    assert answer == {"response_action": "errors", "errors": {"name": "must not be empty"}}
    renamed = {"name": {"name": {"value": "Night owls"}}, **members}
    assert await workspace.submit(ADA, edit, renamed) == {}
    await eventually(lambda: "*Night owls*" in text_of(workspace.view("teams")))

    await workspace.click_in_view(ADA, edit, "team_delete", team.id)
    await eventually(lambda: "*0 slackrouter teams.*" in text_of(workspace.view("teams")))
    assert (await workspace.chatflow()).route_teams == []


ADMIN_CLICKS = [
    ("chatflows_open", None),
    ("chatflows_page", "1"),
    ("chatflow_new", None),
    ("chatflow_edit", "SALES"),
    ("chatflow_rotate_secret", "SALES"),
    ("teams_open", None),
    ("teams_page", "1"),
    ("team_new", None),
    ("team_edit", "TEAM"),
    ("team_delete", "TEAM"),
]


async def test_a_non_admin_clicking_any_admin_button_changes_nothing_and_is_told_why(
    chat: Chat, workspace: Workspace
) -> None:
    sales = await workspace.chatflow()
    team = await chat.runtime.directory.create_team(
        team_id=chat.slack.team_id, name="Night shift", members=[CAROL]
    )
    home = await workspace.open_home(EVE)
    assert "Routing" not in text_of(home) and sales.public_key not in text_of(home)
    for clicks, (action_id, value) in enumerate(ADMIN_CLICKS, start=1):
        forged = {"SALES": sales.id, "TEAM": team.id}.get(value or "", value)
        await workspace.click_in_view(EVE, home, action_id, forged)
        notices = await eventually(lambda n=clicks: len(workspace.views("notice")) == n)
        assert notices, action_id
        assert NOT_ADMIN in text_of(workspace.view("notice")), action_id
    assert {v["callback_id"] for v in chat.slack.views.values()} == {"notice"}
    assert (await workspace.chatflow()).signing_secret == sales.signing_secret
    assert [t.id for t in await chat.runtime.directory.list_teams(team_id=chat.slack.team_id)] == [
        team.id
    ]


async def test_a_non_admin_gets_no_admin_command_and_no_forged_submission_is_saved(
    chat: Chat, workspace: Workspace
) -> None:
    for text in ("", "chatflows", "teams"):
        answer = await workspace.command(EVE, text)
        assert answer["text"] == NOT_ADMIN
        assert "`/chatrouting status`" in text_of(answer)
    assert chat.slack.views == {}

    # Forged: the admins' edit modal, submitted by Eve.
    sales = await workspace.chatflow()
    listing = await chatflows_modal(workspace)
    await workspace.click_in_view(ADA, listing, "chatflow_edit", sales.id)
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    answer = await workspace.submit(EVE, form, chatflow_form(name="Mine", users=(EVE,)))
    assert answer == {"response_action": "errors", "errors": {"name": NOT_ADMIN}}
    assert (await workspace.chatflow()).route_users == [ALICE, BOB]

    answer = await workspace.submit(
        EVE,
        {"callback_id": "team_edit", "private_metadata": json.dumps({"id": None})},
        {"name": {"name": {"value": "Eve's team"}}},
    )
    assert answer == {"response_action": "errors", "errors": {"name": NOT_ADMIN}}
    assert await chat.runtime.directory.list_teams(team_id=chat.slack.team_id) == []
