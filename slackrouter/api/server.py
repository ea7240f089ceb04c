"""The uvicorn server that `slackrouter run` serves the app with."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from types import FrameType

import uvicorn

from slackrouter.services.notifier import FeedNotifier

# How often the server looks at its clock (the Date header's, to the second) and its request
# count. uvicorn does it ten times a second; each wakes the process, and on a shared machine
# the caches an idle process finds again are cold: measured with `slackrouter run` idle on
# PostgreSQL, its process took 35-40 ms of CPU a second waking ten times a second, 19-27 once.
TICK = 1.0


class AppServer(uvicorn.Server):
    """uvicorn, with three changes for a long-running app process."""

    def __init__(self, config: uvicorn.Config, notifier: FeedNotifier) -> None:
        super().__init__(config)
        self._notifier = notifier
        self._exit_asked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # serving's, once it serves

    async def main_loop(self) -> None:
        """uvicorn's loop, waking once a TICK instead of ten times, and at once when a signal
        asks the server to stop."""
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # uvicorn counts tenths of a second
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_asked.wait(), TICK)
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and not self._loop.is_closed():
            # A signal handler may run in the middle of the loop's own work: the event is set
            # from the loop's next turn.
            self._loop.call_soon_threadsafe(self._exit_asked.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What is loaded by now (modules, the app, its routes: some 160,000 objects) lives as
        # long as the process: kept out of the garbage collector's full passes, which would
        # otherwise stop every request for ~90 ms each time.
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Held event streams and long-polls end at once: the graceful shutdown waits for every
        # response, and a stream never ends by itself (the browser reconnects, to another
        # replica or to this one once it is back).
        self._notifier.close()
        await super().shutdown(sockets)
