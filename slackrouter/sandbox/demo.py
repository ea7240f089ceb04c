"""`slackrouter demo`: the whole product on one machine, with a sandbox Slack and no credentials."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import secrets
from pathlib import Path
from string import Template

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from slackrouter.adapters.db.models import Chatflow
from slackrouter.api.app import create_api
from slackrouter.bootstrap import Runtime, build
from slackrouter.clock import utcnow
from slackrouter.config import DEFAULT_DATABASE_URL, Settings
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow

DEMO_DATABASE_URL = "sqlite+aiosqlite:///./var/demo.db"
REPS = (
    ("U0ALICE", "alice", "Alice Rep", "active"),
    ("U0BOB", "bob", "Bob Rep", "active"),
    ("U0CAROL", "carol", "Carol Rep", "away"),
)
CHATFLOW = "Website (demo)"
WIDGET_LOOK = {"title": "Demo Co", "launcher_label": "Questions? Chat with us"}
DEMO_PAGE = Path(__file__).parent / "static" / "demo.html"


def sandbox_workspace() -> FakeSlack:
    slack = FakeSlack(team_name="Demo Co", team_domain="demo-co")
    for user_id, name, real_name, presence in REPS:
        slack.add_user(
            user_id,
            name,
            real_name=real_name,
            display_name=real_name.split()[0],
            email=f"{name}@demo.example",
            presence=presence,
        )
    return slack


async def demo_chatflow(runtime: Runtime, team_id: str) -> Chatflow:
    """The demo's chatflow, created on the first run and reused after."""
    async with runtime.sessions() as session:
        existing = await session.scalar(
            select(Chatflow).where(Chatflow.team_id == team_id, Chatflow.name == CHATFLOW)
        )
    if existing is not None:
        return existing
    spec = ChatflowSpec(name=CHATFLOW, route_users=tuple(r[0] for r in REPS), widget=WIDGET_LOOK)
    return await create_chatflow(runtime.sessions, team_id=team_id, spec=spec, clock=utcnow)


def demo_page(*, widget_src: str, public_key: str, sandbox_url: str) -> str:
    """The demo's website: a shop's page with the widget embedded by its one script tag."""
    values = {"widget_src": widget_src, "chatflow": public_key, "sandbox_url": sandbox_url}
    return Template(DEMO_PAGE.read_text()).substitute(
        {name: html.escape(value) for name, value in values.items()}
    )


def add_demo_site(api: FastAPI, *, public_key: str, sandbox_url: str) -> None:
    """Serve the demo's website from the app at /demo (and send / there): demo mode only."""
    page = demo_page(widget_src="/widget.js", public_key=public_key, sandbox_url=sandbox_url)
    api.add_api_route("/demo", lambda: HTMLResponse(page), include_in_schema=False)
    api.add_api_route("/", lambda: RedirectResponse("/demo"), include_in_schema=False)


def instructions(app_url: str, slack_url: str, chatflow: Chatflow) -> str:
    key = chatflow.public_key
    return f"""
slackrouter demo is running. Open these two pages side by side:
  the website, with the chat widget:  {app_url}/demo
  the sandbox Slack, for the reps:    {slack_url}/sandbox/

Write in the website's chat: Alice and Bob get it in their DMs in the sandbox Slack. Reply in
the chat's thread there, and the answer appears in the website's chat. Then switch Alice and Bob
off (Active), press "start over as a new visitor" on the website and write again: nobody is
available, so the chat shows the away message and asks for an email address.

  app (visitor API, docs at {app_url}/docs): {app_url}
  sandbox Slack (workspace "Demo Co"):        {slack_url}
  chatflow "{chatflow.name}" public key:       {key}
  reps: Alice (active), Bob (active), Carol (away)

The same without a browser:
1. A visitor writes:
   curl -s -X POST {app_url}/v1/chatflows/{key}/messages -H 'Content-Type: application/json' \\
     -d '{{"visitor_id": "visitor-1", "client_message_id": "m1",
          "text": "Hi! Do you ship to Norway?", "name": "Nora"}}'
   The answer carries conversation_id and conversation_token.

2. See what the reps got in Slack (their DMs with the app, D + user id):
   curl -s {slack_url}/sandbox/state

3. Alice answers in the chat's thread (thread_ts "latest" = the newest chat in her DM):
   curl -s -X POST {slack_url}/sandbox/reply -H 'Content-Type: application/json' \\
     -d '{{"user": "U0ALICE", "channel": "DU0ALICE", "thread_ts": "latest",
          "text": "Yes, in 3 days!"}}'

4. The visitor reads the answer (or waits for it with &wait=20, or streams it from /stream):
   curl -s '{app_url}/v1/conversations/CONVERSATION_ID/messages' -H 'Authorization: Bearer TOKEN'

5. Everyone goes away; the next visitor gets the away message:
   for u in U0ALICE U0BOB; do curl -s -X POST {slack_url}/sandbox/presence \\
     -H 'Content-Type: application/json' \\
     -d "{{\\"user\\": \\"$u\\", \\"presence\\": \\"away\\"}}"; done

Press Ctrl-C to stop.
"""


async def run_demo(settings: Settings, *, port: int) -> None:
    """Serve the sandbox Slack and the app until interrupted."""
    slack = sandbox_workspace()
    signing_secret = secrets.token_hex(16)
    async with serve(slack.asgi, host=settings.host) as slack_url:
        demo_settings = dataclasses.replace(
            settings,
            slack_bot_token=slack.bot_token,
            slack_signing_secret=signing_secret,
            slack_app_token=None,
            slack_api_url=f"{slack_url}/api/",
            database_url=(
                DEMO_DATABASE_URL
                if settings.database_url == DEFAULT_DATABASE_URL
                else settings.database_url
            ),
            port=port,
            public_url=f"http://{settings.host}:{port}",
            presence_refresh_interval=3,
        )
        runtime = build(demo_settings)
        await runtime.migrate()
        chatflow = await demo_chatflow(runtime, slack.team_id)
        api = create_api(runtime)
        add_demo_site(api, public_key=chatflow.public_key, sandbox_url=f"{slack_url}/sandbox/")
        async with serve(api, host=settings.host, port=port) as app_url:
            slack.configure_events(f"{app_url}/slack/events", signing_secret)
            await runtime.presence.refresh(pace=False, wait=True)
            print(instructions(app_url, slack_url, chatflow), flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                runtime.notifier.close()  # the widget's open stream ends, so the server can stop
