"""The SMTP server down: chats nobody could take are emailed once it is back; past the retry
limit their emails are marked failed, where admins see them."""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from slackrouter.adapters.db.models import OutboxItem
from tests.resilience.harness import (
    HOST,
    TAG,
    FiguresLog,
    Load,
    Store,
    conversations,
    deployment,
    eventually,
    free_port,
    members,
    reps,
    running,
    send,
    tally,
)

REPS = reps(3)
FALLBACK = "U0FALLBACK"
VISITORS = 6


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def tags(self) -> list[set[str]]:
        """The message tags each email carries."""
        return [set(TAG.findall(message.as_string())) for message in self.messages]


@dataclass
class SmtpServer:
    """aiosmtpd on a fixed loopback port, which can be stopped and started again."""

    port: int = field(default_factory=free_port)
    inbox: Inbox = field(default_factory=Inbox)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname=HOST, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.stop()


async def emails(store: Store) -> list[OutboxItem]:
    return await store.outbox("email")


@pytest.mark.slow
async def test_chats_are_emailed_once_the_smtp_server_is_back(
    tmp_path: Path, smtp: SmtpServer, figures: FiguresLog
) -> None:
    async with deployment("sqlite", tmp_path, [*members(REPS), (FALLBACK, "Fay")]) as env:
        store = env.store
        for rep in REPS:
            await env.slack.presence(rep, "away")
        chatflow = await store.chatflow(REPS, offline_fallback=FALLBACK)
        app = env.app(
            SMTP_HOST=HOST,
            SMTP_PORT=str(smtp.port),
            SMTP_SECURITY="none",
            MAIL_FROM="slackrouter <chat@example.com>",
            EMAIL_DEBOUNCE_SECONDS="0",
        )
        async with running(app):
            load = await send([app.url], chatflow.public_key, conversations(VISITORS, 1), Load())
            assert {a["status"] for a in load.accepted.values()} == {"away"}

            async def retried() -> bool:
                items = await emails(store)
                return len(items) == VISITORS and all(item.attempts >= 2 for item in items)

            await eventually(retried, within=60, what="every email is tried twice")
            errors = {item.last_error for item in await emails(store)}
            smtp.start()
            await store.settled()
            items = await emails(store)
            result = tally("smtp down, then back", load.tags, smtp.inbox.tags())
            figures.record(result)
            assert all(item.status == "done" for item in items), errors
            assert result.lost == 0
            assert result.duplicated == 0
            assert all(error and str(smtp.port) in error for error in errors), errors


@pytest.mark.slow
async def test_emails_that_never_get_through_are_marked_failed(
    tmp_path: Path, smtp: SmtpServer, figures: FiguresLog
) -> None:
    async with deployment("sqlite", tmp_path, [*members(REPS), (FALLBACK, "Fay")]) as env:
        store = env.store
        for rep in REPS:
            await env.slack.presence(rep, "away")
        chatflow = await store.chatflow(REPS, offline_fallback=FALLBACK)
        app = env.app(
            SMTP_HOST=HOST,
            SMTP_PORT=str(smtp.port),  # nobody listens there
            SMTP_SECURITY="none",
            MAIL_FROM="slackrouter <chat@example.com>",
            EMAIL_DEBOUNCE_SECONDS="0",
            DELIVERY_MAX_ATTEMPTS="2",
        )
        async with running(app):
            load = await send([app.url], chatflow.public_key, conversations(VISITORS, 1), Load())

            async def all_emails_owed() -> bool:
                return len(await emails(store)) == VISITORS

            await eventually(all_emails_owed, within=30, what="every chat is owed an email")
            await store.settled()
            items = await emails(store)
            result = tally("smtp down for good", load.tags, smtp.inbox.tags())
            figures.record(result)
            assert [(item.status, item.attempts) for item in items] == [("failed", 2)] * VISITORS
            assert all(item.last_error and str(smtp.port) in item.last_error for item in items)
            assert result.delivered == 0
