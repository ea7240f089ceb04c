"""A big workspace over the real surfaces: 300 chatflows routed to 1,000 reps, 500 open chats.
Every modal, message and App Home the app sends stays within Slack's Block Kit limits (the fake
Slack refuses more than 100 blocks a view or 50 a message; `problems` checks the rest) and says
honestly what it leaves out.

SQLite only: the numbers, not the database, are what is tested.
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from slackrouter.adapters.db.models import Chatflow, Conversation, Rep, SlackThread
from slackrouter.clock import utcnow
from tests.blockkit_limits import problems
from tests.scenario.conftest import Chat, eventually
from tests.scenario.slack_surfaces import ADA, Workspace, text_of, workspace_fixture  # noqa: F401

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

REPS = [f"U1{n:07d}" for n in range(1000)]


async def fill(chat: Chat) -> None:
    team_id, now = chat.slack.team_id, utcnow()
    async with chat.runtime.sessions() as session, session.begin():
        session.add_all(
            Rep(
                team_id=team_id,
                user_id=user_id,
                name=f"Rep {n}",
                presence="active" if n % 3 else "away",
                presence_checked_at=now,
                dnd=n % 7 == 0,
            )
            for n, user_id in enumerate(REPS)
        )
        session.add_all(
            Chatflow(
                id=f"cf_big{n:04d}",
                team_id=team_id,
                name=f"Flow {n:03d} " + "with a long name " * 10,
                public_key=f"pk_big{n:020d}",
                signing_secret="s" * 43,
                route_users=REPS,
                created_at=now,
            )
            for n in range(300)
        )
        sales = await session.scalar(
            select(Chatflow.id).where(Chatflow.public_key == chat.public_key)
        )
        for n in range(500):
            conversation = Conversation(
                id=uuid.uuid4().hex,
                team_id=team_id,
                chatflow_id=sales,
                visitor_id=f"v{n}",
                visitor_name=f"Visitor {n} <!here>",
                token="t",
                routing_outcome="routed" if n % 2 else "away",
                routing={"explanation": "route (all): offered to " + ", ".join(REPS[:200])},
                assignee=ADA if n % 2 else None,
                created_at=now,
            )
            session.add(conversation)
            session.add(
                SlackThread(
                    team_id=team_id,
                    conversation_id=conversation.id,
                    rep_user_id=ADA,
                    channel_id=f"D{ADA}",
                    thread_ts=f"1700000000.{n:06d}",
                    created_at=now,
                )
            )


async def test_every_surface_stays_within_slacks_limits(chat: Chat, workspace: Workspace) -> None:
    await fill(chat)

    started = time.monotonic()
    assert await workspace.command(ADA) == {}
    listing = await eventually(lambda: workspace.views("chatflows") and workspace.view("chatflows"))
    assert time.monotonic() - started < 3  # Slack's trigger expires after 3 seconds
    assert "Chatflows 1 to 30 of 301" in text_of(listing)
    await workspace.click_in_view(ADA, listing, "chatflows_page", "9")
    await eventually(lambda: "Chatflows 271 to 300 of 301" in text_of(workspace.view("chatflows")))

    await workspace.click_in_view(ADA, listing, "chatflow_edit", "cf_big0001")
    form = await eventually(
        lambda: workspace.views("chatflow_edit") and workspace.view("chatflow_edit")
    )
    assert len(form["blocks"][1]["element"]["initial_users"]) == 1000

    started = time.monotonic()
    status = await workspace.command(ADA, "status")
    assert time.monotonic() - started < 3
    assert problems("message", status) == []
    assert "and 261 more chatflows, not shown here" in text_of(status)
    assert " more" in text_of(status)  # long lists of reps are cut and counted

    home = await workspace.open_home(ADA)
    shown = text_of(home)
    assert "*Open chats* (250)" in shown and "and 240 more, older" in shown
    assert "*Missed chats, every chatflow* (250)" in shown
    assert "and 286 more chatflows" in shown
    assert "<!here>" not in shown
