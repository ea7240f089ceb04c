"""The uvicorn server that `slackrouter run` serves the app with."""

from __future__ import annotations

import gc
import socket

import uvicorn

from slackrouter.services.notifier import FeedNotifier


class AppServer(uvicorn.Server):
    """uvicorn, with two changes for a long-running app process."""

    def __init__(self, config: uvicorn.Config, notifier: FeedNotifier) -> None:
        super().__init__(config)
        self._notifier = notifier

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
