"""`slackrouter run` delivers the outbox in a process of its own (DELIVERY_PROCESS=separate, the
default): killed, it is started again and delivers what was owed, once; a killed app leaves no
delivery process behind; its Slack calls are counted at the app's /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from slackrouter.sandbox.processes import AppProcess
from tests.resilience.harness import (
    FiguresLog,
    Load,
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


def delivery_pids(app: AppProcess) -> list[int]:
    """The app's child processes: its delivery process."""
    try:
        children = Path(f"/proc/{app.pid}/task/{app.pid}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in children.split()]


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def posts_counted(app: AppProcess) -> float:
    """chat.postMessage calls answered ok, as the app's /metrics counts them."""
    async with httpx.AsyncClient(base_url=app.url) as http:
        text = (await http.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("slackrouter_slack_api_calls_total{")
        and 'method="chat.postMessage"' in line
        and 'outcome="ok"' in line
    )


async def test_a_killed_delivery_process_is_started_again_and_delivers_what_was_owed_once(
    tmp_path: Path, figures: FiguresLog
) -> None:
    async with deployment("sqlite", tmp_path, members(REPS)) as env:
        chatflow = await env.store.chatflow(REPS, assignment="round_robin", escalation_seconds=3600)
        app = env.app()
        async with running(app):
            await until_routed(env.store, REPS)
            (first,) = delivery_pids(app)
            os.kill(first, signal.SIGKILL)
            # The web process still accepts while its delivery process is down.
            load = await send([app.url], chatflow.public_key, conversations(len(REPS), 2), Load())
            assert not load.refused and not load.server_errors

            async def restarted() -> bool:
                return [pid for pid in delivery_pids(app) if pid != first and alive(pid)] != []

            await eventually(restarted, within=30, what="a new delivery process")
            posts = await all_posted(env.slack, load.tags)
            await env.store.settled()
            result = tally("delivery process killed", load.tags, [post.tags for post in posts])
            figures.record(result)
            assert (result.lost, result.duplicated) == (0, 0)

            async def counted() -> bool:  # reported each second by the delivery process
                return await posts_counted(app) >= len(posts)

            await eventually(counted, within=10, what="/metrics counts the posts")


async def test_a_killed_app_leaves_no_delivery_process_behind(tmp_path: Path) -> None:
    async with deployment("sqlite", tmp_path, members(REPS)) as env:
        app = env.app()
        async with running(app):
            (child,) = delivery_pids(app)
            app.kill()

            async def gone() -> bool:
                return not alive(child)

            await eventually(gone, within=10, what="the delivery process ends with the app")
            app.start()  # `running` stops it
            await app.ready()


async def test_an_in_memory_database_cannot_be_shared_with_a_delivery_process(
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
        assert "DELIVERY_PROCESS" in app.log_tail()
