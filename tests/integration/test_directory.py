"""Teams, user groups and Do Not Disturb against a real database and the fake Slack over HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.adapters.db.models import Chatflow, Rep, Team, UserGroup
from slackrouter.adapters.slack.gateway import SlackGateway, create_client
from slackrouter.clock import utcnow
from slackrouter.handlers.events import dnd
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow
from slackrouter.services.directory import Directory, TeamNotFound, in_dnd
from tests.conftest import Database

TEAM = "T0001"
OTHER_TEAM = "T0002"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
SIGNING_SECRET = "directory-test-signing-secret"


@dataclass
class Env:
    fake: FakeSlack
    slack: SlackGateway
    sessions: async_sessionmaker[AsyncSession]
    directory: Directory

    async def rep(self, user_id: str) -> Rep | None:
        async with self.sessions() as session:
            return await session.get(Rep, (TEAM, user_id))

    async def members(self, *refs: str, team_id: str = TEAM) -> dict[str, tuple[str, ...]]:
        async with self.sessions() as session:
            return await self.directory.team_members(session, team_id=team_id, refs=refs)

    async def cached_groups(self) -> dict[str, list[str]]:
        async with self.sessions() as session:
            return {g.id: g.members for g in await session.scalars(select(UserGroup))}


@pytest.fixture
async def env(database: Database) -> AsyncIterator[Env]:
    engine = create_engine(database.url, schema=database.schema)
    await upgrade(engine)
    sessions = session_factory(engine)
    fake = FakeSlack(team_id=TEAM)
    for user_id, name in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        fake.add_user(user_id, name)
    try:
        async with serve(fake.asgi) as url:
            slack = SlackGateway(create_client("xoxb-fake", f"{url}/api/"))
            yield Env(fake, slack, sessions, Directory(sessions, slack, clock=utcnow))
    finally:
        await engine.dispose()


# --- Slack user groups -----------------------------------------------------------------------


async def test_user_groups_are_cached_with_their_members(env: Env) -> None:
    env.fake.add_usergroup("S0SALES", "sales", "Sales Team", [ALICE, BOB])
    env.fake.add_usergroup("S0SUPPORT", "support", "Support", [BOB, CAROL])

    assert await env.directory.refresh_usergroups() is True

    async with env.sessions() as session:
        rows = {g.id: g for g in await session.scalars(select(UserGroup))}
    assert set(rows) == {"S0SALES", "S0SUPPORT"}
    assert rows["S0SALES"].team_id == TEAM
    assert (rows["S0SALES"].handle, rows["S0SALES"].name) == ("sales", "Sales Team")
    assert await env.members("S0SALES", "S0SUPPORT") == {
        "S0SALES": (ALICE, BOB),
        "S0SUPPORT": (BOB, CAROL),
    }


async def test_refresh_drops_disabled_and_removed_groups_and_updates_members(env: Env) -> None:
    env.fake.add_usergroup("S0SALES", "sales", users=[ALICE])
    env.fake.add_usergroup("S0SUPPORT", "support", users=[BOB])
    env.fake.add_usergroup("S0OPS", "ops", users=[CAROL])
    await env.directory.refresh_usergroups()

    env.fake.usergroups["S0SALES"]["date_delete"] = int(time.time())  # disabled in Slack
    del env.fake.usergroups["S0SUPPORT"]
    env.fake.usergroups["S0OPS"]["users"] = [CAROL, ALICE]
    assert await env.directory.refresh_usergroups() is True

    assert await env.cached_groups() == {"S0OPS": [CAROL, ALICE]}
    assert (await env.members("S0SALES"))["S0SALES"] == ()
    assert len(env.fake.calls_to("auth.test")) == 1  # the workspace id is asked once


async def test_free_plan_caches_nothing_and_slackrouter_teams_still_resolve(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.fake.add_usergroup("S0SALES", "sales", users=[ALICE])
    await env.directory.refresh_usergroups()
    team = await env.directory.create_team(team_id=TEAM, name="Sales", members=[BOB])
    env.fake.paid_plan = False  # the workspace moved to a free plan

    with caplog.at_level(logging.INFO, logger="slackrouter.services.directory"):
        assert await env.directory.refresh_usergroups() is False
        assert await env.directory.refresh_usergroups() is False

    assert await env.cached_groups() == {}
    notes = [r for r in caplog.records if "slackrouter teams" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
    assert await env.members(team.id, "S0SALES") == {team.id: (BOB,), "S0SALES": ()}
    assert await env.directory.team_options(team_id=TEAM, query="") == [(team.id, "Sales")]


async def test_other_slack_errors_keep_the_cache(env: Env) -> None:
    env.fake.add_usergroup("S0SALES", "sales", users=[ALICE])
    await env.directory.refresh_usergroups()
    env.fake.fail("usergroups.list", "internal_error")

    with pytest.raises(SlackApiError, match="internal_error"):
        await env.directory.refresh_usergroups()

    assert await env.cached_groups() == {"S0SALES": [ALICE]}


async def test_a_rep_in_two_teams_is_a_member_of_both(env: Env) -> None:
    env.fake.add_usergroup("S0SALES", "sales", users=[ALICE, BOB])
    await env.directory.refresh_usergroups()
    team = await env.directory.create_team(team_id=TEAM, name="Closers", members=[BOB, CAROL])
    elsewhere = await env.directory.create_team(team_id=OTHER_TEAM, name="Other", members=[ALICE])

    members = await env.members("S0SALES", team.id, "tm_unknown", "S0NOPE", elsewhere.id)

    assert members == {
        "S0SALES": (ALICE, BOB),
        team.id: (BOB, CAROL),
        "tm_unknown": (),
        "S0NOPE": (),
        elsewhere.id: (),  # another workspace's team is unknown here
    }


# --- slackrouter teams -----------------------------------------------------------------------


async def test_team_create_list_update_delete(env: Env) -> None:
    directory = env.directory
    sales = await directory.create_team(team_id=TEAM, name="  Sales  ", members=[ALICE, BOB, ALICE])
    await directory.create_team(team_id=TEAM, name="accounts", members=[])
    await directory.create_team(team_id=OTHER_TEAM, name="Sales", members=[])  # other workspace

    assert sales.id.startswith("tm_") and len(sales.id) == 15
    assert (sales.name, sales.members) == ("Sales", [ALICE, BOB])
    assert [t.name for t in await directory.list_teams(team_id=TEAM)] == ["accounts", "Sales"]

    updated = await directory.update_team(
        team_id=TEAM, team_ref=sales.id, name="sales", members=[CAROL]
    )
    assert (updated.name, updated.members) == ("sales", [CAROL])
    assert await env.members(sales.id) == {sales.id: (CAROL,)}

    assert await directory.delete_team(team_id=TEAM, team_ref=sales.id) is True
    assert await directory.delete_team(team_id=TEAM, team_ref=sales.id) is False
    assert [t.name for t in await directory.list_teams(team_id=TEAM)] == ["accounts"]
    with pytest.raises(TeamNotFound, match="does not exist"):
        await directory.update_team(team_id=TEAM, team_ref=sales.id, name="x", members=[])


@pytest.mark.parametrize(
    ("name", "members", "message"),
    [
        ("   ", [ALICE], "name: must not be empty"),
        ("x" * 201, [ALICE], "name: at most 200 characters"),
        ("SALES", [ALICE], "name: a team called 'Sales' already exists"),
        ("New", [ALICE, "alice"], "members: 'alice' is not a Slack user id"),
        ("New", ["C0CHANNEL"], "members: 'C0CHANNEL' is not a Slack user id"),
        ("New", [f"U{i:05d}" for i in range(501)], "members: at most 500 people"),
    ],
)
async def test_team_validation(env: Env, name: str, members: list[str], message: str) -> None:
    existing = await env.directory.create_team(team_id=TEAM, name="Sales", members=[ALICE])
    other = await env.directory.create_team(team_id=TEAM, name="Other", members=[])

    with pytest.raises(ValueError, match=message):
        await env.directory.create_team(team_id=TEAM, name=name, members=members)
    with pytest.raises(ValueError, match=message):
        await env.directory.update_team(team_id=TEAM, team_ref=other.id, name=name, members=members)

    assert [t.id for t in await env.directory.list_teams(team_id=TEAM)] == [other.id, existing.id]


async def test_a_team_of_500_is_allowed(env: Env) -> None:
    members = [f"U{i:05d}" for i in range(500)]
    team = await env.directory.create_team(team_id=TEAM, name="Everyone", members=members)
    assert len((await env.members(team.id))[team.id]) == 500


async def test_deleting_a_team_takes_it_off_every_route(env: Env) -> None:
    team = await env.directory.create_team(team_id=TEAM, name="Sales", members=[ALICE])
    keep = await env.directory.create_team(team_id=TEAM, name="Support", members=[BOB])
    chatflows = [
        await create_chatflow(
            env.sessions,
            team_id=TEAM,
            spec=ChatflowSpec(name=name, route_users=(CAROL,)),
            clock=utcnow,
        )
        for name in ("Pricing", "Demo", "Careers")
    ]
    routes = {
        chatflows[0].id: [team.id, "S0SALES"],
        chatflows[1].id: [keep.id, team.id],
        chatflows[2].id: [keep.id],
    }
    async with env.sessions() as session, session.begin():
        for chatflow in await session.scalars(select(Chatflow)):
            chatflow.route_teams = routes[chatflow.id]

    await env.directory.delete_team(team_id=TEAM, team_ref=team.id)

    async with env.sessions() as session:
        after = {c.id: c.route_teams for c in await session.scalars(select(Chatflow))}
    assert after == {
        chatflows[0].id: ["S0SALES"],
        chatflows[1].id: [keep.id],
        chatflows[2].id: [keep.id],
    }


async def test_team_options_match_handles_and_names(env: Env) -> None:
    env.fake.add_usergroup("S0SALES", "sales-emea", "Sales EMEA", [ALICE])
    env.fake.add_usergroup("S0SUPPORT", "support", "Support", [BOB])
    await env.directory.refresh_usergroups()
    team = await env.directory.create_team(team_id=TEAM, name="Inside sales", members=[BOB])
    long = await env.directory.create_team(team_id=TEAM, name="Q" * 120, members=[])

    assert await env.directory.team_options(team_id=TEAM, query="SALES") == [
        ("S0SALES", "@sales-emea (Sales EMEA)"),
        (team.id, "Inside sales"),
    ]
    assert await env.directory.team_options(team_id=TEAM, query=" emea ") == [
        ("S0SALES", "@sales-emea (Sales EMEA)")
    ]
    assert await env.directory.team_options(team_id=TEAM, query="q") == [(long.id, "Q" * 74 + "…")]
    assert await env.directory.team_options(team_id=OTHER_TEAM, query="") == []


async def test_team_options_are_at_most_100(env: Env) -> None:
    async with env.sessions() as session, session.begin():
        session.add_all(
            Team(id=f"tm_{i:03d}", team_id=TEAM, name=f"Team {i:03d}", created_at=utcnow())
            for i in range(120)
        )

    options = await env.directory.team_options(team_id=TEAM, query="team")

    assert len(options) == 100
    assert options[0] == ("tm_000", "Team 000") and options[-1] == ("tm_099", "Team 099")


# --- Do Not Disturb --------------------------------------------------------------------------


async def test_refresh_dnd_asks_50_users_a_call_and_stores_every_rep(env: Env) -> None:
    now = int(time.time())
    user_ids = [f"U{i:04d}" for i in range(120)]
    for user_id in user_ids:
        env.fake.add_user(user_id, user_id.lower())
    env.fake.set_dnd("U0000", True)
    env.fake.set_dnd("U0001", True, start=now + 3600, end=now + 7200)  # scheduled, not started
    env.fake.set_dnd("U0002", True, start=now - 7200, end=now - 3600)  # over

    calls = await env.directory.refresh_dnd(team_id=TEAM, user_ids=user_ids)

    assert calls == 3
    batches = [c.params["users"].split(",") for c in env.fake.calls_to("dnd.teamInfo")]
    assert [len(b) for b in batches] == [50, 50, 20]
    async with env.sessions() as session:
        reps = {r.user_id: r for r in await session.scalars(select(Rep))}
    assert set(reps) == set(user_ids)
    assert {u for u, r in reps.items() if r.dnd} == {"U0000"}
    assert all(r.dnd_checked_at is not None for r in reps.values())


async def test_refresh_dnd_keeps_going_when_a_call_fails(env: Env) -> None:
    user_ids = [f"U{i:04d}" for i in range(60)]
    for user_id in user_ids:
        env.fake.add_user(user_id, user_id.lower(), dnd=True)
    env.fake.fail("dnd.teamInfo", "internal_error")

    assert await env.directory.refresh_dnd(team_id=TEAM, user_ids=user_ids) == 2

    async with env.sessions() as session:
        stored = {r.user_id for r in await session.scalars(select(Rep)) if r.dnd}
    assert stored == set(user_ids[50:])
    assert await env.directory.refresh_dnd(team_id=TEAM, user_ids=[]) == 0


async def test_dnd_updated_applies_windows_and_snooze(env: Env) -> None:
    await env.directory.refresh_dnd(team_id=TEAM, user_ids=[ALICE])
    now = time.time()
    cases = [
        ({"dnd_enabled": True, "next_dnd_start_ts": now - 60, "next_dnd_end_ts": now + 60}, True),
        ({"dnd_enabled": True, "next_dnd_start_ts": now + 60, "next_dnd_end_ts": now + 120}, False),
        ({"dnd_enabled": False, "next_dnd_start_ts": now - 60, "next_dnd_end_ts": now + 60}, False),
        ({"dnd_enabled": False, "snooze_enabled": True, "snooze_endtime": now + 600}, True),
        ({"dnd_enabled": False, "snooze_enabled": True, "snooze_endtime": now - 1}, False),
    ]
    for status, expected in cases:
        await env.directory.dnd_updated(team_id=TEAM, user_id=ALICE, dnd_status=status)
        rep = await env.rep(ALICE)
        assert rep is not None and rep.dnd is expected, status
        assert in_dnd(status, now) is expected

    await env.directory.dnd_updated(team_id=TEAM, user_id=BOB, dnd_status=cases[0][0])
    assert await env.rep(BOB) is None  # not a rep: the event is for every workspace member


async def test_a_dnd_answer_made_before_an_event_does_not_undo_it(env: Env) -> None:
    """`dnd.teamInfo` answers that Alice is in DND, the answer is slow to arrive, and Slack
    meanwhile announces she has left it: the late answer must not put her back."""
    await env.directory.refresh_dnd(team_id=TEAM, user_ids=[ALICE])  # her row
    env.fake.set_dnd(ALICE, True)
    env.fake.stall("dnd.teamInfo", 0.5, answered_first=True)
    poll = asyncio.create_task(env.directory.refresh_dnd(team_id=TEAM, user_ids=[ALICE]))
    for _ in range(400):  # until Slack has answered: the answer is on its way for 0.5 s
        if len(env.fake.calls_to("dnd.teamInfo")) == 2:
            break
        await asyncio.sleep(0.005)
    assert env.fake.calls_to("dnd.teamInfo")[-1].response["users"][ALICE]["dnd_enabled"]

    env.fake.set_dnd(ALICE, False)
    await env.directory.dnd_updated(team_id=TEAM, user_id=ALICE, dnd_status={"dnd_enabled": False})
    assert await poll == 1
    rep = await env.rep(ALICE)
    assert rep is not None and rep.dnd is False


async def test_dnd_updated_user_event_over_signed_http_updates_the_rep(env: Env) -> None:
    app = AsyncApp(
        token="xoxb-fake",
        signing_secret=SIGNING_SECRET,
        client=env.slack.client,
        process_before_response=True,
    )
    dnd.register(app, directory=env.directory)
    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    await env.directory.refresh_dnd(team_id=TEAM, user_ids=[ALICE])
    async with serve(Starlette(routes=[Route("/slack/events", events, methods=["POST"])])) as url:
        env.fake.configure_events(f"{url}/slack/events", SIGNING_SECRET)

        env.fake.set_dnd(ALICE, True)
        envelope = await env.fake.announce_dnd(ALICE)
        rep = await env.rep(ALICE)
        assert rep is not None and rep.dnd is True
        checked = rep.dnd_checked_at

        env.fake.set_dnd(ALICE, False)
        await env.fake.announce_dnd(ALICE)
        rep = await env.rep(ALICE)
        assert rep is not None and rep.dnd is False
        assert checked is not None and rep.dnd_checked_at is not None
        assert rep.dnd_checked_at >= checked

    assert envelope["event"]["type"] == "dnd_updated_user"
    assert [d.status for d in env.fake.deliveries] == [200, 200]
