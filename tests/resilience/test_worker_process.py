"""`slackrouter run` writes visitor messages and delivers the outbox in a process of its own
(WORKER_PROCESS=separate, the default): killed while visitors write and posts are owed, it is
started again, the visitors send again the messages it left unanswered, and every accepted
message is stored once and posted once; a killed app leaves no worker behind; what the worker
stores and posts is counted at the app's /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from slackrouter.adapters.db.models import Message
from slackrouter.sandbox.processes import AppProcess
from tests.resilience.harness import (
    FiguresLog,
    Load,
    alive,
    all_posted,
    conversations,
    deployment,
    eventually,
    members,
    reps,
    running,
    send,
    tally,
    until_routed,
)

pytestmark = pytest.mark.slow

REPS = reps(6)


async def counted(app: AppProcess) -> tuple[float, float]:
    """(visitor messages stored, chat.postMessage calls answered ok), as the app's /metrics
    counts them."""
    async with httpx.AsyncClient(base_url=app.url) as http:
        lines = (await http.get("/metrics")).text.splitlines()
    stored = sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("slackrouter_visitor_messages_total ")
    )
    posted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("slackrouter_slack_api_calls_total{")
        and 'method="chat.postMessage"' in line
        and 'outcome="ok"' in line
    )
    return stored, posted


async def test_a_worker_killed_while_visitors_write_is_started_again_and_loses_nothing(
    tmp_path: Path, figures: FiguresLog
) -> None:
    async with deployment("sqlite", tmp_path, members(REPS)) as env:
        chatflow = await env.store.chatflow(REPS, assignment="round_robin", escalation_seconds=3600)
        # A post in flight at the kill is taken again once its lease (1.5 times the call
        # timeout) has run out: 7.5 s here, against 45 with Slack's default of 30.
        app = env.app(SLACK_CALL_TIMEOUT="5")
        async with running(app):
            await until_routed(env.store, REPS)
            (first,) = app.worker_pids
            load = Load()
            sending = asyncio.create_task(
                send([app.url], chatflow.public_key, conversations(24, 6), load)
            )

            async def some_accepted() -> bool:  # and their posts owed: one a second a DM
                return len(load.accepted) >= 20

            await eventually(some_accepted, within=30, what="the first messages accepted")
            owed = await env.store.unfinished()
            os.kill(first, signal.SIGKILL)
            await sending

            async def restarted() -> bool:
                return [pid for pid in app.worker_pids if pid != first and alive(pid)] != []

            await eventually(restarted, within=30, what="a new worker process")
            # Every visitor got every message accepted in the end (retrying the 503s), and the
            # kill was felt: some request was not answered by the writer that died.
            assert len(load.accepted) == 24 * 6 and not load.refused
            assert set(load.server_errors) <= {"HTTP 503"}
            assert load.server_errors, "the kill came after the visitors were done"
            assert owed, "the kill came after the outbox was delivered"
            posts = await all_posted(env.slack, load.tags)
            await env.store.settled()
            result = tally(
                "worker process killed",
                load.tags,
                [post.tags for post in posts],
                answered_503=load.server_errors["HTTP 503"],
            )
            figures.record(result)
            assert (result.lost, result.duplicated) == (0, 0)
            async with env.store.sessions() as session:
                rows = await session.scalar(select(func.count()).select_from(Message))
            assert rows == 24 * 6  # each message stored once, the resent ones too

            async def metrics() -> bool:  # reported every few seconds by the worker
                stored, posted = await counted(app)
                return stored >= 1 and posted >= 1

            await eventually(metrics, within=10, what="/metrics counts the worker's work")


async def test_a_killed_app_leaves_no_worker_process_behind(tmp_path: Path) -> None:
    async with deployment("sqlite", tmp_path, members(REPS)) as env:
        app = env.app()
        async with running(app):
            (child,) = app.worker_pids
            app.kill()

            async def gone() -> bool:
                return not alive(child)

            await eventually(gone, within=10, what="the worker process ends with the app")
            app.start()  # `running` stops it
            await app.ready()


async def test_an_in_memory_database_cannot_be_shared_with_a_worker_process(
    tmp_path: Path,
) -> None:
    async with deployment("sqlite", tmp_path, members(REPS)) as env:
        app = env.app(DATABASE_URL="sqlite:///:memory:")
        app.start()
        try:
            code = await asyncio.to_thread(app.process.popen.wait, 30)  # type: ignore[union-attr]
        finally:
            app.stop()
        assert code == 2
        assert "WORKER_PROCESS=inline" in app.log_tail()
