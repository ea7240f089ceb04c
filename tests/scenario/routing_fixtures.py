"""A richer scenario than `chat`: every routing setting of a chatflow, contacts, a real SMTP server,
short timers, and restarts of the app on the same database.

The app runs whole, as in `conftest.chat`: uvicorn serving slackrouter, the fake Slack over HTTP
through the real slack_sdk client, and a real database. Emails go over SMTP to an aiosmtpd server
on loopback and are read as they arrived there.

Two fixtures give the same `Routing`:
- `routing`: SQLite only, for the rules where the database makes no difference;
- `routing_each_db`: SQLite and PostgreSQL, for round robin (concurrency, restarts) and timers.
A test module registers them with pytest by importing the fixture functions (`routing_fixture`,
`smtp_server_fixture`, `sqlite_database_fixture`, ...; `# noqa: F401`): the fixtures are named
without the suffix, so a test's `routing` argument shadows no imported name.
"""

from __future__ import annotations

import contextlib
import email
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from slackrouter.adapters.db.models import Chatflow, Conversation, OutboxItem, SlackThread, Timer
from slackrouter.api.app import create_api
from slackrouter.api.signing import sign
from slackrouter.bootstrap import build
from slackrouter.clock import utcnow
from slackrouter.config import Settings
from slackrouter.routing.hours import DAY_NAMES
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.processes import free_port
from slackrouter.sandbox.server import serve
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow
from tests.conftest import Database
from tests.scenario.conftest import ALICE, BOB, CAROL, SIGNING_SECRET, Chat, eventually

DAVE = "U0DAVE"
FIONA = "U0FIONA"  # the offline fallback in these scenarios; on no route
PEOPLE = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol", DAVE: "Dave", FIONA: "Fiona"}
DOMAIN = "acme.test"
MAIL_FROM = "slackrouter <chat@acme.test>"

# Long enough for a test to write three messages, or leave an email address, before it is due;
# tests never depend on it otherwise.
EMAIL_DEBOUNCE = 1.0
# The shortest escalation a chatflow can have (whole seconds); only escalation tests set it.
ESCALATION_SECONDS = 1


def email_of(user_id: str) -> str:
    """A rep's address in their Slack profile."""
    return f"{PEOPLE[user_id].lower()}@{DOMAIN}"


def closed_all_week_but(now: datetime, timezone: str = "UTC") -> dict[str, Any]:
    """Business hours (the `Chatflow.hours` form) open all day on one weekday only, three days
    away from `now`, so that the chatflow is closed for the whole test whatever the hour."""
    open_day = DAY_NAMES[(now.weekday() + 3) % 7]
    return {"timezone": timezone, "days": {open_day: [("00:00", "24:00")]}}


# --- a real SMTP server -------------------------------------------------------------------------


@dataclass
class Inbox:
    """An aiosmtpd handler keeping every message it accepts, with its envelope recipients."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope went to `address`."""
        return [message for rcpt_tos, message in self.messages if address in rcpt_tos]


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on a free loopback port, and what it received."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def body_text(message: EmailMessage) -> str:
    """The plain-text part, with the line ends of the wire (CRLF) made plain."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the email has no text part"
    return str(part.get_content()).replace("\r\n", "\n")


def agent_names(agents: list[dict[str, Any]]) -> list[str]:
    """Who the visitor API says will answer, by name, sorted."""
    return sorted(str(agent["name"]) for agent in agents)


def context_lines(post: dict[str, Any]) -> list[str]:
    """The texts of a Slack message's context blocks, in order."""
    return [
        str(element.get("text"))
        for block in post.get("blocks") or []
        if block.get("type") == "context"
        for element in block.get("elements") or []
    ]


RULES = ("owner", "route", "no_candidates", "nobody_available", "outside_hours")


def explanation(post: dict[str, Any]) -> str:
    """The routing explanation of a chat's parent message: its context line that starts with
    the rule that applied."""
    [line] = [line for line in context_lines(post) if line.startswith(RULES)]
    return line


# --- the scenario -------------------------------------------------------------------------------


@dataclass
class Routing(Chat):
    """`Chat`, plus what the routing rules need: chatflow settings, contacts, the inbox,
    Slack channels, the greeting, and restarting the app."""

    chatflow_id: str = ""
    inbox: Inbox = field(default_factory=Inbox)
    settings: Settings | None = None
    db_schema: str | None = None
    _app: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    # --- the app's life ---

    def build_app(self) -> None:
        """Build (not start) the app from the settings, as `slackrouter run` does."""
        assert self.settings is not None
        self.runtime = build(self.settings, db_schema=self.db_schema)
        # bootstrap does not pass EMAIL_DEBOUNCE_SECONDS to the timer worker (yet): escalated
        # chats that go offline would wait for the default 3 minutes.

    async def start_app(self) -> None:
        """Serve the app built last: its lifespan starts the scheduler and the workers."""
        stack = contextlib.AsyncExitStack()
        self.url = await stack.enter_async_context(serve(create_api(self.runtime)))
        self.slack.configure_events(f"{self.url}/slack/events", SIGNING_SECRET)
        self.http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=self.url, timeout=30)
        )
        self._app = stack
        await self.runtime.presence.refresh(pace=False, wait=True)

    async def stop_app(self) -> None:
        await self._app.aclose()

    async def restart(self) -> None:
        """Stop the app (its scheduler, workers and connections) and start a new one on the
        same database, as a deploy would: only the database carries over."""
        await self.stop_app()
        self.build_app()
        await self.start_app()

    # --- configuration ---

    async def configure(self, **fields: Any) -> None:
        """Set the chatflow's routing fields as an admin would have saved them, then let the
        presence poller see the reps the new route names."""
        async with self.runtime.sessions() as session, session.begin():
            chatflow = await session.get_one(Chatflow, self.chatflow_id)
            for name, value in fields.items():
                if name not in Chatflow.__table__.columns:
                    raise AttributeError(f"Chatflow has no column {name!r}")
                setattr(chatflow, name, value)
        await self.runtime.presence.refresh(pace=False, wait=True)

    async def put_contact(self, **body: Any) -> dict[str, Any]:
        """Create or update a contact through the signed server-to-server API, as the site's
        backend does."""
        raw = json.dumps(body).encode()
        timestamp = str(int(time.time()))
        response = await self.http.put(
            f"/v1/chatflows/{self.public_key}/contacts",
            content=raw,
            headers={
                "Content-Type": "application/json",
                "X-Slackrouter-Timestamp": timestamp,
                "X-Slackrouter-Signature": sign(self.signing_secret, timestamp, raw),
            },
        )
        assert response.status_code == 200, response.text
        # A new owner is a rep whose presence now matters.
        await self.runtime.presence.refresh(pace=False, wait=True)
        return response.json()

    def add_channel(self, channel_id: str, name: str) -> None:
        self.slack.add_channel(channel_id, name, members=PEOPLE)

    # --- the visitor's side ---

    async def greeting(self, visitor_id: str | None = None) -> dict[str, Any]:
        params = {"visitor_id": visitor_id} if visitor_id else {}
        response = await self.http.get(f"/v1/chatflows/{self.public_key}/greeting", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def starts(
        self,
        text: str = "Hello, do you ship to Norway?",
        *,
        visitor_id: str = "visitor-1",
        **extra: Any,
    ) -> dict[str, Any]:
        """A visitor's first message; returns the API's answer."""
        extra.setdefault("name", "Nora")
        extra.setdefault("page_url", "https://shop.example/pricing")
        response = await self.visitor_says(text, visitor_id=visitor_id, **extra)
        assert response.status_code == 201, response.text
        return response.json()

    async def leave_email(self, accepted: dict[str, Any], address: str) -> None:
        response = await self.http.post(
            f"/v1/conversations/{accepted['conversation_id']}/email",
            json={"email": address},
            headers={"Authorization": f"Bearer {accepted['conversation_token']}"},
        )
        assert response.status_code == 204, response.text

    async def feed(self, accepted: dict[str, Any]) -> list[dict[str, Any]]:
        page = await self.read(accepted["conversation_id"], accepted["conversation_token"])
        assert page.status_code == 200, page.text
        return list(page.json()["messages"])

    # --- Slack's side ---

    def parents(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Top-level posts of chats (not thread replies), optionally in one channel."""
        return [p for p in self.posts(channel) if not p.get("thread_ts")]

    def dm_parents(self) -> dict[str, int]:
        """How many chat parents each rep got in their DM."""
        counts: dict[str, int] = {}
        for post in self.parents():
            channel = str(post["channel"])
            if channel.startswith("D"):
                counts[channel[1:]] = counts.get(channel[1:], 0) + 1
        return counts

    async def parent_in(self, channel: str, *, index: int = 0) -> dict[str, Any]:
        """The `index`-th chat parent posted in `channel` once the app has recorded it (so a
        rep can answer it): Slack's answer, with the posted `params` added."""

        def find() -> tuple[dict[str, Any], dict[str, Any]] | None:
            found = [
                (call.params, call.response)
                for call in self.slack.calls_to("chat.postMessage")
                if call.response.get("ok")
                and call.response.get("channel") == channel
                and not call.params.get("thread_ts")
            ]
            return found[index] if len(found) > index else None

        params, response = await eventually(find)

        async def recorded() -> bool:
            async with self.runtime.sessions() as session:
                thread = await session.scalar(
                    select(SlackThread).where(SlackThread.thread_ts == response["ts"])
                )
            return thread is not None

        await eventually(recorded)
        return {**response, "params": params}

    async def rep_replies(self, user_id: str, parent: dict[str, Any], text: str) -> None:
        await self.slack.user_posts(user_id, parent["channel"], text, thread_ts=parent["ts"])

    # --- what the app keeps ---

    async def conversation(self, accepted: dict[str, Any]) -> Conversation:
        async with self.runtime.sessions() as session:
            return await session.get_one(Conversation, accepted["conversation_id"])

    async def timers_of(self, accepted: dict[str, Any]) -> dict[str, Timer]:
        async with self.runtime.sessions() as session:
            rows = await session.scalars(
                select(Timer).where(Timer.conversation_id == accepted["conversation_id"])
            )
            return {timer.kind: timer for timer in rows}

    async def emails_owed(self) -> list[OutboxItem]:
        """Email rows of the outbox, sent or not: what the app will ever send."""
        async with self.runtime.sessions() as session:
            return list(await session.scalars(select(OutboxItem).where(OutboxItem.kind == "email")))

    async def emails_to(self, address: str, count: int = 1) -> list[EmailMessage]:
        """Wait for `count` emails to `address` at the SMTP server."""
        return await eventually(
            lambda: (found := self.inbox.to(address)) and len(found) >= count and found
        )

    async def settled(self, accepted: dict[str, Any]) -> None:
        """Wait until the conversation has no timer left to fire (bar its escalation, which
        only fires when nobody answers it) and the outbox is empty: from then on nothing more
        reaches Slack or the inbox for it, so what a test sees is all there will be."""

        async def quiet() -> bool:
            async with self.runtime.sessions() as session:
                timers = await session.scalars(
                    select(Timer.id).where(
                        Timer.conversation_id == accepted["conversation_id"],
                        Timer.status == "pending",
                        Timer.kind != "escalation",
                    )
                )
                outbox = await session.scalars(
                    select(OutboxItem.id).where(OutboxItem.status == "pending")
                )
                return not list(timers) and not list(outbox)

        await eventually(quiet)


def _settings(database: Database, slack_url: str, smtp_port: int) -> Settings:
    return Settings(
        slack_bot_token="xoxb-fake",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=f"{slack_url}/api/",
        database_url=database.url,
        presence_refresh_interval=3600,
        delivery_poll_interval=0.1,
        timer_poll_interval=0.1,
        email_debounce_seconds=EMAIL_DEBOUNCE,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_security="none",
        mail_from=MAIL_FROM,
    )


@contextlib.asynccontextmanager
async def _routing(database: Database, smtp: tuple[Inbox, int]) -> AsyncIterator[Routing]:
    inbox, smtp_port = smtp
    slack = FakeSlack()
    for user_id, name in PEOPLE.items():
        slack.add_user(
            user_id,
            name.lower(),
            real_name=f"{name} Rep",
            display_name=name,
            email=email_of(user_id),
        )
    async with serve(slack.asgi) as slack_url:
        routing = Routing(
            url="",
            slack=slack,
            runtime=None,  # type: ignore[arg-type]  # build_app sets it
            public_key="",
            signing_secret="",
            http=None,  # type: ignore[arg-type]  # start_app opens it
            inbox=inbox,
            settings=_settings(database, slack_url, smtp_port),
            db_schema=database.schema,
        )
        routing.build_app()
        await routing.runtime.migrate()
        chatflow = await create_chatflow(
            routing.runtime.sessions,
            team_id=slack.team_id,
            spec=ChatflowSpec(name="Sales", route_users=(ALICE, BOB)),
            clock=utcnow,
        )
        routing.chatflow_id = chatflow.id
        routing.public_key, routing.signing_secret = chatflow.public_key, chatflow.signing_secret
        await routing.start_app()
        try:
            yield routing
        finally:
            await routing.stop_app()


@pytest.fixture(name="sqlite_database")
def sqlite_database_fixture(tmp_path: Path) -> Database:
    """A SQLite file only: for scenarios where the database makes no difference."""
    return Database(url=f"sqlite+aiosqlite:///{tmp_path / 'slackrouter.db'}")


@pytest.fixture(name="routing")
async def routing_fixture(
    sqlite_database: Database, smtp_server: tuple[Inbox, int]
) -> AsyncIterator[Routing]:
    async with _routing(sqlite_database, smtp_server) as scenario:
        yield scenario


@pytest.fixture(name="routing_each_db")
async def routing_each_db_fixture(
    database: Database, smtp_server: tuple[Inbox, int]
) -> AsyncIterator[Routing]:
    """`routing` on SQLite and on PostgreSQL."""
    async with _routing(database, smtp_server) as scenario:
        yield scenario


async def past(moment: datetime) -> None:
    """Wait until `moment` has passed."""
    await eventually(lambda: datetime.now(UTC) > moment)
