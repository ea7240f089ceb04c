"""Delivery in a process of its own: `slackrouter run` starts `slackrouter deliver` beside the
web server (unless DELIVERY_PROCESS=inline), and the outbox is delivered there.

Why: the web server is one event loop. Delivering a busy site's outbox (Slack posts at Slack's
pace, each a few statements and a call) took a fifth of that loop, and each of its steps waited
in line with the statements of the batch of visitor messages being written, so every accepted
message waited longer. In its own process it uses another core and delays nothing.

The two talk through the child's standard streams:
- stdin: the web process writes a byte when it has queued outbox rows (the child starts a round
  at once instead of at its next poll); when it closes, the web process has ended and so does
  the child. On Linux the child is also killed with its parent (PR_SET_PDEATHSIG): a killed app
  never leaves a worker behind that could post a row while the restarted app's worker posts it
  too (SQLite has no row locks to keep them apart).
- stdout: one line of JSON a second with the child's Prometheus samples (Slack calls, delivery
  retries and failures, emails), which the web process adds to its own at /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Callable

from prometheus_client import generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.mail import Mailer, create_mailer
from slackrouter.adapters.slack.connection import connect_slack
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.clock import Clock, utcnow
from slackrouter.config import Settings
from slackrouter.observability import REGISTRY
from slackrouter.services.chat_updates import UPDATE_PARENT, ParentUpdater
from slackrouter.services.delivery import DeliveryWorker
from slackrouter.services.email_delivery import ChatMailer
from slackrouter.services.pacing import ChannelPacer
from slackrouter.services.slack_delivery import SlackPoster
from slackrouter.services.webhooks import WebhookSender

log = logging.getLogger(__name__)

METRICS_EVERY = 1.0  # seconds between the child's metrics lines
RESTART_AFTER = 1.0  # seconds before a delivery process that died is started again
STOP_WITHIN = 10.0  # seconds a stopping child has to finish its round before it is killed
_PR_SET_PDEATHSIG = 1


def delivery_worker(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    slack: SlackGateway,
    mailer: Mailer,
    *,
    clock: Clock,
    busy: Callable[[], bool] = lambda: False,
) -> DeliveryWorker:
    """The outbox's worker: Slack posts (paced per channel), edits, emails, webhook calls."""
    pacer = ChannelPacer()
    poster = SlackPoster(slack, pacer, clock=clock)
    return DeliveryWorker(
        sessions,
        {
            "post_parent": poster.post_parent,
            "post_reply": poster.post_reply,
            "email": ChatMailer(slack, mailer, mail_from=settings.mail_from).send,
            "webhook": WebhookSender().send,
            UPDATE_PARENT: ParentUpdater(slack).update_parent,
        },
        clock=clock,
        max_attempts=settings.delivery_max_attempts,
        pacer=pacer,
        paced=frozenset({"post_parent", "post_reply"}),
        busy=busy,
    )


class DeliveryProcess:
    """The web process's side: starts `slackrouter deliver`, wakes it, starts it again if it
    dies, and keeps its last metrics."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.metrics = ""  # the child's last Prometheus text

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())

    def wake(self) -> None:
        """Tell the child the outbox has new rows. A byte still unread already says so."""
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            return  # it is being started again: it reads the outbox when it starts
        transport = process.stdin.transport
        if transport.is_closing() or transport.get_write_buffer_size() > 0:  # type: ignore[attr-defined]
            return
        with contextlib.suppress(OSError):
            process.stdin.write(b"w")

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()  # the child stops (as the inline worker does) and exits
            try:
                await asyncio.wait_for(process.wait(), STOP_WITHIN)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

    async def _spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "slackrouter",
            "deliver",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        log.info("delivery process started pid=%s", self._process.pid)

    async def _supervise(self) -> None:
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            async for line in process.stdout:
                with contextlib.suppress(ValueError, KeyError):
                    self.metrics = str(json.loads(line)["metrics"])
            code = await process.wait()
            if self._stopping:
                return
            log.error("delivery process exited code=%s; starting it again", code)
            await asyncio.sleep(RESTART_AFTER)
            await self._spawn()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (elsewhere: stdin's end stops it)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def serve_delivery(settings: Settings) -> None:
    """`slackrouter deliver`: deliver the outbox until stdin closes (or SIGTERM). Only what
    delivery needs is built (no web app, no Bolt app): the process is the smaller for it."""
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return
    engine = create_engine(settings.database_url)
    slack = connect_slack(settings, engine).gateway
    worker = delivery_worker(
        settings, session_factory(engine), slack, create_mailer(settings), clock=utcnow
    )
    loop = asyncio.get_running_loop()
    wakes = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(wakes), sys.stdin)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def read_wakes() -> None:
        while await wakes.read(4096):
            worker.wake()
        stop.set()  # stdin closed: the web process has ended

    async def report_metrics() -> None:
        while True:
            line = json.dumps({"metrics": generate_latest(REGISTRY).decode()})
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            await asyncio.sleep(METRICS_EVERY)

    tasks = [
        asyncio.create_task(read_wakes()),
        asyncio.create_task(report_metrics()),
        asyncio.create_task(worker.run_forever(settings.delivery_poll_interval)),
    ]
    log.info("delivering the outbox")
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await slack.aclose()
        await engine.dispose()
