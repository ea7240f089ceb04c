"""Socket Mode: with SLACK_APP_TOKEN the app opens a WebSocket to Slack (no public URL) and
events arrive as envelopes over it, each acknowledged by its envelope id."""

from __future__ import annotations

import httpx

from slackrouter.api.app import create_api
from slackrouter.bootstrap import build
from slackrouter.clock import utcnow
from slackrouter.config import Settings
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.sandbox.socket_mode import SocketModeServer
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow
from tests.conftest import Database
from tests.scenario.conftest import ALICE, SIGNING_SECRET, Chat, eventually

APP_TOKEN = "xapp-1-A0001-1-fakeapptoken"


async def test_a_thread_reply_arrives_over_socket_mode_is_acknowledged_and_reaches_the_visitor(
    database: Database,
) -> None:
    slack = FakeSlack()
    slack.add_user(ALICE, "alice", real_name="Alice Rep", display_name="Alice")
    async with SocketModeServer(app_id=slack.app_id).running() as link, serve(
        slack.asgi
    ) as slack_url:
        slack.use_socket_mode(link, APP_TOKEN)
        settings = Settings(
            slack_bot_token="xoxb-fake",
            slack_signing_secret=SIGNING_SECRET,
            slack_app_token=APP_TOKEN,
            slack_api_url=f"{slack_url}/api/",
            database_url=database.url,
            presence_refresh_interval=3600,
            delivery_poll_interval=0.5,
        )
        runtime = build(settings, db_schema=database.schema)
        await runtime.migrate()
        chatflow = await create_chatflow(
            runtime.sessions,
            team_id=slack.team_id,
            spec=ChatflowSpec(name="Sales", route_users=(ALICE,)),
            clock=utcnow,
        )
        async with serve(create_api(runtime)) as url, httpx.AsyncClient(base_url=url) as http:
            await link.wait_connected()
            [opened] = slack.calls_to("apps.connections.open")
            assert opened.response == {"ok": True, "url": link.url}
            chat = Chat(url, slack, runtime, chatflow.public_key, chatflow.signing_secret, http)
            await chat.presence(**{ALICE: "active"})
            accepted = (await chat.visitor_says("Do you ship to Norway?")).json()
            parent = await chat.parent_post(ALICE)

            await slack.user_posts(ALICE, f"D{ALICE}", "We do, in 3 days.", parent["ts"])

            [envelope] = link.sent
            assert envelope["type"] == "events_api"
            assert envelope["payload"]["event"]["thread_ts"] == parent["ts"]
            assert link.acks == {envelope["envelope_id"]: {"envelope_id": envelope["envelope_id"]}}

            async def replied() -> list[str]:
                page = await chat.read(accepted["conversation_id"], accepted["conversation_token"])
                return [m["text"] for m in page.json()["messages"] if m["author"] == "rep"]

            assert await eventually(replied) == ["We do, in 3 days."]
    assert slack.deliveries[-1].status == 200
