"""Writing and delivery in a process of their own: `slackrouter run` starts `slackrouter work`
beside the web server (unless WORKER_PROCESS=inline). The web process hands it each visitor
message to store, and it delivers the outbox (Slack posts, emails, webhook calls).

Why: the web server is one event loop. Writing each batch of visitor messages (routing new
chats, the batch's statements, SQLite's own work) was half its work on a busy site, delivering
the outbox (Slack posts at Slack's pace, each a few statements and a call) a fifth, and every
request that arrived meanwhile waited in line with them. In the worker they use another core;
and there delivery gives way to writing as it does in one process (`DeliveryWorker`'s `busy`:
two posts at once while messages are being written), which a delivery process of its own beside
a writer process could not, and a third process would cost the memory of another interpreter.

The link is one line each way per message, through the child's standard streams
(`child_process`):
- stdin: `{"id", "public_key", "verified", "message": {...}}`, a message to store, or `w`: the
  web process queued outbox rows itself (a relayed reply's webhook call, a transfer's post), and
  delivery starts a round at once instead of at its next poll;
- stdout: `{"id", "result": {...}}` once the message is committed, or `{"id", "error": ...}`.
The web process then wakes the visitor's event stream, as the writer did in-process. If the
worker dies, the messages it had not answered get a 503 (the widget sends them again with the
same client message id, and one that had been stored is answered as seen before), it is started
again, and what the outbox owed is delivered by the new worker. Dying with the web process
matters here: a killed app must never leave a worker behind that could post a row while the
restarted app's worker posts it too (SQLite has no row locks to keep them apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.mail import Mailer, create_mailer
from slackrouter.adapters.slack.connection import connect_slack
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.child_process import (
    ChildProcess,
    Lines,
    TurnWriter,
    die_with_parent,
    json_line,
    serve_child,
)
from slackrouter.clock import Clock, utcnow
from slackrouter.config import Settings
from slackrouter.services.chat_updates import UPDATE_PARENT, ParentUpdater
from slackrouter.services.contacts import Contacts
from slackrouter.services.delivery import DeliveryWorker
from slackrouter.services.directory import Directory
from slackrouter.services.email_delivery import ChatMailer
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.pacing import ChannelPacer
from slackrouter.services.router import Router
from slackrouter.services.slack_delivery import SlackPoster
from slackrouter.services.visitor_messages import (
    Agent,
    UnknownChatflow,
    VisitorMessageIn,
    VisitorMessageResult,
    VisitorMessages,
)
from slackrouter.services.webhooks import WebhookSender

log = logging.getLogger(__name__)

_WAKE = b"w\n"


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


class WorkerUnavailable(RuntimeError):
    """The worker process ended before answering (it is being started again): the message may
    or may not be stored, and sending it again is safe."""


class WorkerFailed(RuntimeError):
    """Storing the message failed in the worker process (the database refused or was down)."""


class WorkerProcess(ChildProcess):
    """The web process's side: `receive` as `VisitorMessages.receive`, stored by the child, and
    `wake` for the outbox rows this process queues."""

    def __init__(self, notifier: FeedNotifier) -> None:
        super().__init__("work")
        self._notifier = notifier
        self._ids = itertools.count()
        self._answers: dict[int, asyncio.Future[VisitorMessageResult]] = {}
        self._outgoing = TurnWriter(self._write)

    async def receive(
        self, *, public_key: str, message: VisitorMessageIn, identity_verified: bool
    ) -> VisitorMessageResult:
        """Store the message (once per client message id) and queue its delivery."""
        if self.stdin is None:
            raise WorkerUnavailable("the worker process is starting again")
        key = next(self._ids)
        answer: asyncio.Future[VisitorMessageResult] = asyncio.get_running_loop().create_future()
        self._answers[key] = answer
        request = {
            "id": key,
            "public_key": public_key,
            "verified": identity_verified,
            "message": message.__dict__,
        }
        self._outgoing.add(json_line(request))
        try:
            return await answer
        finally:
            self._answers.pop(key, None)

    def wake(self) -> None:
        """Tell the worker the outbox has new rows (once for those queued together)."""
        if _WAKE not in self._outgoing:
            self._outgoing.add(_WAKE)

    def _write(self, data: bytes) -> None:
        stdin = self.stdin
        if stdin is not None:  # else the worker has died: `exited` answers the messages
            with contextlib.suppress(OSError):
                stdin.write(data)

    def line(self, message: dict[str, Any]) -> None:
        answer = self._answers.get(message.get("id", -1))
        if "result" in message:
            result = _result_from(message["result"])
            if not result.duplicate:
                self._notifier.notify(result.conversation_id)
            if answer is not None and not answer.done():
                answer.set_result(result)
        elif answer is not None and not answer.done():
            if message.get("error") == "unknown_chatflow":
                answer.set_exception(UnknownChatflow(str(message.get("public_key"))))
            else:
                answer.set_exception(WorkerFailed(str(message.get("error"))))

    def exited(self) -> None:
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(WorkerUnavailable("the worker process ended"))
        self._answers.clear()


def _result_json(result: VisitorMessageResult) -> dict[str, object]:
    data = dict(result.__dict__)
    data["agents"] = [agent.__dict__ for agent in result.agents]
    return data


def _result_from(data: dict[str, Any]) -> VisitorMessageResult:
    agents = tuple(Agent(**agent) for agent in data.pop("agents"))
    return VisitorMessageResult(agents=agents, **data)


async def serve_worker(settings: Settings) -> None:
    """`slackrouter work`: store the messages read from stdin and deliver the outbox, until
    stdin closes (or SIGTERM). Only what these need is built (no web app, no Bolt app): the
    process is the smaller for it."""
    if not die_with_parent():
        return
    engine = create_engine(settings.database_url)
    slack = connect_slack(settings, engine).gateway
    sessions = session_factory(engine)
    router = Router(
        Directory(sessions, slack, clock=utcnow),
        Contacts(sessions, slack, clock=utcnow),
        max_age=settings.presence_max_age,
    )
    delivery = delivery_worker(
        settings,
        sessions,
        slack,
        create_mailer(settings),
        clock=utcnow,
        busy=lambda: writer.busy(),
    )
    # The web process wakes the visitors' event streams, on the answers.
    writer = VisitorMessages(
        sessions,
        FeedNotifier(),
        router,
        clock=utcnow,
        email_debounce=settings.email_debounce_seconds,
        on_outbox=delivery.wake,
        pacer=delivery.pacer,
    )
    lines = await Lines.stdout()
    unanswered: set[asyncio.Future[VisitorMessageResult]] = set()
    buffer = bytearray()

    def answer(key: int, public_key: str, future: asyncio.Future[VisitorMessageResult]) -> None:
        unanswered.discard(future)
        if future.cancelled():
            lines.write({"id": key, "error": "cancelled"})
        elif isinstance(error := future.exception(), UnknownChatflow):
            lines.write({"id": key, "error": "unknown_chatflow", "public_key": public_key})
        elif error is not None:
            lines.write({"id": key, "error": type(error).__name__})
        else:
            lines.write({"id": key, "result": _result_json(future.result())})

    def handle(data: bytes) -> None:
        buffer.extend(data)
        end = buffer.rfind(b"\n")
        if end < 0:
            return
        complete = bytes(buffer[:end])
        del buffer[: end + 1]
        for text in complete.split(b"\n"):
            if text == _WAKE[:-1]:
                delivery.wake()
                continue
            try:
                request = json.loads(text)
                message = VisitorMessageIn(**request["message"])
            except (ValueError, KeyError, TypeError):  # not from this version's web process
                log.exception("unreadable request from the web process")
                continue
            future = writer.submit(
                public_key=request["public_key"],
                message=message,
                identity_verified=bool(request["verified"]),
            )
            unanswered.add(future)
            future.add_done_callback(partial(answer, request["id"], request["public_key"]))

    async def finish() -> None:
        """The messages read are stored and answered before the worker ends."""
        if unanswered:
            await asyncio.wait(list(unanswered))
        await lines.drain()

    # What is loaded and built by now lives as long as the process: kept out of the garbage
    # collector's full passes (as in the web process, `AppServer.startup`). Under the
    # benchmark's load they came every 10-25 s and stopped every batch for 35-42 ms.
    gc.freeze()
    log.info("writing visitor messages and delivering the outbox")
    try:
        await serve_child(
            handle,
            [delivery.run_forever(settings.delivery_poll_interval)],
            lines,
            finish=finish,
        )
    finally:
        await slack.aclose()
        await engine.dispose()
