"""Config as code: a workspace's routing exported to YAML and applied back, on a real database.
Export → apply → export gives the same file; a file restores the routing into an empty database;
a bad file is refused whole, with each problem named, by the same validation as the modal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import Chatflow, Team
from slackrouter.cli import main
from slackrouter.clock import utcnow
from slackrouter.services.chatflow_admin import ChatflowSettings, save_in
from slackrouter.services.routing_file import RoutingFileInvalid, apply_routing, export_routing
from slackrouter.services.widget_look import WidgetLook, look_of
from tests.conftest import Database

TEAM = "T0001"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
SALES_LOOK = {"title": "Talk to sales", "color": "#0b6e4f", "position": "left"}



async def a_workspace(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Every kind of setting: teams, user groups, a channel, hours, reverse notes, owners, a
    widget look (Sales; Support has the default look)."""
    now = utcnow()
    async with sessions() as session, session.begin():
        session.add(
            Team(
                id="tm_nordics", team_id=TEAM, name="Nordics", members=[BOB, CAROL], created_at=now
            )
        )
        session.add(
            Team(id="tm_other", team_id="T0002", name="Elsewhere", members=[ALICE], created_at=now)
        )
        await session.flush()
        sales = await save_in(
            session,
            team_id=TEAM,
            chatflow_id=None,
            settings=ChatflowSettings(
                name="Sales",
                route_users=(ALICE,),
                route_teams=("tm_nordics", "S0SALES"),
                offline_fallback=CAROL,
                rotate_to_owner=True,
                assignment="round_robin",
                escalation_seconds=45,
                note_mode="reverse",
                note_prefix="//",
                welcome_message="Hej! 👋 How can we help?\nAsk away.",
                hours={"timezone": "Europe/Oslo", "days": {"mon": [["09:00", "17:00"]]}},
            ),
            now=now,
        )
        sales.widget = dict(SALES_LOOK)  # as ChatflowSpec(widget=…) stores it
        await save_in(
            session,
            team_id=TEAM,
            chatflow_id=None,
            settings=ChatflowSettings(name="Support: yes/no", channel_id="C0SUPPORT"),
            now=now,
        )


async def a_file(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, dict[str, Any]]:
    """`a_workspace`'s routing file: as exported, and as data to edit."""
    await a_workspace(sessions)
    text = await export_routing(sessions, team_id=TEAM)
    return text, yaml.safe_load(text)


async def refusal(sessions: async_sessionmaker[AsyncSession], text: str) -> list[str]:
    """The problems apply names in refusing the file."""
    with pytest.raises(RoutingFileInvalid) as refused:
        await apply_routing(sessions, text=text, clock=utcnow)
    return refused.value.problems


async def test_export_apply_export_gives_the_same_file(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await a_workspace(sessions)
    exported = await export_routing(sessions, team_id=TEAM)
    document = yaml.safe_load(exported)
    assert [t["name"] for t in document["teams"]] == ["Nordics"]  # the workspace's own only
    sales = document["chatflows"][0]
    assert sales["route"] == {"users": [ALICE], "teams": ["tm_nordics", "S0SALES"]}
    assert sales["hours"] == {"timezone": "Europe/Oslo", "days": {"mon": ["09:00-17:00"]}}
    assert list(sales)[-2:] == ["hours", "widget"]
    look = "  widget:\n    color: '#0b6e4f'\n    position: left\n    title: Talk to sales\n"
    assert look in exported  # in the README table's order; colours quoted (# starts a comment)
    assert "widget" not in document["chatflows"][1]  # no look of its own: no key
    async with sessions() as session:
        secrets = [c.signing_secret for c in await session.scalars(select(Chatflow))]
    assert not any(secret in exported for secret in secrets)

    report = await apply_routing(sessions, text=exported, clock=utcnow)
    assert report.unchanged == ["Sales", "Support: yes/no"]
    assert report.created == report.updated == report.not_in_file == []
    assert await export_routing(sessions, team_id=TEAM) == exported


TRICKY_TEXTS = [
    "yes",
    "null",
    "09:00",
    "a: b # not a comment",
    "  indented\n\ttabbed  \ntrailing spaces  ",
    "line\n\n\nafter blank lines\n",
    "'quotes' and \"quotes\" & <angles>",
    "emoji 🎉 and ünïcode",
]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_any_message_text_survives_the_round_trip(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    async with sessions() as session, session.begin():
        for n, text in enumerate(TRICKY_TEXTS):
            await save_in(
                session,
                team_id=TEAM,
                chatflow_id=None,
                settings=ChatflowSettings(
                    name=f"{n} {text.strip()}"[:200], route_users=(ALICE,), away_message=text
                ),
                now=now,
            )
    exported = await export_routing(sessions, team_id=TEAM)
    report = await apply_routing(sessions, text=exported, clock=utcnow)
    assert len(report.unchanged) == len(TRICKY_TEXTS)
    async with sessions() as session:
        saved = {c.away_message for c in await session.scalars(select(Chatflow))}
    assert saved == set(TRICKY_TEXTS)


async def test_a_file_restores_the_routing_into_an_empty_database(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await a_workspace(sessions)
    exported = await export_routing(sessions, team_id=TEAM)
    async with sessions() as session, session.begin():
        old = {c.name: c for c in await session.scalars(select(Chatflow))}
        await session.execute(delete(Chatflow))
        await session.execute(delete(Team).where(Team.team_id == TEAM))

    report = await apply_routing(sessions, text=exported, clock=utcnow)
    assert report.created == ["Sales", "Support: yes/no"]
    assert await export_routing(sessions, team_id=TEAM) == exported
    async with sessions() as session:
        restored = {c.name: c for c in await session.scalars(select(Chatflow))}
    for name, chatflow in restored.items():
        assert chatflow.public_key == old[name].public_key  # the website keeps working
        assert chatflow.signing_secret != old[name].signing_secret  # never in the file
        assert report.new_secrets[name] == chatflow.signing_secret  # shown once


async def test_a_file_changes_what_it_says_and_keeps_the_rest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await a_workspace(sessions)
    document = yaml.safe_load(await export_routing(sessions, team_id=TEAM))
    sales, support = document["chatflows"]
    sales["route"]["users"] = [ALICE, BOB]
    sales["signing_secret"] = "r" * 40
    document["teams"].append({"name": "Night shift", "members": [CAROL]})
    support["route"]["teams"] = ["tm_nordics"]
    document["chatflows"] = [sales, support, {"name": "Partners", "route": {"users": [CAROL]}}]
    report = await apply_routing(sessions, text=yaml.safe_dump(document), clock=utcnow)
    assert (report.updated, report.created) == (["Sales", "Support: yes/no"], ["Partners"])
    async with sessions() as session:
        saved = {c.name: c for c in await session.scalars(select(Chatflow))}
        night = await session.scalar(select(Team).where(Team.name == "Night shift"))
    assert saved["Sales"].route_users == [ALICE, BOB]
    assert saved["Sales"].signing_secret == "r" * 40
    assert saved["Partners"].welcome_message == "Hi! How can we help?"  # defaults
    assert night is not None and night.id.startswith("tm_") and night.members == [CAROL]

    del document["chatflows"][2]
    report = await apply_routing(sessions, text=yaml.safe_dump(document), clock=utcnow)
    assert report.not_in_file == ["Partners"]  # a file never deletes a chatflow


async def test_a_bad_file_changes_nothing_and_names_every_problem(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before, document = await a_file(sessions)
    sales, support = document["chatflows"]
    sales["escalation_seconds"] = 0
    sales["route"]["users"] = ["alice"]
    sales["notes"]["prefix"] = ""
    sales["hours"] = {"timezone": "Mars/Olympus", "days": {}}
    sales["colour"] = "red"
    support["name"] = "SALES"
    support["route"]["teams"] = ["tm_gone"]
    document["teams"][0]["members"] = ["nobody"]
    assert await refusal(sessions, yaml.safe_dump(document)) == [
        "chatflows[0]: unknown keys colour",
        "teams[0]: members: 'nobody' is not a Slack user id (U… or W…)",
        "chatflows[0] (Sales): another chatflow in the file has this name",
        "chatflows[1] (SALES): another chatflow in the file has this name",
    ]
    support["name"] = "Support"
    document["teams"][0]["members"] = [BOB]
    assert await refusal(sessions, yaml.safe_dump(document)) == [
        "chatflows[0]: unknown keys colour",
        "chatflows[0] (Sales): route: 'alice' is not a Slack user id (U… or W…)",
        "chatflows[0] (Sales): escalation_seconds: a whole number of seconds from 1 to 86,400",
        "chatflows[0] (Sales): note_prefix: must not be empty",
        "chatflows[0] (Sales): hours: unknown timezone 'Mars/Olympus'",
        "chatflows[1] (Support): route: the team 'tm_gone' does not exist (deleted meanwhile?)",
    ]
    assert await export_routing(sessions, team_id=TEAM) == before
    with pytest.raises(RoutingFileInvalid, match="not valid YAML"):
        await apply_routing(sessions, text="chatflows: [", clock=utcnow)


async def test_a_file_sets_the_look_the_widget_greeting_carries(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, document = await a_file(sessions)
    sales, support = document["chatflows"]
    sales["widget"]["text_color"] = "#fef9c3"
    support["widget"] = {"launcher_label": "  Questions?  ", "color": "#fde047"}
    support["widget"]["text_color"] = "#111827"
    report = await apply_routing(sessions, text=yaml.safe_dump(document), clock=utcnow)
    assert report.updated == ["Sales", "Support: yes/no"]
    async with sessions() as session:
        saved = {c.name: c.widget for c in await session.scalars(select(Chatflow))}
    assert saved["Support: yes/no"] == {
        "launcher_label": "Questions?",  # stripped, as validate_look stores texts
        "color": "#fde047",
        "text_color": "#111827",
    }
    assert look_of(saved["Support: yes/no"]) == WidgetLook(  # what the greeting sends
        color="#fde047", text_color="#111827", launcher_label="Questions?"
    )
    assert look_of(saved["Sales"]).text_color == "#fef9c3"

    del sales["widget"]  # no `widget:` is the default look, as no `hours:` is no hours
    del sales["hours"]
    report = await apply_routing(sessions, text=yaml.safe_dump(document), clock=utcnow)
    assert (report.updated, report.unchanged) == (["Sales"], ["Support: yes/no"])
    async with sessions() as session:
        cleared = await session.scalar(select(Chatflow).where(Chatflow.name == "Sales"))
    assert cleared is not None and cleared.widget == {} and cleared.hours is None
    assert look_of(cleared.widget) == WidgetLook()
    exported = yaml.safe_load(await export_routing(sessions, team_id=TEAM))
    assert "widget" not in exported["chatflows"][0]


async def test_a_bad_look_is_refused_whole_and_named(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before, document = await a_file(sessions)
    sales, support = document["chatflows"]
    sales["widget"].update(color="blue", corner="left", title="x" * 61)
    sales["route"]["users"] = ["alice"]
    support["widget"] = {"color": "#fde047"}  # white text on yellow
    support["messages"]["welcome"] = "Hi"  # a change that is fine: not applied either
    assert await refusal(sessions, yaml.safe_dump(document)) == [
        "chatflows[0] (Sales): route: 'alice' is not a Slack user id (U… or W…)",
        "chatflows[0] (Sales): widget.corner: unknown setting",
        "chatflows[0] (Sales): widget.color: must be a colour like #1d4ed8",
        "chatflows[0] (Sales): widget.title: must be at most 60 characters",
        "chatflows[1] (Support: yes/no): widget.text_color: #ffffff on #fde047 is hard to read "
        "(contrast 1.3:1, needs 4.5:1)",
    ]
    assert await export_routing(sessions, team_id=TEAM) == before

    unquoted = before.replace("color: '#0b6e4f'", "color: #0b6e4f")  # a YAML comment
    assert await refusal(sessions, unquoted) == [
        "chatflows[0] (Sales): widget.color: no value (in YAML, # starts a comment: write "
        "colours in quotes, '#1d4ed8')"
    ]
    sales["widget"] = "blue"
    assert "chatflows[0].widget: expected a mapping" in await refusal(
        sessions, yaml.safe_dump(document)
    )
    assert await export_routing(sessions, team_id=TEAM) == before


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_the_cli_exports_and_applies_files(
    sessions: async_sessionmaker[AsyncSession],
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await a_workspace(sessions)
    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    file = tmp_path / "routing.yml"
    # The CLI runs its own event loop: run it in a thread, as from a shell.
    import asyncio

    assert await asyncio.to_thread(main, ["chatflows", "export", str(file)]) == 2
    assert "--workspace: the database has 2 workspaces (T0001, T0002)" in capsys.readouterr().err
    assert (
        await asyncio.to_thread(main, ["chatflows", "export", str(file), "--workspace", TEAM]) == 0
    )
    text = file.read_text(encoding="utf-8")
    assert text.startswith("# slackrouter routing:")
    assert await asyncio.to_thread(main, ["chatflows", "apply", str(file)]) == 0
    assert "unchanged: Sales, Support: yes/no" in capsys.readouterr().out
    file.write_text(text.replace("escalation_seconds: 45", "escalation_seconds: -5"))
    assert await asyncio.to_thread(main, ["chatflows", "apply", str(file)]) == 1
    assert "escalation_seconds: a whole number" in capsys.readouterr().err
