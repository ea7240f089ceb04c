"""A conversation's event stream (Server-Sent Events), lean enough for thousands held at once.

The stream's route answers like any other (FastAPI checks the request, the first read checks
the token, the middleware add their headers), then hands the connection to `StreamHandoff`, the
outermost middleware, and returns: what FastAPI and the middleware keep per request is freed,
and a held stream is left with its connection, one waiter on the feed notifier and one task
that notices the visitor leaving. It reads the database only when the feed grows (this
process's writes, or another replica's through LISTEN/NOTIFY) and keeps the connection alive
with comments that read nothing.
"""

from __future__ import annotations

import asyncio

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slackrouter.api.errors import error_response, unknown_conversation
from slackrouter.api.schemas import FeedMessage
from slackrouter.services.conversations import (
    PAGE,
    ConversationNotFound,
    ConversationReader,
    FeedEntry,
)
from slackrouter.services.notifier import FeedNotifier, Waiter

# Proxies and load balancers drop connections idle for a minute or so.
KEEP_ALIVE = 15.0
PING: Message = {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}
START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
    ],
}
END: Message = {"type": "http.response.body", "body": b"", "more_body": False}
HANDOFF = "slackrouter.stream_handoff"


def _events(entries: tuple[FeedEntry, ...]) -> Message:
    """One body chunk with an event per entry: `id` its cursor, `data` as in /messages."""
    body = "".join(
        f"id: {entry.cursor}\nevent: {entry.type}\ndata: "
        f"{FeedMessage.model_validate(entry, from_attributes=True).model_dump_json()}\n\n"
        for entry in entries
    )
    return {"type": "http.response.body", "body": body.encode(), "more_body": True}


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _Handoff:
    __slots__ = ("stream",)

    def __init__(self) -> None:
        self.stream: FeedStream | None = None


class StreamHandoff:
    """The outermost middleware: holds the event streams that the app handed over."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/stream"):
            await self.app(scope, receive, send)
            return
        handoff = _Handoff()
        try:
            # A copy: what the layers inside add to the scope (their exit stacks, the route, the
            # request) goes with it once they return.
            await self.app({**scope, HANDOFF: handoff}, receive, send)
        except BaseException:
            if handoff.stream is not None:
                handoff.stream.close()
            raise
        if handoff.stream is not None:
            await handoff.stream.follow(receive, send)


class FeedStream(Response):
    """The response of `GET /v1/conversations/{id}/stream`: the entries after `after`, then
    (held by `StreamHandoff`) each new one as it comes, until the visitor leaves or the server
    shuts down. A 404 when the token does not open the conversation: the first read is the
    stream's own."""

    def __init__(
        self,
        reader: ConversationReader,
        notifier: FeedNotifier,
        conversation_id: str,
        token: str,
        after: int,
    ) -> None:
        self.background = None
        self._reader = reader
        self._notifier = notifier
        self._conversation_id = conversation_id
        self._token = token
        self._cursor = after
        self._entries: tuple[FeedEntry, ...] = ()
        self._news: Waiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Subscribed before the first read, so nothing committed after it is missed.
        news = self._notifier.subscribe(self._conversation_id)
        try:
            page = await self._reader.read(self._conversation_id, self._token, after=self._cursor)
            await send(START)
        except ConversationNotFound:
            news.close()
            error = unknown_conversation()
            await error_response(error.status, error.error, error.message)(scope, receive, send)
            return
        except BaseException:
            news.close()
            raise
        self._news, self._entries, self._cursor = news, page.entries, page.cursor
        scope[HANDOFF].stream = self

    def close(self) -> None:
        if self._news is not None:
            self._news.close()

    async def follow(self, receive: Receive, send: Send) -> None:
        """Send what the first read found, then each new entry, until the visitor leaves."""
        assert self._news is not None
        news, entries, cursor = self._news, self._entries, self._cursor
        self._entries = ()
        gone = asyncio.ensure_future(_until_disconnected(receive))
        gone.add_done_callback(lambda _: news.wake())
        try:
            while True:
                if entries:
                    await send(_events(entries))
                # A full page may not be all: read on before waiting.
                woken = len(entries) >= PAGE or await news.wait(KEEP_ALIVE)
                if gone.done() or self._notifier.closed:
                    break
                if not woken:
                    entries = ()
                    await send(PING)
                    continue
                entries = await self._reader.entries_after(self._conversation_id, cursor)
                if entries:
                    cursor = entries[-1].cursor
        finally:
            gone.cancel()
            self.close()
        await send(END)
