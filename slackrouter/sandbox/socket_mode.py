"""A local Socket Mode endpoint that speaks Slack's envelope protocol over a real WebSocket.

The app asks `apps.connections.open` (the fake Slack answers this server's `ws://` URL), connects,
and gets `hello`. Events then come as `events_api` envelopes (`envelope_id`, `payload` = the
Events API body, `retry_attempt`, `accepts_response_payload`), and the app acknowledges each by
sending back `{"envelope_id": …}`. Slack's own protocol; see `FakeSlack.use_socket_mode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from aiohttp import WSMsgType, web

from slackrouter.sandbox.slack_requests import SlackRequestSender

JSON = dict[str, Any]


class SocketModeServer:
    """One app's Socket Mode link: `url` to connect to, `send` envelopes, `acks` received."""

    def __init__(self, app_id: str = "A0001") -> None:
        self.app_id = app_id
        self.url = ""
        self.sent: list[JSON] = []
        self.acks: dict[str, JSON] = {}
        self.connections = 0
        self._socket: web.WebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._ack_arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SocketModeServer]:
        """Listen on a free loopback port until the block ends."""
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/link/?ticket={uuid.uuid4()}&app_id={self.app_id}"
        try:
            yield self
        finally:
            if self._socket is not None:
                await self._socket.close()
            await self._runner.cleanup()

    async def wait_connected(self, within: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), within)

    async def send(self, kind: str, payload: Mapping[str, Any], *, retry_attempt: int = 0) -> str:
        """Send an envelope of `kind` (`events_api`, `interactive`, `slash_commands`); returns
        its envelope id."""
        await self.wait_connected()
        assert self._socket is not None
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": dict(payload),
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        self.sent.append(envelope)
        await self._socket.send_str(json.dumps(envelope))
        return envelope_id

    async def ack(self, envelope_id: str, within: float = 10.0) -> JSON:
        """The app's acknowledgement of an envelope, once it arrives."""
        async with self._ack_arrived:
            await asyncio.wait_for(
                self._ack_arrived.wait_for(lambda: envelope_id in self.acks), within
            )
        return self.acks[envelope_id]

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._socket = socket
        self.connections += 1
        await socket.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "applink-local", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": self.app_id},
                }
            )
        )
        self._connected.set()
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            if "envelope_id" in body:
                async with self._ack_arrived:
                    self.acks[str(body["envelope_id"])] = body
                    self._ack_arrived.notify_all()
        return socket


class SocketModeSender(SlackRequestSender):
    """Delivers events through a Socket Mode link instead of HTTP; an envelope counts as
    delivered (status 200) when the app acknowledges it."""

    def __init__(self, server: SocketModeServer, team_id: str, app_id: str, bot_user_id: str):
        super().__init__("socket-mode", "", team_id, app_id, bot_user_id=bot_user_id)
        self.server = server

    async def send_envelope(
        self,
        envelope: Mapping[str, Any],
        *,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        timestamp: int | None = None,
    ) -> httpx.Response:
        envelope_id = await self.server.send("events_api", envelope, retry_attempt=retry_num or 0)
        return httpx.Response(200, json=await self.server.ack(envelope_id))
