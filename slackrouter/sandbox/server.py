"""Run an ASGI app on a loopback port inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server run as one task among others (tests, the demo).

    It leaves signal handling to whoever owns the process, so Ctrl+C is not swallowed, and it
    notices `should_exit` at once instead of on its next 100 ms tick, so stopping is quick.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), timeout=0.1)


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` until the block exits; yields the base URL, e.g. `http://127.0.0.1:54321`.

    The socket is bound here (port 0 picks a free port), so the URL is known before the first
    request and parallel runs never collide. Note uvicorn's loggers are process-wide: this sets
    them to WARNING.
    """
    config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="auto")
    server = _EmbeddedServer(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP. Without
    # it each answer written in two parts (headers, then body) waited for the client's delayed
    # ACK: 40 ms an answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((host, port))
        sock.listen(config.backlog)
        sock.setblocking(False)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"serve {host}")
        try:
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped before it started")
                await asyncio.sleep(0.005)
            bound_port = sock.getsockname()[1]
            display_host = f"[{host}]" if ":" in host else host
            yield f"http://{display_host}:{bound_port}"
        finally:
            server.should_exit = True
            await task
    finally:
        sock.close()
