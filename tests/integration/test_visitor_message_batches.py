"""Visitor messages are written in batches (group commit). On PostgreSQL, while messages keep
coming, the few that wait are given a moment to be joined by others, so that a busy site pays
a transaction's round trips for several messages rather than one each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from slackrouter.adapters.db.models import Message
from slackrouter.bootstrap import Runtime, build
from slackrouter.config import load_settings
from slackrouter.sandbox.scratch_database import ScratchDatabase, scratch_database
from slackrouter.services.visitor_messages import VisitorMessageIn
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[Runtime, str, ScratchDatabase]]:
    """The app on a new PostgreSQL database with one chatflow, and its public key."""
    async with scratch_database(
        ScratchDatabase, "postgresql", tmp_path, server_url=POSTGRES_URL, prefix="batches_"
    ) as database:
        chatflow = await database.chatflow(["U001"])
        settings = load_settings(
            {
                "DATABASE_URL": database.url,
                "SLACK_BOT_TOKEN": "xoxb-unused",
                "SLACK_SIGNING_SECRET": "unused",
                "SLACK_API_URL": "http://127.0.0.1:9/api/",  # nothing calls Slack here
                "WORKER_PROCESS": "inline",
            }
        )
        runtime = build(settings)
        try:
            yield runtime, chatflow.public_key, database
        finally:
            await runtime.engine.dispose()


def says(visitor: str, message: str) -> VisitorMessageIn:
    return VisitorMessageIn(visitor_id=visitor, client_message_id=message, text="Hello")


async def test_on_a_busy_site_messages_a_moment_apart_are_stored_together(
    app: tuple[Runtime, str, ScratchDatabase],
) -> None:
    runtime, key, database = app
    writer = runtime.visitor_messages
    await writer.receive(public_key=key, message=says("v1", "m0"), identity_verified=False)
    commits: list[Any] = []
    event.listen(runtime.engine.sync_engine, "commit", commits.append)
    first = writer.submit(public_key=key, message=says("v1", "m1"), identity_verified=False)
    await asyncio.sleep(0)  # the writer has started on the first
    second = writer.submit(public_key=key, message=says("v2", "m0"), identity_verified=False)
    answers = await asyncio.gather(first, second)
    assert [answer.duplicate for answer in answers] == [False, False]
    assert len(commits) == 1
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 3
