"""Many workspaces through OAuth: installing from /slack/install against the fake Slack's
`oauth.v2.access`, each workspace's events and calls with its own token, workspaces that never
see each other's data, uninstalling and revoking, encrypted tokens and token rotation."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from slackrouter.adapters.db import slack_oauth
from slackrouter.adapters.db.models import Chatflow, Contact, Conversation, Message
from slackrouter.adapters.slack.installations import NotInstalled
from slackrouter.api.app import create_api
from slackrouter.bootstrap import Runtime, build
from slackrouter.clock import utcnow
from slackrouter.config import Settings
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.fake_slack_workspaces import FakeSlackWorkspaces
from slackrouter.sandbox.processes import free_port
from slackrouter.sandbox.server import serve
from slackrouter.sandbox.slack_requests import message_event
from slackrouter.services.chatflow_admin import ChatflowAdmin, ChatflowNotFound
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow
from slackrouter.services.contacts import ContactIn, OwnerNotFound
from slackrouter.slack_manifest import bot_scopes
from tests.conftest import Database
from tests.scenario.conftest import SIGNING_SECRET, Chat, eventually

ACME, GLOBEX = "T0ACME", "T0GLOBEX"
ALICE, GINA = "U0ALICE", "U0GINA"  # a rep at Acme, a rep at Globex
KEY = Fernet.generate_key().decode()


@dataclass
class Org:
    url: str
    slack: FakeSlackWorkspaces
    runtime: Runtime
    http: httpx.AsyncClient

    async def install(self, team_id: str, user_id: str) -> httpx.Response:
        """A workspace admin's clicks: the install page, Slack's consent, back to the app."""
        page = await self.http.get("/slack/install")
        assert page.status_code == 200, page.text
        [authorize] = re.findall(r'href="([^"]*oauth/v2/authorize[^"]*)"', page.text)
        consent = await self.http.get(f"{html.unescape(authorize)}&team={team_id}&user={user_id}")
        assert consent.status_code == 302, consent.text
        # The state cookie is `Secure`, which a browser sends back over https (or to
        # localhost); this client needs to be told.
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        return await self.http.get(consent.headers["location"], headers={"Cookie": cookie})

    async def chatflow(self, team_id: str, *route: str) -> Chat:
        chatflow = await create_chatflow(
            self.runtime.sessions,
            team_id=team_id,
            spec=ChatflowSpec(name=f"Sales {team_id}", route_users=route),
            clock=utcnow,
        )
        chat = Chat(
            self.url,
            self.slack[team_id],
            self.runtime,
            chatflow.public_key,
            chatflow.signing_secret,
            self.http,
        )
        await chat.presence(**dict.fromkeys(route, "active"))
        return chat

    async def stored_bots(self) -> list[dict[str, Any]]:
        async with self.runtime.engine.connect() as connection:
            rows = await connection.execute(select(slack_oauth.bots))
            return [dict(row._mapping) for row in rows]


def _workspace(team_id: str, name: str, user_id: str, user_name: str) -> FakeSlack:
    slack = FakeSlack(team_id=team_id, team_name=name, team_domain=name.lower())
    slack.bot_token = ""  # no preset token: the app gets one by being installed
    slack.tokens.clear()
    slack.add_user(user_id, user_name.lower(), real_name=f"{user_name} Rep", display_name=user_name)
    return slack


@pytest.fixture
async def org(database: Database) -> AsyncIterator[Org]:
    slack = FakeSlackWorkspaces(
        _workspace(ACME, "Acme", ALICE, "Alice"), _workspace(GLOBEX, "Globex", GINA, "Gina")
    )
    port = free_port()
    async with serve(slack.asgi) as slack_url:
        settings = Settings(
            slack_client_id=slack[ACME].client_id,
            slack_client_secret=slack[ACME].client_secret,
            slack_signing_secret=SIGNING_SECRET,
            slack_token_encryption_key=KEY,
            slack_api_url=f"{slack_url}/api/",
            public_url=f"http://127.0.0.1:{port}",
            database_url=database.url,
            presence_refresh_interval=3600,
            delivery_poll_interval=0.5,
        )
        settings.require_slack()
        runtime = build(settings, db_schema=database.schema)
        await runtime.migrate()
        async with serve(create_api(runtime), port=port) as url:
            for workspace in slack.workspaces.values():
                workspace.configure_events(f"{url}/slack/events", SIGNING_SECRET)
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield Org(url, slack, runtime, http)


async def test_installing_stores_the_encrypted_token_and_the_workspace_is_served_with_it(
    org: Org,
) -> None:
    done = await org.install(GLOBEX, GINA)
    assert done.status_code == 200, done.text
    [exchange] = org.slack[GLOBEX].calls_to("oauth.v2.access")
    assert exchange.response["ok"] is True
    assert exchange.response["scope"] == ",".join(bot_scopes())
    issued = exchange.response["access_token"]

    [bot] = await org.stored_bots()
    assert (bot["team_id"], bot["bot_user_id"]) == (GLOBEX, "UBOT")
    assert issued not in str(bot) and not bot["bot_token"].startswith("xox")
    assert Fernet(KEY).decrypt(bot["bot_token"].encode()).decode() == issued
    assert await org.runtime.slack.team_ids() == [GLOBEX]

    # A chat of Globex goes to Globex's Slack (the call carries Globex's token), and Gina's
    # thread reply, an event of the installed workspace, comes back to the visitor.
    chat = await org.chatflow(GLOBEX, GINA)
    accepted = (await chat.visitor_says("Hi Globex")).json()
    assert accepted["status"] == "routed"
    parent = await chat.parent_post(GINA)
    await chat.slack.user_posts(GINA, f"D{GINA}", "Hello from Globex", parent["ts"])

    async def reply() -> list[str]:
        page = await chat.read(accepted["conversation_id"], accepted["conversation_token"])
        return [m["text"] for m in page.json()["messages"] if m["author"] == "rep"]

    assert await eventually(reply) == ["Hello from Globex"]
    assert org.slack[ACME].calls == []


async def test_an_install_with_a_forged_state_is_refused(org: Org) -> None:
    code = org.slack[ACME].issue_oauth_code(ALICE)
    answer = await org.http.get("/slack/oauth_redirect", params={"code": code, "state": "forged"})
    assert answer.status_code == 400
    assert await org.stored_bots() == []


async def test_two_workspaces_never_see_each_others_chatflows_contacts_chats_or_events(
    org: Org,
) -> None:
    assert (await org.install(ACME, ALICE)).status_code == 200
    assert (await org.install(GLOBEX, GINA)).status_code == 200
    assert await org.runtime.slack.team_ids() == [ACME, GLOBEX]
    acme, globex = await org.chatflow(ACME, ALICE), await org.chatflow(GLOBEX, GINA)

    # Chatflows: one workspace's admin cannot open the other's.
    admin = ChatflowAdmin(org.runtime.sessions, clock=utcnow)
    async with org.runtime.sessions() as session:
        acme_flow = await session.scalar(select(Chatflow).where(Chatflow.team_id == ACME))
    assert acme_flow is not None
    assert (await admin.get(team_id=ACME, chatflow_id=acme_flow.id)).team_id == ACME
    with pytest.raises(ChatflowNotFound):
        await admin.get(team_id=GLOBEX, chatflow_id=acme_flow.id)

    # Contacts: owners are looked up in the contact's own workspace, and a visitor id known
    # in one workspace means nothing in the other.
    contacts = org.runtime.contacts
    await contacts.upsert(team_id=ACME, contact=ContactIn(owner=ALICE, visitor_ids=("v-1",)))
    with pytest.raises(OwnerNotFound):
        await contacts.upsert(team_id=ACME, contact=ContactIn(owner=GINA, visitor_ids=("v-2",)))
    async with org.runtime.sessions() as session:
        found = {
            team: await contacts.find_for_visitor(
                session, team_id=team, visitor_id="v-1", verified_email=None
            )
            for team in (ACME, GLOBEX)
        }
    assert found[ACME] is not None and found[ACME].owner_user_id == ALICE
    assert found[GLOBEX] is None

    # Conversations: each chat reaches only its own workspace's Slack.
    acme_chat = (await acme.visitor_says("For Acme", visitor_id="v-1")).json()
    globex_chat = (await globex.visitor_says("For Globex", visitor_id="v-1")).json()
    acme_parent, globex_parent = await acme.parent_post(ALICE), await globex.parent_post(GINA)
    assert [p["channel"] for p in acme.posts()] == [f"D{ALICE}"]
    assert [p["channel"] for p in globex.posts()] == [f"D{GINA}"]
    assert "For Acme" in str(acme.posts()) and "For Acme" not in str(globex.posts())

    # Events: a Globex event that names Acme's DM and thread does not reach Acme's visitor.
    forged = message_event(
        GINA, f"D{ALICE}", "crossing over", "1999999999.000100", acme_parent["ts"],
        team_id=GLOBEX,
    )
    assert (await globex.slack.sender.send_event(forged)).status_code == 200
    await globex.slack.user_posts(GINA, f"D{GINA}", "Globex answer", globex_parent["ts"])
    await acme.slack.user_posts(ALICE, f"D{ALICE}", "Acme answer", acme_parent["ts"])

    async def replies(chat: Chat, accepted: dict[str, Any]) -> list[str]:
        page = await chat.read(accepted["conversation_id"], accepted["conversation_token"])
        return [m["text"] for m in page.json()["messages"] if m["author"] == "rep"]

    assert await eventually(lambda: replies(acme, acme_chat)) == ["Acme answer"]
    assert await eventually(lambda: replies(globex, globex_chat)) == ["Globex answer"]


async def count(org: Org, model: Any, team_id: str) -> int:
    async with org.runtime.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(model).where(model.team_id == team_id)
            )
            or 0
        )


async def test_uninstalling_forgets_the_workspace_and_only_that_one(org: Org) -> None:
    await org.install(ACME, ALICE)
    await org.install(GLOBEX, GINA)
    for team, rep in ((ACME, ALICE), (GLOBEX, GINA)):
        chat = await org.chatflow(team, rep)
        await org.runtime.contacts.upsert(
            team_id=team, contact=ContactIn(owner=rep, visitor_ids=("v-1",))
        )
        assert (await chat.visitor_says(f"Hello {team}")).status_code == 201
        await chat.parent_post(rep)

    answer = await org.slack[ACME].sender.send_event({"type": "app_uninstalled"})
    assert answer.status_code == 200

    for model in (Chatflow, Contact, Conversation, Message):
        assert await count(org, model, ACME) == 0, model
        assert await count(org, model, GLOBEX) == 1, model
    assert [bot["team_id"] for bot in await org.stored_bots()] == [GLOBEX]
    with pytest.raises(NotInstalled):
        await org.runtime.slack.for_team(ACME)
    assert await org.runtime.slack.team_ids() == [GLOBEX]


async def test_a_revoked_bot_token_is_forgotten_but_the_workspace_data_stays(org: Org) -> None:
    await org.install(ACME, ALICE)
    await org.chatflow(ACME, ALICE)
    await org.runtime.slack.for_team(ACME)  # cached

    revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT"]}}
    assert (await org.slack[ACME].sender.send_event(revoked)).status_code == 200

    assert await org.stored_bots() == []
    with pytest.raises(NotInstalled):
        await org.runtime.slack.for_team(ACME)
    assert await count(org, Chatflow, ACME) == 1


async def test_an_expiring_bot_token_is_rotated_before_use(org: Org) -> None:
    acme = org.slack[ACME]
    acme.token_rotation = True
    acme.token_lifetime = 60  # well inside the two hours before expiry when tokens are rotated
    await org.install(ACME, ALICE)
    [installed] = acme.calls_to("oauth.v2.access")
    assert installed.response["access_token"].startswith("xoxe.xoxb-")

    gateway = await org.runtime.slack.for_team(ACME)
    assert await gateway.team_id() == ACME

    grants = [c for c in acme.calls_to("oauth.v2.access") if c.params.get("grant_type")]
    assert [c.params["grant_type"] for c in grants] == ["refresh_token"]
    assert grants[0].params["refresh_token"] == installed.response["refresh_token"]
    fresh = grants[0].response["access_token"]
    assert gateway.client.token == fresh
    [bot] = await org.stored_bots()
    assert Fernet(KEY).decrypt(bot["bot_token"].encode()).decode() == fresh


async def test_two_replicas_rotating_an_expiring_token_at_once_refresh_it_once(
    org: Org, database: Database
) -> None:
    acme = org.slack[ACME]
    acme.token_rotation = True
    acme.token_lifetime = 60  # expiring: the first use of it rotates it
    await org.install(ACME, ALICE)
    acme.token_lifetime = 12 * 3600  # the rotated token is good for the rest of the test
    replica = build(org.runtime.settings, db_schema=database.schema)
    try:
        # Slack revokes a refresh token once used: the replica that comes second must take
        # the pair the first one stored, not fail (nor refresh again).
        here, there = await asyncio.gather(
            org.runtime.slack.for_team(ACME), replica.slack.for_team(ACME)
        )
        grants = [
            c for c in acme.calls_to("oauth.v2.access") if c.response.get("refresh_token")
        ][1:]  # after the install's own
        assert len(grants) == 1
        fresh = grants[0].response["access_token"]
        assert here.client.token == there.client.token == fresh
        assert await there.team_id() == ACME
        [bot] = await org.stored_bots()
        assert Fernet(KEY).decrypt(bot["bot_token"].encode()).decode() == fresh
    finally:
        await replica.stop()
