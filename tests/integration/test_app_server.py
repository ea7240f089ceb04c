"""The server `slackrouter run` serves the app with (`AppServer`): it wakes once a tick instead of
ten times a second, and a stop signal must still end it at once, not at its next tick."""

from __future__ import annotations

import asyncio
import signal
import threading

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from slackrouter.api import server as app_server
from slackrouter.api.server import AppServer
from slackrouter.sandbox.processes import HOST, eventually, free_port
from slackrouter.services.notifier import FeedNotifier


async def _hello(_: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def test_a_stop_signal_ends_the_server_without_waiting_for_its_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_server, "TICK", 3600.0)  # the next tick: an hour away
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/", _hello)]), host=HOST, port=port, log_level="warning"
    )
    server = AppServer(config, FeedNotifier())
    # Served from a thread of its own, as a signal handler would reach it from outside the loop
    # (and so that uvicorn leaves this process's signal handlers alone).
    ended = threading.Event()

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        finally:
            ended.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as http:

        async def answers() -> bool:
            try:
                return (await http.get("/")).text == "hello"
            except httpx.TransportError:
                return False

        await eventually(answers, within=30, what="the server answers", interval=0.05)
        assert (await http.get("/")).headers["date"].endswith(" GMT")

    server.handle_exit(signal.SIGTERM, None)
    assert await asyncio.to_thread(ended.wait, 30), "the server went on after the stop signal"
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as http:
            await http.get("/")
